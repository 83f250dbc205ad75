"""IPython's cell events for :class:`~.sync.DeltaSync`: which thread runs the current cell, and its end.

Values may be held back only while an IPython cell runs on the thread that emits them: its ``post_run_cell`` is
then certain to come and sends what waits (``sync.py``'s module docstring). Without IPython (a script, marimo)
no cell thread is known and nothing is held back.
"""

from __future__ import annotations

import threading
from typing import Any


class CellEvents:
    """IPython's ``pre_run_cell`` / ``post_run_cell``, registered on the running shell if there is one; the
    subclass says what the end of a cell does (``_cell_ended``)."""

    #: the thread running the current IPython cell (None: no cell runs, or no end-of-cell event exists)
    _cell_thread: int | None = None
    _ipython: Any = None

    @property
    def holds_back(self) -> bool:
        """Whether the calling thread may have values held back (it runs an IPython cell whose end comes)."""
        return self._cell_thread is not None and threading.get_ident() == self._cell_thread

    def _register_ipython(self) -> None:
        try:
            from IPython import get_ipython
        except ImportError:  # pragma: no cover - IPython is a dependency of ipywidgets
            return
        ip = get_ipython()
        if ip is None or not hasattr(ip, "events"):
            return
        ip.events.register("pre_run_cell", self._pre_run_cell)
        ip.events.register("post_run_cell", self._post_run_cell)
        self._ipython = ip
        if threading.current_thread() is threading.main_thread():
            self._cell_thread = threading.get_ident()  # built by a cell: its end-of-cell event comes

    def _unregister_ipython(self) -> None:
        if self._ipython is not None:
            for name, fn in (("pre_run_cell", self._pre_run_cell), ("post_run_cell", self._post_run_cell)):
                try:
                    self._ipython.events.unregister(name, fn)
                except ValueError:
                    pass
            self._ipython = None

    def _pre_run_cell(self, *_args: Any) -> None:
        self._cell_thread = threading.get_ident()

    def _post_run_cell(self, result: Any = None, *_args: Any) -> None:
        self._cell_thread = None
        self._cell_ended(result)

    def _cell_ended(self, result: Any) -> None:
        """The cell ended (``result``: IPython's ExecutionResult, or None)."""
        raise NotImplementedError
