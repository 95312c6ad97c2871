"""Training on CPU with the tiny ADM at 32 px: learning, exact resume, output files, errors."""

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from engine.errors import InputError
from engine.training import checkpoint_io
from engine.training.data import ImageFolder
from engine.training.trainer import TrainConfig, TrainFinished, Trainer, TrainProgress, train


def _write_images(folder: Path, count: int = 4) -> Path:
    """Smooth synthetic photos, including a grayscale and a smaller-than-crop one."""
    folder.mkdir(parents=True, exist_ok=True)
    y, x = np.mgrid[0:40, 0:48]
    for i in range(count):
        rgb = np.stack([128 + 100 * np.sin(x / (3 + i)), 128 + 100 * np.cos(y / (4 + i)), np.full_like(x, 60.0 * i)], -1)
        Image.fromarray(rgb.clip(0, 255).astype(np.uint8)).save(folder / f"photo{i}.png")
    Image.fromarray((y * 5 % 256).astype(np.uint8), "L").save(folder / "gray.png")
    Image.fromarray(np.full((20, 24, 3), 200, np.uint8)).save(folder / "small.jpg")
    return folder


@pytest.fixture
def data_dir(tmp_path):
    return _write_images(tmp_path / "photos")


def _config(data_dir: Path, out: Path, **kw) -> TrainConfig:
    base = dict(data=str(data_dir), out=str(out), arch="adm-tiny", size=32, steps=6, batch=4, lr=1e-3, warmup=2,
                device="cpu", ema=0.999, sample_every=0, checkpoint_every=0, seed=7)
    base.update(kw)
    return TrainConfig(**base)


def _run(config: TrainConfig) -> list:
    return list(train(config))


# ----------------------------------------------------------------------------- data


def test_folder_crops_are_seeded_sized_and_in_range(data_dir):
    folder = ImageFolder(data_dir, 32)
    assert len(folder) == 6
    a = folder.sample_batch(5, torch.Generator().manual_seed(1))
    b = folder.sample_batch(5, torch.Generator().manual_seed(1))
    assert a.shape == (5, 3, 32, 32) and a.dtype == torch.float32
    assert a.min() >= -1 and a.max() <= 1
    assert torch.equal(a, b)
    small = folder.image(folder.files.index(data_dir / "small.jpg"))
    assert min(small.shape[:2]) >= 32 and small.shape[2] == 3  # upscaled to fit the crop
    gray = folder.image(folder.files.index(data_dir / "gray.png"))
    assert gray.shape[2] == 3 and np.array_equal(gray[..., 0], gray[..., 2])


def test_empty_and_corrupt_folders_give_clear_errors(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no training images"):
        ImageFolder(tmp_path / "empty", 32)
    bad = _write_images(tmp_path / "bad", count=1)
    (bad / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    with pytest.raises(InputError, match="broken.png"):
        ImageFolder(bad, 32)
    assert len(ImageFolder(bad, 32, skip_bad=True)) == 3
    from engine.cli import main

    code = main(["train", "--data", str(tmp_path / "empty"), "--out", str(tmp_path / "m.pt"), "--arch", "adm-tiny",
                 "--size", "32", "--device", "cpu"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "no training images" in err[0]


# ----------------------------------------------------------------------------- learning


def test_training_lowers_loss_on_a_fixed_batch(data_dir, tmp_path):
    trainer = Trainer(_config(data_dir, tmp_path / "m.pt", steps=30, batch=2))
    gen = torch.Generator().manual_seed(123)
    x0 = trainer.data.sample_batch(8, gen)
    t = torch.randint(1000, (8,), generator=gen)
    noise = torch.randn(x0.shape, generator=gen)
    before = trainer.fixed_batch_loss(x0, t, noise)
    for _ in range(30):
        trainer.step()
    after = trainer.fixed_batch_loss(x0, t, noise)
    assert after < 0.5 * before, (before, after)
    assert trainer.fixed_batch_loss(x0, t, noise, use_ema=True) < before


def test_resume_reaches_the_same_state_as_an_uninterrupted_run(data_dir, tmp_path):
    full = Trainer(_config(data_dir, tmp_path / "full.pt", steps=4, batch=2))
    list(train(full.config, full))
    first = _config(data_dir, tmp_path / "split.pt", steps=2, batch=2)
    list(train(first))
    resumed = Trainer(replace(first, steps=4, resume=True))
    events = list(train(resumed.config, resumed))
    assert any(getattr(e, "message", "") == "resumed at step 2" for e in events)
    assert [e.step for e in events if isinstance(e, TrainProgress)] == [3, 4]
    for name, p in full.model.state_dict().items():
        assert torch.equal(p, resumed.model.state_dict()[name]), name
    for name, p in full.ema_model.state_dict().items():
        assert torch.equal(p, resumed.ema_model.state_dict()[name]), name
    # and the optimizer moments agree too
    sa, sb = full.optimizer.state_dict()["state"], resumed.optimizer.state_dict()["state"]
    assert all(torch.equal(sa[k]["exp_avg_sq"], sb[k]["exp_avg_sq"]) for k in sa)


# ----------------------------------------------------------------------------- output files


def test_written_model_is_an_official_layout_state_dict_with_sidecar(data_dir, tmp_path):
    from engine.models.checkpoint import detect_config, load_state_dict

    out = tmp_path / "mine.pt"
    events = _run(_config(data_dir, out, steps=2, sample_every=2, sample_steps=3, sample_count=4))
    finished = events[-1]
    assert isinstance(finished, TrainFinished)
    sd = load_state_dict(out)
    raw = torch.load(out, map_location="cpu", weights_only=True)
    assert set(raw) == set(sd) and all(isinstance(v, torch.Tensor) for v in raw.values())
    config = detect_config(sd)
    assert (config.family, config.model_channels, config.channel_mult, config.out_channels) == ("adm", 32, (1, 2), 6)
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["image_size"] == 32 and meta["steps"] == 2 and meta["weights"] == "ema"
    assert meta["schedule"]["beta_end"] == 0.02 and meta["data"]["images"] == 6
    grid = checkpoint_io.train_state_dir(out) / "samples" / "step_0000002.png"
    assert Image.open(grid).size == (64, 64)  # 2×2 grid of 32 px samples


def test_fine_tuning_from_a_checkpoint_continues_from_its_weights(data_dir, tmp_path):
    from engine.models.checkpoint import load_state_dict

    base = tmp_path / "base.pt"
    _run(_config(data_dir, base, steps=3))
    tuned = Trainer(_config(data_dir, tmp_path / "tuned.pt", steps=0, init=str(base), arch="ddpm"))
    start = load_state_dict(base)
    assert tuned.arch_info["family"] == "adm" and tuned.arch_info["init"] == str(base)
    assert all(torch.equal(start[k], v) for k, v in tuned.model.state_dict().items())
    tuned.step()
    assert not torch.equal(start["out.2.weight"], tuned.model.state_dict()["out.2.weight"])


def test_trained_model_loads_as_a_denoiser_and_restores(data_dir, tmp_path):
    models = pytest.importorskip("engine.models")
    if not hasattr(models, "load_denoiser"):
        pytest.skip("engine.models.load_denoiser not available yet")
    out = tmp_path / "mine.pt"
    _run(_config(data_dir, out, steps=2))
    denoiser = models.load_denoiser(str(out), device=torch.device("cpu"))
    x = torch.randn(1, 3, 32, 32)
    eps = denoiser(x, torch.tensor([500]))
    assert eps.shape == (1, 3, 32, 32) and torch.isfinite(eps).all()
    assert denoiser.image_size == 32  # the native size comes from the MODEL.json sidecar
    pipeline = pytest.importorskip("engine.pipeline")
    from engine.events import FinishedEvent
    from engine.request import RestoreRequest, Tasks

    photo = np.random.default_rng(0).random((32, 32, 3)).astype(np.float32)
    request = RestoreRequest(image=photo, tasks=Tasks(colorize=True), model=str(out), steps=2, device="cpu",
                             window=32, overlap=16, tiling="none")
    last = list(pipeline.restore(request))[-1]
    assert isinstance(last, FinishedEvent) and last.result.shape == (32, 32, 3)
    assert np.isfinite(last.result).all()
    # with the default 256 px window the pipeline falls back to the model's own 32 px windows
    photo = np.random.default_rng(1).random((64, 64, 3)).astype(np.float32)
    events = list(pipeline.restore(RestoreRequest(image=photo, tasks=Tasks(colorize=True), model=str(out), steps=1,
                                                  device="cpu", hir=False)))
    plans = [e for e in events if type(e).__name__ == "PlanEvent"]
    assert plans and {(b.height, b.width) for b in plans[-1].boxes} == {(32, 32)}


def test_cli_train_writes_and_registers_a_listable_model(data_dir, tmp_path, monkeypatch, capsys):
    from engine.cli import main
    from engine.models import catalog, load_denoiser

    monkeypatch.setenv("RESTORER_MODELS_DIR", str(tmp_path / "store"))
    out = tmp_path / "cli-model.pt"
    code = main(["train", "--data", str(data_dir), "--out", str(out), "--arch", "adm-tiny", "--size", "32", "--steps", "2",
                 "--batch", "2", "--device", "cpu", "--sample-every", "0", "--register", "--name", "My photos"])
    assert code == 0 and out.is_file() and out.with_suffix(".json").is_file()
    assert "registered as model 'cli-model'" in capsys.readouterr().out
    listed = {m.id: m for m in catalog.list_models()}
    assert listed["cli-model"].status == catalog.INSTALLED and listed["cli-model"].display_name == "My photos"
    denoiser = load_denoiser("cli-model", device=torch.device("cpu"))
    assert denoiser(torch.zeros(1, 3, 32, 32), torch.tensor([3])).shape == (1, 3, 32, 32)
    assert denoiser.image_size == 32 and listed["cli-model"].entry.image_size == 32  # its native size goes along


@pytest.mark.parametrize("out, words", [("blocker.png/m.pt", "is a file, not a folder"), ("a_folder.pt", "is a folder")])
def test_cli_train_refuses_an_unwritable_out_before_training(data_dir, tmp_path, capsys, monkeypatch, out, words):
    import engine.training.trainer as trainer
    from engine.cli import main

    (tmp_path / "blocker.png").write_bytes(b"x")
    (tmp_path / "a_folder.pt").mkdir()
    monkeypatch.setattr(trainer, "train", lambda config, **kw: pytest.fail("trained before checking --out"))
    code = main(["train", "--data", str(data_dir), "--out", str(tmp_path / out), "--arch", "adm-tiny", "--size", "32",
                 "--device", "cpu"])
    assert code == 2 and words in capsys.readouterr().err


def test_cli_train_says_in_one_line_when_a_checkpoint_cannot_be_written(data_dir, tmp_path, capsys, monkeypatch):
    from engine.cli import main

    def disk_full(obj, path):
        raise OSError(28, "No space left on device", str(path))

    monkeypatch.setattr(checkpoint_io, "_atomic_save", disk_full)
    code = main(["train", "--data", str(data_dir), "--out", str(tmp_path / "m.pt"), "--arch", "adm-tiny", "--size", "32",
                 "--steps", "2", "--batch", "2", "--device", "cpu", "--sample-every", "0", "--checkpoint-every", "1"])
    err = capsys.readouterr().err
    assert code == 2 and "No space left on device" in err and "Traceback" not in err


@pytest.mark.parametrize("argv, words", [(["--steps", "0"], "≥ 1"), (["--batch", "0"], "≥ 1"),
                                         (["--out", "model.png"], "--out must end in .pt or .safetensors"),
                                         (["--lr", "0"], "--lr: must be > 0"), (["--ema", "1"], "below 1"),
                                         (["--warmup", "-5"], "≥ 0"), (["--sample-every", "-1"], "≥ 0"),
                                         (["--sample-steps", "0"], "≥ 1"), (["--checkpoint-every", "-1"], "≥ 0")])
def test_cli_train_refuses_bad_arguments_before_training(data_dir, tmp_path, capsys, monkeypatch, argv, words):
    import engine.training.trainer as trainer
    from engine.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(trainer, "train", lambda config, **kw: pytest.fail("trained despite a bad argument"))
    try:
        code = main(["train", "--data", str(data_dir), "--out", "m.pt", "--arch", "adm-tiny", "--size", "32", *argv])
    except SystemExit as exc:  # argparse
        code = exc.code
    assert code == 2 and words in capsys.readouterr().err and not (tmp_path / "model.png").exists()


def test_cli_train_writes_a_loadable_safetensors_model(data_dir, tmp_path):
    from engine.cli import main
    from engine.models import checkpoint

    out = tmp_path / "m.safetensors"
    assert main(["train", "--data", str(data_dir), "--out", str(out), "--arch", "adm-tiny", "--size", "32",
                 "--steps", "1", "--batch", "2", "--device", "cpu", "--sample-every", "0"]) == 0
    state = checkpoint.load_state_dict(out)
    assert checkpoint.detect_config(state).family == "adm" and (tmp_path / "m.json").is_file()


@pytest.mark.parametrize("init, out, words", [
    ("base.pt", "base.pt", "--out base.pt is --init"),
    ("base.safetensors", "base.pt", "the metadata of --out base.json is the metadata of --init"),
    (None, "photos/m.pt", "inside the training data folder"),
    (None, "photos/sub/m.pt", "inside the training data folder"),
])
def test_cli_train_never_writes_over_what_it_reads(data_dir, tmp_path, capsys, monkeypatch, init, out, words):
    import engine.training.trainer as trainer
    from engine.cli import main

    monkeypatch.chdir(tmp_path)
    for name in ("base.pt", "base.safetensors", "base.json"):
        (tmp_path / name).write_bytes(b"kept")
    monkeypatch.setattr(trainer, "train", lambda config, **kw: pytest.fail("trained despite --out"))
    code = main(["train", "--data", "photos", "--out", out, "--arch", "adm-tiny", "--size", "32",
                 "--device", "cpu", *(["--init", init] if init else [])])
    err = capsys.readouterr().err
    assert code == 2 and words in err and "Traceback" not in err
    assert all((tmp_path / name).read_bytes() == b"kept" for name in ("base.pt", "base.safetensors", "base.json"))


def test_cli_train_register_again_updates_the_model_it_registered(data_dir, tmp_path, monkeypatch, capsys):
    from engine.cli import main
    from engine.models import catalog

    monkeypatch.setenv("RESTORER_MODELS_DIR", str(tmp_path / "store"))
    monkeypatch.chdir(tmp_path)
    run = ["train", "--data", str(data_dir), "--out", "m.pt", "--arch", "adm-tiny", "--size", "32", "--batch", "2",
           "--device", "cpu", "--sample-every", "0", "--register"]
    assert main([*run, "--steps", "1", "--name", "First"]) == 0
    assert "registered as model 'm'" in capsys.readouterr().out
    for steps, name, shown in (("2", ["--name", "Second"], "Second"), ("3", [], "Second")):
        assert main([*run, "--steps", steps, *name]) == 0
        assert "updated model 'm'" in capsys.readouterr().out
        custom = catalog.read_registry(tmp_path / "store")["custom"]
        assert list(custom) == ["m"] and custom["m"]["display_name"] == shown
        assert f"for {steps} steps" in custom["m"]["description"]
        assert (tmp_path / "store" / "m.pt").read_bytes() == (tmp_path / "m.pt").read_bytes()
    assert [s.status for s in catalog.installed_models() if s.id == "m"] == [catalog.INSTALLED]


def test_cli_train_register_of_weights_already_registered_from_another_file(data_dir, tmp_path, monkeypatch, capsys):
    from engine.cli import main
    from engine.models import catalog

    monkeypatch.setenv("RESTORER_MODELS_DIR", str(tmp_path / "store"))
    run = ["train", "--data", str(data_dir), "--arch", "adm-tiny", "--size", "32", "--batch", "2", "--steps", "1",
           "--device", "cpu", "--sample-every", "0", "--register"]
    assert main([*run, "--out", str(tmp_path / "a.pt")]) == 0
    capsys.readouterr()
    assert main([*run, "--out", str(tmp_path / "b.pt")]) == 0  # seeded: the very same weights
    assert "not registered again: b.pt is already installed as model 'a'" in capsys.readouterr().out
    assert list(catalog.read_registry(tmp_path / "store")["custom"]) == ["a"]


def test_cli_train_ctrl_c_keeps_the_steps_done_for_resume(data_dir, tmp_path, monkeypatch, capsys):
    import os
    import signal

    import engine.training.trainer as trainer
    from engine.cli import main

    step = trainer.Trainer.step

    def step_then_ctrl_c(self):
        loss = step(self)
        if self.step_count == 2:
            os.kill(os.getpid(), signal.SIGINT)  # the user presses Ctrl-C during step 2
        return loss

    monkeypatch.setattr(trainer.Trainer, "step", step_then_ctrl_c)
    out = tmp_path / "m.pt"
    run = ["train", "--data", str(data_dir), "--out", str(out), "--arch", "adm-tiny", "--size", "32", "--steps", "4",
           "--batch", "2", "--device", "cpu", "--sample-every", "0"]
    assert main(run) == 130
    err = capsys.readouterr().err
    assert "cancelling after the current step" in err and "cancelled at step 2" in err and "--resume" in err
    assert checkpoint_io.load_train_state(out)["step"] == 2 and not out.exists()
    monkeypatch.setattr(trainer.Trainer, "step", step)
    assert main([*run, "--resume"]) == 0 and out.is_file()
    assert "resumed at step 2" in capsys.readouterr().err


def test_cancel_before_any_step_saves_nothing(data_dir, tmp_path):
    import threading

    cancel = threading.Event()
    cancel.set()
    events = list(train(_config(data_dir, tmp_path / "m.pt"), cancel=cancel))
    assert [type(e).__name__ for e in events][-1] == "TrainCancelled" and events[-1].saved is None
    assert checkpoint_io.load_train_state(tmp_path / "m.pt") is None
