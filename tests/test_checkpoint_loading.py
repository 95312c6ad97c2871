"""Checkpoints round-trip through every official layout, and files that are not supported models
are refused with ModelFileError (without running any code they contain)."""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from engine.errors import ModelFileError
from engine.models import load_denoiser, load_model, load_state_dict, model_info
from engine.models.tiny import build_tiny, tiny_adm_config, tiny_classifier_config, tiny_ddpm_config

CONFIGS = {"adm": tiny_adm_config, "adm-cc": lambda: tiny_adm_config(class_cond=True),
           "ddpm": tiny_ddpm_config, "classifier": tiny_classifier_config}

def _save(sd: dict, layout: str, folder: Path) -> Path:
    if layout == "safetensors":
        path = folder / "model.safetensors"
        save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
        return path
    wrapped = {
        "plain": sd,
        "state_dict": {"state_dict": sd, "epoch": 3},
        "module": {f"module.{k}": v for k, v in sd.items()},
        "ema-model": {"ema": {f"model.{k}": v for k, v in sd.items()}, "step": 10},
    }[layout]
    path = folder / ("model.ckpt" if layout == "state_dict" else "model.pt")
    torch.save(wrapped, path)
    return path


def _forward(model, config, x, t):
    if config.class_cond:
        return model(x, t, torch.tensor([1, 2]))
    return model(x, t)


@pytest.mark.parametrize("layout", ["plain", "state_dict", "module", "ema-model", "safetensors"])
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_round_trip_through_detection(name, layout, tmp_path):
    config = CONFIGS[name]()
    original = build_tiny(config, seed=7)
    path = _save(original.state_dict(), layout, tmp_path)
    loaded, detected = load_model(path, device=torch.device("cpu"))
    assert detected == config
    assert not loaded.training
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([3, 777])
    with torch.no_grad():
        assert torch.equal(_forward(loaded, config, x, t), _forward(original, config, x, t))


def test_load_denoiser_from_path_matches_network(tmp_path):
    config = tiny_ddpm_config()
    net = build_tiny(config, seed=3)
    path = _save(net.state_dict(), "plain", tmp_path)
    denoiser = load_denoiser(str(path), device=torch.device("cpu"))
    assert denoiser.is_random is False and denoiser.image_size == 256
    x, t = torch.randn(1, 3, 32, 32), torch.tensor([500])
    with torch.no_grad():
        assert torch.equal(denoiser(x, t), net(x, t))


def test_model_info_reads_shapes_from_a_file(tmp_path):
    config = tiny_adm_config()
    net = build_tiny(config)
    for layout in ("plain", "safetensors"):
        info = model_info(str(_save(net.state_dict(), layout, tmp_path)))
        assert info["family"] == "adm" and info["learn_sigma"] and not info["is_random"]
        assert info["params"] == sum(p.numel() for p in net.parameters())
    assert model_info("test-tiny")["is_random"] is True
    assert model_info("test-tiny-ddpm")["family"] == "ddpm"


@pytest.mark.parametrize("layout, name", [("safetensors", "renamed.pt"), ("plain", "renamed.safetensors"),
                                          ("state_dict", "renamed.ckpt.safetensors")])
def test_a_renamed_checkpoint_loads_by_its_content(layout, name, tmp_path):
    """What a file is comes from its first bytes: a safetensors file renamed .pt, or a PyTorch file
    renamed .safetensors, loads as what it is (and model_info reads its shapes the same way)."""
    config = tiny_ddpm_config()
    net = build_tiny(config, seed=5)
    path = _save(net.state_dict(), layout, tmp_path).rename(tmp_path / name)
    loaded, detected = load_model(path)
    assert detected == config
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in net.state_dict().items())
    assert model_info(str(path))["family"] == "ddpm"


def test_a_folder_is_called_a_folder(tmp_path):
    folder = tmp_path / "checkpoints.pt"
    folder.mkdir()
    with pytest.raises(ModelFileError, match="checkpoints.pt is a folder, not a model file"):
        load_state_dict(folder)


# ---------------------------------------------------------------- refusals


def test_text_file_is_refused(tmp_path):
    path = tmp_path / "notes.pt"
    path.write_text("this is not a checkpoint\n" * 20)
    with pytest.raises(ModelFileError, match="notes.pt"):
        load_model(path)


@pytest.mark.parametrize("kind, expected", [("png", "is a PNG image"), ("text", "is a text file"),
                                            ("empty", "is empty (0 bytes)")])
def test_a_file_of_another_kind_is_called_what_it_is_not_code(kind, expected, tmp_path):
    from PIL import Image

    path = tmp_path / "picked by mistake.pt"
    if kind == "png":
        Image.new("RGB", (8, 8)).save(path, "PNG")
    else:
        path.write_text("model notes\n" if kind == "text" else "")
    with pytest.raises(ModelFileError) as info:
        load_model(path)
    message = str(info.value)
    assert message.startswith(f"picked by mistake.pt {expected}, not a model checkpoint") and "code" not in message


def test_truncated_checkpoint_is_refused(tmp_path):
    full = _save(build_tiny(tiny_ddpm_config()).state_dict(), "plain", tmp_path)
    data = full.read_bytes()
    cut = tmp_path / "cut.pt"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match="truncated") as info:
        load_model(cut)
    detail = str(info.value).split(" (", 1)[1].split("). It may be truncated", 1)[0]
    assert detail.endswith((".", "…")), f"PyTorch's explanation is cut at a sentence: {detail!r}"


def test_truncated_safetensors_is_refused(tmp_path):
    full = _save(build_tiny(tiny_ddpm_config()).state_dict(), "safetensors", tmp_path)
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(full.read_bytes()[:1000])
    with pytest.raises(ModelFileError):
        load_model(cut)


class _RunsCode:
    """Unpickling this would create a marker file: weights_only must refuse before that."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.makedirs, (self.marker,))


@pytest.mark.parametrize("container", ["torch-zip", "raw-pickle"])
def test_pickle_with_code_is_refused_and_not_run(container, tmp_path):
    marker = tmp_path / "code_was_run"
    path = tmp_path / "evil.pt"
    payload = {"input_blocks.0.0.weight": torch.zeros(2), "trap": _RunsCode(str(marker))}
    if container == "torch-zip":
        torch.save(payload, path)
        assert zipfile.is_zipfile(path)
    else:
        path.write_bytes(pickle.dumps(payload))
    with pytest.raises(ModelFileError, match="contains code or Python objects") as info:
        load_model(path)
    assert not marker.exists()
    message = str(info.value)
    assert "not loaded" in message and "weights_only" not in message and "Re-running" not in message


def test_training_state_with_code_is_refused_with_the_same_message(tmp_path):
    from engine.training.checkpoint_io import STATE_FILE, load_train_state, train_state_dir

    marker = tmp_path / "code_was_run"
    state = train_state_dir(tmp_path / "m.pt") / STATE_FILE
    state.parent.mkdir(parents=True)
    torch.save({"step": 3, "trap": _RunsCode(str(marker))}, state)
    with pytest.raises(ModelFileError, match="cannot resume: state.pt contains code") as info:
        load_train_state(tmp_path / "m.pt")
    assert not marker.exists() and "weights_only" not in str(info.value)


def test_random_tensor_dict_is_refused(tmp_path):
    path = tmp_path / "random.pt"
    torch.save({f"layer{i}.weight": torch.randn(4, 4) for i in range(5)}, path)
    with pytest.raises(ModelFileError, match="input_blocks.0.0.weight") as info:
        load_model(path)
    assert "conv_in.weight" in str(info.value)


def test_other_architecture_is_refused(tmp_path):
    other = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(8, 2))
    path = tmp_path / "resnet.pth"
    torch.save(other.state_dict(), path)
    with pytest.raises(ModelFileError, match="not a supported diffusion checkpoint"):
        load_model(path)


def test_adm_lookalike_with_missing_tensors_is_refused(tmp_path):
    sd = build_tiny(tiny_adm_config()).state_dict()
    del sd["output_blocks.0.0.in_layers.2.weight"]
    path = tmp_path / "broken.pt"
    torch.save(sd, path)
    with pytest.raises(ModelFileError, match="missing"):
        load_model(path)


def test_adm_lookalike_with_wrong_shapes_is_refused(tmp_path):
    sd = build_tiny(tiny_adm_config()).state_dict()
    sd["middle_block.1.qkv.weight"] = torch.zeros(5, 128, 1)
    path = tmp_path / "wrong.safetensors"
    save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    with pytest.raises(ModelFileError):
        load_model(path)


def test_non_dict_and_missing_files_are_refused(tmp_path):
    path = tmp_path / "list.pt"
    torch.save([torch.zeros(3)], path)
    with pytest.raises(ModelFileError, match="no tensor dict"):
        load_state_dict(path)
    with pytest.raises(ModelFileError, match="not found"):
        load_state_dict(tmp_path / "absent.pt")


def test_unknown_model_id_is_refused():
    with pytest.raises(ModelFileError):
        load_denoiser("no-such-model-id-xyz", device=torch.device("cpu"))


def test_catalog_ids_resolve_for_denoiser_and_guidance(tmp_path, monkeypatch):
    """Real (non-tiny) ids go through the catalog; the classifier is the catalog's adm-256-classifier."""
    import engine.models as models

    folder_a, folder_b = tmp_path / "a", tmp_path / "b"
    folder_a.mkdir()
    folder_b.mkdir()
    unet_config, clf_config = tiny_adm_config(class_cond=True), tiny_classifier_config()
    files = {"my-cc-model": _save(build_tiny(unet_config).state_dict(), "plain", folder_a),
             "adm-256-classifier": _save(build_tiny(clf_config).state_dict(), "safetensors", folder_b)}
    asked = []

    def fake_resolve(model_id):
        asked.append(model_id)
        if model_id not in files:
            raise ModelFileError(f"unknown model id {model_id!r}")
        return files[model_id]

    monkeypatch.setattr(models, "_resolve", fake_resolve)
    denoiser = models.load_denoiser("my-cc-model", device=torch.device("cpu"), class_label=5)
    assert denoiser.is_random is False and denoiser.config == unet_config
    guidance = models.load_guidance("my-cc-model", class_label=5, scale=1.0, device=torch.device("cpu"))
    assert asked == ["my-cc-model", "adm-256-classifier"]
    x = torch.randn(1, 3, 64, 64)
    assert guidance(x, torch.tensor([100])).shape == x.shape
    with pytest.raises(ModelFileError, match="classifier, not a diffusion model"):
        models.load_denoiser("adm-256-classifier", device=torch.device("cpu"))


def test_guidance_uses_the_classifier_the_request_names(tmp_path):
    """An imported classifier (an id or a file) guides when the request names it; a file that is
    not a classifier is refused as such."""
    import numpy as np

    from engine.pipeline import run_to_completion
    from engine.request import RestoreRequest, Tasks

    (tmp_path / "unet").mkdir()
    (tmp_path / "clf").mkdir()
    unet = _save(build_tiny(tiny_adm_config(class_cond=True)).state_dict(), "plain", tmp_path / "unet")
    classifier = _save(build_tiny(tiny_classifier_config()).state_dict(), "safetensors", tmp_path / "clf")
    request = RestoreRequest(image=np.full((32, 32, 3), 0.5, np.float32), tasks=Tasks(colorize=True), model=str(unet),
                             class_label=3, guidance_scale=1.0, classifier=str(classifier), steps=1, window=32,
                             overlap=0, device="cpu", precision="fp32")
    guided = run_to_completion(request).result
    assert not np.array_equal(guided, run_to_completion(request.replace(guidance_scale=0.0)).result)
    with pytest.raises(ModelFileError, match="model.pt is an ADM model, not an ADM classifier"):
        run_to_completion(request.replace(classifier=str(unet)))
