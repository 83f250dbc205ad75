"""The offline HTML export in a real browser with the network blocked: the real bundle renders the record."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from monitorch_widget import PyTorchInspector
from monitorch_widget.lens import LossMetrics, OutputActivation
from monitorch_widget.views.html_export import to_html

pytestmark = pytest.mark.browser

EVIL = "<img src=x onerror=window.__x=1>"
EPOCHS = 3


def _train() -> Any:
    """A tiny MLP trained for EPOCHS epochs; one ReLU is reached through modules whose names join to EVIL
    (torch forbids '.' in a single module name, the inspector joins nested names with '.')."""
    torch.manual_seed(0)
    loss_fn = nn.MSELoss()
    ins = PyTorchInspector([LossMetrics(loss_fn=loss_fn), OutputActivation()], visualizer="none")
    model = nn.Sequential(OrderedDict([
        ("fc1", nn.Linear(4, 16)), ("relu1", nn.ReLU()),
        ("<img src=x onerror=window", nn.Sequential(OrderedDict([("__x=1>", nn.ReLU())]))),
        ("fc2", nn.Linear(16, 16)), ("relu2", nn.ReLU()), ("out", nn.Linear(16, 1)),
    ]))
    ins.attach(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    x = torch.randn(64, 4)
    y = x.sum(1, keepdim=True)
    for _ in range(EPOCHS):
        for i in range(4):
            loss = loss_fn(model(x[i * 16:(i + 1) * 16]), y[i * 16:(i + 1) * 16])
            opt.zero_grad()
            loss.backward()
            opt.step()
        ins.tick_epoch()
    ins.detach()
    return ins.history


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    record = _train()
    assert record.runs[0].groups("Output Activations") == ["relu1", EVIL, "relu2"]
    path = to_html(record, tmp_path_factory.mktemp("export") / "run.html", title="offline <b>test</b>")
    return path, record


def _open_offline(browser: Any, path: Path) -> tuple[Any, Any, list[str], list[str]]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    blocked: list[str] = []
    errors: list[str] = []

    def route(r: Any) -> None:
        url = r.request.url
        if url.startswith("file://"):
            r.continue_()
        else:
            blocked.append(url)
            r.abort()

    context.route("**/*", route)
    page = context.new_page()
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("request", lambda req: None if req.url.startswith(("file://", "blob:", "data:")) else blocked.append(req.url))
    page.goto(path.as_uri())
    page.wait_for_function("() => document.documentElement.dataset.mwReady", timeout=30_000)
    return context, page, blocked, errors


def test_export_renders_offline_and_is_interactive(chromium_browser: Any, exported: tuple[Path, Any]) -> None:
    path, record = exported
    context, page, blocked, errors = _open_offline(chromium_browser, path)
    try:
        assert page.evaluate("() => document.documentElement.dataset.mwReady") == "1", errors
        # every panel of the record is drawn, with the right number of epochs
        groups = record.runs[0].groups("Output Activations")
        for g in groups:
            loc = page.locator(".mw-panel[data-panel='Output Activations']").filter(
                has=page.locator(".mw-panel-title", has_text=g))
            assert loc.count() == 1, g
        cells = page.eval_on_selector_all(".mw-panel", "els => els.map(e => [e.dataset.panel, e.dataset.group, "
                                                           "e.dataset.epochs])")
        assert {(p, g) for p, g, _ in cells} >= {("Output Activations", g) for g in groups}
        assert {(p, g) for p, g, _ in cells} >= {(t, t) for t in ("Loss", "Warning Output Activations")}
        assert all(e == str(EPOCHS) for _, _, e in cells), cells
        # a canvas really has ink on it
        ink = page.evaluate("""() => {
            const c = document.querySelector(".mw-panel[data-group='relu1'] canvas");
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;
            return n; }""")
        assert ink > 100

        # the module name made of HTML stays text: no element was created from it, no handler ran
        assert page.evaluate("() => window.__x") is None
        assert page.locator("#mw-app img").count() == 0
        evil_attr = page.eval_on_selector_all(".mw-panel[data-panel='Output Activations']",
                                              "els => els.map(e => e.getAttribute('data-group'))")
        assert EVIL in evil_attr
        assert page.locator(".mw-panel-title", has_text=EVIL).count() == 1
        # title escaped too
        assert page.locator("header.mw-export-head h1").inner_text() == "offline <b>test</b>"

        # hover: uPlot's legend shows the values under the cursor
        panel = page.locator(".mw-panel[data-group='relu1']")
        before = panel.locator(".u-legend").inner_text()
        box = panel.locator("canvas").first.bounding_box()
        assert box is not None
        page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.5)
        page.wait_for_function(
            "(b) => document.querySelector(\".mw-panel[data-group='relu1'] .u-legend\").innerText !== b", arg=before)

        # filter: hide one module -> its panel is hidden, the others stay
        page.locator("details.mw-filters > summary").click()
        page.locator("input[data-filter-module='relu2']").uncheck()
        page.wait_for_function("() => document.querySelector(\".mw-panel[data-group='relu2']\").hidden")
        assert page.locator(".mw-panel[data-group='relu1']").is_visible()
        assert page.evaluate("() => window.__mw.model.get('filters').hidden_modules") == ["relu2"]
        # and back
        page.locator("input[data-filter-module='relu2']").check()
        page.wait_for_function("() => !document.querySelector(\".mw-panel[data-group='relu2']\").hidden")

        # log toggle of a numerical panel goes through the in-page model
        page.locator("input[data-logy='Loss']").check()
        page.wait_for_function("() => window.__mw.model.get('filters').logy['Loss'] === true")

        assert blocked == [], f"the export tried to reach the network: {blocked}"
        assert not [e for e in errors if "Content Security Policy" in e], errors
    finally:
        context.close()


def test_export_applies_a_delta_through_the_shim(chromium_browser: Any, exported: tuple[Path, Any]) -> None:
    """The page's model stand-in feeds protocol-2b messages to the bundle like the kernel's comm does."""
    path, record = exported
    context, page, blocked, _ = _open_offline(chromium_browser, path)
    try:
        n_cols = len(record.runs[0].columns)
        page.evaluate("""([row, nCols]) => {
            const k = nCols;
            const runs = new Int32Array(k).fill(0), rows = new Int32Array(k).fill(row);
            const cols = Int32Array.from({length: k}, (_, i) => i), vals = new Float64Array(k).fill(0.5);
            window.__mw.deliver({type: "delta", seq: 1, new_runs: [], new_panels: [], new_columns: [],
                rows: [{run: 0, row, epoch: row + 1, time: row, provisional: false}], cells: {count: k},
                problems: []}, [runs.buffer, rows.buffer, cols.buffer, vals.buffer]);
        }""", [EPOCHS, n_cols])
        page.wait_for_function(f"() => document.querySelector(\".mw-panel[data-group='relu1']\").dataset.epochs"
                               f" === '{EPOCHS + 1}'")
        assert blocked == []
    finally:
        context.close()
