"""Our networks reproduce the official state-dict layouts key for key (built on the meta device),
detection recovers the official configurations from the shapes, and the embeddings follow
each family's convention."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from engine.errors import ModelFileError
from engine.models import ModelConfig, build_model, detect_config
from engine.models.adm_blocks import adm_timestep_embedding
from engine.models.ddpm_unet import ddpm_timestep_embedding

OFFICIAL_JSON = Path(__file__).resolve().parent / "data" / "official_state_dicts.json"

ADM_256 = dict(model_channels=256, channel_mult=(1, 1, 2, 2, 4, 4), num_res_blocks=2, attention_levels=(3, 4, 5),
               image_size=256, num_head_channels=64, use_scale_shift_norm=True, resblock_updown=True)
OFFICIAL = {
    # name: (config, parameter count from the reference report, in millions, 2 decimals)
    "256x256_diffusion_uncond": (ModelConfig(family="adm", out_channels=6, **ADM_256), 552.81),
    "256x256_diffusion": (ModelConfig(family="adm", out_channels=6, num_classes=1000, **ADM_256), 553.84),
    "256x256_classifier": (ModelConfig(family="adm-classifier", out_channels=1000,
                                       **{**ADM_256, "model_channels": 128}), 54.10),
    "celeba_hq.ckpt": (ModelConfig(family="ddpm", model_channels=128, channel_mult=(1, 1, 2, 2, 4, 4),
                                   num_res_blocks=2, attention_levels=(4,), out_channels=3, num_head_channels=0,
                                   use_scale_shift_norm=False, resblock_updown=False, conv_resample=True), 113.67),
}


@pytest.fixture(scope="module")
def official_shapes() -> dict:
    with open(OFFICIAL_JSON) as f:
        return json.load(f)


def _meta_state_dict(shapes: dict) -> dict:
    return {name: torch.empty(shape, device="meta") for name, shape in shapes.items()}


@pytest.mark.parametrize("name", sorted(OFFICIAL))
def test_official_layout_key_for_key(name, official_shapes):
    config, _ = OFFICIAL[name]
    with torch.device("meta"):
        model = build_model(config)
    ours = {k: list(v.shape) for k, v in model.state_dict().items()}
    theirs = official_shapes[name]
    assert sorted(set(theirs) - set(ours)) == [], "keys missing from our model"
    assert sorted(set(ours) - set(theirs)) == [], "keys our model has that the checkpoint lacks"
    wrong = {k: (ours[k], theirs[k]) for k in theirs if ours[k] != theirs[k]}
    assert wrong == {}
    assert list(ours) == list(theirs), "registration order differs"


@pytest.mark.parametrize("name", sorted(OFFICIAL))
def test_official_parameter_counts(name):
    config, millions = OFFICIAL[name]
    with torch.device("meta"):
        params = sum(p.numel() for p in build_model(config).parameters())
    assert round(params / 1e6, 2) == millions


@pytest.mark.parametrize("name", sorted(OFFICIAL))
def test_detect_config_finds_official_configuration(name, official_shapes):
    config, _ = OFFICIAL[name]
    detected = detect_config(_meta_state_dict(official_shapes[name]))
    assert detected == config
    assert detected.learn_sigma == (config.family == "adm")
    assert detected.class_cond == (name == "256x256_diffusion")


def test_official_attention_resolutions_match_the_flags():
    adm, _ = OFFICIAL["256x256_diffusion_uncond"]
    ddpm, _ = OFFICIAL["celeba_hq.ckpt"]
    assert adm.attention_resolutions() == (32, 16, 8)  # --attention_resolutions 32,16,8
    assert ddpm.attention_resolutions() == (16,)  # attn_resolutions [16]


ADM_VARIANTS = [
    dict(use_scale_shift_norm=False, resblock_updown=False, conv_resample=True),
    dict(use_scale_shift_norm=True, resblock_updown=False, conv_resample=False),
    dict(use_scale_shift_norm=True, resblock_updown=True, out_channels=3),
    dict(num_res_blocks=3, attention_levels=(2,), channel_mult=(1, 2, 3, 4)),
    dict(num_res_blocks=1, attention_levels=(), num_classes=7),
]


@pytest.mark.parametrize("changes", ADM_VARIANTS, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()))
@pytest.mark.parametrize("family", ["adm", "adm-classifier"])
def test_detect_config_recovers_variants(family, changes):
    if family == "adm-classifier":
        changes = {k: v for k, v in changes.items() if k != "num_classes"}
        changes.setdefault("out_channels", 10)
        changes["image_size"] = 64 if len(changes.get("channel_mult", (1, 2, 4))) == 3 else 128
    base = dict(family=family, model_channels=64, channel_mult=(1, 2, 4), num_res_blocks=2,
                attention_levels=(1, 2), out_channels=6, num_head_channels=64)
    config = ModelConfig(**{**base, **changes})
    with torch.device("meta"):
        sd = build_model(config).state_dict()
    if family == "adm-classifier" and config.resblock_updown and not config.attention_levels:
        # documented limit: nothing in the shapes separates res blocks from down blocks then
        with pytest.raises(ModelFileError, match="number of res blocks"):
            detect_config(sd)
        return
    assert detect_config(sd) == config


@pytest.mark.parametrize("changes", [dict(), dict(conv_resample=False), dict(attention_levels=(0, 2), num_res_blocks=3)])
def test_detect_config_recovers_ddpm_variants(changes):
    base = dict(family="ddpm", model_channels=32, channel_mult=(1, 2, 2), num_res_blocks=2, attention_levels=(1,),
                out_channels=3, num_head_channels=0, use_scale_shift_norm=False, resblock_updown=False)
    config = ModelConfig(**{**base, **changes})
    with torch.device("meta"):
        sd = build_model(config).state_dict()
    assert detect_config(sd) == config


def test_adm_embedding_is_cos_then_sin_over_half():
    dim, half = 256, 128
    emb = adm_timestep_embedding(torch.tensor([0, 999]), dim)
    assert emb.shape == (2, dim) and emb.dtype == torch.float32
    assert torch.equal(emb[0, :half], torch.ones(half)) and torch.equal(emb[0, half:], torch.zeros(half))
    # the last frequency is 10000^(-(half-1)/half) with the 1/half denominator
    freq = math.exp(-math.log(10000.0) * (half - 1) / half)
    assert emb[1, half - 1].item() == pytest.approx(math.cos(999 * freq), abs=1e-5)
    assert emb[1, -1].item() == pytest.approx(math.sin(999 * freq), abs=1e-5)
    assert emb[1, 0].item() == pytest.approx(math.cos(999.0), abs=1e-4)  # original t, not rescaled


def test_ddpm_embedding_is_sin_then_cos_over_half_minus_one():
    dim, half = 128, 64
    emb = ddpm_timestep_embedding(torch.tensor([0, 999]), dim)
    assert torch.equal(emb[0, :half], torch.zeros(half)) and torch.equal(emb[0, half:], torch.ones(half))
    freq = math.exp(-math.log(10000.0) * (half - 1) / (half - 1))  # = 1e-4 exactly
    assert emb[1, half - 1].item() == pytest.approx(math.sin(999 * freq), abs=1e-6)
    assert emb[1, -1].item() == pytest.approx(math.cos(999 * freq), abs=1e-6)
    assert emb[1, 0].item() == pytest.approx(math.sin(999.0), abs=1e-4)
