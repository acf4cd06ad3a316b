"""Pure NumPy per-block kernels.

Every function here takes plain NumPy arrays and returns plain NumPy arrays or
small dictionaries of them. Nothing in this module knows about Dask: graph code
in :mod:`daskmeans.engine._lloyd` and :mod:`daskmeans.engine._init` maps these functions over
the blocks of a Dask array and combines their results.

Centres may hold several *groups* stacked along the first axis, described by
``bounds``: group ``g`` owns rows ``bounds[g]:bounds[g + 1]`` of ``centers``.
Each sample is assigned, separately within every group, to the nearest centre
of that group. Groups let ``n_init`` candidate solutions (or candidate values
of k) share a single read of every block.
"""

from __future__ import annotations

import numpy as np

from . import _numba_loops as _kernels_numba
from . import _sparse
from ._sparse import is_sparse as _is_sparse

__all__ = [
    "accumulate",
    "assign",
    "combine_partials",
    "combine_moments",
    "distances_block",
    "lloyd_partial",
    "moments",
    "nearest",
    "row_block_size",
    "sq_norms",
]

#: Target size in bytes of one sub-block distance matrix (rows x centres).
_DIST_BLOCK_BYTES = 1 << 21
#: Largest k for which per-cluster sums use a one-hot matrix product.
_ONEHOT_MAX_K = 64
#: Use the compiled (numba) loops when they are available; tests switch it off
#: to compare with the NumPy path.
_USE_NUMBA = _kernels_numba.AVAILABLE
#: Sweep whole blocks in one compiled call when SciPy's BLAS is there (see
#: :func:`_whole_block`); tests switch it off to compare with the sub-block loop.
_WHOLE_BLOCK = True
#: Target size in bytes of the transposed distance block of the compiled path.
_NUMBA_DIST_BLOCK_BYTES = 1 << 20
#: Target size in bytes of the rows of one sub-block of the compiled path.
#: The whole-block sweep prefetches the next sub-block while it computes the
#: current one (see :func:`_kernels_numba._accumulate_rows`), so two of them
#: share the per-core cache. With the prefetch, 256 KiB was fastest for both
#: dtypes (2,000,000 x 32, k=16, two threads, s per iteration: float32
#: 0.026-0.030 against 0.028-0.029 at 512 KiB and 0.029-0.031 at 64 KiB; at
#: k=8 0.020-0.022 against 0.025; float64 0.032-0.034 against 0.036-0.045 at
#: 64 KiB; 128 KiB within noise of 256 KiB).
_NUMBA_ROW_BLOCK_BYTES = 1 << 18
#: Label rows of up to 64 centres (one group, not screened) with the fused
#: product-and-argmin tiles of :func:`_kernels_numba._make_fused_argmin` in the
#: whole-block sweeps; tests switch it off to compare with the BLAS products.
_FUSED = True
#: Largest number of centres (all groups together) for which the compiled path
#: computes row-major distances ``X @ C.T``; above it, transposed ``C @ X.T``,
#: whose argmin vectorises over rows. With the SIMD argmin of row-major rows
#: (up to 64 centres, :func:`_kernels_numba._make_vector_argmin`) row-major
#: wins up to 64 centres: 2,000,000 x 32 float32 rows, two threads, s per
#: iteration row-major against transposed: k=24 0.033 vs 0.035, k=32 0.034 vs
#: 0.042, k=48 0.042 vs 0.047, k=64 0.060 vs 0.069. Without it (LLVM before
#: 17) the transposed product won from 32 centres on with the whole-block call;
#: numpy's matmul of a transposed operand is slower, so the Python-driven loop
#: keeps row-major up to 64.
_ROWMAJOR_MAX_K = (
    64 if _kernels_numba.VECTOR_ARGMIN or not _kernels_numba.BLAS_AVAILABLE else 16)
#: Smallest number of centres (all groups together) for which float64 data is
#: screened with float32 distance products (labels proven or redone in float64,
#: see :class:`_Distances`); ``None`` turns screening off. Measured with the
#: whole-block call, 2,000,000 x 32 float64 rows on two threads, OpenBLAS's
#: own kernel choice (SkylakeX on this AVX-512 machine), s per iteration, plain
#: row-major (SIMD argmin) against screened (transposed): k=20 0.040 vs 0.054,
#: k=24 0.046 vs 0.055, k=28 0.057 vs 0.069, k=32 0.064 vs 0.059, k=48 0.083
#: vs 0.068, k=64 0.126 vs 0.100. Without the SIMD argmin: plain row-major vs
#: screened 0.038 vs 0.040 at k=16, plain transposed vs screened 0.067 vs 0.046
#: at k=32. The sub-block loop driven from Python keeps its own threshold.
if not _kernels_numba.BLAS_AVAILABLE:
    _SCREEN_MIN_K = 128
else:
    _SCREEN_MIN_K = 32 if _kernels_numba.VECTOR_ARGMIN else 17
#: Largest number of centres for which screened products are row-major. The
#: screened row-major sweep lost everywhere it was measured (k=8 to 16: 0.066 to
#: 0.098 s against 0.042 to 0.049 s transposed), so it is off; tests set it.
_SCREEN_ROWMAJOR_MAX_K = 0


def row_block_size(n_centers: int, itemsize: int, n_rows: int) -> int:
    """Rows per sub-block so that the distance matrix stays cache sized.

    Parameters
    ----------
    n_centers : int
        Number of centres (columns of the distance matrix).
    itemsize : int
        Bytes per element of the distance matrix.
    n_rows : int
        Rows in the block; the result never exceeds it.

    Returns
    -------
    int
        Sub-block length, at least 1.
    """
    rows = _DIST_BLOCK_BYTES // max(1, n_centers * itemsize)
    rows = max(256, min(rows, 8192))
    return max(1, min(rows, n_rows))


def sq_norms(X: np.ndarray) -> np.ndarray:
    """Squared Euclidean norm of every row of ``X``, in the dtype of ``X``."""
    if _is_sparse(X):
        return _sparse.sq_norms(X)
    return np.einsum("ij,ij->i", X, X)


def _as_bounds(bounds, n_centers: int) -> np.ndarray:
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
    if _is_sparse(X):
        return _sparse.distances_block(X, centers, c_sq)
    D = X @ centers.T
    D *= -2
    D += c_sq
    D += sq_norms(X)[:, None]
    np.maximum(D, 0, out=D)
    return D


def nearest(X: np.ndarray, centers: np.ndarray, bounds=None) -> tuple[np.ndarray, np.ndarray]:
    """Nearest centre of every group for every row, by sub-blocks.

    Parameters
    ----------
    X : ndarray of shape (n, d)
    centers : ndarray of shape (K, d), same dtype as ``X``
    bounds : sequence of int, optional
        Group boundaries (default: one group).

    Returns
    -------
    labels : ndarray of shape (n_groups, n), intp
        Global index (into ``centers``) of the nearest centre in each group.
    sq_dist : ndarray of shape (n_groups, n), float64
        Squared distance to it.
    """
    if _is_sparse(X):
        return _sparse.nearest(X, centers, bounds)
    bounds = _as_bounds(bounds, centers.shape[0])
    n = X.shape[0]
    n_groups = len(bounds) - 1
    labels = np.empty((n_groups, n), dtype=np.intp)
    dist = np.empty((n_groups, n), dtype=np.float64)
    if _use_numba(X, centers):
        _nearest_numba(X, centers, bounds, labels, dist)
        return labels, dist
    c_sq = sq_norms(centers)
    step = row_block_size(centers.shape[0], X.itemsize, n)
    for start in range(0, n, step):
        Xs = X[start : start + step]
        D = Xs @ centers.T
        D *= -2
        D += c_sq
        lab, mins = _group_argmin(D, bounds)
        mins += sq_norms(Xs)
        np.maximum(mins, 0, out=mins)
        labels[:, start : start + step] = lab
        dist[:, start : start + step] = mins
    return labels, dist


def _group_argmin(D: np.ndarray, bounds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-group argmin (as a global centre index) and minimum of ``D``.

    ``D`` holds ``||c||^2 - 2 x.c`` (no row norm); returns labels of shape
    (n_groups, n) and minima of shape (n_groups, n).
    """
    n = D.shape[0]
    n_groups = len(bounds) - 1
    labels = np.empty((n_groups, n), dtype=np.intp)
    mins = np.empty((n_groups, n), dtype=D.dtype)
    rows = np.arange(n)
    for g in range(n_groups):
        lo, hi = bounds[g], bounds[g + 1]
        lab = np.argmin(D[:, lo:hi], axis=1)
        mins[g] = D[rows, lab + lo]
        labels[g] = lab + lo
    return labels, mins


def accumulate(
    X: np.ndarray, labels: np.ndarray, weights: np.ndarray | None, n_centers: int
) -> tuple[np.ndarray, np.ndarray]:
    """Weighted per-centre sums of rows and weights.

    Parameters
    ----------
    X : ndarray of shape (n, d)
    labels : ndarray of shape (n,), integer in ``[0, n_centers)``
    weights : ndarray of shape (n,) or None
    n_centers : int

    Returns
    -------
    sums : ndarray of shape (n_centers, d), float64
    counts : ndarray of shape (n_centers,), float64
    """
    if _is_sparse(X):
        return _sparse.accumulate(X, labels, weights, n_centers)
    n, d = X.shape
    if weights is None:
        counts = np.bincount(labels, minlength=n_centers).astype(np.float64)
    else:
        counts = np.bincount(labels, weights=weights, minlength=n_centers)
    if n_centers <= _ONEHOT_MAX_K:
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


def lloyd_partial(
    X: np.ndarray,
    centers: np.ndarray,
    weights: np.ndarray | None = None,
    *,
    bounds=None,
    n_far: int = 0,
    check_finite: bool = False,
    with_moments: bool = False,
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

    Returns
    -------
    dict
        ``sums`` (K, d) float64, weighted sum of the rows assigned to each
        centre; ``counts`` (K,) float64, their total weight; ``inertia``
        (n_groups,) float64, weighted sum of squared distances to the nearest
        centre of each group; optionally ``far`` (see :func:`_far_rows`) and
        ``moments``.
    """
    if _is_sparse(X):
        return _sparse.lloyd_partial(X, centers, weights, bounds=bounds, n_far=n_far,
                                     check_finite=check_finite, with_moments=with_moments)
    if check_finite and not np.isfinite(X).all():
        raise ValueError(
            "Input X contains NaN or infinity; expected finite values in every row."
        )
    bounds = _as_bounds(bounds, centers.shape[0])
    n, d = X.shape
    K = centers.shape[0]
    n_groups = len(bounds) - 1
    sums = np.zeros((K, d), dtype=np.float64)
    counts = np.zeros(K, dtype=np.float64)
    inertia = np.zeros(n_groups, dtype=np.float64)
    far_out = None
    if _use_numba(X, centers, weights):
        far_out = _sweep_numba(X, centers, weights, bounds, sums, counts, inertia, n_far)
    else:
        c_sq = sq_norms(centers)
        far = _FarRows(n_groups, n_far, d, X.dtype) if n_far else None
        # labels and distances of the whole block, kept only for the far rows
        all_labels = np.empty((n_groups, n), dtype=np.intp) if far is not None else None
        all_mins = np.empty((n_groups, n), dtype=X.dtype) if far is not None else None
        step = row_block_size(K, X.itemsize, n)
        for start in range(0, n, step):
            Xs = X[start : start + step]
            ws = None if weights is None else weights[start : start + step]
            D = Xs @ centers.T
            D *= -2
            D += c_sq
            labels, mins = _group_argmin(D, bounds)
            mins += sq_norms(Xs)
            np.maximum(mins, 0, out=mins)
            if ws is None:
                inertia += mins.sum(axis=1, dtype=np.float64)
            else:
                inertia += mins @ ws.astype(np.float64, copy=False)
            for g in range(n_groups):
                lo, hi = bounds[g], bounds[g + 1]
                s, c = accumulate(Xs, labels[g] - lo, ws, hi - lo)
                sums[lo:hi] += s
                counts[lo:hi] += c
            if far is not None:
                all_labels[:, start : start + step] = labels
                all_mins[:, start : start + step] = mins
        if far is not None:
            far.update(X, weights, all_labels, all_mins)
            far_out = far.result()
    out = {"sums": sums, "counts": counts, "inertia": inertia}
    if far_out is not None:
        out["far"] = far_out
    if with_moments:
        out["moments"] = moments(X)
    return out


def _use_numba(X: np.ndarray, centers: np.ndarray, weights=None) -> bool:
    """Whether the compiled loops apply to these arrays."""
    return (
        _USE_NUMBA
        and X.ndim == 2
        and X.dtype in (np.float32, np.float64)
        and centers.dtype == X.dtype
        and X.shape[0] > 0
        and centers.shape[0] > 0
        and (weights is None or weights.dtype.kind == "f")
    )


def _numba_step(n_centers: int, n_features: int, itemsize: int, n_rows: int) -> int:
    """Rows per sub-block of the compiled path.

    Both the distance block and the rows (read twice: by BLAS, then by the
    accumulation loop) should stay in the per-core cache.
    """
    rows = min(
        _NUMBA_DIST_BLOCK_BYTES // max(1, n_centers * itemsize),
        _NUMBA_ROW_BLOCK_BYTES // max(1, n_features * itemsize),
    )
    rows = max(128, min(rows, 8192))
    return max(1, min(rows, n_rows))


class _Distances:
    """Sub-block assignment of the compiled path: distance products and labels.

    With SciPy the whole block is swept by one compiled call, which takes the
    centres' constants from :meth:`blas_operand` and :meth:`screen_args`;
    otherwise a loop in Python calls the methods below on every sub-block.
    ``block(Xs)`` computes ``(-2 C) . x`` for every row of ``Xs`` and every
    centre: row-major ``(m, K)`` when ``K <= _ROWMAJOR_MAX_K`` (BLAS is much
    faster with the long dimension on the output's rows), transposed ``(K, m)``
    otherwise (the argmin then vectorises over rows). ``assign`` labels the
    rows by the nearest centre of a group; ``accumulate`` adds them into the
    per-centre sums and ``distances`` gives their squared distances.

    Screened float64 (``screened=True``, float64 data): the product is computed
    in float32 on rows and centres shifted by the mean centre, which is about
    twice as fast; a rigorous bound on its error proves the label of every row
    whose best and second-best centres are far enough apart, and the other
    rows are decided again in float64 (:func:`_kernels_numba.refine_rows`).
    Labels are therefore those of exact float64 distances, and sums and
    distances are computed in float64 from the original rows.
    """

    def __init__(self, centers: np.ndarray, step: int, n_features: int,
                 screened: bool = False) -> None:
        K = centers.shape[0]
        self.K = K
        self.rowmajor = K <= (_SCREEN_ROWMAJOR_MAX_K if screened else _ROWMAJOR_MAX_K)
        self.screened = screened
        self.centers = centers
        if screened:
            self.shift = centers.mean(axis=0)
            shifted = centers - self.shift
            c_sq = sq_norms(shifted)
            self.cm2 = (shifted * -2.0).astype(np.float32)
            self.c_sq = c_sq.astype(np.float32)
            radius = float(np.sqrt(c_sq.max()))
            u = 2.0**-24
            # |screened - exact| <= coef_x * ||x'|| + coef_c  (see refine_rows),
            # with 10 % to spare for the second-order terms
            self.coef_x = 1.1 * u * 2 * (n_features + 3) * radius
            self.coef_c = 1.1 * u * 2 * radius**2 + 4 * (n_features + 2) * 2.0**-149 * (
                1 + radius)
        else:
            self.cm2 = centers * centers.dtype.type(-2)  # exact: scaling by a power of two
            self.c_sq = sq_norms(centers)
        self.step = step
        self.fused = 0  # padded centres of the fused tiles; see fused_operands
        if (_FUSED and not screened and _kernels_numba.FUSED_ARGMIN and self.rowmajor
                and K <= _kernels_numba.FUSED_CENTERS[-1]):
            self.fused = next(c for c in _kernels_numba.FUSED_CENTERS if c >= K)
        self.n_redone = 0
        self.buf = None  # scratch of the sub-block loop, allocated by its first block

    def _alloc_scratch(self) -> None:
        step, d = self.step, self.centers.shape[1]
        self.buf = np.empty(self.K * step, dtype=self.cm2.dtype)
        if self.screened:
            self.xs = np.empty((step, d), dtype=np.float32)
            self.norms = np.empty(step, dtype=np.float64)
            self.best = np.empty(step, dtype=np.float32)
            self.second = np.empty(step, dtype=np.float32)

    def blas_operand(self) -> np.ndarray:
        """The centres' operand of :func:`_kernels_numba.sweep_block`: ``(-2 C).T``
        (d, K) for row-major products, ``-2 C`` (K, d) for transposed ones."""
        return np.ascontiguousarray(self.cm2.T) if self.rowmajor else self.cm2

    def fused_operands(self) -> tuple[np.ndarray, np.ndarray]:
        """``(-2 C).T`` padded with zero columns to ``self.fused`` centres, and the
        squared norms padded with infinity (a padded centre never wins)."""
        d = self.centers.shape[1]
        CT = np.zeros((d, self.fused), dtype=self.cm2.dtype)
        CT[:, : self.K] = self.cm2.T
        c_sq = np.full(self.fused, np.inf, dtype=self.c_sq.dtype)
        c_sq[: self.K] = self.c_sq
        return CT, c_sq

    def screen_args(self) -> tuple:
        """``(shift, operand, c_sq, coef_x, coef_c)`` of the screened whole-block calls."""
        return self.shift, self.blas_operand(), self.c_sq, self.coef_x, self.coef_c

    def block(self, Xs: np.ndarray) -> np.ndarray:
        if self.buf is None:
            self._alloc_scratch()
        m = Xs.shape[0]
        if self.screened:
            xs = self.xs[:m]
            _kernels_numba.shift_cast_rows(Xs, self.shift, xs, self.norms[:m])
            Xs = xs
        if self.rowmajor:
            D = self.buf[: self.K * m].reshape(m, self.K)
            np.matmul(Xs, self.cm2.T, out=D)
        else:
            D = self.buf[: self.K * m].reshape(self.K, m)
            np.matmul(self.cm2, Xs.T, out=D)
        return D

    def assign(self, D, Xs, lo: int, hi: int, labels, best) -> None:
        """Labels of the nearest centre in ``[lo, hi)``; ``best`` is scratch."""
        if not self.screened:
            if self.rowmajor:
                _kernels_numba.argmin_rows(D, self.c_sq, lo, hi, labels, best, Xs[:0])
            else:
                _kernels_numba.argmin_columns(D, self.c_sq, lo, hi, labels, best, Xs[:0])
            return
        m = Xs.shape[0]
        top2 = _kernels_numba.top2_rows if self.rowmajor else _kernels_numba.top2_columns
        top2(D, self.c_sq, lo, hi, labels, self.best[:m], self.second[:m])
        self.n_redone += _kernels_numba.refine_rows(
            Xs, self.centers, D, self.rowmajor, self.c_sq, lo, hi, self.norms[:m],
            self.coef_x, self.coef_c, labels, self.best[:m], self.second[:m])

    def accumulate(self, Xs, ws, labels, best, sums, counts) -> float:
        """Add the rows into ``sums``/``counts``; ``best`` becomes their squared
        distances. Returns their weighted sum."""
        if self.screened:
            return _kernels_numba.accumulate_exact(Xs, ws, labels, self.centers, sums, counts,
                                                   best, Xs[:0])
        return _kernels_numba.accumulate_rows(Xs, ws, labels, best, sums, counts, Xs[:0])

    def distances(self, Xs, labels, best, out) -> None:
        """Squared distances (float64) of the rows to their centres into ``out``."""
        if self.screened:
            _kernels_numba.sq_dist_exact(Xs, labels, self.centers, out)
        else:
            _kernels_numba.sq_dist_rows(Xs, best, out)


def _screened(X: np.ndarray, n_centers: int) -> bool:
    """Whether the float64 sweep screens with float32 products."""
    return (X.dtype == np.float64 and _SCREEN_MIN_K is not None
            and n_centers >= _SCREEN_MIN_K)


class _FarBuffers:
    """Compiled streaming selection of a block's ``m`` farthest rows, per group."""

    def __init__(self, n_groups: int, m: int) -> None:
        cap = max(2 * m, m + 256)
        self.m = m
        self.dist = np.empty((n_groups, cap), dtype=np.float64)
        self.rows = np.empty((n_groups, cap), dtype=np.intp)
        self.labels = np.empty((n_groups, cap), dtype=np.intp)
        self.state = np.zeros(n_groups, dtype=np.intp)
        self.tau = np.full(n_groups, -np.inf)

    def push(self, g: int, best, labels, w, row0: int) -> None:
        _kernels_numba.far_push(best, labels, w, row0, self.m, self.dist[g], self.rows[g],
                                self.labels[g], self.state[g : g + 1], self.tau[g : g + 1])

    def take(self, g: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(dist, rows, labels)`` of group ``g``'s kept rows, by decreasing distance."""
        fill, _ = _kernels_numba.far_compact(self.dist[g], self.rows[g], self.labels[g],
                                             int(self.state[g]), self.m)
        return self.dist[g, :fill], self.rows[g, :fill], self.labels[g, :fill]


def _far_result(X, weights, far: _FarBuffers) -> dict:
    """The ``far`` entry of :func:`lloyd_partial` from the groups' buffers."""
    picks = [far.take(g) for g in range(len(far.state))]
    width = min(len(p[0]) for p in picks)  # equal: every group sees the same rows
    dist = np.stack([p[0][:width] for p in picks])
    idx = np.stack([p[1][:width] for p in picks])
    labels = np.stack([p[2][:width] for p in picks])
    if weights is None:
        wts = np.ones(idx.shape)
    else:
        wts = weights[idx].astype(np.float64, copy=False)
    return {"dist": dist, "rows": X[idx], "labels": labels, "weights": wts, "m": far.m}


def _whole_block() -> bool:
    """Whether sweeps run as one compiled call per block (:func:`_kernels_numba.sweep_block`)."""
    return _WHOLE_BLOCK and _kernels_numba.BLAS_AVAILABLE


def _sweep_numba(X, centers, weights, bounds, sums, counts, inertia, n_far):
    """Compiled body of :func:`lloyd_partial`: BLAS distances, then one loop.

    Adds into ``sums``, ``counts`` and ``inertia`` in place. Returns the
    ``far`` entry (the ``n_far`` farthest rows of each group), or None when
    ``n_far`` is 0.
    """
    n = X.shape[0]
    K = centers.shape[0]
    n_groups = len(bounds) - 1
    w = np.empty(0, dtype=np.float64) if weights is None else weights
    screened = _screened(X, K)
    step = _numba_step(K, X.shape[1], 4 if screened else X.itemsize, n)
    dists = _Distances(centers, step, X.shape[1], screened)
    far = _FarBuffers(n_groups, n_far)
    if _whole_block():
        far_args = (n_far, far.dist, far.rows, far.labels, far.state, far.tau)
        if screened:
            dists.n_redone += _kernels_numba.sweep_block_screened(
                X, w, centers, *dists.screen_args(), bounds, step, dists.rowmajor, sums, counts,
                inertia, *far_args)
        elif dists.fused and n_groups == 1:
            _kernels_numba.sweep_fused(np.ascontiguousarray(X), w, *dists.fused_operands(),
                                       step, sums, counts, inertia, *far_args, dists.fused)
        else:
            _kernels_numba.sweep_block(X, w, dists.blas_operand(), dists.c_sq, bounds, step,
                                       dists.rowmajor, sums, counts, inertia, *far_args)
        return _far_result(X, weights, far) if n_far else None
    lab = np.empty((n_groups, step), dtype=np.intp)
    best = np.empty((n_groups, step), dtype=X.dtype)
    for start in range(0, n, step):
        stop = min(start + step, n)
        m = stop - start
        Xs = X[start:stop]
        ws = w if weights is None else w[start:stop]
        D = dists.block(Xs)
        for g in range(n_groups):
            lo, hi = int(bounds[g]), int(bounds[g + 1])
            lab_g = lab[g, :m]
            best_g = best[g, :m]
            dists.assign(D, Xs, lo, hi, lab_g, best_g)
            inertia[g] += dists.accumulate(Xs, ws, lab_g, best_g, sums, counts)
            if n_far:
                far.push(g, best_g, lab_g, ws, start)
    return _far_result(X, weights, far) if n_far else None


def _nearest_numba(X, centers, bounds, labels, dist):
    """Compiled labels-only sweep: fill ``labels`` and ``dist`` (n_groups, n).

    ``dist`` (float64) may be None when only labels are wanted.
    """
    n = X.shape[0]
    K = centers.shape[0]
    screened = _screened(X, K)
    step = _numba_step(K, X.shape[1], 4 if screened else X.itemsize, n)
    dists = _Distances(centers, step, X.shape[1], screened)
    if _whole_block():
        out = (labels, np.empty((0, 0)) if dist is None else dist, dist is not None)
        if screened:
            dists.n_redone += _kernels_numba.nearest_block_screened(
                X, centers, *dists.screen_args(), bounds, step, dists.rowmajor, *out)
        elif dists.fused and len(bounds) == 2:
            _kernels_numba.nearest_fused(np.ascontiguousarray(X), *dists.fused_operands(), step,
                                         *out, dists.fused)
        else:
            _kernels_numba.nearest_block(X, dists.blas_operand(), dists.c_sq, bounds, step,
                                         dists.rowmajor, *out)
        return
    best = np.empty(step, dtype=X.dtype)
    for start in range(0, n, step):
        stop = min(start + step, n)
        m = stop - start
        Xs = X[start:stop]
        D = dists.block(Xs)
        for g in range(len(bounds) - 1):
            lab_g = labels[g, start:stop]
            dists.assign(D, Xs, int(bounds[g]), int(bounds[g + 1]), lab_g, best[:m])
            if dist is not None:
                dists.distances(Xs, lab_g, best[:m], dist[g, start:stop])


class _FarRows:
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
        self.dist, self.rows, self.labels, self.weights = _top_far(
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


def _top_far(dist, rows, labels, weights, m):
    """Keep the ``m`` largest distances per group, sorted in decreasing order."""
    order = np.argsort(-dist, axis=1, kind="stable")[:, :m]
    return (
        np.take_along_axis(dist, order, 1),
        np.take_along_axis(rows, order[:, :, None], 1),
        np.take_along_axis(labels, order, 1),
        np.take_along_axis(weights, order, 1),
    )


def moments(X: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Count, mean and sum of squared deviations of every column of ``X``.

    Returns
    -------
    count : float
    mean : ndarray of shape (d,), float64
    m2 : ndarray of shape (d,), float64
    """
    if _is_sparse(X):
        return _sparse.moments(X)
    n = X.shape[0]
    if n == 0:
        return 0.0, np.zeros(X.shape[1]), np.zeros(X.shape[1])
    if _USE_NUMBA and X.ndim == 2 and X.dtype in (np.float32, np.float64):
        mean = np.zeros(X.shape[1])
        m2 = np.zeros(X.shape[1])
        step = max(64, _NUMBA_ROW_BLOCK_BYTES // max(1, X.shape[1] * X.itemsize))
        _kernels_numba.moments_rows(X, step, mean, m2)
        return float(n), mean, m2
    mean = X.mean(axis=0, dtype=np.float64)
    dev = X - mean.astype(X.dtype)
    m2 = np.einsum("ij,ij->j", dev, dev, dtype=np.float64)
    return float(n), mean, m2


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


def combine_partials(parts: list[dict]) -> dict:
    """Sum the outputs of :func:`lloyd_partial` (or of earlier combines)."""
    first = parts[0]
    with np.errstate(invalid="ignore"):  # inf + -inf from non-finite data: reported by the caller
        out = {
            "sums": np.sum([p["sums"] for p in parts], axis=0),
            "counts": np.sum([p["counts"] for p in parts], axis=0),
            "inertia": np.sum([p["inertia"] for p in parts], axis=0),
        }
    if "far" in first:
        m = first["far"]["m"]
        cat = {
            key: np.concatenate([p["far"][key] for p in parts], axis=1)
            for key in ("dist", "rows", "labels", "weights")
        }
        dist, rows, labels, weights = _top_far(
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

    Returns
    -------
    labels : ndarray of shape (n,), int64
    sq_dist : ndarray of shape (n,), float64, only if ``return_distances``
    """
    if _is_sparse(X):
        return _sparse.assign(X, centers, return_distances=return_distances,
                              check_finite=check_finite)
    if check_finite and not np.isfinite(X).all():
        raise ValueError(
            "Input X contains NaN or infinity; expected finite values in every row."
        )
    n = X.shape[0]
    k = centers.shape[0]
    c_sq = sq_norms(centers)
    labels = np.empty(n, dtype=np.int64)
    dist = np.empty(n, dtype=np.float64) if return_distances else None
    if _use_numba(X, centers):
        dist2 = None if dist is None else dist[None, :]
        _nearest_numba(X, centers, _as_bounds(None, k), labels[None, :], dist2)
        return (labels, dist) if return_distances else labels
    step = row_block_size(k, X.itemsize, n)
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
    if return_distances:
        return labels, dist
    return labels
