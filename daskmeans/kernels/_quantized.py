"""Column tiles screened in int16 for float32 rows (numba loops, ``nogil``).

The column tiles (:func:`daskmeans.kernels._llvm.column_tile_kernels`) spend
nearly all of a sweep on ``d`` multiply-adds per row and centre. Here the rows
of a sub-block and the centres are rounded to int16 and the products of pairs
of features are summed exactly in int32
(:func:`daskmeans.kernels._llvm.column_int_tile_kernel`, ``vpmaddwd`` on x86:
twice the multiply-adds of a float32 FMA per instruction). Every row gets its
best and second-best int16 score, and a rigorous bound on how far these can be
from the scores the float32 tiles compute (:func:`screen_rows`); when the gap
between them exceeds twice the bound the label is the float32 tiles' label,
and the rows left (near ties, rows with NaN or infinity, sub-blocks whose
float32 scores could overflow) are labelled again by the float32 tiles
themselves. Labels are therefore those of
:func:`daskmeans.kernels._numba_loops.sweep_columns`, and so are sums and
counts, bitwise; the squared distances are taken from the differences to the
centres (:func:`daskmeans.kernels._numba_loops.accumulate_centred`), as for
screened float64.

Scales. A sub-block's rows are multiplied by ``inv = Q / max |x|`` (over its
finite rows) and rounded, the centres by ``inv_c = Q / max |c|``. ``Q``
(:func:`levels`) keeps every sum of products and every scaled squared norm
below ``2**29``, so that no score leaves int32. The score of a row and centre
``j`` is ``n_sq[j] + sum_f q(x)_f (-q(c_j))_f`` with ``n_sq[j] = rint(c_sq[j]
inv inv_c / 2)``: the float32 score ``c_sq[j] - 2 x.c_j`` times ``inv inv_c /
2``, up to ``e0 + e1 l1``, ``l1`` the row's sum of quantized magnitudes (the
rounding of the values, ``0.5`` each, of the norms, and the float32 tiles' own
rounding and subnormal products; see :func:`screen_rows`).
"""

from __future__ import annotations

import math

import numba
import numpy as np

from . import _llvm, _numba_cache
from ._numba_loops import (
    COLUMN_TILES,
    _column_scratch,
    accumulate_centred,
    column_rows,
    column_rows_gathered,
    column_scratch_width,
    far_push,
    sq_dist_exact,
    transpose_rows,
)

__all__ = ["INT_TILES", "centre_operands", "levels", "nearest_quantized", "sweep_quantized"]

_INT_TILE = _llvm.column_int_tile_kernel() if COLUMN_TILES else None
#: True when the int16 column tiles can be built (see :mod:`daskmeans.kernels._plan`).
INT_TILES = _INT_TILE is not None

#: Every sum of products and scaled squared norm stays below ``2**_SUM_BITS``.
_SUM_BITS = 29
#: A padded centre's scaled norm: no score reaches it (and it is the tile's own start).
_TOP = 2**31 - 1
#: Share of the rows screened so far that may be labelled again by the float32
#: tiles before a sweep leaves the int16 tiles (data whose rows are near ties
#: everywhere: screening them costs more than it saves); measured over at least
#: :data:`_MIN_TALLY` rows.
_MAX_REDO = 0.15
_MIN_TALLY = 4096
#: Unit roundoff of float32.
_U32 = 2.0**-24
#: Bound on the float32 tiles' scores below which none overflows (float32's
#: largest value is about 3.4e38).
_FLOAT32_SAFE = 1e38
#: Row vectors and centres of a column tile (see :func:`daskmeans.kernels._llvm.column_tile_shape`).
_TILE_LINES, _GROUP = _llvm.column_tile_shape() if COLUMN_TILES else (1, 1)


@numba.njit(nogil=True, cache=True)
def levels(n_features):
    """The largest magnitude ``Q`` of a quantized value for ``n_features``
    features: the largest with ``2 p Q**2 <= 2**29`` for ``p`` pairs of
    features, and at most ``2**14``."""
    limit = 2**_SUM_BITS // (2 * max(1, (n_features + 1) // 2))
    q = min(2**14, int(np.sqrt(np.float64(limit))))
    while q * q > limit:
        q -= 1
    while q < 2**14 and (q + 1) * (q + 1) <= limit:
        q += 1
    return q


def centre_operands(centers: np.ndarray, group: int):
    """The centres' operands of the int16 tiles.

    Returns ``(Cq, inv_c, l1_c)``: ``Cq`` (K padded to whole groups, pairs)
    int32, each two int16 ``-rint(c inv_c)`` (zero rows as padding);
    ``inv_c = Q / max |c|`` (float64); ``l1_c`` the largest sum of the
    quantized magnitudes of a centre. None when a centre is not finite.
    """
    K, d = centers.shape
    c64 = centers.astype(np.float64)
    top = float(np.abs(c64).max()) if c64.size else 0.0
    if not math.isfinite(top):
        return None
    Q = levels(d)
    inv_c = Q / top if top > 0 else 1.0
    q = np.rint(c64 * inv_c)
    pairs = (d + 1) // 2
    Kp = K + (-K) % group
    halves = np.zeros((Kp, 2 * pairs), dtype=np.int16)
    halves[:K, :d] = -q
    l1_c = float(np.abs(q).sum(axis=1).max()) if K else 0.0
    return halves.view(np.int32), inv_c, l1_c


@numba.njit(nogil=True, cache=True)
def _largest_bits(flat):
    """``(finite, largest)``: whether every value of ``flat`` (float32) is
    finite, and the largest magnitude. Two integer maxima over the bits, which
    vectorise where a float maximum does not: as int32 the largest non-negative
    value, as uint32 the largest negative one (its sign bit set)."""
    b = flat.view(np.int32)
    u = flat.view(np.uint32)
    imax = np.int32(0)
    umax = np.uint32(0)
    for i in range(flat.shape[0]):
        v = b[i]
        imax = v if v > imax else imax
        w = u[i]
        umax = w if w > umax else umax
    return _bits_top(imax, umax)


@numba.njit(nogil=True, cache=True)
def _finite_rows(Xs, flags):
    """``flags[r]`` -1 for the rows of ``Xs`` holding NaN or infinity, else 0;
    returns the largest magnitude of the other rows."""
    m, d = Xs.shape
    top = np.float32(0)
    for r in range(m):
        ok, v = _largest_bits(Xs[r])
        flags[r] = 0 if ok else -1
        if ok and v > top:
            top = v
    return top


@numba.njit(nogil=True, cache=True)
def _bits_top(imax, umax):
    """``(finite, largest magnitude)`` from the maxima of float32 bits taken as
    int32 and as uint32 (see :func:`_largest_bits`)."""
    neg = np.int64(umax) - 2**31 if umax >= np.uint32(2**31) else np.int64(0)
    top = max(np.int64(imax), neg)
    word = np.empty(1, dtype=np.int32)
    word[0] = np.int32(min(top, np.int64(0x7F800000)))
    return top < 0x7F800000, word.view(np.float32)[0]


@numba.njit(nogil=True, cache=True)
def _quantize_guessed(Xs, inv, Q, XQ):
    """One pass: ``XQ = rint(Xs * inv)`` clipped to ``[-Q, Q]`` (NaN to ``-Q``),
    ``Xs`` and ``XQ[:m]`` of the same width; returns ``(finite, largest
    magnitude)`` of ``Xs``."""
    m, d = Xs.shape
    flat = Xs.reshape(m * d)
    b = flat.view(np.int32)
    u = flat.view(np.uint32)
    out = XQ[:m].reshape(m * d)
    lo = np.float32(-Q)
    hi = np.float32(Q)
    imax = np.int32(0)
    umax = np.uint32(0)
    for i in range(m * d):
        v = b[i]
        imax = v if v > imax else imax
        w = u[i]
        umax = w if w > umax else umax
        c = flat[i] * inv
        c = c if c > lo else lo
        c = c if c < hi else hi
        out[i] = np.int16(np.int32(np.rint(c)))
    return _bits_top(imax, umax)


@numba.njit(nogil=True, cache=True)
def quantize_rows(Xs, Q, XQ, flags, hint):
    """Round the rows of ``Xs`` (float32, C-contiguous) to int16: ``XQ[r, f] =
    rint(Xs[r, f] * inv)`` with ``inv = Q / top``, zeros for the padding
    features of ``XQ`` and for the rows holding NaN or infinity, whose
    ``flags`` are -1 (the others' 0).

    ``top`` is ``hint`` (the largest magnitude of the sub-blocks before, 0.0 for
    none) when no value of ``Xs`` is larger, which one pass finds out while it
    rounds (rows as wide as ``XQ``); else the largest magnitude of the finite
    rows, found first. Returns ``(inv, largest magnitude of the finite rows)``,
    ``inv`` 0.0 when no such scale fits float32.
    """
    m, d = Xs.shape
    width = XQ.shape[1]
    if hint > 0 and d == width:
        inv = np.float32(Q / np.float64(hint))
        if inv > 0 and np.float64(hint) * np.float64(inv) <= Q + 0.25:
            ok, top = _quantize_guessed(Xs, inv, Q, XQ)
            if ok and top <= hint:
                for r in range(m):
                    flags[r] = 0
                return inv, top
    ok, top = _largest_bits(Xs.reshape(m * d))
    if ok:
        for r in range(m):
            flags[r] = 0
    else:
        top = _finite_rows(Xs, flags)
    if top == 0:
        inv = np.float32(1.0)
    else:
        inv = np.float32(Q / np.float64(top))
        # every scaled value must round to at most Q (inv is rounded too)
        if not (np.float64(top) * np.float64(inv) <= Q + 0.25) or inv == 0:
            return np.float32(0.0), top
    for r in range(m):
        if flags[r] < 0:
            for f in range(width):
                XQ[r, f] = 0
            continue
        for f in range(d):
            XQ[r, f] = np.int16(np.int32(np.rint(Xs[r, f] * inv)))
        for f in range(d, width):
            XQ[r, f] = 0
    return inv, top


@numba.njit(nogil=True, cache=True)
def _row_l1(XQ, r, d):
    """The sum of the magnitudes of row ``r`` of ``XQ`` (its first ``d`` values)."""
    s = 0
    for f in range(d):
        s += abs(np.int64(XQ[r, f]))
    return s


@numba.njit(nogil=True, cache=True)
def _scaled_norms(c_sq, scale, n_real, out):
    """``out[j] = rint(c_sq[j] * scale)`` for the real centres, ``_TOP`` for the
    padding; returns the largest, or -1.0 when one is not below ``2**29``."""
    top = 0.0
    for j in range(out.shape[0]):
        if j >= n_real:
            out[j] = _TOP
            continue
        v = np.rint(np.float64(c_sq[j]) * scale)
        if not (v < 2.0**_SUM_BITS) or v < 0:
            return -1.0
        out[j] = np.int32(v)
        top = max(top, v)
    return top


@numba.njit(nogil=True, cache=True)
def screen_rows(Xs, Cq, c_sq, n_real, inv_c, l1_c, Q, chunk, XQ, XTq, n_sq, flags, runv, runi,
                run2, labels, redo, hint):
    """Int16 labels of the rows of ``Xs`` by the centres ``Cq`` (see
    :func:`centre_operands`); ``c_sq`` (float32) the squared norms the float32
    tiles use. ``labels`` gets every row's label and ``redo`` the rows whose
    label is not proven (near ties, rows not finite); returns how many. All
    rows are in ``redo`` when the sub-block's scale does not fit. ``hint``
    (1,) float32 holds the largest magnitude of the rows of the sub-blocks
    before (0.0 at first), the scale tried first (:func:`quantize_rows`), and
    is updated.
    """
    m, d = Xs.shape
    inv, top_x = quantize_rows(Xs, Q, XQ, flags, hint[0])
    hint[0] = max(hint[0], top_x)
    scale = np.float64(inv) * inv_c * 0.5
    top = _scaled_norms(c_sq, scale, n_real, n_sq) if inv > 0 else -1.0
    # the float32 tiles' scores must not overflow: |score| <= |c|^2 + 2 d max|x| max|c|
    if top >= 0 and not (top / scale + 2.0 * d * (Q / np.float64(inv)) * (Q / inv_c)
                         < _FLOAT32_SAFE):
        top = -1.0
    if top < 0:
        for r in range(m):
            redo[r] = r
        return m
    pairs = XTq.shape[0]
    transpose_rows(XQ[:m].view(np.int32), XTq)
    T = 16 * _TILE_LINES
    mp = m + (-m) % T
    for p in range(pairs):
        for r in range(m, mp):
            XTq[p, r] = 0
    n_groups = Cq.shape[0] // _GROUP
    for g0 in range(0, n_groups, chunk):
        g1 = min(g0 + chunk, n_groups)
        for i in range(0, mp, T):
            _INT_TILE(XTq, i, Cq, n_sq, g0, g1, runv, runi, run2)
    # |int16 score - scaled float32 score| <= e0 + e1 * l1 for every centre, l1
    # the row's sum of quantized magnitudes (see the module): the label is proven
    # when the gap is above twice that, tested first with l1 at most d Q
    eps = 0.5 + Q * 2.0**-22  # rounding of a scaled value, and of the scaling
    gam = (d + 2) * _U32 / (1.0 - (d + 2) * _U32)  # float32 tiles' rounding
    qc = Q * (1.0 + 2.0**-20)  # max |c| inv_c
    e1 = eps + gam * qc
    e0 = 1.0 + eps * l1_c + eps * eps * 2 * pairs + gam * (qc * d * eps + top)
    # and the float32 tiles' products may be subnormal: 2**-149 at most each, scaled
    e0 += (d + 2) * 2.0**-148 * scale
    if not (e0 < 2.0**30):  # scores this uncertain prove nothing (subnormal products)
        for r in range(m):
            redo[r] = r
        return m
    loose = np.int64(2.0 * (e0 + e1 * d * Q))  # below 2**62
    for r in range(m):  # vectorised: the labels, and which rows to look at again
        labels[r] = runi[r]
        near = np.int64(run2[r]) - np.int64(runv[r]) <= loose
        flags[r] = -1 if flags[r] < 0 else (1 if near else 0)
    n_redo = 0
    for r in range(m):
        if flags[r] != 0:
            gap = np.float64(run2[r]) - np.float64(runv[r])
            if flags[r] < 0 or gap <= 2.0 * (e0 + e1 * _row_l1(XQ, r, d)):
                redo[n_redo] = r
                n_redo += 1
    return n_redo


@numba.njit(nogil=True, cache=True)
def _quantized_scratch(step, d, K):
    """The int16 scratch of a sub-block of ``step`` rows, ``d`` features and
    ``K`` (padded) centres: ``(XQ, XTq, n_sq, flags, runv, runi, run2, redo,
    hint)`` (see :func:`screen_rows`)."""
    pairs = (d + 1) // 2
    S = column_scratch_width(step, 16, _TILE_LINES)
    return (np.empty((step, 2 * pairs), dtype=np.int16), np.empty((pairs, S), dtype=np.int32),
            np.empty(K, dtype=np.int32), np.empty(step, dtype=np.int32),
            np.empty(S, dtype=np.int32), np.empty(S, dtype=np.int32),
            np.empty(S, dtype=np.int32), np.empty(step, dtype=np.intp),
            np.zeros(1, dtype=np.float32))


@numba.njit(nogil=True, cache=True)
def _label_rows(Xs, C, c_sq, Cq, n_real, inv_c, l1_c, Q, chunk, qchunk, scratch, float_scratch,
                tally, labels):
    """Labels of the sub-block ``Xs``: int16 tiles, then the float32 tiles for
    the rows not proven; returns how many those were. ``tally`` (rows screened,
    rows labelled again) over the sweep so far: once more than
    :data:`_MAX_REDO` of them had to be labelled again (rows near ties
    everywhere), the float32 tiles label the rest of the sweep directly."""
    XT, fv, fi, best, lab = float_scratch
    if tally[0] >= _MIN_TALLY and tally[1] > _MAX_REDO * tally[0]:
        column_rows(Xs, C, c_sq, chunk, XT, fv, fi, labels, best[: Xs.shape[0]])
        return 0
    XQ, XTq, n_sq, flags, runv, runi, run2, redo, hint = scratch
    k = screen_rows(Xs, Cq, c_sq, n_real, inv_c, l1_c, Q, qchunk, XQ, XTq, n_sq, flags, runv,
                    runi, run2, labels, redo, hint)
    if k > 0:
        column_rows_gathered(Xs, redo[:k], C, c_sq, chunk, XT, fv, fi, fv[:0], lab[:k],
                             best[:k], best[:0])
        for r in range(k):
            labels[redo[r]] = lab[r]
    tally[0] += Xs.shape[0]
    tally[1] += k
    return k


@numba.njit(nogil=True, cache=True)
def _sweep_setup(X, c_sq, Cq, step):
    """``(n_real, Q, scratch, float_scratch, tally)`` of a sweep: the real
    centres (the padding has infinite norms), the levels, the int16 tiles'
    scratch, the float32 tiles' and the tally of :func:`_label_rows`."""
    d = X.shape[1]
    n_real = c_sq.shape[0]
    while n_real > 0 and not (c_sq[n_real - 1] < np.inf):
        n_real -= 1
    XT, runv, runi = _column_scratch(step, d, X)
    float_scratch = (XT, runv, runi, np.empty(step, dtype=X.dtype),
                     np.empty(step, dtype=np.intp))
    tally = np.zeros(2, dtype=np.int64)
    return n_real, levels(d), _quantized_scratch(step, d, Cq.shape[0]), float_scratch, tally


@numba.njit(nogil=True, cache=True)
def sweep_quantized(X, w, C, c_sq, centers, Cq, inv_c, l1_c, lo, g, step, chunk, qchunk, sums,
                    counts, inertia, far_m, far_dist, far_rows, far_lab, far_state, far_tau):
    """:func:`daskmeans.kernels._numba_loops.sweep_columns` (same arguments,
    plus ``centers``, all of them, and the int16 operands ``Cq``, ``inv_c``,
    ``l1_c`` of the group's, see :func:`centre_operands`) with the rows
    labelled by the int16 tiles: the same labels, sums and counts, bitwise; the
    squared distances from the differences to the centres
    (:func:`daskmeans.kernels._numba_loops.accumulate_centred`). Returns the
    rows labelled again by the float32 tiles."""
    n = X.shape[0]
    has_w = w.shape[0] > 0
    n_real, Q, scratch, float_scratch, tally = _sweep_setup(X, c_sq, Cq, step)
    lab = np.empty(step, dtype=np.intp)
    dist = np.empty(step, dtype=X.dtype)
    redone = 0
    for start in range(0, n, step):
        stop = min(start + step, n)
        m = stop - start
        Xs = X[start:stop]
        ws = w[start:stop] if has_w else w
        redone += _label_rows(Xs, C, c_sq, Cq, n_real, inv_c, l1_c, Q, chunk, qchunk, scratch,
                              float_scratch, tally, lab[:m])
        for r in range(m):
            lab[r] += lo
        ahead = X[stop : min(stop + step, n)]
        inertia[g] += accumulate_centred(Xs, ws, lab[:m], centers, sums, counts, dist[:m], ahead)
        if far_m > 0:
            far_push(dist[:m], lab[:m], ws, start, far_m, far_dist[g], far_rows[g],
                     far_lab[g], far_state[g : g + 1], far_tau[g : g + 1])
    return redone


@numba.njit(nogil=True, cache=True)
def nearest_quantized(X, C, c_sq, centers, Cq, inv_c, l1_c, lo, g, step, chunk, qchunk, labels,
                      dist, want_dist):
    """:func:`daskmeans.kernels._numba_loops.nearest_columns` with the rows
    labelled by the int16 tiles (see :func:`sweep_quantized`); the squared
    distances from the differences. Returns the rows labelled again."""
    n = X.shape[0]
    n_real, Q, scratch, float_scratch, tally = _sweep_setup(X, c_sq, Cq, step)
    redone = 0
    for start in range(0, n, step):
        stop = min(start + step, n)
        lab = labels[g, start:stop]
        redone += _label_rows(X[start:stop], C, c_sq, Cq, n_real, inv_c, l1_c, Q, chunk, qchunk,
                              scratch, float_scratch, tally, lab)
        for r in range(stop - start):
            lab[r] += lo
        if want_dist:
            sq_dist_exact(X[start:stop], lab, centers, dist[g, start:stop])
    return redone


_numba_cache.guard_namespace(globals())
