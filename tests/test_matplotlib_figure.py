"""The figure ``MatplotlibVisualizer.show_fig()`` returns (``visualizer='matplotlib'``), read back as matplotlib
objects after an Agg draw (user trial r13c): whole epochs on x, a legend entry and a shading of its own for each
band, legends beside or above the data (never over it), a ``figsize`` too short for the panels raised once with
a warning, log-axis tick labels the size of the others and apart, correlations on [-1, 1] as in the widget."""

import itertools
import warnings

import numpy as np
import pytest
import torch
from torch import nn

pytest.importorskip("matplotlib")
import matplotlib.colors  # noqa: E402
import matplotlib.figure  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402

from monitorch_widget import PyTorchInspector  # noqa: E402
from monitorch_widget.lens import (  # noqa: E402
    LossMetrics,
    OutputActivation,
    OutputGradientGeometry,
    OutputNorm,
    ParameterGradientGeometry,
    ParameterUpdateGeometry,
)
from monitorch_widget.views.mpl_ticks import log_ticks  # noqa: E402
from monitorch_widget.visualizer import MatplotlibVisualizer  # noqa: E402

EPOCHS = 3


def train(make_lenses, visualizer="matplotlib", epochs=EPOCHS, metrics=False):
    """A small MLP trained ``epochs`` epochs of 5 batches; ``make_lenses(loss_fn, optimizer)``."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 3))
    loss_fn = nn.CrossEntropyLoss()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    ins = PyTorchInspector(make_lenses(loss_fn, opt), visualizer=visualizer)
    ins.attach(model)
    g = torch.Generator().manual_seed(1)
    for _ in range(epochs):
        for _ in range(5):
            x, y = torch.randn(16, 4, generator=g), torch.randint(0, 3, (16,), generator=g)
            opt.zero_grad()
            out = model(x)
            loss_fn(out, y).backward()
            opt.step()
            if metrics:
                ins.push_metric("train_accuracy", (out.argmax(1) == y).float().mean().item())
        if metrics:  # a validation pass: val_loss (the loss_fn hook in eval mode) and val_accuracy
            model.eval()
            with torch.no_grad():
                for _ in range(3):
                    x, y = torch.randn(16, 4, generator=g), torch.randint(0, 3, (16,), generator=g)
                    out = model(x)
                    loss_fn(out, y)
                    ins.push_metric("val_accuracy", (out.argmax(1) == y).float().mean().item())
            model.train()
        ins.tick_epoch()
    return ins


def drawn(fig):
    FigureCanvasAgg(fig)
    fig.canvas.draw()
    return fig.canvas.get_renderer()


def many_bands(loss_fn, opt):
    return [LossMetrics(loss_fn=loss_fn, metrics=["train_accuracy", "val_accuracy"], separate_loss_and_metrics=False,
                        loss_line=["mean", "median"], loss_range=["std", "min-max"], metrics_range="min-max"),
            OutputActivation(),
            OutputNorm(log_scale=True, range_aggregation=["std", "min-max"])]


def geometry(loss_fn, opt):  # the trial's s6 lenses: 11 rows, 31 axes on this model
    return [LossMetrics(loss_fn=loss_fn),
            OutputGradientGeometry(log_scale=True, compute_correlation=True, range_aggregation="min-max"),
            ParameterGradientGeometry(parameters=["weight"], compute_correlation=True),
            ParameterUpdateGeometry(opt, log_scale=True, compute_correlation=True, range_aggregation=("std",))]


@pytest.fixture(scope="module")
def bands_fig():
    ins = train(many_bands, metrics=True)
    fig = ins.visualizer.show_fig()
    return ins, fig, drawn(fig)


@pytest.fixture(scope="module")
def geometry_fig():
    ins = train(geometry)
    fig = ins.visualizer.show_fig()
    return ins, fig, drawn(fig)


def by_title(fig):
    return {ax.get_title(): ax for ax in fig.axes}


def legends(fig):
    """Every legend of the figure: the axes' and the subfigures' (a per-layer panel's, above its first row)."""
    found = [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]
    return found + [leg for sub in fig.subfigs for leg in sub.legends]


def legend_texts(fig):
    return {t.get_text() for leg in legends(fig) for t in leg.get_texts()}


def overlap(a, b):
    """Overlap area of two display bboxes (pixels²)."""
    w = min(a.x1, b.x1) - max(a.x0, b.x0)
    h = min(a.y1, b.y1) - max(a.y0, b.y0)
    return max(0.0, w) * max(0.0, h)


def y_labels(ax):
    """The y tick labels drawn (visible, non-empty, inside the axes' y range), major and minor."""
    lo, hi = sorted(ax.get_ylim())
    ticks = ax.yaxis.get_major_ticks() + ax.yaxis.get_minor_ticks()
    locs = list(ax.yaxis.get_majorticklocs()) + list(ax.yaxis.get_minorticklocs())
    return [t.label1 for t, v in zip(ticks, locs)
            if t.label1.get_visible() and t.label1.get_text() and lo <= v <= hi]


# --- 1. whole epochs --------------------------------------------------------------------------------------
def test_epoch_axis_ticks_are_whole_epochs_of_the_run(bands_fig, geometry_fig):
    for _, fig, _ in (bands_fig, geometry_fig):
        assert len(fig.axes) > 5
        for ax in fig.axes:
            ticks = ax.get_xticks()
            assert list(ticks) == [1.0, 2.0, 3.0], ax.get_title()
            assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "2", "3"], ax.get_title()
            assert ax.get_xlabel() == "epoch"


def test_a_long_run_gets_few_whole_epoch_ticks():
    ins = train(lambda lf, opt: [LossMetrics(loss_fn=lf)], epochs=40)
    fig = ins.visualizer.show_fig()
    drawn(fig)
    ax = by_title(fig)["Loss"]
    ticks, (lo, hi) = ax.get_xticks(), ax.get_xlim()
    assert 3 <= len(ticks) <= 12 and np.all(ticks == np.round(ticks)) and lo <= ticks.min() and ticks.max() <= hi


# --- 2. bands ---------------------------------------------------------------------------------------------
def test_each_band_has_its_own_legend_entry_and_shading_in_its_lines_colour(bands_fig):
    ins, fig, _ = bands_fig
    texts = legend_texts(fig)
    loss = by_title(fig)["Loss & Metrics"]
    labels = [c.get_label() for c in loss.collections]
    assert sorted(labels) == sorted(["train_loss -σ -- train_loss +σ", "train_loss min -- train_loss max",
                                     "val_loss -σ -- val_loss +σ", "val_loss min -- val_loss max",
                                     "train_accuracy min -- train_accuracy max",
                                     "val_accuracy min -- val_accuracy max"])
    assert set(labels) <= {t.get_text() for t in loss.get_legend().get_texts()}
    lines = {ln.get_label(): ln for ln in loss.get_lines()}
    for name in ("train_loss", "val_loss"):
        std, span = (next(c for c in loss.collections if c.get_label() == f"{name} {lo} -- {name} {hi}")
                     for lo, hi in (("-σ", "+σ"), ("min", "max")))
        std_face, span_face = std.get_facecolor()[0], span.get_facecolor()[0]
        assert tuple(std_face) != tuple(span_face)  # told apart: another shading per band kind
        line_rgb = matplotlib.colors.to_rgb(lines[f"{name} mean"].get_color())
        np.testing.assert_allclose(std_face[:3], line_rgb)  # and both in their line's colour
        np.testing.assert_allclose(span_face[:3], line_rgb)
        # the band is the record's: its polygon spans the min .. max columns
        lo = ins.history.series("Loss & Metrics", "Loss & Metrics", f"{name} min", role="lo")
        hi = ins.history.series("Loss & Metrics", "Loss & Metrics", f"{name} max", role="hi")
        ys = span.get_paths()[0].vertices[:, 1]
        assert np.isclose(ys.min(), np.nanmin(lo)) and np.isclose(ys.max(), np.nanmax(hi))
    # a per-layer panel: each band kind named once in the panel's legend, shaded apart on every layer's axes
    assert {"mean", "-σ -- +σ", "min -- max"} <= texts
    norm_axes = [ax for title, ax in by_title(fig).items() if title.startswith("Output Norm: ")]
    assert norm_axes
    for ax in norm_axes:
        faces = {c.get_label(): tuple(c.get_facecolor()[0]) for c in ax.collections}
        assert set(faces) == {"-σ -- +σ", "min -- max"} and len(set(faces.values())) == 2


# --- 3. legends -------------------------------------------------------------------------------------------
def test_legends_do_not_cover_any_plotted_data(bands_fig, geometry_fig):
    for _, fig, renderer in (bands_fig, geometry_fig):
        boxes = [ax.get_window_extent(renderer) for ax in fig.axes]
        found = legends(fig)
        assert found
        for leg in found:
            box = leg.get_window_extent(renderer)
            assert all(overlap(box, ax_box) == 0 for ax_box in boxes), [t.get_text() for t in leg.get_texts()]
    _, fig, renderer = bands_fig
    loss = by_title(fig)["Loss & Metrics"]
    assert len(loss.get_legend().get_texts()) >= 10  # every line and band of the busy panel, beside it
    assert loss.get_legend().get_window_extent(renderer).x0 >= loss.get_window_extent(renderer).x1


def test_a_per_layer_panel_has_its_legend_once():
    ins = train(lambda lf, opt: [LossMetrics(loss_fn=lf), OutputNorm()])
    fig = ins.visualizer.show_fig()
    per_panel = [[t.get_text() for t in leg.get_texts()] for sub in fig.subfigs for leg in sub.legends]
    assert per_panel == [["mean", "-σ -- +σ", "min -- max"]]  # OutputNorm's default bands


# --- 4. layout ------------------------------------------------------------------------------------------
def test_a_figsize_too_short_for_the_panels_is_raised_once_with_a_warning():
    viz = MatplotlibVisualizer(figsize=(12, 9), facecolor="white")
    ins = train(geometry, visualizer=viz)
    with pytest.warns(UserWarning, match=r"figsize=\(12, 9\).*min_row_height = 0"):
        fig = viz.show_fig()
    width, height = fig.get_size_inches()
    assert width == 12 and height > 9 and fig.get_facecolor()[:3] == (1.0, 1.0, 1.0)
    renderer = drawn(fig)
    assert len(fig.axes) >= 30
    # nothing of one axes (title, tick labels, axis label) runs into another's
    boxes = [(ax.get_title(), ax.get_tightbbox(renderer)) for ax in fig.axes]
    for (ta, a), (tb, b) in itertools.combinations(boxes, 2):
        assert overlap(a, b) == 0, (ta, tb)
    ins.tick_epoch()  # a new epoch: drawn again, not warned again
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert viz.show_fig() is not fig


def test_min_row_height_0_keeps_the_figsize_as_given():
    viz = MatplotlibVisualizer(figsize=(12, 9))
    viz.min_row_height = 0
    train(geometry, visualizer=viz)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # constrained layout may say it cannot fit: the user's choice
        fig = viz.show_fig()
    assert tuple(fig.get_size_inches()) == (12, 9)


def test_a_narrow_figsize_wraps_the_layers_into_fewer_columns():
    viz = MatplotlibVisualizer(figsize=(5, 40))
    train(geometry, visualizer=viz)
    fig = viz.show_fig()
    assert tuple(fig.get_size_inches()) == (5, 40)
    renderer = drawn(fig)
    norms = [ax for ax in fig.axes if ax.get_title().startswith("Output Gradient Norm: ")]
    # 5 in hold 2 columns (at least 2.2 in each): 3 layers in 2 rows
    assert len(norms) == 3 and len({round(ax.get_window_extent(renderer).y0) for ax in norms}) == 2


def test_the_run_title_and_an_empty_record_stay():
    ins = train(lambda lf, opt: [LossMetrics(loss_fn=lf)])
    fig = ins.visualizer.show_fig()
    assert fig._suptitle.get_text() == ins.history.current.label
    empty = MatplotlibVisualizer().show_fig()
    assert isinstance(empty, matplotlib.figure.Figure)
    assert [t.get_text() for t in empty.texts] == ["no epoch recorded yet"]


# --- 5. log axes ----------------------------------------------------------------------------------------
def test_log_axis_tick_labels_have_the_linear_size_and_do_not_overlap(bands_fig, geometry_fig):
    for _, fig, renderer in (bands_fig, geometry_fig):
        log_axes = [ax for ax in fig.axes if ax.get_yscale() == "log"]
        lin_axes = [ax for ax in fig.axes if ax.get_yscale() == "linear"]
        assert log_axes and lin_axes
        sizes = {t.get_fontsize() for ax in lin_axes for t in y_labels(ax) + ax.get_xticklabels()}
        assert len(sizes) == 1
        for ax in log_axes:
            labels = y_labels(ax)
            assert len(labels) >= 2, ax.get_title()  # the axis is readable: at least two values
            assert {t.get_fontsize() for t in labels} == sizes, ax.get_title()
            for a, b in itertools.combinations(labels, 2):
                assert overlap(a.get_window_extent(renderer), b.get_window_extent(renderer)) == 0, \
                    (ax.get_title(), a.get_text(), b.get_text())


@pytest.mark.parametrize("lo, hi, expect", [
    (0.017, 0.019, None),          # within a decade: evenly spaced values, no 2..9 x 10^k minor labels
    (0.15, 1.6, [0.2, 0.5, 1.0]),  # the 1-2-5 values
    (1e-6, 1.0, None),             # six decades: powers of ten only
])
def test_log_ticks_across_view_ranges(lo, hi, expect):
    fig = matplotlib.figure.Figure(figsize=(3, 1.6), layout="constrained")
    ax = fig.add_subplot()
    ax.plot([0, 1], [lo, hi])
    log_ticks(ax)
    ax.tick_params(which="both", labelsize=7)
    ax.set_ylim(lo, hi)
    renderer = drawn(fig)
    labels = y_labels(ax)
    values = [v for v in ax.yaxis.get_majorticklocs() if lo <= v <= hi]
    assert len(labels) >= 2 and all(t.get_fontsize() == 7 for t in labels)
    assert not [t for t in ax.yaxis.get_minorticklabels() if t.get_text()]  # minor ticks are never labelled
    for a, b in itertools.combinations(labels, 2):
        assert overlap(a.get_window_extent(renderer), b.get_window_extent(renderer)) == 0
    if expect is not None:
        np.testing.assert_allclose(values, expect)
    if hi / lo > 1e3:
        assert np.allclose(np.log10(values), np.round(np.log10(values)))
        assert all(t.get_text().startswith("$10^{") for t in labels)


# --- 6. correlations ------------------------------------------------------------------------------------
def test_correlation_panels_are_drawn_on_the_fixed_range_the_widget_uses(geometry_fig):
    ins, fig, _ = geometry_fig
    corr = {title: ax for title, ax in by_title(fig).items() if "Correlation" in title}
    tags = {title.split(":")[0] for title in corr}
    assert tags == {"Output Gradient Correlation", "Weight Gradient Correlation", "Weight Update Correlation",
                    "Bias Update Correlation"}
    for tag in tags:
        assert ins.history.current.panel(tag).ylim == [-1.0, 1.0]  # what the widget draws (js/panels.ts: ylim)
    for title, ax in corr.items():
        assert ax.get_ylim() == (-1.0, 1.0) and ax.get_yscale() == "linear", title
    # norms stay automatic, on a log axis where the lens asks
    assert by_title(fig)["Output Gradient Norm: 0"].get_yscale() == "log"
    assert by_title(fig)["Weight Gradient Norm: 0"].get_yscale() == "linear"
