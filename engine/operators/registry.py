"""Name -> operator class registry. Operators register themselves with ``@register_operator``."""

from __future__ import annotations

from typing import Callable, TypeVar

from engine.operators.base import Operator

_OPERATORS: dict[str, type[Operator]] = {}

T = TypeVar("T", bound=type)


def register_operator(name: str) -> Callable[[T], T]:
    """Class decorator: make ``cls`` available as ``operator_class(name)``."""

    def decorate(cls: T) -> T:
        if name in _OPERATORS and _OPERATORS[name] is not cls:
            raise ValueError(f"operator name {name!r} is already registered by {_OPERATORS[name].__name__}")
        _OPERATORS[name] = cls
        cls.registered_name = name  # type: ignore[attr-defined]
        return cls

    return decorate


def operator_class(name: str) -> type[Operator]:
    """The class registered under ``name`` (KeyError with the known names otherwise)."""
    try:
        return _OPERATORS[name]
    except KeyError:
        raise KeyError(f"no operator named {name!r}; known: {', '.join(sorted(_OPERATORS))}") from None


def registered_operators() -> dict[str, type[Operator]]:
    """A copy of the registry: name -> class."""
    return dict(_OPERATORS)
