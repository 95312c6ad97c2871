"""How a restoration shows on the console: a tqdm bar over denoiser calls, stages and log lines on
stderr, and Ctrl-C as cancel (the run stops within one denoiser call and keeps its finished
windows)."""

from __future__ import annotations

import contextlib
import importlib
import signal
import sys
import threading
from typing import Any, Callable, Iterator

from engine.errors import Cancelled
from engine.events import FinishedEvent, LogEvent, PlanEvent, ProgressEvent, StageEvent
from engine.request import RestoreRequest


class EventRenderer:
    """Shows pipeline events on stderr: a tqdm bar over denoiser calls, stages, log lines."""

    def __init__(self, show_progress: bool = True, stream: Any = None, what: tuple[str, str] = ("denoising", "call")) -> None:
        self.stream = stream or sys.stderr
        self.show_progress = show_progress
        self.what = what  # the bar's label and unit
        self.bar: Any = None

    def say(self, line: str) -> None:
        if self.bar is not None:
            self.bar.clear()
        print(line, file=self.stream, flush=True)
        if self.bar is not None:
            self.bar.refresh()

    def warn(self, message: str) -> None:
        self.say(f"!!! WARNING: {message} !!!")

    def handle(self, event: Any) -> None:
        if isinstance(event, ProgressEvent):
            self._progress(event)
        elif isinstance(event, LogEvent):
            if event.level in ("warning", "error"):
                self.warn(event.message) if event.level == "warning" else self.say(f"ERROR: {event.message}")
            else:
                self.say(event.message)
        elif isinstance(event, StageEvent):
            counter = f" ({event.index + 1}/{event.total})" if event.total > 1 else ""
            self.say(f"{event.name}{counter}")
        elif isinstance(event, PlanEvent):
            levels = len(set(event.levels)) if event.levels else 0
            h, w = event.output_size
            self.say(f"{event.stage}: {w}×{h}, {len(event.boxes)} window(s) in {levels} batch(es)")

    def _progress(self, event: ProgressEvent) -> None:
        if not self.show_progress:
            return
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=event.total, unit=self.what[1], desc=self.what[0], file=self.stream,
                            dynamic_ncols=True, leave=False)
        if self.bar.total != event.total:
            self.bar.total = event.total
        self.bar.update(max(0, event.done - self.bar.n))

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _load_restore() -> Callable[..., Any]:
    return importlib.import_module("engine.pipeline").restore


@contextlib.contextmanager
def cancel_on_ctrl_c(cancel: threading.Event, say: Callable[[str], None]) -> Iterator[None]:
    """First Ctrl-C sets ``cancel`` (the run stops after its current step and keeps its finished
    work) and ``say``s so; a second one interrupts at once. Only possible from the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_sigint(signum: int, frame: Any) -> None:
        if cancel.is_set():
            raise KeyboardInterrupt
        cancel.set()
        say("cancelling after the current step… (Ctrl-C again to stop at once)")

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def drain(request: RestoreRequest, renderer: EventRenderer, cancel: threading.Event) -> FinishedEvent:
    """Run the pipeline to its FinishedEvent; raises Cancelled when the run was cancelled."""
    finished = None
    with cancel_on_ctrl_c(cancel, renderer.say):
        events = _load_restore()(request, cancel=cancel)
        try:
            for event in events:
                renderer.handle(event)
                if isinstance(event, FinishedEvent):
                    finished = event
        except KeyboardInterrupt:
            cancel.set()
            raise Cancelled("interrupted") from None
        finally:
            close = getattr(events, "close", None)
            if close is not None:
                close()
            renderer.close()
    if finished is None:  # a result that arrived before a late Ctrl-C is still saved
        raise Cancelled("cancelled")
    return finished
