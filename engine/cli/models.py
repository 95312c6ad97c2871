"""``python -m engine models list|download|verify|repair|import|remove|path``.

Downloads show a tqdm bar on stderr; user-facing failures raise EngineError, which
``engine.cli.main`` prints as one line with exit code 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Optional

from engine.cli.common import name_commands
from engine.cli.console import exit_code_of
from engine.errors import EngineError


def _human(n: Optional[int]) -> str:
    if not n:
        return "?"
    return f"{n / 1e9:.1f} GB" if n >= 1e8 else f"{n / 1e6:.1f} MB"


def _common(parser: argparse.ArgumentParser, mirror: bool = False) -> None:
    parser.add_argument("--models-dir", metavar="DIR", help="models folder (default: env RESTORER_MODELS_DIR "
                        "or the per-user data folder)")
    if mirror:
        parser.add_argument("--mirror", metavar="URL", help="download from this base URL (file name appended) "
                            "or OLD_PREFIX=NEW_PREFIX (default: env RESTORER_MODEL_MIRROR)")
        parser.add_argument("--stall-timeout", type=float, default=30.0, metavar="S",
                            help="give up when no data arrives for S seconds")
        parser.add_argument("--retries", type=int, default=4, help="retries on network errors")


def register(subparsers) -> None:
    models = subparsers.add_parser("models", help="list, download, import, verify and remove models",
                                   description="Manage the diffusion models the app uses.")
    actions = models.add_subparsers(dest="models_command", required=True, parser_class=type(models))

    p = actions.add_parser("list", help="every known model and its status")
    _common(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_list)

    p = actions.add_parser("download", help="download (or resume) a model and the models it needs")
    p.add_argument("model_id", metavar="ID")
    p.add_argument("--no-companions", action="store_true", help="do not fetch companion models (classifier)")
    p.add_argument("--accept-licence", action="store_true",
                   help="accept the terms of a model whose licence restricts its use (e.g. non-commercial) "
                        "without being asked")
    _common(p, mirror=True)
    p.set_defaults(func=cmd_download)

    p = actions.add_parser("verify", help="re-hash installed models against known/recorded hashes")
    p.add_argument("model_id", metavar="ID", nargs="?")
    p.add_argument("--repair", action="store_true", help="re-download damaged or unfinished models")
    _common(p, mirror=True)
    p.set_defaults(func=cmd_verify)

    p = actions.add_parser("repair", help="same as verify --repair")
    p.add_argument("model_id", metavar="ID", nargs="?")
    _common(p, mirror=True)
    p.set_defaults(func=cmd_verify, repair=True)

    p = actions.add_parser("import", help="add a checkpoint file you already have")
    p.add_argument("path", metavar="PATH")
    link = p.add_mutually_exclusive_group()
    link.add_argument("--hardlink", dest="mode", action="store_const", const="hardlink",
                      help="hard-link instead of copying (same disk only)")
    link.add_argument("--symlink", dest="mode", action="store_const", const="symlink",
                      help="link to the file where it is instead of copying")
    p.add_argument("--id", dest="model_id",
                   help="id for a new custom model; it must be free (default: from the file name, then -2, -3, ...)")
    p.add_argument("--name", help="display name for a custom model")
    p.add_argument("--purpose", default="custom", help="e.g. 'faces', 'general photos', 'scenes'")
    _common(p)
    p.set_defaults(func=cmd_import, mode="copy")

    p = actions.add_parser("remove", help="delete a model file and its recorded hash")
    p.add_argument("model_id", metavar="ID")
    _common(p)
    p.set_defaults(func=cmd_remove)

    p = actions.add_parser("path", help="print the models folder, or the file of model ID")
    p.add_argument("model_id", metavar="ID", nargs="?")
    _common(p)
    p.set_defaults(func=cmd_path)
    name_commands(actions)


def cmd_list(args) -> int:
    from engine.models import catalog as cat

    states = cat.list_models(args.models_dir)
    if args.json:
        print(json.dumps([{"id": s.id, "name": s.display_name, "status": s.status, "purpose": s.entry.purpose,
                           "architecture": s.entry.architecture, "size_bytes": s.entry.size_bytes,
                           "path": str(s.path), "custom": s.entry.custom, "recommended": s.entry.recommended}
                          for s in states], indent=2))
        return 0
    print(f"models folder: {cat.models_dir(args.models_dir)}")
    width = max([len(s.id) for s in states] + [2])
    for s in states:
        star = "*" if s.entry.recommended else " "
        detail = f"  ({s.detail})" if s.detail else ""
        print(f"{star}{s.id:<{width}}  {s.status:<9}  {_human(s.entry.size_bytes):>7}  "
              f"{s.entry.purpose:<14}  {s.display_name}{detail}")
    print("* recommended.  Get one with: python -m engine models download ID")
    return 0


class _TqdmProgress:
    """Download progress -> one tqdm bar per file on stderr."""

    def __init__(self) -> None:
        self.bar = None
        self.name = None

    def __call__(self, p) -> None:
        from tqdm import tqdm

        if self.bar is None or self.name != p.file_name:
            self.close()
            self.name = p.file_name
            self.bar = tqdm(total=p.total, initial=0, unit="B", unit_scale=True, unit_divisor=1024,
                            desc=p.file_name, file=sys.stderr, dynamic_ncols=True)
        if p.total and self.bar.total != p.total:
            self.bar.total = p.total
        self.bar.update(p.done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _with_bar(work):
    """``work(bar)`` with a tqdm bar, which is closed (its line ended) before any message that follows,
    also when Ctrl-C or SIGTERM stops it."""
    bar = _TqdmProgress()
    try:
        return work(bar)
    finally:
        bar.close()


def _download_options(args) -> dict:
    return {"stall_timeout": args.stall_timeout, "retries": args.retries}


def cmd_download(args) -> int:
    from engine.models import catalog as cat
    from engine.models import store

    ids = [args.model_id] if args.no_companions else store.with_companions(args.model_id, args.models_dir)
    _accept_licences(ids, args)
    for mid in ids:
        if cat.model_status(mid, args.models_dir) == cat.INSTALLED:
            print(f"{mid}: already installed at {cat.resolve_model_file(mid, args.models_dir)}")
            continue
        try:
            path = _with_bar(lambda bar: store.download_model(mid, models_dir=args.models_dir, mirror=args.mirror,
                                                              progress=bar, **_download_options(args)))
        except KeyboardInterrupt as exc:
            return _interrupted(ids, args.models_dir, exit_code_of(exc))
        print(f"{mid}: installed at {path}")
    return 0


def _accept_licences(ids: list[str], args) -> None:
    """Show the terms of each model to get whose licence restricts its use; go on only when they are
    accepted (--accept-licence, or "yes" at the prompt; without a terminal the download is refused)."""
    from engine.models import catalog as cat

    for mid in ids:
        entry = cat.get_entry(mid, args.models_dir)
        if not entry.licence_confirmation or cat.model_status(mid, args.models_dir) == cat.INSTALLED:
            continue
        print(f"licence: {cat.licence_notice(entry)}", file=sys.stderr)
        if args.accept_licence:
            continue
        if not sys.stdin.isatty():
            raise EngineError(f"{mid} was not downloaded: add --accept-licence to accept its licence "
                              f"({entry.licence})")
        if input("Accept these terms and download? [y/N] ").strip().lower() not in ("y", "yes"):
            raise EngineError(f"{mid} was not downloaded: its licence was not accepted")


def _interrupted(ids: Optional[list[str]], models_dir: Optional[str], code: int = 130) -> int:
    """Ctrl-C or SIGTERM during a download: say what is kept (the ``.part`` file, which the next
    download resumes with an HTTP Range request) and how to go on. Returns ``code`` (130, or 143
    for SIGTERM)."""
    from engine.models import catalog as cat

    kept = []
    for state in cat.list_models(models_dir):
        part = state.path.with_name(state.path.name + cat.PART_SUFFIX)
        if state.status == cat.PARTIAL and (ids is None or state.id in ids) and part.stat().st_size:
            kept.append(f"{state.id}: {_human(part.stat().st_size)} in {part}")
    print(f"{'terminated' if code == 143 else 'interrupted'}. The partial download is kept ({'; '.join(kept)}); run the same command again to resume it"
          if kept else "interrupted before any data arrived; run the same command again to download",
          file=sys.stderr)
    return code


def cmd_verify(args) -> int:
    from engine.models import store

    ids = [args.model_id] if args.model_id else None
    if args.repair:
        try:
            results = _with_bar(lambda bar: store.repair_models(ids, models_dir=args.models_dir, mirror=args.mirror,
                                                                progress=bar, **_download_options(args)))
        except KeyboardInterrupt as exc:
            return _interrupted(ids, args.models_dir, exit_code_of(exc))
    else:
        results = store.verify_models(ids, models_dir=args.models_dir)
    if not results:
        print("no models installed — nothing to verify")
        return 0
    for r in results:
        print(f"{r.model_id}: {r.status}" + (f" ({r.detail})" if r.detail else ""))
    bad = [r for r in results if r.status in ("mismatch", "partial", "missing", "unusable")]
    if bad:
        from engine.models import catalog as cat

        def downloadable(r) -> bool:
            entry = cat.get_entry(r.model_id, args.models_dir)
            return r.status != "unusable" and not entry.custom and bool(entry.urls or args.mirror)

        hint = "" if args.repair or not any(map(downloadable, bad)) else " — run `python -m engine models verify --repair`"
        if any(r.status != "partial" and cat.get_entry(r.model_id, args.models_dir).custom for r in bad):
            hint += "; an imported model is imported again with `python -m engine models import PATH`"
        raise EngineError(f"{len(bad)} model(s) not usable: {', '.join(r.model_id for r in bad)}{hint}")
    return 0


def cmd_import(args) -> int:
    from engine.models import store

    try:
        result = store.import_model_file(args.path, models_dir=args.models_dir, mode=args.mode,
                                         model_id=args.model_id, display_name=args.name, purpose=args.purpose)
    except store.AlreadyInstalled as exc:  # nothing to do is not a failure
        print(exc)
        return 0
    kind = "catalog model" if result.matched_catalog else "custom model"
    what = f": {result.kind.summary}" if result.kind and result.kind.summary else ""
    if result.kind and result.kind.licence:
        what += f" (code licence {result.kind.licence})"
    print(f"imported {result.architecture} checkpoint as {kind} '{result.model_id}' at {result.path}{what}")
    return 0


def cmd_remove(args) -> int:
    from engine.models import store

    removed = store.remove_model(args.model_id, models_dir=args.models_dir)
    print(f"{args.model_id}: removed " + (", ".join(str(p) for p in removed) if removed else "(no files were present)"))
    return 0


def cmd_path(args) -> int:
    from engine.models import catalog as cat

    if args.model_id:
        print(cat.resolve_model_file(args.model_id, args.models_dir))
    else:
        print(cat.models_dir(args.models_dir))
    return 0
