"""Plain numba loops of the compiled kernels (``nogil``).

These loops replace the NumPy argmin and per-cluster accumulation of a
sub-block once its distance matrix has been computed by BLAS. They release the
GIL, so Dask's threads run them in parallel. This module imports numba: it is
imported only when a kernel plan (:mod:`daskmeans.kernels._plan`) picks the
compiled path. The NumPy code of :mod:`daskmeans.kernels._api` gives the same
labels, and sums equal up to floating-point rounding (these accumulate in
float64). Every function is compiled on its first call for the types it
meets (no signature lists, nothing compiled at import) and kept in numba's
cache (see :mod:`daskmeans.kernels._warmup`).

Two layouts of the distance matrix are supported. For up to 64 centres it is
row-major, ``D = X @ (-2 C).T`` of shape ``(n, K)``: BLAS is faster in that
orientation when K is small (the long dimension is the rows of the output),
and each row's argmin is one to four SIMD vectors
(:func:`daskmeans.kernels._llvm.vector_argmin_kernels`, a numba intrinsic in
LLVM IR, when the plan's ``vector_argmin`` is on). For more centres it is
*transposed*, ``Dt = (-2 C) @ X.T`` of shape ``(K, n)``, so that the running minimum over
centres is an elementwise loop over rows, which the compiler vectorises.

While a sub-block is labelled and added up, the rows of the next one are
prefetched, one ``llvm.prefetch`` hint per cache line spread over the rows
(:func:`prefetch_row`): otherwise the BLAS product of every sub-block stalls
on its first touch of memory.

The farthest rows of a block (for relocating empty clusters) are selected
while streaming: a row enters a small buffer only when it is farther than
the ``m``-th farthest kept so far, and the buffer is compacted to ``m`` rows
when full. For rows in random order this touches ``O(m log(n / m))`` rows
instead of sorting or partitioning the whole block.

Whole blocks (:func:`sweep_block`, :func:`nearest_block` and their screened
float64 counterparts): when SciPy is
installed, numba's ``np.dot`` calls SciPy's BLAS from compiled code, so the
loop over the sub-blocks of a block (product, argmin, accumulation, far rows)
runs in one call that holds no GIL. Driven from Python instead, every
sub-block takes and releases the GIL several times; with two or more Dask
threads those hand-overs cost as much as the arithmetic (the plan's
``whole_block``; compare with ``DASKMEANS_KERNELS=numba-subblock``).

*Screened* float64 (see :mod:`daskmeans.kernels._compiled`): the distance product is
computed in float32 on shifted rows, every row gets the best and second-best
screened score and a rigorous bound on their error; a row whose gap exceeds
twice the bound has its float32 label proven exact, any other row is decided
again in float64 among the centres that could win. Sums, weights and
distances are then computed in float64 from the original rows.
"""

from __future__ import annotations

import numba
import numpy as np

from . import _llvm, _numba_cache

__all__ = [
    "BLAS_AVAILABLE",
    "COLUMN_TILES",
    "FUSED_ARGMIN",
    "VECTOR_ARGMIN",
    "accumulate_centred",
    "accumulate_exact",
    "accumulate_rows",
    "argmin_columns",
    "argmin_rows",
    "far_compact",
    "far_push",
    "moments_rows",
    "nearest_block",
    "nearest_block_screened",
    "nearest_columns",
    "nearest_fused",
    "probe_cells",
    "refine_rows",
    "seeding_step",
    "seeding_update",
    "shift_cast_rows",
    "sq_dist_exact",
    "sq_dist_rows",
    "sweep_block",
    "sweep_block_screened",
    "sweep_columns",
    "sweep_fused",
    "top2_columns",
    "top2_columns_of",
    "top2_rows",
]

try:  # pragma: no cover - depends on the environment
    # numba's np.dot calls SciPy's BLAS; importing it now also makes it visible
    # to threadpoolctl before any BLAS limit is set (see daskmeans.engine._graph)
    import scipy.linalg.cython_blas  # noqa: F401
except ImportError:  # pragma: no cover
    #: True when whole blocks can be swept in one compiled call (SciPy's BLAS).
    BLAS_AVAILABLE = False
else:
    BLAS_AVAILABLE = True

# Reassociation lets the compiler vectorise the row norms; no "nnan"/"ninf",
# so comparisons with infinity and NaN keep their IEEE meaning.
_FASTMATH = {"reassoc", "contract", "nsz", "arcp"}

#: Bytes of a cache line, the unit of :func:`prefetch_row`.
_LINE_BYTES = 64

#: Rows a centre must have on average in a call of :func:`accumulate_rows` for
#: its sums to be formed in the rows' dtype first: the scratch costs a zeroing
#: and an addition of one row per centre.
_PARTIAL_ROWS_PER_CENTRE = 4


# --------------------------------------------------------------------------- #
# Loops around the LLVM-IR intrinsics of _llvm (scalar stand-ins without them)
# --------------------------------------------------------------------------- #
def _prefetch_noop(A, i, j):
    pass


prefetch = _llvm.prefetch_kernel() or numba.njit(inline="always")(_prefetch_noop)


def _vector_rows_missing(D, c_sq, lo, hi, labels, best, ahead):
    raise RuntimeError("the SIMD argmin is not available")


def _named(func, name: str):
    """``func`` under a name of its own. The loops below are closures of one
    source; with a shared name, a cached caller compiled in another process
    could link this process's loop of another shape in place of its own."""
    func.__name__ = func.__qualname__ = name
    return func


def _vector_rows_with(kernel, name: str):
    """The rows loop of one SIMD argmin shape (see :func:`argmin_rows`)."""
    if kernel is None:  # pragma: no cover - LLVM before 17
        return numba.njit(nogil=True)(_vector_rows_missing)

    def rows(D, c_sq, lo, hi, labels, best, ahead):
        n = D.shape[0]
        n_ahead = min(n, ahead.shape[0])
        for i in range(n):
            if i < n_ahead:
                prefetch_row(ahead, i)
            j, b = kernel(D, i, c_sq, lo, hi - lo)
            labels[i] = lo + j
            best[i] = b

    return numba.njit(nogil=True)(_named(rows, name))


_VECTOR_KERNELS = _llvm.vector_argmin_kernels()
#: True when rows of 5 to 64 centres can be scanned as SIMD vectors.
VECTOR_ARGMIN = _VECTOR_KERNELS is not None
# one loop per vector shape, so that each inlines its kernel
vector_rows8, vector_rows16, vector_rows32, vector_rows48, vector_rows64 = (
    _vector_rows_with(k, f"vector_rows{w}") for k, w in zip(
        _VECTOR_KERNELS or (None,) * len(_llvm.VECTOR_SHAPES), (8, 16, 32, 48, 64), strict=True))


def _fused_rows_missing(X, CT, c_sq, labels, best):
    raise RuntimeError("the fused product-and-argmin tiles are not available")


def _fused_rows_with(kernels, width):
    """``fused_rowsN(X, CT, c_sq, labels, best)``: label every row of ``X`` by
    the fused tiles of ``width`` (padded) centres (see
    :func:`daskmeans.kernels._llvm.fused_tile_kernels`)."""
    if kernels is None:  # pragma: no cover - LLVM before 17
        return numba.njit(nogil=True)(_fused_rows_missing)
    tile, height = kernels

    def rows(X, CT, c_sq, labels, best):
        n, d = X.shape
        # the tiles index with these sizes unchecked
        if (CT.shape[0] != d or CT.shape[1] != width or c_sq.shape[0] != width
                or labels.shape[0] < n or best.shape[0] < n):
            raise ValueError("fused tiles: operands of the wrong shape")
        R = height(X)
        full = n - n % R
        for i in range(0, full, R):
            tile(X, i, CT, c_sq, labels, best)
        if full < n:  # the last rows, through a zero-padded tile
            # element by element: slice assignments take seconds to compile
            Xt = np.empty((R, d), dtype=X.dtype)
            for r in range(R):
                for q in range(d):
                    Xt[r, q] = X[full + r, q] if full + r < n else 0
            lt = np.empty(R, dtype=labels.dtype)
            bt = np.empty(R, dtype=best.dtype)
            tile(Xt, 0, CT, c_sq, lt, bt)
            for r in range(n - full):
                labels[full + r] = lt[r]
                best[full + r] = bt[r]

    return numba.njit(nogil=True)(_named(rows, f"fused_rows{width}"))


# the tiles' heights follow the vector registers of the CPU numba compiles for
# (_llvm.tile_rows); numba's cache is kept per CPU type
_FUSED_KERNELS = _llvm.fused_tile_kernels()
#: True when rows of up to 64 centres can be labelled by fused tiles (no distance matrix).
FUSED_ARGMIN = _FUSED_KERNELS is not None
#: Centres (padded) of the fused tiles.
FUSED_CENTERS = _llvm.FUSED_CENTERS
fused_rows16, fused_rows32, fused_rows48, fused_rows64 = (
    _fused_rows_with(k, w) for k, w in
    zip(_FUSED_KERNELS or (None,) * len(FUSED_CENTERS), FUSED_CENTERS, strict=True))



_COLUMN_KERNELS = _llvm.column_tile_kernels()
#: True when any number of centres can be scanned by column tiles (vectorised over rows).
COLUMN_TILES = _COLUMN_KERNELS is not None


def _column_rows_missing(*args):
    raise RuntimeError("the column tiles are not available")


_TRANSPOSE = _llvm.transpose_kernel()


def transpose_rows(Xs, XT):
    """``XT[q, r] = Xs[r, q]`` for every row ``r`` and feature ``q`` of ``Xs``.

    In compiled code, C-contiguous operands go by blocks of 8 x 8 transposed in
    registers (:func:`daskmeans.kernels._llvm.transpose_kernel`), the rows and
    features left over one value at a time; other layouts, or no kernel, one
    value at a time (this body).
    """
    m, d = Xs.shape
    for r in range(m):
        for q in range(d):
            XT[q, r] = Xs[r, q]


@numba.extending.overload(transpose_rows, jit_options={"nogil": True})
def _transpose_rows_impl(Xs, XT):
    if not (_TRANSPOSE is not None and isinstance(Xs, numba.types.Array)
            and isinstance(XT, numba.types.Array) and Xs.layout == "C" and XT.layout == "C"
            and Xs.dtype == XT.dtype):
        return transpose_rows  # its own body, one value at a time
    W = _llvm.TRANSPOSE_LANES

    def blocks(Xs, XT):
        m, d = Xs.shape
        if XT.shape[0] < d or XT.shape[1] < m:
            raise ValueError("transpose_rows: XT is smaller than Xs transposed")
        full_r = m - m % W
        full_q = d - d % W
        for r0 in range(0, full_r, W):
            for q0 in range(0, full_q, W):
                _TRANSPOSE(Xs, r0, q0, XT, r0)
            for q in range(full_q, d):
                for r in range(r0, r0 + W):
                    XT[q, r] = Xs[r, q]
        for r in range(full_r, m):
            for q in range(d):
                XT[q, r] = Xs[r, q]

    return blocks


@numba.njit(nogil=True)
def _column_check(m, d, XT, C, c_sq, chunk, runv, runi, run2, T, G):
    """Raise unless the column tiles' operands fit ``m`` rows of ``d`` features
    (the tiles index them unchecked); ``run2`` of length 0 when unused."""
    mp = m + (-m) % T
    S = XT.shape[1]
    if (XT.shape[0] != d or S < mp or S % T != 0 or C.shape[1] != d
            or C.shape[0] % G != 0 or c_sq.shape[0] != C.shape[0]
            or runv.shape[0] < S or runi.shape[0] < S or chunk < 1
            or (run2.shape[0] > 0 and run2.shape[0] < S)):
        raise ValueError("column tiles: operands of the wrong shape")


#: Rows ahead that the gathering loops prefetch (the rows they gather are scattered).
_GATHER_AHEAD = 8


def _column_rows_with(kernels, top2=None):
    """``(rows, gathered)``: label the rows of a sub-block by the column tiles.

    ``rows(Xs, C, c_sq, chunk, XT, runv, runi, run2, labels, best, second)``
    transposes the rows of ``Xs`` into the scratch ``XT`` (d, S);
    ``gathered(X, idx, ...)`` (the same arguments after ``idx``) gathers the
    rows ``X[idx]`` straight into it. Then the tiles of ``kernels`` (see
    :func:`daskmeans.kernels._llvm.column_tile_kernels`) run over ``C`` and
    ``c_sq`` (padded to whole groups), ``chunk`` groups at a time, and give
    every row's label and minimum (``labels``, ``best``); with ``top2``
    (:func:`daskmeans.kernels._llvm.column_top2_kernel`) also its second-best
    score (``second``), with the same labels and minima bitwise. ``runv``,
    ``runi`` (and ``run2`` with ``top2``; else of length 0, as ``second``) are
    scratch of ``S`` values, ``S`` at least the rows rounded up to a whole tile.
    """
    if kernels is None:  # pragma: no cover - LLVM before 17
        missing = numba.njit(nogil=True)(_column_rows_missing)
        return missing, missing
    tile, height, group_size = kernels
    name = "column" if top2 is None else "column_top2"

    if top2 is None:
        def groups(XT, i, C, c_sq, g0, g1, runv, runi, run2):
            tile(XT, i, C, c_sq, g0, g1, runv, runi)

        def copy_out(m, runv, runi, run2, labels, best, second):
            for r in range(m):
                labels[r] = runi[r]
                best[r] = runv[r]
    else:
        def groups(XT, i, C, c_sq, g0, g1, runv, runi, run2):
            top2(XT, i, C, c_sq, g0, g1, runv, runi, run2)

        def copy_out(m, runv, runi, run2, labels, best, second):
            for r in range(m):
                labels[r] = runi[r]
                best[r] = runv[r]
                second[r] = run2[r]

    groups = numba.njit(nogil=True, inline="always")(_named(groups, f"{name}_groups"))
    copy_out = numba.njit(nogil=True, inline="always")(_named(copy_out, f"{name}_copy_out"))

    def finish(m, C, c_sq, chunk, XT, runv, runi, run2, labels, best, second):
        T = height(XT)
        mp = m + (-m) % T
        for q in range(XT.shape[0]):
            for r in range(m, mp):
                XT[q, r] = 0
        n_groups = C.shape[0] // group_size(XT)
        for g0 in range(0, n_groups, chunk):
            g1 = min(g0 + chunk, n_groups)
            for i in range(0, mp, T):
                groups(XT, i, C, c_sq, g0, g1, runv, runi, run2)
        copy_out(m, runv, runi, run2, labels, best, second)

    finish = numba.njit(nogil=True)(_named(finish, f"{name}_finish"))

    def rows(Xs, C, c_sq, chunk, XT, runv, runi, run2, labels, best, second):
        m, d = Xs.shape
        _column_check(m, d, XT, C, c_sq, chunk, runv, runi, run2, height(XT),
                      group_size(XT))
        transpose_rows(Xs, XT)
        finish(m, C, c_sq, chunk, XT, runv, runi, run2, labels, best, second)

    def gathered(X, idx, C, c_sq, chunk, XT, runv, runi, run2, labels, best, second):
        m, d = idx.shape[0], X.shape[1]
        _column_check(m, d, XT, C, c_sq, chunk, runv, runi, run2, height(XT),
                      group_size(XT))
        for r in range(m):
            if r + _GATHER_AHEAD < m:
                prefetch_row(X, idx[r + _GATHER_AHEAD])
            i = idx[r]
            for q in range(d):
                XT[q, r] = X[i, q]
        finish(m, C, c_sq, chunk, XT, runv, runi, run2, labels, best, second)

    return (numba.njit(nogil=True)(_named(rows, f"{name}_rows")),
            numba.njit(nogil=True)(_named(gathered, f"{name}_rows_gathered")))


_COLUMN_TOP2 = _llvm.column_top2_kernel() if COLUMN_TILES else None
_column_rows_any, column_rows_gathered = _column_rows_with(_COLUMN_KERNELS)
_column_top2_rows_any, column_top2_rows_gathered = _column_rows_with(
    _COLUMN_KERNELS if _COLUMN_TOP2 is not None else None, _COLUMN_TOP2)


@numba.njit(nogil=True, inline="always")
def column_rows(Xs, C, c_sq, chunk, XT, runv, runi, labels, best):
    """Labels and minima of the rows of the sub-block ``Xs`` by the column
    tiles (see :func:`_column_rows_with`); ``XT`` (d, S), ``runv`` and
    ``runi`` (S,) are scratch."""
    _column_rows_any(Xs, C, c_sq, chunk, XT, runv, runi, runv[:0], labels, best, best[:0])


@numba.njit(nogil=True, inline="always")
def column_top2_rows(Xs, C, c_sq, chunk, XT, runv, runi, run2, labels, best, second):
    """:func:`column_rows` that also gives every row's second-best score
    ``second`` (the same labels and minima, bitwise); ``run2`` (S,) is scratch."""
    _column_top2_rows_any(Xs, C, c_sq, chunk, XT, runv, runi, run2, labels, best, second)


@numba.njit(nogil=True, cache=True)
def top2_columns_of(X, rows, C, c_sq, step, chunk, labels, best, second):
    """Label, best and second-best score of the rows ``X[rows]`` by the column
    tiles (:func:`column_top2_rows`), ``step`` rows at a time: ``labels[r]``,
    ``best[r]`` and ``second[r]`` for row ``rows[r]``. ``C`` and ``c_sq`` as
    for :func:`sweep_columns` (one group from centre 0). A row's scores do
    not depend on the other rows of its sub-block: its label and minimum are
    those of :func:`sweep_columns` on the whole block, bitwise."""
    n_rows = rows.shape[0]
    d = X.shape[1]
    XT, runv, runi = _column_scratch(step, d, X)
    run2 = np.empty_like(runv)
    for start in range(0, n_rows, step):
        m = min(step, n_rows - start)
        column_top2_rows_gathered(X, rows[start : start + m], C, c_sq, chunk, XT, runv, runi,
                                  run2, labels[start : start + m], best[start : start + m],
                                  second[start : start + m])


#: 64-byte lines of rows per column tile (its row vectors), of the CPU numba compiles for.
_TILE_LINES = _llvm.column_tile_shape()[0] if COLUMN_TILES else 1


@numba.njit(nogil=True, cache=True)
def column_scratch_width(step, per_line, tile_lines):
    """Columns of the transposed scratch of ``step`` rows: a whole number of
    tiles (``tile_lines`` lines of ``per_line`` values), and an odd number of
    them, so that the features are not a power-of-two number of bytes apart
    (with such a stride every feature of a tile would fall in the same cache
    set)."""
    tiles = -(-step // (per_line * tile_lines))
    if tiles % 2 == 0:
        tiles += 1
    return tiles * per_line * tile_lines


@numba.njit(nogil=True, cache=True)
def _column_scratch(step, d, X):
    """Transposed rows, running minima and indices of a sub-block of ``step``
    rows (:func:`column_scratch_width` columns)."""
    S = column_scratch_width(step, 64 // X.itemsize, _TILE_LINES)
    return (np.empty((d, S), dtype=X.dtype), np.empty(S, dtype=X.dtype),
            np.empty(S, dtype=np.int32))


@numba.njit(nogil=True, cache=True)
def sweep_columns(X, w, C, c_sq, lo, g, step, chunk, sums, counts, inertia,
                  far_m, far_dist, far_rows, far_lab, far_state, far_tau):
    """:func:`sweep_block` for group ``g`` (centres ``lo`` onwards of ``sums``),
    labelled by the column tiles (see
    :func:`daskmeans.kernels._llvm.column_tile_kernels`); no distance matrix is
    formed. ``C`` is ``-2`` times the group's centres and ``c_sq`` their squared
    norms, padded to whole tile groups (zero rows, infinity)."""
    n, d = X.shape
    has_w = w.shape[0] > 0
    lab = np.empty(step, dtype=np.intp)
    best = np.empty(step, dtype=X.dtype)
    XT, runv, runi = _column_scratch(step, d, X)
    for start in range(0, n, step):
        stop = min(start + step, n)
        m = stop - start
        Xs = X[start:stop]
        ws = w[start:stop] if has_w else w
        column_rows(Xs, C, c_sq, chunk, XT, runv, runi, lab[:m], best[:m])
        for r in range(m):
            lab[r] += lo
        ahead = X[stop : min(stop + step, n)]
        inertia[g] += accumulate_rows(Xs, ws, lab[:m], best[:m], sums, counts, ahead)
        if far_m > 0:
            far_push(best[:m], lab[:m], ws, start, far_m, far_dist[g], far_rows[g],
                     far_lab[g], far_state[g : g + 1], far_tau[g : g + 1])


@numba.njit(nogil=True, cache=True)
def nearest_columns(X, C, c_sq, lo, g, step, chunk, labels, dist, want_dist):
    """:func:`nearest_block` for group ``g`` (rows ``g`` of ``labels`` and
    ``dist``, centres ``lo`` onwards), labelled by the column tiles (see
    :func:`sweep_columns`)."""
    n, d = X.shape
    best = np.empty(step, dtype=X.dtype)
    XT, runv, runi = _column_scratch(step, d, X)
    for start in range(0, n, step):
        stop = min(start + step, n)
        m = stop - start
        lab = labels[g, start:stop]
        column_rows(X[start:stop], C, c_sq, chunk, XT, runv, runi, lab, best[:m])
        for r in range(m):
            lab[r] += lo
        if want_dist:
            sq_dist_rows(X[start:stop], best[:m], dist[g, start:stop])


@numba.njit(nogil=True, cache=True)
def probe_cells(X, pairs, bounds, n_probe, C, c_sq, c_off, offsets, step, chunk,
                labels, score, second, top2):
    """Best fine centre of every (row, probed cell) pair by the column tiles.

    ``pairs`` lists ``row * n_probe + p`` grouped by cell: cell ``c`` has
    ``pairs[bounds[c]:bounds[c + 1]]``. ``C`` and ``c_sq`` hold ``-2`` times
    every cell's fine centres and their squared norms, each cell padded to
    whole tile groups (rows ``c_off[c]:c_off[c + 1]``, as for
    :func:`sweep_columns`); ``offsets`` maps a cell's first centre to its
    global index. For every pair ``q``: ``labels[q]`` (global), ``score[q]``
    (``x . (-2 c) + |c|^2``) and, with ``top2``, ``second[q]`` (the cell's
    second-best score). Pairs of a cell without centres are left untouched.
    A row's scores do not depend on the other rows of its sub-block."""
    d = X.shape[1]
    XT, runv, runi = _column_scratch(step, d, X)
    run2 = np.empty_like(runv) if top2 else runv[:0]
    idx = np.empty(step, dtype=np.int64)
    lab = np.empty(step, dtype=np.int64)
    best = np.empty(step, dtype=X.dtype)
    sec = np.empty(step if top2 else 0, dtype=X.dtype)
    for c in range(bounds.shape[0] - 1):
        lo, hi = c_off[c], c_off[c + 1]
        if hi == lo:
            continue
        Cc = C[lo:hi]
        sq = c_sq[lo:hi]
        first = offsets[c]
        for start in range(bounds[c], bounds[c + 1], step):
            m = min(step, bounds[c + 1] - start)
            for r in range(m):
                idx[r] = pairs[start + r] // n_probe
            if top2:
                column_top2_rows_gathered(X, idx[:m], Cc, sq, chunk, XT, runv, runi, run2,
                                          lab[:m], best[:m], sec[:m])
            else:
                column_rows_gathered(X, idx[:m], Cc, sq, chunk, XT, runv, runi, run2,
                                     lab[:m], best[:m], sec)
            for r in range(m):
                q = pairs[start + r]
                labels[q] = lab[r] + first
                score[q] = best[r]
                if top2:
                    second[q] = sec[r]


# --------------------------------------------------------------------------- #
# Plain loops
# --------------------------------------------------------------------------- #
@numba.njit(nogil=True, inline="always")
def prefetch_rows(A, lo, hi):
    """:func:`prefetch_row` for rows ``lo`` to ``hi`` (clipped to ``A``)."""
    for i in range(lo, min(hi, A.shape[0])):
        prefetch_row(A, i)


@numba.njit(nogil=True, inline="always")
def prefetch_row(A, i):
    """Prefetch the cache lines of row ``i`` of the C-contiguous ``A``.

    Hints go to addresses at most a cache line apart over consecutive rows,
    so every line is hinted whatever the alignment: every line of a long row
    (the part of a line that straddles into the next row is covered by that
    row's first hint), or the first element of every ``L // row`` -th short
    row, ``L`` being the line.
    """
    d = A.shape[1]
    per_line = values_per_line(A)  # a constant: no division in the caller's loop
    if d >= per_line:
        # a while loop: the trip count of a range with this step takes a division
        f = 0
        while f < d:
            prefetch(A, i, f)
            f += per_line
    elif d > 0 and i % (per_line // d) == 0:
        prefetch(A, i, 0)


def values_per_line(A):
    """Values of ``A``'s dtype in a cache line (at least 1), a compile-time
    constant in compiled code."""
    return max(1, _LINE_BYTES // A.itemsize)


@numba.extending.overload(values_per_line, jit_options={"nogil": True})
def _values_per_line_impl(A):
    n = max(1, _LINE_BYTES // (A.dtype.bitwidth // 8))
    return lambda A: n


@numba.njit(nogil=True, cache=True)
def argmin_columns(Dt, c_sq, lo, hi, labels, best, ahead):
    """Per column ``i``: first ``j`` in ``[lo, hi)`` minimising ``Dt[j, i] + c_sq[j]``.

    Writes the global index into ``labels[i]`` and the minimum into ``best[i]``.
    Ties go to the smallest index, as :func:`numpy.argmin`. The rows of
    ``ahead`` (the next sub-block, or none) are hinted into the cache, one
    per column of the first pass, as in :func:`argmin_rows`.
    """
    n = Dt.shape[1]
    n_ahead = min(n, ahead.shape[0])
    c = c_sq[lo]
    for i in range(n):
        if i < n_ahead:
            prefetch_row(ahead, i)
        best[i] = Dt[lo, i] + c
        labels[i] = lo
    for j in range(lo + 1, hi):
        c = c_sq[j]
        for i in range(n):
            v = Dt[j, i] + c
            lt = v < best[i]
            best[i] = v if lt else best[i]
            labels[i] = j if lt else labels[i]


@numba.njit(nogil=True, cache=True)
def argmin_rows(D, c_sq, lo, hi, labels, best, ahead, vector):
    """Per row ``i`` of a row-major ``D``: first ``j`` in ``[lo, hi)`` minimising
    ``D[i, j] + c_sq[j]``.

    Writes the global index into ``labels[i]`` and the minimum into ``best[i]``.
    Ties go to the smallest index, as :func:`numpy.argmin`. Four rows are
    scanned together: their running minima are independent, so the compare
    and select of one row overlap those of the others (one row alone is a
    chain of dependent compares). With ``vector`` (the plan's
    ``vector_argmin``), rows of 5 to 64 centres are one to four SIMD vectors
    instead (see :func:`daskmeans.kernels._llvm.vector_argmin_kernels`; timings
    in benchmarks/RESULTS.md). ``D`` must be C-contiguous. ``ahead``
    (rows to be read next, possibly none) is prefetched alongside, as in
    :func:`accumulate_rows`.
    """
    n = D.shape[0]
    width = hi - lo
    if vector and 4 < width <= 64:
        # one loop per shape of _llvm.VECTOR_SHAPES (8, 16, 32, 48, 64 lanes in all)
        if width <= 8:
            vector_rows8(D, c_sq, lo, hi, labels, best, ahead)
        elif width <= 16:
            vector_rows16(D, c_sq, lo, hi, labels, best, ahead)
        elif width <= 32:
            vector_rows32(D, c_sq, lo, hi, labels, best, ahead)
        elif width <= 48:
            vector_rows48(D, c_sq, lo, hi, labels, best, ahead)
        else:
            vector_rows64(D, c_sq, lo, hi, labels, best, ahead)
        return
    i = 0
    while i + 4 <= n:
        prefetch_rows(ahead, i, i + 4)
        c = c_sq[lo]
        b0 = D[i, lo] + c
        b1 = D[i + 1, lo] + c
        b2 = D[i + 2, lo] + c
        b3 = D[i + 3, lo] + c
        a0 = a1 = a2 = a3 = lo
        for j in range(lo + 1, hi):
            c = c_sq[j]
            v0 = D[i, j] + c
            v1 = D[i + 1, j] + c
            v2 = D[i + 2, j] + c
            v3 = D[i + 3, j] + c
            if v0 < b0:
                b0 = v0
                a0 = j
            if v1 < b1:
                b1 = v1
                a1 = j
            if v2 < b2:
                b2 = v2
                a2 = j
            if v3 < b3:
                b3 = v3
                a3 = j
        labels[i] = a0
        labels[i + 1] = a1
        labels[i + 2] = a2
        labels[i + 3] = a3
        best[i] = b0
        best[i + 1] = b1
        best[i + 2] = b2
        best[i + 3] = b3
        i += 4
    for r in range(i, n):
        b = D[r, lo] + c_sq[lo]
        a = lo
        for j in range(lo + 1, hi):
            v = D[r, j] + c_sq[j]
            if v < b:
                b = v
                a = j
        labels[r] = a
        best[r] = b


@numba.njit(nogil=True, cache=True)
def far_compact(dist, rows, labels, fill, m):
    """Keep the ``m`` largest of ``dist[:fill]`` (ties: earlier entries first).

    Reorders the first entries of the three buffers in place, by decreasing
    distance. Returns ``(new_fill, threshold)``: the threshold is the smallest
    kept distance once ``m`` are kept, else minus infinity.
    """
    order = _desc_order(dist, fill)
    keep = min(m, fill)
    d2 = np.empty(keep, dtype=dist.dtype)
    r2 = np.empty(keep, dtype=rows.dtype)
    l2 = np.empty(keep, dtype=labels.dtype)
    for i in range(keep):
        o = order[i]
        d2[i] = dist[o]
        r2[i] = rows[o]
        l2[i] = labels[o]
    for i in range(keep):
        dist[i] = d2[i]
        rows[i] = r2[i]
        labels[i] = l2[i]
    tau = d2[keep - 1] if keep == m and keep > 0 else -np.inf
    return keep, tau


@numba.njit(nogil=True, cache=True)
def _desc_order(dist, n):
    """Indices of ``dist[:n]`` by decreasing value, equal values in index order.

    The order of ``np.argsort(-dist[:n], kind="mergesort")``, as a bottom-up
    merge sort written out in loops: NumPy's sorts with a ``kind`` compile
    several seconds of string and generic-sort code into every kernel that
    calls them, which this does not.
    """
    order = np.arange(n)
    tmp = np.empty(n, dtype=order.dtype)
    width = 1
    while width < n:
        for lo in range(0, n, 2 * width):
            mid = min(lo + width, n)
            hi = min(lo + 2 * width, n)
            a, b, k = lo, mid, lo
            while a < mid and b < hi:
                if dist[order[b]] > dist[order[a]]:  # ties: the left (earlier) one first
                    tmp[k] = order[b]
                    b += 1
                else:
                    tmp[k] = order[a]
                    a += 1
                k += 1
            while a < mid:
                tmp[k] = order[a]
                a += 1
                k += 1
            while b < hi:
                tmp[k] = order[b]
                b += 1
                k += 1
        order, tmp = tmp, order
        width *= 2
    return order


@numba.njit(nogil=True, cache=True)
def far_push(best, labels, w, row0, m, dist, rows, lab, state, tau):
    """Offer the rows of a sub-block to the buffer of the farthest rows.

    ``best`` holds the squared distances of the sub-block's rows to their
    centres, ``labels`` their centres; ``row0`` is the index of the first row
    in the block. Rows of weight zero are skipped (``w`` of length 0 means unit
    weights). ``state[0]`` is the buffer fill and ``tau[0]`` the threshold;
    both are updated.
    """
    n = best.shape[0]
    has_w = w.shape[0] > 0
    cap = dist.shape[0]
    fill = state[0]
    t = tau[0]
    for i in range(n):
        if has_w and not (w[i] > 0):
            continue
        v = np.float64(best[i])
        if v > t:
            if fill == cap:
                fill, t = far_compact(dist, rows, lab, fill, m)
                if not v > t:
                    continue
            dist[fill] = v
            rows[fill] = row0 + i
            lab[fill] = labels[i]
            fill += 1
    state[0] = fill
    tau[0] = t


@numba.njit(nogil=True, cache=True, fastmath=_FASTMATH)
def accumulate_rows(X, w, labels, best, sums, counts, ahead):
    """Add rows into ``sums[labels]``; turn ``best`` into squared distances.

    ``best[i]`` holds ``||c||^2 - 2 x.c`` on entry and ``max(||x - c||^2, 0)``
    on exit. ``w`` of length 0 means unit weights. Returns the weighted sum of
    the squared distances (float64).

    Rows narrower than ``sums`` (float32 into float64) are summed in their own
    dtype first, into a scratch spanning the labels present, and the scratch is
    added into ``sums`` once, when every label it spans has rows enough on
    average (:data:`_PARTIAL_ROWS_PER_CENTRE`) to pay for it: half the vector
    work of widening every row. The rows' squared norms are then in their
    dtype too: sums and norms as :mod:`daskmeans.kernels._numpy` forms them.

    ``ahead`` (rows to be read next, possibly none): row ``i`` of it is
    prefetched while row ``i`` is added (see :func:`prefetch_row`), so the
    next sub-block streams in from memory while this one is computed.
    """
    return _accumulate(X, w, labels, best, None, sums, counts, ahead)


@numba.njit(nogil=True, cache=True, fastmath=_FASTMATH)
def accumulate_centred(X, w, labels, centers, sums, counts, best, ahead):
    """:func:`accumulate_rows` with the squared distances taken from the
    differences to ``centers[labels]`` (each square in the rows' dtype, summed
    in float64) into ``best``, which is not read: the same sums and counts,
    bitwise, for rows labelled without their scores (the int16 tiles of
    :mod:`daskmeans.kernels._quantized`)."""
    return _accumulate(X, w, labels, best, centers, sums, counts, ahead)


@numba.njit(nogil=True, fastmath=_FASTMATH)
def _accumulate(X, w, labels, best, centers, sums, counts, ahead):
    """The body of :func:`accumulate_rows` (``centers`` None) and
    :func:`accumulate_centred`."""
    n, d = X.shape
    if n == 0:
        return 0.0
    lo = labels[0]
    hi = labels[0]
    for i in range(1, n):
        lo = min(lo, labels[i])
        hi = max(hi, labels[i])
    span = hi - lo + 1
    if X.itemsize < sums.itemsize and _PARTIAL_ROWS_PER_CENTRE * span <= n:
        part = np.zeros((span, d), dtype=X.dtype)
        total = _add_rows(X, w, labels, best, centers, part, lo, counts, ahead)
        for a in range(span):
            for f in range(d):
                sums[lo + a, f] += part[a, f]
        return total
    return _add_rows(X, w, labels, best, centers, sums, 0, counts, ahead)


@numba.njit(nogil=True, fastmath=_FASTMATH)
def _add_rows(X, w, labels, best, centers, sums, first, counts, ahead):
    """The loop of :func:`accumulate_rows`: row ``i`` into ``sums[labels[i] - first]``,
    its weight and the sum of its squares (or of its squared differences to
    ``centers[labels[i]]``) in the dtype of ``sums`` (each square in the rows'
    dtype)."""
    n_ahead = min(X.shape[0], ahead.shape[0])
    # two loops, each with or without the hints throughout (a test of the row
    # index in one loop would keep it from being vectorised as well)
    # (the running total goes on from one to the other: results do not depend
    # on the hints)
    total = _add_row_range(X, w, labels, best, centers, sums, first, counts, ahead, 0, n_ahead,
                           True, 0.0)
    return _add_row_range(X, w, labels, best, centers, sums, first, counts, ahead, n_ahead,
                          X.shape[0], False, total)


@numba.njit(nogil=True, fastmath=_FASTMATH)
def _add_row_range(X, w, labels, best, centers, sums, first, counts, ahead, start, stop, hint,
                   total):
    """Rows ``start:stop`` of :func:`_add_rows`, hinting row ``i`` of ``ahead``
    into the cache with row ``i`` when ``hint``; returns ``total`` plus their
    weighted distances. (numba drops the branches on ``centers is None`` when
    it compiles, so each kind of call gets a loop of its own.)"""
    d = X.shape[1]
    has_w = w.shape[0] > 0
    one = np.ones(1, dtype=sums.dtype)
    zero = one[0] - one[0]
    for i in range(start, stop):
        if hint:
            prefetch_row(ahead, i)
        a = labels[i]
        r = a - first
        xs = zero
        if has_w:
            wi = np.float64(w[i])
            one[0] = wi
            ws = one[0]
            for f in range(d):
                v = X[i, f]
                t = v if centers is None else v - centers[a, f]
                xs += t * t
                sums[r, f] += ws * v
        else:
            wi = 1.0
            for f in range(d):
                v = X[i, f]
                t = v if centers is None else v - centers[a, f]
                xs += t * t
                sums[r, f] += v
        dist = np.float64(best[i]) + np.float64(xs) if centers is None else np.float64(xs)
        if dist < 0.0:
            dist = 0.0
        best[i] = dist
        counts[a] += wi
        total += wi * dist
    return total


@numba.njit(nogil=True, cache=True)
def top_rows(Pm, c_sq, x_sq, row0, out):
    """The ``out.shape[1]`` nearest centres of every row of a block, nearest first.

    ``Pm[r, j]`` is ``x . (-2 c_j)`` for row ``row0 + r`` (``out`` and
    ``x_sq`` are indexed by the block's rows); the squared distance is
    ``max(Pm + |c|^2 + |x|^2, 0)`` rounded after every addition, as
    :func:`daskmeans.kernels._numpy.distances_block` forms it. Ties go to
    the lower index.

    A row's ``T`` nearest lie at or below ``tau``, the largest of the minima
    of ``T`` slices of its distances (``T`` distances are at most ``tau``):
    only those are sorted, by an insertion that keeps equal values in index
    order, so few of a row's branches depend on its data.
    """
    n, m = Pm.shape
    T = out.shape[1]
    vals = np.empty(T, dtype=Pm.dtype)
    d = np.empty(m, dtype=Pm.dtype)
    cand = np.empty(m, dtype=np.intp)
    zero = np.zeros(1, dtype=Pm.dtype)[0]  # a literal 0 would widen to float64
    for r in range(n):
        i = row0 + r
        xs = x_sq[i]
        for j in range(m):
            v = Pm[r, j] + c_sq[j]
            v = v + xs
            d[j] = v if v > zero else zero
        tau = zero
        for t in range(T):  # T slices, none empty (T <= m)
            a, b = (t * m) // T, ((t + 1) * m) // T
            mn = d[a]
            for j in range(a + 1, b):
                mn = d[j] if d[j] < mn else mn
            tau = mn if mn > tau else tau
        c = 0
        for j in range(m):  # the indices at or below tau, in order, without branches
            cand[c] = j
            c += d[j] <= tau
        cnt = 0
        for q in range(c):
            j = cand[q]
            v = d[j]
            if cnt == T:
                if not v < vals[T - 1]:
                    continue
                p = T - 1
            else:
                p = cnt
                cnt += 1
            while p > 0 and vals[p - 1] > v:
                vals[p] = vals[p - 1]
                out[i, p] = out[i, p - 1]
                p -= 1
            vals[p] = v
            out[i, p] = j


@numba.njit(nogil=True, cache=True, fastmath=_FASTMATH)
def accumulate_labels(X, w, labels, sums, counts):
    """Add every row of ``X`` (weighted by ``w``; length 0: unit weights) into
    ``sums[labels[i]]`` and its weight into ``counts[labels[i]]``, in float64,
    rows in order (the per-centre sums of a labelling made elsewhere)."""
    n, d = X.shape
    has_w = w.shape[0] > 0
    for i in range(n):
        a = labels[i]
        if has_w:
            wi = np.float64(w[i])
            for f in range(d):
                sums[a, f] += wi * np.float64(X[i, f])
        else:
            wi = 1.0
            for f in range(d):
                sums[a, f] += np.float64(X[i, f])
        counts[a] += wi


@numba.njit(nogil=True, cache=True, fastmath=_FASTMATH)
def sq_dist_rows(X, best, out):
    """``out[i] = max(best[i] + ||X[i]||^2, 0)`` in float64."""
    n, d = X.shape
    for i in range(n):
        xs = 0.0
        for f in range(d):
            v = np.float64(X[i, f])
            xs += v * v
        dist = np.float64(best[i]) + xs
        out[i] = dist if dist > 0.0 else 0.0


@numba.njit(nogil=True, cache=True, fastmath=_FASTMATH)
def moments_rows(X, step, mean, m2):
    """Column mean and sum of squared deviations (float64), one read of ``X``.

    Sub-blocks of ``step`` rows are read twice while in cache (mean, then
    deviations) and merged by Chan et al.'s formula. Returns the row count.
    """
    n, d = X.shape
    count = 0.0
    sub_mean = np.empty(d)
    sub_m2 = np.empty(d)
    for start in range(0, n, step):
        stop = min(start + step, n)
        m = stop - start
        for f in range(d):
            sub_mean[f] = 0.0
            sub_m2[f] = 0.0
        for i in range(start, stop):
            for f in range(d):
                sub_mean[f] += np.float64(X[i, f])
        for f in range(d):
            sub_mean[f] /= m
        for i in range(start, stop):
            for f in range(d):
                v = np.float64(X[i, f]) - sub_mean[f]
                sub_m2[f] += v * v
        tot = count + m
        for f in range(d):
            delta = sub_mean[f] - mean[f]
            mean[f] += delta * (m / tot)
            m2[f] += sub_m2[f] + delta * delta * (count * m / tot)
        count = tot
    return count


@numba.njit(nogil=True, cache=True, fastmath=_FASTMATH)
def seeding_step(X, x_sq, picks, closest, w, cum):
    """One greedy k-means++ step over the candidates ``X[picks]``.

    The potential of candidate ``t`` is ``sum_i w[i] * min(closest[i], d_ti)``
    with ``d_ti = max(||X[i] - X[picks[t]]||^2, 0)`` expanded as
    ``x_sq[i] - 2 x.c + ||c||^2`` (products by BLAS in the dtype of ``X``, the
    rest in float64, as the NumPy path; ``w`` of length 0: unit weights). For
    the first candidate of smallest potential, ``closest`` is lowered to its
    distances in place and ``cum`` filled with the running sum of ``w *
    closest`` (:func:`seeding_update`). Returns ``(best, potential)``.

    The trials' distances are not stored: their products are read row by row
    (all candidates of a row at once), and only the kept candidate's are read
    again.
    """
    n, d = X.shape
    T = picks.shape[0]
    CT = np.empty((T, d), dtype=X.dtype).T  # (d, T), Fortran order: C transposed
    c_sq = np.zeros(T)
    for t in range(T):
        for f in range(d):  # element by element: a row assignment compiles for seconds
            v = X[picks[t], f]
            CT[f, t] = v
            c_sq[t] += np.float64(v) * np.float64(v)
    # X @ C.T, rows by candidates: BLAS runs this skinny product faster than C @ X.T on
    # large samples (benchmarks/RESULTS.md)
    P = np.empty((n, T), dtype=X.dtype)
    np.dot(X, CT, P)
    has_w = w.shape[0] > 0
    pots = np.zeros(T)
    for i in range(n):
        xs = x_sq[i]
        cl = closest[i]
        wi = np.float64(w[i]) if has_w else 1.0
        for t in range(T):
            v = xs - 2.0 * np.float64(P[i, t]) + c_sq[t]
            v = v if v > 0.0 else 0.0  # selects, not branches: the data decides them
            v = v if v < cl else cl
            pots[t] += wi * v
    best = 0
    for t in range(1, T):
        if pots[t] < pots[best]:
            best = t
    seeding_update(P, best, x_sq, c_sq[best], closest, w, cum)
    return best, pots[best]


_PRODUCTS = _llvm.column_products_kernel() if COLUMN_TILES else None
#: Whether :func:`seeding_step_tiles` runs (the column tiles' products are available).
SEEDING_TILES = _PRODUCTS is not None


@numba.njit(nogil=True, cache=True)
def seeding_operand(X):
    """The rows of ``X`` transposed for :func:`seeding_step_tiles`: shape (d, S),
    ``S`` whole column tiles (:func:`column_scratch_width`), zero past the rows."""
    n, d = X.shape
    XT = np.zeros((d, column_scratch_width(n, 64 // X.itemsize, _TILE_LINES)), dtype=X.dtype)
    transpose_rows(X, XT)
    return XT


def _seeding_products_missing(XT, C, P):
    raise RuntimeError("the column tiles are not available")


def _seeding_products_with(kernels, products):
    if kernels is None or products is None:
        return numba.njit(nogil=True)(_seeding_products_missing)
    _, height, group_size = kernels

    @numba.njit(nogil=True)
    def seeding_products(XT, C, P):
        """``P[t, :] = C[t] . XT`` for every row of ``C`` (a multiple of the tiles'
        group size), by column tiles; ``P`` has the shape (len(C), XT.shape[1])."""
        H = height(XT)
        G = group_size(XT)
        for i in range(0, XT.shape[1], H):
            for g in range(C.shape[0] // G):
                products(XT, i, C, g, P)

    return seeding_products


seeding_products = _seeding_products_with(_COLUMN_KERNELS, _PRODUCTS)
_column_group = (_COLUMN_KERNELS[2] if _COLUMN_KERNELS is not None
                 else numba.njit(lambda XT: 1))  # the tiles' group size (1: not used)


@numba.njit(nogil=True, cache=True, fastmath=_FASTMATH)
def seeding_step_tiles(X, XT, x_sq, picks, closest, w, cum):
    """:func:`seeding_step` with the products by column tiles over ``XT``
    (:func:`seeding_operand`), one row of candidates' products after another,
    so that the potentials and the update are loops over rows the compiler
    vectorises. Same arithmetic otherwise: the products in the dtype of ``X``
    (multiply-adds in feature order), the rest in float64."""
    n, d = X.shape
    T = picks.shape[0]
    G = _column_group(XT)
    Tp = T + (-T) % G
    C = np.zeros((Tp, d), dtype=X.dtype)
    c_sq = np.zeros(T)
    for t in range(T):
        for f in range(d):
            v = X[picks[t], f]
            C[t, f] = v
            c_sq[t] += np.float64(v) * np.float64(v)
    P = np.empty((Tp, XT.shape[1]), dtype=X.dtype)
    seeding_products(XT, C, P)
    has_w = w.shape[0] > 0
    pots = np.zeros(T)
    for t in range(T):
        p = P[t]
        ct = c_sq[t]
        acc = 0.0
        if has_w:
            for i in range(n):
                v = x_sq[i] - 2.0 * np.float64(p[i]) + ct
                v = v if v > 0.0 else 0.0
                cl = closest[i]
                acc += np.float64(w[i]) * (v if v < cl else cl)
        else:
            for i in range(n):
                v = x_sq[i] - 2.0 * np.float64(p[i]) + ct
                v = v if v > 0.0 else 0.0
                cl = closest[i]
                acc += v if v < cl else cl
        pots[t] = acc
    best = 0
    for t in range(1, T):
        if pots[t] < pots[best]:
            best = t
    seeding_update(P[best : best + 1, :n].T, 0, x_sq, c_sq[best], closest, w, cum)
    return best, pots[best]


@numba.njit(nogil=True, cache=True)
def seeding_update(P, best, x_sq, c_sq, closest, w, cum):
    """``closest[i] = min(closest[i], max(x_sq[i] - 2 P[i, best] + c_sq, 0))`` and
    ``cum[i]`` the running sum of ``w * closest`` up to ``i``, added in order as
    :func:`numpy.cumsum` of ``closest * w`` does (no reassociation here, unlike
    :func:`seeding_step`; LLVM may fuse a weight's product with its addition)."""
    n = P.shape[0]
    has_w = w.shape[0] > 0
    acc = 0.0
    for i in range(n):
        v = x_sq[i] - 2.0 * np.float64(P[i, best]) + c_sq
        v = v if v > 0.0 else 0.0
        c = closest[i]
        v = v if v < c else c
        closest[i] = v
        acc += (np.float64(w[i]) if has_w else 1.0) * v
        cum[i] = acc


# --------------------------------------------------------------------------- #
# Screened float64: float32 products, exact decisions
# --------------------------------------------------------------------------- #
@numba.njit(nogil=True, cache=True, fastmath=_FASTMATH)
def shift_cast_rows(X, shift, out, norms):
    """``out[i] = float32(X[i] - shift)``; ``norms[i]`` its Euclidean norm (float64)."""
    n, d = X.shape
    for i in range(n):
        s = 0.0
        for f in range(d):
            v = np.float32(X[i, f] - shift[f])
            out[i, f] = v
            s += np.float64(v) * np.float64(v)
        norms[i] = np.sqrt(s)


@numba.njit(nogil=True, cache=True)
def top2_rows(D, c_sq, lo, hi, labels, best, second):
    """Row-major ``D`` (float32): smallest and second-smallest ``D[i, j] + c_sq[j]``."""
    n = D.shape[0]
    for i in range(n):
        b1 = D[i, lo] + c_sq[lo]
        b2 = np.float32(np.inf)
        a = lo
        for j in range(lo + 1, hi):
            v = D[i, j] + c_sq[j]
            if v < b1:
                b2 = b1
                b1 = v
                a = j
            elif v < b2:
                b2 = v
        labels[i] = a
        best[i] = b1
        second[i] = b2


@numba.njit(nogil=True, cache=True)
def top2_columns(Dt, c_sq, lo, hi, labels, best, second):
    """Transposed ``Dt`` (float32): as :func:`top2_rows`, vectorised over rows."""
    n = Dt.shape[1]
    c = c_sq[lo]
    for i in range(n):
        best[i] = Dt[lo, i] + c
        second[i] = np.float32(np.inf)
        labels[i] = lo
    for j in range(lo + 1, hi):
        c = c_sq[j]
        for i in range(n):
            v = Dt[j, i] + c
            b1 = best[i]
            lt = v < b1
            second[i] = min(second[i], max(b1, v))
            best[i] = v if lt else b1
            labels[i] = j if lt else labels[i]


@numba.njit(nogil=True, cache=True)
def refine_rows(X, centers, D, rowmajor, c_sq, lo, hi, norms, coef_x, coef_c, labels,
                 best, second):
    """Prove or redo the screened labels of a sub-block; returns the rows redone.

    The screened score of row ``i`` and centre ``j`` differs from the exact
    ``||c'_j||^2 - 2 x'_i.c'_j`` (shifted coordinates) by at most
    ``E_i = coef_x * norms[i] + coef_c``. When ``second - best > 2 E_i`` the
    screened label is the exact argmin. Otherwise every centre whose screened
    score is within ``2 E_i`` of the best is compared by its exact float64
    squared distance (first index on ties). Non-finite scores always go
    through the exact comparison.
    """
    n, d = X.shape
    redone = 0
    for i in range(n):
        e = coef_x * norms[i] + coef_c
        b1 = np.float64(best[i])
        if np.float64(second[i]) - b1 > 2.0 * e:
            continue
        redone += 1
        thr = b1 + 2.0 * e
        if not (thr < np.inf):
            thr = np.inf
        lab = lo
        bd = np.inf
        for j in range(lo, hi):
            v = np.float64(D[i, j]) if rowmajor else np.float64(D[j, i])
            v += np.float64(c_sq[j])
            if v > thr:
                continue
            acc = 0.0
            for f in range(d):
                t = X[i, f] - centers[j, f]
                acc += t * t
            if acc < bd:
                bd = acc
                lab = j
        labels[i] = lab
    return redone


@numba.njit(nogil=True, cache=True, fastmath=_FASTMATH)
def accumulate_exact(X, w, labels, centers, sums, counts, dist, ahead):
    """Add rows into ``sums[labels]``; ``dist[i] = ||X[i] - centers[labels[i]]||^2``.

    All in float64, directly from the differences (no cancellation). ``w`` of
    length 0 means unit weights. Returns the weighted sum of the distances.
    ``ahead`` as in :func:`accumulate_rows`.
    """
    n, d = X.shape
    has_w = w.shape[0] > 0
    n_ahead = min(n, ahead.shape[0])
    total = 0.0
    for i in range(n):
        if i < n_ahead:
            prefetch_row(ahead, i)
        a = labels[i]
        wi = np.float64(w[i]) if has_w else 1.0
        acc = 0.0
        for f in range(d):
            v = X[i, f]
            t = v - centers[a, f]
            acc += t * t
            sums[a, f] += wi * v
        dist[i] = acc
        counts[a] += wi
        total += wi * acc
    return total


@numba.njit(nogil=True, cache=True, fastmath=_FASTMATH)
def sq_dist_exact(X, labels, centers, out):
    """``out[i] = ||X[i] - centers[labels[i]]||^2`` in float64."""
    n, d = X.shape
    for i in range(n):
        a = labels[i]
        acc = 0.0
        for f in range(d):
            t = X[i, f] - centers[a, f]
            acc += t * t
        out[i] = acc


# --------------------------------------------------------------------------- #
# Whole blocks in one compiled call (BLAS through numba's np.dot)
# --------------------------------------------------------------------------- #
@numba.njit(nogil=True, cache=True)
def _block_products(Xs, cm2, rowmajor, buf):
    """``(-2 C) . x`` for every row of the sub-block ``Xs``, into ``buf``.

    ``cm2`` is ``(-2 C).T`` of shape (d, K) when ``rowmajor`` (result (m, K)),
    else ``-2 C`` of shape (K, d) (result (K, m)).
    """
    m = Xs.shape[0]
    if rowmajor:
        K = cm2.shape[1]
        D = buf[: m * K].reshape((m, K))
        np.dot(Xs, cm2, D)
    else:
        K = cm2.shape[0]
        D = buf[: m * K].reshape((K, m))
        np.dot(cm2, Xs.T, D)
    return D


@numba.njit(nogil=True)
def _fused_labels(n_centers, Xs, CT, c_sq, labels, best):
    """Labels and minima of the rows of ``Xs`` by the fused tiles of ``n_centers``
    (padded) centres (see :func:`daskmeans.kernels._llvm.fused_tile_kernels`)."""
    if n_centers == 16:
        fused_rows16(Xs, CT, c_sq, labels, best)
    elif n_centers == 32:
        fused_rows32(Xs, CT, c_sq, labels, best)
    elif n_centers == 48:
        fused_rows48(Xs, CT, c_sq, labels, best)
    else:
        fused_rows64(Xs, CT, c_sq, labels, best)


@numba.njit(nogil=True, cache=True)
def sweep_block(X, w, cm2, c_sq, bounds, step, rowmajor, vector, sums, counts, inertia,
                 far_m, far_dist, far_rows, far_lab, far_state, far_tau):
    """The sweep of :func:`daskmeans.kernels.lloyd_partial` over a whole block.

    Sub-blocks of ``step`` rows: distance products by BLAS (see
    :func:`_block_products`), then per group ``g`` (centres
    ``bounds[g]:bounds[g + 1]``) the argmin, the accumulation into ``sums``,
    ``counts`` and ``inertia[g]``, and, when ``far_m > 0``, the offer of the
    rows to the group's buffer of farthest rows (row ``g`` of the ``far_*``
    arrays, see :func:`far_push`). ``w`` of length 0 means unit weights.
    """
    n = X.shape[0]
    K = c_sq.shape[0]
    n_groups = bounds.shape[0] - 1
    has_w = w.shape[0] > 0
    buf = np.empty(step * K, dtype=X.dtype)
    lab = np.empty(step, dtype=np.intp)
    best = np.empty(step, dtype=X.dtype)
    for start in range(0, n, step):
        stop = min(start + step, n)
        m = stop - start
        Xs = X[start:stop]
        ws = w[start:stop] if has_w else w
        D = _block_products(Xs, cm2, rowmajor, buf)
        for g in range(n_groups):
            lo = bounds[g]
            hi = bounds[g + 1]
            if rowmajor:
                argmin_rows(D, c_sq, lo, hi, lab[:m], best[:m], X[:0], vector)
            else:
                argmin_columns(D, c_sq, lo, hi, lab[:m], best[:m], X[:0])
            ahead = X[stop : min(stop + step, n)] if g == 0 else X[:0]
            inertia[g] += accumulate_rows(Xs, ws, lab[:m], best[:m], sums, counts, ahead)
            if far_m > 0:
                far_push(best[:m], lab[:m], ws, start, far_m, far_dist[g], far_rows[g],
                         far_lab[g], far_state[g : g + 1], far_tau[g : g + 1])


@numba.njit(nogil=True, cache=True)
def nearest_block(X, cm2, c_sq, bounds, step, rowmajor, vector, labels, dist,
                  want_dist):
    """Labels (and, if ``want_dist``, squared distances) of a whole block.

    ``labels`` and ``dist`` have shape (n_groups, n); the arguments are those
    of :func:`sweep_block`.
    """
    n = X.shape[0]
    K = c_sq.shape[0]
    buf = np.empty(step * K, dtype=X.dtype)
    best = np.empty(step, dtype=X.dtype)
    for start in range(0, n, step):
        stop = min(start + step, n)
        m = stop - start
        Xs = X[start:stop]
        D = _block_products(Xs, cm2, rowmajor, buf)
        for g in range(bounds.shape[0] - 1):
            lab_g = labels[g, start:stop]
            ahead = X[stop : min(stop + step, n)] if g == 0 else X[:0]
            if rowmajor:
                argmin_rows(D, c_sq, bounds[g], bounds[g + 1], lab_g, best[:m], ahead,
                            vector)
            else:
                argmin_columns(D, c_sq, bounds[g], bounds[g + 1], lab_g, best[:m], ahead)
            if want_dist:
                sq_dist_rows(Xs, best[:m], dist[g, start:stop])


@numba.njit(nogil=True, cache=True)
def sweep_fused(X, w, CT, c_sq, step, sums, counts, inertia,
                 far_m, far_dist, far_rows, far_lab, far_state, far_tau, width, prefetch):
    """:func:`sweep_block` for one group, labelled by the fused tiles.

    ``CT`` and ``c_sq`` are padded to ``width`` centres (see
    :func:`daskmeans.kernels._llvm.fused_tile_kernels`); no distance matrix is formed, so BLAS is
    not needed. A function of its own, so that a sweep that does not use the
    tiles does not compile them, and the other way round.

    ``prefetch``: the accumulation of a sub-block hints the next one into the
    cache (see :func:`accumulate_rows`); the caller decides by the width of the
    rows (``KernelPlan.fused_prefetch_row_bytes``): the tiles read narrow rows in
    order, which the processor's own prefetch follows better.
    """
    n = X.shape[0]
    has_w = w.shape[0] > 0
    lab = np.empty(step, dtype=np.intp)
    best = np.empty(step, dtype=X.dtype)
    for start in range(0, n, step):
        stop = min(start + step, n)
        m = stop - start
        Xs = X[start:stop]
        ws = w[start:stop] if has_w else w
        _fused_labels(width, Xs, CT, c_sq, lab[:m], best[:m])
        ahead = X[stop : min(stop + step, n)] if prefetch else X[:0]
        inertia[0] += accumulate_rows(Xs, ws, lab[:m], best[:m], sums, counts, ahead)
        if far_m > 0:
            far_push(best[:m], lab[:m], ws, start, far_m, far_dist[0], far_rows[0],
                     far_lab[0], far_state[0:1], far_tau[0:1])


@numba.njit(nogil=True, cache=True)
def nearest_fused(X, CT, c_sq, step, labels, dist, want_dist, width):
    """:func:`nearest_block` for one group (``labels`` and ``dist`` of shape
    (1, n)), labelled by the fused tiles (see :func:`sweep_fused`)."""
    n = X.shape[0]
    best = np.empty(step, dtype=X.dtype)
    for start in range(0, n, step):
        stop = min(start + step, n)
        m = stop - start
        Xs = X[start:stop]
        _fused_labels(width, Xs, CT, c_sq, labels[0, start:stop], best[:m])
        if want_dist:
            sq_dist_rows(Xs, best[:m], dist[0, start:stop])


@numba.njit(nogil=True, cache=True)
def sweep_block_screened(X, w, centers, shift, cm2, c_sq, coef_x, coef_c, bounds, step,
                          rowmajor, sums, counts, inertia, far_m, far_dist, far_rows, far_lab,
                          far_state, far_tau):
    """:func:`sweep_block` for screened float64 (see :func:`refine_rows`).

    Per sub-block the rows are shifted by ``shift`` and cast to float32
    (:func:`shift_cast_rows`), the product with ``cm2`` (float32, ``-2`` times
    the shifted centres, laid out as in :func:`_block_products`) gives the
    screened scores with ``c_sq`` (float32), every label is proven or decided
    again in float64 against ``centers``, and sums, weights and distances are
    computed in float64 from the original rows (:func:`accumulate_exact`).
    Returns the number of rows decided again.
    """
    n, d = X.shape
    n_groups = bounds.shape[0] - 1
    has_w = w.shape[0] > 0
    xs, norms, buf, best, second = _screen_scratch(step, d, c_sq.shape[0])
    lab = np.empty(step, dtype=np.intp)
    dist = np.empty(step, dtype=np.float64)
    redone = 0
    for start in range(0, n, step):
        stop = min(start + step, n)
        m = stop - start
        Xs = X[start:stop]
        ws = w[start:stop] if has_w else w
        D = _screened_products(Xs, shift, cm2, rowmajor, xs, norms, buf)
        for g in range(n_groups):
            lo = bounds[g]
            hi = bounds[g + 1]
            redone += _screened_labels(Xs, centers, D, rowmajor, c_sq, lo, hi, norms[:m],
                                       coef_x, coef_c, lab[:m], best[:m], second[:m])
            ahead = X[stop : min(stop + step, n)] if g == 0 else X[:0]
            inertia[g] += accumulate_exact(Xs, ws, lab[:m], centers, sums, counts, dist[:m],
                                           ahead)
            if far_m > 0:
                far_push(dist[:m], lab[:m], ws, start, far_m, far_dist[g], far_rows[g],
                         far_lab[g], far_state[g : g + 1], far_tau[g : g + 1])
    return redone


@numba.njit(nogil=True, cache=True)
def nearest_block_screened(X, centers, shift, cm2, c_sq, coef_x, coef_c, bounds, step,
                            rowmajor, labels, dist, want_dist):
    """:func:`nearest_block` for screened float64; returns the rows decided again."""
    n, d = X.shape
    xs, norms, buf, best, second = _screen_scratch(step, d, c_sq.shape[0])
    redone = 0
    for start in range(0, n, step):
        stop = min(start + step, n)
        m = stop - start
        Xs = X[start:stop]
        D = _screened_products(Xs, shift, cm2, rowmajor, xs, norms, buf)
        for g in range(bounds.shape[0] - 1):
            lab_g = labels[g, start:stop]
            redone += _screened_labels(Xs, centers, D, rowmajor, c_sq, bounds[g], bounds[g + 1],
                                       norms[:m], coef_x, coef_c, lab_g, best[:m], second[:m])
            if want_dist:
                sq_dist_exact(Xs, lab_g, centers, dist[g, start:stop])
    return redone


@numba.njit(nogil=True, cache=True)
def _screen_scratch(step, d, K):
    """Scratch of the screened sweeps: shifted float32 rows, their norms, the
    product buffer, best and second-best scores."""
    return (np.empty((step, d), dtype=np.float32), np.empty(step, dtype=np.float64),
            np.empty(step * K, dtype=np.float32), np.empty(step, dtype=np.float32),
            np.empty(step, dtype=np.float32))


@numba.njit(nogil=True, cache=True)
def _screened_products(Xs, shift, cm2, rowmajor, xs, norms, buf):
    """Screened scores of a sub-block: rows shifted and cast to float32 (their
    norms into ``norms``), then their product with ``cm2`` (see
    :func:`_block_products`)."""
    m = Xs.shape[0]
    shift_cast_rows(Xs, shift, xs[:m], norms[:m])
    return _block_products(xs[:m], cm2, rowmajor, buf)


@numba.njit(nogil=True, cache=True)
def _screened_labels(Xs, centers, D, rowmajor, c_sq, lo, hi, norms, coef_x, coef_c, labels,
                     best, second):
    """Screened best and second-best scores, then proven or redone labels."""
    if rowmajor:
        top2_rows(D, c_sq, lo, hi, labels, best, second)
    else:
        top2_columns(D, c_sq, lo, hi, labels, best, second)
    return refine_rows(Xs, centers, D, rowmajor, c_sq, lo, hi, norms, coef_x, coef_c, labels,
                       best, second)


# every cached loop above saves and loads under a lock shared by all processes
_numba_cache.guard_namespace(globals())
