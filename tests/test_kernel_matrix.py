"""Real kernels (ipykernel 6.29.x, 7.0.x, the venv's newest 7.x, and Colab's pinned stack: ipykernel 5.5.6 with
IPython 7.34 and ipywidgets 7.7.1) through jupyter_client: a training cell with the widget displayed, every iopub
message checked against the transport rules of views/sync.py.

The older kernels are layered over the venv by PYTHONPATH (``scripts/setup.sh`` installs them into
``.kernels/`` with ``pip --target --no-deps``; everything else, torch included, is the venv's)."""

from __future__ import annotations

import json
import os
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

jupyter_client = pytest.importorskip("jupyter_client")
widget_mod = pytest.importorskip("monitorch_widget.views.widget")
if not widget_mod._ESM_PATH.is_file():
    pytest.skip("front-end bundle not built (npm run build)", allow_module_level=True)

ROOT = Path(__file__).resolve().parents[1]
KERNELS = {"6.29": ROOT / ".kernels" / "ipykernel-6.29", "7.0": ROOT / ".kernels" / "ipykernel-7.0", "newest": None,
           "colab": ROOT / ".kernels" / "ipykernel-colab"}

SETUP = """
import json, threading, time, torch
from torch import nn
from IPython.display import display
from monitorch_widget import PyTorchInspector
from monitorch_widget.lens import LossMetrics, OutputActivation
torch.manual_seed(0)
"""

TRAIN = """
loss_fn = nn.MSELoss()
model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1))
ins = PyTorchInspector([LossMetrics(loss_fn=loss_fn), OutputActivation()], visualizer="widget").attach(model)
w = ins.widget
sends = []  # (thread name, comm method) of every message on the widget's comm
_send = w.comm.send
def _traced(*a, **k):
    sends.append((threading.current_thread().name, (k.get("data") or a[0] or {}).get("method")))
    return _send(*a, **k)
w.comm.send = _traced
display(w)
def mark(text):  # same iopub queue as the comm messages: its position orders them
    display({"text/plain": text}, raw=True)
def epoch():
    loss_fn(model(torch.randn(8, 3)), torch.zeros(8, 1)).backward()
mark("start")
for e in range(1, 6):        # slow ticks (>= 60 ms apart): on iopub before tick_epoch returns
    time.sleep(0.07)
    epoch(); ins.tick_epoch(); mark(f"tick {e}")
for e in range(6, 16):       # fast ticks: held at most until a monitor call >= 50 ms later
    epoch(); ins.tick_epoch()
time.sleep(0.06)
ins.push_loss(0.5, train=False)
mark("pumped")
for e in range(16, 19):      # fast ticks at the end of the cell: post_run_cell sends them
    epoch(); ins.tick_epoch()
"""

REPORT = """
run = ins.history.runs[0]
print(json.dumps({"sends": sends, "data": run.data.tolist(), "epochs": run.epochs,
                  "state": ins.history.status()["state"]}))
"""


def start_kernel(tmp_path: Path, extra: Path | None) -> tuple[Any, Any]:
    from jupyter_client import KernelManager
    from jupyter_client.kernelspec import KernelSpecManager

    spec_dir = tmp_path / "kernels" / "mw"
    spec_dir.mkdir(parents=True)
    path = os.pathsep.join(str(p) for p in (extra, ROOT) if p is not None)
    spec_dir.joinpath("kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "mw", "language": "python",
        "env": {"PYTHONPATH": path, "OMP_NUM_THREADS": "1", "PYDEVD_DISABLE_FILE_VALIDATION": "1"}}))
    ksm = KernelSpecManager(kernel_dirs=[str(tmp_path / "kernels")])
    km = KernelManager(kernel_name="mw", kernel_spec_manager=ksm)
    km.start_kernel(cwd=str(tmp_path))
    kc = km.client()
    kc.start_channels()
    kc.wait_for_ready(timeout=90)
    return km, kc


def run_cell(kc: Any, code: str, on_msg: Any = None, timeout: float = 120) -> tuple[str, list[dict]]:
    """Execute ``code``; every iopub message until the cell's idle status (in order)."""
    msg_id = kc.execute(code)
    msgs: list[dict] = []
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            msg = kc.get_iopub_msg(timeout=1)
        except Exception:  # noqa: BLE001 - queue.Empty: keep waiting
            continue
        if msg["parent_header"].get("msg_id") == msg_id or msg["msg_type"].startswith("comm"):
            msgs.append(msg)
            if on_msg is not None:
                on_msg(msg)
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle" \
                and msg["parent_header"].get("msg_id") == msg_id:
            return msg_id, msgs
    raise TimeoutError(f"cell did not finish in {timeout} s")


def stdout_of(msgs: list[dict]) -> str:
    return "".join(m["content"]["text"] for m in msgs if m["msg_type"] == "stream" and m["content"]["name"] == "stdout")


def errors_of(msgs: list[dict]) -> list[str]:
    return ["\n".join(m["content"]["traceback"]) for m in msgs if m["msg_type"] == "error"]


@pytest.fixture(params=list(KERNELS), ids=lambda v: f"ipykernel-{v}")
def kernel(request, tmp_path):
    extra = KERNELS[request.param]
    if extra is not None and not extra.is_dir():
        # scripts/setup.sh installs it: in CI a missing kernel fails, elsewhere it skips with the fix
        (pytest.fail if os.environ.get("CI") else pytest.skip)(
            f"{extra} missing: run scripts/setup.sh (installs the kernel matrix)")
    km, kc = start_kernel(tmp_path, extra)
    try:
        yield request.param, kc
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def test_training_cell_traffic_follows_the_transport_rules(kernel):
    version, kc = kernel
    info = kc.kernel_info(reply=True)["content"]
    subshells = "kernel subshells" in info.get("supported_features", [])
    assert subshells == (version in ("7.0", "newest"))  # 7.x: the subshell case below is exercised
    if version == "colab":  # the layered stack is the one that runs (not the venv's newer IPython / ipywidgets)
        _, msgs = run_cell(kc, "import IPython, ipywidgets, ipykernel; "
                               "print(IPython.__version__, ipywidgets.__version__, ipykernel.__version__)")
        assert stdout_of(msgs).split() == ["7.34.0", "7.7.1", "5.5.6"]
    _, msgs = run_cell(kc, SETUP)
    assert not errors_of(msgs), errors_of(msgs)

    sent_requests: list[str] = []

    def during_training(msg: dict) -> None:
        # as JupyterLab >= 4.4 does on ipykernel >= 7: the view's messages reach the kernel on a subshell thread
        # while the cell trains (a filter change and a snapshot request)
        if not subshells or sent_requests or msg["msg_type"] != "comm_open":
            return
        state = msg["content"]["data"].get("state", {})
        if "filters" not in state:
            return
        kc.control_channel.send(kc.session.msg("create_subshell_request", {}))
        sid = kc.control_channel.get_msg(timeout=10)["content"]["subshell_id"]
        for data in ({"method": "update", "state": {"filters": {"hidden_modules": ["1"]}}, "buffer_paths": []},
                     {"method": "custom", "content": {"type": "resync", "seq": 0}}):
            req = kc.session.msg("comm_msg", {"comm_id": msg["content"]["comm_id"], "data": data})
            req["header"]["subshell_id"] = sid
            kc.shell_channel.send(req)
            sent_requests.append(req["header"]["msg_id"])

    cell_id, msgs = run_cell(kc, TRAIN, during_training)
    assert not errors_of(msgs), errors_of(msgs)
    assert bool(sent_requests) == subshells
    opens = [m for m in msgs if m["msg_type"] == "comm_open" and "filters" in m["content"]["data"].get("state", {})]
    assert len(opens) == 1
    comm_id = opens[0]["content"]["comm_id"]
    ours = [m for m in msgs if m["msg_type"] == "comm_msg" and m["content"]["comm_id"] == comm_id]
    # every message of the monitor belongs to the running cell (none was sent from a subshell handler)
    assert ours and all(m["parent_header"]["msg_id"] == cell_id for m in ours)
    assert not [m for m in ours if m["content"]["data"].get("method") == "echo_update"], "filters were echoed"

    _, report_msgs = run_cell(kc, REPORT)
    report = json.loads(stdout_of(report_msgs))
    assert {t for t, _ in report["sends"]} == {"MainThread"}, report["sends"]
    assert report["state"] == "done"
    data = np.array(report["data"])
    assert data.shape[0] == 18 and report["epochs"] == [float(e) for e in range(1, 19)]

    # replay the iopub order: which epochs' values had arrived at each marker
    arrived: dict[tuple[int, int], float] = {}
    rows_at: dict[str, set[int]] = {}
    for m in msgs:
        if m["msg_type"] == "display_data" and "text/plain" in m["content"]["data"]:
            rows_at[m["content"]["data"]["text/plain"]] = {r for r, _ in arrived}
        if m in ours and m["content"]["data"].get("method") == "custom":
            content = m["content"]["data"]["content"]
            if content.get("type") != "delta":
                continue
            bufs = [np.frombuffer(bytes(b), dtype) for b, dtype in zip(m["buffers"], ("<i4", "<i4", "<i4", "<f8"))]
            for row, col, val in zip(bufs[1], bufs[2], bufs[3]):
                arrived[(int(row), int(col))] = float(val)
    for e in range(1, 6):
        assert e - 1 in rows_at[f"tick {e}"], f"epoch {e} was not on iopub before tick_epoch returned"
    assert set(range(15)) <= rows_at["pumped"], "fast ticks waited past a monitor call 50 ms later"
    # by the end of the cell (post_run_cell, before the idle status) every value arrived, equal to the record's;
    # rows a snapshot (the answer to the resync request) carried count too
    for (row, col), val in arrived.items():
        np.testing.assert_equal(val, data[row, col])
    snaps = [m for m in ours if "history" in m["content"]["data"].get("state", {})]
    in_snaps = {r for m in snaps for r in range(m["content"]["data"]["state"]["history"]["runs"][0]["n_rows"])
                if m["content"]["data"]["state"]["history"]["runs"]}
    assert {r for r, _ in arrived} | in_snaps == set(range(18))
    if subshells:
        # the resync request was answered with a snapshot by the training thread, inside the cell
        assert snaps


def test_rerunning_the_build_cell_ten_times_leaves_one_inspector(tmp_path):
    km, kc = start_kernel(tmp_path, None)
    try:
        _, msgs = run_cell(kc, SETUP + textwrap.dedent("""
            model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1))
            built = []
        """))
        assert not errors_of(msgs)
        cell = textwrap.dedent("""
            ins = PyTorchInspector([OutputActivation()], visualizer="widget").attach(model)
            built.append(ins)
            display(ins.widget)
        """)
        notices = []
        for _ in range(10):
            _, msgs = run_cell(kc, cell)
            assert not errors_of(msgs), errors_of(msgs)
            notices.append("attached to another inspector" in "".join(
                m["content"]["text"] for m in msgs if m["msg_type"] == "stream"))
        assert notices == [False] + [True] * 9
        _, msgs = run_cell(kc, textwrap.dedent("""
            from ipywidgets.widgets.widget import _instances
            from monitorch_widget.views.widget import MonitorWidget
            from monitorch_widget.views.sync import DeltaSync
            live = [w for w in _instances.values() if isinstance(w, MonitorWidget) and w.comm is not None]
            cbs = get_ipython().events.callbacks["post_run_cell"]
            ours = [cb for cb in cbs if isinstance(getattr(cb, "__self__", None), DeltaSync)]
            fresh = PyTorchInspector([OutputActivation()], visualizer="none")
            hooks = sum(len(m._forward_hooks) for m in model.modules())
            print(json.dumps({"live": len(live), "live_is_last": live == [built[-1].widget], "callbacks": len(ours),
                              "attached": [i.state.attached for i in built], "hooks": hooks,
                              "sites": len(built[-1].lenses[0].sites)}))
        """))
        assert not errors_of(msgs), errors_of(msgs)
        got = json.loads(stdout_of(msgs))
        assert got["attached"] == [False] * 9 + [True]
        assert got["live"] == 1 and got["live_is_last"]
        assert got["callbacks"] == 1
        assert got["hooks"] == got["sites"] == 1  # the one ReLU, hooked once
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
