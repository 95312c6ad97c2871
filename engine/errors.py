"""Exceptions the engine raises on purpose. Each carries a message fit to show a user as is."""


class EngineError(Exception):
    """A problem the user can act on (bad input, unsupported model file, ...)."""


class InputError(EngineError):
    """An image, mask or parameter that cannot be used."""


class ModelFileError(EngineError):
    """A file that is not a supported model checkpoint (or is corrupt/truncated)."""


class Cancelled(Exception):
    """Raised inside a run when its cancel token is set; finished work is kept by the caller."""


class OutOfMemory(EngineError):
    """The device ran out of memory even after splitting the work as far as possible."""


class NumericalError(EngineError):
    """The network produced NaN or infinity (e.g. a model that overflows in fp16)."""
