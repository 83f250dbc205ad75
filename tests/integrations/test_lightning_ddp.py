"""Lightning strategy="ddp" under torchrun, 2 gloo ranks on CPU: each row holds every rank's batches and the
gradient DDP all-reduced, equal to one process training on the global batches."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import OrderedDict
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

pytest.importorskip("lightning.pytorch")

import lightning_ddp_rank as rank_script  # noqa: E402

from monitorch_widget import PyTorchInspector  # noqa: E402
from monitorch_widget.integrations.lightning import InspectorCallback  # noqa: E402
from monitorch_widget.lens import LossMetrics, OutputActivation, ParameterGradientActivation  # noqa: E402

HERE = Path(__file__).parent
ROOT = HERE.parent.parent


def run_torchrun(out: Path) -> list[dict]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(HERE)]), OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(HERE / "lightning_ddp_rank.py"), str(out)], env=env, capture_output=True, text=True,
                          timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]


def test_ddp_under_torchrun_equals_one_process_on_the_global_batches(tmp_path):
    ranks = run_torchrun(tmp_path)
    # Hand reference: one process, each step on the union of the two ranks' batches (the script's
    # DistributedSampler(shuffle=False) gives rank r the rows r, r+2, ...: step s of both is rows 16s..16s+15).
    model = nn.Sequential(OrderedDict(net=rank_script.make_model()))  # named as in the LightningModule: net.0
    inspector = PyTorchInspector([LossMetrics(), OutputActivation(), ParameterGradientActivation()],
                                 visualizer="none").attach(model)
    opt = torch.optim.SGD(model.parameters(), lr=rank_script.LR)
    x, y = rank_script.data(0)
    per_step = 2 * rank_script.BATCH
    for _ in range(rank_script.EPOCHS):
        for start in range(0, rank_script.N, per_step):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[start:start + per_step]), y[start:start + per_step]).backward()
            opt.step()
        inspector.tick_epoch()
    hand = inspector.history
    for r, got in enumerate(ranks):
        assert got["label"] == "ddp x2" and got["epochs"] == [1.0, 2.0]
        assert got["main"] == (r == 0)  # only rank 0 draws
        for name, value in model.net.state_dict().items():
            np.testing.assert_allclose(got["weights"][name], value.numpy(), rtol=1e-5, atol=1e-6)
        # every rank's record: the epoch over both ranks' batches (no sync_dist needed)
        for stage in ("train", "val"):
            expected = [np.mean([v for g in ranks for s, e, v in g["seen"] if s == stage and e == epoch])
                        for epoch in range(rank_script.EPOCHS)]
            np.testing.assert_allclose(got[stage], expected, rtol=1e-6)
        assert len(got["columns"]) >= 8  # net.0 / net.2, weight / bias, activation / death
        for panel, group, key, role, values in got["columns"]:
            np.testing.assert_allclose(values, hand.series(panel, group, key, role=role), rtol=1e-6,
                                       err_msg=f"rank {r}: {panel} / {group} / {key} / {role}")
    # not vacuous: the hidden layer has zero-gradient rows (units silent on a whole global batch) ...
    death = hand.series("Weight Gradient Activation", "net.0", "death_rate")
    assert np.all((death > 0) & (death < 1))
    # ... and fewer than on one rank's half of it (what reading each rank's own gradient would count)
    hidden = torch.relu(rank_script.make_model()[0](x[:per_step]))
    silent_global = (hidden == 0).all(0).sum().item()
    silent_rank0 = (hidden[0::2] == 0).all(0).sum().item()
    assert silent_rank0 > silent_global > 0
    # rank 1's own losses alone give another mean
    own = [np.mean([v for s, e, v in ranks[1]["seen"] if s == "train" and e == epoch]) for epoch in range(2)]
    assert not np.allclose(own, ranks[1]["train"], rtol=1e-4)


def test_an_inspector_built_before_the_process_group_is_refused_with_the_recipe():
    ins = PyTorchInspector([LossMetrics()], visualizer="none")  # no process group here
    assert not ins.rank_aware
    trainer = SimpleNamespace(world_size=2, strategy=SimpleNamespace())
    with pytest.raises(RuntimeError, match=r"(?s)built before torch.distributed was initialised.*torchrun.*"
                                           r"init_process_group\('gloo'\)"):
        InspectorCallback(ins).setup(trainer, None, "fit")  # type: ignore[arg-type]
