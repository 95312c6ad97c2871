"""Stage-1 clean-up networks through spandrel (engine.cleanup.networks): files are recognised by
their content through the same path a user's file takes, imported with their architecture, scale
and licence, and every kind of bad file is refused with a clear message, no code run and nothing
installed."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

from engine.cleanup import networks
from engine.errors import ModelFileError
from engine.models import catalog as cat
from engine.models import kinds, load_denoiser, store
from engine.models.tiny import build_tiny, tiny_adm_config
from tests.cleanup_helpers import compact, esrgan, gray_dncnn, save, scunet, swinir

CPU = torch.device("cpu")


@pytest.fixture
def models_dir(tmp_path, monkeypatch):
    directory = tmp_path / "models"
    monkeypatch.setenv("RESTORER_MODELS_DIR", str(directory))
    cat.set_models_dir(None)
    return directory


@pytest.mark.parametrize("make, name, summary, licence, scale", [
    (scunet, "scunet.pth", "SCUNet, ×1", "Apache-2.0", 1),
    (lambda: esrgan(4), "bsrnet-like.safetensors", "ESRGAN, ×4", "Apache-2.0", 4),
    (lambda: compact(2), "compact", "RealESRGAN Compact, ×2", "BSD-3-Clause", 2),  # no suffix: content decides
    (swinir, "swinir.bin", "SwinIR, ×4", "Apache-2.0", 4),
    (gray_dncnn, "dncnn_gray.pth", "DnCNN, ×1, gray", "MIT", 1),  # restores each RGB channel as a gray photo
])
def test_a_spandrel_file_is_recognised_by_its_content_and_runs(tmp_path, make, name, summary, licence, scale):
    path = save(make(), tmp_path / name)
    kind = kinds.inspect_file(path)
    assert (kind.family, kind.role, kind.summary, kind.licence, kind.scale) == (
        "spandrel", kinds.CLEANUP, summary, licence, scale)
    assert kinds.role_of("spandrel") == kinds.CLEANUP
    net = networks.load_network(str(path), device=CPU)
    x = torch.rand(1, 3, 40, 44)
    out = net.run(x)
    assert out.shape == (1, 3, 40 * scale, 44 * scale) and out.dtype == torch.float32
    assert 0.0 <= float(out.min()) and float(out.max()) <= 1.0
    if net.channels == 1:  # the green channel restored alone is the green channel of the RGB result
        green = net.run(x[:, 1:2].repeat(1, 3, 1, 1))[:, :1]
        assert torch.allclose(out[:, 1:2], green, atol=1e-6)


def test_an_import_shows_architecture_scale_and_licence(models_dir, tmp_path, capsys):
    from engine.cli import main

    path = save(esrgan(4), tmp_path / "my_upscaler.pth")
    assert main(["models", "import", str(path)]) == 0
    printed = capsys.readouterr().out
    assert "spandrel checkpoint as custom model 'my_upscaler'" in printed
    assert "ESRGAN, ×4 (code licence Apache-2.0)" in printed
    entry = cat.get_entry("my_upscaler")
    assert entry.role == kinds.CLEANUP and entry.purpose == "clean-up" and entry.licence == "Apache-2.0"
    assert entry.extra["scale"] == 4 and entry.extra["summary"] == "ESRGAN, ×4"
    net = networks.load_network("my_upscaler", device=CPU)  # by id, from the models folder
    assert net.kind.scale == 4 and net.name == "my_upscaler"


def test_the_catalog_offers_the_stage_1_networks_with_official_sources():
    entries = {e.id: e for e in cat.load_catalog().values() if e.architecture == "spandrel"}
    assert {"scunet-real-psnr", "bsrnet-x4", "realesrgan-x4plus", "swinir-realsr-x4-psnr", "fbcnn-color",
            "fftformer-gopro"} <= set(entries)
    for entry in entries.values():
        assert entry.role == kinds.CLEANUP and entry.licence and entry.size_bytes and entry.description
        assert entry.urls and all(u.startswith("https://github.com/") for u in entry.urls)
        assert entry.file_name == entry.urls[0].rsplit("/", 1)[1]
        assert entry.extra["scale"] in (1, 4) and entry.extra["summary"]


def test_a_diffusion_checkpoint_as_cleanup_and_a_cleanup_network_as_diffusion_model_are_named(tmp_path):
    adm = tmp_path / "adm.pt"
    torch.save(build_tiny(tiny_adm_config()).state_dict(), adm)
    with pytest.raises(ModelFileError, match=r"adm.pt is a diffusion model .*\(ADM UNet, 256 px\), not a clean-up "
                                             r"network .* Choose it as the diffusion model"):
        networks.load_network(str(adm), device=CPU)
    cleanup = save(compact(1), tmp_path / "clean.pth")
    with pytest.raises(ModelFileError, match=r"clean.pth is a clean-up network .*\(RealESRGAN Compact, ×1\), not a "
                                             r"diffusion model .*Choose it as the clean-up model"):
        load_denoiser(str(cleanup), device=CPU)


class RunsCode:
    """A pickle payload that would create a marker file if it were ever unpickled."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_bad_files_are_refused_without_running_code_or_installing_anything(models_dir, tmp_path):
    good = save(scunet(), tmp_path / "good.pth")
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 3])
    marker = tmp_path / "code_ran"
    evil = tmp_path / "evil.pth"
    evil.write_bytes(pickle.dumps({"params": {"m_head.0.weight": RunsCode(marker)}}))
    wrong = compact(1).state_dict()
    wrong["body.0.weight"] = torch.zeros(3, 3)  # a Compact whose first convolution has the wrong shape
    misfit = save_plain(wrong, tmp_path / "misfit.pth")
    for bad, says in ((truncated, "could not be read"), (evil, "contains code"), (misfit, "do not fit")):
        with pytest.raises(ModelFileError, match=says):
            networks.load_network(str(bad), device=CPU)
        with pytest.raises(ModelFileError):
            store.import_model_file(bad)
        assert not any(models_dir.glob("*.pth")), bad.name  # nothing installed half-way
    assert not marker.exists()  # the pickle's code never ran


def save_plain(sd: dict, path: Path) -> Path:
    torch.save(sd, path)
    return path


def test_networks_of_spandrel_extra_arches_are_named_and_not_installed(tmp_path):
    with pytest.raises(ImportError):
        import spandrel_extra_arches  # noqa: F401 - non-commercial licences: not a dependency
    restormer = {"patch_embed.proj.weight": torch.zeros(8, 3, 3, 3), "encoder_level1.0.attn.temperature": torch.ones(1)}
    path = save_plain(restormer, tmp_path / "motion_deblurring.pth")
    with pytest.raises(ModelFileError, match="Restormer network.*spandrel_extra_arches.*non-commercial.*not install"):
        kinds.inspect_file(path)


def test_inpainting_face_and_odd_channel_networks_are_not_cleanup_networks():
    from spandrel import ImageModelDescriptor, MaskedImageModelDescriptor
    from spandrel.architectures.GFPGAN import GFPGANArch
    from spandrel.architectures.LaMa import LaMaArch

    conv = torch.nn.Conv2d(3, 3, 1)
    lama = MaskedImageModelDescriptor(conv, conv.state_dict(), LaMaArch(), [], False, False, 1, 3, 3)
    with pytest.raises(ModelFileError, match="LaMa inpainting network: it needs a mask"):
        networks.describe(lama, "big-lama.pt")
    face = ImageModelDescriptor(conv, conv.state_dict(), GFPGANArch(), "FaceSR", [], False, False, 1, 3, 3)
    with pytest.raises(ModelFileError, match="face restoration network: it restores aligned face crops"):
        networks.describe(face, "GFPGANv1.4.pth")
    gray_to_rgb = torch.nn.Conv2d(1, 3, 1)
    odd = ImageModelDescriptor(gray_to_rgb, gray_to_rgb.state_dict(), LaMaArch(), "Restoration", [], False, False,
                               1, 1, 3)
    with pytest.raises(ModelFileError, match="1 input and 3 output channels"):
        networks.describe(odd, "odd.pth")


@pytest.mark.parametrize("network, wanted, delivered", [
    (1, 1, 1), (1, 2, 1), (1, 4, 1), (4, 4, 4), (4, 2, 2), (4, 1, 1), (2, 4, 2), (4, 8, 4), (2, 3, 1), (4, 3, 3),
])
def test_the_scale_stage_1_delivers(network, wanted, delivered):
    assert networks.output_scale(network, wanted) == delivered
