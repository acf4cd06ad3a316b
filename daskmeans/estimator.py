"""The scikit-learn compatible :class:`KMeans` estimator."""

from __future__ import annotations

import time
from numbers import Integral, Real

import dask.array as da
import numpy as np

from . import kernels as _kernels
from ._base import COMMON_PARAMETERS, KMeansBase, _as_frame_labels, _jsonable, in_memory
from ._errors import InvalidInputError
from ._persist import persist_inputs, resolve_persist, wait_persisted
from ._rng import as_seed_sequence
from ._sparse import is_sparse_input
from ._validation import (
    ArrayLike,
    Boolean,
    Callable,
    Interval,
    NoneValue,
    Options,
    check_centers,
    check_sample_weight,
)
from .engine import _init as _init_mod
from .engine._init import init_centers, small_data
from .engine._inline import direct_map
from .engine._lloyd import (
    LloydState,
    apply_final,
    finalize,
    fit_plan,
    lloyd,
    warn_if_degenerate,
)
from .engine._prep import PREP_PARAMS, ZeroRowsError, make_prep
from .engine._prep_passes import count_zero_rows, fitted_prep, resolve_initial_prep
from .engine._pruned import pruned_lloyd, use_pruned

__all__ = ["KMeans"]

_INIT_METHODS = ("auto", "k-means||", "k-means++", "random", "hierarchical")
_ALGORITHMS = ("auto", "lloyd", "pruned", "elkan")
MODEL_FORMAT = "daskmeans.KMeans"
MODEL_VERSION = 1


class KMeans(KMeansBase):
    """K-means clustering for NumPy, Dask and Zarr data, one pass per iteration.

    Every Lloyd iteration reads the data once: a NumPy kernel turns each row
    block into per-centre sums, weights and inertia, and a tree reduction
    with fan-in ``split_every`` combines them into the new centres. Data given
    as a Zarr path or URL is streamed block by block and never gathered.

    Parameters
    ----------
    n_clusters : int, default=8
        Number of clusters k.
    init : {"auto", "k-means||", "k-means++", "random", "hierarchical"}, array of shape \
(k, d) or callable, default="auto"
        ``"auto"``: ``"hierarchical"`` from 4,096 centres on dense Euclidean
        data without ``standardize`` or ``nan_policy="omit"`` (and not small
        in-memory data, see below), where k-means|| costs more than many
        Lloyd iterations; ``"k-means||"`` otherwise.
        ``"k-means||"``: scalable k-means++ (Bahmani et al., 2012), with
        ``init_rounds`` passes that each sample about ``oversampling_factor * k``
        candidates, one pass weighting the candidates, then weighted
        k-means++ and Lloyd on the candidates in memory. On small NumPy
        or SciPy sparse input (no more rows than the candidates,
        ``1 + init_rounds * oversampling_factor * k``, or at most 8 MiB with
        ``n_samples * k <= 4,000,000``) it degenerates into greedy k-means++
        on all rows, as scikit-learn seeds, in one pass. Dask and Zarr input
        is never gathered and always runs the k-means|| passes (other
        centres for the same data).
        ``"k-means++"``: greedy k-means++ on a uniform sample of
        ``max(10_000, 50 k)`` rows (all rows when the data is smaller), drawn
        in one pass. ``"random"``: k distinct rows drawn in one pass with
        probability proportional to their weight. A callable is called as
        ``init(X, n_clusters, random_state)`` with the (Dask) array and a
        ``numpy.random.RandomState``. ``"hierarchical"``: the centres of a
        :class:`~daskmeans.HierarchicalKMeans` fit (about ``sqrt(k)`` coarse
        cells, 5 fine iterations), whose memory and time grow gently with k
        (dense Euclidean data without ``standardize`` or ``nan_policy="omit"``).
    n_init : "auto" or int, default="auto"
        Number of initialisations; the one with the lowest inertia is kept.
        All of them iterate in the same passes over the data. ``"auto"`` is 1,
        except 10 for ``"random"`` and callables, as in scikit-learn.
    max_iter : int, default=300
        Maximum Lloyd iterations per initialisation.
    tol : float, default=1e-4
        Convergence when the total squared centre shift is at most ``tol``
        times the mean per-feature variance of X.
    oversampling_factor : float, default=2.0
        k-means|| samples about ``oversampling_factor * n_clusters`` points per round.
    init_rounds : int, default=5
        Rounds (passes) of k-means||.
    verbose : int, default=0
        Print one line per initialisation round and Lloyd iteration.
    random_state : int, RandomState, Generator, SeedSequence or None, default=None
        Seed of every random draw. Draws are keyed by block index, so the
        result does not depend on the scheduler or the number of workers.
    split_every : int, optional
        Fan-in of the reduction tree (default: dask's config or 8).
    callback : callable, optional
        Called after every initialisation round and Lloyd iteration with a
        dict: ``phase``, ``iteration``, ``max_iter``, ``inertia``, ``shift``,
        ``n_passes``.
    metric : {"euclidean", "cosine"}, default="euclidean"
        ``"cosine"``: spherical k-means. Rows are L2-normalised block by
        block as they are read (never stored), centres are renormalised to
        unit length after every update (k-means|| included), labels maximise
        the cosine similarity, ``inertia_`` is the weighted sum of
        ``1 - cos`` and ``transform`` returns ``1 - cos``. Rows of zeros are
        an error; an ``init`` array is normalised first.
    standardize : bool, default=False
        Centre every feature and divide it by its standard deviation, block
        by block inside the passes (no scaled copy). Clustering happens in
        the standardised space (``inertia_`` and ``transform`` are measured
        there); ``cluster_centers_``, an ``init`` array and the data given to
        ``predict``/``transform`` are in the original units. Constant
        features get scale 1. The statistics come from the sampling pass of
        ``init="random"`` or ``"k-means++"``; k-means||, an ``init`` array
        and a callable need them before their first pass, so one statistics
        pass is added (counted in ``n_passes_``).
    nan_policy : {"raise", "omit"}, default="raise"
        ``"omit"``: rows holding a NaN are skipped in every pass (weight 0:
        initialisation, Lloyd, inertia and the variance behind ``tol``);
        their label is -1 and their distances NaN. Infinity stays an error.
        No extra pass and no filtered copy.
    persist : bool or "auto", default=False
        Load the data into the memory of the cluster (or of this process when
        no ``distributed.Client`` is active) once, before the passes, instead
        of reading it from storage in every pass. ``"auto"`` persists when the
        data takes at most 40 % of the workers' total memory limit (25 % of the
        available memory without a client). The result does not change.
    algorithm : {"auto", "lloyd", "pruned", "elkan"}, default="auto"
        ``"lloyd"`` computes every distance in every iteration. ``"pruned"``
        keeps, for every row, its label and a lower bound on its distance to
        the other centres (Hamerly's bounds, 8 bytes a row, kept per block
        between passes) and skips the rows whose label provably cannot
        change: the labels and centres of ``"lloyd"`` (rows at a near-tie are
        labelled on plain Lloyd's own sub-blocks of products), much less work once
        few rows change clusters (see the large-k guide). ``"elkan"`` is
        accepted as a synonym of ``"pruned"`` for scikit-learn users.
        ``"auto"`` prunes from 1,024 centres where the kernels compare rows
        with centres by column tiles, from 4,096 elsewhere
        (:func:`daskmeans.engine._pruned.auto_min_k`), when one initialisation
        runs (several ``n_init`` candidates share plain Lloyd's passes).

    Attributes
    ----------
    cluster_centers_ : ndarray of shape (n_clusters, n_features)
        In float32 for float32 (or float16) data, float64 otherwise.
    labels_ : ndarray or dask.array.Array of shape (n_samples,)
        NumPy for NumPy input; lazy Dask array otherwise.
    inertia_ : float
        Weighted sum of squared distances to the closest final centre.
    n_iter_ : int
        Lloyd iterations of the kept initialisation.
    inertia_history_ : list of float
        Inertia of the centres used in each iteration.
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        Column names of a pandas or Dask DataFrame given to ``fit`` (only
        then); ``predict``, ``transform`` and ``score`` check them, and
        ``get_feature_names_out`` names the distances ``kmeans0``, ``kmeans1``, ...
    n_passes_ : int
        Passes over the data made by ``fit``, initialisation included.
    cluster_sizes_ : ndarray of shape (n_clusters,)
        Total sample weight of every final cluster.
    timings_ : dict
        Seconds spent in "init", "lloyd" and "finalize".
    mean_, scale_ : ndarray of shape (n_features,)
        With ``standardize=True``: the mean and standard deviation (1 for
        constant features) of the non-omitted rows, unweighted.
    n_omitted_ : int
        Rows skipped for holding NaN (``nan_policy="omit"``), else 0.

    Examples
    --------
    >>> import numpy as np
    >>> from daskmeans import KMeans
    >>> X = np.array([[1.0, 2], [1, 4], [1, 0], [10, 2], [10, 4], [10, 0]])
    >>> km = KMeans(n_clusters=2, random_state=0).fit(X)
    >>> sorted(km.cluster_centers_.tolist())
    [[1.0, 2.0], [10.0, 2.0]]
    """

    _parameter_table = {
        **COMMON_PARAMETERS,
        "init": [Options(*_INIT_METHODS), ArrayLike("an array of shape (n_clusters, n_features)"),
                 Callable()],
        "n_init": [Options("auto"), Interval(Integral, 1)],
        "oversampling_factor": [Interval(Real, 0, low_open=True)],
        "init_rounds": [Interval(Integral, 1)],
        "split_every": [Interval(Integral, 2), NoneValue()],
        "callback": [Callable(), NoneValue()],
        "metric": [Options(*PREP_PARAMS["metric"])],
        "standardize": [Boolean()],
        "nan_policy": [Options(*PREP_PARAMS["nan_policy"])],
        "persist": [Boolean(), Options("auto")],
        "algorithm": [Options(*_ALGORITHMS)],
    }
    _model_format = MODEL_FORMAT
    _model_version = MODEL_VERSION

    def __init__(
        self,
        n_clusters=8,
        *,
        init="auto",
        n_init="auto",
        max_iter=300,
        tol=1e-4,
        oversampling_factor=2.0,
        init_rounds=5,
        verbose=0,
        random_state=None,
        split_every=None,
        callback=None,
        metric="euclidean",
        standardize=False,
        nan_policy="raise",
        persist=False,
        algorithm="auto",
    ):
        self.n_clusters = n_clusters
        self.init = init
        self.n_init = n_init
        self.max_iter = max_iter
        self.tol = tol
        self.oversampling_factor = oversampling_factor
        self.init_rounds = init_rounds
        self.verbose = verbose
        self.random_state = random_state
        self.split_every = split_every
        self.callback = callback
        self.metric = metric
        self.standardize = standardize
        self.nan_policy = nan_policy
        self.persist = persist
        self.algorithm = algorithm

    # ------------------------------------------------------------------ #
    # parameters
    # ------------------------------------------------------------------ #
    def _resolve_params(self) -> None:
        self._resolve_n_init(10)
        self._nan_omit = self.nan_policy == "omit"

    def _fingerprint(self, X: da.Array, weights) -> dict:
        params = {
            k: v
            for k, v in self.get_params().items()
            if k not in ("verbose", "callback", "persist")
        }
        params = {k: _jsonable(v) for k, v in params.items()}
        return {
            "params": params,
            "data": {
                "name": X.name,
                "shape": list(X.shape),
                "dtype": str(X.dtype),
                "row_chunks": list(X.chunks[0]),
                "weights": None if weights is None else weights.name,
            },
        }

    # ------------------------------------------------------------------ #
    # fitting
    # ------------------------------------------------------------------ #
    def fit(self, X, y=None, sample_weight=None, *, checkpoint=None, storage_options=None):
        """Compute k-means clustering.

        Parameters
        ----------
        X : array-like, dask.array.Array, zarr.Array, str or os.PathLike of shape \
(n_samples, n_features)
            Training data; a string or path is opened as a Zarr array.
        y : ignored
        sample_weight : array-like or dask.array.Array of shape (n_samples,), optional
            Non-negative weights; a weight w acts like w copies of the row.
        checkpoint : str or os.PathLike, optional
            Directory where the fit state is saved after initialisation and
            after every Lloyd iteration; a later fit with the same data and
            parameters resumes from it and gives a bitwise identical result.
        storage_options : dict, optional
            fsspec options (credentials, ``endpoint_url``, ...) used when X is
            a URL. Given to ``fit`` rather than to the constructor: they
            describe where the data lives, not the model, and stay out of
            ``get_params``, ``clone`` and saved models.

        Returns
        -------
        self
        """
        self._validate_params()
        # a checkpoint recognises NumPy data by a hash of it; otherwise no hash is needed
        Xd, in_mem = self._validate_data(
            X, reset=True, storage_options=storage_options, content_name=checkpoint is not None,
        )
        n, d = Xd.shape
        k = self.n_clusters
        self._check_n_samples(Xd)  # unknown n (NaN): init checks it from its first pass
        weights = check_sample_weight(sample_weight, Xd, in_memory=in_mem,
                                      content_name=checkpoint is not None)
        if (self.standardize or self.nan_policy == "omit") and is_sparse_input(Xd):
            raise InvalidInputError(
                f"sparse X supports neither standardize=True nor nan_policy='omit' (centring "
                f"would make it dense); got standardize={self.standardize!r}, "
                f"nan_policy={self.nan_policy!r}."
            )
        init_array = self._check_init_array(Xd)
        lazy_check = not in_mem
        seq = as_seed_sequence(self.random_state)
        self._prep_fit = make_prep(
            Xd.dtype, metric=self.metric, standardize=self.standardize,
            nan_policy=self.nan_policy,
        )
        timings = {"init": 0.0, "lloyd": 0.0, "finalize": 0.0, "persist": 0.0}
        Xp, wp = Xd, weights  # what the passes read (persisted blocks when asked for)
        nbytes = Xd.nbytes + (0 if weights is None else weights.nbytes)
        if resolve_persist(self.persist, nbytes, in_memory=in_mem):
            t0 = time.perf_counter()
            Xp, wp = persist_inputs(Xd, weights)
            wait_persisted(Xp, wp)
            timings["persist"] = time.perf_counter() - t0

        ckpt = None
        state = None
        if checkpoint is not None:
            from .engine._checkpoint import Checkpoint

            ckpt = Checkpoint(checkpoint, self._fingerprint(Xd, weights))
            state = ckpt.load()
        t0 = time.perf_counter()
        if state is None:
            state = self._initial_state(Xp, wp, seq, init_array, lazy_check,
                                        numpy_input=in_mem)
            if ckpt is not None:
                ckpt.save(state)
            lazy_check = lazy_check and state.n_passes == 0
        else:
            lazy_check = False
        timings["init"] = time.perf_counter() - t0
        prep = self._prep_fit = fitted_prep(self._prep_fit, state)

        t0 = time.perf_counter()
        run = lloyd
        # sparse blocks: plain Lloyd (the pruning kernels take dense blocks)
        if (use_pruned(self.algorithm, k, len(state.centers), dtype=Xd.dtype,
                       n_features=Xd.shape[1])
                and not is_sparse_input(Xd)):
            run = pruned_lloyd
        state = self._guard_zero_rows(Xd, run)(
            Xp, wp, state, max_iter=self.max_iter, tol=self._tol,
            split_every=self.split_every, check_first=lazy_check, callback=self.callback,
            on_iteration=None if ckpt is None else ckpt.save, verbose=self.verbose,
            prep=prep,
        )
        timings["lloyd"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        labels_now = None
        if (self._defers_final(in_mem) and len(state.centers) == 1 and not state.strict[0]
                and Xp is Xd and wp is weights):
            # the caller computes labels_ anyway: their pass gives the final inertia and
            # sizes (see daskmeans._base.deferred_final_pass)
            self._set_prep_fitted(state.centers[0], prep, state)
            labels, result = self._final_labels_pass(Xd, weights, state.centers[0], prep=prep,
                                                     plan=fit_plan(Xd, state.centers))

            def finish(res, state=state):
                self._set_final(apply_final(state, [0], res), 0)
                warn_if_degenerate(self.cluster_sizes_, k)

            self._final_pass = (result, finish)
            self.n_iter_ = int(state.n_iter[0])
            self.inertia_history_ = list(state.history[0])
            self.labels_ = _as_frame_labels(X, labels)
            timings["finalize"] = time.perf_counter() - t0
            self.timings_ = timings
            return self
        if in_mem and prep is None and len(state.centers) == 1:
            # NumPy input: labels_ is computed now anyway; the same pass gives the
            # final inertia and sizes that finalize would need a pass of its own for
            labels_now = _final_labels(Xd, wd=weights, state=state)
        else:
            state = finalize(Xp, wp, state, split_every=self.split_every, prep=prep)
        del Xp, wp  # releases persisted blocks; labels_ below reads from the source
        best = int(np.argmin(state.inertia))
        self._set_prep_fitted(state.centers[best], prep, state)
        self._set_final(state, best)
        warn_if_degenerate(self.cluster_sizes_, k)
        if labels_now is not None:
            self.labels_ = labels_now
        else:
            labels = self._predict_dask(Xd, check=False)
            self.labels_ = in_memory(labels) if in_mem else _as_frame_labels(X, labels)
        timings["finalize"] = time.perf_counter() - t0
        self.timings_ = timings
        return self

    def _set_final(self, state: LloydState, best: int) -> None:
        """The fitted attributes of group ``best`` once its last pass is made."""
        self.n_omitted_ = int(state.n_omitted)
        self.inertia_ = float(state.inertia[best])
        self.n_iter_ = int(state.n_iter[best])
        self.inertia_history_ = list(state.history[best])
        self.cluster_sizes_ = np.asarray(state.sizes[best], dtype=np.float64)
        self.n_passes_ = int(state.n_passes)

    def _initial_state(self, Xd, weights, seq, init_array, check, *,
                       numpy_input: bool = False) -> LloydState:
        prep = getattr(self, "_prep_fit", None)
        if prep is None:
            return self._initial_state_core(Xd, weights, seq, init_array, check, None,
                                            numpy_input)
        return self._guard_zero_rows(Xd, self._initial_state_core)(
            Xd, weights, seq, init_array, check, prep, numpy_input
        )

    def _initial_state_core(self, Xd, weights, seq, init_array, check, prep,
                            numpy_input=False) -> LloydState:
        k = self.n_clusters
        g = self._n_init
        init = self._init_method(Xd, prep, numpy_input)
        # standardize: resolve the statistics first when the initialisation needs them
        prep, n_stats, tol_abs = resolve_initial_prep(
            prep, Xd, weights, init, check=check, split_every=self.split_every,
            tol=self._tol,
        )
        check = check and n_stats == 0
        if isinstance(init, str) and init == "hierarchical":
            return self._hierarchical_init(Xd, weights, seq, g, prep, tol_abs, n_stats)
        if init_array is not None:
            C = init_array if prep is None else prep.to_work(init_array, what="init")
            return _start_state([C], prep, tol_abs, n_stats)
        if callable(self.init):
            rs = np.random.RandomState(seq.generate_state(1)[0])
            Xin = Xd
            centers = []
            for _ in range(g):
                C = self.init(Xin, k, rs)
                C = check_centers("init (callable result)", C, k, Xd.shape[1], Xd.dtype)
                centers.append(C if prep is None else prep.to_work(C, what="init"))
            return _start_state(centers, prep, tol_abs, n_stats)
        pending = prep is not None and prep.pending
        centers, n_passes, moments = init_centers(
            Xd, weights, k, init, seq, g,
            oversampling_factor=self.oversampling_factor, init_rounds=self.init_rounds,
            check=check, split_every=self.split_every, callback=self.callback,
            verbose=self.verbose, prep=prep, in_memory=numpy_input,
        )
        if pending:
            # the sampling pass measured the raw statistics: same prep, same units
            prep = prep.resolve(moments)
            moments = None if prep.normalize else prep.scaled_moments(moments)
        if moments is not None:
            count, _, m2 = moments
            tol_abs = float(np.mean(m2 / count) * self._tol) if count else 0.0
        centers = [np.ascontiguousarray(c, dtype=Xd.dtype) for c in centers]
        return _start_state(centers, prep, tol_abs, n_stats + n_passes)

    def _init_method(self, Xd, prep, numpy_input: bool):
        """``init`` with ``"auto"`` resolved: ``"hierarchical"`` from
        :data:`~daskmeans.engine._init.HIERARCHICAL_INIT_MIN_K` centres on dense
        Euclidean data without ``standardize`` or ``nan_policy="omit"`` (except
        small in-memory data, which k-means|| seeds by k-means++ on all rows),
        ``"k-means||"`` otherwise."""
        init = self.init
        if not (isinstance(init, str) and init == "auto"):
            return init
        k = self.n_clusters
        if (k >= _init_mod.HIERARCHICAL_INIT_MIN_K and prep is None
                and not is_sparse_input(Xd)
                and not (numpy_input and small_data(Xd, k, self.oversampling_factor,
                                                    self.init_rounds))):
            return "hierarchical"
        return "k-means||"

    def _hierarchical_init(self, Xd, weights, seq, g, prep, tol_abs, n_stats) -> LloydState:
        """Initial centres of ``init="hierarchical"``: one two-level fit per group."""
        from .hierarchical import HierarchicalKMeans

        if prep is not None or is_sparse_input(Xd):
            raise ValueError(
                "init='hierarchical' needs dense data, metric='euclidean', standardize=False "
                "and nan_policy='raise'; use init='k-means++' otherwise."
            )
        centers, n_passes = [], 0
        for s in seq.spawn(g):
            # the start measured by benchmarks/bench_init.py: plain two levels
            hk = HierarchicalKMeans(self.n_clusters, coarse_iter=10, max_iter=5,
                                    n_probe=1, refine_iter=0, tol=self._tol,
                                    random_state=int(s.generate_state(1)[0]),
                                    split_every=self.split_every)
            hk.fit(Xd, sample_weight=weights)
            centers.append(np.ascontiguousarray(hk.cluster_centers_, dtype=Xd.dtype))
            n_passes += hk.n_passes_
        return _start_state(centers, prep, tol_abs, n_stats + n_passes)

    def _guard_zero_rows(self, Xd, func):
        """``func`` with a block's zero-row error replaced by one naming the total count."""
        prep = getattr(self, "_prep_fit", None)
        if prep is None or not prep.normalize:
            return func

        def run(*args, **kwargs):
            try:
                return func(*args, **kwargs)
            except ZeroRowsError:
                n_zero = count_zero_rows(Xd, self._prep_fit)
            raise InvalidInputError(
                f"X contains {n_zero} row(s) of zeros (after centring, with standardize); "
                "metric='cosine' needs rows with a non-zero norm. Remove them, or set them "
                "to NaN with nan_policy='omit'."
                if self.standardize else
                f"X contains {n_zero} row(s) of zeros; metric='cosine' needs rows with a "
                "non-zero norm. Remove them, or set them to NaN with nan_policy='omit'."
            )

        return run

    def _set_prep_fitted(self, centers, prep, state) -> None:
        """Fitted centres in original units, and the preprocessing attributes."""
        self.n_omitted_ = int(state.n_omitted)
        if prep is None or prep.scale is None:
            self.cluster_centers_ = centers
            self.__dict__.pop("_cluster_centers_work", None)
            for name in ("mean_", "scale_"):
                self.__dict__.pop(name, None)
            return
        self._cluster_centers_work = centers
        self.cluster_centers_ = prep.to_original(centers)
        self.mean_ = np.asarray(prep.center, dtype=np.float64)
        self.scale_ = np.asarray(prep.scale, dtype=np.float64)

    # ------------------------------------------------------------------ #
    # saved models
    # ------------------------------------------------------------------ #
    def _fitted_to_doc(self) -> dict:
        out = {
            "inertia_": self.inertia_,
            "n_iter_": self.n_iter_,
            "n_features_in_": self.n_features_in_,
            "inertia_history_": list(self.inertia_history_),
            "cluster_sizes_": np.asarray(self.cluster_sizes_).tolist(),
            "n_passes_": getattr(self, "n_passes_", None),
            "n_omitted_": int(getattr(self, "n_omitted_", 0)),
        }
        if hasattr(self, "scale_"):
            out["mean_"] = np.asarray(self.mean_).tolist()
            out["scale_"] = np.asarray(self.scale_).tolist()
            out["cluster_centers_work"] = np.asarray(self._centers_work(), np.float64).tolist()
        return out

    def _fitted_from_doc(self, fit: dict) -> None:
        self.inertia_ = float(fit["inertia_"])
        self.n_iter_ = int(fit["n_iter_"])
        self.n_features_in_ = int(fit["n_features_in_"])
        self.inertia_history_ = [float(v) for v in fit["inertia_history_"]]
        self.cluster_sizes_ = np.asarray(fit["cluster_sizes_"], dtype=np.float64)
        if fit.get("n_passes_") is not None:
            self.n_passes_ = int(fit["n_passes_"])
        self.n_omitted_ = int(fit.get("n_omitted_", 0))
        if fit.get("scale_") is not None:
            self.mean_ = np.asarray(fit["mean_"], dtype=np.float64)
            self.scale_ = np.asarray(fit["scale_"], dtype=np.float64)
            self._cluster_centers_work = np.asarray(
                fit["cluster_centers_work"], dtype=np.float64
            ).astype(self.cluster_centers_.dtype)


def _label_dist_block(X, centers):
    labels, sq = _kernels.assign(X, centers, return_distances=True)
    return np.stack([labels.astype(np.float64), sq], axis=1)


def _final_labels(Xd: da.Array, *, wd, state: LloydState) -> np.ndarray:
    """Labels for the final centres of a single group, in one pass.

    Unless the centres stopped moving exactly (their last inertia is then
    final already), also sets the group's inertia and cluster sizes from the
    same distances and counts the pass, in place of
    :func:`daskmeans.engine._lloyd.finalize`'s pass.
    """
    C = state.centers[0]
    plan = _kernels.choose_plan(Xd.dtype, len(C), Xd.shape[1], Xd.shape[0])
    out = direct_map(Xd, _label_dist_block, C, plan=plan)  # small data: no graph
    if out is None:
        out = in_memory(Xd.map_blocks(_label_dist_block, C, dtype=np.float64,
                                       chunks=(Xd.chunks[0], (2,)), token="kmeans-labels"))
    labels = out[:, 0].astype(np.int64)
    if not state.strict[0]:
        w = None if wd is None else in_memory(wd)
        sq = out[:, 1]
        state.inertia[0] = float(sq.sum() if w is None else sq @ w)
        state.sizes[0] = np.bincount(labels, weights=w, minlength=len(C)).astype(np.float64)
        state.n_passes += 1
    return labels


def _start_state(centers, prep, tol_abs, n_passes) -> LloydState:
    state = LloydState.start(centers, tol_abs=tol_abs, n_passes=n_passes)
    if prep is not None and prep.scale is not None:
        state.prep_stats = {"mean": prep.center, "scale": prep.scale}
    return state

