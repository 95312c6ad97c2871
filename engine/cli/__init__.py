"""``python -m engine`` — the engine's command-line contract.

Each subcommand lives in its own module exposing ``register(subparsers)`` (adds its parser and
sets ``func``). Errors the user can act on print one line and exit with code 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from engine.cli.common import DefaultsHelpFormatter, name_commands
from engine.errors import EngineError

SUBCOMMANDS = ("restore", "models", "detect", "train", "evaluate", "bench")


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args, formatter_class=DefaultsHelpFormatter, **kwargs) -> None:
        super().__init__(*args, formatter_class=formatter_class, **kwargs)  # every subcommand shows defaults

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
        args = build_parser().parse_args(argv)  # importing the subcommands takes a while (torch)
        return int(args.func(args) or 0)
    except EngineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
