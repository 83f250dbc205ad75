"""The tick's meeting of ranks under ``torch.distributed``: over the process group's key-value store, never
through a collective of the user's process groups.

Why the store: a collective that one rank never enters (``if rank == 0: inspector.tick_epoch()``, a rank that
stopped early) aborts gloo with a mismatch or blocks until the group's timeout (30 minutes by default), and
a collective the ranks enter with different sizes (a loss seen on one rank only, a rank without batches)
crashes. On the store every rank *publishes* its part under a key named for this inspector and this tick,
and waiting for a key takes a timeout of our own: a missing rank becomes a clear error on the ranks that
did tick, and nothing half-entered is left behind in the user's groups (NCCL, gloo, any backend).

Protocol of one tick (keys under ``monitorch_widget/<inspector>/<tick>/``):

1. ``arrive/<rank>``: at every tick, active or not, every rank announces itself with its ``is_active_fn``
   answer, then waits for all the others (``timeout`` seconds); every rank follows the master rank's answer.
   Only then may the tick run collectives of its own (FSDP shards' gradient counts, see
   :mod:`.gradient_layout`), which therefore cannot strand a rank.
2. ``part/<rank>``: every rank publishes its statistics (arrays keyed by their position in the tick's list
   of accumulators, with per-slot kept values); the master rank combines them -- moments by SUM and
   MAX, kept per-batch values concatenated in rank order, so medians and quantiles cover every rank's
   batches -- and publishes ``result``, which every rank reads. The per-tick traffic is one part per rank
   in and one result per rank out.

The master deletes the parts once read, and at each arrival the previous tick's result and arrivals (every
rank has read them: it reached this tick).
"""

from __future__ import annotations

import datetime
import io
import itertools
import json
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

_SERIAL = itertools.count()
PREFIX = "monitorch_widget"


class DistributedTickError(RuntimeError):
    """A rank did not reach ``tick_epoch`` (or ``attach``) within the inspector's ``distributed_timeout``."""


def world() -> tuple[int, int] | None:
    """(rank, world size) under an initialised process group of more than one rank, else None."""
    dist = torch.distributed
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return None
    return dist.get_rank(), dist.get_world_size()


def encode(arrays: dict[str, np.ndarray], meta: Any) -> bytes:
    buf = io.BytesIO()
    named = {"__meta__": np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8), **arrays}
    np.savez(buf, **named)  # type: ignore[arg-type]
    return buf.getvalue()


def decode(data: bytes) -> tuple[dict[str, np.ndarray], Any]:
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    return arrays, json.loads(arrays.pop("__meta__").tobytes().decode())


class RankExchange:
    """One inspector's meetings. ``timeout``: seconds a rank waits for the others at a tick (the inspector's
    ``distributed_timeout``: a positive number, else ``ValueError``)."""

    def __init__(self, timeout: float, master: int = 0) -> None:
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
            raise ValueError(f"distributed_timeout={timeout!r}: must be a positive number of seconds")
        self.timeout = float(timeout)
        self.master = master
        self.serial = next(_SERIAL)  # inspectors are created in the same order on every rank
        self.tick = 0

    def is_master(self) -> bool:
        """Whether this process is the master rank (True outside ``torch.distributed``)."""
        here = world()
        return here is None or here[0] == self.master

    def _store(self) -> Any:
        from torch.distributed.distributed_c10d import _get_default_store

        return _get_default_store()

    def _key(self, tick: int, name: str) -> str:
        return f"{PREFIX}/{self.serial}/{tick}/{name}"

    def _wait(self, store: Any, keys: list[str], who: Callable[[list[str]], str], what: str) -> None:
        try:
            store.wait(keys, datetime.timedelta(seconds=self.timeout))
        except Exception as exc:  # noqa: BLE001 - a store timeout (RuntimeError / DistStoreError)
            try:
                missing = [k for k in keys if not store.check([k])]
            except Exception:  # noqa: BLE001 - the store itself is gone (the master rank exited)
                missing = keys
            if not missing:
                return
            raise DistributedTickError(
                f"monitorch_widget: {who(missing)} did not reach {what} within distributed_timeout="
                f"{self.timeout:g} s (this rank waited at its tick number {self.tick}). Call tick_epoch() on "
                f"every rank, the same number of times -- not only on rank {self.master}: every rank's "
                f"statistics are combined at the tick and rank {self.master} shows them. If a rank is only "
                f"slow (validation on one rank), raise PyTorchInspector(distributed_timeout=...).") from exc

    def arrive(self, active: bool = True) -> tuple[bool, list[int]]:
        """Step 1, at every tick (active or not): return once every rank reached this tick; raise
        :class:`DistributedTickError` after the timeout naming the ranks that did not. ``active``: this rank's
        ``is_active_fn`` answer; every rank returns the master rank's, so that all ranks take the same path (a
        rank whose tick is inactive while another's is active would leave it waiting, then hang in the next
        collective), and the master also gets the ranks that answered otherwise (else an empty list)."""
        rank, size = world() or (0, 1)
        self.tick += 1
        store = self._store()
        store.set(self._key(self.tick, f"arrive/{rank}"), b"1" if active else b"0")
        keys = [self._key(self.tick, f"arrive/{r}") for r in range(size)]
        self._wait(store, keys, lambda missing: "rank(s) " + ", ".join(k.rsplit("/", 1)[1] for k in missing),
                   "tick_epoch()")
        if rank != self.master:
            return bytes(store.get(keys[self.master])) == b"1", []
        answers = [bytes(store.get(k)) == b"1" for k in keys]
        # every rank is past the previous tick (it arrived here): its keys can go
        for key in [self._key(self.tick - 1, "result")] + [self._key(self.tick - 1, f"arrive/{r}") for r in range(size)]:
            try:
                store.delete_key(key)
            except Exception:  # noqa: BLE001 - a store without deletion (or a key already gone)
                pass
        return active, [r for r, a in enumerate(answers) if a != active]

    def combine(self, mine: bytes, reduce: Callable[[list[bytes]], bytes]) -> bytes:
        """Step 2: publish ``mine``; the master applies ``reduce`` to every rank's part (rank order) and every
        rank returns its result."""
        rank, size = world() or (0, 1)
        store = self._store()
        tick = self.tick
        store.set(self._key(tick, f"part/{rank}"), mine)
        if rank == self.master:
            keys = [self._key(tick, f"part/{r}") for r in range(size)]
            self._wait(store, keys, lambda m: "rank(s) " + ", ".join(k.rsplit("/", 1)[1] for k in m),
                       "the end of tick_epoch()")
            parts = [bytes(store.get(k)) for k in keys]
            result = reduce(parts)
            store.set(self._key(tick, "result"), result)
            for key in keys:
                try:
                    store.delete_key(key)
                except Exception:  # noqa: BLE001 - a store without deletion (or a key already gone)
                    pass
            return result
        key = self._key(tick, "result")
        self._wait(store, [key], lambda m: f"rank {self.master} (the master rank)", "the end of tick_epoch()")
        return bytes(store.get(key))


def say_active_differs(ranks: list[int], master_answer: bool, counter: int) -> str:
    """The notice for ranks whose ``is_active_fn`` answered otherwise than the master's at a tick."""
    did = "recorded" if master_answer else "skipped (only the counter moved)"
    return (f"at tick {counter}, is_active_fn answered {not master_answer} on rank(s) {', '.join(map(str, ranks))} "
            f"and {master_answer} on the master rank; every rank followed the master, so this epoch was {did} on "
            "all ranks. A rank's answer depends on its own state (model.training after a validation pass on one "
            "rank only?): call model.train() before tick_epoch() on every rank, or make is_active_fn agree")
