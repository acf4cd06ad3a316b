"""The scikit-learn compatible :class:`MiniBatchKMeans` estimator.

The fold it runs over the row blocks (state, steps, block readers, the chain
of tasks) is :mod:`daskmeans.engine._fold`; :mod:`daskmeans.engine._fold_pass`
runs its passes.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import replace
from numbers import Integral, Real

import dask.array as da
import numpy as np

from ._base import COMMON_PARAMETERS, KMeansBase, _as_frame_labels, in_memory
from ._rng import as_seed_sequence, block_rng
from ._validation import (
    ArrayLike,
    Boolean,
    Callable,
    Interval,
    NoneValue,
    Options,
    check_sample_weight,
    has_unknown_rows,
)
from .engine._fold import ORDER_KEY, FoldParams, FoldState, block_readers
from .engine._fold_pass import run_pass
from .engine._graph import compute_passes
from .engine._lloyd import partial_pass, warn_if_degenerate
from .engine._prep import make_prep
from .kernels import choose_plan

__all__ = ["MiniBatchKMeans"]

MODEL_FORMAT = "daskmeans.MiniBatchKMeans"
MODEL_VERSION = 1

_INIT_METHODS = ("k-means++", "random")


class MiniBatchKMeans(KMeansBase):
    """Mini-batch k-means for NumPy, Dask and Zarr data, with ``partial_fit``.

    Parameters and semantics follow scikit-learn's
    :class:`~sklearn.cluster.MiniBatchKMeans`. ``fit`` makes at most
    ``max_iter`` passes over the data; in every pass the row blocks are
    visited in a random order and each block's rows are shuffled and cut
    into mini-batches of at most ``batch_size`` rows. On Dask and Zarr input
    the pass is a chain of tasks that hands the small state (centres,
    counts, step counter) from block to block on the workers, while later
    blocks are read in parallel (on dask's local threaded scheduler the same
    steps and reads run on up to ``num_workers`` threads without the scheduler, see
    ``docs/family.md``). With
    ``compute_labels=True`` (default) the
    fitted ``inertia_`` is the exact inertia of the final centres (one more
    pass).

    Parameters
    ----------
    n_clusters : int, default=8
    init : {"k-means++", "random"}, callable or array of shape (k, d), default="k-means++"
        Seeding on ``init_size`` rows drawn from the first blocks of the
        first pass (at least 4 blocks, more if they hold too few rows).
        A callable is called as ``init(X_sample, n_clusters, random_state)``.
    max_iter : int, default=100
        Maximum number of passes over the data.
    batch_size : int, default=1024
        Largest number of rows per mini-batch (batches never straddle blocks).
    tol : float, default=0.0
        Stop when the squared movement of the centres in one step is at most
        ``tol`` times the mean per-feature variance, estimated on the initial
        sample. 0 disables this rule.
    max_no_improvement : int or None, default=10
        Stop after this many consecutive steps without improvement of the
        exponentially smoothed mean batch inertia; None disables it.
    init_size : int, optional
        Rows the initialisation draws; scikit-learn's rule: by default
        ``3 * batch_size`` (``3 * n_clusters`` when that is smaller than
        ``n_clusters``); a value below ``n_clusters`` warns and becomes
        ``3 * n_clusters``; never more than the rows of the data.
    n_init : "auto" or int, default="auto"
        Initialisations tried on the sample; the one with the smallest
        inertia on another draw of ``init_size`` rows is kept. "auto" is 3
        for "random" and callables, 1 otherwise.
    reassignment_ratio : float, default=0.01
        Centres whose running weight is below this fraction of the largest
        are moved to random rows of a batch (checked every ``10 * k`` rows).
    random_state : int, RandomState, Generator, SeedSequence or None, default=None
    verbose : int, default=0
        Print one line per pass.
    compute_labels : bool, default=True
        After ``fit`` and every ``partial_fit``, compute ``labels_`` and the
        exact ``inertia_`` of the data just seen with the final centres (one
        more pass over a Dask or Zarr input; NumPy batches are in memory).
        False: ``fit`` sets ``inertia_`` to the smoothed batch estimate, and
        neither is set by ``partial_fit``.
    nan_policy : {"raise", "omit"}, default="raise"
        ``"omit"``: rows holding a NaN are dropped block by block before the
        mini-batches are cut (never a filtered copy of the data); they get
        label -1 and distance NaN in ``predict``/``transform``, and
        ``n_omitted_`` counts them after ``fit``.
    init_lloyd_iter : int, default=0
        Not in scikit-learn. Lloyd iterations (at most; they stop once the
        centres no longer move) run on the in-memory initial sample of
        ``init_size`` rows after every seeding candidate is drawn, before the
        candidates are compared on the validation rows and the fold starts.
        The running counts still start at zero, so the data's rows are
        counted once. 0 (default) is scikit-learn's initialisation. About ten
        iterations on a sample of ~10,000 rows cost a small fraction of a
        pass and, with ``n_init`` of 2 or 3, bring one pass within 1 % of a
        converged exact fit on overlapping clusters where scikit-learn's
        initialisation lands 2-3 % above it (``benchmarks/bench_minibatch.py``,
        results in ``benchmarks/RESULTS.md``).
        An explicit ``init`` array is used as given.

    Attributes
    ----------
    cluster_centers_ : ndarray of shape (n_clusters, n_features)
    counts_ : ndarray of shape (n_clusters,)
        Running weight received by every centre (kept by ``save``).
    labels_ : ndarray or dask.array.Array of shape (n_samples,)
        With ``compute_labels``, after ``fit`` or ``partial_fit``: labels of the
        data just seen; NumPy for NumPy input, lazy otherwise.
    inertia_ : float
        After ``fit``: inertia of the final centres over the data (with
        ``compute_labels=False``, the smoothed estimate of the last pass);
        after ``partial_fit`` with ``compute_labels``: that of the batch.
    n_iter_ : int
        Passes made by ``fit`` (the last one may stop early).
    n_steps_ : int
        Mini-batch steps made so far (``fit`` and ``partial_fit``).
    n_passes_ : int
        Reads of the data made by the last ``fit`` (the final inertia pass
        included, with ``compute_labels``).
    inertia_history_ : list of float
        After every pass of ``fit``: the smoothed mean batch inertia times
        n_samples, an estimate of the inertia during the pass.
    cluster_sizes_ : ndarray of shape (n_clusters,)
        After ``fit``: total weight of every final cluster.
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        Column names of a pandas or Dask DataFrame given to ``fit``.
    n_omitted_ : int
        After ``fit`` with ``compute_labels``: rows skipped for holding NaN.
    timings_ : dict
        Seconds in "fold" and "finalize".

    Examples
    --------
    >>> import numpy as np
    >>> from daskmeans import MiniBatchKMeans
    >>> X = np.array([[1.0, 2], [1, 4], [1, 0], [10, 2], [10, 4], [10, 0]])
    >>> mbk = MiniBatchKMeans(n_clusters=2, batch_size=6, random_state=0).fit(X)
    >>> sorted(np.round(mbk.cluster_centers_, 1).tolist())
    [[1.0, 2.0], [10.0, 2.0]]
    >>> mbk.get_feature_names_out().tolist()
    ['minibatchkmeans0', 'minibatchkmeans1']
    """

    #: Fan-in of the reduction tree of the inertia, predict and score passes.
    split_every = None

    _parameter_table = {
        **COMMON_PARAMETERS,
        "init": [Options(*_INIT_METHODS), ArrayLike("an array of shape (n_clusters, n_features)"),
                 Callable()],
        "batch_size": [Interval(Integral, 1)],
        "compute_labels": [Boolean()],
        "max_no_improvement": [Interval(Integral, 0), NoneValue()],
        "init_size": [Interval(Integral, 1), NoneValue()],
        "n_init": [Options("auto"), Interval(Integral, 1)],
        "reassignment_ratio": [Interval(Real, 0)],
        "nan_policy": [Options("raise", "omit")],
        "init_lloyd_iter": [Interval(Integral, 0)],
    }
    _model_format = MODEL_FORMAT
    _model_version = MODEL_VERSION

    def __init__(
        self,
        n_clusters=8,
        *,
        init="k-means++",
        max_iter=100,
        batch_size=1024,
        verbose=0,
        compute_labels=True,
        random_state=None,
        tol=0.0,
        max_no_improvement=10,
        init_size=None,
        n_init="auto",
        reassignment_ratio=0.01,
        nan_policy="raise",
        init_lloyd_iter=0,
    ):
        self.n_clusters = n_clusters
        self.init = init
        self.max_iter = max_iter
        self.batch_size = batch_size
        self.verbose = verbose
        self.compute_labels = compute_labels
        self.random_state = random_state
        self.tol = tol
        self.max_no_improvement = max_no_improvement
        self.init_size = init_size
        self.n_init = n_init
        self.reassignment_ratio = reassignment_ratio
        self.nan_policy = nan_policy
        self.init_lloyd_iter = init_lloyd_iter

    # ------------------------------------------------------------------ #
    # parameters and input
    # ------------------------------------------------------------------ #
    def _resolve_params(self) -> None:
        self._resolve_n_init(3)

    def _resolve_sizes(self, n: int) -> None:
        """``_batch_size`` and ``_init_size`` for data of ``n`` rows (scikit-learn's rules)."""
        k = self.n_clusters
        self._batch_size = min(self.batch_size, n)
        if self.init_size is None:
            size = 3 * self._batch_size
            if size < k:
                size = 3 * k
        elif self.init_size < k:
            warnings.warn(
                f"init_size={self.init_size} should be larger than n_clusters={k}. Setting "
                "it to min(3*n_clusters, n_samples)",
                RuntimeWarning,
                stacklevel=3,
            )
            size = 3 * k
        else:
            size = self.init_size
        self._init_size = min(size, n)

    def _init_spec(self, Xd: da.Array, seq, plan=None) -> dict:
        """What the initialisation needs (see :func:`daskmeans.engine._fold.init_state`)."""
        init = self._check_init_array(Xd)
        if init is None:
            init = self.init
        size = self._init_size
        return {
            "init": init, "n_clusters": self.n_clusters, "n_init": self._n_init,
            "init_size": size, "seq": seq, "tol": self._tol, "dtype": Xd.dtype,
            "init_lloyd_iter": int(self.init_lloyd_iter), "plan": plan,
            "pool_size": size * (self._n_init + 1), "chunks": [int(c) for c in Xd.chunks[0]],
        }

    def _readers(self, Xd, weights):
        return block_readers(Xd, weights, self.nan_policy == "omit")

    # ------------------------------------------------------------------ #
    # fitting
    # ------------------------------------------------------------------ #
    def fit(self, X, y=None, sample_weight=None):
        """Compute the centres by mini-batch k-means (at most ``max_iter`` passes).

        Parameters
        ----------
        X : array-like, dask.array.Array, zarr.Array, str or os.PathLike of shape \
(n_samples, n_features)
        y : ignored
        sample_weight : array-like or dask.array.Array of shape (n_samples,), optional

        Returns
        -------
        self
        """
        self._validate_params()
        Xd, in_mem = self._validate_data(X, reset=True)
        Xd = _known_rows(Xd)
        weights = check_sample_weight(sample_weight, Xd, in_memory=in_mem)
        n = Xd.shape[0]
        k = self.n_clusters
        self._check_n_samples(Xd)
        self._resolve_sizes(n)
        seq = as_seed_sequence(self.random_state)
        self._seed = seq
        readers = self._readers(Xd, weights)
        params = FoldParams(
            omit_nan=self.nan_policy == "omit",
            seq=seq, batch_size=self._batch_size,
            reassignment_ratio=float(self.reassignment_ratio), early_stop=True,
            max_no_improvement=self.max_no_improvement, n_samples=n, check=not in_mem,
            plan=choose_plan(Xd.dtype, k, Xd.shape[1], n),  # once per fit, not per block
        )
        t0 = time.perf_counter()
        state, init_spec, history = None, self._init_spec(Xd, seq, params.plan), []
        n_iter = 0
        for it in range(self.max_iter):
            order = block_rng(seq, ORDER_KEY, it).permutation(Xd.numblocks[0])
            state = run_pass(readers, order, state, params, in_memory=in_mem,
                             init_spec=init_spec)
            params = replace(params, check=False)
            init_spec = None
            n_iter += 1
            ewa = state.ewa if state.ewa is not None else float("nan")
            history.append(float(ewa * n))
            if self.verbose:
                print(
                    f"[daskmeans] minibatch pass {it + 1}/{self.max_iter}: {state.n_steps} "
                    f"steps, smoothed batch inertia {ewa * n:.6g}"
                    + (" (converged)" if state.stopped else "")
                )
            if state.stopped:
                break
        t_fold = time.perf_counter() - t0
        t0 = time.perf_counter()
        self._set_state(state)
        self.n_iter_ = n_iter
        self.inertia_history_ = history
        if self._defers_final(in_mem) and self.compute_labels:
            # the caller computes labels_ anyway: their pass gives the final inertia and
            # sizes (see daskmeans._base.deferred_final_pass)
            labels, result = self._final_labels_pass(
                Xd, weights, self.cluster_centers_,
                prep=make_prep(Xd.dtype, nan_policy=self.nan_policy))

            def finish(res, n_iter=n_iter):
                self._set_measured(res)
                warn_if_degenerate(self.cluster_sizes_, k)
                self.n_passes_ = n_iter + 1

            self._final_pass = (result, finish)
            self.labels_ = _as_frame_labels(X, labels)
        elif self.compute_labels:
            self._label_data(X, Xd, weights, in_mem)
            warn_if_degenerate(self.cluster_sizes_, k)
            self.n_passes_ = n_iter + 1
        else:
            for attr in ("labels_", "cluster_sizes_", "n_omitted_"):
                self.__dict__.pop(attr, None)
            self.inertia_ = history[-1]
            self.n_passes_ = n_iter
        self.timings_ = {"fold": t_fold, "finalize": time.perf_counter() - t0}
        return self

    def _label_data(self, X, Xd, weights, in_mem: bool) -> None:
        """``inertia_``, ``cluster_sizes_``, ``n_omitted_`` (one pass) and ``labels_`` (lazy
        for lazy input) of the data with the current centres."""
        graph = partial_pass(Xd, weights, [self.cluster_centers_], name="minibatch-inertia",
                             prep=make_prep(Xd.dtype, nan_policy=self.nan_policy),
                             split_every=self.split_every)
        (res,) = compute_passes(graph)
        self._set_measured(res)
        labels = self._predict_dask(Xd, check=False)
        self.labels_ = in_memory(labels) if in_mem else _as_frame_labels(X, labels)

    def _set_measured(self, res: dict) -> None:
        """``n_omitted_``, ``inertia_`` and ``cluster_sizes_`` from the pass result
        ``res`` over the final centres."""
        self.n_omitted_ = int(res.get("n_omitted", 0))
        self.inertia_ = float(res["inertia"][0])
        self.cluster_sizes_ = np.asarray(res["counts"], dtype=np.float64)

    def _set_state(self, state: FoldState) -> None:
        self.cluster_centers_ = state.centers
        self.counts_ = state.counts
        self.n_steps_ = int(state.n_steps)
        self._n_since_reassign = int(state.n_since_reassign)

    def _get_state(self) -> FoldState:
        return FoldState(
            self.cluster_centers_.copy(), np.asarray(self.counts_, dtype=np.float64).copy(),
            n_steps=self.n_steps_, n_since_reassign=self._n_since_reassign,
        )

    def partial_fit(self, X, y=None, sample_weight=None):
        """Update the model with one batch (NumPy) or with every block of a Dask/Zarr array.

        Each NumPy batch, each row block of a Dask array and each stored
        row chunk of a Zarr array (in order), is one mini-batch step, as one
        call of scikit-learn's ``partial_fit``. On the first call the centres
        are initialised from a sample of the data. With ``compute_labels``,
        ``labels_`` and ``inertia_`` then describe X with the updated centres
        (one more pass over a Dask or Zarr input); otherwise those of an
        earlier ``fit`` are removed, as are ``cluster_sizes_`` and
        ``inertia_history_`` (they no longer describe the centres).

        Returns
        -------
        self
        """
        first = not hasattr(self, "cluster_centers_")
        if first:
            self._validate_params()
        # a Zarr array: one step per stored chunk, not per group of them
        Xd, in_mem = self._validate_data(X, reset=first, zarr_chunks="stored")
        Xd = _known_rows(Xd)
        weights = check_sample_weight(sample_weight, Xd, in_memory=in_mem)
        if in_mem and Xd.numblocks[0] > 1:
            # a NumPy batch is one mini-batch step, however the library would chunk it
            Xd = Xd.rechunk({0: -1})
            weights = None if weights is None else weights.rechunk(-1)
        n = Xd.shape[0]
        if first:
            self._check_n_samples(Xd)
            self._resolve_sizes(n)
            self._seed = as_seed_sequence(self.random_state)
        params = FoldParams(
            omit_nan=self.nan_policy == "omit",
            seq=self._seed, batch_size=None, reassignment_ratio=float(self.reassignment_ratio),
            check=not in_mem,
        )
        order = np.arange(Xd.numblocks[0])
        init_spec = self._init_spec(Xd, self._seed) if first else None
        start = None if first else self._get_state()
        state = run_pass(self._readers(Xd, weights), order, start, params, in_memory=in_mem,
                         init_spec=init_spec)
        self._set_state(state)
        for attr in ("labels_", "inertia_", "cluster_sizes_", "inertia_history_", "n_omitted_",
                     "_final_pass"):
            self.__dict__.pop(attr, None)
        if self.compute_labels:
            self._label_data(X, Xd, weights, in_mem)
            self.__dict__.pop("cluster_sizes_", None)
        return self

    # ------------------------------------------------------------------ #
    # saved models
    # ------------------------------------------------------------------ #
    def _fitted_to_doc(self) -> dict:
        seq = self._seed
        opt = {
            name: getattr(self, name, None)
            for name in ("inertia_", "n_iter_", "n_passes_", "inertia_history_")
        }
        sizes = getattr(self, "cluster_sizes_", None)
        return {
            "counts_": np.asarray(self.counts_, dtype=np.float64).tolist(),
            "n_steps_": int(self.n_steps_),
            "n_since_reassign": int(self._n_since_reassign),
            "n_features_in_": int(self.n_features_in_),
            "seed": {"entropy": str(seq.entropy), "spawn_key": list(seq.spawn_key)},
            "cluster_sizes_": None if sizes is None else np.asarray(sizes).tolist(),
            **opt,
        }

    def _fitted_from_doc(self, fit: dict) -> None:
        self.counts_ = np.asarray(fit["counts_"], dtype=np.float64)
        self.n_steps_ = int(fit["n_steps_"])
        self._n_since_reassign = int(fit["n_since_reassign"])
        self.n_features_in_ = int(fit["n_features_in_"])
        self._seed = np.random.SeedSequence(
            int(fit["seed"]["entropy"]), spawn_key=tuple(fit["seed"]["spawn_key"])
        )
        for name in ("inertia_", "n_iter_", "n_passes_"):
            if fit.get(name) is not None:
                setattr(self, name, type(1.0 if name == "inertia_" else 1)(fit[name]))
        if fit.get("inertia_history_") is not None:
            self.inertia_history_ = [float(v) for v in fit["inertia_history_"]]
        if fit.get("cluster_sizes_") is not None:
            self.cluster_sizes_ = np.asarray(fit["cluster_sizes_"], dtype=np.float64)
        self._validate_params()


def _known_rows(Xd: da.Array) -> da.Array:
    """Xd with its row counts known: the fold plans its batches and its initial
    sample from them. Blocks of unknown length (a Dask DataFrame's partitions)
    are counted first, in one more pass."""
    return Xd.compute_chunk_sizes() if has_unknown_rows(Xd) else Xd
