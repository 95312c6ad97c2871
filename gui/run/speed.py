"""How fast runs go on this computer: timed from each run's progress, remembered in the settings
per device, model, precision and window size, and used by the time estimate of the next run.

A run's time is its overhead (reading the photo, loading the model, the report at the end) plus
its window-steps (one window through the network once) at the measured seconds each, wavefront
batching included, as the run did them. Pure Python and Qt-free except for the settings store.
"""

from __future__ import annotations

import time
from typing import Any, NamedTuple, Optional

from gui.run.plan import TaskSettings

#: Settings key of the measured speeds (a JSON list, newest first).
SETTINGS_KEY = "measured_speeds"
#: How many device/model/precision/window combinations are remembered.
MAX_REMEMBERED = 40


class Speed(NamedTuple):
    seconds_per_call: float  # one window-step: a window through the network once
    overhead: float  # seconds a run spends besides its window-steps


class SpeedKey(NamedTuple):
    device: str  # "cpu", "cuda", "cuda:1", "mps": the device the run uses ("auto" resolved)
    model: str
    precision: str  # the setting ("auto" resolves per device, and the device is in the key)
    window: int

    @classmethod
    def of(cls, settings: TaskSettings, device_kind: str) -> "SpeedKey":
        precision = settings.precision + ("+compile" if settings.compile else "")
        return cls(device_kind, settings.model, precision, int(settings.window))


class SpeedBook:
    """The measured speeds, kept in ``settings`` (an :class:`gui.settings.AppSettings`; None: in
    memory only)."""

    def __init__(self, settings: Any = None):
        self.settings = settings
        raw = settings.get_json(SETTINGS_KEY, []) if settings is not None else []
        self._entries: list[dict[str, Any]] = [e for e in raw if _valid(e)] if isinstance(raw, list) else []

    def get(self, key: SpeedKey) -> Optional[Speed]:
        """The speed measured for ``key``; else one measured with another window size on the same
        device, model and precision, scaled by the windows' areas (the network's work)."""
        same = [e for e in self._entries if (e["device"], e["model"], e["precision"]) == key[:3]]
        exact = next((e for e in same if e["window"] == key.window), None)
        if exact is not None:
            return Speed(exact["seconds_per_call"], exact["overhead"])
        if not same:
            return None
        other = same[0]
        return Speed(other["seconds_per_call"] * (key.window / other["window"]) ** 2, other["overhead"])

    def remember(self, key: SpeedKey, speed: Speed) -> None:
        entry = {**key._asdict(), "seconds_per_call": float(speed.seconds_per_call), "overhead": float(speed.overhead)}
        self._entries = [entry] + [e for e in self._entries if SpeedKey(**{f: e[f] for f in SpeedKey._fields}) != key]
        del self._entries[MAX_REMEMBERED:]
        if self.settings is not None:
            self.settings.set_json(SETTINGS_KEY, self._entries)


def _valid(entry: Any) -> bool:
    try:
        return (isinstance(entry, dict) and all(isinstance(entry[f], str) for f in ("device", "model", "precision"))
                and int(entry["window"]) > 0 and float(entry["seconds_per_call"]) > 0
                and float(entry["overhead"]) >= 0)
    except (KeyError, TypeError, ValueError):
        return False


class RunTimer:
    """Times one run from its progress reports (done window-steps, seconds since sampling began).
    The speed is taken between the first and the last report, so the windows an earlier run
    finished (a continued run) and the first step's warm-up do not count."""

    def __init__(self, clock=time.monotonic):
        self.clock = clock
        self.started = clock()
        self._first: Optional[tuple[float, int, float]] = None  # (clock, done, elapsed)
        self._last: Optional[tuple[float, int, float]] = None

    def progress(self, done: int, elapsed: float) -> None:
        report = (self.clock(), int(done), float(elapsed))
        if self._first is None:
            self._first = report
        self._last = report

    def speed(self, finished: bool, previous: Optional[Speed] = None) -> Optional[Speed]:
        """What this run measured (None: too little to tell). The overhead after the last step is
        known only when the run ``finished``; otherwise ``previous``'s overhead stands in for it."""
        if self._first is None or self._last is None:
            return None
        (wall0, done0, elapsed0), (wall1, done1, elapsed1) = self._first, self._last
        if done1 > done0:
            per_call = (elapsed1 - elapsed0) / (done1 - done0)
        elif done0 > 0 and elapsed0 > 0:
            per_call = elapsed0 / done0  # one report: the first step(s) of a fresh run
        else:
            return None
        before = max(wall0 - elapsed0 - self.started, 0.0)  # the photo, the model, until sampling began
        if finished:
            overhead = before + max(self.clock() - wall1, 0.0)
        else:
            overhead = max(before, previous.overhead if previous is not None else 0.0)
        return Speed(max(per_call, 1e-6), overhead)
