"""The tick's host parts: every accumulator of every lens, copied once per device and folded on the host
(:mod:`.host_fold`); under ``torch.distributed`` the host parts of all ranks are then combined
(:mod:`.rank_exchange`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .host_fold import HostPart, fold_on_host
from .rank_exchange import RankExchange, decode, encode
from .streams import BankRow, StatStream, StreamBank
from .summary import SlotTable, Summary

Accumulator = StreamBank  # a StatStream is a bank of one slot


class Summaries(dict):
    """Summaries by ``id(stream or slot)``; a stream that saw no batch reads as empty (NaN everywhere). The
    slots of a bank read as a :class:`~.summary.SlotTable` get their Summary objects when first asked for;
    :meth:`table` hands a lens the table itself (every slot's points at once)."""

    def __init__(self) -> None:
        super().__init__()
        self._tables: dict[int, SlotTable] = {}  # id(bank) -> its table

    def add_table(self, bank: StreamBank, table: SlotTable) -> None:
        self._tables[id(bank)] = table

    def table(self, bank: Any) -> SlotTable | None:
        return self._tables.get(id(bank))

    def __missing__(self, key: int) -> list[Summary]:
        for table in self._tables.values():
            row = table.index.get(key)
            if row is not None:
                found = self[key] = table.summaries(row)
                return found
        return [Summary(0, 0, 0.0, 0.0, float("nan"), float("nan"), np.empty(0)) for _ in range(2)]

    def get(self, key: int, default: Any = None) -> Any:
        if key in self or any(key in t.index for t in self._tables.values()):
            return self[key]
        return default


def copy_to_host(accumulators: Sequence[Accumulator]) -> list[HostPart | None]:
    """Each accumulator's host part of this epoch, folded on the host (:func:`.host_fold.fold_on_host`);
    None for an accumulator that saw no batch."""
    return fold_on_host(accumulators)


def describe(acc: Accumulator) -> str:
    """What an accumulator is, to check that ranks line the same ones up (same lenses, same sites)."""
    return f"{type(acc).__name__}:{acc.width}:{getattr(acc, 'size', 1)}"


def _pack(parts: list[HostPart | None], problems: Sequence[str] = (), layout: Sequence[str] = ()) -> bytes:
    arrays: dict[str, np.ndarray] = {}
    present = []
    for i, part in enumerate(parts):
        if part is None:
            continue
        present.append(i)
        arrays[f"s{i}"], arrays[f"e{i}"] = part[0], part[1]
        for slot, values in part[2].items():
            arrays[f"k{i}_{slot}"] = values
    return encode(arrays, {"present": present, "size": len(parts), "problems": list(problems),
                           "layout": list(layout)})


def _unpack(data: bytes) -> tuple[list[HostPart | None], dict]:
    arrays, meta = decode(data)
    parts: list[HostPart | None] = [None] * meta["size"]
    for i in meta["present"]:
        prefix = f"k{i}_"
        kept = {int(k[len(prefix):]): v for k, v in arrays.items() if k.startswith(prefix)}
        parts[i] = (arrays[f"s{i}"], arrays[f"e{i}"], kept)
    return parts, meta


def combine_parts(ranks: list[list[HostPart | None]]) -> tuple[list[HostPart | None], list[str]]:
    """Every rank's parts (rank order) -> one: moments by SUM / MAX, kept per-batch values concatenated in
    rank order. A rank without an accumulator (no batch, a loss it never saw) adds nothing to it. Returns
    the problems found (a rank whose part has another size is left out of that accumulator)."""
    size = max(len(r) for r in ranks)
    out: list[HostPart | None] = [None] * size
    problems = []
    for i in range(size):
        first: HostPart | None = None
        sums: np.ndarray | None = None
        extremes: np.ndarray | None = None
        kept: dict[int, list[np.ndarray]] = {}
        for rank, parts in enumerate(ranks):
            part = parts[i] if i < len(parts) else None
            if part is None:
                continue
            if first is None:
                first, sums, extremes = part, part[0].copy(), part[1].copy()
            elif first[0].shape != part[0].shape or first[1].shape != part[1].shape:
                problems.append(f"rank {rank} has {part[0].size} statistics where another rank has "
                                f"{first[0].size} (accumulator {i}); its values are left out")
                continue
            else:
                assert sums is not None and extremes is not None
                sums += part[0]
                np.maximum(extremes, part[1], out=extremes)
            for slot, values in part[2].items():
                kept.setdefault(slot, []).append(values)
        if sums is not None and extremes is not None:
            out[i] = (sums, extremes, {slot: np.concatenate(v) for slot, v in kept.items()})
    return out, problems


def to_host(accumulators: Sequence[Accumulator], slots: dict[int, list[BankRow]] | None = None,
            exchange: RankExchange | None = None, report: Callable[[str], None] | None = None) -> Summaries:
    """Move every accumulator's epoch statistics to the host in one copy per device.

    Returns summaries keyed by ``id(stream)`` for a :class:`StatStream` and by ``id(slot)`` for each slot of
    a :class:`StreamBank` (``slots`` maps ``id(bank)`` to the slots to read). An accumulator that never
    saw a batch (on any rank) yields no entry. With an ``exchange`` (under ``torch.distributed``; every
    rank passes the same list of accumulators, in the same order) the ranks' host parts are combined
    first, on the master rank, and every rank reads the result; ``report`` receives the problems found.
    """
    parts = copy_to_host(accumulators)
    if exchange is not None:
        def reduce(blobs: list[bytes]) -> bytes:
            ranks = [_unpack(b) for b in blobs]
            differ = [r for r, (_, meta) in enumerate(ranks) if meta["layout"] != ranks[exchange.master][1]["layout"]]
            if differ:  # lined up by position, their statistics would mix: show the master's own
                return _pack(ranks[exchange.master][0], [
                    f"rank(s) {', '.join(map(str, differ))} watch other statistics than rank {exchange.master} (a "
                    "different model, lenses or inspector on some rank); this epoch shows rank "
                    f"{exchange.master}'s own batches"])
            return _pack(*combine_parts([parts for parts, _ in ranks]))

        mine = _pack(parts, layout=[describe(acc) for acc in accumulators])
        parts, meta = _unpack(exchange.combine(mine, reduce))
        for problem in meta["problems"]:
            if report is not None:
                report(problem)
    out = Summaries()
    for acc, part in zip(accumulators, parts):
        if part is None:
            continue
        if isinstance(acc, StatStream):
            out.update(acc.read(*part))
            continue
        read = acc.read_rows((slots or {}).get(id(acc), []), *part)
        if isinstance(read, SlotTable):
            out.add_table(acc, read)
        else:
            out.update(read)
    return out

