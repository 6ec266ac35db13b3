"""The exceptions of :mod:`fastconv.functional`: ValueError/TypeError as fastconv raises, and
RuntimeError as PyTorch raises for the same mistakes, so either ``except`` catches them."""

import functools


class FunctionalError(ValueError, RuntimeError):
    """A bad argument value (PyTorch raises RuntimeError for most of these)."""


class FunctionalTypeError(TypeError, RuntimeError):
    """A bad argument type or dtype."""


def torch_errors(function):
    """Re-raise the ValueError/TypeError of fastconv's shared checks as the classes above,
    with the same message (raised before any kernel runs)."""
    @functools.wraps(function)
    def call(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except (FunctionalError, FunctionalTypeError):
            raise
        except ValueError as exc:
            raise FunctionalError(str(exc)) from None
        except TypeError as exc:
            raise FunctionalTypeError(str(exc)) from None

    return call
