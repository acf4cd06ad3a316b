"""Drivers of the compiled (numba) path of the kernels.

They run what a :class:`~daskmeans.kernels.KernelPlan` with ``backend="numba"``
states: whole blocks in one compiled call or a Python loop over sub-blocks,
row-major or transposed products, the fused tiles, screened float64. Imported
only by such plans (it imports numba through
:mod:`daskmeans.kernels._numba_loops`).
"""

from __future__ import annotations

import math

import numpy as np

from . import _numba_loops as nb
from ._numpy import sq_norms
from ._plan import KernelPlan

__all__ = ["Distances", "FarBuffers", "accumulate_labels", "column_step", "far_result",
           "moments", "nearest", "probe_cells", "step_rows", "sweep", "top_centers"]


#: Bytes the vector operands of the tiles are aligned to (a cache line, a 512-bit register).
ALIGN_BYTES = 64


def aligned_full(shape, fill, dtype) -> np.ndarray:
    """``np.full(shape, fill, dtype)`` starting at a multiple of :data:`ALIGN_BYTES`.

    The fused tiles load the centres' values as whole vectors every row; NumPy's
    allocations are 16-byte aligned, and a vector that straddles two cache lines
    costs two loads: with AVX2 code a sweep of 64 centres took half as long again
    when the operand started 16 bytes past a 32-byte boundary (benchmarks/RESULTS.md).
    """
    dtype = np.dtype(dtype)
    n = math.prod(shape) if isinstance(shape, tuple) else int(shape)
    buf = np.empty(n * dtype.itemsize + ALIGN_BYTES, dtype=np.uint8)
    start = -buf.ctypes.data % ALIGN_BYTES
    out = buf[start : start + n * dtype.itemsize].view(dtype).reshape(shape)
    out.fill(fill)
    return out


def step_rows(plan: KernelPlan, n_centers: int, n_features: int, itemsize: int,
              n_rows: int) -> int:
    """Rows per sub-block of the compiled path (``plan.step`` if set).

    Both the distance block and the rows (read twice: by BLAS, then by the
    accumulation loop) should stay in the per-core cache.
    """
    if plan.step is not None:
        return max(1, min(plan.step, n_rows))
    rows = min(
        plan.dist_block_bytes_compiled // max(1, n_centers * itemsize),
        plan.row_block_bytes // max(1, n_features * itemsize),
    )
    rows = max(128, min(rows, 8192))
    return max(1, min(rows, n_rows))


def column_step(plan: KernelPlan, X: np.ndarray) -> int:
    """Rows per sub-block of the column tiles (``plan.step`` if set): the
    transposed rows should stay in the per-core cache."""
    if plan.step is not None:
        return max(1, min(plan.step, X.shape[0]))
    rows = plan.column_block_bytes // max(1, X.shape[1] * X.itemsize)
    return max(1, min(max(256, min(rows, 2048)), X.shape[0]))


class Distances:
    """Sub-block assignment of the compiled path: distance products and labels.

    With SciPy the whole block is swept by one compiled call, which takes the
    centres' constants from :meth:`blas_operand` and :meth:`screen_args`;
    otherwise a loop in Python calls the methods below on every sub-block.
    ``block(Xs)`` computes ``(-2 C) . x`` for every row of ``Xs`` and every
    centre: row-major ``(m, K)`` when ``K <= plan.rowmajor_max_k`` (BLAS is much
    faster with the long dimension on the output's rows), transposed ``(K, m)``
    otherwise (the argmin then vectorises over rows). ``assign`` labels the
    rows by the nearest centre of a group; ``accumulate`` adds them into the
    per-centre sums and ``distances`` gives their squared distances.

    Screened float64 (``screened=True``, float64 data): the product is computed
    in float32 on rows and centres shifted by the mean centre, which is about
    twice as fast; a rigorous bound on its error proves the label of every row
    whose best and second-best centres are far enough apart, and the other
    rows are decided again in float64 (:func:`nb.refine_rows`).
    Labels are therefore those of exact float64 distances, and sums and
    distances are computed in float64 from the original rows.
    """

    def __init__(self, plan: KernelPlan, centers: np.ndarray, step: int, n_features: int,
                 screened: bool = False, n_groups: int = 1) -> None:
        K = centers.shape[0]
        self.K = K
        self.rowmajor = K <= (plan.screen_rowmajor_max_k if screened else plan.rowmajor_max_k)
        self.screened = screened
        self.vector = plan.vector_argmin
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
        # column tiles (see column_operands), else the padded centres of the
        # fused tiles, or 0 (see fused_operands)
        self.columns = plan.uses_columns(centers.dtype, K, n_groups, n_features)
        self.fused = 0 if screened or n_groups != 1 or self.columns else plan.fused_width(K)
        self.quantized = plan.quantized_columns(centers.dtype, K, n_groups, n_features)
        if self.columns:
            from ._llvm import column_tile_shape

            itemsize = centers.dtype.itemsize
            self.group = column_tile_shape()[1]
            self.chunk = max(1, plan.column_block_bytes // (self.group * n_features * itemsize))
            # int16 tiles: a centre's pairs of features take one int32 each
            pairs = (n_features + 1) // 2
            self.qchunk = max(1, plan.column_block_bytes // (self.group * pairs * 4))
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
        """The centres' operand of :func:`nb.sweep_block`: ``(-2 C).T``
        (d, K) for row-major products, ``-2 C`` (K, d) for transposed ones."""
        return np.ascontiguousarray(self.cm2.T) if self.rowmajor else self.cm2

    def fused_operands(self) -> tuple[np.ndarray, np.ndarray]:
        """``(-2 C).T`` padded with zero columns to ``self.fused`` centres, and the
        squared norms padded with infinity (a padded centre never wins)."""
        d = self.centers.shape[1]
        CT = aligned_full((d, self.fused), 0, self.cm2.dtype)
        CT[:, : self.K] = self.cm2.T
        c_sq = aligned_full(self.fused, np.inf, self.c_sq.dtype)
        c_sq[: self.K] = self.c_sq
        return CT, c_sq

    def column_operands(self, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
        """``-2 C`` of centres ``lo:hi`` padded with zero rows to whole groups of
        the column tiles, and their squared norms padded with infinity (a
        padded centre never wins)."""
        K, d = hi - lo, self.centers.shape[1]
        Kp = K + (-K) % self.group
        C = np.zeros((Kp, d), dtype=self.cm2.dtype)
        C[:K] = self.cm2[lo:hi]
        c_sq = np.full(Kp, np.inf, dtype=self.c_sq.dtype)
        c_sq[:K] = self.c_sq[lo:hi]
        return C, c_sq

    def quantized_operands(self, lo: int, hi: int) -> tuple | None:
        """``(Cq, inv_c, l1_c)`` of centres ``lo:hi`` for the int16 tiles (see
        :func:`daskmeans.kernels._quantized.centre_operands`), or None when
        they are not used (or a centre is not finite)."""
        if not self.quantized:
            return None
        from ._quantized import centre_operands

        return centre_operands(self.centers[lo:hi], self.group)

    def screen_args(self) -> tuple:
        """``(shift, operand, c_sq, coef_x, coef_c)`` of the screened whole-block calls."""
        return self.shift, self.blas_operand(), self.c_sq, self.coef_x, self.coef_c

    def block(self, Xs: np.ndarray) -> np.ndarray:
        if self.buf is None:
            self._alloc_scratch()
        m = Xs.shape[0]
        if self.screened:
            xs = self.xs[:m]
            nb.shift_cast_rows(Xs, self.shift, xs, self.norms[:m])
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
                nb.argmin_rows(D, self.c_sq, lo, hi, labels, best, Xs[:0], self.vector)
            else:
                nb.argmin_columns(D, self.c_sq, lo, hi, labels, best, Xs[:0])
            return
        m = Xs.shape[0]
        top2 = nb.top2_rows if self.rowmajor else nb.top2_columns
        top2(D, self.c_sq, lo, hi, labels, self.best[:m], self.second[:m])
        self.n_redone += nb.refine_rows(
            Xs, self.centers, D, self.rowmajor, self.c_sq, lo, hi, self.norms[:m],
            self.coef_x, self.coef_c, labels, self.best[:m], self.second[:m])

    def accumulate(self, Xs, ws, labels, best, sums, counts) -> float:
        """Add the rows into ``sums``/``counts``; ``best`` becomes their squared
        distances. Returns their weighted sum."""
        if self.screened:
            return nb.accumulate_exact(Xs, ws, labels, self.centers, sums, counts,
                                                   best, Xs[:0])
        return nb.accumulate_rows(Xs, ws, labels, best, sums, counts, Xs[:0])

    def distances(self, Xs, labels, best, out) -> None:
        """Squared distances (float64) of the rows to their centres into ``out``."""
        if self.screened:
            nb.sq_dist_exact(Xs, labels, self.centers, out)
        else:
            nb.sq_dist_rows(Xs, best, out)


class FarBuffers:
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
        nb.far_push(best, labels, w, row0, self.m, self.dist[g], self.rows[g],
                                self.labels[g], self.state[g : g + 1], self.tau[g : g + 1])

    def take(self, g: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(dist, rows, labels)`` of group ``g``'s kept rows, by decreasing distance."""
        fill, _ = nb.far_compact(self.dist[g], self.rows[g], self.labels[g],
                                             int(self.state[g]), self.m)
        return self.dist[g, :fill], self.rows[g, :fill], self.labels[g, :fill]


def far_result(X, weights, far: FarBuffers) -> dict:
    """The ``far`` entry of :func:`daskmeans.kernels.lloyd_partial` from the groups' buffers."""
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


def sweep(plan, X, centers, weights, bounds, sums, counts, inertia, n_far):
    """Compiled body of :func:`daskmeans.kernels.lloyd_partial`: BLAS distances, then one loop.

    Adds into ``sums``, ``counts`` and ``inertia`` in place. Returns the
    ``far`` entry (the ``n_far`` farthest rows of each group), or None when
    ``n_far`` is 0.
    """
    n = X.shape[0]
    K = centers.shape[0]
    n_groups = len(bounds) - 1
    w = np.empty(0, dtype=np.float64) if weights is None else weights
    screened = plan.screened(X.dtype, K, n_groups, X.shape[1])
    step = step_rows(plan, K, X.shape[1], 4 if screened else X.itemsize, n)
    dists = Distances(plan, centers, step, X.shape[1], screened, n_groups)
    far = FarBuffers(n_groups, n_far)
    if plan.whole_block:
        far_args = (n_far, far.dist, far.rows, far.labels, far.state, far.tau)
        if dists.columns:
            Xc = np.ascontiguousarray(X)
            step = column_step(plan, X)
            for g in range(n_groups):
                lo, hi = int(bounds[g]), int(bounds[g + 1])
                if (q := dists.quantized_operands(lo, hi)) is not None:
                    from ._quantized import sweep_quantized

                    dists.n_redone += sweep_quantized(
                        Xc, w, *dists.column_operands(lo, hi), centers, *q, lo, g, step,
                        dists.chunk, dists.qchunk, sums, counts, inertia, *far_args)
                    continue
                nb.sweep_columns(Xc, w, *dists.column_operands(lo, hi), lo, g, step,
                                 dists.chunk, sums, counts, inertia, *far_args)
        elif screened:
            dists.n_redone += nb.sweep_block_screened(
                X, w, centers, *dists.screen_args(), bounds, step, dists.rowmajor, sums, counts,
                inertia, *far_args)
        elif dists.fused:
            nb.sweep_fused(np.ascontiguousarray(X), w, *dists.fused_operands(),
                                       step, sums, counts, inertia, *far_args, dists.fused,
                                       X.shape[1] * X.itemsize > plan.fused_prefetch_row_bytes)
        else:
            nb.sweep_block(X, w, dists.blas_operand(), dists.c_sq, bounds, step,
                           dists.rowmajor, dists.vector, sums, counts, inertia, *far_args)
        return far_result(X, weights, far) if n_far else None
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
    return far_result(X, weights, far) if n_far else None


def nearest(plan, X, centers, bounds, labels, dist):
    """Compiled labels-only sweep: fill ``labels`` and ``dist`` (n_groups, n).

    ``dist`` (float64) may be None when only labels are wanted.
    """
    n = X.shape[0]
    K = centers.shape[0]
    screened = plan.screened(X.dtype, K, len(bounds) - 1, X.shape[1])
    step = step_rows(plan, K, X.shape[1], 4 if screened else X.itemsize, n)
    dists = Distances(plan, centers, step, X.shape[1], screened, len(bounds) - 1)
    if plan.whole_block:
        out = (labels, np.empty((0, 0)) if dist is None else dist, dist is not None)
        if dists.columns:
            Xc = np.ascontiguousarray(X)
            step = column_step(plan, X)
            for g in range(len(bounds) - 1):
                lo, hi = int(bounds[g]), int(bounds[g + 1])
                if (q := dists.quantized_operands(lo, hi)) is not None:
                    from ._quantized import nearest_quantized

                    dists.n_redone += nearest_quantized(
                        Xc, *dists.column_operands(lo, hi), centers, *q, lo, g, step,
                        dists.chunk, dists.qchunk, *out)
                    continue
                nb.nearest_columns(Xc, *dists.column_operands(lo, hi), lo, g, step,
                                   dists.chunk, *out)
        elif screened:
            dists.n_redone += nb.nearest_block_screened(
                X, centers, *dists.screen_args(), bounds, step, dists.rowmajor, *out)
        elif dists.fused:
            nb.nearest_fused(np.ascontiguousarray(X), *dists.fused_operands(), step,
                                         *out, dists.fused)
        else:
            nb.nearest_block(X, dists.blas_operand(), dists.c_sq, bounds, step,
                             dists.rowmajor, dists.vector, *out)
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


def moments(plan: KernelPlan, X: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """:func:`daskmeans.kernels.moments` of a non-empty float block, compiled."""
    mean = np.zeros(X.shape[1])
    m2 = np.zeros(X.shape[1])
    step = max(64, plan.row_block_bytes // max(1, X.shape[1] * X.itemsize))
    nb.moments_rows(X, step, mean, m2)
    return float(X.shape[0]), mean, m2


def accumulate_labels(X: np.ndarray, w: np.ndarray, labels: np.ndarray, sums: np.ndarray,
                      counts: np.ndarray) -> None:
    """Compiled body of :func:`daskmeans.kernels.accumulate` (adds into ``sums``
    and ``counts``; ``w`` of length 0: unit weights)."""
    nb.accumulate_labels(X, w, labels, sums, counts)


def top_centers(plan: KernelPlan, X: np.ndarray, centers: np.ndarray, out: np.ndarray) -> None:
    """Compiled body of :func:`daskmeans.kernels.top_centers`: the products by BLAS,
    a sub-block of rows at a time (kept in cache), then one compiled pass that
    finishes the distances and keeps every row's nearest."""
    cm2 = np.ascontiguousarray(centers * centers.dtype.type(-2))  # exact: a power of two
    c_sq = sq_norms(centers)
    x_sq = sq_norms(X)
    rows = max(1, plan.dist_block_bytes_compiled // max(1, centers.shape[0] * X.itemsize))
    buf = np.empty((min(rows, X.shape[0]), centers.shape[0]), dtype=X.dtype)
    for start in range(0, X.shape[0], rows):
        Xs = X[start : start + rows]
        Pm = buf[: Xs.shape[0]]
        np.dot(Xs, cm2.T, out=Pm)
        nb.top_rows(Pm, c_sq, x_sq, start, out)


def probe_cells(plan: KernelPlan, X: np.ndarray, probes: np.ndarray, fine: np.ndarray,
                offsets: np.ndarray, prices, labels: np.ndarray, score: np.ndarray,
                second) -> None:
    """Compiled body of :func:`daskmeans.kernels.probe_cells`: the column tiles on
    every cell's fine centres, padded cell by cell; prices are added to the
    squared norms (in float64, then rounded to the data's dtype)."""
    from ._llvm import column_tile_shape
    from ._numpy import pairs_by_cell

    n_cells, k = len(offsets) - 1, fine.shape[0]
    sizes = np.diff(offsets)
    group = column_tile_shape()[1]
    c_off = np.zeros(n_cells + 1, dtype=np.int64)
    np.cumsum(sizes + (-sizes) % group, out=c_off[1:])
    cell = np.repeat(np.arange(n_cells), sizes)
    dest = c_off[cell] + np.arange(k) - offsets[cell]
    C = np.zeros((int(c_off[-1]), fine.shape[1]), dtype=fine.dtype)
    C[dest] = fine * fine.dtype.type(-2)  # exact: scaling by a power of two
    c_sq = np.full(int(c_off[-1]), np.inf, dtype=fine.dtype)
    c_sq[dest] = sq_norms(fine) if prices is None else sq_norms(fine) + np.asarray(prices)
    pairs, bounds = pairs_by_cell(probes, n_cells)
    chunk = max(1, plan.column_block_bytes // (group * fine.shape[1] * fine.itemsize))
    best = np.empty(score.shape[0], dtype=X.dtype)
    top2 = second is not None
    sec = np.empty(score.shape[0] if top2 else 0, dtype=X.dtype)
    nb.probe_cells(np.ascontiguousarray(X), pairs, bounds, probes.shape[1], C, c_sq, c_off,
                   np.asarray(offsets, dtype=np.int64), column_step(plan, X), chunk, labels,
                   best, sec, top2)
    filled = np.repeat(sizes > 0, np.diff(bounds))
    score[pairs[filled]] = best[pairs[filled]]
    if top2:
        second[pairs[filled]] = sec[pairs[filled]]
