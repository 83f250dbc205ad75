"""One rank of a Lightning DDP fit under torchrun (tests/integrations/test_lightning_ddp.py launches it).

``python -m torch.distributed.run --standalone --nproc_per_node 2 lightning_ddp_rank.py OUT``: gloo on CPU. The
process group is initialised before the inspector is built (the recipe the callback asks for); each rank writes
``OUT/rank<r>.json``: its own batch losses, its inspector's record and the final weights.
"""

from __future__ import annotations

import json
import logging
import sys
import warnings
from pathlib import Path

import lightning.pytorch as pl
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data.distributed import DistributedSampler

from monitorch_widget import PyTorchInspector
from monitorch_widget.integrations.lightning import InspectorCallback
from monitorch_widget.lens import LossMetrics, OutputActivation, ParameterGradientActivation

N, D, C, BATCH, EPOCHS, LR = 32, 5, 3, 8, 2, 0.2   # BATCH per rank


def data(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(N, D, generator=g) - 0.3, torch.randint(0, C, (N,), generator=g)


def make_model() -> nn.Sequential:
    """Units 0-5 of the hidden layer have a negative bias: silent on whole batches of one rank (8 rows) more
    often than on the global batch (16 rows), so their zero-gradient rows tell the two apart."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(D, 12), nn.ReLU(), nn.Linear(12, C))
    with torch.no_grad():
        model[0].bias[:6] = -1.0
    return model


class Net(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = make_model()
        self.seen: list[tuple[str, int, float]] = []

    def training_step(self, batch, batch_idx):
        loss = nn.functional.cross_entropy(self.net(batch[0]), batch[1])
        self.seen.append(("train", self.current_epoch, loss.item()))
        self.log("train_loss", loss)  # on_step only, no sync_dist: each rank's own value
        return loss

    def validation_step(self, batch, batch_idx):
        loss = nn.functional.cross_entropy(self.net(batch[0]), batch[1])
        if not self.trainer.sanity_checking:
            self.seen.append(("val", self.current_epoch, loss.item()))
        self.log("val_loss", loss)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=LR)


def main(out: Path) -> None:
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    inspector = PyTorchInspector([LossMetrics(), OutputActivation(), ParameterGradientActivation()],
                                 visualizer="none", distributed_timeout=60)
    model = Net()
    # rank r trains on rows r, r+2, ... in order (Lightning's own distributed sampler would shuffle)
    loader, val = (torch.utils.data.DataLoader(ds, batch_size=BATCH, sampler=DistributedSampler(ds, shuffle=False))
                   for ds in (torch.utils.data.TensorDataset(*data(seed)) for seed in (0, 1)))
    pl.Trainer(max_epochs=EPOCHS, accelerator="cpu", devices=2, strategy="ddp", use_distributed_sampler=False,
               logger=False,
               enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
               num_sanity_val_steps=0,
               callbacks=[InspectorCallback(inspector, run_name=lambda t: f"ddp x{t.world_size}")]).fit(
        model, loader, val)
    h = inspector.history
    columns = [(c.panel, c.group, c.key, c.role) for c in h.runs[-1].columns if "Gradient Activation" in c.panel]
    record = {"label": h.runs[-1].label, "epochs": h.runs[-1].epochs, "seen": model.seen,
              "train": h.series("Loss", "Loss", "train_loss mean").tolist(),
              "val": h.series("Loss", "Loss", "val_loss mean").tolist(),
              "columns": [[*col, h.series(col[0], col[1], col[2], role=col[3]).tolist()] for col in columns],
              "weights": {k: v.tolist() for k, v in model.net.state_dict().items()},
              "main": inspector.is_main_process}
    (out / f"rank{rank}.json").write_text(json.dumps(record))
    dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
