"""scikit-learn's exception and warning types, resolved when one is raised.

scikit-learn is optional, and importing it costs more than a small fit, so no
module imports it to define its classes (the estimator protocol is in
:mod:`daskmeans._sklearn_api`). Users still catch
``sklearn.exceptions.NotFittedError`` and filter
``sklearn.exceptions.ConvergenceWarning``: the code that raises or warns asks
:func:`not_fitted_error` or :func:`convergence_warning` for the type at that
moment, which is scikit-learn's when it is installed (importing it then) and a
stand-in with the same bases otherwise.

``NotFittedError`` and ``ConvergenceWarning`` are also attributes of this
module, resolved the same way on access.
"""

from __future__ import annotations

__all__ = ["convergence_warning", "not_fitted_error"]


class _NotFittedError(ValueError, AttributeError):
    """A fitted model's method was called before ``fit`` (as scikit-learn's)."""


class _ConvergenceWarning(UserWarning):
    """Warning for degenerate or unconverged clusterings (as scikit-learn's)."""


_NotFittedError.__name__ = _NotFittedError.__qualname__ = "NotFittedError"
_ConvergenceWarning.__name__ = _ConvergenceWarning.__qualname__ = "ConvergenceWarning"


def not_fitted_error() -> type[Exception]:
    """``sklearn.exceptions.NotFittedError`` if scikit-learn is installed, else the
    stand-in (a ``ValueError`` and ``AttributeError``, as scikit-learn's)."""
    try:
        from sklearn.exceptions import NotFittedError
    except ImportError:
        return _NotFittedError
    return NotFittedError


def convergence_warning() -> type[Warning]:
    """``sklearn.exceptions.ConvergenceWarning`` if scikit-learn is installed, else
    the stand-in (a ``UserWarning``, as scikit-learn's)."""
    try:
        from sklearn.exceptions import ConvergenceWarning
    except ImportError:
        return _ConvergenceWarning
    return ConvergenceWarning


def __getattr__(name: str):
    if name == "NotFittedError":
        return not_fitted_error()
    if name == "ConvergenceWarning":
        return convergence_warning()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
