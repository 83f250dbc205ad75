"""``TensorBoardVisualizer``: the lenses' calls as TensorBoard scalars (``torch.utils.tensorboard``).

Needs the ``tensorboard`` package (``pip install "monitorch-widget[tensorboard]"``). Scalar names are
monitorch's, so dashboards of runs recorded with monitorch and with us line up: ``<tag>/<group>/<key>``,
lower case, spaces as ``_`` and ``σ`` as ``std`` (``loss/loss/train_loss_mean``,
``output_activations/net.2/death_rate``); the step is the epoch. TensorBoard's Scalars tab groups them by
their first part, one section per lens panel; a band writes its two edges as two scalars
(``.../train_loss_-std``, ``.../train_loss_+std``).

One difference from monitorch: a relations plot (e.g. ``OutputNorm``'s comparison of layers) is written as
plain scalars ``<tag>/<group>/<layer>`` in the same run, not with ``add_scalars`` (which makes one extra
TensorBoard run, i.e. one more event folder, per layer). To see the layers in one chart, the writer adds a
Custom Scalars layout (tab "Custom Scalars") with one multi-line chart per relations group.
"""

from __future__ import annotations

import os
import re
from typing import Any

from ..lens.base import TagAttributes
from .interface import AbstractVisualizer

try:
    from torch.utils.tensorboard import SummaryWriter
except ImportError as exc:  # pragma: no cover - depends on the optional extra
    raise ImportError("TensorBoardVisualizer needs the 'tensorboard' package: "
                      "pip install \"monitorch-widget[tensorboard]\"") from exc


def default_log_dir(comment: str = "") -> str:
    """``runs/<Mon>DD_HH-MM-SS_<host><comment>``: SummaryWriter's own default."""
    import socket
    from datetime import datetime

    return os.path.join("runs", datetime.now().strftime("%b%d_%H-%M-%S") + "_" + socket.gethostname() + comment)


class TensorBoardVisualizer(AbstractVisualizer):
    """Writes every lens value as a TensorBoard scalar; ``writer`` is the ``SummaryWriter``.

    ``log_dir`` (default ``runs/<date>_<host><comment>``, SummaryWriter's) and every other keyword go to
    ``torch.utils.tensorboard.SummaryWriter``. Each call's values are on disk when it returns; view them with
    ``tensorboard --logdir runs``.
    """

    def __init__(self, log_dir: Any = None, comment: str = "", **kwargs: Any) -> None:
        if not log_dir:
            log_dir = default_log_dir(comment)
        self.log_dir = os.fspath(log_dir)
        self._kwargs = dict(kwargs, comment=comment)
        self.writer = SummaryWriter(log_dir=self.log_dir, **self._kwargs)
        self._relations: dict[str, list[str]] = {}  # tag -> its groups, for the Custom Scalars layout
        self._wrote = False
        self._runs = 1

    def start_run(self, label: str) -> None:
        """A new run of the inspector (``attach`` again: a sweep). TensorBoard compares runs as folders, so from
        the second run on each gets its own under ``log_dir`` (``log_dir/<label>``), its steps from 1 again; the
        first run stays in ``log_dir`` itself."""
        if not self._wrote:
            return
        self.writer.close()
        self._runs += 1
        folder = re.sub(r"[^\w.+=-]+", "_", label).strip("_") or f"run_{self._runs}"
        self.writer = SummaryWriter(log_dir=os.path.join(self.log_dir, folder), **self._kwargs)
        self._relations = {}
        self._wrote = False

    def register_tags(self, main_tag: str, tag_attr: TagAttributes) -> None:
        """TensorBoard needs no declaration; relations plots get a Custom Scalars chart when first plotted."""

    def plot_numerical_values(self, epoch: int, main_tag: str, values_dict: Any, ranges_dict: Any = None) -> None:
        step = int(epoch)
        self._wrote = True
        for group, values in values_dict.items():
            prefix = self.transform_tag_str(main_tag, str(group))
            for key, value in values.items():
                self.writer.add_scalar(self.transform_tag_str(prefix, str(key)), float(value), global_step=step)
        for group, bands in (ranges_dict or {}).items():
            prefix = self.transform_tag_str(main_tag, str(group))
            for (lo_key, hi_key), (lo, hi) in bands.items():
                self.writer.add_scalar(self.transform_tag_str(prefix, str(lo_key)), float(lo), global_step=step)
                self.writer.add_scalar(self.transform_tag_str(prefix, str(hi_key)), float(hi), global_step=step)
        self.writer.flush()  # a few scalars per call: on disk at once, so TensorBoard shows the epoch live

    def plot_probabilities(self, epoch: int, main_tag: str, values_dict: Any) -> None:
        self.plot_numerical_values(epoch, main_tag, values_dict)

    def plot_relations(self, epoch: int, main_tag: str, values_dict: Any) -> None:
        groups = self._relations.setdefault(main_tag, [])
        new = [str(g) for g in values_dict if str(g) not in groups]
        if new:
            groups.extend(new)
            self._write_layout()
        self.plot_numerical_values(epoch, main_tag, values_dict)

    def _write_layout(self) -> None:
        layout = {tag: {group: ["Multiline", [f"^{re.escape(self.transform_tag_str(tag, group))}/"]]
                        for group in groups}
                  for tag, groups in self._relations.items()}
        self.writer.add_custom_scalars(layout)

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()

    @staticmethod
    def transform_tag_str(general_tag: str, subtag: str, delimiter: str = "/") -> str:
        """monitorch's scalar names: ``general_tag + delimiter + subtag``, lower case, ``' '`` -> ``'_'``,
        ``'σ'`` -> ``'std'``."""
        return (general_tag + delimiter + subtag).lower().replace(" ", "_").replace("σ", "std")


