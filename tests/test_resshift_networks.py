"""ResShift's networks (engine.resshift): the official layouts key for key, the official shifted-window
masks at any size, and safe loading of files as the public code writes them, with clear refusals."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from engine.errors import ModelFileError
from engine.models import kinds
from engine.models.tiny import build_tiny, tiny_adm_config
from engine.resshift import files
from engine.resshift.autoencoder import AutoencoderConfig, VQAutoencoder
from engine.resshift.swin import MASKED, WindowAttention, relative_position_index, shifted_window_mask
from engine.resshift.unet import SwinUNet, SwinUNetConfig
from tests.resshift_helpers import official_buffers, tiny_networks, write_autoencoder, write_unet

DATA = Path(__file__).parent / "data"
OFFICIAL = json.loads((DATA / "resshift_official_state_dicts.json").read_text())


def _meta(shapes: dict) -> dict:
    return {k: torch.empty(v, device="meta") for k, v in shapes.items()}


def _ours(net) -> dict:
    return {k: list(v.shape) for k, v in net.state_dict().items()}


def test_the_official_configurations_have_the_official_tensors_key_for_key():
    with torch.device("meta"):
        unet, autoencoder = SwinUNet(SwinUNetConfig()), VQAutoencoder(AutoencoderConfig())
    official = OFFICIAL["resshift_realsrx4_s4_v3"]
    recomputed = {k for k in official if k.endswith(files.RECOMPUTED_BUFFERS)}
    assert _ours(unet) == {k: v for k, v in official.items() if k not in recomputed}
    # exactly the Swin buffers are left to be recomputed: 18 position indices and the 6 masks of shifted blocks
    assert sum(k.endswith(".relative_position_index") for k in recomputed) == 18
    assert sum(k.endswith(".attn_mask") for k in recomputed) == 6
    assert _ours(autoencoder) == OFFICIAL["autoencoder_vq_f4"]


def test_the_configuration_is_read_from_the_official_shapes():
    assert files.unet_config(_meta(OFFICIAL["resshift_realsrx4_s4_v3"])) == SwinUNetConfig()
    assert files.autoencoder_config(_meta(OFFICIAL["autoencoder_vq_f4"])) == AutoencoderConfig()
    assert SwinUNetConfig().size_multiple == 64  # the public code pads photos to multiples of 64 too
    kind = files.inspect({"state_dict": _meta(OFFICIAL["resshift_realsrx4_s4_v3"])}, "v3.pth")
    assert (kind.family, kind.role, kind.scale, kind.licence) == ("resshift-unet", kinds.UPSCALER, 4, files.LICENCE)
    kind = files.inspect(_meta(OFFICIAL["autoencoder_vq_f4"]), "vq.pth")
    assert (kind.family, kind.role, kind.config.factor) == ("resshift-vq-f4", kinds.AUTOENCODER, 4)


def _official_mask(case: dict) -> np.ndarray:
    bits = np.unpackbits(np.frombuffer(bytes.fromhex(case["masked_bits_hex"]), np.uint8))
    return bits[: math.prod(case["shape"])].reshape(case["shape"]).astype(bool)


@pytest.mark.parametrize("case", json.loads((DATA / "resshift_official_masks.json").read_text())["cases"],
                         ids=lambda c: f"{c['height']}x{c['width']}w{c['window']}")
def test_masks_at_any_size_are_the_public_codes(case):
    ours = shifted_window_mask(case["height"], case["width"], case["window"], case["shift"])
    assert list(ours.shape) == case["shape"]
    assert set(ours.unique().tolist()) <= {0.0, MASKED}
    assert np.array_equal(ours.numpy() != 0, _official_mask(case))


def test_the_official_mask_is_not_the_textbook_one_and_a_shift_of_zero_masks_nothing():
    h, w, win, s = 16, 24, 8, 4
    labels = np.zeros((h, w))
    for i, rows in enumerate((slice(0, -win), slice(-win, -s), slice(-s, None))):
        for j, cols in enumerate((slice(0, -win), slice(-win, -s), slice(-s, None))):
            labels[rows, cols] = 3 * i + j
    tokens = labels.reshape(h // win, win, w // win, win).transpose(0, 2, 1, 3).reshape(-1, win * win)
    textbook = tokens[:, None, :] != tokens[:, :, None]
    assert not np.array_equal(shifted_window_mask(h, w, win, s).numpy() != 0, textbook)
    assert not shifted_window_mask(h, w, win, 0).any()


def test_window_attention_with_a_mask_is_the_explicit_computation():
    torch.manual_seed(0)
    attn = WindowAttention(dim=8, window=4, heads=2)
    torch.nn.init.normal_(attn.relative_position_bias_table)
    mask = shifted_window_mask(8, 12, 4, 2)  # 6 windows
    x = torch.randn(2 * 6, 16, 8)  # two images
    q, k, v = attn.qkv(x).reshape(12, 16, 3, 2, 4).permute(2, 0, 3, 1, 4)
    bias = attn.relative_position_bias_table[relative_position_index(4).view(-1)].view(16, 16, 2).permute(2, 0, 1)
    logits = (q * 4 ** -0.5) @ k.transpose(-2, -1) + bias + mask.repeat(2, 1, 1)[:, None]
    expected = attn.proj((F.softmax(logits, -1) @ v).transpose(1, 2).reshape(12, 16, 8))
    assert torch.allclose(attn(x, mask), expected, atol=1e-6)


def test_relative_position_index_points_each_pair_to_its_offset():
    index = relative_position_index(3)  # 9 tokens; the table has (2·3−1)² = 25 rows
    assert index.shape == (9, 9) and index.min() == 0 and index.max() == 24
    assert index[4, 4] == 12  # a token with itself: the middle row
    assert index[0, 8] == 0 and index[8, 0] == 24  # offsets (−2, −2) and (+2, +2)... as seen from token i
    assert len(set(index.diagonal().tolist())) == 1


@pytest.mark.parametrize("prefix, wrapper", [("module.", True), ("_orig_mod.", False), ("module._orig_mod.", True),
                                             ("", False)])
def test_official_style_files_load_exactly(tmp_path, prefix, wrapper):
    unet, autoencoder = tiny_networks()
    loaded = files.load_network(write_unet(tmp_path / "d.pth", unet, prefix, wrapper), files.UNET, torch.device("cpu"))
    loaded_ae = files.load_network(write_autoencoder(tmp_path / "a.pth", autoencoder), files.AUTOENCODER,
                                   torch.device("cpu"))
    x, photo = torch.randn(2, 3, 16, 24), torch.randn(2, 3, 16, 24)  # not the nominal 16×16: masks recomputed
    t = torch.tensor([3, 0])
    with torch.no_grad():
        assert torch.equal(loaded(x, t, photo), unet(x, t, photo))
        image = torch.rand(1, 3, 32, 48) * 2 - 1
        assert torch.equal(loaded_ae.decode(loaded_ae.encode(image)), autoencoder.decode(autoencoder.encode(image)))
    assert files.unet_config(official_buffers(unet) | unet.state_dict()).image_size == unet.config.image_size


def test_each_file_says_what_it_is_before_the_diffusion_families_are_asked(tmp_path):
    unet, autoencoder = tiny_networks()
    kind = kinds.inspect_file(write_unet(tmp_path / "d.pth", unet))
    assert (kind.family, kind.role, kind.licence) == ("resshift-unet", kinds.UPSCALER, files.LICENCE)
    assert kinds.inspect_file(write_autoencoder(tmp_path / "a.pth", autoencoder)).role == kinds.AUTOENCODER
    assert kinds.role_of("resshift-unet") == kinds.UPSCALER and kinds.role_of("resshift-vq-f4") == kinds.AUTOENCODER


def test_wrong_and_damaged_files_are_refused_clearly(tmp_path):
    unet, autoencoder = tiny_networks()
    good = write_unet(tmp_path / "d.pth", unet)
    truncated = tmp_path / "t.pth"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ModelFileError, match="could not be read .* truncated"):
        files.load_network(truncated, files.UNET, torch.device("cpu"))
    sd = unet.state_dict()
    sd.pop("input_blocks.1.0.emb_layers.1.bias")
    torch.save(sd, tmp_path / "missing.pth")
    with pytest.raises(ModelFileError, match=r"looks like a ResShift denoiser but does not match one exactly "
                                             r"\(missing: input_blocks.1.0.emb_layers.1.bias\)"):
        files.load_network(tmp_path / "missing.pth", files.UNET, torch.device("cpu"))
    ae = write_autoencoder(tmp_path / "a.pth", autoencoder)
    with pytest.raises(ModelFileError, match=r"a.pth is an autoencoder \(part of .*not a fast upscaler"):
        files.load_network(ae, files.UNET, torch.device("cpu"))
    torch.save(build_tiny(tiny_adm_config()).state_dict(), tmp_path / "adm.pt")
    with pytest.raises(ModelFileError, match=r"adm.pt is a diffusion model .*not a fast upscaler"):
        files.load_network(tmp_path / "adm.pt", files.UNET, torch.device("cpu"))
    sd = autoencoder.state_dict()
    sd["loss.discriminator.main.0.weight"] = torch.zeros(2)  # a training checkpoint's extras are skipped
    sd["extra.weight"] = torch.zeros(2)  # anything else is not
    torch.save(sd, tmp_path / "odd.pth")
    with pytest.raises(ModelFileError, match=r"unexpected: extra.weight\)"):
        files.load_network(tmp_path / "odd.pth", files.AUTOENCODER, torch.device("cpu"))
