"""Issue 12's real client: a tiny GPT instrumented as monitorch's author instruments pre-training.

The script is the same for both packages (only the import differs): ``model(x, y)`` returns the loss,
``LossMetrics(loss_fn=model, metrics=['val_bpb'])``, ``ParameterGradientActivation(parameters=['weight'])``,
``ParameterUpdateGeometry(optimizer, parameters=['weight'])``, ``is_active_fn=lambda _: model.training``, an
evaluation pass under ``model.eval()`` before each ``inspector.tick()``, and ``push_metric(name='val_bpb', ...)``.

* uncompiled, one backward per step: every value equals monitorch 0.1.0.7's;
* compiled: no recompile after the warm-up cycle, and values within 1e-3 of the uncompiled run;
* with gradient accumulation: gradient rates follow our definition (one observation per optimizer step, of
  the gradient that step used), computed here by hand from gradients cloned before each step.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from torch._dynamo.utils import counters

from tests.gpt_client import GPT, batches

monitorch = pytest.importorskip("monitorch", reason="monitorch (optional extra) is not installed")

pytestmark = pytest.mark.filterwarnings("ignore::monitorch_widget.MonitorNotice")

STEPS, TICK_EVERY = 12, 4


class Calls:
    """A monitorch visualizer that keeps every value it is given."""

    def __init__(self) -> None:
        self.values: dict[tuple[int, str, str, str], float] = {}

    def register_tags(self, tag, attrs) -> None:
        pass

    def _keep(self, epoch, tag, values) -> None:
        for group, lines in values.items():
            for key, v in lines.items():
                self.values[(epoch, tag, group, str(key))] = float(v)

    def plot_numerical_values(self, epoch, tag, values, ranges=None) -> None:
        self._keep(epoch, tag, values)
        for group, bands in (ranges or {}).items():
            for key, (lo, hi) in bands.items():
                self.values[(epoch, tag, group, f"{key} lo")] = float(lo)
                self.values[(epoch, tag, group, f"{key} hi")] = float(hi)

    def plot_probabilities(self, epoch, tag, values) -> None:
        self._keep(epoch, tag, values)

    def plot_relations(self, epoch, tag, values) -> None:
        self._keep(epoch, tag, values)


def client(package, base: GPT, *, compiled: bool = False, accumulation: int = 1, grads: list | None = None):
    """The client's training script; returns (values seen by its visualizer, dynamo stats after warm-up)."""
    inspector_mod = __import__(f"{package}.inspector", fromlist=["PyTorchInspector"])
    lens = __import__(f"{package}.lens", fromlist=["LossMetrics"])
    model = copy.deepcopy(base)
    run = torch.compile(model) if compiled else model
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    calls = Calls()
    inspector = inspector_mod.PyTorchInspector(
        module=run,
        lenses=[lens.LossMetrics(loss_fn=run, metrics=["val_bpb"]),
                lens.ParameterGradientActivation(parameters=["weight"]),
                lens.ParameterUpdateGeometry(optimizer, parameters=["weight"])],
        visualizer=calls, is_active_fn=lambda _: model.training)
    train = batches(STEPS * accumulation, seed=1)
    val = batches(2, seed=2)
    stats = {}
    for step in range(STEPS):
        model.train()
        for micro in range(accumulation):
            x, y = train[step * accumulation + micro]
            (run(x, y) / accumulation).backward()
        if grads is not None:
            grads.append({n: p.grad.detach().clone() for n, p in model.named_parameters() if n.endswith("weight")})
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if (step + 1) % TICK_EVERY == 0:
            model.eval()
            with torch.no_grad():
                val_loss = sum(run(x, y).item() for x, y in val) / len(val)
            inspector.push_metric(name="val_bpb", value=val_loss / math.log(2), running=True)
            model.train()
            inspector.tick()
            if step + 1 == TICK_EVERY:
                counters.clear()  # warm-up cycle done: train and eval graphs exist
    stats = {"recompiles": sum(counters["recompiles"].values()), "breaks": sum(counters["graph_break"].values())}
    return calls.values, stats


@pytest.fixture(scope="module")
def base() -> GPT:
    torch.manual_seed(0)
    return GPT()


def test_uncompiled_values_equal_monitorch(base):
    theirs, _ = client("monitorch", base)
    ours, _ = client("monitorch_widget", base)
    assert theirs and set(ours) == set(theirs), sorted(set(ours) ^ set(theirs))[:10]
    for key, v in theirs.items():
        if key[0] == 1 and "Update" in key[1]:
            # monitorch has no update for the first step and averages epoch 1 over the others; ours counts it
            # (README "Differences from monitorch"; pinned by hand in tests/test_geometry_interop.py)
            continue
        if key[1] == "Warning Gradient Activations":
            # monitorch's worst rates count the embedding 'wte', whose rows are silent for the tokens a batch lacks;
            # ours leave it out (README "Differences from monitorch"): the worst of the other layers' values
            rate = key[3].removeprefix("worst ")
            others = [x for (e, tag, group, k), x in theirs.items()
                      if e == key[0] and tag == "Weight Gradient Activation" and k == rate and group != "wte"]
            v = min(others) if rate == "activation_rate" else max(others)
        assert ours[key] == pytest.approx(v, rel=1e-4, abs=1e-6), key


def test_compiled_values_match_uncompiled_without_recompiles(base):
    torch._dynamo.reset()
    try:
        eager, _ = client("monitorch_widget", base)
        compiled, stats = client("monitorch_widget", base, compiled=True)
    finally:
        torch._dynamo.reset()
    assert stats == {"recompiles": 0, "breaks": 0}
    assert set(compiled) == set(eager)
    names = {group for (_, _, group, _) in compiled}
    assert "lm_head" in names and not any("_orig_mod" in n for n in names), names
    for key, v in eager.items():
        assert compiled[key] == pytest.approx(v, rel=1e-3, abs=1e-3), key


def test_gradient_accumulation_follows_our_definition(base):
    grads: list[dict[str, torch.Tensor]] = []
    ours, _ = client("monitorch_widget", base, accumulation=3, grads=grads)
    # one observation per optimizer step: the accumulated gradient the step used
    for tick in range(STEPS // TICK_EVERY):
        window = grads[tick * TICK_EVERY:(tick + 1) * TICK_EVERY]
        g = [w["lm_head.weight"] for w in window]
        per_row = [(x.abs() > 1e-8).float().mean(dim=1) for x in g]
        want = float(np.mean([r.mean().item() for r in per_row]))
        got = next(v for (epoch, tag, group, key), v in ours.items()
                   if epoch == tick + 1 and group == "lm_head" and key == "activation_rate" and "Gradient" in tag
                   and "Activation" in tag)
        assert got == pytest.approx(want, abs=1e-6)
