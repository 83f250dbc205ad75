"""The quickstart in marimo (an anywidget host without IPython events): `marimo edit --headless` in dark theme,
headless Chromium. The widget is shown before training: charts live from the first ticks, complete at the end
of a short run, status done, dark theme followed."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser
REPO_ROOT = Path(__file__).resolve().parents[2]
VIEWPORT = {"width": 1400, "height": 1000}


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

EPOCHS = 8

NOTEBOOK = textwrap.dedent(f'''
    import marimo

    app = marimo.App()


    @app.cell
    def _():
        import time

        import torch
        from torch import nn

        from monitorch_widget import PyTorchInspector
        from monitorch_widget.lens import LossMetrics, OutputActivation

        torch.manual_seed(0)
        loss_fn = nn.MSELoss()
        model = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 1))
        inspector = PyTorchInspector([LossMetrics(loss_fn=loss_fn), OutputActivation()], visualizer="widget")
        inspector.attach(model)
        inspector.widget
        return inspector, loss_fn, model, time, torch


    @app.cell
    def _(inspector, loss_fn, model, time, torch):
        time.sleep(2.0)  # the widget is on the page before training starts
        for _epoch in range({EPOCHS}):
            for _ in range(3):
                loss_fn(model(torch.randn(16, 3)), torch.zeros(16, 1)).backward()
            time.sleep(0.6)
            inspector.tick_epoch()
        inspector.detach()
        return


    if __name__ == "__main__":
        app.run()
''')


@pytest.fixture
def marimo_server(tmp_path):
    marimo = shutil.which("marimo", path=str(Path(sys.executable).parent))
    if marimo is None:
        (pytest.fail if os.environ.get("CI") else pytest.skip)(
            "marimo is not installed (scripts/setup.sh installs the test extra)")
    nb = tmp_path / "quickstart.py"
    nb.write_text(NOTEBOOK)
    config = tmp_path / "config" / "marimo"
    config.mkdir(parents=True)
    config.joinpath("marimo.toml").write_text(
        '[display]\ntheme = "dark"\n\n[runtime]\nauto_instantiate = true\n\n[completion]\nactivate_on_typing = false\n')
    port = _free_port()
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "config"), "HOME": str(tmp_path),
           "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([marimo, "edit", "--headless", "--no-token", "--port", str(port), "--host", "127.0.0.1",
                             "--skip-update-check", str(nb)], env=env, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                urllib.request.urlopen(url + "/health", timeout=2)
                break
            except OSError:
                if proc.poll() is not None:
                    raise RuntimeError(proc.stdout.read().decode() if proc.stdout else "marimo exited") from None
                time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def _luminance(rgb: str) -> float:
    parts = [float(p) for p in rgb[rgb.index("(") + 1:rgb.index(")")].split(",")[:3]]
    return (0.2126 * parts[0] + 0.7152 * parts[1] + 0.0722 * parts[2]) / 255


def test_quickstart_in_marimo(marimo_server, chromium_browser, screenshot_dir):
    ctx = chromium_browser.new_context(viewport=VIEWPORT)
    page = ctx.new_page()
    try:
        page.goto(marimo_server, wait_until="domcontentloaded")
        status = page.locator(".mw-status").first
        status.wait_for(state="attached", timeout=90_000)
        seen: list[tuple[int, int]] = []  # (status epoch, epochs drawn in the loss chart) while training
        deadline = time.time() + 120
        state = ""
        while time.time() < deadline:
            state = status.get_attribute("data-state") or ""
            epoch = int(status.get_attribute("data-epoch") or 0)
            drawn = page.locator(".mw-big [data-drawn-epochs]").first
            n = int(drawn.get_attribute("data-drawn-epochs") or 0) if drawn.count() else 0
            if state == "training" and epoch:
                seen.append((epoch, n))
            if state == "done":
                break
            time.sleep(0.15)
        page.screenshot(path=str(screenshot_dir / "marimo-quickstart.png"))
        assert state == "done", f"status never turned done (last: {state!r})"
        # live: charts had the values while the run was still training, not only at its end
        assert any(0 < n < EPOCHS for _, n in seen), seen
        assert all(n >= e - 1 for e, n in seen if e >= 2), f"charts lagged the status by more than a tick: {seen}"
        # complete at the end (locators pierce marimo's shadow root; document.querySelectorAll would not)
        end = time.time() + 15
        drawn = page.locator(".mw-big [data-drawn-epochs]").first
        while time.time() < end and int(drawn.get_attribute("data-drawn-epochs") or 0) != EPOCHS:
            time.sleep(0.2)
        assert int(drawn.get_attribute("data-drawn-epochs") or 0) == EPOCHS
        assert status.get_attribute("data-epoch") == str(EPOCHS)
        assert page.locator(".mw-grid canvas").count() >= 1  # the per-layer charts exist too
        bg = page.locator(".mw-root").first.evaluate("e => getComputedStyle(e).backgroundColor")
        fg = page.locator(".mw-root").first.evaluate("e => getComputedStyle(e).color")
        assert _luminance(bg) < 0.3 < _luminance(fg), (bg, fg)
    finally:
        ctx.close()
