"""The restore command's options of a two-stage run (engine/cleanup): ``--cleanup``, ``--fidelity``,
``--warm-start``: their checks and the report line."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Optional

from engine.cli.common import model_inputs
from engine.errors import InputError


def check_cleanup_options(args: argparse.Namespace) -> None:
    """--fidelity and --warm-start belong to --cleanup, whose network removes noise and blur itself."""
    if not args.cleanup:
        options = (("--fidelity", args.fidelity), ("--warm-start", args.warm_start))
        given = [name for name, value in options if value is not None]
        if given:
            raise InputError(f"{' and '.join(given)} {'belongs' if len(given) == 1 else 'belong'} to the second "
                             "stage of a two-stage run: add --cleanup MODEL")
        return
    for option, value in (("--deblur", args.deblur), ("--noise", args.noise)):
        if value:
            raise InputError(f"--cleanup removes noise and blur with its network (the fidelity sets stage 2's noise "
                             f"level): leave out {option}")


def cleanup_inputs(spec: Optional[str]) -> dict[str, Optional[Path]]:
    """The clean-up network's file, for refuse_overwriting."""
    return {"the clean-up model": model_inputs(spec).get("the model")} if spec else {}


def describe_two_stages(report: dict[str, Any]) -> str:
    """One line on a two-stage run: the stage-1 network, its tiles and time, and stage 2."""
    c, soft = report["cleanup"], report.get("soft_observation", {})
    line = (f"stage 1: {c['network']} ({c['model']}, code licence {c['licence'] or 'unknown'}), {c['tiles']} tile(s) "
            f"in {c['seconds']:.1f} s")
    if not soft.get("stage2"):
        return line + "; stage 2 not needed (fidelity 1): the result is the cleaned photo"
    consistency = report.get("consistency")
    agrees = f"{consistency:.2e}" if isinstance(consistency, (int, float)) else "n/a"
    return (line + f"; stage 2: fidelity {report['fidelity']:g} (k={soft['k']}, σ_y={soft['sigma_y']:g}), "
            f"consistency with the soft observation {agrees}, "
            f"RMS change from stage 1 {report['change_from_stage1']:.4f}")
