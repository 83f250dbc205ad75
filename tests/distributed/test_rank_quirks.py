"""The tick on 2 gloo ranks when ranks differ: uneven or missing batches, values seen on one rank only,
quantiles over every rank's batches, and a rank that never ticks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import closest_observation
from ranks import make_model, uneven_batches
from spawn import run_ranks
from torch import nn

EPS = 1e-8


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    return run_ranks("quirks_and_missing_ticks", tmp_path_factory.mktemp("quirks"))


@pytest.fixture
def quirks(ranks):
    return [r["quirks"] for r in ranks]


def median(values: list[float]) -> float:
    return closest_observation(torch.tensor(values, dtype=torch.float64), 0.5)


def expected_quirks() -> dict[str, list[float]]:
    """By hand, from every batch of both ranks (no inspector, no process group)."""
    model = make_model()
    loss_fn = nn.CrossEntropyLoss()
    out: dict[str, list[float]] = {}

    def add(key: str, value: float) -> None:
        out.setdefault(key, []).append(value)

    for epoch in range(2):
        losses, val, acc, relu, grads = [], [], [], [], []
        for rank, batches in enumerate(uneven_batches(epoch)):
            for i, (x, y) in enumerate(batches):
                model.zero_grad(set_to_none=True)
                hidden = model[1](model[0](x))
                loss = loss_fn(model[4](model[3](model[2](hidden))), y)
                loss.backward()
                losses.append(loss.item())
                (val if rank == 0 else acc).append(loss.item() + 1.0 if rank == 0 else float(i + 10 * epoch))
                relu.append(((hidden > EPS).double().mean().item(), (hidden <= EPS).all(0).double().mean().item()))
                g = model[0].weight.grad
                grads.append((g.abs() > EPS).double().mean().item())
        add("Loss|Loss|train_loss mean", float(np.mean(losses)))
        # monitorch's quantile rule for the median and the Q1-Q3 band: the closest observation
        add("Loss|Loss|train_loss median", median(losses))
        add("Loss|Loss|train_loss Q1", closest_observation(torch.tensor(losses), 0.25))
        add("Loss|Loss|train_loss Q3", closest_observation(torch.tensor(losses), 0.75))
        add("Loss|Loss|val_loss median", median(val))
        add("Metrics|Metrics|acc median", median(acc) if acc else float("nan"))
        add("Output Activations|1|activation_rate", median([r[0] for r in relu]))
        add("Output Activations|1|death_rate", float(np.mean([r[1] for r in relu])))
        add("Weight Gradient Activation|0|activation_rate", median(grads))
    return out


def test_uneven_ranks_combine_every_batch_of_every_rank(quirks):
    want = expected_quirks()
    assert quirks[0].keys() == quirks[1].keys()
    for key, values in want.items():
        for rank in quirks:  # both ranks record the combined values
            np.testing.assert_allclose(rank[key], values, rtol=1e-9, equal_nan=True, err_msg=key)


def test_quantiles_differ_from_a_single_rank_s_own():
    """Guard: the medians above are not what either rank alone would give."""
    losses = [[], []]
    model = make_model()
    for rank, batches in enumerate(uneven_batches(0)):
        losses[rank] = [nn.CrossEntropyLoss()(model(x), y).item() for x, y in batches]
    def quartiles(values: list[float]) -> list[float]:
        return [closest_observation(torch.tensor(values, dtype=torch.float64), p) for p in (0.25, 0.5, 0.75)]

    combined = quartiles(losses[0] + losses[1])
    # each rank's own quartiles miss the combined ones somewhere (a one-rank bug cannot pass the test above)
    assert all(max(abs(a - b) for a, b in zip(quartiles(own), combined)) > 1e-6 for own in losses)


def test_a_rank_that_does_not_tick_gives_a_clear_error_within_the_timeout(ranks):
    rank0, rank1 = (r["rank 0 ticks"] for r in ranks)
    assert rank1["error"] is None
    assert "rank(s) 1 did not reach tick_epoch()" in rank0["error"]
    assert "Call tick_epoch() on every rank" in rank0["error"]
    assert "distributed_timeout=2 s" in rank0["error"]
    assert "waited at its tick number 1" in rank0["error"]  # the first tick (it once said 2)
    assert 1.5 < rank0["seconds"] < 15


def test_the_master_rank_missing_is_named_too(ranks):
    rank0, rank1 = (r["rank 1 ticks"] for r in ranks)
    assert rank0["error"] is None
    assert "rank(s) 0 did not reach tick_epoch()" in rank1["error"]
    assert 1.5 < rank1["seconds"] < 15


def test_ranks_whose_is_active_fn_differs_at_a_tick_follow_the_master_and_finish(tmp_path):
    """Trial r7, finding 2: rank 0's tick inactive (eval mode after its own validation), rank 1's active. Every
    rank now meets at every tick and follows the master's answer: epoch 1 is skipped on both (only the counter
    moves: its batches wait for the next active tick, as in monitorch), epoch 2 records both epochs' batches of
    both ranks (mean by hand), the master names the rank that answered otherwise, and nothing hangs."""
    rank0, rank1 = run_ranks("active_differs", tmp_path, timeout=90)
    for r in (rank0, rank1):
        assert r["epochs"] == [2.0]
        want = np.mean(rank0["losses"][0] + rank0["losses"][1] + rank1["losses"][0] + rank1["losses"][1])
        np.testing.assert_allclose(r["loss"], [want], rtol=1e-9)
    differs = [n for n in rank0["notices"] if "[distributed]" in n]
    assert len(differs) == 1 and "is_active_fn answered True on rank(s) 1" in differs[0]
    assert "call model.train() before tick_epoch() on every rank" in differs[0]
    assert not [n for n in rank1["notices"] if "[distributed]" in n]


def test_what_the_combined_epoch_finds_is_printed_by_the_master_rank_only(tmp_path):
    """Trial r7: a NaN loss on rank 0 was printed as a MonitorWarning on both ranks (rank 1's own losses were finite):
    every rank computes the same combined epoch, so the master says it; both records keep the problem."""
    rank0, rank1 = run_ranks("nonfinite_on_one_rank", tmp_path)
    said = [w for w in rank0["warnings"] if "non-finite train_loss" in w]
    assert len(said) == 1 and "1 non-finite train_loss value(s)" in said[0]
    assert not [w for w in rank1["warnings"] if "non-finite" in w]
    for r in (rank0, rank1):
        assert any("non-finite train_loss values were left out" in m for m in r["problems"])
        np.testing.assert_allclose(r["loss"], [np.mean([0.5, 0.75, 0.5, 0.25, 0.75])])
