"""The record room: runs -> panels -> columns -> one value per epoch, the one store every view reads.

Door in: monitorch's visualizer calls (:class:`Record` implements them). Door out: the record's events
and :mod:`.protocol`'s snapshot / delta / filter formats. Saved histories: :mod:`.history_file`.
No module here imports a view, anywidget, ipywidgets or IPython (a test checks it).
"""

from .definitions import DefinitionsWarning
from .history_file import HistoryFormatError, load, save
from .offers import offer
from .record import Record
from .run import Column, Panel, Run

__all__ = ["Column", "DefinitionsWarning", "HistoryFormatError", "Panel", "Record", "Run", "load", "offer", "save"]
