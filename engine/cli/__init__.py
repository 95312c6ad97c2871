"""``python -m engine`` — the engine's command-line contract.

Each subcommand lives in its own module exposing ``register(subparsers)`` (adds its parser and
sets ``func``). Errors the user can act on print one line and exit with code 2.
"""

from __future__ import annotations

import argparse
import importlib
import itertools
import sys

from engine.cli.common import DefaultsHelpFormatter, name_commands
from engine.cli.console import exit_code_of, sigterm_as_interrupt
from engine.errors import EngineError

SUBCOMMANDS = ("restore", "models", "train", "evaluate", "bench")


class _Parser(argparse.ArgumentParser):
    """Every subcommand's parser: shows defaults, and takes options only as written in full (an
    abbreviation such as ``evaluate --sr 4`` would silently mean ``--sr-kernel 4``)."""

    def __init__(self, *args, formatter_class=DefaultsHelpFormatter, allow_abbrev=False, **kwargs) -> None:
        super().__init__(*args, formatter_class=formatter_class, allow_abbrev=allow_abbrev, **kwargs)

    def parse_known_args(self, args=None, namespace=None):
        """An option that is not one of this command's, e.g. an abbreviation, is named before any
        other complaint (argparse would first ask for the missing arguments)."""
        given = sys.argv[1:] if args is None else list(args)
        has_commands = any(isinstance(a, argparse._SubParsersAction) for a in self._actions)
        for arg in itertools.takewhile(lambda a: a != "--" and not (has_commands and not a.startswith("-")), given):
            option = arg.split("=", 1)[0]  # a parser of commands checks only what comes before the command
            if option.startswith("--") and option not in self._option_string_actions:
                meant = [o for o in self._option_string_actions if o.startswith(option)]
                hint = f" (options are written in full: did you mean {' or '.join(meant)}?)" if meant else ""
                self.error(f"unrecognized option {option}{hint}")
        return super().parse_known_args(given, namespace)

    def error(self, message: str) -> None:  # one clear line, exit code 2
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m engine", description="Zero-shot diffusion photo restoration.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name in SUBCOMMANDS:
        try:
            module = importlib.import_module(f"engine.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"engine.cli.{name}":
                raise
            continue
        module.register(sub)
    name_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        with sigterm_as_interrupt():  # a session logging out stops a command as Ctrl-C does
            args = build_parser().parse_args(argv)  # importing the subcommands takes a while (torch)
            return int(args.func(args) or 0)
    except EngineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a file no check foresaw (a full disk, a folder made read-only): one line
        where = f": {exc.filename}" if exc.filename else ""
        print(f"error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        code = exit_code_of(exc)
        print("terminated" if code != 130 else "interrupted", file=sys.stderr)
        return code
