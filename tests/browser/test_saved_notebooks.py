"""Saved notebooks show the plots: the four outcomes of issue 14, in a real JupyterLab + Chromium.

One small notebook (a 6-block MLP, three lenses, 5 epochs; the widget displayed before training) is run and
saved twice by JupyterLab: once with its defaults (no widget state) and once with the widget manager's
``saveState`` setting on. Then, each a test:

1. saved with widget state, reopened with a fresh kernel: the widget itself draws the plots;
2. saved without widget state, reopened: the last static picture (the sibling output) is visible;
3. ``jupyter nbconvert --to html`` of both, opened with the network blocked: the plots are visible;
4. the same HTML with JavaScript disabled (what GitHub-style renderers do): the plots are visible.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.browser
JupyterServer = Any  # tests/browser/conftest.py's classes, reached through the loaded plugin (harness below)
VIEWPORT = {"width": 1400, "height": 1000}

WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
SAVE_STATE_PLUGIN = "@jupyter-widgets/jupyterlab-manager:plugin"
EPOCHS = 5
CELLS = [
    """
    from collections import OrderedDict
    import torch
    from torch import nn
    from monitorch_widget import PyTorchInspector
    from monitorch_widget.lens import LossMetrics, OutputActivation, ParameterGradientActivation

    torch.manual_seed(0)
    model = nn.Sequential(OrderedDict([p for i in range(6) for p in ((f"lin{i}", nn.Linear(8, 8)),
                                                                     (f"relu{i}", nn.ReLU()))]))
    loss_fn = nn.MSELoss()
    inspector = PyTorchInspector([LossMetrics(loss_fn=loss_fn), OutputActivation(), ParameterGradientActivation()],
                                 visualizer="widget")
    inspector.attach(model)
    display(inspector.widget)
    """,
    f"""
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    x = torch.randn(64, 8)
    for epoch in range({EPOCHS}):
        for i in range(4):
            loss = loss_fn(model(x[i * 16:(i + 1) * 16]), x[i * 16:(i + 1) * 16])
            opt.zero_grad()
            loss.backward()
            opt.step()
        inspector.tick_epoch()
    """,
]


def _set_save_state(server: JupyterServer, on: bool) -> None:
    """The widget manager's user setting, through JupyterLab's settings REST API (read by pages opened later)."""
    body = json.dumps({"raw": json.dumps({"saveState": on})}).encode()
    req = urllib.request.Request(f"{server.base_url}/lab/api/settings/{SAVE_STATE_PLUGIN}", data=body, method="PUT",
                                 headers={"Authorization": f"token {server.token}",
                                          "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.status in (200, 204)


def _page(context: Any, server: JupyterServer, path: str, shots: Path) -> Any:
    """A NotebookPage (tests/browser/conftest.py) for ``path``, opened; the kernel is ready."""
    harness = next(p for p in _PLUGINS if getattr(p, "NotebookPage", None) is not None)
    return harness.NotebookPage(context.new_page(), server, path, shots).open()


_PLUGINS: list[Any] = []


@pytest.fixture(scope="module", autouse=True)
def _harness(request: pytest.FixtureRequest) -> None:
    _PLUGINS[:] = list(request.config.pluginmanager.get_plugins())


def _run_and_save(server: JupyterServer, browser: Any, shots: Path, name: str) -> dict[str, Any]:
    """Run CELLS in a fresh page, check the live view hid its sibling picture, save; return what was seen."""
    path = server.write_notebook(CELLS, name)
    context = browser.new_context(viewport=VIEWPORT)
    try:
        nb = _page(context, server, path, shots)
        nb.run_all_and_wait(timeout=180)
        nb.assert_no_errors()
        nb.page.locator(".mw-root .mw-panel").first.wait_for(state="visible")
        seen = {
            "live_roots": nb.page.locator(".mw-root").count(),
            "siblings_in_dom": nb.page.locator(".mw-static-sibling").count(),
            "siblings_visible": nb.page.locator(".mw-static-sibling").first.is_visible(),
        }
        nb.save()
        return seen
    finally:
        context.close()
        server.shutdown_sessions(path)


@pytest.fixture(scope="module")
def saved(jupyter_lab: JupyterServer, chromium_browser: Any, screenshot_dir: Path,
          tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out: dict[str, Any] = {}
    out["plain_live"] = _run_and_save(jupyter_lab, chromium_browser, screenshot_dir, "saved-plain.ipynb")
    _set_save_state(jupyter_lab, True)
    try:
        out["state_live"] = _run_and_save(jupyter_lab, chromium_browser, screenshot_dir, "saved-state.ipynb")
    finally:
        _set_save_state(jupyter_lab, False)
    html_dir = tmp_path_factory.mktemp("nbconvert")
    for key, name in (("plain", "saved-plain.ipynb"), ("state", "saved-state.ipynb")):
        src = jupyter_lab.root_dir / name
        out[key] = json.loads(src.read_text())
        subprocess.run([sys.executable, "-m", "nbconvert", "--to", "html", "--output-dir", str(html_dir), str(src)],
                       check=True, capture_output=True, timeout=120)
        out[key + "_html"] = html_dir / name.replace(".ipynb", ".html")
    return out


def _our_widget_state(nb: dict[str, Any]) -> dict[str, Any]:
    state = nb["metadata"].get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    return {k: v for k, v in state.items() if "history" in v.get("state", {})}


def _assert_picture_visible(page: Any, where: str, decode: bool = True) -> None:
    """The sibling picture is shown, says 5 epochs, names the layers as text and its heatmaps decode."""
    pic = page.locator(".mw-static-sibling svg.mw-static-svg").first
    assert pic.is_visible(), f"{where}: the static picture is not visible"
    box = pic.bounding_box()
    assert box is not None and box["height"] > 300, (where, box)
    text = pic.text_content() or ""
    assert f"{EPOCHS} epochs" in text, f"{where}: the picture is not the last one (end of training): {text[:200]}"
    assert page.locator(".mw-static-sibling .mw-static-layer", has_text="relu5").first.is_visible(), where
    assert "highest death_rate at epoch 5" in text, where
    assert not page.locator(".mw-static-untrusted").first.is_visible(), f"{where}: the untrusted note shows"
    cells = page.locator(".mw-static-sibling image.mw-static-cells")
    assert cells.count() == 6 and all((cells.nth(i).bounding_box() or {}).get("height", 0) > 20 for i in range(6))
    if not decode:  # (a promise in a page whose scripts are off never settles)
        return
    # the heatmaps' PNGs decode
    sizes = page.evaluate("""() => Promise.all([...document.querySelectorAll('.mw-static-sibling image.mw-static-cells')]
        .map(el => new Promise(done => { const im = new Image(); im.onload = () => done(im.naturalWidth * im.naturalHeight);
            im.onerror = () => done(0); im.src = el.getAttribute('href'); })))""")
    assert len(sizes) == 6 and all(s > 0 for s in sizes), (where, sizes)


def _page_scripts_run(context: Any) -> bool:
    """Whether a page's own scripts run in ``context`` (Playwright's evaluate runs either way)."""
    probe = context.new_page()
    try:
        probe.set_content("<title>off</title><script>document.title = 'on'</script>")
        return probe.title() == "on"
    finally:
        probe.close()


def test_live_view_hides_its_sibling_picture(saved: dict[str, Any]) -> None:
    for key in ("plain_live", "state_live"):
        assert saved[key] == {"live_roots": 1, "siblings_in_dom": 1, "siblings_visible": False}, (key, saved[key])
    # what JupyterLab wrote: state only where asked for; the picture as its own output either way
    assert not _our_widget_state(saved["plain"]) and len(_our_widget_state(saved["state"])) == 1
    for key in ("plain", "state"):
        outputs = saved[key]["cells"][0]["outputs"]
        kinds = [sorted(o.get("data", {})) for o in outputs if o["output_type"] == "display_data"]
        assert ["application/vnd.jupyter.widget-view+json", "text/plain"] in kinds
        assert ["text/html", "text/plain"] in kinds


def _reopen(server: JupyterServer, browser: Any, shots: Path, name: str) -> tuple[Any, Any]:
    server.shutdown_sessions(name)
    context = browser.new_context(viewport=VIEWPORT)
    nb = _page(context, server, name, shots)
    return context, nb


def test_1_saved_with_widget_state_reopened_shows_the_plots(saved: dict[str, Any], jupyter_lab: JupyterServer,
                                                            chromium_browser: Any, screenshot_dir: Path) -> None:
    context, nb = _reopen(jupyter_lab, chromium_browser, screenshot_dir, "saved-state.ipynb")
    try:
        panel = nb.page.locator('.mw-root .mw-panel[data-panel="Output Activations"]').first
        panel.wait_for(state="visible", timeout=60_000)
        assert panel.get_attribute("data-epochs") == str(EPOCHS)
        # the chart is drawn (charts are built frame by frame once on screen): its canvas has ink
        panel.scroll_into_view_if_needed()
        nb.page.wait_for_function("""() => {
            const c = document.querySelector('.mw-root .mw-panel[data-panel="Output Activations"] canvas');
            if (!c || !c.width) return false;
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++; return n > 100; }""", timeout=30_000)
        assert not nb.page.locator(".mw-static-sibling").first.is_visible()  # the live view hides the picture
    finally:
        context.close()
        jupyter_lab.shutdown_sessions("saved-state.ipynb")


def test_2_saved_without_widget_state_reopened_shows_the_last_picture(
        saved: dict[str, Any], jupyter_lab: JupyterServer, chromium_browser: Any, screenshot_dir: Path) -> None:
    context, nb = _reopen(jupyter_lab, chromium_browser, screenshot_dir, "saved-plain.ipynb")
    try:
        nb.page.locator(".mw-static-sibling svg").first.wait_for(state="visible", timeout=30_000)
        assert nb.page.locator(".mw-root").count() == 0  # no widget state: the widget cannot draw
        _assert_picture_visible(nb.page, "reopened without widget state")
        nb.screenshot("saved-notebook-static-picture", ".mw-static-sibling")
    finally:
        context.close()
        jupyter_lab.shutdown_sessions("saved-plain.ipynb")


def _open_html(browser: Any, path: Path, javascript: bool) -> tuple[Any, Any, list[str]]:
    context = browser.new_context(viewport=VIEWPORT, java_script_enabled=javascript)
    blocked: list[str] = []

    def route(r: Any) -> None:
        if r.request.url.startswith(("file://", "data:")):
            r.continue_()
        else:
            blocked.append(r.request.url)
            r.abort()

    context.route("**/*", route)
    page = context.new_page()
    page.goto(path.as_uri(), wait_until="load")
    return context, page, blocked


@pytest.mark.parametrize("key", ["plain", "state"])
def test_3_nbconvert_html_offline_shows_the_plots(saved: dict[str, Any], chromium_browser: Any, key: str) -> None:
    context, page, blocked = _open_html(chromium_browser, saved[key + "_html"], javascript=True)
    try:
        page.wait_for_timeout(500)  # let the (blocked) widget loaders give up
        _assert_picture_visible(page, f"nbconvert html ({key}), offline")
        if key == "state":
            assert blocked, "the page with widget state tries its CDN loaders; they are blocked here"
    finally:
        context.close()


@pytest.mark.parametrize("key", ["plain", "state"])
def test_4_without_javascript_shows_the_plots(saved: dict[str, Any], chromium_browser: Any, key: str) -> None:
    context, page, _ = _open_html(chromium_browser, saved[key + "_html"], javascript=False)
    try:
        assert not _page_scripts_run(context)
        _assert_picture_visible(page, f"nbconvert html ({key}), JavaScript off", decode=False)
    finally:
        context.close()


def test_notebook7_live_view_hides_its_sibling_picture(jupyter_notebook: JupyterServer, open_notebook: Any) -> None:
    nb = open_notebook(jupyter_notebook, CELLS)
    nb.run_all_and_wait(timeout=180)
    nb.assert_no_errors()
    nb.page.locator(".mw-root .mw-panel").first.wait_for(state="visible")
    assert nb.page.locator(".mw-static-sibling").count() == 1
    assert not nb.page.locator(".mw-static-sibling").first.is_visible()


def test_2b_untrusted_copy_says_to_trust_it_and_then_shows_the_last_picture(
        saved: dict[str, Any], jupyter_lab: JupyterServer, chromium_browser: Any, screenshot_dir: Path) -> None:
    """Someone else's notebook (not signed on this server): JupyterLab sanitizes its HTML outputs, which drops
    every SVG and inline image. The picture's note says what to do; once trusted, the picture shows."""
    nb_json = json.loads(json.dumps(saved["plain"]))
    nb_json["cells"].append({"cell_type": "markdown", "metadata": {}, "source": "copied", "id": "copied"})
    (jupyter_lab.root_dir / "saved-untrusted.ipynb").write_text(json.dumps(nb_json))
    context, nb = _reopen(jupyter_lab, chromium_browser, screenshot_dir, "saved-untrusted.ipynb")
    try:
        note = nb.page.locator(".mw-static-untrusted").first
        note.wait_for(state="visible", timeout=30_000)
        assert "Trust Notebook" in note.inner_text()
        assert nb.page.locator(".mw-static-sibling svg").count() == 0  # what the sanitizer left
        # ... and none of the picture's labels as a run-on paragraph (trial r11): its text is in CDATA sections
        left = [line for line in nb.page.locator(".mw-static-sibling").first.inner_text().splitlines() if line.strip()]
        assert left[0].startswith("monitorch-widget: the training picture") and left[-1].startswith("Static snapshot")
        assert all(line == "Health findings" or line.startswith(("warning ", "critical ", "info ")) for line in left[1:-1]), left
        nb.page.evaluate("() => { window.jupyterapp.commands.execute('notebook:trust'); }")
        nb.page.locator(".jp-Dialog .jp-mod-accept").click()
        nb.page.locator(".mw-static-sibling svg").first.wait_for(state="visible", timeout=30_000)
        _assert_picture_visible(nb.page, "untrusted copy, once trusted")
        assert not nb.page.locator(".mw-static-untrusted").first.is_visible()
    finally:
        context.close()
        jupyter_lab.shutdown_sessions("saved-untrusted.ipynb")
