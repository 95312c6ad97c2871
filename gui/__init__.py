"""PySide6 desktop app for the restoration engine.

State lives in QObjects without widgets (:mod:`gui.document.document`), edits go through a QUndoStack
(:mod:`gui.document.undo`), the engine runs in a QThread adapter (:mod:`gui.run.worker`), and the widgets
(canvas, task panel, log, dialogs) only render that state. Nothing here imports torch at module
import time; the engine pipeline is imported lazily when a run starts.
"""

__version__ = "0.1.0"
