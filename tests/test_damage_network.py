"""The scratch-detection network of Bringing Old Photos Back to Life: official names and shapes,
its training checkpoint read safely, tiled equal to untiled, wrong files refused clearly. Random
weights only: no test here says anything about how well it finds damage."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.detection import detect, detect_damage
from engine.detection.detect import network_scores, network_tile_spec, receptive_radius
from engine.detection.network import ScratchNetConfig, ScratchUNet
from engine.errors import ModelFileError
from engine.models import kinds, store
from engine.models.tiny import build_tiny, tiny_adm_config

OFFICIAL = json.loads((Path(__file__).parent / "data" / "bopb_scratch_state_dict.json").read_text())["tensors"]
TINY = ScratchNetConfig(depth=2, conv_num=1, wf=2)


def random_network(config: ScratchNetConfig, seed: int = 0) -> ScratchUNet:
    torch.manual_seed(seed)
    net = ScratchUNet(config)
    for module in net.modules():  # trained-looking batch-norm statistics
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 1.5)
    return net.eval()


def training_checkpoint(path: Path, net: ScratchUNet, counters: bool = True) -> Path:
    """As the official FT_Epoch_latest.pt: the network under model_state, beside training state."""
    state = {k: v for k, v in net.state_dict().items() if counters or not k.endswith("num_batches_tracked")}
    adam = {i: {"step": torch.tensor(10.0), "exp_avg": torch.zeros(3)} for i in range(2)}
    optimizer = {"state": adam, "param_groups": [{"lr": 1e-4, "params": [0, 1]}]}
    torch.save({"model_state": state, "optimizer_state": optimizer, "epoch_id": 40,
                "scheduler_state": {"last_epoch": 40}}, path)
    return path


def run(generator):
    try:
        while True:
            next(generator)
    except StopIteration as stop:
        return stop.value


def test_the_official_configuration_has_the_official_names_and_shapes():
    with torch.device("meta"):
        ours = {k: list(v.shape) for k, v in ScratchUNet().state_dict().items()}
    assert ours == OFFICIAL
    assert sum(np.prod(s) for k, s in OFFICIAL.items() if "running" not in k and "filt" not in k
               and "num_batches" not in k) == 37_626_177  # ~150 MB of fp32 weights


def test_the_official_training_checkpoint_is_read_safely_and_recognised(tmp_path, monkeypatch):
    path = training_checkpoint(tmp_path / "FT_Epoch_latest.pt", random_network(ScratchNetConfig()))
    loads = []
    original = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **k: loads.append(k.get("weights_only")) or original(*a, **k))
    kind = kinds.inspect_file(path)
    assert loads == [True]
    assert (kind.family, kind.role, kind.config) == ("bopb-scratch", kinds.DETECTOR, ScratchNetConfig())
    assert "Bringing Old Photos Back to Life" in kind.summary and kind.licence.startswith("MIT")


def test_a_file_without_batch_counters_loads_the_same_weights(tmp_path):
    net = random_network(TINY, seed=3)
    path = training_checkpoint(tmp_path / "old.pt", net, counters=False)
    photo = np.random.default_rng(0).random((48, 80, 3)).astype(np.float32)
    via_file = detect_damage(photo, str(path), device="cpu").scores
    direct = run(network_scores(photo, net, device="cpu"))
    assert via_file.shape == photo.shape[:2]
    assert np.abs(via_file.astype(int) - np.clip(
        __import__("cv2").resize(direct, (80, 48), interpolation=1) * 255 + 0.5, 0, 255).astype(int)).max() <= 1


def test_tiled_equals_untiled():
    net = random_network(TINY, seed=1)
    photo = np.random.default_rng(1).random((100, 260, 3)).astype(np.float32)
    whole = run(network_scores(photo, net, device="cpu", short_side=100, tile=1024))
    spec = network_tile_spec(TINY, tile=128)
    assert spec.margin >= receptive_radius(TINY)
    events = []
    generator = network_scores(photo, net, device="cpu", short_side=100, tile=128)
    try:
        while True:
            events.append(next(generator))
    except StopIteration as stop:
        tiled = stop.value
    plans = [e for e in events if type(e).__name__ == "PlanEvent"]
    assert len(plans[0].boxes) > 3 and plans[0].stage == "detect"
    assert np.abs(tiled - whole).max() < 1e-5


def test_the_network_sees_gray_at_its_working_size(tmp_path):
    """Colour makes no difference (gray input), and the photo is seen with a 256 px shorter side."""
    net = random_network(TINY, seed=2)
    seen = []
    forward = net.forward
    net.forward = lambda x: seen.append(tuple(x.shape)) or forward(x)
    rng = np.random.default_rng(2)
    gray = rng.random((300, 450)).astype(np.float32)
    colour = np.repeat(gray[..., None], 3, axis=2)
    a, b = run(network_scores(colour, net, device="cpu")), run(network_scores(gray[..., None], net, device="cpu"))
    assert np.allclose(a, b, atol=1e-5) and a.shape == (256, 384) and seen[0][1] == 1


def test_wrong_files_chosen_as_the_detector_are_refused_clearly(tmp_path):
    adm = tmp_path / "prior.pt"
    torch.save(build_tiny(tiny_adm_config()).state_dict(), adm)
    photo = np.zeros((32, 32, 3), np.float32)
    with pytest.raises(ModelFileError, match=r"prior.pt is a diffusion model .*not a damage detector"):
        run(detect(photo, str(adm)))
    broken = tmp_path / "FT_Epoch_latest.pt"
    state = random_network(TINY).state_dict()
    state.pop("last.1.weight")
    state["first.1.weight"] = torch.zeros(4, 1, 5, 5)
    torch.save({"model_state": state}, broken)
    with pytest.raises(ModelFileError, match="not a model the app can use|do not fit"):
        run(detect(photo, str(broken)))
    image = tmp_path / "photo.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    with pytest.raises(ModelFileError, match="photo.png is a PNG image, not a model checkpoint"):
        run(detect(photo, str(image)))
    with pytest.raises(ModelFileError, match="unknown model 'no-such-detector'"):
        run(detect(photo, "no-such-detector"))


def test_the_checkpoint_imports_as_a_detector(tmp_path, monkeypatch):
    monkeypatch.setenv("RESTORER_MODELS_DIR", str(tmp_path / "models"))
    path = training_checkpoint(tmp_path / "FT_Epoch_latest.pt", random_network(TINY))
    result = store.import_model_file(path, models_dir=tmp_path / "models")
    assert result.architecture == "bopb-scratch" and result.kind.role == kinds.DETECTOR
    photo = np.random.default_rng(3).random((40, 60, 3)).astype(np.float32)
    scores = detect_damage(photo, result.model_id, device="cpu")
    assert scores.scores.shape == (40, 60) and scores.detector == result.model_id
