"""``tick_epoch()`` with the widget displayed in a real kernel (ipykernel through jupyter_client).

    .venv/bin/python -m benchmarks.kernel_tick [--roots A,B] [--blocks 6] [--ticks 20] [--only seed,deep50]

Each root (a checkout whose ``monitorch_widget`` the kernel imports through ``PYTHONPATH``; default: this
checkout) gets its own kernel (the venv's ipykernel, ``OMP_NUM_THREADS=1``, ``torch.set_num_threads(1)``).
In every kernel one cell builds the workload with ``visualizer='widget'`` and ``display(ins.widget)`` (the
widget's comm is open and the cell thread holds messages back as in a notebook, ``views/sync.py``), then
trains warm-up epochs. Then the kernels run cells of ``--ticks`` epochs in turn, ``--blocks`` times each
(the order rotates per block), so that two roots are compared interleaved. Inside the kernel each
``tick_epoch()`` is timed with ``time.perf_counter`` (wall) and ``time.thread_time`` (the training thread's
CPU time, which leaves out the neighbours on a shared machine).

**No front-end is connected**: the widget's messages go out on iopub through ipykernel's IOPub thread and the
client drops them, which is what a kernel pays for them (serialising, signing, the socket); no browser draws.
Reported: the medians over all timed ticks (>= 40 by default), each with a bootstrap 95% interval, of the wall
time, the CPU time and the CPU time outside ``inspector._compute`` (everything after the collect side's
fold: the lenses' calls replayed into the record, the record, its health checks, the widget's sync and the
comm, the per-epoch resets), the 90th percentile and the maximum (a
throttled full snapshot or a coalesced delta lands in the tail), and the comm messages per tick.

Workloads:

* ``seed`` - the seed tutorial's 2-D MLP (Linear(2,16) ReLU Linear(16,16) ReLU Linear(16,2) Softmax), 56
  samples at batch 8 (7 Adam steps per epoch), a validation pass on 24 samples under ``no_grad``, one pushed
  metric, ``tick_epoch()``; issue 13's target: tick <= 0.3 ms with the widget.
* ``deep50`` - 50 x (Linear(256,256)+ReLU) = 100 hooked layers, 2 steps of batch 64 per epoch (the ``tick``
  benchmark's workload); issue 13's target: tick <= 2 ms with the widget.

Both with the seed lens set (LossMetrics with an accuracy metric, OutputActivation, ParameterGradientActivation).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

from .common import bootstrap

ROOT = Path(__file__).resolve().parents[1]

SETUP = """
import json, time, torch
from collections import OrderedDict
from torch import nn
from IPython.display import display
from monitorch_widget import PyTorchInspector
from monitorch_widget.lens import LossMetrics, OutputActivation, ParameterGradientActivation
torch.set_num_threads(1)
torch.manual_seed(0)
WORKLOAD = {workload!r}
if WORKLOAD == "seed":
    model = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 2), nn.Softmax(dim=1))
    g = torch.Generator().manual_seed(0)
    x, xv = torch.randn(56, 2, generator=g), torch.randn(24, 2, generator=g)
    y, yv = (x[:, 0] * x[:, 1] > 0).long(), (xv[:, 0] * xv[:, 1] > 0).long()
    batch = 8
else:
    model = nn.Sequential(OrderedDict(
        [(f"{{kind}}{{i}}", nn.Linear(256, 256) if kind == "lin" else nn.ReLU()) for i in range(50) for kind in ("lin", "relu")]))
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(128, 256, generator=g), torch.randint(0, 256, (128,), generator=g)
    xv, yv = x[:64], y[:64]
    batch = 64
loss_fn = nn.CrossEntropyLoss()
opt = torch.optim.Adam(model.parameters(), lr=1e-2)
ins = PyTorchInspector([LossMetrics(loss_fn=loss_fn, metrics=["accuracy"]), OutputActivation(),
                        ParameterGradientActivation()], visualizer="widget", module=model)
w = ins.widget
n_msgs = [0]
_send = w.comm.send
def _counted(*a, **k):
    n_msgs[0] += 1
    return _send(*a, **k)
w.comm.send = _counted
display(w)
compute_cpu = [0.0]  # the collect side's share of a tick: inspector._compute (summaries to calls)
_compute = ins._compute
def _timed_compute(*a, **k):
    c0 = time.thread_time()
    try:
        return _compute(*a, **k)
    finally:
        compute_cpu[0] += time.thread_time() - c0
ins._compute = _timed_compute

def epochs(n):
    wall, cpu, msgs, rest = [], [], [], []
    for _ in range(n):
        model.train()
        for i in range(0, len(x), batch):
            opt.zero_grad()
            loss_fn(model(x[i:i + batch]), y[i:i + batch]).backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            out = model(xv)
            loss_fn(out, yv)
            accuracy = (out.argmax(1) == yv).float().mean().item()
        ins.push_metric("accuracy", accuracy)
        m0 = n_msgs[0]
        compute_cpu[0] = 0.0
        t0, c0 = time.perf_counter(), time.thread_time()
        ins.tick_epoch()
        c1, t1 = time.thread_time(), time.perf_counter()
        wall.append(t1 - t0)
        cpu.append(c1 - c0)
        msgs.append(n_msgs[0] - m0)
        rest.append(c1 - c0 - compute_cpu[0])
    return wall, cpu, msgs, rest

epochs({warmup})
"""

BLOCK = "print('MW_RESULT ' + json.dumps(epochs({ticks})))"


def start_kernel(tmp: Path, root: Path, name: str) -> tuple[Any, Any]:
    from jupyter_client import KernelManager
    from jupyter_client.kernelspec import KernelSpecManager

    spec_dir = tmp / "kernels" / name
    spec_dir.mkdir(parents=True)
    spec_dir.joinpath("kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": name, "language": "python",
        "env": {"PYTHONPATH": str(root), "OMP_NUM_THREADS": "1", "PYDEVD_DISABLE_FILE_VALIDATION": "1"}}))
    km = KernelManager(kernel_name=name, kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(tmp / "kernels")]))
    km.start_kernel(cwd=str(tmp))
    kc = km.client()
    kc.start_channels()
    kc.wait_for_ready(timeout=120)
    return km, kc


def run_cell(kc: Any, code: str, timeout: float = 600) -> str:
    """Execute ``code`` (jupyter_client's ``execute_interactive``); its stdout. Other iopub messages, the
    widget's included, are dropped."""
    out: list[str] = []

    def keep(msg: dict) -> None:
        if msg["msg_type"] == "stream" and msg["content"]["name"] == "stdout":
            out.append(msg["content"]["text"])
        elif msg["msg_type"] == "error":
            out.append("\n".join(msg["content"]["traceback"]))

    reply = kc.execute_interactive(code, output_hook=keep, timeout=timeout)
    if reply["content"]["status"] != "ok":
        raise RuntimeError("cell failed:\n" + "".join(out))
    return "".join(out)



def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--roots", default=str(ROOT), help="comma-separated checkouts to compare (PYTHONPATH each)")
    ap.add_argument("--blocks", type=int, default=6, help="timed cells per kernel (interleaved)")
    ap.add_argument("--ticks", type=int, default=20, help="epochs (ticks) per timed cell")
    ap.add_argument("--warmup", type=int, default=20, help="untimed epochs after the widget is displayed")
    ap.add_argument("--only", default="seed,deep50", help="workloads: seed, deep50")
    args = ap.parse_args(argv)
    roots = [Path(r).resolve() for r in args.roots.split(",") if r]
    workloads = [w for w in args.only.split(",") if w]
    unknown = set(workloads) - {"seed", "deep50"}
    if unknown:
        raise SystemExit(f"unknown workload(s) {sorted(unknown)}; known: seed, deep50")
    load = os.getloadavg()
    print(f"tick_epoch() in a real kernel, widget displayed, no front-end connected; load average "
          f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; {args.blocks} interleaved cells x {args.ticks} ticks per root")
    rows = []
    with tempfile.TemporaryDirectory() as tmpdir:
        for workload in workloads:
            kernels = []
            try:
                for k, root in enumerate(roots):
                    km, kc = start_kernel(Path(tmpdir) / f"{workload}{k}", root, f"mw{k}")
                    kernels.append((root, km, kc))
                    run_cell(kc, textwrap.dedent(SETUP.format(workload=workload, warmup=args.warmup)))
                results: dict[Path, tuple[list[Any], ...]] = {r: ([], [], [], []) for r in roots}
                for block in range(args.blocks):
                    k = block % len(kernels)
                    for root, _km, kc in kernels[k:] + kernels[:k]:
                        out = run_cell(kc, BLOCK.format(ticks=args.ticks))
                        line = next(ln for ln in out.splitlines() if ln.startswith("MW_RESULT "))
                        for acc, new in zip(results[root], json.loads(line[len("MW_RESULT "):])):
                            acc.extend(new)
            finally:
                for _root, km, kc in kernels:
                    kc.stop_channels()
                    km.shutdown_kernel(now=True)
            for root in roots:
                wall, cpu, msgs, rest = results[root]
                q = sorted(wall)
                rows.append([workload, str(root), str(len(wall)), *(_median_ci(v) for v in (wall, cpu, rest)),
                             f"{q[int(0.9 * (len(q) - 1))] * 1e3:.2f}", f"{q[-1] * 1e3:.2f}",
                             f"{sum(msgs) / len(msgs):.2f}"])
    head = ["workload", "root", "ticks", "wall ms [95%]", "cpu ms [95%]", "cpu outside _compute ms [95%]",
            "wall p90 ms", "wall max ms", "msgs/tick"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        print("| " + " | ".join(r) + " |")


def _median_ci(values: list[float]) -> str:
    lo, hi = bootstrap(values)
    return f"{statistics.median(values) * 1e3:.3f} [{lo * 1e3:.3f}-{hi * 1e3:.3f}]"

if __name__ == "__main__":
    main()
