"""Start the desktop app: ``python main.py [photo]``.

``--quit-after-start`` opens the window (and the photo), processes events once and exits: it
measures start-up time and checks that the app comes up (e.g. in CI with QT_QPA_PLATFORM=offscreen).
"""

from __future__ import annotations

import argparse
import sys
import time


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="restorer-gui", description="Restore photos with zero-shot diffusion.")
    parser.add_argument("photo", nargs="?", help="a photo to open")
    parser.add_argument("--quit-after-start", action="store_true", help="open, show, and exit (start-up check)")
    parser.add_argument("--theme", choices=("dark", "light"), help="override the saved theme")
    parser.add_argument("--self-test", action="store_true",
                        help="check the installation (imports, test-tiny model, a small restoration) and exit")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    started = time.perf_counter()
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.self_test:
        from gui.self_test import run_self_test

        return run_self_test()
    from PySide6.QtCore import QEventLoop

    from gui.app import apply_theme, create_application
    from gui.main_window import MainWindow
    from gui.run.state import prune_in_background
    from gui.settings import AppSettings

    app = create_application([sys.argv[0]])
    prune_in_background()  # the progress of old runs (gui.run.state)
    settings = AppSettings()
    if args.theme:
        settings.theme = args.theme
    apply_theme(app, settings.theme)
    window = MainWindow(settings)
    window.welcome_on_first_run = not args.quit_after_start
    window.show()
    if args.photo:
        window.open_path(args.photo)  # read in the background; an error is shown in a dialog
    if args.quit_after_start:
        while window.files.kind:  # the photo being read
            app.processEvents(QEventLoop.WaitForMoreEvents)
        app.processEvents()
        print(f"started in {time.perf_counter() - started:.2f} s", file=sys.stderr)
        ok = window.document.has_image or not args.photo
        if not ok:
            print(f"could not open {args.photo}", file=sys.stderr)
        window.close()
        return 0 if ok else 1
    return app.exec()


if __name__ == "__main__":
    raise SystemExit(main())
