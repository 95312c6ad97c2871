"""Samplers: schedules (respacing, RePaint time travel) and the DDNM / DDNM+ generator.

``make_schedule(steps, travel_length, travel_repeat, t_start=None, spacing="even")`` builds the
plan; ``sample(denoiser, x_T, constraint, schedule, ...)`` yields one :class:`SamplerStep` per
denoiser call; ``per_sample_randn`` draws noise per batch sample from its own generator;
``OracleDenoiser`` returns the true ε of a known image (tests, evaluation).
"""

from engine.samplers.ddnm import SamplerStep, ddim_eq19, ddpm_eq19, sample
from engine.samplers.noise import per_sample_randn, seeded_generators
from engine.samplers.oracle import OracleDenoiser
from engine.samplers.schedule import Schedule, jump_indices, make_schedule, respaced_timesteps

__all__ = [
    "OracleDenoiser",
    "SamplerStep",
    "Schedule",
    "ddim_eq19",
    "ddpm_eq19",
    "jump_indices",
    "make_schedule",
    "per_sample_randn",
    "respaced_timesteps",
    "sample",
    "seeded_generators",
]
