"""Optional scikit-learn integration.

scikit-learn is not a hard dependency. When it is installed, the estimators
derive from its ``BaseEstimator``, ``ClusterMixin`` and ``TransformerMixin`` so
that ``clone``, pipelines, grid searches and HTML reprs behave natively; when it
is not, a small stand-in provides ``get_params``/``set_params`` with the same
rules (parameters are the ``__init__`` keyword arguments, stored unchanged).
"""

from __future__ import annotations

import inspect

__all__ = [
    "BaseEstimator",
    "ClusterMixin",
    "ConvergenceWarning",
    "NotFittedError",
    "TransformerMixin",
]

try:  # pragma: no cover - exercised whichever way the environment is set up
    from sklearn.base import BaseEstimator, ClusterMixin, TransformerMixin
    from sklearn.exceptions import ConvergenceWarning, NotFittedError
except ImportError:  # pragma: no cover

    class ConvergenceWarning(UserWarning):
        """Warning for degenerate or unconverged clusterings."""

    class NotFittedError(ValueError, AttributeError):
        """A fitted model's method was called before ``fit`` (as scikit-learn's)."""

    class BaseEstimator:
        """Minimal parameter handling compatible with scikit-learn's."""

        @classmethod
        def _get_param_names(cls):
            sig = inspect.signature(cls.__init__)
            return sorted(
                p.name for p in sig.parameters.values()
                if p.name != "self" and p.kind != p.VAR_KEYWORD
            )

        def get_params(self, deep=True):
            return {name: getattr(self, name) for name in self._get_param_names()}

        def set_params(self, **params):
            valid = self._get_param_names()
            for key, value in params.items():
                if key not in valid:
                    raise ValueError(
                        f"Invalid parameter {key!r} for estimator {type(self).__name__}; "
                        f"valid parameters are {valid}."
                    )
                setattr(self, key, value)
            return self

        def __repr__(self):
            args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
            return f"{type(self).__name__}({args})"

    class ClusterMixin:
        """Provides ``fit_predict``."""

        _estimator_type = "clusterer"

        def fit_predict(self, X, y=None, **kwargs):
            self.fit(X, **kwargs)
            return self.labels_

    class TransformerMixin:
        """Provides ``fit_transform``."""

        def fit_transform(self, X, y=None, **kwargs):
            return self.fit(X, **kwargs).transform(X)
