"""Choosing the number of clusters: elbow, gap statistic, f(K) and silhouette.

:func:`select_k` fits k-means for every candidate k *in the same passes* over
the data: the centres of all candidates (and of their ``n_init``
initialisations) are stacked as groups and iterated together by the core
Lloyd driver (:func:`daskmeans.engine._lloyd.lloyd`), so a scan over ten values of k
costs about as many passes as the slowest single fit.

Passes over the data made by one call (``n_passes_``):

1. one *preparation* pass: a uniform sample (seeding k-means++ for every k),
   the bounding box (for the gap statistic's reference data) and the
   per-feature moments (total sum of squares for f(K), and ``tol``);
2. the Lloyd passes, shared by every k;
3. one *scoring* pass: the inertia of every final solution and, when asked,
   the simplified silhouette of every k.

The gap statistic's reference data sets are drawn uniformly in the bounding
box, block by block on the workers from per-block seeds; they are never
stored and never read from disk. Their Lloyd passes (all k together, one
reference at a time) are counted apart, in ``n_ref_passes_``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import dask.array as da
import numpy as np

from . import kernels as _kernels
from ._base import resolved_params
from ._errors import InvalidInputError
from ._rng import as_seed_sequence, block_rng, purpose_key
from ._sparse import is_sparse_input
from ._validation import check_array_input, check_int
from .engine._graph import block_reduce, compute_passes
from .engine._init import init_centers, kmeans_plusplus, random_rows
from .engine._lloyd import LloydState, check_block, finalize, lloyd, lloyd_numpy
from .estimator import KMeans
from .kernels._sparse import is_sparse, take_rows

__all__ = ["METHODS", "SelectKResult", "elbow_index", "fk_scores", "gap_choice", "select_k"]

#: Methods understood by :func:`select_k`, in their default order.
METHODS = ("elbow", "gap", "fk", "silhouette")

#: Methods refused for sparse input: the gap statistic's reference data sets are
#: uniform in the bounding box, dense (``ref_size`` x n_features), and model no sparsity.
SPARSE_REFUSED = ("gap",)

_PREP = purpose_key("select-k-prep")
_SEED = purpose_key("select-k-seed")
_GAP = purpose_key("select-k-gap")
_GAP_SEED = purpose_key("select-k-gap-seed")

#: Parameters of :class:`~daskmeans.KMeans` that select_k passes on.
_KMEANS_PARAMS = ("init", "n_init", "max_iter", "tol", "oversampling_factor", "init_rounds",
                  "verbose", "split_every")


# --------------------------------------------------------------------------- #
# Result
# --------------------------------------------------------------------------- #
@dataclass
class SelectKResult:
    """What :func:`select_k` found.

    Attributes
    ----------
    ks_ : ndarray of shape (n_ks,), int64
        Candidate numbers of clusters, sorted.
    inertia_ : ndarray of shape (n_ks,), float64
        Inertia of the best solution for every k.
    scores_ : dict of str to ndarray of shape (n_ks,)
        Per method, its curve over ``ks_``: ``"elbow"`` the (normalised)
        distance below the chord, ``"gap"`` Gap(k), ``"fk"`` f(K),
        ``"silhouette"`` the mean simplified silhouette.
    best_k_ : dict of str to int
        Per method, the chosen k.
    cluster_centers_ : dict of int to ndarray of shape (k, n_features)
        Best centres for every k.
    models_ : dict of int to KMeans
        Fitted :class:`~daskmeans.KMeans` for every k (centres, inertia,
        history, sizes; call ``predict`` for labels).
    gap_sd_ : ndarray of shape (n_ks,) or None
        s(k) = sd(k) * sqrt(1 + 1/n_refs) of the gap statistic.
    ref_log_inertia_ : ndarray of shape (n_refs, n_ks) or None
        log W*(k) of every reference data set.
    n_passes_ : int
        Passes over the data (preparation, shared Lloyd passes, scoring).
    n_ref_passes_ : int
        Passes over generated reference data (gap statistic only).
    timings_ : dict of str to float
        Seconds per phase: "prepare", "lloyd", "score", "gap".
    """

    ks_: np.ndarray
    inertia_: np.ndarray
    scores_: dict
    best_k_: dict
    cluster_centers_: dict
    models_: dict
    n_passes_: int
    n_ref_passes_: int = 0
    gap_sd_: np.ndarray | None = None
    ref_log_inertia_: np.ndarray | None = None
    n_features_in_: int = 0
    n_samples_: int = 0
    timings_: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """A JSON-serialisable summary (no centres)."""
        return {
            "ks": [int(k) for k in self.ks_],
            "inertia": [float(v) for v in self.inertia_],
            "scores": {m: [_json_float(v) for v in s] for m, s in self.scores_.items()},
            "best_k": {m: int(k) for m, k in self.best_k_.items()},
            "gap_sd": None if self.gap_sd_ is None else [float(v) for v in self.gap_sd_],
            "n_passes": int(self.n_passes_),
            "n_ref_passes": int(self.n_ref_passes_),
            "n_samples": int(self.n_samples_),
            "n_features": int(self.n_features_in_),
            "timings": {k: float(v) for k, v in self.timings_.items()},
        }


def _json_float(v) -> float | None:
    v = float(v)
    return v if np.isfinite(v) else None


# --------------------------------------------------------------------------- #
# Rules on the curves (pure NumPy)
# --------------------------------------------------------------------------- #
def elbow_index(ks: Sequence[int], inertia: Sequence[float]) -> tuple[int, np.ndarray]:
    """The elbow of a decreasing curve: the point farthest below its chord.

    Both axes are scaled to [0, 1]; the chord joins the first and last
    points; the elbow is the point with the largest distance below it.

    Returns
    -------
    index : int
        Position of the elbow in ``ks``.
    distance : ndarray of shape (len(ks),)
        Scaled distance of every point below the chord (0 at the ends).
    """
    x = np.asarray(ks, dtype=np.float64)
    y = np.asarray(inertia, dtype=np.float64)
    if len(x) < 3:
        return 0, np.zeros(len(x))
    xs = (x - x[0]) / (x[-1] - x[0])
    span = y.max() - y.min()
    ys = (y - y.min()) / span if span > 0 else np.zeros_like(y)
    # chord from (0, ys[0]) to (1, ys[-1]); signed distance, positive below it
    dx, dy = 1.0, ys[-1] - ys[0]
    dist = (dy * xs - dx * (ys - ys[0])) / np.hypot(dx, dy)
    return int(np.argmax(dist)), dist


def fk_scores(ks: Sequence[int], inertia_of, n_features: int) -> np.ndarray:
    """f(K) of Pham, Dimov and Nguyen (2005).

    ``f(1) = 1``; for K > 1, ``f(K) = S_K / (alpha_K S_{K-1})`` (1 if
    ``S_{K-1} = 0``), with ``alpha_2 = 1 - 3 / (4 N_d)`` and
    ``alpha_K = alpha_{K-1} + (1 - alpha_{K-1}) / 6``.

    Parameters
    ----------
    ks : sequence of int
    inertia_of : mapping of int to float
        S_K for every K in ``ks`` and every ``K - 1`` (K >= 2).
    n_features : int
        N_d.

    Returns
    -------
    ndarray of shape (len(ks),)
    """
    kmax = max(ks)
    alpha = np.zeros(kmax + 1)
    if kmax >= 2:
        alpha[2] = 1.0 - 3.0 / (4.0 * n_features)
        for K in range(3, kmax + 1):
            alpha[K] = alpha[K - 1] + (1.0 - alpha[K - 1]) / 6.0
    out = np.empty(len(ks))
    for i, K in enumerate(ks):
        if K == 1:
            out[i] = 1.0
            continue
        prev = inertia_of[K - 1]
        out[i] = 1.0 if prev == 0 else inertia_of[K] / (alpha[K] * prev)
    return out


def gap_choice(ks: Sequence[int], gap: np.ndarray, s: np.ndarray) -> int:
    """Tibshirani's rule: the smallest k with Gap(k) >= Gap(k') - s(k').

    ``k'`` is the next candidate after k in ``ks`` (k + 1 for a range). When
    no k qualifies, the largest candidate is returned.

    Returns
    -------
    int
        Position of the chosen k in ``ks``.
    """
    for i in range(len(ks) - 1):
        if gap[i] >= gap[i + 1] - s[i + 1]:
            return i
    return len(ks) - 1


# --------------------------------------------------------------------------- #
# Per-block functions (called on the workers)
# --------------------------------------------------------------------------- #
def _prep_chunk(X, w, index, *, seq, p, check):
    if check:
        check_block(X, w)
    rng = block_rng(seq, _PREP, index)
    keep = rng.random(X.shape[0]) < p
    if is_sparse(X):  # the sampled rows dense, the box with the implicit zeros
        return {
            "sample": take_rows(X, np.flatnonzero(keep)),
            "min": np.asarray(X.min(axis=0).toarray(), dtype=np.float64).ravel(),
            "max": np.asarray(X.max(axis=0).toarray(), dtype=np.float64).ravel(),
            "moments": _kernels.moments(X),
        }
    return {
        "sample": X[keep],
        "min": X.min(axis=0).astype(np.float64),
        "max": X.max(axis=0).astype(np.float64),
        "moments": _kernels.moments(X),
    }


def _prep_combine(parts):
    return {
        "sample": np.concatenate([q["sample"] for q in parts], axis=0),
        "min": np.min([q["min"] for q in parts], axis=0),
        "max": np.max([q["max"] for q in parts], axis=0),
        "moments": _kernels.combine_moments([q["moments"] for q in parts]),
    }


def _score_chunk(X, w, index, *, centers, bounds, silhouette):
    """Inertia, sizes and simplified-silhouette sums of every group on one block.

    The simplified silhouette of a row is ``(b - a) / max(a, b)`` with ``a``
    its distance to its own (nearest) centre and ``b`` to the second nearest
    centre of the same group; 0 for groups of one centre.
    """
    n = X.shape[0]
    K = centers.shape[0]
    n_groups = len(bounds) - 1
    inertia = np.zeros(n_groups)
    sil = np.zeros(n_groups)
    counts = np.zeros(K)
    c_sq = _kernels.sq_norms(centers)
    step = _kernels.row_block_size(K, X.dtype.itemsize, n)
    for start in range(0, n, step):
        Xs = X[start : start + step]
        D = _kernels.distances_block(Xs, centers, c_sq).astype(np.float64, copy=False)
        for g in range(n_groups):
            lo, hi = int(bounds[g]), int(bounds[g + 1])
            Dg = D[:, lo:hi]
            if hi - lo >= 2:
                two = np.partition(Dg, 1, axis=1)[:, :2]
                a2, b2 = two[:, 0], two[:, 1]
            else:
                a2, b2 = Dg[:, 0], None
            inertia[g] += a2.sum()
            counts[lo:hi] += np.bincount(np.argmin(Dg, axis=1), minlength=hi - lo)
            if silhouette and b2 is not None:
                a, b = np.sqrt(a2), np.sqrt(b2)
                den = np.maximum(a, b)
                s = np.divide(b - a, den, out=np.zeros_like(a), where=den > 0)
                sil[g] += s.sum()
    return {"inertia": inertia, "sil": sil, "counts": counts, "n": float(n)}


def _score_combine(parts):
    return {key: sum(q[key] for q in parts) for key in ("inertia", "sil", "counts", "n")}


def _reference_block(block, index, *, seq, ref, lo, hi, dtype):
    """Rows of reference data set ``ref`` for block ``index``: uniform in the box."""
    rng = block_rng(seq, _GAP, ref, index)
    u = rng.random((block.shape[0], len(lo)))
    return (lo + u * (hi - lo)).astype(dtype, copy=False)


def _reference_array(n_rows: int, chunk_rows: int, seq, ref: int, lo, hi, dtype) -> da.Array:
    """Reference data set ``ref``: lazy, ``n_rows`` rows generated block by block."""
    rows = da.core.normalize_chunks((chunk_rows,), (n_rows,))[0]
    template = da.zeros((n_rows, 1), chunks=(rows, 1), dtype=np.int8)
    return template.map_blocks(
        _reference_block_mb, seq, ref, lo, hi, dtype,
        chunks=(rows, (len(lo),)), dtype=dtype, name=f"select-k-reference-{ref}",
    )


def _reference_block_mb(block, seq, ref, lo, hi, dtype, block_info=None):
    index = block_info[0]["chunk-location"][0]
    return _reference_block(block, index, seq=seq, ref=ref, lo=lo, hi=hi, dtype=dtype)


# --------------------------------------------------------------------------- #
# select_k
# --------------------------------------------------------------------------- #
def _child_seq(seq: np.random.SeedSequence, *key: int) -> np.random.SeedSequence:
    """A SeedSequence for one use (e.g. the k-means|| run of one k), keyed like block_rng."""
    return np.random.SeedSequence(seq.entropy, spawn_key=(*seq.spawn_key, *key))


def _check_ks(ks, n: int) -> np.ndarray:
    try:
        values = [int(k) for k in ks]
    except TypeError:
        raise TypeError(f"ks must be an iterable of integers, got {ks!r}.") from None
    if any(float(k) != int(k) for k in ks):
        raise ValueError(f"ks must hold integers, got {list(ks)!r}.")
    arr = np.unique(np.asarray(values, dtype=np.int64))
    if len(arr) < 2:
        raise ValueError(f"ks must hold at least two distinct values, got {list(values)!r}.")
    if arr[0] < 1:
        raise ValueError(f"ks must hold integers >= 1, got {list(values)!r}.")
    if arr[-1] > n:
        raise ValueError(f"ks: k={int(arr[-1])} is larger than n_samples={n}.")
    return arr


def _check_methods(methods) -> tuple:
    if isinstance(methods, str):
        methods = (methods,)
    methods = tuple(methods)
    bad = [m for m in methods if m not in METHODS]
    if bad or not methods:
        raise ValueError(f"methods must be a non-empty subset of {list(METHODS)}; got {methods!r}.")
    return methods


def select_k(
    X,
    ks: Iterable[int],
    *,
    methods: Sequence[str] = METHODS,
    n_refs: int = 5,
    random_state=None,
    ref_size: int | None = 100_000,
    **kmeans_params,
) -> SelectKResult:
    """Fit k-means for every k in ``ks`` in shared passes and score the choices.

    Parameters
    ----------
    X : array-like, dask.array.Array, zarr.Array, str or os.PathLike of shape \
(n_samples, n_features)
        Data, as accepted by :meth:`daskmeans.KMeans.fit`, ``scipy.sparse``
        matrices and Dask arrays of sparse blocks included (kept sparse; the
        gap statistic is refused for them: its uniform reference data would
        be dense).
    ks : iterable of int
        Candidate numbers of clusters (at least two).
    methods : sequence of {"elbow", "gap", "fk", "silhouette"}
        Scores to compute. ``"elbow"``: the k whose (scaled) inertia lies
        farthest below the chord joining the first and last candidates.
        ``"gap"``: gap statistic (Tibshirani, Walther and Hastie, 2001), with
        ``n_refs`` reference data sets uniform in the data's bounding box;
        the smallest k with Gap(k) >= Gap(k') - s(k'), k' the next candidate.
        ``"fk"``: f(K) of Pham, Dimov and Nguyen (2005); the k minimising it.
        ``"silhouette"``: mean simplified silhouette (own centre against the
        nearest other centre); the k maximising it.
    n_refs : int, default=5
        Number of reference data sets for the gap statistic.
    random_state : int, RandomState, Generator, SeedSequence or None
        Seed of every random draw (sample, initial centres, references).
    ref_size : int or None, default=100_000
        Rows of every reference data set (at most ``n_samples``; None: as
        many as the data). A reference of m < n rows is scaled to n rows by
        adding ``log(n / m)`` to its log W*(k) (the within-cluster sum of
        squares grows in proportion to the number of rows), so the gap's cost
        does not grow with the data.
    **kmeans_params
        Passed on as in :class:`~daskmeans.KMeans`: ``init`` (default
        ``"k-means++"``, seeded for every k from one shared sample;
        ``"random"`` also shares one pass; ``"k-means||"`` runs its own
        passes per k), ``n_init`` (default 3; every initialisation of every
        k iterates in the same passes), ``max_iter``, ``tol``,
        ``oversampling_factor``, ``init_rounds``, ``verbose``, ``split_every``.

    Returns
    -------
    SelectKResult

    Examples
    --------
    >>> import numpy as np
    >>> from daskmeans import select_k
    >>> rng = np.random.default_rng(0)
    >>> centres = np.array([[0.0, 0], [5, 5], [0, 5]])
    >>> X = np.concatenate([c + 0.3 * rng.standard_normal((300, 2)) for c in centres])
    >>> res = select_k(X, range(2, 7), methods=("fk", "gap"), n_refs=3, random_state=0)
    >>> res.best_k_
    {'fk': 3, 'gap': 3}
    """
    unknown = sorted(set(kmeans_params) - set(_KMEANS_PARAMS))
    if unknown:
        raise TypeError(
            f"select_k got unexpected keyword argument(s) {unknown}; k-means parameters "
            f"accepted: {list(_KMEANS_PARAMS)}."
        )
    methods = _check_methods(methods)
    n_refs = check_int("n_refs", n_refs, low=1)
    if ref_size is not None:
        ref_size = check_int("ref_size", ref_size, low=1)
    params = {"init": "k-means++", "n_init": 3, **kmeans_params}
    if not isinstance(params["init"], str):
        raise ValueError(
            f"select_k: init must be 'k-means++', 'random' or 'k-means||', got {params['init']!r}."
        )
    Xd, in_memory = check_array_input(X)
    if is_sparse_input(Xd):
        refused = [m for m in methods if m in SPARSE_REFUSED]
        if refused:
            raise InvalidInputError(
                f"select_k: methods={list(methods)!r} includes {refused[0]!r}, which sparse X "
                f"does not support (its reference data sets, uniform in the bounding box, "
                f"would be dense); expected a subset of "
                f"{[m for m in METHODS if m not in SPARSE_REFUSED]} for sparse input."
            )
    n, d = Xd.shape
    ks_arr = _check_ks(ks, n)
    # f(K) needs S_{K-1}; S_1 comes from the moments, other K-1 are fitted too
    fit_ks = set(int(k) for k in ks_arr)
    if "fk" in methods:
        fit_ks |= {int(k) - 1 for k in ks_arr if k > 2}
    fit_ks = sorted(fit_ks)
    seq = as_seed_sequence(random_state)
    proto = KMeans(n_clusters=max(fit_ks), random_state=0, **params)
    resolved = resolved_params(proto)
    n_init, tol, verbose = resolved["n_init"], resolved["tol"], proto.verbose
    split_every = params.get("split_every")
    timings = {"prepare": 0.0, "lloyd": 0.0, "score": 0.0, "gap": 0.0}
    check = not in_memory

    # 1. preparation pass: sample, bounding box, moments
    t0 = time.perf_counter()
    sample_size = max(10_000, 50 * max(fit_ks))
    prep_graph = block_reduce(
        Xd, None, _prep_chunk, _prep_combine, name="select-k-prepare",
        split_every=split_every,
        consts={"seq": seq, "p": min(1.0, sample_size / n), "check": check},
    )
    (prep,) = compute_passes(prep_graph)
    n_passes = 1
    count, _, m2 = prep["moments"]
    total_ss = float(m2.sum())
    tol_abs = float(np.mean(m2 / count) * tol) if count else 0.0

    # initial centres for every (k, initialisation), stacked as groups
    groups: list[np.ndarray] = []
    owner: list[int] = []
    method = params["init"]
    if method == "k-means++":
        sample = prep["sample"]
        if sample.shape[0] < max(fit_ks):  # fewer rows than k: the whole (small) data
            sample = Xd.compute()
            if is_sparse(sample):
                sample = sample.toarray()
        for k in fit_ks:
            for i in range(n_init):
                groups.append(kmeans_plusplus(sample, None, k, block_rng(seq, _SEED, k, i)))
                owner.append(k)
    elif method == "random":
        rows = random_rows(Xd, None, max(fit_ks), n_init, seq, split_every=split_every)
        n_passes += 1
        for k in fit_ks:
            for i in range(n_init):
                groups.append(rows[i][:k].copy())
                owner.append(k)
    elif method == "k-means||":
        for k in fit_ks:
            centers, passes, _ = init_centers(
                Xd, None, k, "k-means||", _child_seq(seq, _SEED, k), n_init,
                oversampling_factor=proto.oversampling_factor, init_rounds=proto.init_rounds,
                split_every=split_every,
            )
            n_passes += passes
            groups.extend(centers)
            owner.extend([k] * n_init)
    else:
        raise ValueError(
            f"select_k: init must be 'k-means++', 'random' or 'k-means||', got {method!r}."
        )
    groups = [np.ascontiguousarray(c, dtype=Xd.dtype) for c in groups]
    timings["prepare"] = time.perf_counter() - t0

    # 2. Lloyd: every k and every initialisation in the same passes
    t0 = time.perf_counter()
    state = LloydState.start(groups, tol_abs=tol_abs, n_passes=n_passes)
    state = lloyd(Xd, None, state, max_iter=proto.max_iter, tol=tol,
                  split_every=split_every, verbose=verbose)
    timings["lloyd"] = time.perf_counter() - t0

    # 3. scoring pass: final inertia, sizes and silhouette of the best solution of every k
    #    (the best initialisation is chosen by the inertia of its last Lloyd pass)
    t0 = time.perf_counter()
    owner_arr = np.asarray(owner)
    best_group = {}
    for k in fit_ks:
        idx = np.flatnonzero(owner_arr == k)
        best_group[k] = int(idx[np.argmin(state.inertia[idx])])
    chosen = [state.centers[best_group[k]] for k in fit_ks]
    stacked = np.concatenate(chosen, axis=0)
    bounds = np.concatenate(([0], np.cumsum([len(c) for c in chosen]))).astype(np.intp)
    score_graph = block_reduce(
        Xd, None, _score_chunk, _score_combine, name="select-k-score",
        split_every=split_every,
        consts={"centers": stacked, "bounds": bounds, "silhouette": "silhouette" in methods},
    )
    (score,) = compute_passes(score_graph)
    state.n_passes += 1
    slot = {k: j for j, k in enumerate(fit_ks)}
    inertia_of = {1: total_ss}
    inertia_of.update({k: float(score["inertia"][slot[k]]) for k in fit_ks})
    inertia = np.array([inertia_of[int(k)] for k in ks_arr])
    timings["score"] = time.perf_counter() - t0

    models, centers = {}, {}
    for k in ks_arr:
        g = best_group[int(k)]
        model = KMeans(n_clusters=int(k), random_state=random_state if isinstance(
            random_state, int | None) else None, **params)
        model.cluster_centers_ = state.centers[g]
        model.inertia_ = inertia_of[int(k)]
        model.n_iter_ = int(state.n_iter[g])
        model.inertia_history_ = list(state.history[g])
        j = slot[int(k)]
        model.cluster_sizes_ = np.asarray(score["counts"][bounds[j] : bounds[j + 1]])
        model.n_features_in_ = d
        model.n_passes_ = int(state.n_passes)
        models[int(k)] = model
        centers[int(k)] = state.centers[g]

    scores: dict = {}
    best: dict = {}
    gap_sd = ref_log = None
    n_ref_passes = 0
    for m in methods:
        if m == "elbow":
            i, dist = elbow_index(ks_arr, inertia)
            scores[m], best[m] = dist, int(ks_arr[i])
        elif m == "fk":
            f = fk_scores([int(k) for k in ks_arr], inertia_of, d)
            scores[m], best[m] = f, int(ks_arr[int(np.argmin(f))])
        elif m == "silhouette":
            sil = np.array([score["sil"][slot[int(k)]] / score["n"] for k in ks_arr])
            sil[ks_arr == 1] = np.nan
            scores[m] = sil
            best[m] = int(ks_arr[int(np.nanargmax(sil))]) if np.isfinite(sil).any() else int(
                ks_arr[0])
        elif m == "gap":
            t0 = time.perf_counter()
            ref_log, n_ref_passes = _reference_log_inertia(
                Xd, ks_arr, n_refs, seq, prep["min"], prep["max"],
                n_rows=n if ref_size is None else min(n, ref_size),
                max_iter=proto.max_iter, tol=tol, split_every=split_every, verbose=verbose,
            )
            gap = ref_log.mean(axis=0) - np.log(np.maximum(inertia, np.finfo(float).tiny))
            sd = ref_log.std(axis=0)
            gap_sd = sd * np.sqrt(1.0 + 1.0 / n_refs)
            scores[m], best[m] = gap, int(ks_arr[gap_choice(ks_arr, gap, gap_sd)])
            timings["gap"] = time.perf_counter() - t0
    return SelectKResult(
        ks_=ks_arr, inertia_=inertia, scores_=scores, best_k_=best, cluster_centers_=centers,
        models_=models, n_passes_=int(state.n_passes), n_ref_passes_=n_ref_passes,
        gap_sd_=gap_sd, ref_log_inertia_=ref_log, n_features_in_=d, n_samples_=n,
        timings_=timings,
    )


def _reference_log_inertia(
    Xd: da.Array, ks: np.ndarray, n_refs: int, seq, lo, hi, *, n_rows: int, max_iter: int,
    tol: float, split_every, verbose,
) -> tuple[np.ndarray, int]:
    """log W*(k), scaled to the data's size, on every reference data set.

    All k of one reference iterate in the same passes. Initial centres come
    from k-means++ on an in-memory sample drawn from the same uniform
    distribution and refined by Lloyd on that sample, in memory (no pass
    needed), so the passes over the reference only polish them.

    Returns
    -------
    log_w : ndarray of shape (n_refs, len(ks))
    n_passes : int
        Passes over generated reference data.
    """
    d = Xd.shape[1]
    out = np.empty((n_refs, len(ks)))
    passes = 0
    width = np.where(hi > lo, hi - lo, 0.0)
    # the reference box's per-feature variance is known: width^2 / 12
    ref_tol_abs = float(np.mean(width**2 / 12.0) * tol)
    size = max(10_000, 50 * int(ks.max()))
    sample_tol = ref_tol_abs * 0.1
    for b in range(n_refs):
        R = _reference_array(n_rows, Xd.chunks[0][0], seq, b, lo, hi, Xd.dtype)
        rng = block_rng(seq, _GAP_SEED, b)
        sample = (lo + rng.random((size, d)) * width).astype(Xd.dtype)
        groups = []
        for k in ks:
            # seed, then refine on the in-memory sample: the reference passes only polish
            C0 = kmeans_plusplus(sample, None, int(k), rng)
            C, _, _ = lloyd_numpy(sample, None, C0, max_iter=max_iter, tol_abs=sample_tol)
            groups.append(np.ascontiguousarray(C, dtype=Xd.dtype))
        state = LloydState.start(groups, tol_abs=ref_tol_abs)
        state = lloyd(R, None, state, max_iter=max_iter, tol=tol, split_every=split_every,
                      verbose=verbose)
        state = finalize(R, None, state, split_every=split_every)
        passes += state.n_passes
        scaled = state.inertia * (Xd.shape[0] / n_rows)
        out[b] = np.log(np.maximum(scaled, np.finfo(float).tiny))
    return out, passes
