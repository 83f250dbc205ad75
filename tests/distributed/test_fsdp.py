"""FSDP2 (``fully_shard``) on 2 gloo ranks: gradient statistics from the local shards, equal to those of the
same model trained unsharded on the same global batches; FSDP1 refused at attach."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ranks import PARAMS, UnitsModel, W, global_batches, make_model
from spawn import run_ranks
from torch import nn

EPS = 1e-8
# update_every: provisional refreshes (each rank's own, at its own moments) leave the shard sums to the tick
VARIANTS = [{"attach_before": False}, {"attach_before": True, "update_every": 1}, {"attach_before": False, "aggregation": "Q1"},
            {"attach_before": True, "units_model": True},
            # HSDP: two replicas of an unsharded model, and one replica sharded two ways (2-D meshes)
            {"attach_before": False, "mesh": [2, 1], "aggregation": "Q1"}, {"attach_before": True, "mesh": [1, 2]}]


def rates(g: torch.Tensor) -> tuple[float, float]:
    active = g.abs() > EPS
    if g.dim() <= 1:
        return active.double().mean().item(), (~active).double().mean().item()
    return active.double().mean().item(), (~active.reshape(g.shape[0], -1).any(1)).double().mean().item()


def expected(epochs: int = 2, steps: int = 3, per_rank: int = 3, world: int = 2, aggregation: str = "mean",
             **_: object) -> dict[str, list[list[float]]]:
    """One process, unsharded, no engine: Adam on the global batch's mean loss (the gradient FSDP's
    reduce-scatter averages); rates of the gradient each step uses."""
    model = make_model()
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    loss_fn = nn.CrossEntropyLoss()
    names = {f"{group} {tag}": f"{group}.{'weight' if tag.startswith('Weight') else 'bias'}" for group, tag in PARAMS}
    out: dict[str, list[list[float]]] = {k: [[], []] for k in names}
    for epoch in range(epochs):
        per_epoch: dict[str, list[tuple[float, float]]] = {k: [] for k in names}
        for x, y in global_batches(epoch, steps, per_rank, world):
            loss_fn(model(x), y).backward()
            params = dict(model.named_parameters())
            for key, pname in names.items():
                per_epoch[key].append(rates(params[pname].grad))
            opt.step()
            opt.zero_grad()
        for key, pairs in per_epoch.items():
            dead = [p[1] for p in pairs]
            out[key][0].append(float(np.mean([p[0] for p in pairs])))
            out[key][1].append(float(np.quantile(dead, 0.25) if aggregation == "Q1" else np.mean(dead)))
    return out


@pytest.fixture(scope="module")
def fsdp_runs(tmp_path_factory):
    return run_ranks("fsdp_variants", tmp_path_factory.mktemp("fsdp"), variants=VARIANTS, timeout=120)


def unit_rates(g: torch.Tensor, units: torch.Tensor) -> tuple[float, float]:
    """``units``: the unit of each entry of ``g`` (same shape), written out by hand per layer."""
    active = g.abs() > EPS
    alive = torch.zeros(int(units.max()) + 1, dtype=torch.bool).index_put_((units.reshape(-1),),
                                                                           active.reshape(-1), accumulate=True)
    return active.double().mean().item(), (~alive).double().mean().item()


def expected_units(epochs: int = 2, steps: int = 3, per_rank: int = 3, world: int = 2) -> dict[str, list[list[float]]]:
    """UnitsModel unsharded: Conv1D weight [6, 8] has a unit per column; ConvTranspose1d(4, 6, groups=2) weight
    [4, 3, 3] has output channel g * 3 + j for input rows of group g = row // 2 and column j."""
    model = UnitsModel()
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    units = {"proj": torch.arange(8).expand(6, 8),
             "up": (torch.arange(4)[:, None, None] // 2 * 3 + torch.arange(3)[None, :, None]).expand(4, 3, 3),
             "head": torch.arange(3)[:, None].expand(3, 24)}
    out: dict[str, list[list[float]]] = {f"{k} {W}": [[], []] for k in units}
    for epoch in range(epochs):
        pairs: dict[str, list[tuple[float, float]]] = {k: [] for k in units}
        for x, y in global_batches(epoch, steps, per_rank, world):
            nn.CrossEntropyLoss()(model(x), y).backward()
            for k, u in units.items():
                pairs[k].append(unit_rates(getattr(model, k).weight.grad, u))
            opt.step()
            opt.zero_grad()
        for k, p in pairs.items():
            out[f"{k} {W}"][0].append(float(np.mean([a for a, _ in p])))
            out[f"{k} {W}"][1].append(float(np.mean([d for _, d in p])))
    return out


@pytest.mark.parametrize("index", range(len(VARIANTS)), ids=["after", "before", "after-Q1", "units", "hsdp-2x1", "hsdp-1x2"])
def test_fsdp2_statistics_equal_the_unsharded_model_s(fsdp_runs, index):
    want = expected_units() if VARIANTS[index].get("units_model") else expected(**VARIANTS[index])
    if VARIANTS[index].get("units_model"):
        assert any(0 < d < 1 for k in want for d in want[k][1]), "guard: some units die, not all"
        for rank in fsdp_runs:
            for key in want:
                np.testing.assert_allclose(rank[index][key], want[key], rtol=1e-9, atol=1e-12, err_msg=key)
        return
    for rank in fsdp_runs:
        got = rank[index]
        assert got.pop("groups") == ["0", "2", "4"]  # the user's names
        assert got.keys() == want.keys()
        for key in want:
            np.testing.assert_allclose(got[key], want[key], rtol=1e-9, atol=1e-12, err_msg=key)


def test_the_data_has_units_dead_on_one_shard_only():
    """Guard: the last layer's 7 weight rows split 4 + 3; a death rate that ignored one shard's rows or
    counted a rank's rows twice would differ from the unsharded one (which is neither 0 nor 1)."""
    want = expected()
    deaths = want["2 " + W][1] + want["2 Bias Gradient Activation"][1]
    assert any(0 < d < 1 for d in deaths)


def test_fsdp1_is_refused_at_attach_with_a_way_out(monkeypatch):
    """FSDP1 cannot be built without an accelerator: a stand-in subclass takes its place in
    ``torch.distributed.fsdp`` (attach looks the class up there)."""
    import torch.distributed.fsdp

    from monitorch_widget import PyTorchInspector
    from monitorch_widget.lens import ParameterGradientActivation

    class FullyShardedDataParallel(nn.Module):
        def __init__(self, module: nn.Module) -> None:
            super().__init__()
            self._fsdp_wrapped_module = module

    monkeypatch.setattr(torch.distributed.fsdp, "FullyShardedDataParallel", FullyShardedDataParallel)
    model = nn.Sequential(FullyShardedDataParallel(make_model()))
    with pytest.raises(TypeError, match=r"FullyShardedDataParallel \(FSDP1\) at 0:.*fully_shard"):
        PyTorchInspector([ParameterGradientActivation()], visualizer="none").attach(model)
    PyTorchInspector([ParameterGradientActivation()], visualizer="none").attach(make_model())  # no false alarm


def test_a_parameter_flattened_away_after_attach_is_reported_not_silently_unread():
    """What FSDP1 does to a model attached before wrapping: the module's parameter becomes a plain tensor."""
    from monitorch_widget import MonitorWarning, PyTorchInspector
    from monitorch_widget.lens import ParameterGradientActivation

    model = make_model()
    inspector = PyTorchInspector([ParameterGradientActivation()], visualizer="none").attach(model)
    flat = model[0].weight.detach().clone()
    del model[0].weight
    model[0].weight = flat
    model(torch.randn(3, 6)).sum().backward()
    with pytest.warns(MonitorWarning, match=r"0: parameter 'weight' was replaced by a Tensor of shape \(8, 6\) after "
                                            r"attach: something now computes it \(a reparametrization\) or flattened it \(FullyShardedDataParallel, "
                                            r"FSDP1.*fully_shard"):
        inspector.tick_epoch()
    assert np.isnan(inspector.history.series(W, "0", "activation_rate")[-1])
    assert not np.isnan(inspector.history.series(W, "2", "activation_rate")[-1])


@pytest.mark.parametrize("attach_before", [False, True], ids=["after", "before"])
def test_fsdp2_geometry_lenses_equal_the_unsharded_model_s(tmp_path, attach_before):
    """Gradient norms / correlations: each rank measures its shards' parts (squared norms, inner products),
    summed over the shard group; parameter norms and updates of the sharded parameters. Every series equals
    what one process gets on the same global batches."""
    from ranks import gradient_geometry_run, parameter_lenses

    from monitorch_widget import PyTorchInspector

    model = make_model()
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    reference = PyTorchInspector(parameter_lenses(opt), visualizer="none", module=model)
    want = gradient_geometry_run(model, False, opt, reference, 0, 2)
    ranks = run_ranks("fsdp_gradient_geometry", tmp_path, attach_before=attach_before, timeout=120)
    assert len(want) >= 30 and {"Weight Gradient Correlation", "Weight Norm", "Weight Update Norm"} <= {
        k.split("|")[0] for k in want}
    for got in ranks:
        # attached before sharding, the update lens is left out (it needs the sharded parameters' optimizer)
        assert got.keys() == {k for k in want if attach_before is False or "Update" not in k}
        for key in got:
            np.testing.assert_allclose(got[key], want[key], rtol=1e-4, atol=1e-6, err_msg=key)  # float32 sums
