"""Import (safe loading + detection), verify, repair, remove and catalog downloads of the model store."""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import pickle
import threading
from pathlib import Path

import pytest
import torch

from engine.errors import Cancelled, EngineError, ModelFileError
from engine.models import catalog as cat
from engine.models import store
from engine.models.folder_lock import LOCK_NAME
from engine.models.tiny import build_tiny, tiny_adm_config, tiny_classifier_config, tiny_ddpm_config



class QuietFileHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def tiny_state_dicts():
    return {
        "adm": build_tiny(tiny_adm_config()).state_dict(),
        "ddpm": build_tiny(tiny_ddpm_config()).state_dict(),
        "adm-classifier": build_tiny(tiny_classifier_config()).state_dict(),
    }


@pytest.fixture
def models_dir(tmp_path, monkeypatch):
    """Temp catalog: one entry whose exact size/name fit a tiny DDPM file, one ADM entry with a URL."""
    catalog = tmp_path / "models.json"
    monkeypatch.setenv("RESTORER_MODEL_CATALOG", str(catalog))
    directory = tmp_path / "models"
    monkeypatch.setenv("RESTORER_MODELS_DIR", str(directory))
    cat.set_models_dir(None)
    catalog.write_text(json.dumps({"models": [
        {"id": "faces-tiny", "display_name": "Faces tiny", "purpose": "faces", "file_name": "faces.ckpt",
         "architecture": "ddpm", "urls": [], "sha256": None, "hash_policy": "record-on-first-download"},
    ]}))
    return directory


def snapshot(directory: Path) -> dict:
    if not directory.exists():
        return {}
    return {p.name: p.read_bytes() for p in directory.iterdir()}


def save(sd: dict, path: Path, layout: str) -> Path:
    if layout == "plain":
        torch.save(sd, path)
    elif layout == "wrapped":
        torch.save({"state_dict": sd, "step": 3}, path)
    else:
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    return path


@pytest.mark.parametrize("family", ["adm", "ddpm", "adm-classifier"])
@pytest.mark.parametrize("layout, suffix", [("plain", ".pt"), ("wrapped", ".ckpt"), ("safetensors", ".safetensors")])
def test_import_accepts_each_official_layout(models_dir, tmp_path, tiny_state_dicts, family, layout, suffix):
    src = save(tiny_state_dicts[family], tmp_path / f"trained_{family}{suffix}", layout)
    result = store.import_model_file(src, display_name="My model")
    assert result.architecture == family and not result.matched_catalog
    assert result.path.parent == models_dir and result.path.read_bytes() == src.read_bytes()
    assert result.sha256 == hashlib.sha256(src.read_bytes()).hexdigest()
    states = {s.id: s for s in cat.installed_models()}
    assert states[result.model_id].entry.custom and states[result.model_id].display_name == "My model"
    assert states[result.model_id].entry.architecture == family
    assert cat.resolve_model_file(result.model_id) == result.path


def test_import_matches_catalog_entry_by_name_and_architecture(models_dir, tmp_path, tiny_state_dicts):
    src = save(tiny_state_dicts["ddpm"], tmp_path / "faces.ckpt", "plain")
    result = store.import_model_file(src)
    assert result.matched_catalog and result.model_id == "faces-tiny"
    assert cat.model_status("faces-tiny") == cat.INSTALLED
    registry = cat.read_registry(models_dir)
    assert registry["hashes"]["faces.ckpt"]["sha256"] == result.sha256 and registry["custom"] == {}
    # same name, other architecture: not the catalog model, so registered as custom under its own name
    (tmp_path / "sub").mkdir()
    other = save(tiny_state_dicts["adm"], tmp_path / "sub" / "faces.ckpt", "plain")
    result2 = store.import_model_file(other)
    assert not result2.matched_catalog and result2.path.name != "faces.ckpt"
    assert (models_dir / "faces.ckpt").read_bytes() == src.read_bytes()  # untouched


def test_symlink_and_hardlink_imports(models_dir, tmp_path, tiny_state_dicts):
    src = save(tiny_state_dicts["ddpm"], tmp_path / "linked.pt", "plain")
    res = store.import_model_file(src, mode="symlink")
    assert res.path.is_symlink() and res.path.resolve() == src.resolve()
    store.remove_model(res.model_id)
    assert src.exists() and not res.path.exists()  # removing the link keeps the user's file
    res = store.import_model_file(src, mode="hardlink", model_id="hard")
    assert res.model_id == "hard" and res.path.samefile(src)


def registered_files(directory: Path) -> dict[str, str]:
    """file name -> model id for every file in the models folder (orphans map to None)."""
    owners = {e.file_name: e.id for e in cat.all_entries(directory).values()}
    return {p.name: owners.get(p.name) for p in directory.iterdir() if p.name not in (cat.REGISTRY_NAME, LOCK_NAME)}


def test_different_files_with_the_same_name_get_their_own_ids(models_dir, tmp_path, tiny_state_dicts):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = save(tiny_state_dicts["adm"], tmp_path / "a" / "model.pt", "plain")
    second = save(tiny_state_dicts["ddpm"], tmp_path / "b" / "model.pt", "plain")
    a = store.import_model_file(first, display_name="Faces A")
    b = store.import_model_file(second, display_name="Scenes B")
    assert (a.model_id, b.model_id) == ("model", "model-2") and a.path != b.path
    assert a.path.read_bytes() == first.read_bytes() and b.path.read_bytes() == second.read_bytes()
    states = {s.id: s for s in cat.installed_models()}
    assert states["model"].display_name == "Faces A" and states["model-2"].display_name == "Scenes B"
    assert states["model"].entry.architecture == "adm" and states["model-2"].entry.architecture == "ddpm"


def test_accented_names_give_readable_ids(models_dir, tmp_path, tiny_state_dicts):
    first = store.import_model_file(save(tiny_state_dicts["adm"], tmp_path / "Mödel 1.pt", "plain"))
    second = store.import_model_file(save(tiny_state_dicts["ddpm"], tmp_path / "x.pt", "plain"), model_id="Café")
    assert (first.model_id, first.path.name, second.model_id) == ("model-1", "model-1.pt", "cafe")


def test_same_weights_in_another_container_do_not_orphan_the_first(models_dir, tmp_path, tiny_state_dicts):
    pt = store.import_model_file(save(tiny_state_dicts["adm"], tmp_path / "tiny_adm.pt", "plain"))
    st = store.import_model_file(save(tiny_state_dicts["adm"], tmp_path / "tiny_adm.safetensors", "safetensors"))
    assert (pt.model_id, st.model_id) == ("tiny_adm", "tiny_adm-2")
    assert registered_files(models_dir) == {"tiny_adm.pt": "tiny_adm", "tiny_adm-2.safetensors": "tiny_adm-2"}


def test_identical_file_is_already_installed_and_nothing_changes(models_dir, tmp_path, tiny_state_dicts):
    src = save(tiny_state_dicts["ddpm"], tmp_path / "faces_v1.pt", "plain")
    first = store.import_model_file(src)
    before = snapshot(models_dir)
    copy = tmp_path / "renamed.pt"
    copy.write_bytes(src.read_bytes())
    for again in (src, copy):
        with pytest.raises(store.AlreadyInstalled, match=f"{again.name} is already installed as model 'faces_v1'") as info:
            store.import_model_file(again)
        assert info.value.model_id == "faces_v1"
        assert snapshot(models_dir) == before
    first.path.unlink()  # lost by hand: importing the same bytes puts it back under its id
    again = store.import_model_file(copy)
    assert again.model_id == "faces_v1" and again.path == first.path and first.path.read_bytes() == src.read_bytes()
    assert registered_files(models_dir) == {"faces_v1.pt": "faces_v1"}


@pytest.mark.parametrize("mode", ["copy", "hardlink", "symlink"])
def test_update_puts_new_bytes_under_the_id_imported_from_the_same_file(models_dir, tmp_path, tiny_state_dicts, mode):
    src = save(tiny_state_dicts["adm"], tmp_path / "mine.pt", "plain")
    assert store.update_imported_model(src) is None and not (models_dir / "registry.json").exists()
    first = store.import_model_file(src, mode=mode, display_name="Mine")
    save({k: v + 1 for k, v in tiny_state_dicts["adm"].items()}, tmp_path / "new.pt", "plain").replace(src)
    updated = store.update_imported_model(src, description="retrained")
    assert (updated.model_id, updated.path) == (first.model_id, first.path) and updated.sha256 != first.sha256
    assert first.path.read_bytes() == src.read_bytes() and first.path.is_symlink() == (mode == "symlink")
    entry = cat.get_entry(first.model_id)
    assert (entry.display_name, entry.description) == ("Mine", "retrained")
    assert registered_files(models_dir) == {"mine.pt": "mine"}
    assert store.verify_models([first.model_id])[0].status == "ok"


def test_an_import_by_a_relative_path_is_found_again_from_any_folder(models_dir, tmp_path, tiny_state_dicts,
                                                                    monkeypatch):
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    src = save(tiny_state_dicts["adm"], tmp_path / "work" / "mine.pt", "plain")
    first = store.import_model_file("mine.pt")  # e.g. `python -m engine models import mine.pt`
    assert cat.read_registry(models_dir)["custom"][first.model_id]["imported_from"] == str(src)
    monkeypatch.chdir(tmp_path)
    assert store.update_imported_model(src).model_id == first.model_id


@pytest.mark.parametrize("mode", ["copy", "symlink"])
def test_an_older_entry_with_a_relative_path_is_matched_where_it_can_be(models_dir, tmp_path, tiny_state_dicts,
                                                                       monkeypatch, mode):
    work, other = tmp_path / "work", tmp_path / "other"
    work.mkdir(), other.mkdir()
    src = save(tiny_state_dicts["adm"], work / "mine.pt", "plain")
    namesake = save({k: v + 2 for k, v in tiny_state_dicts["adm"].items()}, other / "mine.pt", "plain")
    first = store.import_model_file(src, mode=mode)
    # as older versions recorded `models import mine.pt` run in work/: relative to a folder not recorded
    cat.update_registry(models_dir, lambda data: data["custom"][first.model_id].update(imported_from="mine.pt"))
    if mode == "symlink":  # the link in the models folder says where it came from, from any folder
        monkeypatch.chdir(other)
        assert store.update_imported_model(namesake) is None  # the same relative name, another file
        assert store.update_imported_model(src).model_id == first.model_id
    else:  # a copy cannot tell: the path is read relative to the current folder, right only there
        monkeypatch.chdir(work)
        assert store.update_imported_model(src).model_id == first.model_id
    assert cat.read_registry(models_dir)["custom"][first.model_id]["imported_from"] == str(src)  # now absolute
    monkeypatch.chdir(tmp_path)
    assert store.update_imported_model(src).model_id == first.model_id


def test_a_trained_models_metadata_goes_and_leaves_with_it(models_dir, tmp_path, tiny_state_dicts):
    for name in ("mine", "registry"):
        save(tiny_state_dicts["adm"] if name == "mine" else tiny_state_dicts["ddpm"], tmp_path / f"{name}.pt", "plain")
        (tmp_path / f"{name}.json").write_text('{"image_size": 32}')
    mine = store.import_model_file(tmp_path / "mine.pt")
    assert (models_dir / "mine.json").read_text() == '{"image_size": 32}' and cat.get_entry("mine").image_size == 32
    registry = store.import_model_file(tmp_path / "registry.pt")  # its metadata must not replace the registry
    assert set(cat.all_entries(models_dir)) >= {"mine", registry.model_id}
    store.remove_model("mine")
    assert not (models_dir / "mine.json").exists() and not mine.path.exists()


def test_the_installed_model_of_a_file_is_found_by_place_or_bytes(models_dir, tmp_path, tiny_state_dicts):
    src = save(tiny_state_dicts["ddpm"], tmp_path / "faces_v1.pt", "plain")
    assert store.installed_model_of(src) is None
    copied = store.import_model_file(src)
    linked = store.import_model_file(save(tiny_state_dicts["adm"], tmp_path / "linked.pt", "plain"), mode="symlink")
    other = tmp_path / "same_size.pt"
    other.write_bytes(bytes(src.stat().st_size))
    found = [getattr(store.installed_model_of(path), "id", None)
             for path in (src, copied.path, tmp_path / "linked.pt", linked.path, other)]
    assert found == ["faces_v1", "faces_v1", "linked", "linked", None]


def test_explicit_id_must_be_free_and_installed_catalog_files_are_never_replaced(models_dir, tmp_path,
                                                                                  tiny_state_dicts):
    official = store.import_model_file(save(tiny_state_dicts["ddpm"], tmp_path / "faces.ckpt", "plain"))
    assert official.matched_catalog and official.model_id == "faces-tiny"
    (tmp_path / "mine").mkdir()
    tuned = {k: v + 1 for k, v in tiny_state_dicts["ddpm"].items()}  # same name, size and family
    other = store.import_model_file(save(tuned, tmp_path / "mine" / "faces.ckpt", "plain"))
    assert not other.matched_catalog and other.path != official.path
    assert (models_dir / "faces.ckpt").read_bytes() == (tmp_path / "faces.ckpt").read_bytes()
    with pytest.raises(EngineError, match="'faces-tiny' is already used"):
        store.import_model_file(save(tiny_state_dicts["adm"], tmp_path / "x.pt", "plain"), model_id="faces-tiny")


class RunsCode:
    """A pickle payload that would create a marker file if it were ever unpickled."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_bad_files_are_rejected_and_nothing_changes(models_dir, tmp_path, tiny_state_dicts):
    store.import_model_file(save(tiny_state_dicts["ddpm"], tmp_path / "ok.pt", "plain"))
    before = snapshot(models_dir)
    text = tmp_path / "notes.pt"
    text.write_text("these are not weights\n")
    good = save(tiny_state_dicts["adm"], tmp_path / "full.pt", "plain")
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    marker = tmp_path / "code_ran"
    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps({"input_blocks.0.0.weight": RunsCode(marker)}))
    foreign = tmp_path / "resnet.pt"
    torch.save({"layer1.0.conv1.weight": torch.zeros(4, 3, 3, 3), "fc.weight": torch.zeros(10, 4)}, foreign)
    sd = dict(tiny_state_dicts["adm"])
    sd.pop(next(k for k in sd if k.startswith("output_blocks.0")))  # almost an ADM, but not quite
    broken_adm = save(sd, tmp_path / "broken_adm.pt", "plain")
    for bad in (text, truncated, evil, foreign, broken_adm):
        with pytest.raises(ModelFileError) as info:
            store.import_model_file(bad)
        assert bad.name in str(info.value) or "not a supported" in str(info.value)
        assert snapshot(models_dir) == before, bad.name
    assert not marker.exists()  # the pickle's code never ran
    with pytest.raises(ModelFileError, match="model file not found: .*absent.pt"):
        store.import_model_file(tmp_path / "absent.pt")
    with pytest.raises(ModelFileError, match="is a folder, not a model file"):
        store.import_model_file(tmp_path)


def test_a_file_with_wrong_tensors_is_named_in_the_message(models_dir, tmp_path, tiny_state_dicts):
    shapes = dict(tiny_state_dicts["adm"], **{"out.0.weight": torch.zeros(5)})
    keys = {k: v for k, v in tiny_state_dicts["adm"].items() if k != "out.2.weight"}
    for name, sd in (("shapes.pt", shapes), ("keys.pt", keys)):
        with pytest.raises(ModelFileError) as info:
            store.import_model_file(save(sd, tmp_path / name, "plain"))
        assert str(info.value).startswith(f"{name} looks like an ADM model but its tensors do not fit"), name
    assert snapshot(models_dir) == {}


def test_a_cancelled_import_changes_nothing(models_dir, tmp_path, tiny_state_dicts):
    store.import_model_file(save(tiny_state_dicts["ddpm"], tmp_path / "ok.pt", "plain"))
    before = snapshot(models_dir)
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        store.import_model_file(save(tiny_state_dicts["adm"], tmp_path / "mine.pt", "plain"), cancel=cancel)
    assert snapshot(models_dir) == before


def test_verify_records_then_detects_damage_and_remove_forgets(models_dir, tmp_path, tiny_state_dicts):
    res = store.import_model_file(save(tiny_state_dicts["ddpm"], tmp_path / "m.pt", "plain"))
    assert [r.status for r in store.verify_models([res.model_id])] == ["ok"]
    data = bytearray(res.path.read_bytes())
    data[100] ^= 0xFF  # same size, one flipped byte: only a re-hash finds it
    res.path.write_bytes(bytes(data))
    assert cat.model_status(res.model_id) == cat.INSTALLED
    result = store.verify_models()
    assert [(r.model_id, r.status) for r in result] == [(res.model_id, "mismatch")]
    assert cat.model_status(res.model_id) == cat.CORRUPT
    with pytest.raises(ModelFileError, match="damaged"):
        cat.resolve_model_file(res.model_id)
    removed = store.remove_model(res.model_id)
    assert removed == [res.path] and not res.path.exists()
    registry = cat.read_registry(models_dir)
    assert registry["hashes"] == {} and registry["custom"] == {} and registry["damaged"] == {}
    with pytest.raises(ModelFileError, match="unknown model"):
        store.remove_model(res.model_id)


@pytest.fixture
def file_server(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(QuietFileHandler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_download_records_hash_and_repair_redownloads(models_dir, tmp_path, file_server, monkeypatch):
    root, base = file_server
    payload = bytes(range(256)) * 400
    (root / "gen.pt").write_bytes(payload)
    catalog = json.loads(Path(cat.catalog_path()).read_text())
    catalog["models"].append({"id": "gen", "display_name": "Gen", "purpose": "general photos",
                              "file_name": "gen.pt", "architecture": "adm", "urls": [f"{base}/gen.pt"],
                              "sha256": None, "hash_policy": "record-on-first-download"})
    Path(cat.catalog_path()).write_text(json.dumps(catalog))
    path = store.download_model("gen")
    recorded = cat.read_registry(models_dir)["hashes"]["gen.pt"]
    assert recorded["sha256"] == hashlib.sha256(payload).hexdigest() and recorded["size"] == len(payload)
    path.write_bytes(payload[:-1] + b"\0")  # damaged in place
    results = store.repair_models(["gen"])
    assert [(r.model_id, r.status) for r in results] == [("gen", "repaired")]
    assert path.read_bytes() == payload and cat.model_status("gen") == cat.INSTALLED
    # upstream now serves other bytes: the recorded hash protects the user
    path.unlink()
    (root / "gen.pt").write_bytes(payload[::-1])
    with pytest.raises(EngineError, match="sha256"):
        store.download_model("gen")
    assert not path.exists()
    # a model without a URL explains where to get it
    with pytest.raises(EngineError, match="no direct download address"):
        store.download_model("faces-tiny")
    # ...unless a mirror has it
    (root / "faces.ckpt").write_bytes(b"face bytes")
    assert store.download_model("faces-tiny", mirror=base + "/").read_bytes() == b"face bytes"
