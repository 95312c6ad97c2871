"""Entry point of the bundled app.

- ``restorer --self-test`` (or ``restorer-cli --self-test``): run :func:`gui.self_test.run_self_test`.
- ``restorer-cli ...`` or ``restorer models|restore|train|evaluate|bench ...``: the engine CLI.
- anything else: the desktop app (main.py).

Two executables are built from this one script: ``restorer`` (windowed on Windows/macOS) and
``restorer-cli`` (console), because a windowed Windows program has no console to print to.
"""

from __future__ import annotations

import sys
from pathlib import Path

CLI_COMMANDS = ("restore", "models", "train", "evaluate", "bench")


def main() -> int:
    args = sys.argv[1:]
    if args[:1] == ["--self-test"]:
        from gui.self_test import run_self_test

        return run_self_test()
    is_cli_exe = Path(sys.executable).stem.lower().endswith("-cli") if getattr(sys, "frozen", False) else False
    if is_cli_exe or args[:1] and args[0] in CLI_COMMANDS:
        from engine.cli import main as engine_main

        return engine_main(args)
    import main as gui_main  # the repository's main.py

    return gui_main.main(args)


if __name__ == "__main__":
    raise SystemExit(main())
