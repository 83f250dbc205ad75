"""A Ctrl-C (SIGINT: a notebook's "interrupt kernel") that arrives during a tick takes effect when the tick ends.

A tick folds the epoch into the record in several steps (host copy, lens calls, the row, every lens' reset). A
``KeyboardInterrupt`` raised between two of them left the record inconsistent (trial r15b, 105 of 718 points):
the epoch lost, written all-NaN, or counted twice under a repeated number. A tick takes about a millisecond, so
the interrupt is held until it ends and then raised where the tick returns; the user sees the usual
``KeyboardInterrupt`` and the record holds whole epochs. A second Ctrl-C while one is held goes through at once
(a tick waiting on other ranks, a visualizer of the user's that hangs). Only on the main thread, and only where a
Python handler is installed (as ipykernel and the interpreter do while code runs); otherwise nothing changes.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType


@contextmanager
def interrupts_held() -> Iterator[None]:
    """Hold SIGINT for the duration of the block; deliver a held one to the previous handler after it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    original = signal.getsignal(signal.SIGINT)
    if not callable(original):  # SIG_IGN / SIG_DFL, or a handler installed from C: left as it is
        yield
        return
    held: list[FrameType | None] = []

    def hold(signum: int, frame: FrameType | None) -> None:
        held.append(frame)
        signal.signal(signal.SIGINT, original)  # a second Ctrl-C interrupts at once

    signal.signal(signal.SIGINT, hold)
    try:
        yield
    finally:
        if not held:
            signal.signal(signal.SIGINT, original)
    if held:
        original(signal.SIGINT, held[0])
