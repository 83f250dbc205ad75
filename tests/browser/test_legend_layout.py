"""The big charts' legend, in Chromium: uPlot with its own CSS and ours (js/styles.css), no server. Trial r11: in a
two-run comparison with smoothing, a label wider than the chart broke whole onto a line of its own below its colour
marker, and the label's colon onto the next line. Trial r12: a comparison of 24 layers over two runs listed 48
legend rows under its chart, a screen long."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def _chart(chromium_browser: Any, labels: list[str], wrap: str) -> Any:
    """A page holding one uPlot chart (300 px wide) of ``labels``' lines inside ``wrap``'s elements."""
    css = (ROOT / "node_modules/uplot/dist/uPlot.min.css").read_text() + (ROOT / "js/styles.css").read_text()
    script = (ROOT / "node_modules/uplot/dist/uPlot.iife.min.js").read_text()
    page = chromium_browser.new_page(viewport={"width": 500, "height": 600})
    body = wrap.replace("{}", '<div id="c"></div>')
    page.set_content(f"<html><head><style>{css}</style><script>{script}</script></head><body>{body}</body></html>")
    page.evaluate("""(labels) => new uPlot({width: 300, height: 150, legend: {live: true},
        series: [{}, ...labels.map((label) => ({label, stroke: "red"}))]},
        [[1, 2], ...labels.map(() => [1, 2])], document.getElementById("c"))""", labels)
    return page


def test_a_long_legend_label_wraps_after_its_marker_with_its_colon(chromium_browser: Any) -> None:
    labels = ["train_loss mean · SGD lr 0.05 (smoothed)", "train_loss mean · run 1: Sequential (smoothed)"]
    page = _chart(chromium_browser, labels, '<div class="mw-root" style="width:300px">{}</div>')
    try:
        rows = page.evaluate("""() => [...document.querySelectorAll('.u-legend tr.u-series')].slice(1).map((tr) => {
            const th = tr.querySelector('th'), label = tr.querySelector('.u-label');
            const lines = label.getClientRects(), marker = tr.querySelector('.u-marker').getBoundingClientRect();
            const colon = getComputedStyle(th, '::after').content;
            return {marker: marker.top + marker.height / 2, first: lines[0].top + lines[0].height / 2,
                    last: lines[lines.length - 1].bottom, lines: lines.length, th: th.getBoundingClientRect().bottom,
                    colon};
        })""")
        assert len(rows) == 2, json.dumps(rows)
        assert rows[1]["lines"] >= 2, rows  # wider than the chart: it does wrap
        for row in rows:
            assert abs(row["marker"] - row["first"]) <= 3, row  # the marker sits on the label's first line
            assert row["colon"] == '":"' and row["th"] - row["last"] <= 3, row  # no line holding the colon alone
    finally:
        page.close()


def test_a_big_chart_of_many_lines_keeps_its_legend_in_a_scrolling_box(chromium_browser: Any) -> None:
    labels = [f"transformer.h.{i}.mlp.act · lr 1e-2" for i in range(24)]
    page = _chart(chromium_browser, labels, '<div class="mw-root"><div class="mw-big">{}</div></div>')
    try:
        shown, whole, row = page.evaluate("""() => { const l = document.querySelector('.u-legend');
            return [l.clientHeight, l.scrollHeight, l.querySelector('tr.u-series').getBoundingClientRect().height]; }""")
        assert shown < whole and shown <= 8 * row, (shown, whole, row)  # the rest a scroll away
    finally:
        page.close()
