"""The static picture (views/static_picture.py, svg_charts.py, svg_heatmap.py): bounded size, right cells,
worst layers named, and the sibling output the widget publishes next to its view."""

from __future__ import annotations

import base64
import re
import struct
import xml.etree.ElementTree as ET
import zlib
from typing import Any

import numpy as np
import pytest

from monitorch_widget.record import Record
from monitorch_widget.views import static_picture as sp
from monitorch_widget.views import svg_heatmap as hm
from monitorch_widget.views.svg_charts import POINTS, downsample

SVG_NS = "{http://www.w3.org/2000/svg}"
EVIL = '</script><script>window.__pwned=1</script> & "q" <b>'


class _Tag:
    def __init__(self, kind: str, big: bool, logy: bool = False) -> None:
        self.type = type("T", (), {"name": kind})()
        self.big_plot = big
        self.logy = logy


def deep_record(n_blocks: int = 50, epochs: int = 300, runs: int = 3, seed: int = 0) -> Record:
    """The record a 50-block MLP (Linear + ReLU) gives with the three seed lenses (same panels, groups and
    keys as PyTorchInspector([LossMetrics(metrics=[...]), OutputActivation(), ParameterGradientActivation()])),
    filled with seeded random rates: noise is the worst case for the heatmaps' compression."""
    rng = np.random.default_rng(seed)
    rec = Record()
    rec.register_tags("Loss", _Tag("NUMERICAL", True), lens="LossMetrics")
    rec.register_tags("Metrics", _Tag("NUMERICAL", True), lens="LossMetrics")
    for tag in ("Output Activations", "Weight Gradient Activation", "Bias Gradient Activation"):
        rec.register_tags(tag, _Tag("PROBABILITY", False), lens="lens")
    for tag in ("Warning Output Activations", "Warning Gradient Activations"):
        rec.register_tags(tag, _Tag("PROBABILITY", True), lens="lens")
    relus = [f"relu{i}" for i in range(n_blocks)]
    lins = [f"lin{i}" for i in range(n_blocks)]
    for r in range(runs):
        rec.start_run(f"run {r + 1}: Sequential", {**{g: "ReLU" for g in relus}, **{g: "Linear" for g in lins}})
        for e in range(1, epochs + 1):
            rec.open_row(e)
            loss = 1.0 / e + 0.01 * rng.random()
            rec.plot_numerical_values(e, "Loss", {"Loss": {"train_loss mean": loss}},
                                      {"Loss": {("train_loss -σ", "train_loss +σ"): (0.9 * loss, 1.1 * loss)}})
            rec.plot_numerical_values(e, "Metrics", {"Metrics": {"val_acc mean": float(rng.random())}})
            for tag, groups in (("Output Activations", relus), ("Weight Gradient Activation", lins),
                                ("Bias Gradient Activation", lins)):
                rates = rng.random((len(groups), 2))
                rec.plot_probabilities(e, tag, {g: {"activation_rate": float(a), "death_rate": float(d)}
                                                for g, (a, d) in zip(groups, rates)})
            for tag in ("Warning Output Activations", "Warning Gradient Activations"):
                rec.plot_probabilities(e, tag, {tag: {"worst activation_rate": 0.1, "worst death_rate": 0.9}})
            rec.close_row()
        rec.end()
    return rec


def small_record(death: dict[str, list[float]], runs: int = 1) -> Record:
    rec = Record()
    rec.register_tags("Loss & Metrics", _Tag("NUMERICAL", True, logy=True), lens="LossMetrics")
    rec.register_tags("Output Activations", _Tag("PROBABILITY", False), lens="OutputActivation")
    n = len(next(iter(death.values())))
    for r in range(runs):
        rec.start_run(f"run {r + 1}: Net", dict.fromkeys(death, "ReLU"))
        for e in range(1, n + 1):
            rec.open_row(e)
            rec.plot_numerical_values(e, "Loss & Metrics", {"Loss & Metrics": {"train_loss mean": 1.0 / e}},
                                      {"Loss & Metrics": {("train_loss -σ", "train_loss +σ"): (0.5 / e, 1.5 / e)}})
            rec.plot_probabilities(e, "Output Activations", {g: {"activation_rate": 1.0 - v[e - 1], "death_rate": v[e - 1]}
                                                             for g, v in death.items()})
            rec.close_row()
        rec.end()
    return rec


def png_indices(href: str) -> tuple[np.ndarray, list[tuple[int, int, int]]]:
    """Decode our palette PNG (independently of svg_heatmap): palette indices (h x w) and the palette."""
    raw = base64.b64decode(href.split(",", 1)[1])
    assert raw[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, {}
    while pos < len(raw):
        (length,) = struct.unpack(">I", raw[pos:pos + 4])
        kind = raw[pos + 4:pos + 8]
        body = raw[pos + 8:pos + 8 + length]
        assert struct.unpack(">I", raw[pos + 8 + length:pos + 12 + length])[0] == zlib.crc32(kind + body)
        chunks.setdefault(kind, b"")
        chunks[kind] += body
        pos += 12 + length
    w, h, depth, ctype = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    assert (depth, ctype) == (8, 3)
    rows = np.frombuffer(zlib.decompress(chunks[b"IDAT"]), np.uint8).reshape(h, w + 1)
    assert (rows[:, 0] == 0).all()
    pal = chunks[b"PLTE"]
    return rows[:, 1:], [tuple(pal[i:i + 3]) for i in range(0, len(pal), 3)]  # type: ignore[misc]


def cells(g: Any) -> Any:
    return next(i for i in g.iter(SVG_NS + "image") if i.get("class") == "mw-static-cells")


def heatmap(svg: str, panel: str, key: str) -> Any:
    root = ET.fromstring(svg)
    return next(g for g in sp.iter_heatmaps(root) if g.get("data-panel") == panel and g.get("data-key") == key)


# --- the bound -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("epochs", [30, 300, 3000])
def test_fifty_block_model_three_runs_stays_under_100_kb(epochs: int) -> None:
    rec = deep_record(epochs=epochs, runs=3 if epochs <= 300 else 1)
    html = sp.fallback_html(rec, sibling=True)
    size = len(html.encode("utf-8"))
    assert size <= 100_000, size
    svg = html[html.index("<svg"):html.index("</svg>") + 6]
    root = ET.fromstring(svg)
    # an overview, not 150 small charts: 4 line charts and two heatmaps per per-layer panel
    assert [g.get("data-panel") for g in sp.iter_groups(root)] == [
        "Loss", "Metrics", "Warning Output Activations", "Warning Gradient Activations"]
    assert [(g.get("data-panel"), g.get("data-key")) for g in sp.iter_heatmaps(root)] == [
        (t, k) for t in ("Output Activations", "Weight Gradient Activation", "Bias Gradient Activation")
        for k in ("death_rate", "activation_rate")]
    # every line drawn has a bounded number of points, whatever the history length
    for path in root.iter(SVG_NS + "path"):
        assert len(re.findall(r"-?\d+ -?\d+", path.get("d"))) <= 3 * POINTS
    # every layer is named as text
    layers = {t.text for t in root.iter(SVG_NS + "text") if t.get("class") == "mw-static-layer"}
    assert {f"relu{i}" for i in range(50)} <= layers and {f"lin{i}" for i in range(50)} <= layers


def test_size_does_not_grow_with_history() -> None:
    sizes = [len(sp.fallback_html(deep_record(n_blocks=10, epochs=e, runs=2))) for e in (200, 2000)]
    assert sizes[1] <= 1.1 * sizes[0], sizes


# --- what is drawn -----------------------------------------------------------------------------------
def test_heatmap_cells_hold_the_worst_value_of_each_bin() -> None:
    n = 200
    death = {"a": [0.0] * n, "b": [0.0] * n, "c": [0.5] * n}
    death["b"][56] = 1.0  # epoch 57 only: a short death must stay visible after binning
    rec = small_record(death)
    g = heatmap(sp.record_to_svg(rec), "Output Activations", "death_rate")
    idx, pal = png_indices(cells(g).get("href"))
    assert idx.shape == (3, hm.MAX_COLS)
    # bins computed here: 96 nearly equal consecutive ranges of the 200 epochs
    starts = np.floor(np.arange(96) * (n / 96)).astype(int)
    col = int(np.searchsorted(starts, 56, side="right") - 1)
    assert idx[1, col] == hm.LEVELS - 1 and (np.delete(idx[1], col) == 0).all()
    assert (idx[0] == 0).all() and (idx[2] == hm.LEVELS // 2).all()
    # death colours run from white (0) to dark red (1), no value is light grey
    assert pal[0] == (255, 255, 255) and pal[hm.LEVELS - 1] == (103, 0, 13) and pal[hm.LEVELS] == hm.NO_VALUE
    # the activation heatmap keeps the lowest value of the bin (1 - 1.0 = 0 at epoch 57)
    act, _ = png_indices(cells(heatmap(sp.record_to_svg(rec), "Output Activations", "activation_rate")).get("href"))
    assert act[1, col] == 0 and (np.delete(act[1], col) == hm.LEVELS - 1).all()


def test_gaps_are_no_value_cells() -> None:
    rec = small_record({"a": [0.2, 0.2, 0.2, 0.2], "b": [0.4] * 4})
    rec.runs[0]._data[1:3, :] = np.nan
    idx, _ = png_indices(cells(heatmap(sp.record_to_svg(rec), "Output Activations", "death_rate")).get("href"))
    assert idx.shape == (2, 4)
    assert (idx[:, 1:3] == hm.LEVELS).all() and idx[0, 0] == int(0.2 * hm.LEVELS)


def test_worst_layers_are_named_with_their_values() -> None:
    rec = small_record({"a": [0.0, 0.1], EVIL: [0.0, 0.9], "c": [0.0, 0.5], "d": [0.9, float("nan")]})
    svg = sp.record_to_svg(rec)
    root = ET.fromstring(svg)  # valid XML although a name is hostile markup
    lines = ["".join(t.itertext()) for t in root.iter(SVG_NS + "text") if t.get("class") == "mw-static-worst"]
    assert lines == [f"highest death_rate at epoch 2: {EVIL} 0.9, c 0.5, a 0.1",
                     f"lowest activation_rate at epoch 2: {EVIL} 0.1, c 0.5, a 0.9"]
    assert "<script" not in svg
    # a long name is cut in the row label; the whole name stays in its tooltip
    row = next(t for t in root.iter(SVG_NS + "text") if t.get("class") == "mw-static-layer" and "</script>" in t.text)
    assert row.text == EVIL[:12] + "…" + EVIL[-17:] and row.find(SVG_NS + "title").text == EVIL


def test_many_layers_are_grouped_into_at_most_max_rows() -> None:
    death = {f"l{i}": [i / 130] * 3 for i in range(130)}
    root = ET.fromstring(sp.record_to_svg(small_record(death)))
    labels = [t.text for t in root.iter(SVG_NS + "text") if t.get("class") == "mw-static-layer"]
    assert len(labels) == hm.MAX_ROWS
    # 64 nearly equal groups of 130: floor(k * 130 / 64) starts each
    assert labels[0] == "l0 … l1 (2)" and labels[-1] == "l127 … l129 (3)"
    idx, _ = png_indices(cells(next(g for g in sp.iter_heatmaps(root) if g.get("data-key") == "death_rate")).get("href"))
    assert idx.shape == (hm.MAX_ROWS, 3)
    assert (np.diff(idx[:, 0].astype(int)) >= 0).all()  # the group's worst (highest) rate rises with i


def test_line_charts_keep_spikes_and_gaps_and_earlier_runs_are_faint() -> None:
    x = np.arange(1, 10_001, dtype=np.float64)
    y = np.sin(x / 50.0)
    y[4321] = 5.0
    y[7000:7010] = np.nan
    dx, dy = downsample(x, y)
    assert dx.size <= 3 * POINTS and 5.0 in dy and np.nanmin(dy) == np.nanmin(y)
    assert np.isnan(dy).sum() == 1 and (np.diff(dx) > 0).all()
    rec = small_record({"a": [0.1] * 5}, runs=5)
    g = sp.iter_groups(ET.fromstring(sp.record_to_svg(rec)))[0]
    paths = list(g.iter(SVG_NS + "path"))
    assert len(paths) == 1 + sp.MAX_EARLIER  # the current run and the last three earlier runs
    assert sum(p.get("stroke-opacity") == "0.3" for p in paths) == sp.MAX_EARLIER


def test_filters_hide_panels_modules_and_runs() -> None:
    rec = small_record({"a": [0.1] * 3, "b": [0.2] * 3}, runs=2)
    root = ET.fromstring(sp.record_to_svg(rec, filters={"hidden_modules": ["a"], "hidden_panels": ["Loss & Metrics"],
                                                        "hidden_runs": [0]}))
    assert sp.iter_groups(root) == []
    labels = [t.text for t in root.iter(SVG_NS + "text") if t.get("class") == "mw-static-layer"]
    assert [lab for lab in labels if lab] == ["b"]
    root = ET.fromstring(sp.record_to_svg(rec, filters={"hidden_runs": [0]}))
    assert all(p.get("stroke-opacity") is None for p in sp.iter_groups(root)[0].iter(SVG_NS + "path"))


def test_empty_record_and_broken_record() -> None:
    assert ET.fromstring(sp.record_to_svg(Record())).tag == SVG_NS + "svg"

    class Broken:
        runs = property(lambda self: 1 / 0)

    assert "static picture unavailable" in sp.fallback_html(Broken())


def test_the_findings_section_renders_above_the_picture(monkeypatch) -> None:
    monkeypatch.setattr(sp, "findings_section", lambda rec, hidden: f'<div class="findings">{len(rec.runs)} runs</div>')
    html = sp.fallback_html(small_record({"a": [0.1]}, runs=2))
    assert html.index('<div class="findings">2 runs</div>') < html.index("<svg")


def test_the_findings_section_leaves_out_the_runs_the_filters_hide() -> None:
    """As the widget's list: a hidden run's findings go with its lines (trial r12)."""
    rec = small_record({"a": [0.5, 0.5, 0.5], "b": [0.0, 0.0, 0.0]}, runs=2)  # layer a dead in both runs
    assert {f.run for f in rec.health.findings() if f.check == "dead_layer"} == {0, 1}
    both = sp.fallback_html(rec)
    assert "(run 1: Net, since epoch 1)" in both and "(run 2: Net, since epoch 1)" in both
    one = sp.fallback_html(rec, filters={"hidden_runs": [0]})
    assert "(run 1: Net," not in one and "(run 2: Net, since epoch 1)" in one


# --- the sibling output next to the widget -------------------------------------------------------------
def test_widget_displays_its_view_then_a_sibling_picture_refreshed_at_cell_end(monkeypatch) -> None:
    pytest.importorskip("anywidget")
    import IPython.display

    from monitorch_widget.views.widget import _ESM_PATH, MonitorWidget

    if not _ESM_PATH.is_file():
        pytest.skip("front-end bundle not built (npm run build)")
    shown: list[tuple[dict[str, Any], str | None]] = []
    updated: list[tuple[dict[str, Any], str]] = []
    monkeypatch.setattr(IPython.display, "display",
                        lambda data, **kw: shown.append((data, kw.get("display_id"))))
    monkeypatch.setattr(IPython.display, "update_display",
                        lambda data, **kw: updated.append((data, kw["display_id"])))
    rec = small_record({"a": [0.1, 0.2]})
    w = MonitorWidget(rec)
    try:
        w._ipython_display_()
        (view, view_id), (pic, pic_id) = shown
        assert view["application/vnd.jupyter.widget-view+json"]["model_id"] == w.model_id
        assert "text/html" not in view and view_id is None  # the picture is not only inside the widget's bundle
        assert pic_id and pic["text/html"].startswith(f'<div class="mw-static {sp.SIBLING_CLASS}"')
        assert sp.HIDE_WHEN_LIVE + sp.UNTRUSTED_NOTE in pic["text/html"] and "epochs" not in pic["text/html"].split("<svg")[0]
        assert "2 epochs" in pic["text/html"]
        # a cell that changed nothing leaves the picture alone; a new epoch refreshes it in place
        w._mw_refresh_fallback()
        assert updated == []
        rec.open_row(3)
        rec.plot_probabilities(3, "Output Activations", {"a": {"activation_rate": 0.5, "death_rate": 0.5}})
        rec.close_row()
        w._sync.flush()
        w._mw_refresh_fallback()
        assert [i for _, i in updated] == [pic_id] and "3 epochs" in updated[0][0]["text/html"]
        # hosts that take the bundle directly still get a picture in it
        bundle = w._repr_mimebundle_()
        data = bundle[0] if isinstance(bundle, tuple) else bundle
        assert data["text/html"].startswith('<div class="mw-static"')
        assert data["text/plain"] == "MonitorWidget(runs=1, epochs=3)"
    finally:
        w.close()


def test_numerical_per_layer_panel_spans_its_own_range() -> None:
    rec = Record()
    rec.register_tags("Output Norm", _Tag("NUMERICAL", False), lens="OutputNorm")
    rec.start_run("run 1", {"fc1": "Linear", "fc2": "Linear"})
    norms = {"fc1": [2.0, 4.0, 6.0], "fc2": [10.0, 8.0, 3.0]}
    for e in range(1, 4):
        rec.open_row(e)
        rec.plot_numerical_values(e, "Output Norm", {g: {"mean": v[e - 1]} for g, v in norms.items()})
        rec.close_row()
    svg = sp.record_to_svg(rec)
    idx, pal = png_indices(cells(heatmap(svg, "Output Norm", "mean")).get("href"))
    # colour = (value - 2) / (10 - 2) in 32 steps: 2 -> 0, 10 -> 31, 6 -> 16
    assert idx.tolist() == [[0, 8, 16], [31, 24, 4]]
    lines = ["".join(t.itertext()) for t in ET.fromstring(svg).iter(SVG_NS + "text")
             if t.get("class") == "mw-static-worst"]
    assert lines == ["highest mean at epoch 3: fc1 6, fc2 3"]


def test_dropout_modules_do_not_rank_as_the_worst_activation_rate() -> None:
    # Linear-ReLU-Dropout(0.5) twice: each Dropout's activation rate is about half its ReLU's by construction
    # (trial r4, finding 9), so the worst-layers line named the two Dropouts and no layer
    import torch
    from torch import nn

    import monitorch_widget as mw
    from monitorch_widget.lens import OutputActivation

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 16), nn.ReLU(), nn.Dropout(0.5))
    ins = mw.PyTorchInspector([OutputActivation()], visualizer="none", module=model)
    seen: dict[str, list[float]] = {"1": [], "4": []}
    hooks = [model[i].register_forward_hook(
        lambda m, a, y, k=str(i): seen[k].append(float((y.abs() > 1e-8).float().mean(0).mean()))) for i in (1, 4)]
    for _ in range(3):
        model(torch.randn(32, 6)).sum().backward()
    ins.tick_epoch()
    for h in hooks:
        h.remove()
    run = ins.history.runs[-1]
    epoch, worst = sp.worst_layers(run, "Output Activations", "activation_rate")
    by_hand = sorted((k, float(np.mean(v))) for k, v in seen.items())
    assert [w[0] for w in worst] == [k for k, _ in sorted(by_hand, key=lambda kv: kv[1])]
    assert [w[1] for w in worst] == pytest.approx(sorted(v for _, v in by_hand), rel=1e-6)
    dropout = ins.history.series("Output Activations", "2", "activation_rate")[-1]
    assert dropout < min(v for _, v in by_hand)  # it is recorded (monitorch's definition), only not ranked
    ins.detach()


def test_an_html_sanitizer_that_drops_the_svg_leaves_none_of_its_text() -> None:
    """JupyterLab shows an untrusted notebook's HTML through sanitize-html, which drops the SVG element and kept its
    text: every label of the picture as one run-on paragraph under the untrusted note (trial r11). The text is in
    CDATA sections, which an HTML parser (html.parser, like sanitize-html's htmlparser2) reads as a declaration, not
    text, while XML parsers and browsers read it as the label (ET below; browsers: tests/browser, test 2b)."""
    from html.parser import HTMLParser

    class TextInSvg(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.depth, self.text = 0, []

        def handle_starttag(self, tag, attrs):
            self.depth += tag == "svg"

        def handle_endtag(self, tag):
            self.depth -= tag == "svg"

        def handle_data(self, data):
            if self.depth and data.strip():
                self.text.append(data)

    rec = small_record({"fc1.relu": [0.1, 0.2], "fc2.relu": [0.3, 0.4]}, runs=2)
    html = sp.fallback_html(rec, sibling=True)
    parser = TextInSvg()
    parser.feed(html)
    assert parser.text == ["train_loss mean (run 1: Net)"]  # only an earlier run's line tooltip (a <title>)
    svg = sp.record_to_svg(rec)
    texts = ["".join(t.itertext()) for t in ET.fromstring(svg).iter(SVG_NS + "text")]
    assert "run 2: Net · 2 epochs · 1 earlier run (faint)" in texts and "fc1.relu" in texts
    # a name holding markup characters is escaped instead (never raw markup), and still read as written
    evil = sp.record_to_svg(small_record({EVIL: [0.1, 0.2]}))
    assert "<script" not in evil
    assert any(EVIL in "".join(t.itertext()) for t in ET.fromstring(evil).iter(SVG_NS + "text"))
    # "]]>" in a name ends no section early
    odd = sp.record_to_svg(small_record({"a]]>b & c": [0.1, 0.2]}))
    assert any("a]]>b & c" in "".join(t.itertext()) for t in ET.fromstring(odd).iter(SVG_NS + "text"))


def test_worst_layers_leave_out_rates_at_their_best_end() -> None:
    """As the widget's list: a death rate of 0 and an activation rate of 1 point at nothing (trial r11)."""
    rec = small_record({"a": [0.0, 0.0], "b": [0.0, 0.3], "c": [0.1, 0.0]})
    run = rec.runs[-1]
    assert sp.worst_layers(run, "Output Activations", "death_rate") == (2.0, [("b", 0.3)])
    assert sp.worst_layers(run, "Output Activations", "activation_rate") == (2.0, [("b", pytest.approx(0.7))])
    calm = small_record({"a": [0.0, 0.0], "b": [0.0, 0.0]})
    assert sp.worst_layers(calm.runs[-1], "Output Activations", "death_rate") == (2.0, [])
    assert "mw-static-worst" not in sp.record_to_svg(calm)
