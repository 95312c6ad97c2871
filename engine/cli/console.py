"""How a restoration shows on the console: a tqdm bar over denoiser calls, stages and log lines on
stderr, and Ctrl-C or SIGTERM as cancel (the run stops within one denoiser call and keeps its
finished windows)."""

from __future__ import annotations

import contextlib
import importlib
import signal
import sys
import threading
from typing import Any, Callable, Iterator, Optional

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
            if event.tiles:  # a network over blended tiles before the engine
                name = {"cleanup": "stage 1 (clean-up network)", "upscale": "fast upscale"}.get(event.stage, event.stage)
                self.say(f"{name}: {w}×{h}, {len(event.boxes)} tile(s)")
            else:
                self.say(f"{event.stage}: {w}×{h}, {len(event.boxes)} window(s) in {levels} level(s) "
                         "(the windows of a level run together)")

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


class Terminated(KeyboardInterrupt):
    """SIGTERM (a desktop session logging out, ``kill``) outside a run: handled as Ctrl-C is."""


class StopRequest(threading.Event):
    """The cancel event of a command, which also knows what asked it to stop."""

    signal_number: int = signal.SIGINT


def exit_code_of(stop: BaseException, cancel: Optional[threading.Event] = None) -> int:
    """The exit status of a command stopped by Ctrl-C (130) or SIGTERM (143, 128 + 15)."""
    if isinstance(stop, Terminated) or getattr(cancel, "signal_number", None) == signal.SIGTERM:
        return 128 + signal.SIGTERM
    return 128 + signal.SIGINT


def stopped_by(code: int) -> str:
    """How a message names what stopped the command, from its exit code."""
    return "terminated" if code == 128 + signal.SIGTERM else "cancelled"


def _raise_terminated(signum: int, frame: Any) -> None:
    raise Terminated


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within: SIGTERM raises :class:`Terminated`, as Ctrl-C raises KeyboardInterrupt, so a command
    stopped by either says what it keeps (instead of ending silently). Main thread only."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def cancel_on_ctrl_c(cancel: threading.Event, say: Callable[[str], None]) -> Iterator[None]:
    """First Ctrl-C or SIGTERM sets ``cancel`` (the run stops after its current step and keeps its
    finished work) and ``say``s so; a second one interrupts at once. A :class:`StopRequest` records
    which signal it was. Only possible from the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_signal(signum: int, frame: Any) -> None:
        if cancel.is_set():
            raise Terminated if signum == signal.SIGTERM else KeyboardInterrupt
        if isinstance(cancel, StopRequest):
            cancel.signal_number = signum
        cancel.set()
        say("terminated: stopping after the current step and keeping the finished work…"
            if signum == signal.SIGTERM else "cancelling after the current step… (Ctrl-C again to stop at once)")

    previous = {number: signal.signal(number, on_signal) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


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
