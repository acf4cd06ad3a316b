"""NumPy and BLAS kernels: the reference path of every kernel.

Used by plans with ``backend="numpy"`` (small work, no numba, or
``DASKMEANS_KERNELS=numpy``) and by the tests as the reference the compiled
path is compared with. Sub-blocks of rows keep each distance matrix about
``plan.dist_block_bytes`` in size. Groups of up to ``plan.native_max_k``
centres are swept by the C kernels built at install (:mod:`._native`) when
they were built: one fused loop instead of products, argmin and sums.
"""

from __future__ import annotations

import numpy as np

from . import _native, _sparse, _thresholds
from ._plan import KernelPlan
from ._sparse import is_sparse

__all__ = [
    "FarRows",
    "accumulate",
    "as_bounds",
    "assign",
    "distances_block",
    "moments",
    "nearest",
    "pairs_by_cell",
    "probe_cells",
    "row_block_size",
    "sq_norms",
    "sweep",
    "top_far",
]


def row_block_size(n_centers: int, itemsize: int, n_rows: int,
                   block_bytes: int = _thresholds.DIST_BLOCK_BYTES) -> int:
    """Rows per sub-block so that the distance matrix stays cache sized.

    Parameters
    ----------
    n_centers : int
        Number of centres (columns of the distance matrix).
    itemsize : int
        Bytes per element of the distance matrix.
    n_rows : int
        Rows in the block; the result never exceeds it.
    block_bytes : int
        Target bytes of the distance matrix (a plan's ``dist_block_bytes``).

    Returns
    -------
    int
        Sub-block length, at least 1.
    """
    rows = block_bytes // max(1, n_centers * itemsize)
    rows = max(256, min(rows, 8192))
    return max(1, min(rows, n_rows))


def sq_norms(X: np.ndarray) -> np.ndarray:
    """Squared Euclidean norm of every row of ``X``, in the dtype of ``X``."""
    if is_sparse(X):
        return _sparse.sq_norms(X)
    return np.einsum("ij,ij->i", X, X)


def as_bounds(bounds, n_centers: int) -> np.ndarray:
    if bounds is None:
        return np.array([0, n_centers], dtype=np.intp)
    return np.asarray(bounds, dtype=np.intp)


def distances_block(X: np.ndarray, centers: np.ndarray, c_sq: np.ndarray) -> np.ndarray:
    """Squared distances between rows of ``X`` and ``centers`` by BLAS.

    Uses ``||x||^2 - 2 x.c + ||c||^2``; the result is clipped at zero to remove
    negative values produced by cancellation.

    Parameters
    ----------
    X : ndarray of shape (n, d)
    centers : ndarray of shape (k, d), same dtype as ``X``
    c_sq : ndarray of shape (k,)
        ``sq_norms(centers)``.

    Returns
    -------
    ndarray of shape (n, k), dtype of ``X``
    """
    if is_sparse(X):
        return _sparse.distances_block(X, centers, c_sq)
    D = X @ centers.T
    D *= -2
    D += c_sq
    D += sq_norms(X)[:, None]
    np.maximum(D, 0, out=D)
    return D



def nearest(plan: KernelPlan, X: np.ndarray, centers: np.ndarray, bounds: np.ndarray,
            labels: np.ndarray, dist: np.ndarray) -> None:
    """Nearest centre of every group: fills ``labels`` and ``dist`` (n_groups, n)."""
    n = X.shape[0]
    if _native_applies(plan, X, bounds):
        for g in range(len(bounds) - 1):
            lo, hi = int(bounds[g]), int(bounds[g + 1])
            lab = np.empty(n, dtype=np.int64)
            mins = np.empty(n, dtype=X.dtype)
            _native.sweep(X, centers[lo:hi], labels=lab, dists=mins)
            labels[g] = lab + lo
            dist[g] = mins
        return
    c_sq = sq_norms(centers)
    step = plan.step or row_block_size(centers.shape[0], X.itemsize, n, plan.dist_block_bytes)
    for start in range(0, n, step):
        lab, mins = _group_nearest(X[start : start + step], centers, c_sq, bounds)
        labels[:, start : start + step] = lab
        dist[:, start : start + step] = mins


def _native_applies(plan: KernelPlan, X: np.ndarray, bounds) -> bool:
    """Whether the plan's C kernels (:mod:`._native`) sweep these groups."""
    return (plan.native_max_k > 0 and not is_sparse(X)
            and _native.applies(X, int(np.diff(bounds).max(initial=0)), plan.native_max_k)
            and np.diff(bounds).min(initial=1) > 0)


def _group_nearest(Xs: np.ndarray, centers: np.ndarray, c_sq: np.ndarray,
                   bounds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-group nearest centre (global index) and squared distance of the rows ``Xs``."""
    if _by_columns(Xs.shape[0], bounds):
        # centres by rows: (-2 C) X^T is the transposed score matrix, ready for
        # the loop over centres without a transposing copy (-2 C is exact)
        DT = (centers * -2) @ Xs.T
        DT += c_sq[:, None]
        n_groups = len(bounds) - 1
        lab = np.empty((n_groups, Xs.shape[0]), dtype=np.intp)
        mins = np.empty((n_groups, Xs.shape[0]), dtype=DT.dtype)
        _argmin_by_columns(DT, bounds, lab, mins)
    else:
        D = Xs @ centers.T
        D *= -2
        D += c_sq
        lab, mins = _group_argmin(D, bounds)
    mins += sq_norms(Xs)
    np.maximum(mins, 0, out=mins)
    return lab, mins


#: Largest group of centres whose argmin :func:`_group_argmin` finds by a loop
#: over the centres (see :func:`_argmin_by_columns`), and the fewest rows for it.
COLUMN_LOOP_MAX_K = 8
COLUMN_LOOP_MIN_ROWS = 2048


def _by_columns(n_rows: int, bounds: np.ndarray) -> bool:
    """Whether the argmin over every group is found by :func:`_argmin_by_columns`."""
    return (n_rows >= COLUMN_LOOP_MIN_ROWS
            and np.diff(bounds).max(initial=0) <= COLUMN_LOOP_MAX_K)


def _group_argmin(D: np.ndarray, bounds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-group argmin (as a global centre index) and minimum of ``D``.

    ``D`` holds ``||c||^2 - 2 x.c`` (no row norm); returns labels of shape
    (n_groups, n) and minima of shape (n_groups, n). Ties go to the first
    centre, as :func:`numpy.argmin`.
    """
    n = D.shape[0]
    n_groups = len(bounds) - 1
    labels = np.empty((n_groups, n), dtype=np.intp)
    mins = np.empty((n_groups, n), dtype=D.dtype)
    if _by_columns(n, bounds):
        _argmin_by_columns(np.ascontiguousarray(D.T), bounds, labels, mins)
        return labels, mins
    rows = np.arange(n)
    for g in range(n_groups):
        lo, hi = bounds[g], bounds[g + 1]
        lab = np.argmin(D[:, lo:hi], axis=1)
        mins[g] = D[rows, lab + lo]
        labels[g] = lab + lo
    return labels, mins


def _argmin_by_columns(DT: np.ndarray, bounds: np.ndarray, labels: np.ndarray,
                       mins: np.ndarray) -> None:
    """:func:`_group_argmin` of ``DT.T`` for small groups, into ``labels`` and ``mins``.

    ``np.argmin(D, axis=1)`` over a handful of columns costs about as much
    per row as a wide one (25 ns a row at k = 8); comparing whole rows of
    the transposed matrix, one centre after the other, takes four vector
    operations per centre (``benchmarks/bench_startup.py --small``). A later
    centre wins only when strictly closer: ties keep the first, as argmin,
    and the minima are the same values.
    """
    n = DT.shape[1]
    closer = np.empty(n, dtype=bool)
    step = np.empty(n, dtype=np.intp)
    for g in range(len(bounds) - 1):
        lo, hi = int(bounds[g]), int(bounds[g + 1])
        best, lab = mins[g], labels[g]
        best[:] = DT[lo]
        lab.fill(lo)
        for j in range(lo + 1, hi):
            row = DT[j]
            np.less(row, best, out=closer)
            np.minimum(best, row, out=best)
            # labels only grow with j: the closer rows take j, the others keep theirs
            np.multiply(closer, j, out=step)
            np.maximum(lab, step, out=lab)



def accumulate(
    X: np.ndarray, labels: np.ndarray, weights: np.ndarray | None, n_centers: int,
    onehot_max_k: int = _thresholds.ONEHOT_MAX_K,
) -> tuple[np.ndarray, np.ndarray]:
    """Weighted per-centre sums of rows and weights.

    Parameters
    ----------
    X : ndarray of shape (n, d)
    labels : ndarray of shape (n,), integer in ``[0, n_centers)``
    weights : ndarray of shape (n,) or None
    n_centers : int
    onehot_max_k : int
        Largest ``n_centers`` summed by a one-hot matrix product (above it:
        sort and :func:`numpy.add.reduceat`).

    Returns
    -------
    sums : ndarray of shape (n_centers, d), float64
    counts : ndarray of shape (n_centers,), float64
    """
    if is_sparse(X):
        return _sparse.accumulate(X, labels, weights, n_centers)
    n, d = X.shape
    if weights is None:
        counts = np.bincount(labels, minlength=n_centers).astype(np.float64)
    else:
        counts = np.bincount(labels, weights=weights, minlength=n_centers)
    if n_centers <= onehot_max_k:
        if n_centers <= COLUMN_LOOP_MAX_K:
            # the same one-hot matrix from k comparisons of the labels (no scatter)
            onehot = np.equal(labels, np.arange(n_centers)[:, None]).astype(X.dtype)
            if weights is not None:
                onehot *= weights.astype(X.dtype, copy=False)
        else:
            onehot = np.zeros((n_centers, n), dtype=X.dtype)
            onehot[labels, np.arange(n)] = 1 if weights is None else weights
        sums = (onehot @ X).astype(np.float64, copy=False)
        return sums, counts
    order = np.argsort(labels, kind="stable")
    sizes = np.bincount(labels, minlength=n_centers)
    present = np.flatnonzero(sizes)
    starts = np.concatenate(([0], np.cumsum(sizes[present])[:-1]))
    Xs = X[order]
    if weights is not None:
        Xs *= weights[order, None].astype(X.dtype, copy=False)
    sums = np.zeros((n_centers, d), dtype=np.float64)
    if len(present):
        sums[present] = np.add.reduceat(Xs, starts, axis=0)
    return sums, counts



def sweep(plan: KernelPlan, X, centers, weights, bounds, sums, counts, inertia, n_far):
    """NumPy body of :func:`daskmeans.kernels.lloyd_partial`.

    Adds into ``sums``, ``counts`` and ``inertia`` in place; returns the ``far``
    entry, or None when ``n_far`` is 0.
    """
    n, d = X.shape
    K = centers.shape[0]
    n_groups = len(bounds) - 1
    far = FarRows(n_groups, n_far, d, X.dtype) if n_far else None
    if _native_applies(plan, X, bounds):
        all_labels = np.empty((n_groups, n), dtype=np.int64) if far is not None else None
        all_mins = np.empty((n_groups, n), dtype=X.dtype) if far is not None else None
        for g in range(n_groups):
            lo, hi = int(bounds[g]), int(bounds[g + 1])
            part_sums = np.zeros((hi - lo, d))
            part_counts = np.zeros(hi - lo)
            part_inertia = np.zeros(1)
            _native.sweep(X, centers[lo:hi], weights,
                          labels=None if far is None else all_labels[g],
                          dists=None if far is None else all_mins[g],
                          sums=part_sums, counts=part_counts, inertia=part_inertia)
            sums[lo:hi] += part_sums
            counts[lo:hi] += part_counts
            inertia[g] += part_inertia[0]
            if far is not None:
                all_labels[g] += lo
        if far is not None:
            far.update(X, weights, all_labels, all_mins)
            return far.result()
        return None
    c_sq = sq_norms(centers)
    # labels and distances of the whole block, kept only for the far rows
    all_labels = np.empty((n_groups, n), dtype=np.intp) if far is not None else None
    all_mins = np.empty((n_groups, n), dtype=X.dtype) if far is not None else None
    step = plan.step or row_block_size(K, X.itemsize, n, plan.dist_block_bytes)
    for start in range(0, n, step):
        Xs = X[start : start + step]
        ws = None if weights is None else weights[start : start + step]
        labels, mins = _group_nearest(Xs, centers, c_sq, bounds)
        if ws is None:
            inertia += mins.sum(axis=1, dtype=np.float64)
        else:
            inertia += mins @ ws.astype(np.float64, copy=False)
        for g in range(n_groups):
            lo, hi = bounds[g], bounds[g + 1]
            s, c = accumulate(Xs, labels[g] - lo, ws, hi - lo, plan.onehot_max_k)
            sums[lo:hi] += s
            counts[lo:hi] += c
        if far is not None:
            all_labels[:, start : start + step] = labels
            all_mins[:, start : start + step] = mins
    if far is not None:
        far.update(X, weights, all_labels, all_mins)
        return far.result()
    return None


def assign(plan: KernelPlan, X: np.ndarray, centers: np.ndarray, labels: np.ndarray,
           dist: np.ndarray | None) -> None:
    """Labels (and squared distances if ``dist`` is given) of every row."""
    n = X.shape[0]
    k = centers.shape[0]
    if _native_applies(plan, X, [0, k]):
        mins = None if dist is None else np.empty(n, dtype=X.dtype)
        _native.sweep(X, centers, labels=labels, dists=mins)
        if dist is not None:
            dist[:] = mins
        return
    c_sq = sq_norms(centers)
    return_distances = dist is not None
    step = plan.step or row_block_size(k, X.itemsize, n, plan.dist_block_bytes)
    for start in range(0, n, step):
        Xs = X[start : start + step]
        D = Xs @ centers.T
        D *= -2
        D += c_sq
        lab = np.argmin(D, axis=1)
        labels[start : start + step] = lab
        if return_distances:
            m = D[np.arange(len(lab)), lab] + sq_norms(Xs)
            dist[start : start + step] = np.maximum(m, 0)


def moments(X: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """:func:`daskmeans.kernels.moments` of a non-empty block, in NumPy."""
    n = X.shape[0]
    mean = X.mean(axis=0, dtype=np.float64)
    dev = X - mean.astype(X.dtype)
    m2 = np.einsum("ij,ij->j", dev, dev, dtype=np.float64)
    return float(n), mean, m2


class FarRows:
    """Running selection of the rows farthest from their centre, per group."""

    def __init__(self, n_groups: int, m: int, d: int, dtype) -> None:
        self.m = m
        self.dist = np.full((n_groups, 0), -np.inf)
        self.rows = np.zeros((n_groups, 0, d), dtype=dtype)
        self.labels = np.zeros((n_groups, 0), dtype=np.intp)
        self.weights = np.zeros((n_groups, 0), dtype=np.float64)

    def update(self, X, w, labels, mins) -> None:
        n = X.shape[0]
        take = min(self.m, n)
        ws = np.ones(n) if w is None else w.astype(np.float64, copy=False)
        if w is not None:
            # zero-weight rows are absent from the data: never relocate to them
            mins = np.where(ws > 0, mins, -np.inf)
        idx = np.argpartition(mins, n - take, axis=1)[:, n - take :]
        new_rows = X[idx]
        dist = np.concatenate([self.dist, np.take_along_axis(mins, idx, 1)], axis=1)
        rows = np.concatenate([self.rows, new_rows], axis=1)
        lab = np.concatenate([self.labels, np.take_along_axis(labels, idx, 1)], axis=1)
        wts = np.concatenate([self.weights, ws[idx]], axis=1)
        self.dist, self.rows, self.labels, self.weights = top_far(
            dist, rows, lab, wts, self.m
        )

    def result(self) -> dict:
        return {
            "dist": self.dist,
            "rows": self.rows,
            "labels": self.labels,
            "weights": self.weights,
            "m": self.m,
        }


def top_far(dist, rows, labels, weights, m):
    """Keep the ``m`` largest distances per group, sorted in decreasing order."""
    order = np.argsort(-dist, axis=1, kind="stable")[:, :m]
    return (
        np.take_along_axis(dist, order, 1),
        np.take_along_axis(rows, order[:, :, None], 1),
        np.take_along_axis(labels, order, 1),
        np.take_along_axis(weights, order, 1),
    )



def top_centers(X: np.ndarray, centers: np.ndarray, n_top: int) -> np.ndarray:
    """NumPy body of :func:`daskmeans.kernels.top_centers`."""
    D = distances_block(X, centers, sq_norms(centers))
    if n_top <= TOP_BY_ARGMIN and n_top < centers.shape[0]:
        # a few: one argmin each, masking the centre found (several times faster
        # than a partition of every row); ties go to the lower index
        rows = np.arange(X.shape[0])
        out = np.empty((X.shape[0], n_top), dtype=np.intp)
        for p in range(n_top):
            out[:, p] = j = np.argmin(D, axis=1)
            D[rows, j] = np.inf
        return out
    if n_top >= centers.shape[0]:
        out = np.argsort(D, axis=1, kind="stable")
    else:
        out = np.argpartition(D, n_top - 1, axis=1)[:, :n_top]
        order = np.argsort(np.take_along_axis(D, out, 1), axis=1, kind="stable")
        out = np.take_along_axis(out, order, 1)
    return out[:, :n_top]


#: Most nearest centres that :func:`top_centers` finds by repeated argmin (beyond: a
#: partition); the compiled path keeps that many by insertion.
TOP_BY_ARGMIN = 16


def pairs_by_cell(probes: np.ndarray, n_cells: int) -> tuple[np.ndarray, np.ndarray]:
    """The (row, probe) pairs of ``probes`` (n, P) grouped by cell.

    Returns ``pairs`` (flat indices ``row * P + p``, stable within a cell) and
    ``bounds`` (n_cells + 1,): cell ``c`` has ``pairs[bounds[c]:bounds[c + 1]]``.
    """
    flat = probes.reshape(-1)
    # cell numbers of 16 bits are sorted by radix (linear time)
    key = flat.astype(np.uint16) if n_cells <= np.iinfo(np.uint16).max else flat
    pairs = np.argsort(key, kind="stable")
    bounds = np.zeros(n_cells + 1, dtype=np.int64)
    np.cumsum(np.bincount(flat, minlength=n_cells), out=bounds[1:])
    return pairs, bounds


def probe_cells(X: np.ndarray, probes: np.ndarray, fine: np.ndarray, offsets: np.ndarray,
                prices, labels: np.ndarray, score: np.ndarray, second) -> None:
    """NumPy body of :func:`daskmeans.kernels.probe_cells` (flat outputs of n x P)."""
    P = probes.shape[1]
    pairs, bounds = pairs_by_cell(probes, len(offsets) - 1)
    m2 = fine.dtype.type(-2)
    for c in np.flatnonzero(np.diff(bounds)):
        lo, hi = int(offsets[c]), int(offsets[c + 1])
        if hi == lo:
            continue
        q = pairs[bounds[c] : bounds[c + 1]]
        F = fine[lo:hi]
        # ||c||^2 - 2 x.c in the data's dtype (as plain Lloyd's kernels), prices in float64
        D = np.take(X, q // P, axis=0) @ (F * m2).T
        D += sq_norms(F)
        if prices is not None:
            D = D + prices[lo:hi]
        r = np.arange(len(q))
        j = np.argmin(D, axis=1)
        labels[q] = j + lo
        score[q] = D[r, j]
        if second is not None and hi - lo > 1:
            D[r, j] = np.inf
            second[q] = D.min(axis=1)
