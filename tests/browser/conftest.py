"""Harness for browser tests: real Jupyter servers + headless Chromium driven by Playwright.

Fixtures (all usable from any test under ``tests/browser``):

* ``jupyter_lab`` / ``jupyter_notebook`` (session): a running JupyterLab / Notebook 7 server
  (:class:`JupyterServer`) on a free localhost port, with a token, private config/data/runtime dirs and a
  private ``python3`` kernelspec that runs ``sys.executable`` of this test process.
* ``jupyter_server`` (function, parametrize indirectly with ``"lab"`` / ``"notebook"``).
* ``chromium_browser`` (session): a Playwright Chromium launched from ``/usr/bin/chromium``.
* ``open_notebook`` (function): ``open_notebook(server, cells, name=None) -> NotebookPage``; writes a
  notebook with the given code cells into the server root, opens it in a fresh browser context and
  waits for the kernel. Everything it opened is closed (and the kernels shut down) after the test.
* ``screenshot_dir``: ``<repo>/artifacts/screenshots`` (created).

On failure of a browser test the server log written during the test, the browser console and a
screenshot (``artifacts/screenshots/FAILED-<test>.png``) are attached to the report.

Skipping: the browser tests skip only when ``/usr/bin/chromium`` is absent AND the ``CI`` environment
variable is unset. In CI they run, and fail loudly if Chromium or Playwright is missing.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path(os.environ.get("MW_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
VIEWPORT = {"width": 1400, "height": 1000}
SCREENSHOT_DIR = REPO_ROOT / "artifacts" / "screenshots"
IN_CI = bool(os.environ.get("CI"))

# Lab settings applied through a private ``app_settings_dir`` (overrides.json): no news/update
# toasts, no autosave (tests save explicitly), no notebook windowing (all cells stay in the DOM).
LAB_SETTINGS_OVERRIDES: dict[str, Any] = {
    "@jupyterlab/apputils-extension:notification": {"fetchNews": "false", "checkForUpdates": False},
    "@jupyterlab/docmanager-extension:plugin": {"autosave": False},
    "@jupyterlab/notebook-extension:tracker": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension:themes": {"adaptive-theme": False},
}


# --------------------------------------------------------------------------------------------------
# skip / marker handling


def _browser_skip_reason() -> str | None:
    if CHROMIUM.exists() or IN_CI:
        return None
    return (
        f"{CHROMIUM} not found and CI is not set: install it with `apt-get install -y chromium` "
        "to run the browser tests (in CI they run and fail if it is missing)"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = _browser_skip_reason()
    if reason is None:
        return
    marker = pytest.mark.skip(reason=reason)
    for item in items:
        if "browser" in item.keywords:
            item.add_marker(marker)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):  # type: ignore[type-arg]
    rep = yield
    setattr(item, "rep_" + rep.when, rep)
    return rep


# --------------------------------------------------------------------------------------------------
# Jupyter servers


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class JupyterServer:
    """A Jupyter server process started for the tests."""

    app: str  # "lab" or "notebook"
    port: int
    token: str
    root_dir: Path
    home: Path
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    _log_file: Any = field(default=None, repr=False)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def notebook_url(self, name: str, workspace: str | None = None) -> str:
        """URL that opens notebook ``name`` (relative to the root dir) in this server's UI."""
        if self.app == "lab":
            ws = workspace or ("ws-" + uuid.uuid4().hex[:8])
            # A private workspace per page: nothing opened by an earlier test is restored.
            return f"{self.base_url}/lab/workspaces/{ws}/tree/{name}?token={self.token}"
        return f"{self.base_url}/notebooks/{name}?token={self.token}"

    # ---- REST
    def api(self, path: str, method: str = "GET", body: Any = None, timeout: float = 10) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            f"{self.base_url}/api/{path.lstrip('/')}",
            data=data,
            method=method,
            headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=timeout) as r:
            raw = r.read()
        return json.loads(raw) if raw else None

    def sessions(self) -> list[dict[str, Any]]:
        return self.api("sessions")

    def shutdown_sessions(self, path: str | None = None) -> None:
        """Shut down the sessions (and their kernels) of ``path``, or all of them."""
        try:
            for s in self.sessions():
                if path is None or s.get("path") == path:
                    try:
                        self.api(f"sessions/{s['id']}", method="DELETE", timeout=30)
                    except urllib.error.URLError:
                        pass
        except (urllib.error.URLError, OSError):
            pass

    # ---- files
    def write_notebook(self, cells: list[str] | Path, name: str | None = None) -> str:
        """Write a notebook with the given code cells (or a copy of an existing ``.ipynb`` file) into the
        root dir; return its path relative to the root."""
        import nbformat

        name = name or f"nb-{uuid.uuid4().hex[:8]}.ipynb"
        if isinstance(cells, Path):
            shutil.copyfile(cells, self.root_dir / name)
            return name
        nb = nbformat.v4.new_notebook()
        nb.metadata["kernelspec"] = {
            "name": "python3",
            "display_name": "Python 3 (ipykernel)",
            "language": "python",
        }
        nb.metadata["language_info"] = {"name": "python"}
        nb.cells = [nbformat.v4.new_code_cell(textwrap.dedent(c).strip("\n")) for c in cells]
        nbformat.write(nb, str(self.root_dir / name))
        return name

    # ---- log
    def log_size(self) -> int:
        try:
            return self.log_path.stat().st_size
        except OSError:
            return 0

    def log_since(self, offset: int = 0, limit: int = 20000) -> str:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(offset)
                text = f.read().decode(errors="replace")
        except OSError as e:
            return f"<no log: {e}>"
        return text[-limit:]

    # ---- lifecycle
    def start(self, timeout: float = 60) -> None:
        cfg = self.home / "config"
        data = self.home / "data"
        runtime = self.home / "runtime"
        ipython = self.home / "ipython"
        settings = self.home / "app_settings"
        for d in (cfg, data, runtime, ipython, settings, self.root_dir):
            d.mkdir(parents=True, exist_ok=True)

        # Private kernelspec "python3" (first on the data path) running this very interpreter.
        kdir = data / "kernels" / "python3"
        kdir.mkdir(parents=True, exist_ok=True)
        (kdir / "kernel.json").write_text(
            json.dumps(
                {
                    "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                    "display_name": "Python 3 (ipykernel)",
                    "language": "python",
                    "metadata": {"debugger": True},
                },
                indent=1,
            )
        )

        # App settings dir: keep whatever the environment ships there, add our overrides.
        default_settings = Path(sys.prefix) / "share" / "jupyter" / "lab" / "settings"
        if default_settings.is_dir():
            shutil.copytree(default_settings, settings, dirs_exist_ok=True)
        overrides_path = settings / "overrides.json"
        overrides: dict[str, Any] = {}
        if overrides_path.exists():
            try:
                overrides = json.loads(overrides_path.read_text())
            except ValueError:
                overrides = {}
        for plugin, values in LAB_SETTINGS_OVERRIDES.items():
            overrides.setdefault(plugin, {}).update(values)
        overrides_path.write_text(json.dumps(overrides, indent=1))

        env = dict(os.environ)
        env.update(
            JUPYTER_CONFIG_DIR=str(cfg),
            JUPYTER_DATA_DIR=str(data),
            JUPYTER_RUNTIME_DIR=str(runtime),
            IPYTHONDIR=str(ipython),
            JUPYTER_PLATFORM_DIRS="1",
            PYTHONPATH=os.pathsep.join(p for p in [str(REPO_ROOT), env.get("PYTHONPATH", "")] if p),
            PATH=os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
            PYTHONUNBUFFERED="1",
            # 2-core machines: keep the kernel's torch from fighting the browser for cores.
            OMP_NUM_THREADS=env.get("OMP_NUM_THREADS", "1"),
            MKL_NUM_THREADS=env.get("MKL_NUM_THREADS", "1"),
        )
        env.pop("JUPYTER_PATH", None)
        env.pop("JUPYTERLAB_SETTINGS_DIR", None)
        env.pop("JUPYTERLAB_WORKSPACES_DIR", None)

        module, app_cls = (
            ("jupyterlab", "LabApp") if self.app == "lab" else ("notebook", "JupyterNotebookApp")
        )
        cmd = [
            sys.executable,
            "-m",
            module,
            "--no-browser",
            "--allow-root",
            f"--port={self.port}",
            "--ServerApp.port_retries=0",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.token={self.token}",
            f"--ServerApp.root_dir={self.root_dir}",
            f"--{app_cls}.expose_app_in_browser=True",
            f"--{app_cls}.app_settings_dir={settings}",
            f"--{app_cls}.user_settings_dir={cfg / 'lab' / 'user-settings'}",
            f"--{app_cls}.workspaces_dir={cfg / 'lab' / 'workspaces'}",
            "--MappingKernelManager.default_kernel_name=python3",
            "--KernelSpecManager.ensure_native_kernel=False",
        ]
        self._log_file = open(self.log_path, "wb")  # noqa: SIM115 - held for the life of the server
        self.proc = subprocess.Popen(
            cmd,
            cwd=str(self.root_dir),
            env=env,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        last_err: Exception | None = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"jupyter {self.app} exited with {self.proc.returncode} during startup:\n{self.log_since()}"
                )
            try:
                with urllib.request.urlopen(f"{self.base_url}/api/status?token={self.token}", timeout=2) as r:
                    if r.status == 200:
                        json.loads(r.read())
                        return
            except (urllib.error.URLError, OSError, ValueError) as e:
                last_err = e
            time.sleep(0.25)
        self.stop()
        raise RuntimeError(f"jupyter {self.app} not ready after {timeout}s ({last_err}):\n{self.log_since()}")

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.shutdown_sessions()
            try:
                os.kill(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
            except ProcessLookupError:
                pass
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None


def _start_server(app: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupyterServer]:
    base = tmp_path_factory.mktemp(f"jupyter-{app}")
    server = JupyterServer(
        app=app,
        port=_free_port(),
        token=secrets.token_hex(16),
        root_dir=base / "root",
        home=base / "home",
        log_path=base / "server.log",
    )
    try:
        server.start()
    except RuntimeError as e:
        pytest.fail(str(e), pytrace=False)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def jupyter_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupyterServer]:
    yield from _start_server("lab", tmp_path_factory)


@pytest.fixture(scope="session")
def jupyter_notebook(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupyterServer]:
    yield from _start_server("notebook", tmp_path_factory)


@pytest.fixture
def jupyter_server(request: pytest.FixtureRequest) -> JupyterServer:
    """Parametrize indirectly with "lab" or "notebook"."""
    app = getattr(request, "param", "lab")
    return request.getfixturevalue({"lab": "jupyter_lab", "notebook": "jupyter_notebook"}[app])


# --------------------------------------------------------------------------------------------------
# Browser


@pytest.fixture(scope="session")
def chromium_browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing (CI is set, so browser tests must run): apt-get install -y chromium"
        )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as e:  # pragma: no cover - environment problem
        pytest.fail(f"python playwright is not importable: {e}")
    pw = sync_playwright().start()
    try:
        # Playwright's launch() always gives Chromium a new, empty, temporary user-data dir (it refuses
        # --user-data-dir in args); every test then gets its own fresh browser context.
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
    finally:
        pw.stop()


@pytest.fixture(scope="session")
def screenshot_dir() -> Path:
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    return SCREENSHOT_DIR


# --------------------------------------------------------------------------------------------------
# Notebook page helper

JS_CURRENT_PANEL = "(() => { const a = window.jupyterapp; return a && a.shell && a.shell.currentWidget; })()"


class NotebookPage:
    """A notebook opened in the browser, with helpers that speak to ``window.jupyterapp``."""

    def __init__(self, page: Any, server: JupyterServer, path: str, screenshot_dir: Path):
        self.page = page
        self.server = server
        self.path = path
        self.screenshot_dir = screenshot_dir
        self.console: list[str] = []
        page.on("console", lambda m: self.console.append(f"[{m.type}] {m.text}"))
        page.on("pageerror", lambda e: self.console.append(f"[pageerror] {e}"))
        page.on("dialog", lambda d: d.accept())

    # ---- opening
    def open(self, timeout: float = 60) -> NotebookPage:
        self.page.goto(self.server.notebook_url(self.path), wait_until="domcontentloaded")
        self._wait_app(timeout)
        self.wait_kernel_ready(timeout)
        return self

    def _wait_app(self, timeout: float) -> None:
        self.page.wait_for_function(
            """(path) => {
                const a = window.jupyterapp;
                const w = a && a.shell && a.shell.currentWidget;
                return !!(w && w.context && w.context.path === path && w.sessionContext && w.content);
            }""",
            arg=self.path,
            timeout=timeout * 1000,
            polling=100,
        )

    def wait_kernel_ready(self, timeout: float = 60) -> None:
        """Kernel really ready: session ready, kernel connected, status idle."""
        self.page.wait_for_function(
            """() => {
                const w = window.jupyterapp.shell.currentWidget;
                const sc = w && w.sessionContext;
                const k = sc && sc.session && sc.session.kernel;
                return !!(sc && sc.isReady && k && k.connectionStatus === 'connected' && k.status === 'idle');
            }""",
            timeout=timeout * 1000,
            polling=100,
        )

    # ---- running
    def run_all(self) -> None:
        """Start ``notebook:run-all-cells`` without awaiting it (its promise ends with the notebook)."""
        self.page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")

    def prompts(self) -> list[str]:
        return self.page.eval_on_selector_all(
            ".jp-Cell.jp-CodeCell .jp-InputPrompt", "els => els.map(e => e.textContent.trim())"
        )

    def is_running(self) -> bool:
        return any("[*]" in p for p in self.prompts())

    def running_cell_index(self) -> int | None:
        for i, p in enumerate(self.prompts()):
            if "[*]" in p:
                return i
        return None

    def wait_running(self, cell: int | None = None, timeout: float = 30) -> None:
        """Wait until a cell (or the given code cell index) shows ``[*]`` and the kernel is busy."""
        self.page.wait_for_function(
            """(cell) => {
                const ps = [...document.querySelectorAll('.jp-Cell.jp-CodeCell .jp-InputPrompt')]
                    .map(e => e.textContent.trim());
                if (cell === null) return ps.some(p => p.includes('[*]'));
                return ps.length > cell && ps[cell].includes('[*]') && ps.slice(0, cell).every(p => !p.includes('[*]'));
            }""",
            arg=cell,
            timeout=timeout * 1000,
            polling=50,
        )

    def wait_idle(self, timeout: float = 120) -> None:
        """Wait until no cell shows ``[*]`` and the kernel reports idle."""
        self.page.wait_for_function(
            """() => {
                const ps = [...document.querySelectorAll('.jp-Cell.jp-CodeCell .jp-InputPrompt')];
                if (ps.some(e => e.textContent.includes('[*]'))) return false;
                const w = window.jupyterapp.shell.currentWidget;
                const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;
                return !!(k && k.status === 'idle');
            }""",
            timeout=timeout * 1000,
            polling=100,
        )

    def run_all_and_wait(self, timeout: float = 120) -> None:
        self.run_all()
        self.wait_running(timeout=30)
        self.wait_idle(timeout)

    # ---- outputs
    def output_texts(self) -> list[str]:
        """Text of every cell's output area (one string per code cell)."""
        return self.page.eval_on_selector_all(
            ".jp-Cell.jp-CodeCell",
            "els => els.map(e => { const o = e.querySelector('.jp-OutputArea'); "
            "return o ? o.innerText : ''; })",
        )

    def cell_outputs(self) -> list[list[dict[str, Any]]]:
        """The nbformat outputs of every cell, read from the notebook model in the browser."""
        return self.page.evaluate(
            """() => window.jupyterapp.shell.currentWidget.content.widgets.map(c => {
                const j = c.model.toJSON();
                return j.outputs || [];
            })"""
        )

    def error_outputs(self) -> list[str]:
        """Exceptions shown in the notebook, as "Name: value" + plain-text traceback."""
        errs = []
        for outs in self.cell_outputs():
            for o in outs:
                if o.get("output_type") == "error":
                    tb = re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(o.get("traceback", [])))
                    errs.append(f"{o.get('ename')}: {o.get('evalue')}\n{tb}")
        return errs

    def assert_no_errors(self) -> None:
        errs = self.error_outputs()
        assert not errs, "notebook raised:\n" + "\n-----\n".join(errs)

    # ---- document
    def save(self, timeout: float = 30) -> None:
        self.page.evaluate("() => window.jupyterapp.commands.execute('docmanager:save')")
        self.page.wait_for_function(
            "() => { const w = window.jupyterapp.shell.currentWidget; return !!(w && w.context && !w.context.model.dirty); }",
            timeout=timeout * 1000,
        )

    def reload(self, timeout: float = 60) -> None:
        """Save, reload the page, and wait for the app and the (same, still running) kernel."""
        self.save()
        self.page.reload(wait_until="domcontentloaded")
        self._wait_app(timeout)
        self.wait_kernel_ready(timeout)

    # ---- looks
    def set_theme(self, theme: str, timeout: float = 30) -> None:
        """JupyterLab theme, e.g. "JupyterLab Light" / "JupyterLab Dark"."""
        self.page.evaluate(
            "(theme) => { window.jupyterapp.commands.execute('apputils:change-theme', {theme}); }", theme
        )
        self.page.wait_for_function(
            "(theme) => document.body.dataset.jpThemeName === theme",
            arg=theme,
            timeout=timeout * 1000,
        )
        # Theme CSS is swapped asynchronously; let it apply before any screenshot.
        self.page.wait_for_timeout(500)

    def screenshot(self, name: str, selector: str | None = None) -> Path:
        """Screenshot of the viewport, or of the whole first element matching ``selector``, into the
        artifacts folder. For an element taller than the notebook area the viewport is grown for the
        shot (JupyterLab lays out to the window height) so the element is captured uncut."""
        self.screenshot_dir.mkdir(parents=True, exist_ok=True)
        path = self.screenshot_dir / (name if name.endswith(".png") else name + ".png")
        if selector is None:
            self.page.screenshot(path=str(path), full_page=False)
            return path
        loc = self.page.locator(selector).first
        loc.wait_for(state="visible")
        size = self.page.viewport_size or VIEWPORT
        try:
            for _ in range(4):
                loc.scroll_into_view_if_needed()
                fits = loc.evaluate(
                    """el => {
                        const r = el.getBoundingClientRect();
                        let p = el.parentElement;
                        while (p && p !== document.body) {
                            const s = getComputedStyle(p);
                            if (/(auto|scroll)/.test(s.overflowY) && p.scrollHeight > p.clientHeight) break;
                            p = p.parentElement;
                        }
                        const box = p && p !== document.body ? p.getBoundingClientRect()
                                                             : {top: 0, bottom: window.innerHeight};
                        return {ok: r.height <= box.bottom - box.top, need: r.height - (box.bottom - box.top)};
                    }"""
                )
                if fits["ok"]:
                    break
                cur = self.page.viewport_size or size
                self.page.set_viewport_size(
                    {"width": cur["width"], "height": min(8000, int(cur["height"] + fits["need"] + 40))}
                )
                self.page.wait_for_timeout(300)
            loc.scroll_into_view_if_needed()
            loc.screenshot(path=str(path))
        finally:
            if self.page.viewport_size != size:
                self.page.set_viewport_size(size)
        return path


@pytest.fixture
def open_notebook(
    request: pytest.FixtureRequest, chromium_browser: Any, screenshot_dir: Path
) -> Iterator[Callable[..., NotebookPage]]:
    """``open_notebook(server, cells_or_ipynb_path, name=None, open=True) -> NotebookPage``.

    ``cells`` is a list of code-cell sources, or a ``pathlib.Path`` of an existing notebook to copy in."""
    opened: list[tuple[Any, NotebookPage]] = []
    log_offsets: dict[int, tuple[JupyterServer, int]] = {}

    def _open(
        server: JupyterServer, cells: list[str] | Path, name: str | None = None, open: bool = True
    ) -> NotebookPage:
        log_offsets.setdefault(id(server), (server, server.log_size()))
        path = server.write_notebook(cells, name)
        context = chromium_browser.new_context(viewport=VIEWPORT)
        page = context.new_page()
        page.set_default_timeout(60_000)
        nb = NotebookPage(page, server, path, screenshot_dir)
        opened.append((context, nb))
        if open:
            nb.open()
        return nb

    yield _open

    failed = any(
        getattr(request.node, f"rep_{w}", None) is not None and getattr(request.node, f"rep_{w}").failed
        for w in ("setup", "call")
    )
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
    for i, (context, nb) in enumerate(opened):
        if failed:
            try:
                nb.screenshot(f"FAILED-{safe}-{i}")
            except Exception as e:  # noqa: BLE001 - best effort diagnostics
                nb.console.append(f"<screenshot failed: {e}>")
            sys.stderr.write(f"\n==== browser console ({nb.server.app}, {nb.path}) ====\n")
            sys.stderr.write("\n".join(nb.console[-200:]) + "\n")
        try:
            context.close()
        except Exception as e:  # noqa: BLE001 - the page may already be gone
            sys.stderr.write(f"closing browser context failed: {e}\n")
        nb.server.shutdown_sessions(nb.path)
    if failed:
        for server, offset in log_offsets.values():
            sys.stderr.write(f"\n==== jupyter {server.app} log during test ({server.log_path}) ====\n")
            sys.stderr.write(server.log_since(offset) + "\n")
