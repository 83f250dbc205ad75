"""Offline HTML export (file contents), without a browser."""

from __future__ import annotations

import base64
import json
import math
import re
from typing import Any

import numpy as np
import pytest

from monitorch_widget.record import Record
from monitorch_widget.views import html_export as export

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


# The static SVG (record_to_svg, fallback_html) is tested in tests/test_static_picture.py.


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
