"""Scenarios for the 2-rank gloo tests, one process per rank (started by ``spawn.run_ranks``).

``python ranks.py SCENARIO RANK WORLD PORT OUTDIR ARGS_JSON``: joins a gloo group on 127.0.0.1:PORT, runs
``SCENARIO(rank, world, **args)`` and writes what it returns to ``OUTDIR/rank{RANK}.json``. The global batches
come from :func:`global_batches`, so a test can compute the expected values without any engine.
"""

from __future__ import annotations

import datetime
import json
import sys
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from monitorch_widget import DistributedTickError, MonitorNotice, MonitorWarning, PyTorchInspector
from monitorch_widget.lens import LossMetrics, OutputActivation, ParameterGradientActivation

W, B = "Weight Gradient Activation", "Bias Gradient Activation"
PARAMS = [("0", W), ("0", B), ("2", W), ("2", B), ("4", W)]


def make_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 7), nn.ReLU(), nn.Linear(7, 3))


class Conv1D(nn.Module):
    """GPT-2's layout (transformers.pytorch_utils.Conv1D): weight [in, out], units along axis 1."""

    def __init__(self, nx: int, nf: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(nx, nf) * 0.5)
        self.bias = nn.Parameter(torch.zeros(nf))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.weight + self.bias


class UnitsModel(nn.Module):
    """Units that a row shard splits: Conv1D (axis 1) and a grouped ConvTranspose (axis 1 within groups)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.proj = Conv1D(6, 8)
        self.act = nn.ReLU()
        self.up = nn.ConvTranspose1d(4, 6, 3, groups=2, bias=False)
        self.head = nn.Linear(24, 3)
        with torch.no_grad():  # dead units: two Conv1D columns, the first output channel of each group
            self.proj.bias[[1, 6]] = -20.0
            self.up.weight[:, 0] = -self.up.weight[:, 0].abs() - 0.1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.proj(x)).reshape(x.shape[0], 4, 2)
        return self.head(self.act(self.up(h)).flatten(1))


def global_batches(epoch: int, steps: int, per_rank: int, world: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Sparse inputs (half the features zero per sample): one rank's gradient has zero entries that the
    all-reduced gradient does not, so reading before the all-reduce gives different rates."""
    g = torch.Generator().manual_seed(1000 + epoch)
    out = []
    for _ in range(steps):
        x = torch.randn(per_rank * world, 6, generator=g)
        x = x * (torch.rand(x.shape, generator=g) > 0.6)
        out.append((x, torch.randint(0, 3, (per_rank * world,), generator=g)))
    return out


def gradient_series(inspector: PyTorchInspector) -> dict[str, list[list[float]]]:
    h = inspector.history
    return {f"{group} {tag}": [h.series(tag, group, "activation_rate").tolist(),
                               h.series(tag, group, "death_rate").tolist()] for group, tag in PARAMS}


def ddp(rank: int, world: int, epochs: int = 2, steps: int = 4, per_rank: int = 3, accumulate: int = 1,
        bucket_view: bool = False, static_graph: bool = False, attach_wrapped: bool = False,
        optimizer: bool = False, aggregation: str = "mean") -> dict[str, Any]:
    """Train under DDP; ``optimizer=False`` updates by hand (no torch.optim step), so the gradient is read
    at the end of the backward pass -- the read that must wait for DDP's all-reduce."""
    from torch.nn.parallel import DistributedDataParallel as DDP

    model = make_model()
    inspector = PyTorchInspector([ParameterGradientActivation(activation_aggregation=aggregation)], visualizer="none")
    if not attach_wrapped:
        inspector.attach(model)
    wrapped = DDP(model, gradient_as_bucket_view=bucket_view, static_graph=static_graph)
    if attach_wrapped:
        inspector.attach(wrapped)
    opt = torch.optim.SGD(wrapped.parameters(), lr=0.5)
    loss_fn = nn.CrossEntropyLoss()
    for epoch in range(epochs):
        batches = global_batches(epoch, steps * accumulate, per_rank, world)
        for step in range(steps):
            for micro in range(accumulate):
                x, y = batches[step * accumulate + micro]
                part = slice(rank * per_rank, (rank + 1) * per_rank)
                if micro < accumulate - 1:
                    with wrapped.no_sync():
                        loss_fn(wrapped(x[part]), y[part]).backward()
                else:
                    loss_fn(wrapped(x[part]), y[part]).backward()
            if optimizer:
                opt.step()
            else:
                with torch.no_grad():
                    for p in model.parameters():
                        p -= 0.5 * p.grad
            opt.zero_grad()
        inspector.tick_epoch()
    return gradient_series(inspector)


def geometry_lenses(optimizer: torch.optim.Optimizer) -> list[Any]:
    from monitorch_widget.lens import ParameterGradientGeometry, ParameterNorm, ParameterUpdateGeometry

    return [ParameterGradientGeometry(), ParameterNorm(), ParameterUpdateGeometry(optimizer)]


def geometry_run(model: nn.Module, trained: nn.Module, rank: int, world: int, epochs: int = 2, steps: int = 3,
                 per_rank: int = 3) -> dict[str, list[float]]:
    """Adam on ``trained`` (``model`` itself, or its DDP wrapper) with the geometry lenses; every line series."""
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    inspector = PyTorchInspector(geometry_lenses(opt), visualizer="none", module=trained)
    loss_fn = nn.CrossEntropyLoss()
    for epoch in range(epochs):
        for x, y in global_batches(epoch, steps, per_rank, world):
            part = slice(rank * per_rank, (rank + 1) * per_rank) if trained is not model else slice(None)
            opt.zero_grad()
            loss_fn(trained(x[part]), y[part]).backward()
            opt.step()
        inspector.tick_epoch()
    run = inspector.history.runs[-1]
    return {f"{c['panel']}|{c['group']}|{c['key']}": run.series(c["panel"], c["group"], c["key"]).tolist()
            for c in run.column_dicts() if c["role"] == "line"}


def ddp_geometry(rank: int, world: int) -> dict[str, list[float]]:
    from torch.nn.parallel import DistributedDataParallel as DDP

    model = make_model()
    return geometry_run(model, DDP(model), rank, world)


def ddp_variants(rank: int, world: int, variants: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Several DDP runs in one pair of processes (starting a process costs more than a run)."""
    return [ddp(rank, world, **variant) for variant in variants]


def fsdp(rank: int, world: int, attach_before: bool, epochs: int = 2, steps: int = 3, per_rank: int = 3,
         aggregation: str = "mean", units_model: bool = False, update_every: int | None = None,
         mesh: list[int] | None = None) -> dict[str, Any]:
    """FSDP2 (``fully_shard`` per layer and at the root), attached before or after sharding; Adam steps."""
    from torch.distributed.fsdp import fully_shard

    model = UnitsModel() if units_model else make_model()
    inspector = PyTorchInspector([ParameterGradientActivation(death_aggregation=aggregation),
                                  OutputActivation()], visualizer="none", update_every=update_every)
    if attach_before:
        inspector.attach(model)
    kw: dict[str, Any] = {}
    if mesh is not None:  # HSDP: replicate over mesh dim 0, shard over dim 1
        from torch.distributed.device_mesh import init_device_mesh

        kw["mesh"] = init_device_mesh("cpu", tuple(mesh), mesh_dim_names=("replicate", "shard"))
    for layer in ((model.proj, model.up) if units_model else (model[0], model[2], model[4])):
        fully_shard(layer, **kw)
    fully_shard(model, **kw)
    if not attach_before:
        inspector.attach(model)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    loss_fn = nn.CrossEntropyLoss()
    for epoch in range(epochs):
        for x, y in global_batches(epoch, steps, per_rank, world):
            part = slice(rank * per_rank, (rank + 1) * per_rank)
            loss_fn(model(x[part]), y[part]).backward()
            opt.step()
            opt.zero_grad()
        inspector.tick_epoch()
    if units_model:
        h = inspector.history
        return {f"{group} {tag}": [h.series(tag, group, "activation_rate").tolist(),
                                   h.series(tag, group, "death_rate").tolist()]
                for group, tag in [("proj", W), ("up", W), ("head", W)]}
    out = gradient_series(inspector)
    out["groups"] = inspector.history.runs[0].groups(W)
    return out


def gradient_geometry_series(inspector: PyTorchInspector) -> dict[str, list[float]]:
    run = inspector.history.runs[-1]
    return {f"{c['panel']}|{c['group']}|{c['key']}|{c['role']}": run.series(c["panel"], c["group"], c["key"],
                                                                         c["role"]).tolist()
            for c in run.column_dicts()}


def parameter_lenses(optimizer: torch.optim.Optimizer | None) -> list[Any]:
    from monitorch_widget.lens import ParameterGradientGeometry, ParameterNorm, ParameterUpdateGeometry

    return [ParameterGradientGeometry(parameters=["weight", "bias"]), ParameterNorm(),
            ParameterUpdateGeometry(optimizer)]


def gradient_geometry_run(model: nn.Module, split: bool, opt: torch.optim.Optimizer, inspector: PyTorchInspector,
                          rank: int, world: int, epochs: int = 2, steps: int = 3, per_rank: int = 3
                          ) -> dict[str, list[float]]:
    """Adam steps on ``model`` (sharded or not) over the global batches (this rank's part when ``split``); every
    line and band series of the inspector's run."""
    loss_fn = nn.CrossEntropyLoss()
    for epoch in range(epochs):
        for x, y in global_batches(epoch, steps, per_rank, world):
            part = slice(rank * per_rank, (rank + 1) * per_rank) if split else slice(None)
            loss_fn(model(x[part]), y[part]).backward()
            opt.step()
            opt.zero_grad()
        inspector.tick_epoch()
    return gradient_geometry_series(inspector)


def fsdp_gradient_geometry(rank: int, world: int, attach_before: bool) -> dict[str, list[float]]:
    """FSDP2 with the parameter geometry lenses: gradient norms and correlations from the shards' summed parts,
    parameter norms and updates of the sharded parameters."""
    from torch.distributed.fsdp import fully_shard

    model = make_model()
    inspector = None
    if attach_before:  # (the update lens needs the optimizer, which FSDP2 wants built after sharding)
        inspector = PyTorchInspector(parameter_lenses(None)[:2], visualizer="none", module=model)
    for layer in (model[0], model[2], model[4]):
        fully_shard(layer)
    fully_shard(model)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    if inspector is None:
        inspector = PyTorchInspector(parameter_lenses(opt), visualizer="none", module=model)
    return gradient_geometry_run(model, True, opt, inspector, rank, world)


def fsdp_variants(rank: int, world: int, variants: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [fsdp(rank, world, **variant) for variant in variants]


def uneven_batches(epoch: int) -> list[list[tuple[torch.Tensor, torch.Tensor]]]:
    """Per rank, its batches of ``epoch``: 3 and 2 in epoch 0, 2 and none in epoch 1."""
    batches = global_batches(epoch, 5, 4, 1)
    return [batches[:3], batches[3:]] if epoch == 0 else [batches[:2], []]


def quirks(rank: int, world: int) -> dict[str, Any]:
    """Uneven ranks without DDP (each rank's own gradients, no update): rank 1 has fewer batches and none in
    epoch 1; the validation loss is pushed on rank 0 only, the metric on rank 1 only; median and quartiles."""
    model = make_model()
    inspector = PyTorchInspector([
        LossMetrics(metrics=["acc"], loss_line=["mean", "median"], loss_range="Q1-Q3", metrics_line=["median"]),
        OutputActivation(activation_aggregation="median", death_aggregation="mean"),
        ParameterGradientActivation(activation_aggregation="median")], visualizer="none").attach(model)
    loss_fn = nn.CrossEntropyLoss()
    for epoch in range(2):
        for i, (x, y) in enumerate(uneven_batches(epoch)[rank]):
            model.zero_grad(set_to_none=True)
            loss = loss_fn(model(x), y)
            loss.backward()
            inspector.push_loss(loss, train=True)
            if rank == 0:
                inspector.push_loss(loss.item() + 1.0, train=False)
            else:
                inspector.push_metric("acc", float(i + 10 * epoch))
        inspector.tick_epoch()
    run = inspector.history.runs[0]
    return {f"{c.panel}|{c.group}|{c.key}": run.data[:, j].tolist() for j, c in enumerate(run.columns)}


def one_rank_ticks(rank: int, world: int, ticker: int = 0) -> dict[str, Any]:
    """The common mistake: ``if rank == 0: inspector.tick_epoch()`` (``ticker``: the rank that ticks)."""
    import time

    model = make_model()
    inspector = PyTorchInspector([LossMetrics(), OutputActivation()], visualizer="none",
                                 distributed_timeout=2.0).attach(model)
    model(torch.randn(4, 6))
    inspector.push_loss(1.0, train=True)
    if rank != ticker:
        return {"error": None}
    started = time.monotonic()
    try:
        inspector.tick_epoch()
    except DistributedTickError as exc:
        return {"error": str(exc), "seconds": time.monotonic() - started}
    return {"error": "no error"}


def quirks_and_missing_ticks(rank: int, world: int) -> dict[str, Any]:
    """All rank-quirk cases in one pair of processes (each inspector meets under its own keys)."""
    return {"quirks": quirks(rank, world), "rank 0 ticks": one_rank_ticks(rank, world, 0),
            "rank 1 ticks": one_rank_ticks(rank, world, 1)}


from active_ranks import active_differs, nonfinite_on_one_rank  # noqa: E402, F401 - scenarios main() finds by name


def main() -> None:
    scenario, rank, world, port, outdir, args = sys.argv[1:7]
    rank_, world_ = int(rank), int(world)
    warnings.simplefilter("error", MonitorWarning)
    warnings.simplefilter("ignore", MonitorNotice)
    torch.distributed.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank_,
                                         world_size=world_, timeout=datetime.timedelta(seconds=60))
    result = globals()[scenario](rank_, world_, **json.loads(args))
    Path(outdir, f"rank{rank_}.json").write_text(json.dumps(result))
    torch.distributed.barrier()  # neither rank tears its gloo pairs down while the other still uses them
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
