"""Initial centres: k-means|| (Bahmani et al., 2012), k-means++ and random.

Each method reads the data in whole passes built by
:func:`daskmeans.engine._graph.block_reduce`; per-row state is recomputed block by
block instead of being kept, so memory stays bounded by the block size. All
``n_candidates`` initialisations (for ``n_init``) share the same passes: their
centres are stacked as groups.

Randomness comes from :func:`daskmeans._rng.block_rng`, keyed by the method,
the round and the block index, never by the worker that runs a block.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from functools import partial

import dask.array as da
import numpy as np

from .. import kernels as _kernels
from .._rng import block_rng, purpose_key
from .._validation import has_unknown_rows
from ..kernels import _sparse as _sparse_kernels
from ..kernels._sparse import is_sparse as _is_sparse
from ._graph import (
    PassRunner,
    _shared_blas_limit,
    block_reduce,
    compute_passes,
    map_selected_blocks,
)
from ._lloyd import lloyd_numpy, pass_consts, pass_runner, prepare_block
from ._prep import apply_prep

__all__ = [
    "HIERARCHICAL_INIT_MIN_K", "SMALL_DATA_BYTES", "init_centers", "kmeans_parallel",
    "kmeans_plusplus", "plusplus_all_rows", "random_rows", "sample_rows", "small_data",
]

_RANDOM = purpose_key("random")
_SAMPLE = purpose_key("sample")
_PARALLEL = purpose_key("kmeans||")
_FIRST = purpose_key("first-center")
_LOCAL = purpose_key("local")


# --------------------------------------------------------------------------- #
# In-memory k-means++ (used on samples and on k-means|| candidates)
# --------------------------------------------------------------------------- #
def kmeans_plusplus(
    X: np.ndarray,
    weights: np.ndarray | None,
    n_clusters: int,
    rng: np.random.Generator,
    n_local_trials: int | None = None,
    plan=None,
) -> np.ndarray:
    """Greedy weighted k-means++ seeding on an in-memory array.

    At every step ``2 + log(k)`` candidates are drawn with probability
    proportional to weight times squared distance to the chosen centres, and
    the one that lowers the weighted potential most is kept (the greedy
    variant scikit-learn uses).

    Parameters
    ----------
    X : ndarray of shape (n, d)
    weights : ndarray of shape (n,) or None
    n_clusters : int
    rng : numpy.random.Generator
    n_local_trials : int, optional
    plan : daskmeans.kernels.KernelPlan, optional
        Default: chosen for ``X``.

    Returns
    -------
    ndarray of shape (n_clusters, d), dtype of ``X``
    """
    return _kmeans_plusplus(X, weights, n_clusters, rng, n_local_trials, plan)[0]


def _kmeans_plusplus(X, weights, n_clusters, rng, n_local_trials=None, plan=None):
    """:func:`kmeans_plusplus` and the weighted potential of its centres."""
    n, d = X.shape
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
    if n_local_trials is None:
        n_local_trials = 2 + int(math.log(n_clusters))
    centers = np.empty((n_clusters, d), dtype=X.dtype)
    trials = _Trials(X, weights, plan)
    first = rng.choice(n, p=w / w.sum())
    centers[0] = X[first]
    closest = np.full(n, np.inf)
    _, pot, cum = trials(np.array([first]), closest)
    for c in range(1, n_clusters):
        if pot <= 0:
            # fewer distinct (weighted) points than clusters: repeat a point
            idx = rng.choice(np.flatnonzero(w > 0))
            centers[c] = X[idx]
            continue
        picks = np.searchsorted(cum, rng.random(n_local_trials) * cum[-1], side="right")
        picks = np.minimum(picks, n - 1)
        best, pot, cum = trials(picks, closest)
        centers[c] = X[picks[best]]
    return centers, pot


class _Trials:
    """One greedy k-means++ step: the candidate that lowers the weighted
    potential most, the distances to the chosen centres updated with it, and
    their running weighted sum (the next step's draws).

    One compiled call (:func:`daskmeans.kernels.seeding_step`) when the
    kernel plan runs compiled whole blocks, its products by the column tiles
    over the sample held transposed when the plan has them and the sample is
    small enough (:func:`daskmeans.kernels.seeding_operand`), else NumPy
    (:func:`_sq_dist_to`); all expand the distances the same way.
    """

    def __init__(self, X: np.ndarray, weights: np.ndarray | None, plan=None) -> None:
        self.X = X
        self.x_sq = _kernels.sq_norms(X).astype(np.float64)
        if plan is None:
            plan = _kernels.choose_plan(X.dtype, 1, X.shape[1], X.shape[0])
        self.compiled = _kernels.seeding_compiled(X, plan)
        self.XT = _kernels.seeding_operand(X, plan) if self.compiled else None
        if weights is not None:
            self.w = np.asarray(weights, dtype=np.float64)
        else:  # unit weights: length 0 for the compiled pass
            self.w = np.empty(0) if self.compiled else np.ones(X.shape[0])
        self.cum = np.empty(X.shape[0])

    def __call__(self, picks: np.ndarray, closest: np.ndarray) -> tuple[int, float, np.ndarray]:
        """``(best, potential, cum)`` of the step with candidates ``X[picks]``;
        ``closest`` (float64, the squared distances to the chosen centres) is
        updated in place and ``cum`` is the running sum of ``closest * w`` after it (an
        array reused by the next call)."""
        if self.compiled:
            picks = np.asarray(picks, dtype=np.intp)
            best, pot = _kernels.seeding_step(self.X, self.x_sq, picks, closest, self.w,
                                              self.cum, self.XT)
            return best, pot, self.cum
        dist = _sq_dist_to(self.X, self.x_sq, _take(self.X, picks))  # sparse: those rows only
        np.minimum(dist, closest, out=dist)
        pots = dist @ self.w
        best = int(np.argmin(pots))
        closest[:] = dist[best]
        return best, float(pots[best]), np.cumsum(closest * self.w)


def _sq_dist_to(X, x_sq, C) -> np.ndarray:
    """Squared distances (len(C), n) in float64, clipped at 0."""
    D = np.asarray(X @ C.T).T.astype(np.float64, order="C")  # rows first: faster BLAS
    D *= -2
    D += x_sq
    D += _kernels.sq_norms(C).astype(np.float64)[:, None]
    np.maximum(D, 0, out=D)
    return D


# --------------------------------------------------------------------------- #
# Per-block selections
# --------------------------------------------------------------------------- #
def _top_rows(keys: np.ndarray, X: np.ndarray, m: int):
    """Rows with the ``m`` largest keys in every group: (keys (g, m'), rows (g, m', d))."""
    n = X.shape[0]
    take = min(m, n)
    if take == 0:
        return keys[:, :0], np.zeros((keys.shape[0], 0, X.shape[1]), X.dtype)
    idx = np.argpartition(keys, n - take, axis=1)[:, n - take :]
    return np.take_along_axis(keys, idx, 1), _take(X, idx)


def _merge_top(parts: list, m: int):
    keys = np.concatenate([p[0] for p in parts], axis=1)
    rows = np.concatenate([p[1] for p in parts], axis=1)
    order = np.argsort(-keys, axis=1, kind="stable")[:, :m]
    return np.take_along_axis(keys, order, 1), np.take_along_axis(rows, order[:, :, None], 1)


def _race_keys(rng, w, n_groups, n):
    """Exponential-race keys: the top-m keys form a weighted sample without replacement."""
    u = rng.random((n_groups, n))
    with np.errstate(divide="ignore"):
        logu = np.log1p(-u)  # in (-inf, 0]
        wts = np.ones(n) if w is None else w
        return np.where(wts > 0, logu / np.where(wts > 0, wts, 1), -np.inf)


def _prep_consts(consts: dict, prep, with_moments: bool, plan=None) -> dict:
    """Add the row preprocessing (only when there is one), and the kernel plan,
    to a chunk's constants."""
    if prep is not None:
        consts["prep"] = prep
    if with_moments:
        consts["with_moments"] = True
    if plan is not None:
        consts["plan"] = plan
    return consts


def _array_plan(X):
    """The kernel plan of a fit on ``X`` (the one its Lloyd passes use; see
    :func:`daskmeans.engine._lloyd.fit_plan`), for every init pass too."""
    return _kernels.choose_plan(X.dtype, 1, X.shape[1], X.shape[0])


def _take(X, idx) -> np.ndarray:
    """Rows ``idx`` of a block as a dense copy (a sparse block: only those rows)."""
    return _sparse_kernels.take_rows(X, idx) if _is_sparse(X) else X[idx]


def _block_moments(X, valid, plan=None):
    return _kernels.moments(X if valid is None else X[valid], plan=plan)


def _combine_with_moments(parts, combine):
    """Combine tuples whose last item is (count, mean, m2) moments."""
    out = combine([p[:-1] for p in parts])
    return (*out, _kernels.combine_moments([p[-1] for p in parts]))


def _random_chunk(X, w, index, *, seq, n_groups, m, check, prep=None, with_moments=False,
                  plan=None):
    X, w, valid = prepare_block(X, w, prep, check)
    keys = _race_keys(block_rng(seq, _RANDOM, index), w, n_groups, X.shape[0])
    out = _top_rows(keys, X, m)
    return (*out, _block_moments(X, valid, plan)) if with_moments else out


def random_rows(X: da.Array, weights, n_rows: int, n_groups: int, seq, *, check=False,
                split_every=None, prep=None, with_moments=False):
    """One pass: ``n_groups`` independent weighted samples of ``n_rows`` distinct rows.

    With ``prep``, rows are preprocessed (omitted rows have weight 0); with
    ``with_moments``, returns ``(rows, moments)`` where moments are the
    (count, mean, m2) of the preprocessed, non-omitted rows.
    """
    combine = partial(_merge_top, m=n_rows)
    if with_moments:
        combine = partial(_combine_with_moments, combine=combine)
    graph = block_reduce(
        X, weights, _random_chunk, combine, name="kmeans-init-random",
        split_every=split_every,
        consts=_prep_consts({"seq": seq, "n_groups": n_groups, "m": n_rows, "check": check},
                            prep, with_moments, _array_plan(X)),
    )
    (res,) = compute_passes(graph)
    return (res[1], res[2]) if with_moments else res[1]


def _sample_chunk(X, w, index, *, seq, p, check, prep=None, with_moments=False, plan=None):
    X, w, valid = prepare_block(X, w, prep, check)
    rng = block_rng(seq, _SAMPLE, index)
    keep = rng.random(X.shape[0]) < p
    ws = np.ones(int(keep.sum())) if w is None else w[keep].astype(np.float64)
    if with_moments:
        return _take(X, keep), ws, _block_moments(X, valid, plan)
    return _take(X, keep), ws


def _sample_combine(parts):
    return (
        np.concatenate([p[0] for p in parts], axis=0),
        np.concatenate([p[1] for p in parts], axis=0),
    )


def _uniform_top_chunk(X, w, index, *, seq, m, check, prep=None, with_moments=False,
                       plan=None):
    X, w, valid = prepare_block(X, w, prep, check)
    n = X.shape[0]
    keys = block_rng(seq, _SAMPLE, index).random(n)
    if w is not None:
        keys[w <= 0] = -np.inf
    take = min(m, n)
    idx = np.argpartition(keys, n - take)[n - take :] if take else np.zeros(0, np.intp)
    ws = np.ones(take) if w is None else w[idx].astype(np.float64)
    if with_moments:
        return keys[idx], _take(X, idx), ws, _block_moments(X, valid, plan)
    return keys[idx], _take(X, idx), ws


def _uniform_top_combine(parts, m):
    keys = np.concatenate([p[0] for p in parts])
    order = np.argsort(-keys, kind="stable")[:m]
    rows = np.concatenate([p[1] for p in parts], axis=0)
    ws = np.concatenate([p[2] for p in parts])
    return keys[order], rows[order], ws[order]


def sample_rows(X: da.Array, weights, size: int, seq, *, check=False, split_every=None,
                prep=None, with_moments=False):
    """One pass: a uniform Bernoulli sample of about ``size`` rows and their weights.

    When the row count is unknown (a Dask DataFrame), the sample is instead the
    ``size`` rows with the largest uniform random keys: a uniform sample without
    replacement of ``min(size, n)`` rows, still in one pass.

    With ``prep``, rows are preprocessed (omitted rows come with weight 0);
    with ``with_moments``, returns ``(rows, weights, moments)``, the moments
    being those of the preprocessed, non-omitted rows.
    """
    if has_unknown_rows(X):
        combine = partial(_uniform_top_combine, m=size)
        if with_moments:
            combine = partial(_combine_with_moments, combine=combine)
        graph = block_reduce(
            X, weights, _uniform_top_chunk, combine,
            name="kmeans-init-sample", split_every=split_every,
            consts=_prep_consts({"seq": seq, "m": size, "check": check}, prep, with_moments,
                                _array_plan(X)),
        )
        (res,) = compute_passes(graph)
        keys, rows, ws = res[:3]
        keep = np.isfinite(keys)
        if with_moments:
            return rows[keep], ws[keep], res[3]
        return rows[keep], ws[keep]
    p = min(1.0, size / X.shape[0])
    combine = _sample_combine
    if with_moments:
        combine = partial(_combine_with_moments, combine=_sample_combine)
    run = PassRunner(X, weights, _sample_chunk, combine, name="kmeans-init-sample",
                     split_every=split_every)
    return run(_prep_consts({"seq": seq, "p": p, "check": check}, prep, with_moments,
                            _array_plan(X)))


# --------------------------------------------------------------------------- #
# k-means||
# --------------------------------------------------------------------------- #
def _parallel_chunk(X, w, index, *, seq, rnd, cands, bounds, m, check, prep=None, plan=None):
    X, w, _ = prepare_block(X, w, prep, check)
    _, mins = _kernels.nearest(X, cands, bounds, plan=plan)
    if w is not None:
        mins = mins * w
    cost = mins.sum(axis=1)
    rng = block_rng(seq, _PARALLEL, rnd, index)
    u = rng.random(mins.shape)
    keys = mins / (1.0 - u)  # 1 - u lies in (0, 1]
    top_keys, rows = _top_rows(keys, X, m)
    return cost, top_keys, rows


def _parallel_combine(parts, m):
    keys, rows = _merge_top([(p[1], p[2]) for p in parts], m)
    return np.sum([p[0] for p in parts], axis=0), keys, rows


def _race_first_chunk(X, w, index, *, seq, n_groups, check, prep=None):
    X, w, _ = prepare_block(X, w, prep, check)
    keys = _race_keys(block_rng(seq, _FIRST, index), w, n_groups, X.shape[0])
    top_keys, rows = _top_rows(keys, X, 1)
    return top_keys, rows, X.shape[0]


def _race_first_combine(parts):
    keys, rows = _merge_top([(p[0], p[1]) for p in parts], 1)
    return keys, rows, sum(p[2] for p in parts)


def _first_centers_race(X: da.Array, weights, n_groups: int, seq, *, check=False,
                        split_every=None, prep=None) -> tuple[list, int]:
    """One row per group drawn proportionally to its weight, in one pass, without
    knowing the block lengths (exponential race: the row with the largest
    ``log(u) / w`` wins). Also returns the number of rows seen."""
    graph = block_reduce(
        X, weights, _race_first_chunk, _race_first_combine, name="kmeans-init-first",
        split_every=split_every,
        consts=_prep_consts({"seq": seq, "n_groups": n_groups, "check": check}, prep, False),
    )
    (res,) = compute_passes(graph)
    keys, rows, n_rows = res
    if n_rows < 1 or not np.isfinite(keys).all():
        raise ValueError(
            f"X must have at least one sample with positive weight, got {n_rows} row(s)."
        )
    return [rows[g].copy() for g in range(n_groups)], int(n_rows)


def check_n_samples(n_clusters: int, n_samples: int) -> None:
    """Raise when there are fewer rows than clusters (known only after a pass when the
    row count of X is unknown)."""
    if n_clusters > n_samples:
        from .._errors import InvalidInputError

        raise InvalidInputError(
            f"n_samples={n_samples} should be >= n_clusters={n_clusters}: X has fewer rows "
            "than the clusters asked for."
        )


def _first_centers(X: da.Array, weights, n_groups: int, seq, prep=None) -> list:
    """One row per group, drawn with probability proportional to its weight.

    With ``prep`` the rows are preprocessed; a drawn row that is omitted (NaN)
    is replaced by a row of the same block drawn among the kept ones (by
    weight), or of another block when the whole block is omitted. This reads
    a few blocks, not the data, at the price of a slight bias towards kept
    rows of blocks with many omitted ones. Each block is read by a task that
    returns only the drawn row (:func:`map_selected_blocks`); the uniform
    numbers are drawn here, in the order ``Generator.choice`` would draw them.
    """
    n = X.shape[0]
    bounds = np.concatenate(([0], np.cumsum(X.chunks[0])))
    rng = block_rng(seq, _FIRST)
    if weights is None:
        rows = rng.integers(0, n, size=n_groups)
        picks = []
        for r in rows:
            b = int(np.searchsorted(bounds, r, side="right") - 1)
            picks.append((b, int(r - bounds[b]), None))
    else:
        sums = weights.map_blocks(lambda b: np.atleast_1d(b.sum()), chunks=(1,)).compute()
        picks = []
        for _ in range(n_groups):
            b = int(rng.choice(len(sums), p=sums / sums.sum()))
            picks.append((b, None, float(rng.random())))  # the row: drawn in its block's task
    if prep is None:
        jobs = [(b, {"row": i, "u_row": u, "prep": None, "u_next": None}) for b, i, u in picks]
        return [row for _, row in map_selected_blocks(X, weights, _first_row_chunk, jobs,
                                                      name="kmeans-init-first")]
    return [_first_kept_row(X, weights, b, i, u, prep, rng) for b, i, u in picks]


def _choice_index(w: np.ndarray, u: float) -> int:
    """The index ``Generator.choice(len(w), p=w / w.sum())`` draws with the uniform ``u``."""
    p = w / w.sum()
    cdf = p.cumsum()
    cdf /= cdf[-1]
    return int(cdf.searchsorted(u, side="right"))


def _first_row_chunk(X, w, index, *, row, u_row, prep, u_next):
    """``(status, row)`` of one block for :func:`_first_centers`.

    The row is ``row``, or drawn by its weight with ``u_row``; with ``prep``,
    when it is omitted or weighs nothing, a kept row drawn by weight with
    ``u_next`` (status ``"drawn"``), or ``("empty", None)`` when the block
    has no usable row; ``None`` for both: just a draw with ``u_next``.
    """
    i = row
    if i is None and u_row is not None:
        i = _choice_index(np.asarray(w), u_row)
    if prep is None:
        return "row", _take(X, np.arange(i, i + 1))
    Xb, wb, valid = apply_prep(prep, X, w)
    wts = np.ones(Xb.shape[0]) if wb is None else np.asarray(wb, dtype=np.float64)
    if i is not None and (valid is None or valid[i]) and wts[i] > 0:
        return "row", _take(Xb, np.arange(i, i + 1))
    if wts.sum() > 0:
        return "drawn", _take(Xb, np.arange(j := _choice_index(wts, u_next), j + 1))
    return "empty", None


def _first_kept_row(X, weights, b, i, u, prep, rng) -> np.ndarray:
    """Row ``i`` of block ``b`` after ``prep``, or a kept row near it (see _first_centers).

    One small task per block tried; the uniform number for a replacement row
    is peeked from a copy of ``rng`` and consumed only when the task used it.
    """
    order = [b] + [int(o) for o in rng.permutation(X.numblocks[0]) if o != b]
    for blk in order:
        u_next = float(copy.deepcopy(rng).random())
        consts = {"row": i if blk == b else None, "u_row": u if blk == b else None,
                  "prep": prep, "u_next": u_next}
        ((status, row),) = map_selected_blocks(X, weights, _first_row_chunk, [(blk, consts)],
                                               name="kmeans-init-first")
        if status == "drawn":
            rng.random()  # the number the task used
        if status != "empty":
            return row
    raise ValueError("X has no usable rows: every row was omitted or has zero weight.")


def kmeans_parallel(
    X: da.Array,
    weights,
    n_clusters: int,
    n_groups: int,
    seq,
    *,
    oversampling_factor: float = 2.0,
    init_rounds: int = 5,
    check: bool = False,
    split_every=None,
    callback: Callable[[dict], None] | None = None,
    verbose: int = 0,
    prep=None,
) -> tuple[list, int, tuple]:
    """k-means|| (Bahmani et al., 2012) for ``n_groups`` independent candidates.

    With ``prep`` every pass works on preprocessed rows (omitted rows weigh
    0; for cosine the local Lloyd steps renormalise their centres). ``prep``
    must not be pending: the rounds need the final distances from the first.

    One pass per round: every block computes the weighted squared distance of
    its rows to the current candidate set, the round's cost phi, and keeps its
    rows with the largest keys ``w d^2 / u`` (u uniform); after the pass a row
    is selected when ``l w d^2 / phi > u``, i.e. with probability
    ``min(1, l w d^2 / phi)`` as in the paper, where ``l = oversampling_factor
    * n_clusters``. A final pass weights every candidate by the total weight of
    the rows nearest to it (and measures the variance used by ``tol``); the
    weighted candidates are reduced to ``n_clusters`` centres by weighted
    k-means++ and weighted Lloyd, in memory.

    Returns
    -------
    centers : list of ndarray of shape (n_clusters, d)
    n_passes : int
        Full passes over the data made (``init_rounds + 1``).
    moments : tuple
        (count, mean, m2) of the data, from the weighting pass.
    """
    ell = oversampling_factor * n_clusters
    # rows kept per block and group: enough that truncation has negligible probability
    m = int(math.ceil(2 * ell + 8 * math.sqrt(ell) + 16))
    if has_unknown_rows(X):
        cands, n_rows = _first_centers_race(X, weights, n_groups, seq, check=check,
                                            split_every=split_every, prep=prep)
        check_n_samples(n_clusters, n_rows)
        n_passes = 1
    else:
        cands = _first_centers(X, weights, n_groups, seq, prep=prep)
        n_passes = 0
    # the rounds differ only in their constants: one graph, built once (PassRunner)
    run_round = PassRunner(X, weights, _parallel_chunk, partial(_parallel_combine, m=m),
                           name="kmeans-init-round", split_every=split_every)
    plan = _array_plan(X)  # the fit's kernel plan, in memory as in the passes
    for rnd in range(init_rounds):
        stacked = np.concatenate(cands, axis=0)
        bounds = np.concatenate(([0], np.cumsum([len(c) for c in cands]))).astype(np.intp)
        res = run_round(_prep_consts({"seq": seq, "rnd": rnd, "cands": stacked,
                                      "bounds": bounds, "m": m, "check": check and rnd == 0},
                                     prep, False, plan))
        n_passes += 1
        cost, keys, rows = res
        for g in range(n_groups):
            chosen = keys[g] * ell > cost[g]
            if rnd == init_rounds - 1 and len(cands[g]) + chosen.sum() < n_clusters:
                # tiny data: top up with the heaviest remaining rows
                need = n_clusters - len(cands[g])
                chosen = np.zeros_like(chosen)
                chosen[: min(need, np.count_nonzero(keys[g] > 0))] = True
            if chosen.any():
                cands[g] = np.concatenate([cands[g], rows[g][chosen]], axis=0)
        if verbose:
            print(
                f"[daskmeans] k-means|| round {rnd + 1}/{init_rounds}: cost {cost.min():.6g}, "
                f"{min(len(c) for c in cands)} candidates"
            )
        if callback is not None:
            callback({"phase": "init", "iteration": rnd + 1, "max_iter": init_rounds,
                      "inertia": float(cost.min()), "shift": None, "n_passes": n_passes})
    # weight the candidates: one pass, which also measures the variance for tol
    run = pass_runner(X, weights, split_every=split_every, name="kmeans-init-weights",
                      prep=prep)
    res = run(pass_consts(cands, with_moments=True, prep=prep, plan=plan))
    n_passes += 1
    centers = []
    offset = 0
    for g, cand in enumerate(cands):
        wts = res["counts"][offset : offset + len(cand)]
        offset += len(cand)
        keep = wts > 0
        cand, wts = cand[keep], wts[keep]
        rng = block_rng(seq, _LOCAL, g)
        if len(cand) <= n_clusters:
            C = _pad_centers(cand, n_clusters, rng)
        else:
            C0 = kmeans_plusplus(cand, wts, n_clusters, rng, plan=plan)
            C, _, _ = lloyd_numpy(cand, wts, C0, max_iter=100, tol_abs=0.0,
                                  normalize=prep is not None and prep.normalize, plan=plan)
        centers.append(C)
    return centers, n_passes, res["moments"]


def _pad_centers(cand: np.ndarray, n_clusters: int, rng) -> np.ndarray:
    """Use every candidate; repeat some when there are fewer than k of them."""
    if len(cand) == n_clusters:
        return cand.copy()
    extra = rng.choice(len(cand), n_clusters - len(cand))
    return np.concatenate([cand, cand[extra]], axis=0)


# --------------------------------------------------------------------------- #
# Small data: k-means|| is k-means++ on all rows
# --------------------------------------------------------------------------- #
#: Largest data (bytes of X: rows x features x item size) that k-means||
#: seeds by greedy k-means++ on all of its rows (see :func:`small_data`).
SMALL_DATA_BYTES = 8 << 20

#: Largest ``n_samples * n_clusters`` of that rule: k-means++ makes k
#: sequential steps over all rows, which k-means|| spreads over a few passes.
SMALL_DATA_ROW_CENTRES = 4_000_000


#: Fewest centres for which ``init="auto"`` starts from a hierarchical fit rather
#: than k-means||, whose in-memory reduction of ``oversampling_factor * k *
#: init_rounds`` candidates costs ``candidates x k x d``. Set from
#: ``benchmarks/bench_init.py`` (results in ``benchmarks/RESULTS.md``).
HIERARCHICAL_INIT_MIN_K = 4096


def small_data(X: da.Array, n_clusters: int, oversampling_factor: float = 2.0,
               init_rounds: int = 5) -> bool:
    """Whether k-means|| degenerates into greedy k-means++ on all rows of ``X``.

    True when the row count is known and either ``X`` has no more rows than
    the candidates k-means|| would keep (``1 + init_rounds *
    oversampling_factor * n_clusters``), or it holds at most
    :data:`SMALL_DATA_BYTES` with ``n_samples * n_clusters`` at most
    :data:`SMALL_DATA_ROW_CENTRES`. The rule depends only on the shape, the
    dtype and the parameters, never on the chunking or the scheduler.
    ``benchmarks/bench_startup.py --small`` measures what it saves.
    """
    if has_unknown_rows(X):
        return False
    n, d = X.shape
    if n <= 1 + init_rounds * oversampling_factor * n_clusters:
        return True
    nbytes = n * d * X.dtype.itemsize
    return nbytes <= SMALL_DATA_BYTES and n * n_clusters <= SMALL_DATA_ROW_CENTRES


def plusplus_all_rows(X: da.Array, weights, n_clusters: int, n_groups: int, seq, *,
                      check: bool = False, split_every=None, prep=None, callback=None,
                      verbose: int = 0):
    """k-means|| on small in-memory data: greedy k-means++ on every row.

    The rows are taken in one pass (preprocessed when there is a ``prep``),
    in their order whatever the chunking, and the draws of
    :func:`kmeans_plusplus` use one generator per group, the one of
    ``init="k-means++"`` (whose sample is every row up to 10,000 rows): the
    same centres, bitwise. Without ``prep`` the variance behind ``tol`` is
    measured on these rows. Returns None, after the pass, when fewer than
    ``n_clusters`` rows have a positive weight (k-means|| then runs as on
    large data). One ``"init"`` event goes to ``callback`` (its inertia: the
    k-means++ potential, the lowest of the groups).

    Returns
    -------
    centers : list of ndarray of shape (n_clusters, d)
    n_passes : int
        1.
    moments : tuple or None
    """
    rows, wts = sample_rows(X, weights, X.shape[0], seq, check=check,
                            split_every=split_every, prep=prep)
    keep = wts > 0
    if int(np.count_nonzero(keep)) < n_clusters:
        return None
    plan = _array_plan(X)
    moments = _kernels.moments(rows, plan=plan) if prep is None and len(rows) else None
    if not keep.all():
        rows, wts = rows[keep], wts[keep]
    centers, pots = [], []
    # skinny products (a few candidates x all rows): BLAS threads only cost here, and
    # badly so on a busy machine (as scikit-learn, which limits BLAS during its fit)
    with _shared_blas_limit():
        for g in range(n_groups):
            C, pot = _kmeans_plusplus(rows, wts, n_clusters, block_rng(seq, _LOCAL, g),
                                      plan=plan)
            centers.append(C)
            pots.append(pot)
    if verbose:
        print(f"[daskmeans] k-means|| on {len(rows)} rows: k-means++ on all of them, "
              f"potential {min(pots):.6g}")
    if callback is not None:
        callback({"phase": "init", "iteration": 1, "max_iter": 1, "inertia": float(min(pots)),
                  "shift": None, "n_passes": 1})
    return centers, 1, moments


# --------------------------------------------------------------------------- #
# Dispatcher
# --------------------------------------------------------------------------- #
def init_centers(
    X: da.Array,
    weights,
    n_clusters: int,
    method,
    seq,
    n_groups: int,
    *,
    oversampling_factor: float = 2.0,
    init_rounds: int = 5,
    sample_size: int | None = None,
    check: bool = False,
    split_every=None,
    callback=None,
    verbose: int = 0,
    prep=None,
    in_memory: bool = False,
) -> tuple[list, int, tuple | None]:
    """Initial centres for ``n_groups`` candidates.

    ``in_memory``: X wraps data already in this process's memory (NumPy or
    SciPy sparse input); then ``"k-means||"`` on small data (:func:`small_data`) is greedy
    k-means++ on all rows (:func:`plusplus_all_rows`). Dask and Zarr data are
    never gathered: their k-means|| always runs its passes.

    ``prep`` (a :class:`daskmeans.engine._prep.Prep`) is applied to every block.
    A *pending* prep (``standardize`` whose statistics are not known yet) is
    accepted by ``"random"`` and ``"k-means++"``: their one sampling pass
    does not depend on the scale, so it also measures the raw moments, from
    which the prep is resolved and the sampled rows are mapped.

    Returns
    -------
    centers : list of ndarray of shape (n_clusters, d)
        In the preprocessed space (the resolved one for a pending prep).
    n_passes : int
    moments : tuple or None
        (count, mean, m2) of the preprocessed rows when a pass measured
        them, else None; for a pending prep, those of the raw (non-omitted)
        rows, from which the caller resolves the same prep.
    """
    pending = prep is not None and prep.pending
    if method == "k-means||":
        if pending:
            raise ValueError("internal: k-means|| needs the standardisation statistics first")
        if in_memory and small_data(X, n_clusters, oversampling_factor, init_rounds):
            out = plusplus_all_rows(X, weights, n_clusters, n_groups, seq, check=check,
                                    split_every=split_every, prep=prep, callback=callback,
                                    verbose=verbose)
            if out is not None:
                return out
        return kmeans_parallel(
            X, weights, n_clusters, n_groups, seq,
            oversampling_factor=oversampling_factor, init_rounds=init_rounds, check=check,
            split_every=split_every, callback=callback, verbose=verbose, prep=prep,
        )
    if method == "random":
        rows = random_rows(X, weights, n_clusters, n_groups, seq, check=check,
                           split_every=split_every, prep=prep, with_moments=pending)
        moments = None
        if pending:
            rows, moments = rows
            work = prep.resolve(moments)
            rows = np.stack([work.to_work(r, what="X") for r in rows])
        if rows.shape[1] < n_clusters:  # only possible when the row count was unknown
            check_n_samples(n_clusters, rows.shape[1])
        return [rows[g].copy() for g in range(n_groups)], 1, moments
    if method == "k-means++":
        size = sample_size or max(10_000, 50 * n_clusters)
        res = sample_rows(X, weights, size, seq, check=check, split_every=split_every,
                          prep=prep, with_moments=pending)
        sample, wts = res[:2]
        moments = res[2] if pending else None
        keep = wts > 0
        sample, wts = sample[keep], wts[keep]
        if len(sample) < n_clusters:
            if has_unknown_rows(X) or size >= X.shape[0]:
                # the sample already held every row: fewer usable rows than clusters
                if weights is None and prep is None:
                    check_n_samples(n_clusters, len(sample))
                raise ValueError(
                    f"n_clusters={n_clusters} must be <= the number of rows not omitted "
                    f"and with positive sample_weight, got {len(sample)}."
                )
            # rows of positive weight are too rare for a sample of this size: draw
            # n_clusters distinct rows by weight instead (one more pass, bounded memory)
            rows = random_rows(X, weights, n_clusters, n_groups, seq, split_every=split_every,
                               prep=prep)
            if pending:
                work = prep.resolve(moments)
                rows = np.stack([work.to_work(r, what="X") for r in rows])
            return [rows[g].copy() for g in range(n_groups)], 2, moments
        if pending:
            sample = prep.resolve(moments).to_work(sample, what="X")
        centers = [
            kmeans_plusplus(sample, wts, n_clusters, block_rng(seq, _LOCAL, g),
                            plan=_array_plan(X))
            for g in range(n_groups)
        ]
        return centers, 1, moments
    raise ValueError(f"internal: unknown init method {method!r}")
