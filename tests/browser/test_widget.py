"""The monitorch_widget front-end in a real JupyterLab / Notebook 7, driven by a real training loop.

DOM contract (agreed with the front-end): root ``.mw-root``; charts ``.mw-panel`` with ``data-panel``
(panel tag), ``data-group`` (module name, or the panel tag for big panels) and ``data-epochs`` (epochs drawn
for the current run); status line ``.mw-status``; filter checkboxes (checked = shown)
``input[data-filter-module|type|panel|run]``.
"""

from __future__ import annotations

import io
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

REPO_ROOT = Path(__file__).resolve().parents[2]
N_EPOCHS = 25
LOSS_TAGS = {"Loss & Metrics", "Loss"}


@pytest.fixture(scope="module")
def widget_code_present() -> None:
    """The widget and its built bundle must exist: a missing file fails, it never skips."""
    pkg = REPO_ROOT / "monitorch_widget"
    missing = [p for p in ("views/widget.py", "inspector.py", "__init__.py", "lens/__init__.py",
                           "static/widget.js") if not (pkg / p).exists()]
    if missing:
        pytest.fail(f"monitorch_widget is missing {missing} (run `npm ci && npm run build` for static/)")


SETUP_CELL = """
import time
import torch, torch.nn as nn
from monitorch_widget import PyTorchInspector
from monitorch_widget.lens import LossMetrics, OutputActivation, ParameterGradientActivation

torch.manual_seed(0)
model = nn.Sequential(
    nn.Linear(4, 16), nn.ReLU(),
    nn.Linear(16, 16), nn.ReLU(),
    nn.Dropout(0.2),
    nn.Linear(16, 2),
)
loss_fn = nn.CrossEntropyLoss()
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
X = torch.randn(256, 4)
Y = (X[:, 0] + X[:, 1] > 0).long()

inspector = PyTorchInspector(
    [LossMetrics(loss_fn=loss_fn), OutputActivation(), ParameterGradientActivation()],
    visualizer='widget',
)
inspector.attach(model)
display(inspector.widget)
"""

TRAIN_CELL = f"""
N_EPOCHS = {N_EPOCHS}
for epoch in range(N_EPOCHS):
    model.train()
    for i in range(0, 256, 64):
        optimizer.zero_grad()
        loss = loss_fn(model(X[i:i + 64]), Y[i:i + 64])
        loss.backward()
        optimizer.step()
    inspector.tick_epoch()
    time.sleep(0.3)
print("TRAINED", N_EPOCHS)
"""

JS_PANELS = """() => [...document.querySelectorAll('.mw-root .mw-panel')].map(e => ({
    panel: e.dataset.panel, group: e.dataset.group,
    epochs: e.dataset.epochs === undefined ? null : Number(e.dataset.epochs),
    visible: !!(e.offsetWidth || e.offsetHeight || e.getClientRects().length),
}))"""


def panels(nb) -> list[dict]:
    return nb.page.evaluate(JS_PANELS)


def groups_of(ps: list[dict], tag: str) -> set[str]:
    return {p["group"] for p in ps if p["panel"] == tag}


def max_epochs(ps: list[dict]) -> int:
    return max((p["epochs"] or 0 for p in ps), default=0)


def toggle_filter(nb, attr: str, value: str, checked: bool) -> None:
    """Set a filter checkbox the way a user does (a click), even if it sits in a closed menu."""
    sel = f"input[data-filter-{attr}]"
    handle = nb.page.evaluate_handle(
        "([sel, attr, v]) => [...document.querySelectorAll('.mw-root ' + sel)]"
        ".find(e => e.dataset['filter' + attr[0].toUpperCase() + attr.slice(1)] === v) || null",
        [sel, attr, value],
    ).as_element()
    assert handle is not None, f"no filter checkbox {sel}={value!r}"
    if handle.is_checked() == checked:
        raise AssertionError(f"filter {attr}={value!r} already {'checked' if checked else 'unchecked'}")
    if handle.is_visible():
        handle.click()
    else:
        handle.evaluate("e => e.click()")
    assert handle.is_checked() == checked


def wait_group_visibility(nb, group: str, visible: bool, timeout_ms: int = 1000) -> None:
    nb.page.wait_for_function(
        """([g, vis]) => {
            const ps = [...document.querySelectorAll('.mw-root .mw-panel')].filter(e => e.dataset.group === g);
            if (!ps.length) return false;
            return ps.every(e => !!(e.offsetWidth || e.offsetHeight || e.getClientRects().length) === vis);
        }""",
        arg=[group, visible],
        timeout=timeout_ms,
        polling=50,
    )


def check_layout(ps: list[dict]) -> None:
    tags = {p["panel"] for p in ps}
    assert tags & LOSS_TAGS, f"no loss panel among {sorted(tags)}"
    # Default OutputActivation looks at activations and dropout: ReLU "1", "3" and Dropout "4".
    assert {"1", "3", "4"} <= groups_of(ps, "Output Activations"), ps
    assert not {"0", "2", "5"} & groups_of(ps, "Output Activations"), (
        "Linear layers have no output activation"
    )
    # Parameter gradients: the three Linear layers.
    assert {"0", "2", "5"} <= groups_of(ps, "Weight Gradient Activation"), ps
    assert {"0", "2", "5"} <= groups_of(ps, "Bias Gradient Activation"), ps
    assert "Warning Output Activations" in tags and "Warning Gradient Activations" in tags, sorted(tags)


def luminance(png: bytes) -> float:
    from PIL import Image

    img = Image.open(io.BytesIO(png)).convert("L")
    hist = img.histogram()
    return sum(i * n for i, n in enumerate(hist)) / max(1, sum(hist))


@pytest.mark.parametrize("jupyter_server", ["lab", "notebook"], indirect=True)
def test_widget_live_filters_and_reload(widget_code_present, jupyter_server, open_notebook, screenshot_dir):
    nb = open_notebook(jupyter_server, [SETUP_CELL, TRAIN_CELL])
    page = nb.page
    nb.run_all()
    nb.wait_running(cell=1, timeout=90)
    page.wait_for_selector(".mw-root .mw-panel", timeout=30_000)

    # --- while [*]: every expected panel is there and the drawn epochs rise.
    seen: list[int] = []
    layout_ok = False
    deadline = time.monotonic() + 6
    while time.monotonic() < deadline and nb.running_cell_index() == 1:
        ps = panels(nb)
        if not layout_ok and max_epochs(ps) >= 2:
            check_layout(ps)
            layout_ok = True
        seen.append(max_epochs(ps))
        if layout_ok and len(set(seen)) >= 3:
            break
        page.wait_for_timeout(250)
    assert nb.running_cell_index() == 1, (
        f"training ended before the live checks were done (epochs seen {seen})"
    )
    assert layout_ok, f"panels never showed 2 epochs while training: {panels(nb)}"
    assert len(set(seen)) >= 3 and seen == sorted(seen), f"drawn epochs did not rise while [*]: {seen}"
    assert seen[-1] < N_EPOCHS
    assert page.locator(".mw-root .mw-status").count() >= 1
    assert page.locator(".mw-root .mw-status").first.inner_text().strip()

    # --- toggle module "1" off and on while the kernel is busy: acts in the browser at once.
    wait_group_visibility(nb, "1", True)
    toggle_filter(nb, "module", "1", checked=False)
    wait_group_visibility(nb, "1", False, timeout_ms=1000)
    ps = panels(nb)
    assert all(p["visible"] for p in ps if p["group"] == "3"), "hiding module 1 hid module 3 too"
    assert nb.running_cell_index() == 1, "kernel finished before the hide was checked"
    toggle_filter(nb, "module", "1", checked=True)
    wait_group_visibility(nb, "1", True, timeout_ms=1000)
    assert nb.running_cell_index() == 1, "kernel finished before the un-hide was checked"

    # --- end of run: the full history is drawn.
    nb.wait_idle(timeout=120)
    nb.assert_no_errors()
    assert f"TRAINED {N_EPOCHS}" in nb.output_texts()[1]
    page.wait_for_function(
        f"() => {{ const ps = [...document.querySelectorAll('.mw-root .mw-panel')];"
        f" return ps.length && ps.every(e => e.dataset.epochs === '{N_EPOCHS}'); }}",
        timeout=10_000,
    )
    before = {(p["panel"], p["group"]) for p in panels(nb)}

    # --- reload the page: a new view built from the synced history shows everything.
    nb.reload()
    page.wait_for_selector(".mw-root .mw-panel", timeout=30_000)
    page.wait_for_function(
        f"() => {{ const ps = [...document.querySelectorAll('.mw-root .mw-panel')];"
        f" return ps.length && ps.every(e => e.dataset.epochs === '{N_EPOCHS}'); }}",
        timeout=20_000,
    )
    after = panels(nb)
    check_layout(after)
    assert {(p["panel"], p["group"]) for p in after} == before
    assert all(p["visible"] for p in after if p["group"] == "1"), (
        "module 1 should be shown again after reload"
    )

    if jupyter_server.app == "lab":
        page.wait_for_timeout(300)
        light = nb.screenshot("widget-light.png", ".mw-root").read_bytes()
        nb.set_theme("JupyterLab Dark")
        try:
            page.wait_for_timeout(500)
            dark = nb.screenshot("widget-dark.png", ".mw-root").read_bytes()
        finally:
            nb.set_theme("JupyterLab Light")
        l_light, l_dark = luminance(light), luminance(dark)
        assert l_dark < l_light - 40, (
            f"widget does not follow the dark theme (luminance {l_light:.0f} -> {l_dark:.0f})"
        )


# No "." allowed in module names: the handler sets the global __xss by plain assignment.
XSS_NAME = "<img src=x onerror=__xss=1>"

XSS_CELL = f"""
import torch, torch.nn as nn
from monitorch_widget import PyTorchInspector
from monitorch_widget.lens import LossMetrics, OutputActivation, ParameterGradientActivation

torch.manual_seed(0)
model = nn.Sequential()
model.add_module("inp", nn.Linear(4, 8))
model.add_module({XSS_NAME!r}, nn.ReLU())
model.add_module("out", nn.Linear(8, 2))
loss_fn = nn.CrossEntropyLoss()
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
X = torch.randn(64, 4)
Y = (X[:, 0] > 0).long()
inspector = PyTorchInspector(
    [LossMetrics(loss_fn=loss_fn), OutputActivation(), ParameterGradientActivation()],
    visualizer='widget',
)
inspector.attach(model)
display(inspector.widget)
for epoch in range(3):
    optimizer.zero_grad()
    loss_fn(model(X), Y).backward()
    optimizer.step()
    inspector.tick_epoch()
"""


def test_module_name_is_text_not_html(widget_code_present, jupyter_lab, open_notebook):
    nb = open_notebook(jupyter_lab, [XSS_CELL])
    page = nb.page
    nb.run_all_and_wait(timeout=90)
    nb.assert_no_errors()
    page.wait_for_selector(".mw-root .mw-panel", timeout=30_000)
    page.wait_for_function(
        "(n) => [...document.querySelectorAll('.mw-root .mw-panel')].some(e => e.dataset.group === n)",
        arg=XSS_NAME,
        timeout=10_000,
    )
    page.wait_for_timeout(500)  # give a would-be onerror handler time to fire
    res = page.evaluate(
        """(n) => {
            const roots = [...document.querySelectorAll('.mw-root')];
            return {
                roots: roots.length,
                imgs: roots.reduce((k, r) => k + r.querySelectorAll('img').length, 0),
                imgX: document.querySelectorAll('img[src="x"]').length,
                xss: typeof window.__xss,
                text: roots.some(r => r.textContent.includes(n)),
                filter: [...document.querySelectorAll('.mw-root input[data-filter-module]')]
                    .some(e => e.dataset.filterModule === n),
            };
        }""",
        XSS_NAME,
    )
    assert res["roots"] >= 1
    assert res["xss"] == "undefined", "module name was executed as HTML"
    assert res["imgs"] == 0 and res["imgX"] == 0, res
    assert res["text"], "the module name should be shown literally as text"
    assert res["filter"], "the module should have its filter checkbox"


NOTICE_CELL = """
import torch, torch.nn as nn
from monitorch_widget import PyTorchInspector
from monitorch_widget.lens import LossMetrics, OutputActivation

class Functional(nn.Module):  # its ReLU is a function: OutputActivation watches nothing (a notice)
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(4, 8), nn.Linear(8, 2)
    def forward(self, x):
        return self.fc2(nn.functional.relu(self.fc1(x)))

torch.manual_seed(0)
model, loss_fn = Functional(), nn.CrossEntropyLoss()
opt = torch.optim.SGD(model.parameters(), lr=0.1)
X = torch.randn(64, 4); Y = (X[:, 0] > 0).long()
inspector = PyTorchInspector([LossMetrics(), OutputActivation()], visualizer='widget')
inspector.attach(model)
display(inspector.widget)

def epoch(nan=False):
    for i in range(4):
        loss = loss_fn(model(X), Y); opt.zero_grad(); loss.backward(); opt.step()
        inspector.push_loss(float('nan') if nan and i == 0 else loss.item(), train=True)
    inspector.tick_epoch()

epoch()
"""


NOTICE_ONLY_CELL = """
model2 = Functional()
opt2 = torch.optim.SGD(model2.parameters(), lr=0.1)
inspector2 = PyTorchInspector([LossMetrics(), OutputActivation()], visualizer='widget')
inspector2.attach(model2)
display(inspector2.widget)
for i in range(4):
    loss = loss_fn(model2(X), Y); opt2.zero_grad(); loss.backward(); opt2.step()
    inspector2.push_loss(loss.item(), train=True)
inspector2.tick_epoch()
"""


def test_header_counts_notices_apart_from_problems(widget_code_present, jupyter_lab, open_notebook):
    """A notice alone: "1 note", muted, no warning sign; with a NaN loss too: "⚠ 1 problem · 1 note", the
    problem listed first."""
    nb = open_notebook(jupyter_lab, [NOTICE_CELL, "epoch(nan=True)", NOTICE_ONLY_CELL])
    page = nb.page
    nb.run_all_and_wait(timeout=120)
    nb.assert_no_errors()
    page.wait_for_function("() => document.querySelectorAll('.mw-root').length === 2", timeout=30_000)
    # the second widget: a notice only
    only = page.locator(".mw-root").nth(1)
    page.wait_for_function("(e) => e.dataset.notices === '1'", arg=only.locator(".mw-status").element_handle(),
                           timeout=30_000)
    assert only.locator(".mw-status").get_attribute("data-problems") == "0"
    note = only.locator(".mw-problems")
    assert note.is_visible() and note.inner_text() == "1 note" and note.get_attribute("data-kind") == "notices"
    flag = page.locator(".mw-root").nth(0).locator(".mw-problems")
    status = page.locator(".mw-root").nth(0).locator(".mw-status")
    assert note.evaluate("e => getComputedStyle(e).color") != flag.evaluate("e => getComputedStyle(e).color")
    page.wait_for_function("(e) => e.dataset.problems === '1'", arg=status.element_handle(), timeout=30_000)
    assert flag.inner_text() == "⚠ 1 problem · 1 note" and flag.get_attribute("data-kind") == "problems"
    assert status.get_attribute("data-notices") == "1"
    flag.click()
    items = page.locator(".mw-root").nth(0).locator(".mw-problem-list li")
    assert [items.nth(i).get_attribute("data-kind") for i in range(items.count())] == ["warning", "notice"]
    assert "non-finite" in items.nth(0).inner_text() and "watches no module" in items.nth(1).inner_text()
    # the note is drawn muted, the problem in the warning colour
    colors = items.evaluate_all("ls => ls.map(l => getComputedStyle(l).color)")
    assert colors[0] != colors[1], colors
