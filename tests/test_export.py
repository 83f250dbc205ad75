"""Offline HTML export (file contents) and the static SVG fallback, without a browser."""

from __future__ import annotations

import base64
import json
import math
import re
import xml.etree.ElementTree as ET
from typing import Any

import numpy as np
import pytest

from monitorch_widget.record import Record
from monitorch_widget.views import html_export as export
from monitorch_widget.views.static_picture import fallback_html, iter_groups, record_to_svg

SVG_NS = "{http://www.w3.org/2000/svg}"
EVIL = '</script><script>window.__pwned=1</script> & "q" <b>'


class _Tag:
    def __init__(self, kind: str, big: bool, logy: bool = False) -> None:
        self.type = type("T", (), {"name": kind})()
        self.big_plot = big
        self.logy = logy


def make_record(n_epochs: int = 5, layers: tuple[str, ...] = ("conv.relu1", EVIL, "fc.relu2"),
                runs: int = 1) -> Record:
    rec = Record()
    rec.register_tags("Loss & Metrics", _Tag("NUMERICAL", True, logy=True), lens="LossMetrics")
    rec.register_tags("Output Activations", _Tag("PROBABILITY", False), lens="OutputActivation")
    for r in range(runs):
        rec.start_run(f"run {r + 1}: Net", {name: "ReLU" for name in layers})
        for e in range(1, n_epochs + 1):
            rec.open_row(e)
            rec.plot_numerical_values(e, "Loss & Metrics", {"Loss & Metrics": {"train_loss mean": 1.0 / e}},
                                      {"Loss & Metrics": {("train_loss -σ", "train_loss +σ"): (0.5 / e, 1.5 / e)}})
            rec.plot_probabilities(e, "Output Activations",
                                   {name: {"activation_rate": 0.5 + 0.01 * e, "death_rate": 0.1 * i}
                                    for i, name in enumerate(layers)})
            rec.close_row()
        rec.end()
    return rec


# --- static SVG -------------------------------------------------------------------------------------
def test_svg_is_valid_xml_with_one_group_per_chart_and_escaped_names() -> None:
    rec = make_record()
    svg = record_to_svg(rec)
    root = ET.fromstring(svg)  # raises on invalid XML, e.g. an unescaped '<' or '&' from a module name
    assert root.tag == SVG_NS + "svg"
    groups = [(g.get("data-panel"), g.get("data-group")) for g in iter_groups(root)]
    assert groups == [("Loss & Metrics", "Loss & Metrics"), ("Output Activations", "conv.relu1"),
                      ("Output Activations", EVIL), ("Output Activations", "fc.relu2")]
    # the hostile name is present as text (round-trips through XML escaping), never as markup
    texts = ["".join(t.itertext()) for t in root.iter(SVG_NS + "text")]
    assert any(EVIL[:20] in t for t in texts)
    assert "<script" not in svg and "</script>" not in svg
    # every series is drawn: two lines per layer (+ faint none), a line and a band in the big panel
    per_layer = [len(list(g.iter(SVG_NS + "path"))) for g in iter_groups(root)][1:]
    assert per_layer == [2, 2, 2]
    assert len(list(iter_groups(root)[0].iter(SVG_NS + "polygon"))) == 1


def test_svg_probability_panels_use_unit_range_and_earlier_runs_are_faint() -> None:
    rec = make_record(runs=2)
    root = ET.fromstring(record_to_svg(rec))
    g = next(g for g in iter_groups(root) if g.get("data-group") == "conv.relu1")
    labels = [t.text for t in g.iter(SVG_NS + "text") if t.get("text-anchor") == "end" and t.text]
    assert {"0", "0.5", "1"} <= set(labels)
    paths = list(g.iter(SVG_NS + "path"))
    faint = [p for p in paths if p.get("stroke-opacity") == "0.3"]
    assert len(paths) == 4 and len(faint) == 2  # two lines of run 1 (faint) + two of run 2
    # the death rate 0.0 of the current run sits on the bottom of the plot: y of y=0 equals the frame bottom
    frame = next(g.iter(SVG_NS + "rect"))
    bottom = float(frame.get("y")) + float(frame.get("height"))
    death = [p for p in paths if p.get("stroke-opacity") is None][1]
    ys = [float(v) for v in re.findall(r"[ML][\d.]+ ([\d.]+)", death.get("d"))]
    assert ys and all(abs(y - bottom) < 0.11 for y in ys)


def test_svg_long_runs_stay_compact_and_filters_apply() -> None:
    rec = make_record(n_epochs=3000, layers=("a", "b"))
    svg = record_to_svg(rec)
    assert len(svg) < 120_000  # min/max per pixel column, not 3000 points per line
    root = ET.fromstring(svg)
    assert len(iter_groups(root)) == 3
    hidden = record_to_svg(rec, filters={"hidden_modules": ["a"], "hidden_panels": ["Loss & Metrics"]})
    assert [g.get("data-group") for g in iter_groups(ET.fromstring(hidden))] == ["b"]


def test_svg_of_empty_record_and_gaps() -> None:
    assert ET.fromstring(record_to_svg(Record())).tag == SVG_NS + "svg"
    rec = make_record(n_epochs=6, layers=("a",))
    rec.runs[0]._data[2:4, :] = np.nan  # a gap of two epochs splits the line into two subpaths
    root = ET.fromstring(record_to_svg(rec))
    g = next(g for g in iter_groups(root) if g.get("data-group") == "a")
    d = next(g.iter(SVG_NS + "path")).get("d")
    assert d.count("M") == 2


def test_widget_bundle_has_view_and_static_fallback() -> None:
    pytest.importorskip("anywidget")
    from monitorch_widget.views.widget import _ESM_PATH, MonitorWidget

    if not _ESM_PATH.is_file():
        pytest.skip("front-end bundle not built (npm run build)")
    rec = make_record()
    w = MonitorWidget(rec)
    try:
        bundle = w._repr_mimebundle_()
        data = bundle[0] if isinstance(bundle, tuple) else bundle
        assert "application/vnd.jupyter.widget-view+json" in data
        assert data["application/vnd.jupyter.widget-view+json"]["model_id"] == w.model_id
        html = data["text/html"]
        assert html.startswith('<div class="mw-static"')
        svg = html[html.index("<svg"):html.index("</svg>") + 6]
        assert len(iter_groups(ET.fromstring(svg))) == 4
        assert data["text/plain"] == "MonitorWidget(runs=1, epochs=5)"  # stable repr (nbval compares it)
    finally:
        w.close()


def test_fallback_html_never_raises() -> None:
    class Broken:
        runs = property(lambda self: 1 / 0)

    assert "static picture unavailable" in fallback_html(Broken())


# --- HTML export -------------------------------------------------------------------------------------
def _payload(text: str) -> dict[str, Any]:
    m = re.search(r'<script type="application/json" id="mw-payload">(.*?)</script>', text, re.DOTALL)
    assert m, "payload script missing"
    return json.loads(m.group(1))


def test_export_writes_one_self_contained_file(tmp_path) -> None:
    rec = make_record()
    path = export.to_html(rec, tmp_path / "out.html", title="T " + EVIL)
    text = path.read_text(encoding="utf-8")
    # no external references: no src/href to http(s), no CDN
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", text, re.IGNORECASE)
    outside_payload = re.sub(r'(id="mw-payload">).*?(</script>)', r"\1\2", text, flags=re.DOTALL)
    # (the <noscript> SVG's xmlns is a name, not a request)
    assert not re.search(r"https?://", outside_payload.replace('xmlns="http://www.w3.org/2000/svg"', ""))
    assert "connect-src 'none'" in text
    # exactly two script elements: the JSON payload and the loader; user text cannot close them
    assert text.count("<script") == 2 and text.count("</script>") == 2
    assert "<title>T &lt;/script&gt;" in text

    payload = _payload(text)
    # the real bundle, byte for byte
    assert base64.b64decode(payload["bundle"]).decode("utf-8") == export.BUNDLE_PATH.read_text(encoding="utf-8")
    # the data: every binary column decodes to the record's values
    hist = payload["state"]["history"]
    run = hist["runs"][0]
    assert run["n_rows"] == 5 and run["n_cols"] == len(rec.runs[0].columns)
    data = np.frombuffer(base64.b64decode(run["data"][export.B64_KEY]), "<f8").reshape(5, -1)
    np.testing.assert_array_equal(data, rec.runs[0].data)
    epochs = np.frombuffer(base64.b64decode(run["epochs"][export.B64_KEY]), "<f8")
    assert epochs.tolist() == [1, 2, 3, 4, 5]
    assert EVIL in [c["group"] for c in run["columns"]]  # user text survives JSON escaping unchanged
    assert payload["state"]["filters"]["hidden_modules"] == []


def test_export_json_escaping_roundtrips_hostile_text() -> None:
    s = export._json_for_script({"k": EVIL + "\u2028\u2029<!--"})
    assert "<" not in s and ">" not in s and "&" not in s and "\u2028" not in s
    assert json.loads(s) == {"k": EVIL + "\u2028\u2029<!--"}


def test_export_accepts_an_inspector_and_rejects_junk(tmp_path) -> None:
    class Holder:
        history = make_record(n_epochs=2)

    text = export.render_html(Holder())
    assert _payload(text)["state"]["history"]["runs"][0]["n_rows"] == 2
    with pytest.raises(TypeError):
        export.render_html(object())


def test_export_non_finite_status_values_are_valid_json() -> None:
    rec = make_record(n_epochs=1)
    rec.runs[0].times[0] = math.nan  # sec_per_epoch becomes NaN
    payload = _payload(export.render_html(rec, bundle="export default {}"))
    assert payload["state"]["history"]["status"]["sec_per_epoch"] is None
