"""``RecorderVisualizer`` / ``PlayerVisualizer``: monitorch's record-and-replay pair, on our JSON history.

monitorch's recorder pickles every visualizer call into a file and its player unpickles them into another
visualizer. Ours writes the documented history file of :mod:`monitorch_widget.record.history_file` (the format
of ``inspector.save``; JSON, no pickle, so loading a file never runs code) and the player replays it as
monitorch visualizer calls: per run, ``register_tags`` for every panel, then per epoch one ``plot_*`` call per
panel with that epoch's values and bands, then ``reset_fig()`` (as monitorch's inspector does at ``detach``)
before the next run. Gaps (NaN) are not replayed. A monitorch ``.pkl`` recording is refused with what to do.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections import OrderedDict
from typing import Any

from ..lens.base import TagAttributes, TagType
from ..record import Record
from ..record.history_file import check_not_pickle, load, save
from ..record.run import Run
from .interface import RecordView, is_visualizer

_KIND_TYPE = {"numerical": TagType.NUMERICAL, "probability": TagType.PROBABILITY, "relations": TagType.RELATIONS}


class RecorderVisualizer(RecordView):
    """Writes the run history to ``filepath`` as our JSON history (``monitorch_widget.load`` reads it).

    Given to our inspector it writes the inspector's record (every run, module types, problems) after each
    tick, atomically (a crash leaves the last complete epoch on disk); driven by monitorch's inspector it
    writes the record its calls build, when an epoch's calls are complete and at ``close()``. Each write is
    the whole history (O(epochs x series)); ``close()`` (or leaving a ``with`` block) writes a last time.
    """

    def __init__(self, filepath: str) -> None:
        super().__init__()
        self.filepath = filepath
        self._dirty = False
        self._closed = False
        folder = os.path.dirname(os.fspath(filepath)) or "."
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"RecorderVisualizer({filepath!r}): folder {folder!r} does not exist")

    def write(self) -> None:
        """Write the history now."""
        save(self.record, self.filepath)
        self._dirty = False

    def on_tick(self) -> None:
        self.write()

    def on_epoch_calls(self) -> None:
        self.write()

    def _arrive(self, epoch: float) -> None:
        super()._arrive(epoch)
        self._dirty = True

    def reset_fig(self) -> Any:
        super().reset_fig()  # writes the open epoch (close_epoch)
        if self._dirty or not os.path.exists(self.filepath):
            self.write()
        return self

    def close(self) -> None:
        """Write the history a last time (what monitorch's ``close`` flushes)."""
        if not self._closed and (self._dirty or not os.path.exists(self.filepath)):
            self.write()
        self._closed = True

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # at interpreter exit the file system may already be gone
            self.close()

    def __enter__(self) -> RecorderVisualizer:
        return self

    def __exit__(self, exc_type: Any, exc_val: Any, exc_tb: Any) -> None:
        self.close()


def _tag_attributes(panel: Any) -> TagAttributes:
    """The panel's TagAttributes as its lens declared them (trial r12: annotate and ylim were lost); a history saved
    before ``annotate`` was kept replays it as ``big_plot``."""
    annotate = panel.annotate if getattr(panel, "annotate", None) is not None else panel.big
    ylim = tuple(panel.ylim) if getattr(panel, "ylim", None) else None
    return TagAttributes(logy=panel.logy, big_plot=panel.big, annotate=annotate, type=_KIND_TYPE[panel.kind],
                         ylim=ylim)


def _epoch(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


def replay_run(run: Run, target: Any) -> None:
    """Per epoch, one monitorch call per panel, with the values present in that row (NaN = absent)."""
    for panel in run.panels:
        target.register_tags(panel.tag, _tag_attributes(panel))
    columns = run.columns
    for row in range(run.final_rows):
        cells = run.data[row]
        epoch = _epoch(run.epochs[row])
        for panel in run.panels:
            values: OrderedDict[str, dict[str, float]] = OrderedDict()
            ranges: OrderedDict[str, dict[tuple[str, str], tuple[float, float]]] = OrderedDict()
            for col in columns:
                if col.panel != panel.tag or math.isnan(cells[col.index]):
                    continue
                if col.role == "line":
                    values.setdefault(col.group, {})[col.key] = float(cells[col.index])
                elif col.role == "lo":
                    hi = columns[col.index + 1]  # a band's hi column directly follows its lo column (Run)
                    ranges.setdefault(col.group, {})[(col.key, hi.key)] = (float(cells[col.index]),
                                                                          float(cells[hi.index]))
            if not values and not ranges:
                continue
            if panel.kind == "numerical":
                target.plot_numerical_values(epoch, panel.tag, values, ranges or None)
            elif panel.kind == "probability":
                target.plot_probabilities(epoch, panel.tag, values)
            else:
                target.plot_relations(epoch, panel.tag, values)


class PlayerVisualizer:
    """Replays a history file (``RecorderVisualizer`` or ``inspector.save``) into ``target_visualizer``.

    ``PlayerVisualizer(path, WidgetVisualizer()).playback()`` shows a saved run in the widget;
    any monitorch-style visualizer works (``TensorBoardVisualizer(log_dir)`` writes it for TensorBoard).
    Raises ``FileNotFoundError`` for a missing file and :class:`HistoryFormatError` for a monitorch pickle
    (with what to do instead) or a malformed file.
    """

    def __init__(self, source_filepath: str, target_visualizer: Any) -> None:
        if not is_visualizer(target_visualizer):
            raise TypeError(f"PlayerVisualizer(target_visualizer={target_visualizer!r}): needs an object with "
                            "monitorch's visualizer methods (register_tags, plot_numerical_values, "
                            "plot_probabilities, plot_relations), e.g. WidgetVisualizer()")
        self.source_filepath = source_filepath
        self.visualizer = target_visualizer
        if os.path.exists(source_filepath):
            check_not_pickle(source_filepath, "PlayerVisualizer")

    def playback(self) -> PlayerVisualizer:
        """Replay every run of the file into the target visualizer; returns ``self``."""
        check_not_pickle(self.source_filepath, "PlayerVisualizer")
        record: Record = load(self.source_filepath)
        for i, run in enumerate(record.runs):
            if i and callable(getattr(self.visualizer, "reset_fig", None)):
                self.visualizer.reset_fig()
            replay_run(run, self.visualizer)
            # the run's last epoch is complete: our call-driven views (a PrintVisualizer prints an epoch's line
            # when the next epoch's first call arrives) finish it now, not at a later show_fig()
            close_epoch = getattr(self.visualizer, "close_epoch", None)
            if callable(close_epoch):
                close_epoch()
        return self
