"""The kernels' public functions: each runs the path its plan states.

Every function here takes plain NumPy arrays and returns plain NumPy arrays or
small dictionaries of them. Nothing in this package knows about Dask: graph
code in :mod:`daskmeans.engine._lloyd` and :mod:`daskmeans.engine._init` maps
these functions over the blocks of a Dask array and combines their results.

``plan`` (a :class:`~daskmeans.kernels.KernelPlan`) says which path runs; a
fit chooses it once (:func:`~daskmeans.kernels.choose_plan`) and passes it to
every block. Without one, a call chooses it from the array it is given, as a
fit of that array would.

Centres may hold several *groups* stacked along the first axis, described by
``bounds``: group ``g`` owns rows ``bounds[g]:bounds[g + 1]`` of ``centers``.
Each sample is assigned, separately within every group, to the nearest centre
of that group. Groups let ``n_init`` candidate solutions (or candidate values
of k) share a single read of every block.
"""

from __future__ import annotations

import numpy as np

from . import _numpy, _sparse
from ._numpy import as_bounds, distances_block, row_block_size, sq_norms, top_far
from ._plan import KernelPlan, choose_plan
from ._sparse import is_sparse

__all__ = [
    "accumulate",
    "assign",
    "combine_moments",
    "combine_partials",
    "distances_block",
    "lloyd_partial",
    "moments",
    "nearest",
    "probe_cells",
    "row_block_size",
    "seeding_compiled",
    "seeding_operand",
    "seeding_step",
    "sq_norms",
    "top_centers",
]


def _plan_for(plan: KernelPlan | None, X: np.ndarray, n_centers: int) -> KernelPlan:
    if plan is not None:
        return plan
    return choose_plan(X.dtype, n_centers, X.shape[1] if X.ndim == 2 else 1, X.shape[0])


def _compiled_applies(plan: KernelPlan, X: np.ndarray, centers: np.ndarray,
                      weights=None) -> bool:
    """Whether the plan's compiled loops run on these arrays (else NumPy)."""
    return (
        plan.compiled
        and X.ndim == 2
        and X.dtype in (np.float32, np.float64)
        and centers.dtype == X.dtype
        and X.shape[0] > 0
        and centers.shape[0] > 0
        and (weights is None or weights.dtype.kind == "f")
    )


def _compiled():
    from . import _compiled as mod  # imports numba: only plans that pick it get here

    return mod


def nearest(X: np.ndarray, centers: np.ndarray, bounds=None, *,
            plan: KernelPlan | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Nearest centre of every group for every row, by sub-blocks.

    Parameters
    ----------
    X : ndarray of shape (n, d)
    centers : ndarray of shape (K, d), same dtype as ``X``
    bounds : sequence of int, optional
        Group boundaries (default: one group).
    plan : KernelPlan, optional

    Returns
    -------
    labels : ndarray of shape (n_groups, n), intp
        Global index (into ``centers``) of the nearest centre in each group.
    sq_dist : ndarray of shape (n_groups, n), float64
        Squared distance to it.
    """
    if is_sparse(X):
        return _sparse.nearest(X, centers, bounds)
    plan = _plan_for(plan, X, centers.shape[0])
    bounds = as_bounds(bounds, centers.shape[0])
    n = X.shape[0]
    n_groups = len(bounds) - 1
    labels = np.empty((n_groups, n), dtype=np.intp)
    dist = np.empty((n_groups, n), dtype=np.float64)
    if _compiled_applies(plan, X, centers):
        _compiled().nearest(plan, X, centers, bounds, labels, dist)
    else:
        _numpy.nearest(plan, X, centers, bounds, labels, dist)
    return labels, dist


def lloyd_block(X: np.ndarray, centers: np.ndarray, weights: np.ndarray | None = None, *,
                max_iter: int, tol: float, plan: KernelPlan | None = None) -> dict | None:
    """Up to ``max_iter`` Lloyd iterations of one in-memory block in one compiled call,
    or None where that call does not run these arrays.

    The iterations are bitwise those of a fit loop over the block's
    :func:`lloyd_partial` passes (with ``plan``): it applies where such a
    pass runs the C kernels of the NumPy plan (:mod:`._native`) on a single
    group of centres. See :func:`daskmeans.kernels._native.lloyd_loop` for
    what is returned; it stops before a pass that leaves a cluster empty.
    """
    if is_sparse(X) or X.ndim != 2 or centers.dtype != X.dtype or X.shape[0] == 0:
        return None
    plan = _plan_for(plan, X, centers.shape[0])
    if _compiled_applies(plan, X, centers, weights):
        return None
    if not _numpy._native_applies(plan, X, as_bounds(None, centers.shape[0])):
        return None
    from . import _native

    return _native.lloyd_loop(X, centers, weights, max_iter=max_iter, tol=tol)


def lloyd_partial(
    X: np.ndarray,
    centers: np.ndarray,
    weights: np.ndarray | None = None,
    *,
    bounds=None,
    n_far: int = 0,
    check_finite: bool = False,
    with_moments: bool = False,
    plan: KernelPlan | None = None,
) -> dict:
    """One sweep of a block: partial sums, weights and inertia per centre.

    Parameters
    ----------
    X : ndarray of shape (n, d), float32 or float64
        One block of rows.
    centers : ndarray of shape (K, d), same dtype as ``X``
        Centres of all groups, stacked.
    weights : ndarray of shape (n,) or None
        Sample weights; None means all ones.
    bounds : sequence of int, optional
        Group boundaries into ``centers`` (default: one group of all K).
    n_far : int
        Also return, per group, the ``n_far`` rows farthest from their centre
        (used to relocate empty clusters). 0 disables it.
    check_finite : bool
        Raise ValueError if the block holds NaN or infinity.
    with_moments : bool
        Also return the unweighted count, mean and sum of squared deviations
        of every feature (see :func:`moments`).
    plan : KernelPlan, optional
        The path to run (default: chosen for this block).

    Returns
    -------
    dict
        ``sums`` (K, d) float64, weighted sum of the rows assigned to each
        centre; ``counts`` (K,) float64, their total weight; ``inertia``
        (n_groups,) float64, weighted sum of squared distances to the nearest
        centre of each group; optionally ``far`` (``dist``, ``rows``,
        ``labels``, ``weights`` of the farthest rows of each group, by
        decreasing distance, and ``m``) and ``moments``.
    """
    if is_sparse(X):
        return _sparse.lloyd_partial(X, centers, weights, bounds=bounds, n_far=n_far,
                                     check_finite=check_finite, with_moments=with_moments)
    if check_finite and not np.isfinite(X).all():
        raise ValueError(
            "Input X contains NaN or infinity; expected finite values in every row."
        )
    plan = _plan_for(plan, X, centers.shape[0])
    bounds = as_bounds(bounds, centers.shape[0])
    n, d = X.shape
    K = centers.shape[0]
    n_groups = len(bounds) - 1
    sums = np.zeros((K, d), dtype=np.float64)
    counts = np.zeros(K, dtype=np.float64)
    inertia = np.zeros(n_groups, dtype=np.float64)
    if _compiled_applies(plan, X, centers, weights):
        far_out = _compiled().sweep(plan, X, centers, weights, bounds, sums, counts, inertia,
                                    n_far)
    else:
        far_out = _numpy.sweep(plan, X, centers, weights, bounds, sums, counts, inertia, n_far)
    out = {"sums": sums, "counts": counts, "inertia": inertia}
    if far_out is not None:
        out["far"] = far_out
    if with_moments:
        out["moments"] = moments(X, plan=plan)
    return out


def moments(X: np.ndarray, *, plan: KernelPlan | None = None,
            ) -> tuple[float, np.ndarray, np.ndarray]:
    """Count, mean and sum of squared deviations of every column of ``X``.

    Parameters
    ----------
    X : ndarray of shape (n, d)
    plan : KernelPlan, optional

    Returns
    -------
    count : float
    mean : ndarray of shape (d,), float64
    m2 : ndarray of shape (d,), float64
    """
    if is_sparse(X):
        return _sparse.moments(X)
    n = X.shape[0]
    if n == 0:
        return 0.0, np.zeros(X.shape[1]), np.zeros(X.shape[1])
    plan = _plan_for(plan, X, 1)
    if plan.compiled and X.ndim == 2 and X.dtype in (np.float32, np.float64):
        return _compiled().moments(plan, X)
    return _numpy.moments(X)


def combine_moments(parts) -> tuple[float, np.ndarray, np.ndarray]:
    """Merge (count, mean, m2) triples by Chan et al.'s parallel formula."""
    n, mean, m2 = parts[0]
    for nb, meanb, m2b in parts[1:]:
        if nb == 0:
            continue
        if n == 0:
            n, mean, m2 = nb, meanb, m2b
            continue
        tot = n + nb
        delta = meanb - mean
        mean = mean + delta * (nb / tot)
        m2 = m2 + m2b + delta**2 * (n * nb / tot)
        n = tot
    return n, mean, m2


def _sum_in_place(arrays: list) -> np.ndarray:
    """The sum of equally shaped arrays, added one by one into a copy of the first
    (the order ``np.sum(arrays, axis=0)`` adds them in, without its stacked copy:
    (k, d) sums of sparse data can be large, 410 MB for k=1,024, d=50,000)."""
    out = np.array(arrays[0], copy=True)
    for a in arrays[1:]:
        out += a
    return out


def combine_partials(parts: list[dict]) -> dict:
    """Sum the outputs of :func:`lloyd_partial` (or of earlier combines)."""
    first = parts[0]
    with np.errstate(invalid="ignore"):  # inf + -inf from non-finite data: reported by the caller
        out = {
            "sums": _sum_in_place([p["sums"] for p in parts]),
            "counts": np.sum([p["counts"] for p in parts], axis=0),
            "inertia": np.sum([p["inertia"] for p in parts], axis=0),
        }
    if "far" in first:
        m = first["far"]["m"]
        cat = {
            key: np.concatenate([p["far"][key] for p in parts], axis=1)
            for key in ("dist", "rows", "labels", "weights")
        }
        dist, rows, labels, weights = top_far(
            cat["dist"], cat["rows"], cat["labels"], cat["weights"], m
        )
        out["far"] = {
            "dist": dist,
            "rows": rows,
            "labels": labels,
            "weights": weights,
            "m": m,
        }
    if "moments" in first:
        with np.errstate(invalid="ignore"):
            out["moments"] = combine_moments([p["moments"] for p in parts])
    return out


def assign(
    X: np.ndarray,
    centers: np.ndarray,
    *,
    return_distances: bool = False,
    check_finite: bool = False,
    plan: KernelPlan | None = None,
):
    """Labels-only sweep: index of the nearest centre for every row.

    Parameters
    ----------
    X : ndarray of shape (n, d)
    centers : ndarray of shape (k, d), same dtype as ``X``
    return_distances : bool
        Also return the squared distance to the nearest centre (float64).
    check_finite : bool
        Raise ValueError if the block holds NaN or infinity.
    plan : KernelPlan, optional

    Returns
    -------
    labels : ndarray of shape (n,), int64
    sq_dist : ndarray of shape (n,), float64, only if ``return_distances``
    """
    if is_sparse(X):
        return _sparse.assign(X, centers, return_distances=return_distances,
                              check_finite=check_finite)
    if check_finite and not np.isfinite(X).all():
        raise ValueError(
            "Input X contains NaN or infinity; expected finite values in every row."
        )
    plan = _plan_for(plan, X, centers.shape[0])
    n = X.shape[0]
    k = centers.shape[0]
    labels = np.empty(n, dtype=np.int64)
    dist = np.empty(n, dtype=np.float64) if return_distances else None
    if _compiled_applies(plan, X, centers):
        dist2 = None if dist is None else dist[None, :]
        _compiled().nearest(plan, X, centers, as_bounds(None, k), labels[None, :], dist2)
    else:
        _numpy.assign(plan, X, centers, labels, dist)
    return (labels, dist) if return_distances else labels


def probe_cells(
    X: np.ndarray,
    probes: np.ndarray,
    fine: np.ndarray,
    offsets: np.ndarray,
    prices: np.ndarray | None = None,
    *,
    with_second: bool = False,
    plan: KernelPlan | None = None,
):
    """Best fine centre of every probed cell of every row (two-level search).

    Parameters
    ----------
    X : ndarray of shape (n, d)
    probes : ndarray of shape (n, P), int
        The cells each row searches.
    fine : ndarray of shape (k, d), same dtype as ``X``
        Fine centres grouped by cell: cell ``c`` owns ``offsets[c]:offsets[c + 1]``.
    offsets : ndarray of shape (m + 1,), int
    prices : ndarray of shape (k,), optional
        Added to the scores before a cell's best is chosen: in float64 on the
        NumPy path; the compiled path adds them to the squared norms (float64,
        then rounded to the dtype of ``X``).
    with_second : bool
        Also return every cell's second-best score.
    plan : KernelPlan, optional

    Returns
    -------
    labels : ndarray of shape (n, P), int64
        Index into ``fine`` of the best centre of cell ``probes[i, p]``, or 0
        where that cell has no centre.
    score : ndarray of shape (n, P), float64
        Its ``|c|^2 - 2 x . c`` (computed in the dtype of ``X``) plus its
        price; infinity where the cell has no centre. The first minimising
        centre of a cell wins.
    second : ndarray of shape (n, P), float64, only with ``with_second``
        The cell's second-best score (infinity with fewer than 2 centres).
    """
    n, P = probes.shape
    labels = np.zeros(n * P, dtype=np.int64)
    score = np.full(n * P, np.inf)
    second = np.full(n * P, np.inf) if with_second else None
    plan = _plan_for(plan, X, fine.shape[0])
    if (_compiled_applies(plan, X, fine)
            and plan.uses_columns(X.dtype, fine.shape[0], 1, X.shape[1])):
        _compiled().probe_cells(plan, X, probes, fine, offsets, prices, labels, score, second)
    elif n:
        _numpy.probe_cells(X, probes, fine, offsets, prices, labels, score, second)
    out = (labels.reshape(n, P), score.reshape(n, P))
    return out + (second.reshape(n, P),) if with_second else out


def top_centers(X: np.ndarray, centers: np.ndarray, n_top: int, *,
                plan: KernelPlan | None = None) -> np.ndarray:
    """The ``n_top`` nearest centres of every row, nearest first.

    Squared distances as :func:`distances_block` forms them (in the dtype of
    ``X``, clipped at zero); ties go to the lower index. Both paths give the
    same indices.

    Parameters
    ----------
    X : ndarray of shape (n, d)
    centers : ndarray of shape (m, d), same dtype as ``X``
    n_top : int
        At most ``m``.
    plan : KernelPlan, optional

    Returns
    -------
    ndarray of shape (n, n_top), intp
    """
    plan = _plan_for(plan, X, centers.shape[0])
    if (_compiled_applies(plan, X, centers) and not is_sparse(X)
            and n_top <= _numpy.TOP_BY_ARGMIN and n_top <= centers.shape[0]):
        out = np.empty((X.shape[0], n_top), dtype=np.intp)
        _compiled().top_centers(plan, np.ascontiguousarray(X), np.ascontiguousarray(centers),
                                out)
        return out
    return _numpy.top_centers(X, centers, n_top)


def accumulate(X, labels: np.ndarray, weights: np.ndarray | None, n_centers: int, *,
               plan: KernelPlan | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Weighted per-centre sums of rows and weights, for labels found elsewhere.

    Parameters
    ----------
    X : ndarray or scipy.sparse matrix of shape (n, d)
    labels : ndarray of shape (n,), integer in ``[0, n_centers)``
    weights : ndarray of shape (n,) or None
    n_centers : int
    plan : KernelPlan, optional
        Compiled plans add the rows one by one in float64 (one read of ``X``
        whatever ``n_centers``); the NumPy path sums by a one-hot product or
        by sorting the rows.

    Returns
    -------
    sums : ndarray of shape (n_centers, d), float64
    counts : ndarray of shape (n_centers,), float64
    """
    plan = _plan_for(plan, X, n_centers)
    dense = not is_sparse(X) and X.ndim == 2 and X.dtype in (np.float32, np.float64)
    if (plan.compiled and dense and X.shape[0] > 0
            and (weights is None or np.asarray(weights).dtype.kind == "f")):
        labels = np.asarray(labels, dtype=np.intp)
        if labels.shape != (X.shape[0],) or labels.min() < 0 or labels.max() >= n_centers:
            raise ValueError(f"accumulate: labels must be {X.shape[0]} integers in "
                             f"[0, {n_centers}).")
        sums = np.zeros((n_centers, X.shape[1]))
        counts = np.zeros(n_centers)
        w = np.empty(0) if weights is None else np.asarray(weights, dtype=np.float64)
        _compiled().accumulate_labels(np.ascontiguousarray(X), w, labels, sums, counts)
        return sums, counts
    return _numpy.accumulate(X, labels, weights, n_centers)


def seeding_compiled(X: np.ndarray, plan: KernelPlan) -> bool:
    """Whether :func:`seeding_step` runs for ``X`` under ``plan``: compiled
    whole blocks, C-contiguous float32 or float64 rows."""
    return (plan.compiled and plan.whole_block and X.ndim == 2
            and X.dtype in (np.float32, np.float64) and X.flags.c_contiguous)


def seeding_operand(X: np.ndarray, plan: KernelPlan) -> np.ndarray | None:
    """The sample ``X`` held transposed for :func:`seeding_step`'s column tiles, or
    None where they do not run (see :func:`seeding_compiled`; the plan's column
    tiles, a sample of at most ``plan.seeding_tile_bytes``)."""
    if not (seeding_compiled(X, plan) and plan.columns and X.nbytes <= plan.seeding_tile_bytes
            and X.shape[0] > 0):
        return None
    nb = _compiled().nb
    return nb.seeding_operand(X) if nb.SEEDING_TILES else None


def seeding_step(X: np.ndarray, x_sq: np.ndarray, picks: np.ndarray, closest: np.ndarray,
                 w: np.ndarray, cum: np.ndarray, XT: np.ndarray | None = None
                 ) -> tuple[int, float]:
    """A greedy k-means++ step in one compiled call (see :func:`seeding_compiled`).

    Of the candidates ``X[picks]``, the first whose potential ``sum_i w[i] *
    min(closest[i], max(||X[i] - X[picks[t]]||^2, 0))`` is smallest (products in
    the dtype of ``X``, the rest in float64; ``w`` of length 0: unit weights).
    ``closest`` (float64) is lowered to that candidate's distances in place, and
    ``cum`` gets their running weighted sum, added in order as ``np.cumsum(closest
    * w)`` (equal with unit weights; to the last bit with weights, whose products
    may be fused with the additions). Returns ``(index into picks, potential)``.

    ``XT``: ``X`` transposed by :func:`seeding_operand`; the products are then
    computed by the column tiles (multiply-adds in feature order), else by BLAS.
    """
    from . import _numba_loops

    if XT is not None:
        best, pot = _numba_loops.seeding_step_tiles(X, XT, x_sq, picks, closest, w, cum)
    else:
        best, pot = _numba_loops.seeding_step(X, x_sq, picks, closest, w, cum)
    return int(best), float(pot)
