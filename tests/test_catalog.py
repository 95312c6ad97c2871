"""Catalog validation, models-folder location, status and resolve_model_file."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from engine.errors import EngineError, ModelFileError
from engine.models import catalog as cat

REPO = Path(__file__).resolve().parents[1]


def write_catalog(path: Path, models: list) -> Path:
    path.write_text(json.dumps({"schema_version": 1, "models": models}))
    return path


def model(mid: str, file_name: str, **extra) -> dict:
    raw = {"id": mid, "display_name": mid.title(), "purpose": "general photos", "file_name": file_name,
           "architecture": "adm", "urls": [f"http://127.0.0.1:9/{file_name}"], "sha256": None,
           "hash_policy": "record-on-first-download"}
    raw.update(extra)
    return raw


@pytest.fixture
def store(tmp_path, monkeypatch):
    """A temp catalog with two models and an empty models folder, via the env vars."""
    catalog = write_catalog(tmp_path / "models.json", [
        model("alpha", "alpha.pt", size_bytes=10, size_exact=True),
        model("beta", "beta.pt", size_bytes=999, size_exact=False, companions=["alpha"]),
    ])
    directory = tmp_path / "models"
    monkeypatch.setenv("RESTORER_MODEL_CATALOG", str(catalog))
    monkeypatch.setenv("RESTORER_MODELS_DIR", str(directory))
    cat.set_models_dir(None)
    yield directory
    cat.set_models_dir(None)


def test_shipped_catalog_is_valid_and_complete(monkeypatch):
    monkeypatch.delenv("RESTORER_MODEL_CATALOG", raising=False)
    entries = cat.load_catalog(REPO / "resources" / "models.json")
    for mid in ("adm-256-uncond", "adm-256-cond", "adm-256-classifier", "celeba-hq-ddpm", "repaint-celeba-adm"):
        assert mid in entries
    assert [e.id for e in entries.values() if e.recommended] == ["adm-256-uncond"]
    uncond = entries["adm-256-uncond"]
    assert uncond.file_name == "256x256_diffusion_uncond.pt" and uncond.architecture == "adm"
    assert 2.0e9 < uncond.size_bytes < 2.4e9 and uncond.urls[0].startswith("https://openaipublic")
    assert uncond.sha256 is None and uncond.hash_policy == "record-on-first-download"
    assert entries["adm-256-cond"].companions == ("adm-256-classifier",)
    assert entries["adm-256-classifier"].architecture == "adm-classifier"
    assert entries["celeba-hq-ddpm"].architecture == "ddpm" and entries["celeba-hq-ddpm"].purpose == "faces"
    assert all(e.licence for e in entries.values())
    assert entries["repaint-celeba-adm"].manual_sources  # no direct URL, but told where to get it


@pytest.mark.parametrize("content, message", [
    ("{not json", "cannot be read"),
    (json.dumps({"models": {}}), "'models' list"),
    (json.dumps({"models": [{"id": "a"}]}), "lacks"),
    (json.dumps({"models": [model("a", "a.pt"), model("a", "b.pt")]}), "twice"),
    (json.dumps({"models": [model("a", "a.pt", sha256="xyz")]}), "64 hex"),
    (json.dumps({"models": [model("a", "a.pt", hash_policy="pinned")]}), "needs a sha256"),
    (json.dumps({"models": [model("a", "a.pt", companions=["zzz"])]}), "unknown companion"),
    (json.dumps({"models": [model("a", "../evil.pt")]}), "plain file name"),
    (json.dumps({"models": [model("A B", "a.pt")]}), "lowercase"),
])
def test_malformed_catalog_gives_clear_error(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(cat.CatalogError, match=message):
        cat.load_catalog(path)
    with pytest.raises(cat.CatalogError, match="missing"):
        cat.load_catalog(tmp_path / "absent.json")


def test_models_dir_precedence(tmp_path, monkeypatch):
    import platformdirs

    monkeypatch.setattr(platformdirs, "user_data_dir", lambda app, appauthor=None: str(tmp_path / "ud" / app))
    monkeypatch.delenv("RESTORER_MODELS_DIR", raising=False)
    cat.set_models_dir(None)
    assert cat.models_dir() == tmp_path / "ud" / "Restorer" / "models"
    monkeypatch.setenv("RESTORER_MODELS_DIR", str(tmp_path / "env"))
    assert cat.models_dir() == tmp_path / "env"
    cat.set_models_dir(tmp_path / "setting")
    try:
        assert cat.models_dir() == tmp_path / "setting"
        assert cat.models_dir(tmp_path / "arg") == tmp_path / "arg"
        assert (tmp_path / "arg").is_dir()
    finally:
        cat.set_models_dir(None)


def test_status_missing_partial_installed_corrupt(store):
    assert cat.model_status("alpha") == cat.MISSING
    store.mkdir(exist_ok=True)
    (store / "alpha.pt.part").write_bytes(b"12345")
    assert cat.model_status("alpha") == cat.PARTIAL
    (store / "alpha.pt").write_bytes(b"0123456789")  # exact catalog size
    assert cat.model_status("alpha") == cat.INSTALLED
    (store / "alpha.pt").write_bytes(b"01234")  # truncated: exact size is known
    assert cat.model_status("alpha") == cat.CORRUPT
    (store / "beta.pt").write_bytes(b"x" * 5)  # approximate size: not judged by it
    assert cat.model_status("beta") == cat.INSTALLED
    cat.update_registry(store, lambda d: d["hashes"].__setitem__("beta.pt", {"sha256": "0" * 64, "size": 6}))
    assert cat.model_status("beta") == cat.CORRUPT  # recorded size wins
    cat.update_registry(store, lambda d: d["hashes"].__setitem__("beta.pt", {"sha256": "0" * 64, "size": 5}))
    assert cat.model_status("beta") == cat.INSTALLED
    cat.update_registry(store, lambda d: d["damaged"].__setitem__("beta.pt", "hash mismatch"))
    assert cat.model_status("beta") == cat.CORRUPT
    assert [s.id for s in cat.installed_models()] == []


def test_resolve_model_file_messages(store, tmp_path):
    with pytest.raises(ModelFileError, match=r"model 'alpha' is not installed — run `python -m engine models "
                                             r"download alpha` or import the file"):
        cat.resolve_model_file("alpha")
    store.mkdir(exist_ok=True)
    (store / "alpha.pt.part").write_bytes(b"1")
    with pytest.raises(ModelFileError, match="not finished"):
        cat.resolve_model_file("alpha")
    (store / "alpha.pt").write_bytes(b"01")
    with pytest.raises(ModelFileError, match="damaged.*verify alpha --repair"):
        cat.resolve_model_file("alpha")
    (store / "alpha.pt").write_bytes(b"0123456789")
    assert cat.resolve_model_file("alpha") == store / "alpha.pt"
    with pytest.raises(ModelFileError, match="unknown model 'gamma'.*alpha, beta"):
        cat.resolve_model_file("gamma")
    own = tmp_path / "mine.ckpt"
    own.write_bytes(b"x")
    assert cat.resolve_model_file(str(own)) == own
    with pytest.raises(ModelFileError, match="not found"):
        cat.resolve_model_file(str(tmp_path / "nope.pt"))
    with pytest.raises(ModelFileError, match="is a folder, not a model file"):
        cat.resolve_model_file(str(tmp_path))


def test_custom_models_from_registry_are_listed(store):
    store.mkdir(exist_ok=True)
    (store / "mine.pt").write_bytes(b"abc")
    cat.update_registry(store, lambda d: d["custom"].__setitem__(
        "mine", {"display_name": "My faces", "file_name": "mine.pt", "architecture": "ddpm", "size_bytes": 3}))
    installed = cat.installed_models()
    assert [(s.id, s.display_name, s.entry.custom) for s in installed] == [("mine", "My faces", True)]
    assert cat.resolve_model_file("mine") == store / "mine.pt"
    assert [s.id for s in cat.list_models()] == ["alpha", "beta", "mine"]


def test_broken_symlink_is_corrupt_and_damaged_registry_is_reported(store, tmp_path):
    store.mkdir(exist_ok=True)
    os.symlink(tmp_path / "gone.pt", store / "beta.pt")
    assert cat.model_status("beta") == cat.CORRUPT
    (store / cat.REGISTRY_NAME).write_text("{oops")
    with pytest.raises(EngineError, match="registry"):
        cat.model_status("beta")


def test_self_test_reports_failures(monkeypatch):
    import io

    from gui import self_test

    monkeypatch.setattr(self_test, "CHECKS", (("catalog", self_test._check_catalog),
                                              ("broken", lambda: 1 / 0)))
    out = io.StringIO()
    assert self_test.run_self_test(out) == 1
    text = out.getvalue()
    assert "catalog: model catalog has" in text and "broken: FAILED — ZeroDivisionError" in text
    assert "self-test FAILED" in text
    monkeypatch.setattr(self_test, "CHECKS", (("catalog", self_test._check_catalog),))
    out = io.StringIO()
    assert self_test.run_self_test(out) == 0 and out.getvalue().rstrip().split("\n")[-1].startswith("self-test OK")
