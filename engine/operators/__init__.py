"""Degradation operators: one contract (base.py), a name registry and ``build_operator``.

Importing this package registers every operator family: inpaint, colorize, sr_avgpool,
sr_bicubic, deblur, denoise, compose, batch.
"""

from engine.operators.base import Constraint, KnownPixels, Observation, Operator
from engine.operators.blur import BlurOperator
from engine.operators.colorize import ColorizeOperator
from engine.operators.compose import BatchOperator, ComposedOperator
from engine.operators.downsample import AvgPoolSR, BicubicSR
from engine.operators.identity import IdentityOperator
from engine.operators.inpaint import InpaintOperator
from engine.operators.registry import operator_class, register_operator, registered_operators
from engine.operators.build import build_operator, initial_estimate, parse_deblur, photo_to_observation

__all__ = [
    "Operator", "Constraint", "Observation", "KnownPixels",
    "InpaintOperator", "ColorizeOperator", "AvgPoolSR", "BicubicSR", "BlurOperator",
    "IdentityOperator", "ComposedOperator", "BatchOperator",
    "register_operator", "operator_class", "registered_operators",
    "build_operator", "parse_deblur", "photo_to_observation", "initial_estimate",
]
