"""The overview of a deep model and a run comparison, in real JupyterLab / Notebook 7 and the offline export.

One assertion per bullet of issue 15: size and first screen, heatmap default and a row opening its chart,
small multiples on toggle, the worst-layers summary and the warning panels' hover naming the layer, runs
with their own dash, legend entry and hover values, hiding a run from its legend entry, runs loaded from a
saved history. Writes the README screenshots docs/widget-overview.png and docs/widget-runs.png.
"""

from __future__ import annotations

import json
import struct
import sys
from pathlib import Path
from typing import Any

import pytest
from torch import nn

from monitorch_widget import PyTorchInspector
from monitorch_widget.lens import LossMetrics, OutputActivation, ParameterGradientActivation
from monitorch_widget.views.html_export import to_html

sys.path.insert(0, str(Path(__file__).resolve().parent))
from deep_models import DEAD, EPOCHS, deep_mlp, train, worst_death_layer  # noqa: E402

pytestmark = pytest.mark.browser

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCS = REPO_ROOT / "docs"
HERE = str(Path(__file__).resolve().parent)

DEEP_CELLS = [
    f"""
import sys, json; sys.path.insert(0, {HERE!r})
from torch import nn
from deep_models import deep_mlp, train, worst_death_layer
from monitorch_widget import PyTorchInspector
from monitorch_widget.lens import LossMetrics, OutputActivation, ParameterGradientActivation
loss_fn = nn.CrossEntropyLoss()
inspector = PyTorchInspector([LossMetrics(loss_fn=loss_fn), OutputActivation(), ParameterGradientActivation()],
                             visualizer='widget')
display(inspector.widget)
train(inspector, deep_mlp(40), loss_fn)
""",
    "print('EXPECT', json.dumps({'worst': worst_death_layer(inspector.history)}))",
]

RUNS_CELLS = [
    f"""
import sys, json; sys.path.insert(0, {HERE!r})
from torch import nn
from deep_models import deep_mlp, train
from monitorch_widget import PyTorchInspector, load
from monitorch_widget.lens import LossMetrics, OutputActivation
loss_fn = nn.CrossEntropyLoss()
inspector = PyTorchInspector([LossMetrics(loss_fn=loss_fn), OutputActivation()], visualizer='widget')
display(inspector.widget)
for lr in (0.01, 0.05, 0.2):
    train(inspector, deep_mlp(3, seed=2), loss_fn, epochs=6, lr=lr, run_name=f"lr {{lr}}")
""",
    """
inspector.history.save('runs.json')
display(load('runs.json'))
""",
]

JS_FIRST_SCREEN = """(root) => {
    const r = root.getBoundingClientRect();
    const item = root.querySelector('.mw-worst-line[data-key="death_rate"] .mw-worst-item[data-rank="1"] .mw-link');
    const ir = item ? item.getBoundingClientRect() : null;
    return {height: r.height, name: item ? item.textContent : null,
            bottom: ir ? ir.bottom - r.top : null, visible: item ? item.checkVisibility() : false};
}"""


def expect(nb: Any) -> dict[str, Any]:
    for text in nb.output_texts():
        for line in text.splitlines():
            if line.startswith("EXPECT "):
                return json.loads(line[len("EXPECT "):])
    raise AssertionError(f"no EXPECT line in {nb.output_texts()}")


def check_first_screen(root: Any, worst: str) -> None:
    got = root.evaluate(JS_FIRST_SCREEN)
    assert got["height"] <= 3000, got
    assert got["name"] == worst and got["visible"] and got["bottom"] <= 1000, got


@pytest.mark.parametrize("jupyter_server", ["lab", "notebook"], indirect=True)
def test_deep_model_overview(jupyter_server, open_notebook):
    nb = open_notebook(jupyter_server, DEEP_CELLS)
    nb.run_all_and_wait(timeout=300)
    nb.assert_no_errors()
    worst = expect(nb)["worst"]
    assert worst == f"relu{DEAD}"  # the block built to die (deep_models.py)
    page = nb.page
    root = page.locator(".mw-root").first
    page.wait_for_function(
        f"() => document.querySelector('.mw-status')?.dataset.epoch === '{EPOCHS}'", timeout=30_000)
    # the cell ended: training stopped, the status says so
    page.wait_for_function("() => document.querySelector('.mw-status')?.dataset.state === 'done'", timeout=30_000)
    # size and first screen: the widget fits 3000 px; the dying layer is named in its top 1000 px
    check_first_screen(root, worst)
    # heatmap by default, one row per layer, names as text
    sec = root.locator('section[data-section="Output Activations"]')
    assert sec.get_attribute("data-mode") == "heatmap"
    assert sec.locator(".mw-heat-row").all_text_contents() == [f"relu{i}" for i in range(40)]
    # a row opens the layer's full chart, drawn with every epoch
    sec.locator(f'.mw-heat-row[data-layer="{worst}"]').click()
    chart = sec.locator(f'.mw-panel[data-group="{worst}"]')
    page.wait_for_function(
        f"(e) => e.dataset.drawnEpochs === '{EPOCHS}' && e.offsetHeight > 0", arg=chart.element_handle())
    # the warning panel's hover names the layer holding the worst death rate
    over = root.locator('.mw-panel[data-panel="Warning Output Activations"] .u-over')
    box = over.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    legend = root.locator('.mw-panel[data-panel="Warning Output Activations"] .u-legend').inner_text()
    assert f"· layer {worst}" in legend, legend
    page.mouse.move(0, 0)
    if jupyter_server.app == "lab":
        DOCS.mkdir(exist_ok=True)
        page.evaluate("document.querySelector('.mw-root').setAttribute('data-shot', 'overview')")
        shot = nb.screenshot("widget-overview.png", '.mw-root[data-shot="overview"]')
        (DOCS / "widget-overview.png").write_bytes(shot.read_bytes())
    # small multiples stay available
    sec.locator(".mw-mode").click()
    page.wait_for_function(
        "(s) => s.dataset.mode === 'charts' && [...s.querySelectorAll('.mw-panel')].filter(p => p.offsetHeight > 0).length === 40",
        arg=sec.element_handle())


@pytest.mark.parametrize("jupyter_server", ["lab", "notebook"], indirect=True)
def test_three_run_comparison(jupyter_server, open_notebook):
    nb = open_notebook(jupyter_server, RUNS_CELLS)
    nb.run_all_and_wait(timeout=300)
    nb.assert_no_errors()
    page = nb.page
    names = ["lr 0.01", "lr 0.05", "lr 0.2"]
    live, loaded = page.locator(".mw-root").nth(0), page.locator(".mw-root").nth(1)
    for root in (live, loaded):  # a saved history's runs behave as the live ones
        assert root.locator(".mw-run").all_text_contents() == names
        loss = root.locator(".mw-big .mw-panel").first
        page.wait_for_function("(e) => e.dataset.drawnEpochs === '6'", arg=loss.element_handle())
        legend = loss.locator(".u-legend")
        # each run its own legend entry; not hovering, the latest values are shown
        for n in names:
            assert f"· {n}" in legend.inner_text()
        assert "–" not in legend.locator(".u-value").all_text_contents()[1:4]
        # hover values for every run
        box = loss.locator(".u-over").bounding_box()
        page.mouse.move(box["x"] + box["width"] * 0.3, box["y"] + box["height"] / 2)
        values = legend.locator(".u-value").all_text_contents()
        assert all(v not in ("", "–") for v in values[:4]), values
        page.mouse.move(0, 0)
    # a small multiple's one-line legend lists the earlier runs' values after the current run's
    small = live.locator(".mw-grid .mw-panel").first
    page.wait_for_function("(e) => e.dataset.drawnEpochs === '6'", arg=small.element_handle())
    first = small.locator(".u-legend .u-value").nth(1).inner_text()
    assert "· lr 0.01 " in first and "· lr 0.05 " in first and "–" not in first, first
    # the header counts problems and notices apart: no warning sign for notices alone
    status = live.locator(".mw-status")
    n_problems, n_notices = int(status.get_attribute("data-problems")), int(status.get_attribute("data-notices"))
    flag = live.locator(".mw-problems")
    if n_problems == 0 and n_notices:
        assert flag.get_attribute("data-kind") == "notices" and "⚠" not in flag.inner_text(), flag.inner_text()
    assert n_problems == 0 or flag.inner_text().startswith(f"⚠ {n_problems} problem")
    # each earlier run drawn with its own dash
    dashes = live.locator(".mw-run line").evaluate_all("ls => ls.map(l => l.getAttribute('stroke-dasharray'))")
    assert dashes[2] is None and dashes[0] and dashes[1] and dashes[0] != dashes[1], dashes
    if jupyter_server.app == "lab":
        page.evaluate("document.querySelector('.mw-root').setAttribute('data-shot', 'runs')")
        shot = nb.screenshot("widget-runs.png", '.mw-root[data-shot="runs"]')
        DOCS.mkdir(exist_ok=True)
        (DOCS / "widget-runs.png").write_bytes(shot.read_bytes())
    # clicking a run's legend entry hides it from every chart
    live.locator('.mw-run[data-run="0"]').click()
    loss = live.locator(".mw-big .mw-panel").first
    page.wait_for_function(
        "(e) => !e.querySelector('.u-legend').innerText.includes('lr 0.01')", arg=loss.element_handle())
    assert live.locator('.mw-run[data-run="0"]').get_attribute("data-hidden") == "1"
    small = live.locator(".mw-grid .mw-panel").first
    page.wait_for_function("(e) => !e.querySelector('.u-legend').innerText.includes('lr 0.01')",
                           arg=small.element_handle())


def test_export_of_a_deep_model_fits_the_first_screen(chromium_browser: Any, tmp_path: Path) -> None:
    loss_fn = nn.CrossEntropyLoss()
    ins = PyTorchInspector([LossMetrics(loss_fn=loss_fn), OutputActivation(), ParameterGradientActivation()],
                           visualizer="none")
    train(ins, deep_mlp(40), loss_fn)
    ins.detach()
    worst = worst_death_layer(ins.history)
    path = to_html(ins.history, tmp_path / "deep.html")
    context = chromium_browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        page = context.new_page()
        page.goto(path.as_uri())
        page.wait_for_function("() => document.documentElement.dataset.mwReady === '1'", timeout=30_000)
        check_first_screen(page.locator(".mw-root").first, worst)
    finally:
        context.close()


READING_CELLS = [
    f"""
import sys; sys.path.insert(0, {HERE!r})
import torch
from torch import nn
from deep_models import deep_mlp
from monitorch_widget import PyTorchInspector
from monitorch_widget.lens import LossMetrics, OutputActivation, ParameterGradientActivation
loss_fn = nn.CrossEntropyLoss()
inspector = PyTorchInspector([LossMetrics(loss_fn=loss_fn), OutputActivation(), ParameterGradientActivation()],
                             visualizer='widget')
display(inspector.widget)
model = deep_mlp(3, seed=3)
opt = torch.optim.SGD(model.parameters(), lr=0.05)
inspector.attach(model)
x = torch.randn(128, 8); y = (x[:, 0] > 0).long()
for epoch in (1, 2, 3, 5, 6):  # epoch 4 has no data: a gap
    for i in range(0, 128, 32):
        opt.zero_grad(); loss_fn(model(x[i:i + 32]), y[i:i + 32]).backward(); opt.step()
    inspector.tick_epoch(epoch)
""",
    "display(inspector.widget)  # a second view of the same model",
]


def _ranges(root: Any) -> list[str]:
    return root.locator(".mw-panel:not([hidden]) .mw-chart").evaluate_all(
        "cs => cs.filter(c => c.offsetHeight > 0).map(c => c.dataset.xRange)")


@pytest.mark.parametrize("jupyter_server", ["lab", "notebook"], indirect=True)
def test_reading_and_interacting(jupyter_server, open_notebook, tmp_path):
    nb = open_notebook(jupyter_server, READING_CELLS)
    nb.run_all_and_wait(timeout=300)
    nb.assert_no_errors()
    page = nb.page
    one, two = page.locator(".mw-root").nth(0), page.locator(".mw-root").nth(1)
    small = one.locator('.mw-panel[data-panel="Output Activations"][data-group="relu1"]')
    page.wait_for_function("(e) => e.dataset.drawnEpochs === '5'", arg=small.element_handle())
    # not hovering: the legend shows the latest values
    assert all(v not in ("", "–") for v in small.locator(".u-value").all_text_contents()[1:3])
    # hovering a small chart shows the epoch, and nothing moves
    small.scroll_into_view_if_needed()
    height = one.evaluate("r => r.getBoundingClientRect().height")
    box = small.locator(".u-over").bounding_box()
    page.mouse.move(box["x"] + 2, box["y"] + box["height"] / 2)
    assert small.locator(".u-value").first.inner_text().strip() == "1"
    assert one.evaluate("r => r.getBoundingClientRect().height") == height
    # drag to zoom: every chart of both views shows the same x range, until a double click resets it
    full = _ranges(one)
    loss = one.locator(".mw-big .mw-panel").first.locator(".u-over")
    loss.scroll_into_view_if_needed()
    lb = loss.bounding_box()
    page.mouse.move(lb["x"] + lb["width"] * 0.2, lb["y"] + 20)
    page.mouse.down()
    page.mouse.move(lb["x"] + lb["width"] * 0.6, lb["y"] + 20, steps=5)
    page.mouse.up()
    page.wait_for_function("(r) => { const c = [...r.querySelectorAll('.mw-panel:not([hidden]) .mw-chart')]"
                           ".filter(c => c.offsetHeight > 0).map(c => c.dataset.xRange);"
                           " return c.length > 3 && new Set(c).size === 1; }", arg=two.element_handle())
    zoomed = _ranges(one)
    assert len(set(zoomed)) == 1 and zoomed != full and set(_ranges(two)) == set(zoomed), (full, zoomed)
    loss.dblclick()
    page.wait_for_function("([r, want]) => [...r.querySelectorAll('.mw-big .mw-chart')].every(c => c.dataset.xRange === want)",
                           arg=[one.element_handle(), full[0]])
    # the Filters box keeps its open state (in both views) when a filter rebuilds the layout; search
    one.locator("details.mw-filters > summary").click()
    one.locator(".mw-search").fill("relu1")
    labels = one.locator("label[data-module-label]")
    shown = [labels.nth(i).inner_text() for i in range(labels.count()) if labels.nth(i).is_visible()]
    assert shown and all("relu1" in s for s in shown), shown
    one.locator("input[data-filter-type='ReLU']").uncheck()
    page.wait_for_function("(r) => r.querySelector('section[data-section=\"Output Activations\"]').hidden",
                           arg=one.element_handle())
    assert one.locator("details.mw-filters").evaluate("d => d.open")
    assert two.locator("details.mw-filters").evaluate("d => d.open")
    # empty sections are hidden: every Output Activations layer is a ReLU; the Linear layers' stay
    assert one.locator('section[data-section="Weight Gradient Activation"]').is_visible()
    one.locator("input[data-filter-type='ReLU']").check()
    # per-chart CSV and PNG, and the whole record as CSV
    panel = one.locator(".mw-big .mw-panel").first
    panel.hover()
    with page.expect_download() as d:
        panel.locator('button[data-download="csv"]').click()
    text = Path(d.value.path()).read_text()
    rows = text.splitlines()
    # epochs 1-3, 5, 6 and the gap at epoch 4 (no value in any series: drawn as a break in the lines)
    assert rows[0].startswith("epoch,") and [r.split(",")[0] for r in rows[1:]] == ["1", "2", "3", "4", "5", "6"], text
    assert set(rows[4].split(",")[1:]) == {""}, rows[4]
    with page.expect_download() as d:
        panel.locator('button[data-download="png"]').click()
    png = Path(d.value.path()).read_bytes()
    assert d.value.suggested_filename.endswith(".png") and png[:4] == b"\x89PNG"
    # the picture says what it shows: a title above the plot and a legend row per line below it (trial r11)
    width, height = struct.unpack(">II", png[16:24])
    canvas = panel.locator("canvas").first.evaluate("c => [c.width, c.height]")
    lines = panel.locator(".u-legend tr.u-series:not(.mw-aux)").count() - 1  # x is the first row
    assert width == canvas[0] and height > canvas[1] + lines * 16, (width, height, canvas, lines)
    assert d.value.suggested_filename == "Loss.png", d.value.suggested_filename
    with page.expect_download() as d:
        one.locator("button.mw-record-csv").click()
    assert Path(d.value.path()).read_text().startswith("run,run_label,epoch,time,")
    # the x axis as the optimizer step count: 4 steps per epoch, by hand 4, 8, ..., 20
    assert full[0] == "1,6", full
    one.locator("select.mw-xaxis").select_option("step")
    page.wait_for_function("(r) => r.querySelector('.mw-big .mw-chart').dataset.xRange === '4,20'",
                           arg=one.element_handle())
    # and as wall time (seconds since the run started: within the few seconds the cell ran)
    one.locator("select.mw-xaxis").select_option("time")
    page.wait_for_function("(r) => { const [a, b] = r.querySelector('.mw-big .mw-chart').dataset.xRange.split(',').map(Number);"
                           " return a >= 0 && b > a && b < 120 && !(a === 4 && b === 20); }", arg=one.element_handle())
