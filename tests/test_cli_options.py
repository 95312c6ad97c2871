"""Options are taken only as written in full, in every subcommand; what the CLI says about a plan."""

from __future__ import annotations

import argparse
import io

import pytest

from engine.cli import build_parser
from engine.cli.console import EventRenderer
from engine.events import PlanEvent
from engine.geometry import Box


def leaf_parsers(parser: argparse.ArgumentParser, path=()):
    """(command path, parser) of every command that takes options (restore, models import, ...)."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield path, parser
    for action in subs:
        for name, sub in action.choices.items():
            yield from leaf_parsers(sub, (*path, name))


LEAVES = list(leaf_parsers(build_parser()))


def test_every_command_is_checked():
    names = {" ".join(path) for path, _ in LEAVES}
    assert {"restore", "evaluate", "train", "bench", "models import", "models download"} <= names


@pytest.mark.parametrize("path, parser", LEAVES, ids=[" ".join(p) for p, _ in LEAVES])
def test_every_command_refuses_abbreviated_options(path, parser, capsys):
    options = [o for o in parser._option_string_actions if o.startswith("--")]
    shortened = {o[:-1] for o in options if len(o) > 4} - set(options)
    assert "--hel" in shortened
    for abbreviation in sorted(shortened):
        with pytest.raises(SystemExit) as info:
            build_parser().parse_args([*path, abbreviation, "1"])
        err = capsys.readouterr()
        assert info.value.code == 2, abbreviation
        assert "usage:" not in err.out  # "--hel" did not show the help
        assert f"unrecognized option {abbreviation} (options are written in full: did you mean --" in err.err


@pytest.mark.parametrize("path", [(), ("models",)])
def test_commands_of_commands_refuse_abbreviations_too(path, capsys):
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args([*path, "--hel"])
    err = capsys.readouterr()
    assert info.value.code == 2 and "usage:" not in err.out
    assert "unrecognized option --hel (options are written in full: did you mean --help?)" in err.err


def test_evaluate_sr_is_not_taken_for_sr_kernel(capsys, tmp_path):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["evaluate", "--data", str(tmp_path), "--task", "sr4", "--sr", "4"])
    assert "unrecognized option --sr (options are written in full: did you mean --sr-kernel?)" in capsys.readouterr().err


def test_the_plan_line_counts_levels_not_batches():
    stream = io.StringIO()
    boxes = tuple(Box(r * 16, c * 16, 32, 32) for r in range(3) for c in range(3))
    levels = tuple(r + c for r in range(3) for c in range(3))
    EventRenderer(show_progress=False, stream=stream).handle(PlanEvent((64, 64), boxes, levels, "restore", 1.0))
    line = stream.getvalue()
    assert "9 window(s) in 5 level(s)" in line and "batch" not in line


def test_the_plan_line_of_a_network_over_tiles_counts_tiles():
    stream = io.StringIO()
    boxes = (Box(0, 0, 256, 256), Box(0, 192, 256, 256))
    EventRenderer(show_progress=False, stream=stream).handle(PlanEvent((256, 448), boxes, (0, 0), "upscale", 1.0,
                                                                       tiles=True))
    assert stream.getvalue().strip() == "fast upscale: 448×256, 2 tile(s)"
