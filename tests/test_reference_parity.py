"""Reference parity through the product path: the pipeline with every parity switch on gives what
the sampler gives on the reference's own schedule (DDNM main.py: timesteps 990, 980, ..., 0)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

import engine.pipeline as pipeline
from engine.errors import InputError
from engine.events import StageEvent
from engine.image_io import load_image
from engine.operators import build_operator, photo_to_observation
from engine.operators.base import Observation
from engine.pipeline import restore, run_to_completion
from engine.request import Quirks, RestoreRequest, Tasks, quirk_docs
from engine.samplers import make_schedule, sample, seeded_generators
from engine.samplers.noise import per_sample_randn
from engine.tiling.msr import window_seed
from tests.test_ddnm_sampler import GaussianPriorDenoiser

ALL_SWITCHES = Quirks(**{f.name: True for f in dataclasses.fields(Quirks)})
SIZE = 32


def photo() -> np.ndarray:
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    return np.stack([xx / SIZE, yy / SIZE, 0.5 + 0.3 * np.sin(xx / 3)], -1).astype(np.float32)


def sampler_level_reference(request: RestoreRequest, denoiser) -> np.ndarray:
    """The reference path without the pipeline: one window, the main.py schedule (skip spacing),
    the switches handed straight to the sampler, and the window's own seeded noise."""
    tasks = request.tasks
    rgb = load_image(request.image).rgb
    x = torch.from_numpy(rgb * 2 - 1).permute(2, 0, 1)[None]
    op = build_operator(tasks, height=SIZE, width=SIZE, mask=None, device="cpu", quirks=request.quirks)
    y = photo_to_observation(op, x)
    schedule = make_schedule(request.steps, request.travel_length, request.travel_repeat, spacing="skip")
    gens = seeded_generators([window_seed(request.seed, 0, 0)])
    x_T = per_sample_randn((1, 3, SIZE, SIZE), gens)
    sigma_y = tasks.noise  # sigma_y_unscaled: as given
    steps = list(sample(denoiser, x_T, Observation(op, y), schedule, eta=request.eta, sigma_y=sigma_y,
                        form=request.sampler, generators=gens, quirks=request.quirks))
    assert steps[0].t == schedule.first_t
    return ((steps[-1].x0_hat[0].permute(1, 2, 0) + 1) / 2).clamp(0, 1).numpy()


@pytest.mark.parametrize("form", ["ddim", "ddpm"])
def test_pipeline_with_every_switch_equals_the_sampler_on_the_reference_schedule(form):
    request = RestoreRequest(image=photo(), tasks=Tasks(colorize=True, deblur="uniform:3", noise=0.05), steps=10,
                             travel_length=2, travel_repeat=2, sampler=form, tiling="none", quirks=ALL_SWITCHES)
    product_denoiser, reference_denoiser = GaussianPriorDenoiser(), GaussianPriorDenoiser()
    result = run_to_completion(request, denoiser=product_denoiser).result
    expected = sampler_level_reference(request, reference_denoiser)
    assert [int(t[0]) for _, t in product_denoiser.inputs] == [int(t[0]) for _, t in reference_denoiser.inputs]
    assert int(product_denoiser.inputs[0][1][0]) == 900  # main.py: skip = 1000 // 10, the first call at 900
    np.testing.assert_allclose(result, expected, atol=2 / 65535)  # the canvas holds 16 bits


def test_the_first_call_is_at_990_for_100_steps_with_the_switch_and_999_without():
    def first_t(quirks: Quirks) -> int:
        den = GaussianPriorDenoiser()
        request = RestoreRequest(image=photo(), tasks=Tasks(colorize=True), steps=100, tiling="none", quirks=quirks)
        run_to_completion(request, denoiser=den)
        return int(den.inputs[0][1][0])

    assert first_t(Quirks(skip_spacing=True)) == 990
    assert first_t(Quirks()) == 999


def test_every_schedule_of_the_pipeline_uses_the_spacing_switch(monkeypatch):
    """HiR builds two schedules (phase 1, and phase 2's warm start): both follow the switch."""
    spacings = []
    real = pipeline.make_schedule

    def recording(*args, **kwargs):
        spacings.append(kwargs.get("spacing", "even"))
        return real(*args, **kwargs)

    monkeypatch.setattr(pipeline, "make_schedule", recording)
    img = np.tile(photo(), (4, 4, 1))
    request = RestoreRequest(image=img, tasks=Tasks(colorize=True), steps=4, window=32, overlap=16, hir=True,
                             hir_start=500, quirks=Quirks(skip_spacing=True))
    events = list(restore(request, denoiser=GaussianPriorDenoiser()))
    assert any("phase 2" in e.name for e in events if isinstance(e, StageEvent))
    assert spacings == ["skip", "skip"]


def test_a_warm_start_below_the_step_count_is_refused_in_words():
    img = np.tile(photo(), (4, 4, 1))
    request = RestoreRequest(image=img, tasks=Tasks(colorize=True), steps=100, window=32, overlap=16, hir=True,
                             hir_start=50)
    with pytest.raises(InputError, match="warm start at timestep 50 .* 100 steps"):
        run_to_completion(request, denoiser=GaussianPriorDenoiser())


def test_every_switch_is_documented_in_the_help_and_the_readme(capsys):
    from pathlib import Path

    from engine.cli import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["restore", "--help"])
    shown = " ".join(capsys.readouterr().out.split())
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    for name, doc in quirk_docs().items():
        assert name in shown and " ".join(doc.split()[:3]) in shown, name
        assert f"`{name}`" in readme, name
