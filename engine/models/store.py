"""Changing the model store: download, import, verify, repair, remove (Qt-free).

Hashes follow each entry's ``hash_policy``: a pinned sha256 from the catalog is checked on
download; with ``record-on-first-download`` the hash computed while downloading (or importing)
is recorded in ``registry.json`` and every later Verify/Repair is checked against it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
import time
import uuid
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional, Sequence, Union

from engine.errors import Cancelled, EngineError, ModelFileError
from engine.models import catalog as cat
from engine.models import download as dl
from engine.models import sidecar_image_size
from engine.models.checkpoint import sidecar_path
from engine.models.folder_lock import store_lock
from engine.models.import_place import imported_from, match_catalog, new_custom_place, same_file
from engine.models.kinds import CLASSIFIER, DIFFUSION, ModelKind, inspect_file, non_finite_in_file

PathLike = Union[str, Path, None]
IMPORT_MODES = ("copy", "hardlink", "symlink")


class AlreadyInstalled(EngineError):
    """The imported file's exact bytes are already installed as model ``model_id``; nothing was changed."""

    def __init__(self, message: str, model_id: str):
        super().__init__(message)
        self.model_id = model_id


@dataclass(frozen=True)
class ImportResult:
    model_id: str
    path: Path
    architecture: str
    matched_catalog: bool  # True: the file is a known catalog model; False: registered as custom
    sha256: str
    kind: Optional[ModelKind] = None  # what the file is (role, summary, licence)


@dataclass(frozen=True)
class VerifyResult:
    model_id: str
    status: str  # "ok" | "recorded" (no hash known before: recorded now) | "mismatch" | "missing" | "partial"
    detail: str = ""


def _record_hash(directory: Path, file_name: str, sha256: str, size: int, source: str) -> None:
    def change(data):
        data["hashes"][file_name] = {"sha256": sha256, "size": size, "source": source,
                                     "recorded": time.strftime("%Y-%m-%dT%H:%M:%S")}
        data["damaged"].pop(file_name, None)

    cat.update_registry(directory, change)


def reference_hash(entry: cat.ModelEntry, registry: dict) -> Optional[str]:
    """The hash a file must have: pinned in the catalog, else the recorded one (or None)."""
    if entry.sha256:
        return entry.sha256
    recorded = registry["hashes"].get(entry.file_name)
    return recorded.get("sha256") if isinstance(recorded, dict) else None


# --------------------------------------------------------------------------- download


def download_model(model_id: str, *, models_dir: PathLike = None, mirror: Optional[str] = None,
                   progress: Optional[dl.ProgressCallback] = None, cancel: Optional[threading.Event] = None,
                   **download_options) -> Path:
    """Download (or resume, or repair) one catalog model; returns its installed path.

    ``download_options`` go to :func:`engine.models.download.download_file` (retries, stall_timeout...).
    """
    directory = cat.models_dir(models_dir)
    entry = cat.get_entry(model_id, directory)
    if entry.custom:
        raise EngineError(f"{model_id!r} was imported by you; there is nothing to download — import the file again")
    urls = dl.candidate_urls(entry.urls, entry.file_name, mirror)
    if not urls:
        where = "; ".join(entry.manual_sources) or "its authors' page"
        raise dl.DownloadError(f"{entry.display_name} has no direct download address: get {entry.file_name} "
                               f"from {where}, then import it (or set a mirror that has it)")
    expected = reference_hash(entry, cat.read_registry(directory))
    result = dl.download_file(urls, directory / entry.file_name, expected_sha256=expected,
                              expected_size=entry.size_bytes, progress=progress, cancel=cancel,
                              **download_options)
    _record_hash(directory, entry.file_name, result.sha256, result.size, f"download {result.url}")
    return result.path


def with_companions(model_id: str, models_dir: PathLike = None) -> list[str]:
    """The model followed by the models it needs (e.g. the classifier of the class-guided ADM)."""
    entry = cat.get_entry(model_id, models_dir)
    return [model_id] + [c for c in entry.companions if c != model_id]


# --------------------------------------------------------------------------- import


def inspect_checkpoint(path: Path) -> ModelKind:
    """Read a model file safely (weights_only / safetensors) and say what it is: its family,
    role and configuration, checked to build its network exactly (see engine.models.kinds).
    Raises ModelFileError naming what was expected."""
    kind = inspect_file(path)
    native = sidecar_image_size(path) if kind.role == DIFFUSION else None  # a model we trained
    return dataclasses.replace(kind, image_size=native) if native else kind


def _place(src: Path, dest: Path, mode: str) -> None:
    """Copy/link ``src`` to ``dest`` atomically (a temporary name of its own + rename); never half a
    file at dest."""
    tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:12]}.importing")
    try:
        if mode == "hardlink":
            try:
                os.link(src, tmp)
            except OSError as exc:
                raise EngineError(f"cannot hard-link {src} into {dest.parent} ({exc.strerror or exc}); "
                                  "they may be on different disks — use copy or symlink") from exc
        elif mode == "symlink":
            os.symlink(src.resolve(), tmp)
        else:
            dl.check_free_space(dest.parent, src.stat().st_size)
            shutil.copyfile(src, tmp)
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def import_model_file(src: Union[str, Path], *, models_dir: PathLike = None, mode: str = "copy",
                      model_id: Optional[str] = None, display_name: Optional[str] = None,
                      purpose: str = "custom", description: str = "",
                      progress: Optional[Callable[[int, int], None]] = None,
                      cancel: Optional[threading.Event] = None) -> ImportResult:
    """Check a checkpoint the user has and add it to the store (copy, hard link or symlink).

    The file is loaded safely and its architecture detected before anything is written. A file
    whose exact bytes (sha256) are already installed raises :class:`AlreadyInstalled`; one whose
    model is registered but missing or damaged takes its place again. A known catalog file (same
    architecture and file name or exact size) takes its catalog id; anything else becomes a new
    custom model with an id and file of its own (``model``, ``model-2``, ...: nothing installed is
    ever replaced). An explicit ``model_id`` must be free. Rejections raise
    ModelFileError/EngineError and leave the models folder unchanged, and so does ``cancel`` set
    before the file is placed (it raises Cancelled; reading a checkpoint itself cannot be stopped).
    """
    if mode not in IMPORT_MODES:
        raise EngineError(f"import mode must be one of {', '.join(IMPORT_MODES)}, got {mode!r}")
    src = cat.require_model_file(Path(src).expanduser())
    config = inspect_checkpoint(src)
    if cancel is not None and cancel.is_set():
        raise Cancelled("import cancelled")
    directory = cat.models_dir(models_dir)
    with _os_errors(f"cannot import {src.name} into {directory}"):
        size = src.stat().st_size
        sha256 = dl.sha256_file(src, progress=progress, cancel=cancel)
        _entry_with_hash(directory, sha256, src)  # already installed: said at once, without waiting
        with store_lock(directory, cancel):  # the id, the file and the registry: one import at a time
            entry = _entry_with_hash(directory, sha256, src)
            if entry is None and not model_id:
                entry = match_catalog(directory, src, size, config.family, sha256)
            if entry is not None:  # the model this file is (again): its id and place
                mid, dest = entry.id, directory / entry.file_name
            else:
                mid, dest = new_custom_place(directory, src, model_id)
            if entry is None and config.role == CLASSIFIER and purpose == "custom":
                purpose = "classifier guidance"
            placed_now = not (dest.exists() or dest.is_symlink())
            try:
                _install(directory, src, dest, mode, sha256, size)
                if entry is None:
                    cat.update_registry(directory, lambda data: data["custom"].__setitem__(mid, {
                        "display_name": display_name or src.stem, "purpose": purpose, "file_name": dest.name,
                        "architecture": config.family, "size_bytes": size, "image_size": config.image_size,
                        "num_classes": config.num_classes, "scale": config.scale, "summary": config.summary,
                        "licence": config.licence, "description": description or f"Imported from {src}",
                        "imported_from": str(src.absolute()), "import_mode": mode,
                    }))
            except BaseException:
                if placed_now:  # a file the registry does not know would be an orphan
                    dest.unlink(missing_ok=True)
                raise
    return ImportResult(mid, dest, config.family, entry is not None and not entry.custom, sha256, config)


@contextlib.contextmanager
def _os_errors(what: str) -> Iterator[None]:
    """An OSError (a full disk, a folder without write permission, a file gone) becomes one line:
    "<what>: <the system's reason>"."""
    try:
        yield
    except OSError as exc:
        raise EngineError(f"{what}: {exc.strerror or exc}") from exc


def update_imported_model(src: Union[str, Path], *, models_dir: PathLike = None,
                          display_name: Optional[str] = None, description: str = "") -> Optional[ImportResult]:
    """Put the current bytes of ``src`` in the place of the custom model imported from that same
    file (e.g. a model trained again to the same path), keeping its id and import mode; its
    architecture, size and description are refreshed, its name too when ``display_name`` is given.
    Returns None, changing nothing, when no model was imported from ``src``."""
    src = Path(src).expanduser()
    directory = cat.models_dir(models_dir)
    imported = cat.read_registry(directory)["custom"]
    mid = next((m for m, raw in imported.items() if imported_from(directory, raw, src)), None)
    if mid is None:
        return None
    config = inspect_checkpoint(src)

    def refresh(data):
        data["custom"][mid].update(architecture=config.family, size_bytes=size, image_size=config.image_size,
                                   num_classes=config.num_classes, scale=config.scale, summary=config.summary,
                                   licence=config.licence, description=description or f"Imported from {src}",
                                   imported_from=str(src.absolute()),
                                   **({"display_name": display_name} if display_name else {}))

    with _os_errors(f"cannot import {src.name} into {directory}"):
        size, sha256 = src.stat().st_size, dl.sha256_file(src)
        dest = directory / imported[mid]["file_name"]
        with store_lock(directory):
            _install(directory, src, dest, imported[mid].get("import_mode", "copy"), sha256, size)
            cat.update_registry(directory, refresh)
    return ImportResult(mid, dest, config.family, False, sha256, config)


def _install(directory: Path, src: Path, dest: Path, mode: str, sha256: str, size: int) -> None:
    """``src`` at ``dest`` (unless it is that file already), with its metadata (the ``.json`` of a
    model we trained, which holds its native size) and its hash recorded."""
    if not (dest.exists() and same_file(dest, src)):
        _place(src, dest, mode)
        meta = _metadata_of(dest)
        if meta is not None and sidecar_path(src).is_file():
            _place(sidecar_path(src), meta, mode)
        elif meta is not None:
            meta.unlink(missing_ok=True)  # an earlier file's
    (dest.with_name(dest.name + cat.PART_SUFFIX)).unlink(missing_ok=True)
    _record_hash(directory, dest.name, sha256, size, f"import {src}")


def _metadata_of(model_file: Path) -> Optional[Path]:
    """Where the metadata of a model file in the models folder goes (None if that is the registry)."""
    meta = sidecar_path(model_file)
    return None if meta.name == cat.REGISTRY_NAME else meta


def _entry_with_hash(directory: Path, sha256: str, src: Path) -> Optional[cat.ModelEntry]:
    """The model already registered with exactly these bytes, if its file is missing or damaged
    (so the import repairs it); raises AlreadyInstalled when its file is there and intact."""
    registry = cat.read_registry(directory)
    for entry in cat.all_entries(directory).values():
        if reference_hash(entry, registry) != sha256:
            continue
        if cat.state_of(entry, directory, registry).status == cat.INSTALLED:
            raise AlreadyInstalled(f"{src.name} is already installed as model '{entry.id}' "
                                   f"({directory / entry.file_name})", entry.id)
        return entry
    return None


def installed_model_of(src: Union[str, Path], *, models_dir: PathLike = None,
                       progress: Optional[Callable[[int, int], None]] = None,
                       cancel: Optional[threading.Event] = None) -> Optional[cat.ModelEntry]:
    """The installed model whose file ``src`` is: that very file (or a link to it), or a copy with
    the same bytes. ``src`` is hashed only when an installed file with a known hash has its size."""
    directory = cat.models_dir(models_dir)
    src = Path(src).expanduser()
    registry = cat.read_registry(directory)
    installed = [s for s in cat.list_models(directory) if s.status == cat.INSTALLED]
    same = next((s.entry for s in installed if same_file(s.path, src)), None)
    if same is not None:
        return same
    size = src.stat().st_size
    hashes = {s.entry.id: reference_hash(s.entry, registry) for s in installed if s.path.stat().st_size == size}
    if not any(hashes.values()):
        return None
    digest = dl.sha256_file(src, progress=progress, cancel=cancel)
    return next((s.entry for s in installed if hashes.get(s.entry.id) == digest), None)


# --------------------------------------------------------------------------- verify / repair / remove


def verify_models(model_ids: Optional[Sequence[str]] = None, *, models_dir: PathLike = None,
                  progress: Optional[Callable[[str, int, int], None]] = None,
                  cancel: Optional[threading.Event] = None) -> list[VerifyResult]:
    """Re-hash installed files against pinned/recorded hashes; marks mismatches as damaged.

    Without ``model_ids``: every model whose file (or partial download) is present.
    ``progress(model_id, bytes_done, bytes_total)`` while hashing.
    """
    directory = cat.models_dir(models_dir)
    entries = cat.all_entries(directory)
    ids = list(model_ids) if model_ids else [
        e.id for e in entries.values()
        if (directory / e.file_name).exists() or (directory / (e.file_name + cat.PART_SUFFIX)).exists()
    ]
    results = []
    for mid in ids:
        entry = cat.get_entry(mid, directory)
        path = directory / entry.file_name
        if not path.is_file():
            partial = path.with_name(path.name + cat.PART_SUFFIX).is_file()
            results.append(VerifyResult(mid, "partial" if partial else "missing",
                                        "download not finished" if partial else "not installed"))
            continue
        digest = dl.sha256_file(path, (lambda d, t, m=mid: progress(m, d, t)) if progress else None, cancel)
        expected = reference_hash(entry, cat.read_registry(directory))
        broken = _weights_problem(path) if expected in (None, digest) else ""
        if broken:  # the right bytes, but weights that cannot restore anything
            cat.update_registry(directory, lambda data, f=entry.file_name: data["damaged"].__setitem__(f, broken))
            results.append(VerifyResult(mid, "unusable", broken))
        elif expected is None:
            _record_hash(directory, entry.file_name, digest, path.stat().st_size, "verify (first hash)")
            results.append(VerifyResult(mid, "recorded", f"sha256 {digest} recorded"))
        elif digest == expected:
            cat.update_registry(directory, lambda data, f=entry.file_name: data["damaged"].pop(f, None))
            results.append(VerifyResult(mid, "ok", f"sha256 {digest}"))
        else:
            reason = f"sha256 {digest[:12]}… does not match {expected[:12]}…"
            cat.update_registry(directory, lambda data, f=entry.file_name: data["damaged"].__setitem__(f, reason))
            results.append(VerifyResult(mid, "mismatch", reason))
    return results


def _weights_problem(path: Path) -> str:
    """Why the weights in ``path`` cannot restore anything (NaN or infinite values), or "". A file
    that cannot be read as tensors is left to the hash (and to the run, which says why)."""
    try:
        return non_finite_in_file(path)
    except ModelFileError:
        return ""


def _cannot_download(entry: cat.ModelEntry) -> str:
    """Why Repair cannot fetch ``entry`` again, and what to do instead."""
    if entry.custom:
        origin = entry.extra.get("imported_from")
        return (f"it was imported by you, so it cannot be downloaded again: import "
                f"{origin if origin else 'the original file'} again to put it back, or remove it")
    where = "; ".join(entry.manual_sources) or "its authors' page"
    return f"it has no download address: get {entry.file_name} from {where}, then import it"


def repair_models(model_ids: Optional[Sequence[str]] = None, *, models_dir: PathLike = None,
                  mirror: Optional[str] = None, progress: Optional[dl.ProgressCallback] = None,
                  cancel: Optional[threading.Event] = None, **download_options) -> list[VerifyResult]:
    """Verify, then re-download damaged files and finish partial downloads (resuming them).

    A damaged file is deleted first; the new download is checked against the pinned or
    recorded hash. Imported (custom) models and models without a download address cannot be
    re-downloaded: they stay marked damaged, and their detail says what to do instead.
    """
    directory = cat.models_dir(models_dir)
    results = verify_models(model_ids, models_dir=directory, cancel=cancel)
    out = []
    for res in results:
        entry = cat.get_entry(res.model_id, directory)
        if res.status in ("mismatch", "unusable") and (entry.custom or not (entry.urls or mirror)):
            out.append(VerifyResult(res.model_id, res.status, f"{res.detail}; {_cannot_download(entry)}"))
            continue
        if res.status not in ("mismatch", "partial") or entry.custom or not (entry.urls or mirror):
            out.append(res)
            continue
        if res.status == "mismatch":
            (directory / entry.file_name).unlink(missing_ok=True)
        download_model(res.model_id, models_dir=directory, mirror=mirror, progress=progress, cancel=cancel,
                       **download_options)
        out.append(VerifyResult(res.model_id, "repaired", "downloaded again and verified"))
    return out


def remove_model(model_id: str, *, models_dir: PathLike = None) -> list[Path]:
    """Delete a model's file, metadata, partial download, recorded hash and (if imported) its registration.

    For a symlinked import only the link is removed, never the user's original file.
    Returns the paths deleted.
    """
    directory = cat.models_dir(models_dir)

    def forget(data):
        data["hashes"].pop(entry.file_name, None)
        data["damaged"].pop(entry.file_name, None)
        data["custom"].pop(model_id, None)

    removed = []
    with store_lock(directory), _os_errors(f"cannot remove {model_id} from {directory}"):  # not during an import
        entry = cat.get_entry(model_id, directory)
        for path in (directory / entry.file_name, directory / (entry.file_name + cat.PART_SUFFIX),
                     _metadata_of(directory / entry.file_name)):
            if path is not None and (path.is_file() or path.is_symlink()):
                path.unlink()
                removed.append(path)
        cat.update_registry(directory, forget)
    return removed
