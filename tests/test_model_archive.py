"""A model published inside a zip archive: downloaded (resumably) from a local HTTP server, taken
out, verified by the extracted file's hash, and imported like any model file."""

from __future__ import annotations

import hashlib
import io
import json
import threading
import zipfile

import pytest

from engine.models import catalog as cat
from engine.models import download as dl
from engine.models import store
from tests.test_download import FakeModelServer, payload

MEMBER = "checkpoints/detection/FT_Epoch_latest.pt"


def zip_with(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


@pytest.fixture
def served(tmp_path, monkeypatch):
    """A server with global_checkpoints.zip (the member among other files) and a catalog entry for it."""
    member = payload(200_000, seed=7)
    server = FakeModelServer()
    server.files["global_checkpoints.zip"] = zip_with({
        "checkpoints/restoration/other.pth": payload(50_000, seed=3), MEMBER: member, "README.txt": b"x"})
    catalog = tmp_path / "models.json"
    catalog.write_text(json.dumps({"models": [{
        "id": "scratch-net", "display_name": "Scratch detector", "purpose": "finding damage",
        "file_name": "FT_Epoch_latest.pt", "architecture": "bopb-scratch", "archive_member": MEMBER,
        "urls": [server.url("global_checkpoints.zip")], "sha256": None, "hash_policy": "record-on-first-download"}]}))
    monkeypatch.setenv("RESTORER_MODEL_CATALOG", str(catalog))
    monkeypatch.delenv("RESTORER_MODEL_MIRROR", raising=False)
    cat.set_models_dir(None)
    yield server, member, tmp_path / "models"
    server.close()


def test_the_member_is_installed_its_hash_recorded_and_the_archive_deleted(served):
    server, member, models = served
    path = store.download_model("scratch-net", models_dir=models)
    assert path == models / "FT_Epoch_latest.pt" and path.read_bytes() == member
    recorded = cat.read_registry(models)["hashes"]["FT_Epoch_latest.pt"]
    assert recorded["sha256"] == hashlib.sha256(member).hexdigest() and recorded["size"] == len(member)
    visible = sorted(p.name for p in models.iterdir() if not p.name.startswith("."))  # not the folder lock
    assert visible == ["FT_Epoch_latest.pt", "registry.json"]
    assert cat.model_status("scratch-net", models) == cat.INSTALLED
    assert store.verify_models(["scratch-net"], models_dir=models)[0].status == "ok"


def test_an_interrupted_archive_download_is_partial_and_resumes_with_a_range(served, monkeypatch):
    server, member, models = served
    monkeypatch.setattr(dl, "PROGRESS_INTERVAL", 0.0)  # report every chunk so the cancel lands mid-way
    cancel = threading.Event()

    def stop_early(progress: dl.DownloadProgress) -> None:
        if progress.done >= 60_000:
            cancel.set()

    with pytest.raises(dl.DownloadCancelled):
        store.download_model("scratch-net", models_dir=models, progress=stop_early, cancel=cancel, chunk_size=4096)
    part = models / "FT_Epoch_latest.pt.archive.part"
    kept = part.stat().st_size
    assert 60_000 <= kept < len(server.files["global_checkpoints.zip"])
    assert cat.model_status("scratch-net", models) == cat.PARTIAL
    store.download_model("scratch-net", models_dir=models)
    assert server.served[-1].range_header == f"bytes={kept}-"
    assert (models / "FT_Epoch_latest.pt").read_bytes() == member and not part.exists()


def test_a_member_with_another_hash_than_recorded_is_not_installed(served):
    server, member, models = served
    models.mkdir()
    cat.update_registry(models, lambda data: data["hashes"].__setitem__(
        "FT_Epoch_latest.pt", {"sha256": "0" * 64, "size": len(member)}))
    with pytest.raises(dl.HashMismatchError, match="not the expected file"):
        store.download_model("scratch-net", models_dir=models)
    assert not (models / "FT_Epoch_latest.pt").exists() and not (models / "FT_Epoch_latest.pt.part").exists()


def test_a_damaged_archive_or_a_missing_member_is_refused_clearly(served):
    server, member, models = served
    server.files["global_checkpoints.zip"] = b"<html>not a zip</html>" * 100
    with pytest.raises(dl.DownloadError, match="damaged or not a zip file"):
        store.download_model("scratch-net", models_dir=models)
    assert not (models / "FT_Epoch_latest.pt.archive").exists()
    server.files["global_checkpoints.zip"] = zip_with({"something/else.pt": member})
    with pytest.raises(dl.DownloadError, match=f"does not hold {MEMBER}"):
        store.download_model("scratch-net", models_dir=models)
    assert not (models / "FT_Epoch_latest.pt").exists()


def test_a_complete_archive_left_by_an_interrupted_unpacking_is_not_downloaded_again(served):
    server, member, models = served
    models.mkdir()
    (models / "FT_Epoch_latest.pt.archive").write_bytes(server.files["global_checkpoints.zip"])
    store.download_model("scratch-net", models_dir=models)
    assert not server.served and (models / "FT_Epoch_latest.pt").read_bytes() == member


def test_remove_deletes_archive_leftovers(served):
    server, member, models = served
    models.mkdir()
    leftover = models / "FT_Epoch_latest.pt.archive.part"
    leftover.write_bytes(b"123")
    assert leftover in store.remove_model("scratch-net", models_dir=models) and not leftover.exists()


def test_the_catalog_refuses_a_member_outside_the_archive(tmp_path):
    catalog = tmp_path / "models.json"
    catalog.write_text(json.dumps({"models": [{
        "id": "x", "display_name": "X", "purpose": "p", "file_name": "x.pt", "architecture": "bopb-scratch",
        "archive_member": "../x.pt"}]}))
    with pytest.raises(cat.CatalogError, match="archive_member"):
        cat.load_catalog(catalog)
