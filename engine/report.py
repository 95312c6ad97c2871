"""The run report: peak memory of this process and writing the report as JSON (atomically)."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any, Union

import numpy as np

from engine.atomic_file import atomic_write


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB (0.0 where it cannot be measured)."""
    try:
        import resource  # not on Windows

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return float(peak) / (2**20 if sys.platform == "darwin" else 2**10)  # bytes on macOS, KiB else
    except (ImportError, OSError, ValueError):
        pass
    try:
        import psutil

        info = psutil.Process().memory_info()
        return float(getattr(info, "peak_wset", info.rss)) / 2**20
    except Exception:
        return 0.0


def to_json_ready(value: Any) -> Any:
    """Numpy scalars/arrays, tuples, paths and dataclasses (e.g. Box) -> plain JSON types."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_json_ready(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {str(k): to_json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [to_json_ready(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist() if value.size <= 64 else {"array": list(value.shape), "dtype": str(value.dtype)}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and value != value:  # NaN is not JSON
        return None
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def write_report(path: Union[str, Path], report: dict[str, Any]) -> None:
    """Write ``report`` as indented JSON to ``path`` (atomically: never half a file)."""
    text = json.dumps(to_json_ready(report), indent=2, sort_keys=True)
    with atomic_write(path) as handle:
        handle.write((text + "\n").encode("utf-8"))
