"""DDP on 2 gloo ranks: gradient rates describe the all-reduced gradient the optimizer uses."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ranks import PARAMS, geometry_run, global_batches, make_model
from spawn import run_ranks
from torch import nn

EPS = 1e-8


def rates(g: torch.Tensor) -> tuple[float, float]:
    active = g.abs() > EPS
    if g.dim() <= 1:
        return active.double().mean().item(), (~active).double().mean().item()
    return active.double().mean().item(), (~active.reshape(g.shape[0], -1).any(1)).double().mean().item()


def expected(epochs: int = 2, steps: int = 4, per_rank: int = 3, accumulate: int = 1, world: int = 2,
             aggregation: str = "mean", **_: object) -> dict[str, list[list[float]]]:
    """One process, no engine: the global batch's mean loss (what DDP's averaged gradient is the gradient of),
    k micro-batches summed; rates of the gradient each SGD step uses, averaged per epoch."""
    model = make_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    loss_fn = nn.CrossEntropyLoss()
    names = {f"{group} {tag}": f"{group}.{'weight' if tag.startswith('Weight') else 'bias'}" for group, tag in PARAMS}
    out: dict[str, list[list[float]]] = {k: [[], []] for k in names}
    for epoch in range(epochs):
        batches = global_batches(epoch, steps * accumulate, per_rank, world)
        per_epoch: dict[str, list[tuple[float, float]]] = {k: [] for k in names}
        for step in range(steps):
            for micro in range(accumulate):
                x, y = batches[step * accumulate + micro]
                loss_fn(model(x), y).backward()
            params = dict(model.named_parameters())
            for key, pname in names.items():
                per_epoch[key].append(rates(params[pname].grad))
            opt.step()
            opt.zero_grad()
        for key, pairs in per_epoch.items():
            activation = [p[0] for p in pairs]
            out[key][0].append(float(np.quantile(activation, 0.25) if aggregation == "Q1" else np.mean(activation)))
            out[key][1].append(float(np.mean([p[1] for p in pairs])))
    return out


def per_rank_expected() -> float:
    """The first layer's weight activation rate in epoch 1 if each rank's own gradient were read (the bug)."""
    model = make_model()
    loss_fn = nn.CrossEntropyLoss()
    x, y = global_batches(0, 4, 3, 2)[0]
    loss_fn(model(x[:3]), y[:3]).backward()
    return rates(model[0].weight.grad)[0]


VARIANTS = [
    {},
    {"bucket_view": True},
    {"static_graph": True},
    {"accumulate": 2},
    {"accumulate": 2, "bucket_view": True, "attach_wrapped": True},
    {"optimizer": True, "bucket_view": True, "static_graph": True},
    # one observation per step, not one per rank: a quartile of 3 steps differs from one of 3 doubled
    {"optimizer": True, "steps": 3, "aggregation": "Q1"},
]


@pytest.fixture(scope="module")
def ddp_runs(tmp_path_factory):
    return run_ranks("ddp_variants", tmp_path_factory.mktemp("ddp"), variants=VARIANTS, timeout=120)


@pytest.mark.parametrize("index", range(len(VARIANTS)), ids=[",".join(v) or "plain" for v in VARIANTS])
def test_ddp_gradient_rates_are_those_of_the_all_reduced_gradient(ddp_runs, index):
    want = expected(**VARIANTS[index])
    for rank in ddp_runs:  # every rank records the same reduced values
        got = rank[index]
        assert got.keys() == want.keys()
        for key in want:
            np.testing.assert_allclose(got[key], want[key], rtol=1e-9, atol=1e-12, err_msg=key)


def test_the_data_tells_the_all_reduced_gradient_from_a_rank_own():
    """Guard for the test above: one rank's own gradient has different rates than the all-reduced one."""
    assert per_rank_expected() != pytest.approx(expected()["0 Weight Gradient Activation"][0][0], abs=0.02)


def test_geometry_lenses_under_ddp_equal_one_process_on_the_global_batches(tmp_path):
    """Gradient / parameter / update norms and correlations of the all-reduced gradient, one observation per
    step (not one per rank): equal to the same lenses in one process on the same global batches."""
    model = make_model()
    want = geometry_run(model, model, 0, 2)
    ranks = run_ranks("ddp_geometry", tmp_path, timeout=120)
    assert len(want) > 10
    for got in ranks:
        assert got.keys() == want.keys()
        for key in want:
            np.testing.assert_allclose(got[key], want[key], rtol=1e-5, atol=1e-7, err_msg=key)  # float32 sums
