"""Exception types that mark bad input, as opposed to a failure inside daskmeans.

Both derive from the built-in type scikit-learn raises for the same condition
(``ValueError`` or ``TypeError``), so callers that catch those keep working.
The command line maps them to its "bad input" exit status; anything else that
escapes a command is an internal error.
"""

from __future__ import annotations

__all__ = ["InputError", "InvalidInputError", "InvalidInputTypeError"]


class InputError(Exception):
    """Base of the errors raised for bad data, parameters or paths, before work starts."""


class InvalidInputError(InputError, ValueError):
    """A parameter or the data has a value that daskmeans cannot use."""


class InvalidInputTypeError(InputError, TypeError):
    """A parameter or the data has a type that daskmeans cannot use."""
