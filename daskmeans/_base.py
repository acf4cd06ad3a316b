"""What the k-means estimators share: parameters, input checks, prediction and saved models.

:class:`KMeansBase` holds everything of :class:`~daskmeans.KMeans` and
:class:`~daskmeans.MiniBatchKMeans` that is not their fitting: the parameter
check (one table of constraints per class, see :mod:`daskmeans._validation`),
the input check of ``fit`` and of the fitted model's methods (feature count and
names, scikit-learn's wording), ``predict``, ``transform``, ``score``,
``fit_predict``, ``fit_transform``, ``get_feature_names_out`` and the JSON
model files (``to_dict``/``from_dict``/``save``/``load``).

Other modules use a fitted model through the public functions at the end of
this module (:func:`lazy_labels`, :func:`labels_and_measure`,
:func:`resolved_params`, and :func:`deferred_final_pass` with its two
companions), never through its private methods.

Writing another estimator on this base
--------------------------------------
A third estimator (``HierarchicalKMeans``, say) needs, in its own module:

1. ``class HierarchicalKMeans(KMeansBase)`` whose ``__init__`` stores every
   keyword argument unchanged under its own name (nothing else: scikit-learn's
   ``clone`` and ``set_params`` rely on it).
2. ``_parameter_table``: a dict naming every ``__init__`` parameter, each with
   the list of :class:`~daskmeans._validation.Constraint` its value may
   satisfy. Start from :data:`COMMON_PARAMETERS` (``n_clusters``, ``max_iter``,
   ``tol``, ``verbose``, ``random_state``)::

       _parameter_table = {
           **COMMON_PARAMETERS,
           "init": [Options("k-means++", "random"), Callable()],
           "n_init": [Options("auto"), Interval(Integral, 1)],
           "bisecting_strategy": [Options("biggest_inertia", "largest_cluster")],
       }

   ``tests/test_conformance.py`` checks that the table names exactly the
   ``__init__`` parameters of every estimator it lists: add the new one there.
3. Optionally ``_resolve_params(self)``: after the table passed, checks that
   involve several parameters and the resolved values, kept apart from what
   the user passed (``self._n_init = ...``, ``self._tol = ...``); call
   :meth:`KMeansBase._resolve_n_init` for scikit-learn's ``n_init="auto"`` rule.
4. ``fit(self, X, y=None, sample_weight=None)``: ``self._validate_params()``;
   ``Xd, in_memory = self._validate_data(X, reset=True)`` (a 2-D Dask array of
   float32/float64, one column block; sets ``n_features_in_`` and
   ``feature_names_in_``); ``self._check_n_samples(Xd)``;
   ``self._check_init_array(Xd)`` for an array ``init``;
   ``check_sample_weight(...)``; then set ``cluster_centers_``, ``labels_``
   (:func:`in_memory` for NumPy input, lazy otherwise), ``inertia_``,
   ``n_iter_`` and return ``self``.
5. Saved models: a ``_model_format`` string (``"daskmeans.HierarchicalKMeans"``),
   ``_model_version``, and ``_fitted_to_doc``/``_fitted_from_doc`` for the
   fitted attributes beyond the centres.

``predict``, ``transform``, ``score``, ``fit_predict``, ``fit_transform``,
``get_feature_names_out``, ``set_output`` and the tags
then come with the base. The tags say that sparse input is taken (unless
``standardize`` or ``nan_policy="omit"``): set ``_sparse_input = False`` on
the class if the new estimator cannot take it, and add it to the estimator
checks of ``tests/test_conformance.py``. Preprocessing parameters (``metric``,
``standardize``, ``nan_policy``) are honoured by the prediction methods when
the estimator has them (see :meth:`KMeansBase._predict_prep`).
"""

from __future__ import annotations

import contextlib
import json
import warnings
from numbers import Integral, Real
from pathlib import Path

import dask.array as da
import numpy as np

from . import kernels as _kernels
from ._compat import not_fitted_error
from ._errors import InvalidInputError, InvalidInputTypeError
from ._sklearn_api import BaseEstimator, ClusterMixin, TransformerMixin, output_container
from ._validation import (
    Boolean,
    Interval,
    RandomStateLike,
    check_array_input,
    check_centers,
    check_params,
    check_sample_weight,
)
from .engine._graph import compute_passes, map_row_blocks
from .engine._lloyd import check_block, partial_pass, prepare_block
from .engine._prep import make_prep
from .io._atomic import write_json

__all__ = [
    "COMMON_PARAMETERS", "KMeansBase", "complete_final_pass", "deferred_final_pass", "in_memory",
    "labels_and_measure", "lazy_labels", "pending_final_pass", "resolved_params",
]

#: Constraints of the parameters every k-means estimator has.
COMMON_PARAMETERS: dict = {
    "n_clusters": [Interval(Integral, 1)],
    "max_iter": [Interval(Integral, 1)],
    "tol": [Interval(Real, 0)],
    "verbose": [Interval(Integral, 0), Boolean()],
    "random_state": [RandomStateLike()],
}


# --------------------------------------------------------------------------- #
# Per-block tasks of predict and transform
# --------------------------------------------------------------------------- #
def _predict_block(X, centers, check, prep=None):
    if prep is None:
        if check:
            check_block(X, None)
        return _kernels.assign(X, centers)
    X, _, valid = prepare_block(X, None, prep, check)
    labels = _kernels.assign(X, centers)
    if valid is not None:
        labels[~valid] = -1
    return labels


def _transform_block(X, centers, check, prep=None):
    if prep is None:
        if check:
            check_block(X, None)
        D = _kernels.distances_block(X, centers, _kernels.sq_norms(centers))
        return np.sqrt(D, out=D)
    X, _, valid = prepare_block(X, None, prep, check)
    D = _kernels.distances_block(X, centers, _kernels.sq_norms(centers))
    if prep.normalize:
        D *= 0.5  # unit rows and centres: ||x - c||^2 / 2 = 1 - cos(x, c)
    else:
        np.sqrt(D, out=D)
    if valid is not None:
        D[~valid] = np.nan
    return D


class KMeansBase(ClusterMixin, TransformerMixin, BaseEstimator):
    """Base of the k-means estimators (not for direct use); see the module docstring.

    Subclasses define ``__init__``, ``_parameter_table``, ``fit`` and, for
    saved models, ``_model_format``, ``_model_version``, ``_fitted_to_doc``
    and ``_fitted_from_doc``.
    """

    #: Parameter name -> list of constraints, one of which its value must satisfy.
    _parameter_table: dict = COMMON_PARAMETERS
    #: ``"format"`` of saved models, and the newest ``"format_version"`` understood.
    _model_format: str = ""
    _model_version: int = 1
    #: Whether ``fit`` takes ``scipy.sparse`` input (and Dask arrays of sparse blocks).
    _sparse_input: bool = True

    # ------------------------------------------------------------------ #
    # parameters
    # ------------------------------------------------------------------ #
    def _validate_params(self) -> None:
        """Check every parameter against the table, then resolve derived values.

        Raises :class:`~daskmeans._errors.InvalidInputError` (``ValueError``) or
        :class:`~daskmeans._errors.InvalidInputTypeError` (``TypeError``) naming
        the parameter, before any work starts.
        """
        check_params(self._parameter_table, self.get_params(deep=False))
        self._tol = float(self.tol)
        self._resolve_params()

    def _resolve_params(self) -> None:
        """Hook: checks across parameters and resolved values (``self._*``)."""

    def _resolve_n_init(self, auto_many: int) -> None:
        """scikit-learn's rule for ``n_init`` into ``self._n_init``.

        ``"auto"`` is ``auto_many`` (10 for KMeans, 3 for MiniBatchKMeans) for
        ``init="random"`` and callables, 1 otherwise. An explicit array of
        centres runs one initialisation, with scikit-learn's RuntimeWarning
        when ``n_init`` asked for more.
        """
        init = self.init
        explicit = not isinstance(init, str) and not callable(init)
        if self.n_init == "auto":
            many = (isinstance(init, str) and init == "random") or callable(init)
            self._n_init = auto_many if many else 1
        else:
            self._n_init = int(self.n_init)
        if explicit and self._n_init != 1:
            warnings.warn(
                "Explicit initial center position passed: performing only one init in "
                f"{type(self).__name__} instead of n_init={self._n_init}.",
                RuntimeWarning,
                stacklevel=5,  # the caller of fit
            )
            self._n_init = 1

    # ------------------------------------------------------------------ #
    # input
    # ------------------------------------------------------------------ #
    def _validate_data(self, X, *, reset: bool, storage_options=None, **kwargs):
        """Check X; on ``reset`` (fit) record its features, else compare with them.

        Parameters
        ----------
        X : array-like, DataFrame, dask.array.Array, Dask DataFrame, zarr.Array, str or path
        reset : bool
            True in ``fit`` (and the first ``partial_fit``): set ``n_features_in_``
            and ``feature_names_in_``. False in the fitted model's methods: the
            model must be fitted, and X must have its number of features (and
            names, when it was fitted with names); X is cast to the centres' dtype.
        storage_options : dict, optional
            fsspec options when X is a URL.
        **kwargs
            Passed on to :func:`~daskmeans._validation.check_array_input`.

        Returns
        -------
        Xd : dask.array.Array
        in_memory : bool
        """
        if not reset:
            self._check_fitted()
            kwargs.setdefault("dtype", self.cluster_centers_.dtype)
        kwargs.setdefault("allow_nan", getattr(self, "nan_policy", "raise") == "omit")
        names = _feature_names(X)
        Xd, in_memory = check_array_input(X, storage_options=storage_options, **kwargs)
        if reset:
            if names is None:
                self.__dict__.pop("feature_names_in_", None)
            else:
                self.feature_names_in_ = names
            self.n_features_in_ = int(Xd.shape[1])
            return Xd, in_memory
        self._check_feature_names(names)
        if Xd.shape[1] != self.n_features_in_:
            raise InvalidInputError(
                f"X has {Xd.shape[1]} features, but {type(self).__name__} is expecting "
                f"{self.n_features_in_} features as input."
            )
        return Xd, in_memory

    def _check_feature_names(self, names) -> None:
        """Compare the column names of X with those seen by ``fit`` (scikit-learn's rules)."""
        fitted = getattr(self, "feature_names_in_", None)
        cls = type(self).__name__
        if fitted is None and names is None:
            return
        if fitted is None:
            warnings.warn(f"X has feature names, but {cls} was fitted without feature names",
                          UserWarning, stacklevel=4)
            return
        if names is None:
            warnings.warn(f"X does not have valid feature names, but {cls} was fitted with "
                          "feature names", UserWarning, stacklevel=4)
            return
        if len(fitted) == len(names) and (fitted == names).all():
            return
        unseen = sorted(set(names) - set(fitted))
        missing = sorted(set(fitted) - set(names))
        msg = "The feature names should match those that were passed during fit.\n"
        if unseen:
            msg += "Feature names unseen at fit time:\n" + _name_list(unseen)
        if missing:
            msg += "Feature names seen at fit time, yet now missing:\n" + _name_list(missing)
        if not unseen and not missing:
            msg += "Feature names must be in the same order as they were in fit.\n"
        raise InvalidInputError(msg)

    def _check_n_samples(self, Xd: da.Array) -> None:
        """At least ``n_clusters`` rows (unknown row counts are checked by the first pass)."""
        n = Xd.shape[0]
        if n == n and n < self.n_clusters:  # n is NaN when the row counts are unknown
            raise InvalidInputError(
                f"n_samples={n} should be >= n_clusters={self.n_clusters}: X has fewer "
                f"rows than the clusters asked for."
            )

    def _check_init_array(self, Xd: da.Array):
        """The explicit ``init`` array in the working dtype, or None (a method or callable)."""
        init = self.init
        if isinstance(init, str) or callable(init):
            return None
        return check_centers("init", init, self.n_clusters, Xd.shape[1], Xd.dtype)

    # ------------------------------------------------------------------ #
    # fitted state
    # ------------------------------------------------------------------ #
    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "cluster_centers_")

    def _check_fitted(self) -> None:
        if not hasattr(self, "cluster_centers_"):
            raise not_fitted_error()(
                f"This {type(self).__name__} instance is not fitted yet. Call 'fit' with "
                "appropriate arguments before using this estimator (predict, transform, "
                "score, save)."
            )

    def _predict_prep(self):
        """The row preprocessing of the fitted model (None when there is none)."""
        return make_prep(
            self.cluster_centers_.dtype, metric=getattr(self, "metric", "euclidean"),
            nan_policy=getattr(self, "nan_policy", "raise"),
            standardize=hasattr(self, "scale_"),
            stats=(getattr(self, "mean_", None), getattr(self, "scale_", None)),
        )

    def _centers_work(self) -> np.ndarray:
        """Centres in the space the distances are measured in."""
        work = getattr(self, "_cluster_centers_work", None)
        if work is not None:
            return work
        if hasattr(self, "scale_"):
            return self._predict_prep().to_work(self.cluster_centers_, what="init")
        return self.cluster_centers_

    # ------------------------------------------------------------------ #
    # prediction
    # ------------------------------------------------------------------ #
    def _predict_dask(self, Xd: da.Array, *, check: bool) -> da.Array:
        """Lazy labels of a checked Dask array (one task per row block, reading it)."""
        return map_row_blocks(
            Xd, _predict_block, self._centers_work(), check, dtype=np.int64,
            prep=self._predict_prep(),
            token="kmeans-predict",
        )

    def _defers_final(self, in_mem: bool) -> bool:
        """Whether this fit leaves its last pass to the labels' (see
        :func:`deferred_final_pass`); forgets a pass left by an earlier fit."""
        self.__dict__.pop("_final_pass", None)
        return not in_mem and self.__dict__.get("_defer_final", False)

    def _final_labels_pass(self, Xd: da.Array, weights, centers, *, prep, plan=None):
        """Lazy labels (those of :meth:`_predict_dask`) and the lazy result of
        the last pass over ``centers`` (working space), from one read."""
        from .engine._lloyd import final_pass

        label = (_predict_block, (self._centers_work(), False), {"prep": self._predict_prep()})
        return final_pass(Xd, weights, centers, label,
                          split_every=getattr(self, "split_every", None), prep=prep, plan=plan)

    def predict(self, X, *, storage_options=None):
        """Index of the closest centre for every row.

        Parameters
        ----------
        X : array-like, dask.array.Array, zarr.Array, str or os.PathLike
        storage_options : dict, optional
            fsspec options used when X is a URL.

        Returns
        -------
        labels : ndarray (in-memory input) or lazy dask.array.Array of int64, shape (n_samples,)
            Lazy labels are computed block by block, e.g. by
            ``km.predict(url).to_zarr(out)``; a Dask DataFrame gets a Dask Series.
        """
        Xd, in_mem = self._validate_data(X, reset=False, storage_options=storage_options)
        labels = self._predict_dask(Xd, check=not in_mem)
        return in_memory(labels) if in_mem else _as_frame_labels(X, labels)

    def fit_predict(self, X, y=None, sample_weight=None, **fit_params):
        """Fit, then return ``labels_``."""
        return self.fit(X, sample_weight=sample_weight, **fit_params).labels_

    def transform(self, X, *, storage_options=None):
        """Distance of every row to every centre.

        Euclidean distances (``metric="cosine"``: ``1 - cos``), measured where
        the model clusters (standardised space with ``standardize=True``).

        Parameters
        ----------
        X, storage_options
            As for :meth:`predict`.

        Returns
        -------
        ndarray or dask.array.Array of shape (n_samples, n_clusters)
            NumPy for in-memory input (a DataFrame with ``set_output``), lazy
            otherwise.
        """
        Xd, in_mem = self._validate_data(X, reset=False, storage_options=storage_options)
        if not in_mem:
            _refuse_container_output(self)
        return self._transform(Xd, in_mem)

    def _transform(self, Xd: da.Array, in_mem: bool):
        out = Xd.map_blocks(
            _transform_block, self._centers_work(), not in_mem, prep=self._predict_prep(),
            dtype=self.cluster_centers_.dtype,
            chunks=(Xd.chunks[0], (self.cluster_centers_.shape[0],)), token="kmeans-transform",
        )
        return in_memory(out) if in_mem else out

    def fit_transform(self, X, y=None, sample_weight=None, **fit_params):
        """Fit, then return the distances of X to the centres (see :meth:`transform`)."""
        self.fit(X, sample_weight=sample_weight, **fit_params)
        return self.transform(X, storage_options=fit_params.get("storage_options"))

    def score(self, X, y=None, sample_weight=None, *, storage_options=None):
        """Opposite of the inertia of X with respect to the fitted centres (one pass).

        Parameters
        ----------
        X, storage_options
            As for :meth:`predict`.
        y : ignored
        sample_weight : array-like or dask.array.Array of shape (n_samples,), optional

        Returns
        -------
        float
        """
        Xd, in_mem = self._validate_data(X, reset=False, storage_options=storage_options)
        weights = check_sample_weight(sample_weight, Xd, in_memory=in_mem)
        graph = partial_pass(Xd, weights, [self._centers_work()], check=not in_mem,
                             prep=self._predict_prep(),
                             split_every=getattr(self, "split_every", None),
                             name="kmeans-score")
        (res,) = compute_passes(graph)
        return -float(res["inertia"][0])

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        """Names of the columns of :meth:`transform`: ``"<class name in lower case><j>"``.

        Parameters
        ----------
        input_features : array-like of str, optional
            Only checked against ``feature_names_in_`` (or ``n_features_in_``).

        Returns
        -------
        ndarray of object, shape (n_clusters,)
        """
        self._check_fitted()
        if input_features is not None:
            given = np.asarray(input_features, dtype=object)
            fitted = getattr(self, "feature_names_in_", None)
            if fitted is not None and not np.array_equal(fitted, given):
                raise InvalidInputError(
                    "input_features is not equal to feature_names_in_: got "
                    f"{given.tolist()}, fitted with {fitted.tolist()}."
                )
            if len(given) != self.n_features_in_:
                raise InvalidInputError(
                    "input_features should have length equal to number of features "
                    f"({self.n_features_in_}), got {len(given)}."
                )
        prefix = type(self).__name__.lower()
        return np.asarray([f"{prefix}{j}" for j in range(len(self.cluster_centers_))],
                          dtype=object)

    def __sklearn_tags__(self):
        # only called by scikit-learn's tooling (the base builds scikit-learn's defaults)
        tags = super().__sklearn_tags__()
        omit = getattr(self, "nan_policy", "raise") == "omit"
        tags.input_tags.allow_nan = omit
        # scipy.sparse input: kept sparse; centring (standardize) and NaN rows are refused
        tags.input_tags.sparse = (
            self._sparse_input and not omit and not getattr(self, "standardize", False)
        )
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags

    # ------------------------------------------------------------------ #
    # saved models
    # ------------------------------------------------------------------ #
    def _fitted_to_doc(self) -> dict:
        """Hook: the fitted attributes beyond the centres, as JSON values."""
        return {"n_features_in_": int(self.n_features_in_)}

    def _fitted_from_doc(self, fit: dict) -> None:
        """Hook: set the attributes written by :meth:`_fitted_to_doc` (the centres are set)."""
        self.n_features_in_ = int(fit["n_features_in_"])

    def to_dict(self) -> dict:
        """A JSON-serialisable description of the model (parameters and fitted state)."""
        self._check_fitted()
        from . import __version__

        params = {k: _jsonable(v) for k, v in self.get_params().items() if k != "callback"}
        if not isinstance(params.get("random_state"), int | None):
            params["random_state"] = None
        if callable(getattr(self, "init", None)):
            params["init"] = self._init_methods_default()  # a callable cannot be saved
        fitted = {
            "dtype": str(self.cluster_centers_.dtype),
            "cluster_centers_": self.cluster_centers_.astype(np.float64).tolist(),
            **self._fitted_to_doc(),
        }
        names = getattr(self, "feature_names_in_", None)
        if names is not None:
            fitted["feature_names_in_"] = [str(v) for v in names]
        return {
            "format": self._model_format,
            "format_version": self._model_version,
            "library_version": __version__,
            "params": params,
            "fitted": fitted,
        }

    def _init_methods_default(self) -> str:
        """The ``init`` a saved model gets in place of a callable (the default's)."""
        import inspect

        return inspect.signature(type(self).__init__).parameters["init"].default

    @classmethod
    def from_dict(cls, doc: dict):
        """Rebuild a model written by :meth:`to_dict`."""
        fmt, version = cls._model_format, cls._model_version
        if doc.get("format") != fmt:
            raise InvalidInputError(
                f"model: expected format {fmt!r}, got {doc.get('format')!r}."
            )
        if doc.get("format_version", 0) > version:
            raise InvalidInputError(
                f"model: format_version {doc.get('format_version')} is newer than this "
                f"library understands ({version}); upgrade daskmeans."
            )
        params = dict(doc["params"])
        if isinstance(params.get("init"), list):
            params["init"] = np.asarray(params["init"])
        model = cls(**params)
        fit = doc["fitted"]
        model.cluster_centers_ = np.asarray(fit["cluster_centers_"], dtype=np.float64).astype(
            fit["dtype"]
        )
        if fit.get("feature_names_in_") is not None:
            model.feature_names_in_ = np.asarray(fit["feature_names_in_"], dtype=object)
        model._fitted_from_doc(fit)
        return model

    def save(self, path) -> None:
        """Write the fitted model as plain, versioned JSON (atomically); :meth:`load` reads it."""
        write_json(path, self.to_dict())

    @classmethod
    def load(cls, path):
        """Read a model written by :meth:`save`."""
        path = Path(path)
        try:
            doc = json.loads(path.read_text())
        except FileNotFoundError as exc:
            raise InvalidInputError(f"model: no file at {str(path)!r}.") from exc
        except json.JSONDecodeError as exc:
            raise InvalidInputError(f"model: {str(path)!r} is not valid JSON ({exc}).") from exc
        return cls.from_dict(doc)


# --------------------------------------------------------------------------- #
# For other modules: a fitted model's labels and resolved parameters
# --------------------------------------------------------------------------- #
def lazy_labels(model: KMeansBase, X, *, storage_options=None, check: bool = True) -> da.Array:
    """Labels of every row of X as a lazy Dask array (one task per row block).

    For writers that stream labels (:func:`daskmeans.write_labels`, the
    command line): whatever X is (NumPy, Dask, Zarr, a URL), nothing is
    computed here.

    Parameters
    ----------
    model : KMeans or MiniBatchKMeans
        A fitted estimator (``NotFittedError`` otherwise).
    X : array-like, dask.array.Array, zarr.Array, str or os.PathLike
    storage_options : dict, optional
    check : bool, default=True
        Check every block for NaN and infinity as it is labelled.

    Returns
    -------
    dask.array.Array of int64, shape (n_samples,)
    """
    Xd, _ = model._validate_data(X, reset=False, storage_options=storage_options)
    return model._predict_dask(Xd, check=check)


@contextlib.contextmanager
def deferred_final_pass(model: KMeansBase):
    """Within it, ``model.fit`` may leave its last pass to the labels' pass.

    A fit on lazy data ends with a pass that measures the final centres
    (``inertia_``, ``cluster_sizes_``) and leaves ``labels_`` lazy; a caller
    that then computes ``labels_`` anyway (the command line writes them)
    reads the data twice. Inside this context such a fit makes ``labels_``
    the labels of a pass that also gives that measure, and does not compute
    it: :func:`pending_final_pass` returns the lazy measure, to be computed
    together with ``labels_`` (one read of every block), and
    :func:`complete_final_pass` sets the attributes from it. Only fits of one
    set of centres on Dask input whose last pass is needed defer; after any
    other fit :func:`pending_final_pass` returns None.
    """
    model._defer_final = True
    try:
        yield model
    finally:
        model.__dict__.pop("_defer_final", None)


def pending_final_pass(model: KMeansBase):
    """The lazy result of a fit's deferred last pass (a ``Delayed``), or None;
    see :func:`deferred_final_pass`."""
    pending = model.__dict__.get("_final_pass")
    return None if pending is None else pending[0]


def complete_final_pass(model: KMeansBase, result) -> None:
    """Set the attributes of a fit whose last pass was deferred, from the
    computed result of :func:`pending_final_pass`."""
    _, finish = model.__dict__.pop("_final_pass")
    finish(result)


def labels_and_measure(model: KMeansBase, X, *, sample_weight=None, storage_options=None):
    """Lazy labels of X and the lazy measure of the model's centres on X, from one read.

    For writers that also report how well the centres fit the data they
    label (``daskmeans update``): computed together (the labels written by a
    store computed with the measure, as :func:`daskmeans.cli._common.write_labels`
    does with ``also``), every block of X is read once.

    Parameters
    ----------
    model : KMeans or MiniBatchKMeans
        A fitted estimator.
    X : dask.array.Array, zarr.Array, str or os.PathLike
    sample_weight : dask.array.Array of shape (n_samples,), optional
    storage_options : dict, optional

    Returns
    -------
    labels : dask.array.Array of int64, shape (n_samples,)
        Those of ``model.predict(X)``.
    measure : dask.delayed.Delayed
        A dict: ``"inertia"`` (array of one value, measured as the model
        measures ``inertia_``), ``"counts"`` (total weight per cluster) and,
        with ``nan_policy="omit"``, ``"n_omitted"``.
    """
    from ._validation import check_sample_weight

    model._check_fitted()
    Xd, _ = model._validate_data(X, reset=False, storage_options=storage_options)
    weights = check_sample_weight(sample_weight, Xd, in_memory=False)
    return model._final_labels_pass(Xd, weights, model._centers_work(),
                                    prep=model._predict_prep())


def resolved_params(model: KMeansBase) -> dict:
    """Check a model's parameters; return the values it resolves from them.

    Returns
    -------
    dict
        ``"tol"`` (float) and, for estimators with ``n_init``, ``"n_init"``
        (``"auto"`` resolved by scikit-learn's rule).
    """
    model._validate_params()
    out = {"tol": model._tol}
    if hasattr(model, "_n_init"):
        out["n_init"] = model._n_init
    return out


def in_memory(result: da.Array) -> np.ndarray:
    """Compute a result for NumPy input, with BLAS limited as in the passes
    (two BLAS threads inside each of dask's threads oversubscribe the cores)."""
    (out,) = compute_passes(result)
    return out


def _as_frame_labels(X, labels):
    """Labels of a Dask DataFrame as a Dask Series on its index; others unchanged."""
    from .io._tables import frame_labels, is_dask_frame

    return frame_labels(X, labels) if is_dask_frame(X) else labels


def _refuse_container_output(model) -> None:
    """``set_output(transform="pandas"|"polars")`` is for in-memory input only:
    wrapping lazy distances in a DataFrame would compute all of them at once."""
    config = output_container(model)
    if config != "default":
        raise InvalidInputError(
            f"set_output(transform={config!r}) applies to in-memory input; the distances "
            "of a Dask or Zarr input stay a lazy Dask array. Use set_output(transform="
            "'default') for it, or wrap the result yourself (e.g. "
            "dask.dataframe.from_dask_array)."
        )


def _feature_names(X):
    """Column names of a (pandas, Dask, ...) DataFrame when all are strings, else None."""
    if isinstance(X, np.ndarray | da.Array) or not hasattr(X, "columns"):
        return None
    try:
        names = np.asarray(list(X.columns), dtype=object)
    except TypeError:  # pragma: no cover - columns that are not a sequence
        return None
    if len(names) == 0:
        return None
    types = sorted({type(v).__qualname__ for v in names})
    if len(types) > 1 and "str" in types:
        raise InvalidInputTypeError(
            "Feature names are only supported if all input features have string names, "
            f"but your input has {types} as feature name / column name types. Convert "
            "them all to strings (X.columns = X.columns.astype(str)) to keep them, or "
            "to another single type to drop them."
        )
    return names if types == ["str"] else None


def _name_list(names) -> str:
    shown = [f"- {v}\n" for v in names[:5]]
    return "".join(shown) + ("- ...\n" if len(names) > 5 else "")


def _jsonable(value):
    """Parameters as JSON values (arrays become lists; other objects their repr)."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if hasattr(value, "__array__"):
        return np.asarray(value).tolist()
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return repr(value)
