"""The model catalog (``resources/models.json``) and the per-user model store.

The store is one folder (``models_dir()``): the model files under their catalog file names, a
``<file>.part`` for an unfinished download, and ``registry.json`` holding the hashes recorded on
first download/import, files found damaged by Verify, and user-imported (custom) models.

Where the folder is, first match wins: the ``models_dir`` argument, :func:`set_models_dir`
(the app's setting), env ``RESTORER_MODELS_DIR``, ``platformdirs.user_data_dir("Restorer")/models``.
The catalog file can be replaced with env ``RESTORER_MODEL_CATALOG`` or :func:`set_catalog_path`.

Changes to a folder (the registry, a new model's id and file) are made one at a time, across
threads and processes (the app and the CLI together): see :mod:`engine.models.folder_lock`.
Reading needs no lock: the registry is only ever replaced whole.
"""

from __future__ import annotations

import json
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

from engine.atomic_file import atomic_write
from engine.errors import EngineError, ModelFileError
from engine.models.folder_lock import store_lock

INSTALLED, MISSING, CORRUPT, PARTIAL = "installed", "missing", "corrupt", "partial"
HASH_POLICIES = ("pinned", "record-on-first-download")
REGISTRY_NAME = "registry.json"
PART_SUFFIX = ".part"
MODEL_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin", ".safetensors")
ARCHIVE_SUFFIX = ".archive"  # <file>.archive(.part): the archive a model is taken out of, while downloading

_overrides: dict[str, Optional[Path]] = {"models_dir": None, "catalog": None}


class CatalogError(EngineError):
    """The catalog file is missing or malformed."""


@dataclass(frozen=True)
class ModelEntry:
    """One model the app can use: from the catalog, or imported by the user (``custom=True``)."""

    id: str
    display_name: str
    purpose: str
    file_name: str
    architecture: str
    size_bytes: Optional[int] = None
    size_exact: bool = False
    urls: tuple[str, ...] = ()
    archive_member: Optional[str] = None  # the urls give a zip archive; the model is this member of it
    manual_sources: tuple[str, ...] = ()
    sha256: Optional[str] = None
    hash_policy: str = "record-on-first-download"
    licence: str = ""
    description: str = ""
    image_size: int = 256
    companions: tuple[str, ...] = ()
    recommended: bool = False
    #: the licence restricts use (e.g. non-commercial): it is shown and must be accepted before a download
    licence_confirmation: bool = False
    custom: bool = False
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def download_name(self) -> str:
        """The name of what the urls give: the archive's for a model taken out of one (a mirror
        holds that file)."""
        if self.archive_member and self.urls:
            return self.urls[0].rstrip("/").rsplit("/", 1)[-1] or self.file_name
        return self.file_name

    @property
    def role(self) -> str:
        """What the model is for (engine.models.kinds): diffusion, classifier, cleanup, ..."""
        from engine.models.kinds import role_of

        return role_of(self.architecture)


def licence_notice(entry: ModelEntry) -> str:
    """What a person must accept before downloading a model whose licence restricts its use."""
    restricted = "non-commercial" in entry.licence.lower()
    only = ": non-commercial use only (research, personal projects)" if restricted else ""
    return (f"{entry.display_name} comes under the {entry.licence}, which restricts how it may be used{only}. "
            "Download it only if you accept its terms.")


@dataclass(frozen=True)
class ModelState:
    """A model together with where it lives and what state its file is in."""

    entry: ModelEntry
    status: str  # installed | missing | corrupt | partial
    path: Path
    detail: str = ""

    @property
    def id(self) -> str:
        return self.entry.id

    @property
    def display_name(self) -> str:
        return self.entry.display_name


# --------------------------------------------------------------------------- locations


def set_models_dir(path: Union[str, Path, None]) -> None:
    """The app's setting for the models folder (None = back to env var / default)."""
    _overrides["models_dir"] = Path(path).expanduser() if path else None


def set_catalog_path(path: Union[str, Path, None]) -> None:
    _overrides["catalog"] = Path(path) if path else None


def models_dir(override: Union[str, Path, None] = None, *, create: bool = True) -> Path:
    """The models folder (see module doc for the precedence). Created unless ``create=False``."""
    if override:
        path = Path(override).expanduser()
    elif _overrides["models_dir"] is not None:
        path = _overrides["models_dir"]
    elif os.environ.get("RESTORER_MODELS_DIR"):
        path = Path(os.environ["RESTORER_MODELS_DIR"]).expanduser()
    else:
        import platformdirs

        path = Path(platformdirs.user_data_dir("Restorer", appauthor=False)) / "models"
    if create:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise EngineError(f"cannot create the models folder {path}: {exc.strerror or exc}") from exc
    return path


def resources_dir() -> Path:
    """``resources/`` next to the source tree, or inside a PyInstaller bundle."""
    bundle = getattr(sys, "_MEIPASS", None)
    if bundle:
        return Path(bundle) / "resources"
    return Path(__file__).resolve().parents[2] / "resources"


def catalog_path() -> Path:
    if _overrides["catalog"] is not None:
        return _overrides["catalog"]
    if os.environ.get("RESTORER_MODEL_CATALOG"):
        return Path(os.environ["RESTORER_MODEL_CATALOG"])
    return resources_dir() / "models.json"


# --------------------------------------------------------------------------- catalog


def _entry_from_json(raw: Any, where: str) -> ModelEntry:
    if not isinstance(raw, dict):
        raise CatalogError(f"{where}: each model must be a JSON object")
    missing = [k for k in ("id", "display_name", "purpose", "file_name", "architecture") if not raw.get(k)]
    if missing:
        raise CatalogError(f"{where}: model {raw.get('id', '?')!r} lacks {', '.join(missing)}")
    mid = str(raw["id"])
    if not re.fullmatch(r"[a-z0-9][a-z0-9._-]*", mid):
        raise CatalogError(f"{where}: model id {mid!r} must be lowercase letters, digits, '.', '_' or '-'")
    if Path(raw["file_name"]).name != raw["file_name"]:
        raise CatalogError(f"{where}: {mid}: file_name must be a plain file name, got {raw['file_name']!r}")
    sha = raw.get("sha256")
    if sha is not None and not re.fullmatch(r"[0-9a-fA-F]{64}", str(sha)):
        raise CatalogError(f"{where}: {mid}: sha256 must be 64 hex digits or null")
    policy = raw.get("hash_policy", "pinned" if sha else "record-on-first-download")
    if policy not in HASH_POLICIES:
        raise CatalogError(f"{where}: {mid}: hash_policy must be one of {', '.join(HASH_POLICIES)}")
    if policy == "pinned" and not sha:
        raise CatalogError(f"{where}: {mid}: hash_policy 'pinned' needs a sha256")
    size = raw.get("size_bytes")
    if size is not None and (not isinstance(size, int) or size <= 0):
        raise CatalogError(f"{where}: {mid}: size_bytes must be a positive whole number")
    member = raw.get("archive_member")
    inside = isinstance(member, str) and member and not member.startswith("/") and ".." not in member.split("/")
    if member is not None and not inside:
        raise CatalogError(f"{where}: {mid}: archive_member must be a path inside the archive, got {member!r}")
    for key in ("urls", "manual_sources", "companions"):
        if not isinstance(raw.get(key, []), list):
            raise CatalogError(f"{where}: {mid}: {key} must be a list")
    known = {f.name for f in ModelEntry.__dataclass_fields__.values()}
    return ModelEntry(
        id=mid,
        display_name=str(raw["display_name"]),
        purpose=str(raw["purpose"]),
        file_name=str(raw["file_name"]),
        architecture=str(raw["architecture"]),
        size_bytes=size,
        size_exact=bool(raw.get("size_exact", False)),
        urls=tuple(raw.get("urls", [])),
        archive_member=member,
        manual_sources=tuple(raw.get("manual_sources", [])),
        sha256=sha.lower() if sha else None,
        hash_policy=policy,
        licence=str(raw.get("licence", "")),
        description=str(raw.get("description", "")),
        image_size=int(raw.get("image_size", 256)),
        companions=tuple(raw.get("companions", [])),
        recommended=bool(raw.get("recommended", False)),
        licence_confirmation=bool(raw.get("licence_confirmation", False)),
        extra={k: v for k, v in raw.items() if k not in known},
    )


def load_catalog(path: Union[str, Path, None] = None) -> dict[str, ModelEntry]:
    """Read and validate the catalog; ``{id: ModelEntry}`` in file order. Raises CatalogError."""
    path = Path(path) if path else catalog_path()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise CatalogError(f"the model catalog {path} is missing") from exc
    except (OSError, ValueError) as exc:
        raise CatalogError(f"the model catalog {path} cannot be read: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("models"), list):
        raise CatalogError(f"the model catalog {path} must be an object with a 'models' list")
    out: dict[str, ModelEntry] = {}
    for i, raw in enumerate(data["models"]):
        entry = _entry_from_json(raw, f"{path.name} model #{i + 1}")
        if entry.id in out:
            raise CatalogError(f"{path.name}: model id {entry.id!r} appears twice")
        out[entry.id] = entry
    for entry in out.values():
        for comp in entry.companions:
            if comp not in out:
                raise CatalogError(f"{path.name}: {entry.id} names unknown companion {comp!r}")
    return out


# --------------------------------------------------------------------------- registry


def registry_path(directory: Path) -> Path:
    return directory / REGISTRY_NAME


def read_registry(directory: Path) -> dict[str, Any]:
    """``{"hashes": {file: {...}}, "damaged": {file: reason}, "custom": {id: {...}}}``."""
    empty: dict[str, Any] = {"version": 1, "hashes": {}, "damaged": {}, "custom": {}}
    path = registry_path(directory)
    try:  # no lock: the file is replaced whole (write_registry), never seen half-written
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return empty
    except (OSError, ValueError) as exc:
        raise EngineError(f"the model registry {path} is damaged ({exc}); delete it and run Verify") from exc
    for key in ("hashes", "damaged", "custom"):
        if not isinstance(data.get(key), dict):
            data[key] = {}
    return data


def write_registry(directory: Path, data: dict[str, Any]) -> None:
    """Atomic write (temp file + rename) so a crash never leaves half a registry."""
    with store_lock(directory), atomic_write(registry_path(directory)) as handle:
        handle.write(json.dumps(data, indent=2, sort_keys=True).encode("utf-8"))


def update_registry(directory: Path, change) -> dict[str, Any]:
    """Read-modify-write under :func:`store_lock`; ``change(data)`` edits the dict in place."""
    with store_lock(directory):
        data = read_registry(directory)
        change(data)
        write_registry(directory, data)
        return data


def _custom_entry(mid: str, raw: dict[str, Any]) -> ModelEntry:
    return ModelEntry(
        id=mid,
        display_name=str(raw.get("display_name") or mid),
        purpose=str(raw.get("purpose") or "custom"),
        file_name=str(raw["file_name"]),
        architecture=str(raw.get("architecture") or "unknown"),
        size_bytes=raw.get("size_bytes"),
        size_exact=raw.get("size_bytes") is not None,
        sha256=None,
        hash_policy="record-on-first-download",
        licence=str(raw.get("licence") or ""),
        description=str(raw.get("description") or "Imported by you."),
        image_size=int(raw.get("image_size") or 256),
        custom=True,
        extra={k: v for k, v in raw.items() if k not in ("display_name", "purpose", "file_name", "licence")},
    )


# --------------------------------------------------------------------------- store queries


def all_entries(models_dir_override: Union[str, Path, None] = None) -> dict[str, ModelEntry]:
    """Catalog models followed by the user's imported models."""
    entries = dict(load_catalog())
    registry = read_registry(models_dir(models_dir_override))
    for mid, raw in registry["custom"].items():
        if mid not in entries and isinstance(raw, dict) and raw.get("file_name"):
            entries[mid] = _custom_entry(mid, raw)
    return entries


def get_entry(model_id: str, models_dir_override: Union[str, Path, None] = None) -> ModelEntry:
    entries = all_entries(models_dir_override)
    if model_id not in entries:
        known = ", ".join(entries) or "none"
        raise ModelFileError(f"unknown model {model_id!r} (known models: {known})")
    return entries[model_id]


def _expected_size(entry: ModelEntry, registry: dict[str, Any]) -> Optional[int]:
    recorded = registry["hashes"].get(entry.file_name, {})
    if isinstance(recorded, dict) and recorded.get("size"):
        return int(recorded["size"])
    return entry.size_bytes if entry.size_exact else None


def state_of(entry: ModelEntry, directory: Path, registry: Optional[dict[str, Any]] = None) -> ModelState:
    """Cheap status from the file system and registry (sizes, damage marks — no hashing)."""
    registry = registry if registry is not None else read_registry(directory)
    path = directory / entry.file_name
    if path.is_file():
        damaged = registry["damaged"].get(entry.file_name)
        if damaged:
            return ModelState(entry, CORRUPT, path, str(damaged))
        expected = _expected_size(entry, registry)
        actual = path.stat().st_size
        if expected is not None and actual != expected:
            return ModelState(entry, CORRUPT, path, f"size is {actual} bytes, expected {expected}")
        return ModelState(entry, INSTALLED, path)
    part = next((p for p in download_leftovers(path) if p.is_file()), None)
    if part is not None:
        return ModelState(entry, PARTIAL, path, f"{part.stat().st_size} bytes downloaded so far")
    if path.is_symlink():
        return ModelState(entry, CORRUPT, path, "the link points to a file that no longer exists")
    return ModelState(entry, MISSING, path)


def download_leftovers(path: Path) -> tuple[Path, ...]:
    """What an unfinished download of the model file ``path`` leaves: its ``.part``, and for a model
    taken out of an archive the archive (complete, or its own ``.part``)."""
    archive = path.with_name(path.name + ARCHIVE_SUFFIX)
    return path.with_name(path.name + PART_SUFFIX), archive.with_name(archive.name + PART_SUFFIX), archive


def list_models(models_dir_override: Union[str, Path, None] = None) -> list[ModelState]:
    """Every catalog and imported model with its status."""
    directory = models_dir(models_dir_override)
    registry = read_registry(directory)
    return [state_of(e, directory, registry) for e in all_entries(directory).values()]


def installed_models(models_dir_override: Union[str, Path, None] = None) -> list[ModelState]:
    """The models whose files are present and not known to be damaged."""
    return [s for s in list_models(models_dir_override) if s.status == INSTALLED]


def model_status(model_id: str, models_dir_override: Union[str, Path, None] = None) -> str:
    """``installed`` / ``missing`` / ``corrupt`` / ``partial`` (cheap; Verify does the hashing)."""
    directory = models_dir(models_dir_override)
    return state_of(get_entry(model_id, directory), directory).status


def _looks_like_path(spec: str) -> bool:
    return os.sep in spec or "/" in spec or spec.lower().endswith(MODEL_SUFFIXES)


def require_model_file(path: Path, name: Optional[str] = None) -> Path:
    """``path`` when it is a file; else ModelFileError saying it is a folder or does not exist."""
    name = name or str(path)
    if path.is_dir():
        raise ModelFileError(f"{name} is a folder, not a model file: choose a checkpoint file "
                             f"({', '.join(MODEL_SUFFIXES)})")
    if not path.is_file():
        raise ModelFileError(f"model file not found: {name}")
    return path


def resolve_model_file(model: Union[str, Path], models_dir_override: Union[str, Path, None] = None) -> Path:
    """A catalog/imported model id or a checkpoint path -> the file to load. Raises ModelFileError."""
    spec = str(model)
    if isinstance(model, Path) or _looks_like_path(spec):
        return require_model_file(Path(spec).expanduser(), spec)
    directory = models_dir(models_dir_override)
    state = state_of(get_entry(spec, directory), directory)
    hint = f"`python -m engine models download {spec}`" if state.entry.urls else "download it by hand"
    if state.status == INSTALLED:
        return state.path
    if state.status == PARTIAL:
        raise ModelFileError(f"the download of model {spec!r} is not finished — run {hint} to resume it")
    if state.status == CORRUPT:
        raise ModelFileError(
            f"model {spec!r} is damaged ({state.detail}) — run `python -m engine models verify {spec} --repair`"
            " or import the file again"
        )
    raise ModelFileError(f"model {spec!r} is not installed — run {hint} or import the file")
