"""Two checkouts' ticks give the same record, findings, events and wire messages (a check for speed work).

    .venv/bin/python -m benchmarks.tick_identical --roots /tmp/base,. [--workload deep50|seed] [--epochs 120]

Each root (a checkout with its front-end bundle built) runs in its own process: the workload (``seed``: the seed
MLP, 7 steps of batch 8 and a validation pass per epoch; ``deep50``: 50 x (Linear(256, 256) + ReLU), 2 steps of
batch 64), the seed lens set, ``visualizer='widget'`` outside IPython (every tick is sent; throttled snapshots
switched off, since their timing depends on the clock), the same seed and one torch thread, every 7th pushed metric
NaN. Kept per root: the run's value matrix (bytes), every finding (``to_dict``), the skipped checks, every event
the record emitted and every message the widget sent (JSON content and binary buffers), with the wall-clock
fields (``time``, ``sec_per_epoch``) blanked. Compared with ``pickle.dumps`` (NaN equals NaN, -0.0 differs from
0.0, dict order counts). Exits 1 at the first difference.
"""

from __future__ import annotations

import argparse
import os
import pickle
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r'''
import copy, pickle, sys
root, out, workload, epochs = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
sys.path.insert(0, root)
import numpy as np, torch
from torch import nn
torch.set_num_threads(1)
import monitorch_widget
assert monitorch_widget.__file__.startswith(root), monitorch_widget.__file__
from monitorch_widget import PyTorchInspector
from monitorch_widget.lens import LossMetrics, OutputActivation, ParameterGradientActivation
torch.manual_seed(0)
if workload == "seed":
    model = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 2), nn.Softmax(dim=1))
    x, y, batch = torch.randn(56, 2), torch.randint(0, 2, (56,)), 8
else:
    model = nn.Sequential(*[m for _ in range(50) for m in (nn.Linear(256, 256), nn.ReLU())])
    x, y, batch = torch.randn(128, 256), torch.randint(0, 256, (128,)), 64
opt, loss_fn = torch.optim.Adam(model.parameters()), nn.CrossEntropyLoss()
ins = PyTorchInspector([LossMetrics(loss_fn=loss_fn, metrics=["accuracy"]), OutputActivation(),
                        ParameterGradientActivation()], visualizer="widget", module=model)
widget = ins.widget
widget._sync._snapshot_min_interval = 1e9
sent, events = [], []
send = widget._send
def spy(*args, **kwargs):
    sent.append(copy.deepcopy(args))
    return send(*args, **kwargs)
widget._send = spy
ins.history.subscribe(lambda ev: events.append([v.tolist() if isinstance(v, np.ndarray) else copy.deepcopy(v)
                                                for v in ev]))
for epoch in range(epochs):
    for i in range(0, len(x), batch):
        opt.zero_grad(); loss_fn(model(x[i:i + batch]), y[i:i + batch]).backward(); opt.step()
    with torch.no_grad():
        loss_fn(model(x), y)
    ins.push_metric("accuracy", 0.5 if epoch % 7 else float("nan"))
    ins.tick_epoch()
def blank(o):
    if isinstance(o, dict):
        return {k: None if k in ("time", "sec_per_epoch") else blank(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [blank(v) for v in o]
    return o
record = ins.history
pickle.dump({"data": record.runs[-1].data.tobytes(), "findings": [f.to_dict() for f in record.health.findings()],
             "skipped": record.health.skipped, "events": blank(events),
             "sent": [(blank(s[0]), [bytes(b) for b in s[1]]) if len(s) > 1 else blank(s[0]) for s in sent]},
            open(out, "wb"))
print(f"{root}: {len(events)} events, {len(sent)} messages, {len(record.health.findings())} findings")
'''


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--roots", required=True, help="two comma-separated checkouts")
    ap.add_argument("--workload", default="deep50", choices=["deep50", "seed"])
    ap.add_argument("--epochs", type=int, default=120)
    args = ap.parse_args(argv)
    roots = [str(Path(r).resolve()) for r in args.roots.split(",")]
    if len(roots) != 2:
        raise SystemExit("--roots takes two checkouts, e.g. --roots /tmp/base,.")
    kept = []
    with tempfile.TemporaryDirectory() as tmp:
        for k, root in enumerate(roots):
            out = os.path.join(tmp, f"{k}.pkl")
            env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": root}
            subprocess.run([sys.executable, "-c", CHILD, root, out, args.workload, str(args.epochs)], check=True,
                           env=env)
            with open(out, "rb") as f:
                kept.append(pickle.load(f))
    a, b = kept
    for key in a:
        if pickle.dumps(a[key]) == pickle.dumps(b[key]):
            print(f"same {key}")
            continue
        first = next((i for i, (x, y) in enumerate(zip(a[key], b[key])) if pickle.dumps(x) != pickle.dumps(y)),
                     None) if isinstance(a[key], list) else None
        print(f"DIFFERENT {key}" + (f" (first at {first}: {a[key][first]!r:.300} vs {b[key][first]!r:.300})"
                                    if first is not None else ""))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
