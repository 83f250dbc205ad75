"""The four geometry lenses against PyPI monitorch 0.1.0.7: both inspectors on the same model and batches,
every line and band value equal within float tolerance (one backward pass per step, uncompiled), with
default and non-default arguments. Where we differ on purpose, our values are pinned against values computed
by hand with plain torch on the same tensors."""

import math
import warnings

import numpy as np
import pytest
import torch
from torch import nn

monitorch = pytest.importorskip("monitorch", reason="monitorch (optional extra) is not installed")

import monitorch.lens as theirs  # noqa: E402
from monitorch.inspector import PyTorchInspector as TheirInspector  # noqa: E402

import monitorch_widget.lens as ours  # noqa: E402
from monitorch_widget import PyTorchInspector  # noqa: E402

EPOCHS, STEPS = 3, 5
# monitorch's full backward hooks say so on the first layer (its input does not require grad)
pytestmark = pytest.mark.filterwarnings("ignore:Full backward hook is firing")


class Recorder:
    """A monitorch visualizer that keeps every call: lines, bands, and whether ranges were None."""

    def __init__(self):
        self.calls = []
        self.tags = {}

    def register_tags(self, tag, attrs):
        self.tags[tag] = attrs

    def plot_numerical_values(self, epoch, tag, values, ranges=None):
        self.calls.append(("numerical", epoch, tag, {k: dict(v) for k, v in values.items()},
                           None if ranges is None else {k: dict(v) for k, v in ranges.items()}))

    def plot_probabilities(self, epoch, tag, values):
        self.calls.append(("probability", epoch, tag, {k: dict(v) for k, v in values.items()}, None))

    def plot_relations(self, epoch, tag, values):
        self.calls.append(("relations", epoch, tag, {k: dict(v) for k, v in values.items()}, None))


def mlp():
    return nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 3))


def cnn():
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
                         nn.Linear(4 * 6 * 6, 3))


def train(inspector_cls, lenses, model_fn=mlp, per_step=None, per_epoch=None):
    """``lenses(optimizer)`` -> lens list. Returns the recorder (and the inspector's lenses)."""
    torch.manual_seed(0)
    model = model_fn()
    opt = torch.optim.Adam(model.parameters(), lr=3e-2)
    rec = Recorder()
    chosen = lenses(opt)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # our coverage notice; monitorch's own warnings
        ins = inspector_cls(chosen, visualizer=rec)
        ins.attach(model)
    g = torch.Generator().manual_seed(1)
    shape = (8, 4) if model_fn is mlp else (8, 1, 8, 8)
    for _ in range(EPOCHS):
        for _ in range(STEPS):
            x, y = torch.randn(*shape, generator=g), torch.randint(0, 3, (8,), generator=g)
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
            if per_step is not None:
                per_step(chosen)
        if per_epoch is not None:
            per_epoch(chosen)
        ins.tick_epoch()
    return rec


def flat(rec, epochs=None):
    out = {}
    for method, epoch, tag, values, ranges in rec.calls:
        if epochs is not None and epoch not in epochs:
            continue
        for group, lines in values.items():
            for key, v in lines.items():
                out[(epoch, tag, group, key)] = v
        if method == "numerical":
            out[(epoch, tag, "ranges is None")] = ranges is None
        for group, bands in (ranges or {}).items():
            for names, (lo, hi) in bands.items():
                out[(epoch, tag, group, names, "lo")] = lo
                out[(epoch, tag, group, names, "hi")] = hi
    return out


def assert_same(mine, theirs_, epochs=None):
    a, b = flat(mine, epochs), flat(theirs_, epochs)
    assert a and set(a) == set(b)
    for key, v in b.items():
        assert a[key] == pytest.approx(v, rel=1e-5, abs=1e-6), key
    def attrs(rec):
        return {t: (x.logy, x.big_plot, x.annotate, x.type.name, x.ylim) for t, x in rec.tags.items()}

    assert attrs(mine) == attrs(theirs_)


# (our lens factory, their lens factory), default and non-default arguments, every aggregation monitorch computes
# without a bug (its 'min' point returns the maximum and its 'Q3' point the 0.25 quantile: README "Differences").
CASES = {
    "output_quantiles": (
        lambda o: [ours.OutputGradientGeometry(inplace=False, line_aggregation=["median", "IQR", "Q1"],
                                               range_aggregation=["Q1-Q3", "min-max"])],
        lambda o: [theirs.OutputGradientGeometry(inplace=False, line_aggregation=["median", "IQR", "Q1"],
                                                 range_aggregation=["Q1-Q3", "min-max"])]),
    "gradient_quantiles": (
        lambda o: [ours.ParameterGradientGeometry(inplace=False, line_aggregation="median",
                                                  range_aggregation="Q1-Q3")],
        lambda o: [theirs.ParameterGradientGeometry(inplace=False, line_aggregation="median",
                                                    range_aggregation="Q1-Q3")]),
    "output_default": (lambda o: [ours.OutputGradientGeometry()], lambda o: [theirs.OutputGradientGeometry()]),
    "output_args": (
        lambda o: [ours.OutputGradientGeometry(inplace=False, normalize_by_size=True, log_scale=True,
                                               compute_correlation=False, skip_activation=False,
                                               line_aggregation=["mean", "max", "std", "Q1"],
                                               range_aggregation="min-max")],
        lambda o: [theirs.OutputGradientGeometry(inplace=False, normalize_by_size=True, log_scale=True,
                                                 compute_correlation=False, skip_activation=False,
                                                 line_aggregation=["mean", "max", "std", "Q1"],
                                                 range_aggregation="min-max")]),
    "output_rms_correlation": (
        lambda o: [ours.OutputGradientGeometry(normalize_by_size=True, skip_activation=False,
                                               line_aggregation=("mean", "min"), range_aggregation=None)],
        lambda o: [theirs.OutputGradientGeometry(normalize_by_size=True, skip_activation=False,
                                                 line_aggregation=("mean", "min"), range_aggregation=None)]),
    "gradient_default": (lambda o: [ours.ParameterGradientGeometry()], lambda o: [theirs.ParameterGradientGeometry()]),
    "gradient_args": (
        lambda o: [ours.ParameterGradientGeometry(inplace=False, normalize_by_size=True, log_scale=True,
                                                  parameters=["weight"], line_aggregation=["mean", "std", "max"],
                                                  range_aggregation=["min-max", "std"])],
        lambda o: [theirs.ParameterGradientGeometry(inplace=False, normalize_by_size=True, log_scale=True,
                                                    parameters=["weight"], line_aggregation=["mean", "std", "max"],
                                                    range_aggregation=["min-max", "std"])]),
    "gradient_no_correlation": (
        lambda o: [ours.ParameterGradientGeometry(compute_correlation=False, parameters=["bias", "weight"])],
        lambda o: [theirs.ParameterGradientGeometry(compute_correlation=False, parameters=["bias", "weight"])]),
    "norm_default": (lambda o: [ours.ParameterNorm()], lambda o: [theirs.ParameterNorm()]),
    "norm_args": (
        lambda o: [ours.ParameterNorm(inplace=False, parameters=["weight"], normalize_by_size=True, log_scale=True,
                                      aggregation_method="max")],
        lambda o: [theirs.ParameterNorm(inplace=False, parameters=["weight"], normalize_by_size=True,
                                        log_scale=True, aggregation_method="max")]),
    "norm_no_comparison": (
        lambda o: [ours.ParameterNorm(comparison_plot=False, aggregation_method="std")],
        lambda o: [theirs.ParameterNorm(comparison_plot=False, aggregation_method="std")]),
    "update_no_optimizer": (
        lambda o: [ours.ParameterUpdateGeometry(None, normalize_by_size=True, parameters=["weight"])],
        lambda o: [theirs.ParameterUpdateGeometry(None, normalize_by_size=True, parameters=["weight"])]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_same_calls_and_values_as_monitorch(case):
    mine_fn, theirs_fn = CASES[case]
    kw = {}
    if case.startswith("norm"):  # ParameterNorm also reads on demand
        kw["per_step"] = lambda lenses: lenses[0].collect_data()
    if case == "update_no_optimizer":
        kw["per_step"] = lambda lenses: lenses[0].inspect_update()
    assert_same(train(PyTorchInspector, mine_fn, **kw), train(TheirInspector, theirs_fn, **kw))


@pytest.mark.parametrize("lens", ["OutputGradientGeometry", "ParameterGradientGeometry", "ParameterNorm"])
def test_same_values_as_monitorch_on_a_cnn(lens):
    assert_same(train(PyTorchInspector, lambda o: [getattr(ours, lens)()], cnn),
                train(TheirInspector, lambda o: [getattr(theirs, lens)()], cnn))


@pytest.mark.parametrize("kwargs", [{}, {"normalize_by_size": True, "compute_correlation": False,
                                         "parameters": ["weight"], "line_aggregation": ["mean", "max"],
                                         "range_aggregation": "std", "inplace": False}])
def test_update_geometry_equals_monitorch_after_the_first_epoch(kwargs):
    """monitorch differences consecutive post-step parameters, so it has no value for the very first step;
    from the second epoch on (its correlation restarts each epoch, as ours) every value agrees."""
    mine = train(PyTorchInspector, lambda o: [ours.ParameterUpdateGeometry(o, **kwargs)])
    their = train(TheirInspector, lambda o: [theirs.ParameterUpdateGeometry(o, **kwargs)])
    assert_same(mine, their, epochs=range(2, EPOCHS + 1))


# --- deliberate differences, pinned by hand -------------------------------------------------------------

def stats(values):
    v = np.asarray(values, dtype=np.float64)
    return {"mean": v.mean(), "std": v.std(), "min": v.min(), "max": v.max()}


def correlations(tensors):
    """monitorch's correlation sequence of one epoch: previous starts at zero."""
    out, prev = [], torch.zeros_like(tensors[0])
    for t in tensors:
        out.append(float(torch.sum(prev * t) / (prev.norm() * t.norm() + 1e-8)))
        prev = t
    return out


def test_update_geometry_counts_the_first_step_by_hand():
    """Ours observes every step's update (pre/post hooks), the first step included."""
    torch.manual_seed(0)
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    rec = Recorder()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ins = PyTorchInspector([ours.ParameterUpdateGeometry(opt, parameters=["weight"])], visualizer=rec)
        ins.attach(model)
    w = model[2].weight
    updates = []
    g = torch.Generator().manual_seed(3)
    for _ in range(4):
        before = w.detach().clone()
        opt.zero_grad()
        nn.functional.cross_entropy(model(torch.randn(8, 4, generator=g)), torch.randint(0, 3, (8,), generator=g)).backward()
        opt.step()
        updates.append(w.detach() - before)
    ins.tick_epoch()
    got = flat(rec)
    norms = stats([float(u.norm()) for u in updates])
    corr = stats(correlations(updates))
    assert got[(1, "Weight Update Norm", "2", "mean")] == pytest.approx(norms["mean"], rel=1e-5)
    assert got[(1, "Weight Update Norm", "2", ("min", "max"), "lo")] == pytest.approx(norms["min"], rel=1e-5)
    assert got[(1, "Weight Update Correlation", "2", "mean")] == pytest.approx(corr["mean"], rel=1e-5, abs=1e-6)
    assert got[(1, "Weight Update Correlation", "2", ("-σ", "+σ"), "hi")] == \
        pytest.approx(corr["mean"] + corr["std"], rel=1e-5, abs=1e-6)


def test_gradient_geometry_with_accumulation_reads_each_summed_gradient_once_by_hand():
    """k=3 backward passes per step: one observation of the summed gradient per step (monitorch: 3
    observations of running partial sums)."""
    torch.manual_seed(0)
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    rec = Recorder()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ins = PyTorchInspector([ours.ParameterGradientGeometry(parameters=["weight"])], visualizer=rec)
        ins.attach(model)
    used = {name: [] for name in ("0", "2", "4")}
    g = torch.Generator().manual_seed(5)
    for _ in range(4):
        opt.zero_grad()
        for _ in range(3):
            x, y = torch.randn(6, 4, generator=g), torch.randint(0, 3, (6,), generator=g)
            (nn.functional.cross_entropy(model(x), y) / 3).backward()
        for name in used:
            used[name].append(model[int(name)].weight.grad.detach().clone())
        opt.step()
    ins.tick_epoch()
    got = flat(rec)
    for name, grads in used.items():
        norms, corr = stats([float(t.norm()) for t in grads]), stats(correlations(grads))
        assert got[(1, "Weight Gradient Norm", name, "mean")] == pytest.approx(norms["mean"], rel=1e-5)
        assert got[(1, "Weight Gradient Norm", name, ("min", "max"), "hi")] == pytest.approx(norms["max"], rel=1e-5)
        assert got[(1, "Weight Gradient Norm", name, ("-σ", "+σ"), "lo")] == \
            pytest.approx(norms["mean"] - norms["std"], rel=1e-4)
        assert got[(1, "Weight Gradient Correlation", name, "mean")] == pytest.approx(corr["mean"], rel=1e-5, abs=1e-6)
        assert not math.isnan(got[(1, "Weight Gradient Correlation", name, ("min", "max"), "lo")])
