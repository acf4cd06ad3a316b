"""scikit-learn's estimator protocol, implemented without importing scikit-learn.

The estimators derive from :class:`BaseEstimator`, :class:`ClusterMixin` and
:class:`TransformerMixin` defined here rather than from scikit-learn's, so that
importing daskmeans (and fitting in-memory data) never imports scikit-learn,
whose import, through SciPy, costs more than a small fit (see the start-up
entries of ``benchmarks/RESULTS.md``). scikit-learn's tools only need the
protocol, which these classes implement with scikit-learn's rules:

- parameters: the ``__init__`` keyword arguments, stored unchanged
  (``get_params``, ``set_params`` with ``<component>__<parameter>`` keys), which
  is all :func:`sklearn.base.clone`, pipelines and searches use;
- ``repr``: the class name and the parameters that differ from their defaults,
  laid out as scikit-learn's pretty printer does;
- ``__sklearn_tags__``: the tags scikit-learn's ``BaseEstimator``,
  ``ClusterMixin`` and ``TransformerMixin`` give (only scikit-learn's tooling
  asks for them, so scikit-learn is imported then);
- ``set_output``: ``transform`` and ``fit_transform`` return a pandas or
  polars DataFrame (columns from ``get_feature_names_out``, index from a
  pandas input); the global ``sklearn.set_config(transform_output=...)`` is
  honoured when scikit-learn has been imported (else it cannot have been set);
- the HTML repr of notebooks, drawn by scikit-learn's
  :func:`~sklearn.utils.estimator_html_repr` when scikit-learn is installed.

Not provided: metadata routing (``get_metadata_routing``,
``set_fit_request``); with ``sklearn.set_config(enable_metadata_routing=True)``
the estimators request no metadata. Instances are not instances of
``sklearn.base.BaseEstimator``.
"""

from __future__ import annotations

import inspect
import math
import re
import sys
from functools import wraps
from numbers import Integral, Real

from ._errors import InvalidInputError

__all__ = ["BaseEstimator", "ClusterMixin", "TransformerMixin", "output_container", "wrap_output"]

#: The values of ``set_output(transform=...)`` besides None (as scikit-learn's).
OUTPUTS = ("default", "pandas", "polars")

# scikit-learn's repr layout: pprint's line width, at most 700 non-blank characters
_WIDTH = 80
_N_CHAR_MAX = 700


def _sklearn_config() -> dict | None:
    """scikit-learn's global configuration if scikit-learn is imported, else None
    (never imports it: a configuration can only have been set after importing it)."""
    if sys.modules.get("sklearn") is None:
        return None
    try:
        from sklearn import get_config
    except ImportError:  # pragma: no cover - a partially imported scikit-learn
        return None
    return get_config()


def _is_scalar_nan(value) -> bool:
    return isinstance(value, Real) and not isinstance(value, Integral) and math.isnan(value)


# --------------------------------------------------------------------------- #
# repr
# --------------------------------------------------------------------------- #
def _changed_params(estimator) -> dict:
    """Parameters whose repr differs from the default's (scikit-learn's rule:
    comparing reprs is safe for arrays; NaN equals a NaN default)."""
    params = estimator.get_params(deep=False)
    defaults = {name: p.default for name, p in
                inspect.signature(type(estimator).__init__).parameters.items()}

    def changed(name, value) -> bool:
        if name not in defaults or defaults[name] is inspect.Parameter.empty:
            return True
        default = defaults[name]
        if isinstance(value, BaseEstimator) and type(value) is not type(default):
            return True
        return repr(value) != repr(default) and not (
            _is_scalar_nan(default) and _is_scalar_nan(value)
        )

    return {name: value for name, value in params.items() if changed(name, value)}


def _layout(name: str, items: list[str]) -> str:
    """``name(item, item, ...)`` on one line, or packed into lines of at most
    80 characters, continued under the first item (scikit-learn's layout)."""
    one_line = f"{name}({', '.join(items)})"
    if len(one_line) <= _WIDTH and "\n" not in one_line:
        return one_line
    indent = " " * (len(name) + 1)
    lines, line = [], f"{name}("
    for i, item in enumerate(items):
        last = i == len(items) - 1
        piece = item + (")" if last else ",")
        first_of_line = line.strip() in ("", f"{name}(")
        if not first_of_line and len(line) + 1 + len(piece.split("\n")[0]) > _WIDTH:
            lines.append(line)
            line = indent + piece
        else:
            line = line + ("" if first_of_line else " ") + piece
        # a multi-line value (an array) continues under its first line's start
        if "\n" in piece:
            head, _, tail = line.rpartition("\n")
            lines.append(head)
            line = tail
    lines.append(line)
    return "\n".join(lines)


def _ellipsize(text: str, n_char_max: int) -> str:
    """Keep about ``n_char_max`` non-blank characters: half at each end, joined by
    ``...`` (scikit-learn's rule for long reprs)."""
    if len("".join(text.split())) <= n_char_max:
        return text
    lim = n_char_max // 2
    regex = rf"^(\s*\S){{{lim}}}"
    left = re.match(regex, text).end()
    right = re.match(regex, text[::-1]).end()
    if "\n" in text[left:-right]:
        # start the right part at a line start
        regex += r"[^\n]*\n"
        right = re.match(regex, text[::-1]).end()
    if left + 3 < len(text) - right:
        return text[:left] + "..." + text[-right:]
    return text


# --------------------------------------------------------------------------- #
# set_output
# --------------------------------------------------------------------------- #
def output_container(estimator) -> str:
    """The container ``transform`` returns: ``"default"``, ``"pandas"`` or ``"polars"``.

    The estimator's ``set_output`` first, then scikit-learn's global
    ``transform_output`` when scikit-learn is imported.
    """
    config = getattr(estimator, "_sklearn_output_config", {})
    if "transform" in config:
        value = config["transform"]
    else:
        sk = _sklearn_config()
        value = "default" if sk is None else sk.get("transform_output", "default")
    if value not in OUTPUTS:
        raise InvalidInputError(f"output config must be in {sorted(OUTPUTS)}, got {value}")
    return value


def _container_library(name: str):
    try:
        return __import__(name)
    except ImportError as exc:
        raise ImportError(
            f"Setting output container to '{name}' requires {name} to be installed"
        ) from exc


def wrap_output(estimator, data, X):
    """``data`` (the result of ``transform``) in the configured container.

    In-memory results only: a lazy (Dask) result is returned as it is (the
    estimator refuses the configuration for such input before computing).
    """
    container = output_container(estimator)
    if container == "default" or hasattr(data, "__dask_graph__"):
        return data
    columns = estimator.get_feature_names_out()
    if container == "pandas":
        pd = _container_library("pandas")
        if isinstance(data, pd.DataFrame):
            index = data.index
        elif isinstance(X, pd.DataFrame | pd.Series):
            index = X.index
        else:
            index = None
        frame = pd.DataFrame(data, index=index, copy=False)
        frame.columns = columns
        return frame
    pl = _container_library("polars")
    if isinstance(data, pl.DataFrame):
        data.columns = list(columns)
        return data
    return pl.DataFrame(data, schema=list(columns), orient="row")


def _wrapping_output(method):
    """``method`` (``transform`` or ``fit_transform``) returning :func:`wrap_output`."""
    @wraps(method)
    def wrapped(self, X, *args, **kwargs):
        return wrap_output(self, method(self, X, *args, **kwargs), X)

    wrapped._wraps_output = True
    return wrapped


# --------------------------------------------------------------------------- #
# the classes
# --------------------------------------------------------------------------- #
class BaseEstimator:
    """Parameters, repr, tags and HTML repr, by scikit-learn's rules."""

    @classmethod
    def _get_param_names(cls) -> list[str]:
        """The ``__init__`` keyword arguments, sorted."""
        init = cls.__init__
        if init is object.__init__:
            return []
        params = [p for p in inspect.signature(init).parameters.values()
                  if p.name != "self" and p.kind != p.VAR_KEYWORD]
        for p in params:
            if p.kind == p.VAR_POSITIONAL:
                raise RuntimeError(
                    f"scikit-learn estimators should always specify their parameters in the "
                    f"signature of their __init__ (no varargs); {cls.__name__} does not."
                )
        return sorted(p.name for p in params)

    def get_params(self, deep: bool = True) -> dict:
        """Parameters of this estimator.

        Parameters
        ----------
        deep : bool, default=True
            Also the parameters of parameters that are estimators, as
            ``<parameter>__<their parameter>``.

        Returns
        -------
        dict
            Parameter names mapped to their values.
        """
        out = {}
        for key in self._get_param_names():
            value = getattr(self, key)
            if deep and hasattr(value, "get_params") and not isinstance(value, type):
                out.update((f"{key}__{k}", v) for k, v in value.get_params().items())
            out[key] = value
        return out

    def set_params(self, **params):
        """Set parameters; ``<parameter>__<its parameter>`` reaches nested estimators.

        Returns
        -------
        self

        Raises
        ------
        ValueError
            For a name that is not a parameter (scikit-learn's wording).
        """
        if not params:
            return self
        valid = self.get_params(deep=True)
        nested: dict = {}
        for key, value in params.items():
            key, delim, sub_key = key.partition("__")
            if key not in valid:
                raise InvalidInputError(
                    f"Invalid parameter {key!r} for estimator {self}. "
                    f"Valid parameters are: {self._get_param_names()!r}."
                )
            if delim:
                nested.setdefault(key, {})[sub_key] = value
            else:
                setattr(self, key, value)
                valid[key] = value
        for key, sub_params in nested.items():
            valid[key].set_params(**sub_params)
        return self

    def __repr__(self, N_CHAR_MAX: int = _N_CHAR_MAX) -> str:
        config = _sklearn_config()
        changed_only = True if config is None else config.get("print_changed_only", True)
        params = _changed_params(self) if changed_only else self.get_params(deep=False)
        items = [f"{name}={value!r}" for name, value in sorted(params.items())]
        return _ellipsize(_layout(type(self).__name__, items), N_CHAR_MAX)

    def __sklearn_tags__(self):
        from sklearn.utils import Tags, TargetTags

        return Tags(estimator_type=None, target_tags=TargetTags(required=False),
                    transformer_tags=None, regressor_tags=None, classifier_tags=None)

    # HTML repr (notebooks): scikit-learn's, when it is installed
    @property
    def _repr_html_(self):
        html = _html_repr()
        if html is None:
            raise AttributeError(
                "_repr_html_ needs scikit-learn, with its 'display' configuration option "
                "set to 'diagram'"
            )
        return lambda: html(self)

    def _repr_mimebundle_(self, **kwargs) -> dict:
        out = {"text/plain": repr(self)}
        html = _html_repr()
        if html is not None:
            out["text/html"] = html(self)
        return out

    # the parameter and fitted-attribute tables of scikit-learn's HTML repr
    @property
    def _get_params_html(self):
        return _sklearn_base_method("_get_params_html").__get__(self)

    @property
    def _get_fitted_attr_html(self):
        return _sklearn_base_method("_get_fitted_attr_html").__get__(self)


def _html_repr():
    """scikit-learn's ``estimator_html_repr`` when it is installed and its
    ``display`` option is ``"diagram"``, else None."""
    try:
        from sklearn import get_config
        from sklearn.utils import estimator_html_repr
    except ImportError:
        return None
    return estimator_html_repr if get_config()["display"] == "diagram" else None


def _sklearn_base_method(name: str):
    """A method of scikit-learn's ``BaseEstimator`` (AttributeError where it has none)."""
    try:
        from sklearn.base import BaseEstimator as SKBaseEstimator
    except ImportError as exc:
        raise AttributeError(f"{name} needs scikit-learn") from exc
    return getattr(SKBaseEstimator, name)


class ClusterMixin:
    """``fit_predict`` and the ``"clusterer"`` estimator type."""

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.estimator_type = "clusterer"
        if tags.transformer_tags is not None:
            tags.transformer_tags.preserves_dtype = []
        return tags

    def fit_predict(self, X, y=None, **kwargs):
        """Fit, then return ``labels_``."""
        self.fit(X, **kwargs)
        return self.labels_


class TransformerMixin:
    """``fit_transform``, ``set_output`` and the transformer tags.

    ``transform`` and ``fit_transform``, wherever a subclass defines them,
    return the container chosen by ``set_output``.
    """

    _sklearn_auto_wrap_output_keys = {"transform"}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        for name in ("transform", "fit_transform"):
            method = cls.__dict__.get(name)
            if callable(method) and not getattr(method, "_wraps_output", False):
                setattr(cls, name, _wrapping_output(method))

    def __sklearn_tags__(self):
        from sklearn.utils import TransformerTags

        tags = super().__sklearn_tags__()
        tags.transformer_tags = TransformerTags()
        return tags

    def fit_transform(self, X, y=None, **fit_params):
        """Fit, then return ``transform(X)``."""
        return self.fit(X, **fit_params).transform(X)

    def set_output(self, *, transform=None):
        """Choose the container of ``transform`` and ``fit_transform``.

        Parameters
        ----------
        transform : {"default", "pandas", "polars"} or None, default=None
            ``"default"``: NumPy (or Dask) arrays; ``"pandas"``/``"polars"``: a
            DataFrame with ``get_feature_names_out()`` as columns (in-memory
            input only); None: unchanged.

        Returns
        -------
        self
        """
        if transform is None:
            return self
        if transform not in OUTPUTS:
            raise InvalidInputError(
                f"set_output: transform must be one of {list(OUTPUTS)} or None, "
                f"got {transform!r}."
            )
        if not hasattr(self, "_sklearn_output_config"):
            self._sklearn_output_config = {}
        self._sklearn_output_config["transform"] = transform
        return self
