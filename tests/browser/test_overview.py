"""The overview of a deep model and a run comparison, in real JupyterLab / Notebook 7 and the offline export.

One assertion per bullet of issue 15: size and first screen, heatmap default and a row opening its chart,
small multiples on toggle, the worst-layers summary and the warning panels' hover naming the layer, runs
with their own dash, legend entry and hover values, hiding a run from its legend entry, runs loaded from a
saved history. Writes the README screenshots docs/widget-overview.png and docs/widget-runs.png.
"""

from __future__ import annotations

import json
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
    assert f"· {worst}" in legend, legend
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
