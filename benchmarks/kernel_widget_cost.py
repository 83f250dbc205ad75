"""Where the widget's share of ``tick_epoch()`` goes in a real kernel (ipykernel through jupyter_client).

    .venv/bin/python -m benchmarks.kernel_widget_cost [--roots A,B] [--blocks 4] [--ticks 20] [--only seed,deep50]

For each workload of :mod:`benchmarks.kernel_tick` (same cells, same kernels, no front-end connected) and each
root, one kernel trains with ``visualizer='none'`` and one with the widget displayed; their cells run
interleaved. In the widget's kernel every tick is split with ``time.thread_time`` (CPU of the training thread)
and ``time.perf_counter`` (wall), by wrapping, on that kernel's own objects:

* ``sync``: the widget's ``DeltaSync._handle`` (every record event: merging into the pending delta, and the
  flush that encodes and sends it), of which ``encode``: ``encode_delta`` (our JSON-ready dict and buffers);
* ``comm.send``: ipywidgets' send down to ipykernel's IOPub thread, of which ``serialize``:
  jupyter_client's ``Session.serialize`` (JSON of the header/content, HMAC-SHA256 signing, ``sign`` on its
  own) and ``schedule``: handing the frames to the IOPub thread (``IOPubThread.send_multipart``: a wake-up
  message on a zmq pipe; the IOPub thread then takes the GIL to write the socket, which the training thread
  sees as wall time, not CPU);
* bytes per message (the signed frames, buffers included) and messages per tick.

Then ipykernel's fixed cost of one comm message, apart from anything of ours: 200 sends of a minimal custom
message (``{"type": "noop"}``, no buffers) on the widget's comm, each timed the same way, 2 ms apart (the
IOPub thread writes it out while this thread sleeps); and ``handoff``: the wall time one send adds to a thread
that goes on with 1 ms of pure-Python work right after it (as a tick does after its delta), i.e. the send plus
the GIL time ipykernel's IOPub thread takes to write the message out, for an empty and a 20 kB message.
Reported: medians (bootstrap 95% interval for the tick), in ms; messages per tick as a mean (a throttled
snapshot, the ``history`` trait, adds a few per cent), bytes per tick as a median (the snapshot's are not).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import textwrap
from pathlib import Path
from typing import Any

from .common import bootstrap
from .kernel_tick import ROOT, SETUP, run_cell, start_kernel

WITHOUT_WIDGET = [  # SETUP's widget lines, replaced for the kernel that trains without one
    ('visualizer="widget"', 'visualizer="none"'),
    ("w = ins.widget\n", ""),
    ("_send = w.comm.send\n", "_send = None\n"),
    ("w.comm.send = _counted\n", ""),
    ("display(w)\n", ""),
]

INSTRUMENT = """
import time as _t
import monitorch_widget.views.sync as _sync_mod
parts = {}
def _timed(name, fn):
    def wrapper(*a, **k):
        c0, t0 = _t.thread_time(), _t.perf_counter()
        try:
            return fn(*a, **k)
        finally:
            p = parts.setdefault(name, [0.0, 0.0, 0])
            p[0] += _t.thread_time() - c0
            p[1] += _t.perf_counter() - t0
            p[2] += 1
    return wrapper
_sync = w._sync
_sync._handle = _timed("sync", _sync._handle)
_sync_mod.encode_delta = _timed("encode", _sync_mod.encode_delta)
frame_bytes = [0]
_in_send = [False]  # count the session's work only for our sends (stdout goes through it too, on other threads)
_comm_send = w.comm.send
def _comm_send_marked(data=None, metadata=None, buffers=None):
    _in_send[0] = True
    try:
        frame_bytes[0] += sum(memoryview(b).nbytes for b in buffers or [])
        return _comm_send(data, metadata, buffers)
    finally:
        _in_send[0] = False
w.comm.send = _timed("comm.send", _comm_send_marked)
_session = w.comm.kernel.session
def _only_ours(name, fn):
    timed = _timed(name, fn)
    return lambda *a, **k: timed(*a, **k) if _in_send[0] else fn(*a, **k)
_serialize = _session.serialize
def _serialize_counted(*a, **k):
    frames = _serialize(*a, **k)
    frame_bytes[0] += sum(len(f) for f in frames)
    return frames
_session.serialize = _only_ours("serialize", _serialize_counted)
_session.sign = _only_ours("sign", _session.sign)
_io = w.comm.kernel.iopub_thread
_io.send_multipart = _only_ours("schedule", _io.send_multipart)

def parted(n):
    out = []
    for _ in range(n):
        parts.clear()
        frame_bytes[0] = 0
        m0 = n_msgs[0]
        wall, cpu, _, _ = epochs(1)
        out.append({"tick_wall": wall[0], "tick_cpu": cpu[0], "msgs": n_msgs[0] - m0, "bytes": frame_bytes[0],
                    **{k + "_cpu": v[0] for k, v in parts.items()}, **{k + "_wall": v[1] for k, v in parts.items()}})
    return out

def noop(n):
    out = []
    for _ in range(n):
        parts.clear()
        w.comm.send({"method": "custom", "content": {"type": "noop"}})  # what ipywidgets' Widget.send sends
        out.append({k + "_cpu": v[0] for k, v in parts.items()} | {k + "_wall": v[1] for k, v in parts.items()})
        _t.sleep(0.002)  # let the IOPub thread drain, as between ticks
    return out

def _busy(seconds):  # pure-Python work that holds the GIL, like the rest of a tick after its delta
    end = _t.thread_time() + seconds
    while _t.thread_time() < end:
        pass

def handoff(n, size):
    # wall of (send + 1 ms of this thread's CPU) minus wall of (1 ms of CPU) alone: the send's own time plus the
    # GIL time the IOPub thread takes from a busy training thread to write the message out
    out = []
    content = {"type": "noop", "pad": "x" * size}
    for _ in range(n):
        t0 = _t.perf_counter(); _busy(0.001); alone = _t.perf_counter() - t0
        _t.sleep(0.002)
        t0 = _t.perf_counter(); w.comm.send({"method": "custom", "content": content}); _busy(0.001)
        out.append({"handoff_wall": _t.perf_counter() - t0 - alone})
        _t.sleep(0.002)
    return out
"""

KEYS = ["tick_wall", "tick_cpu", "sync_cpu", "encode_cpu", "comm.send_cpu", "comm.send_wall", "serialize_cpu",
        "sign_cpu", "schedule_cpu", "schedule_wall"]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--roots", default=str(ROOT), help="comma-separated checkouts (PYTHONPATH each)")
    ap.add_argument("--blocks", type=int, default=4, help="timed cells per kernel (interleaved)")
    ap.add_argument("--ticks", type=int, default=20, help="epochs per timed cell")
    ap.add_argument("--only", default="seed,deep50", help="workloads: seed, deep50")
    args = ap.parse_args(argv)
    roots = [Path(r).resolve() for r in args.roots.split(",") if r]
    load = os.getloadavg()
    print(f"widget's share of tick_epoch() in a real kernel, no front-end connected; load average "
          f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; {args.blocks} interleaved cells x {args.ticks} ticks per kernel")
    rows: list[list[str]] = []
    noops: list[list[str]] = []
    with tempfile.TemporaryDirectory() as tmpdir:
        for workload in [w for w in args.only.split(",") if w]:
            kernels = []
            try:
                for k, root in enumerate(roots):
                    for widget in (False, True):
                        km, kc = start_kernel(Path(tmpdir) / f"{workload}{k}{int(widget)}", root, f"mw{k}{int(widget)}")
                        kernels.append((root, widget, km, kc))
                        setup = textwrap.dedent(SETUP.format(workload=workload, warmup=20))
                        if not widget:
                            for old, new in WITHOUT_WIDGET:
                                if old not in setup:
                                    raise SystemExit(f"kernel_tick.SETUP changed: {old!r} not found")
                                setup = setup.replace(old, new)
                        run_cell(kc, setup)
                        if widget:
                            run_cell(kc, INSTRUMENT)
                results: dict[tuple[Path, bool], list[dict[str, float]]] = {(r, w): [] for r, w, _, _ in kernels}
                for block in range(args.blocks):
                    k = block % len(kernels)
                    for root, widget, _km, kc in kernels[k:] + kernels[:k]:
                        code = f"parted({args.ticks})" if widget else \
                            f"[{{'tick_wall': a, 'tick_cpu': b}} for a, b, *_ in zip(*epochs({args.ticks}))]"
                        results[(root, widget)].extend(_run(kc, code))
                for root, widget, _km, kc in kernels:
                    if widget:
                        got = _run(kc, "noop(200)")
                        busy = [_run(kc, f"handoff(100, {size})") for size in (0, 20000)]
                        noops.append([workload, str(root), *(_med(got, k) for k in KEYS[4:]),
                                      *(_med(b, "handoff_wall") for b in busy)])
            finally:
                for _r, _w, km, kc in kernels:
                    kc.stop_channels()
                    km.shutdown_kernel(now=True)
            for (root, widget), ticks in results.items():
                rows.append([workload, str(root), "widget" if widget else "none", str(len(ticks)),
                             _ci(ticks, "tick_wall"), _ci(ticks, "tick_cpu"), *(_med(ticks, k) for k in KEYS[2:]),
                             f"{statistics.mean(t.get('msgs', 0) for t in ticks):.2f}",
                             f"{statistics.median(t.get('bytes', 0) for t in ticks):.0f}"])
    _table(["workload", "root", "visualizer", "ticks", "tick wall [95%]", "tick cpu [95%]", *KEYS[2:],
            "msgs/tick", "bytes/tick (median)"], rows)
    print("\nipykernel's fixed cost of one minimal comm message (200 sends, medians, ms):")
    _table(["workload", "root", *KEYS[4:], "handoff_wall (busy thread)", "handoff_wall, 20 kB"], noops)


def _run(kc: Any, expr: str) -> Any:
    """The value of the Python expression ``expr`` in the kernel (through JSON)."""
    out = run_cell(kc, f"import json as _j; print('MW_RESULT ' + _j.dumps({expr}))")
    line = next(ln for ln in out.splitlines() if ln.startswith("MW_RESULT "))
    return json.loads(line[len("MW_RESULT "):])


def _ci(ticks: list[dict[str, float]], key: str) -> str:
    values = [t.get(key, 0.0) for t in ticks]
    lo, hi = bootstrap(values)
    return f"{statistics.median(values) * 1e3:.3f} [{lo * 1e3:.3f}-{hi * 1e3:.3f}]"


def _med(ticks: list[dict[str, Any]], key: str) -> str:
    return f"{statistics.median(t.get(key, 0.0) for t in ticks) * 1e3:.3f}"


def _table(head: list[str], rows: list[list[str]]) -> None:
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        print("| " + " | ".join(r) + " |")


if __name__ == "__main__":
    main()
