"""Per-block kernels of pruned (exact) Lloyd: Hamerly's bounds with rounding margins.

Every row keeps two numbers across iterations: its label ``a`` and a lower
bound ``l`` on its distance to every *other* centre. When the centres move by
``delta_j``, the triangle inequality keeps ``l - max_{j != a} delta_j`` a
valid lower bound, and the exact distance ``u`` to the row's own (moved)
centre costs ``d`` operations. If ``l`` is far enough above ``u``, no other
centre can be nearer and the row keeps its label without its ``k``
distances being computed (Hamerly, 2010, with the upper bound tightened on
every visit, so that it need not be stored). The other rows are compared with
all centres by BLAS, which also gives them a fresh lower bound (their
second-nearest centre).

*Same labels as plain Lloyd.* Plain Lloyd labels a row by the argmin of
``||c||^2 - 2 x.c`` computed in the data's dtype, whose rounding error is at
most ``E(x) = g (2 ||x|| R + R^2)`` (``R`` the largest centre norm, ``g`` a
few units of ``(d + 3)`` roundings, see :func:`error_coefs`). A row is kept
only when ``l^2 - u^2 > 2 E(x)``, and a recomputed row takes its best centre
only when its two best scores differ by more than ``4 E(x)``: in both cases
no rounding of plain Lloyd's products can choose another centre. The few
rows closer than that to a tie (ties proper: duplicate centres, symmetric
data) are labelled by :func:`daskmeans.kernels.nearest`, plain Lloyd's own
labelling code. Sums and counts are then added up by the same loop, in the
same row order, as plain Lloyd's sweep, so equal labels give bitwise equal
sums and centres.

The bounds are kept in float32 rounded down (4 bytes a row) and the labels in
int32 (4 bytes): 8 bytes of state per row. The compiled loops (numba,
``nogil``) are used when numba is available; :func:`pruned_block_numpy` is
the NumPy reference with the same results.
"""

from __future__ import annotations

import numpy as np

from . import _numba_loops as _nl
from ._api import accumulate, nearest, row_block_size, sq_norms

__all__ = [
    "BYTES_PER_ROW",
    "drift",
    "error_coefs",
    "pruned_block",
    "pruned_block_numpy",
]

#: Bytes of state per row between iterations: int32 label, float32 lower bound.
BYTES_PER_ROW = 8
#: Factor on the rounding-error bound (second-order terms, the float64 sums).
_SAFETY = 1.5
#: A float64 value times this, rounded to float32, is below the value (for x > 0).
_DOWN = 1.0 - 2.0**-21
#: Target bytes of the distance block of the recomputed rows.
_RECOMPUTE_BYTES = 1 << 22

_USE_NUMBA = _nl.AVAILABLE


def error_coefs(centers: np.ndarray, dtype) -> tuple[float, float]:
    """``(ex, ec)`` with ``E(x) = ex ||x|| + ec`` bounding the rounding error.

    ``E(x)`` bounds ``|fl(||c||^2 - 2 x.c) - (||c||^2 - 2 x.c)|`` for every
    centre ``c``, whatever the order of the products' sums: the dot product
    of ``d`` terms errs by at most ``gamma_d ||x|| ||c||`` (Cauchy-Schwarz),
    the squared norm by ``gamma_d ||c||^2``, the final addition by one more
    rounding of their sum (``gamma_n = n u / (1 - n u)``, ``u`` the unit
    roundoff of ``dtype``).
    """
    d = centers.shape[1]
    u = float(np.finfo(dtype).eps) / 2
    c64 = centers.astype(np.float64)
    R = float(np.sqrt((c64 * c64).sum(axis=1).max())) if len(c64) else 0.0
    g = _SAFETY * (d + 3) * u / (1 - (d + 3) * u)
    tiny = float(np.finfo(dtype).tiny) * (d + 3)  # underflow of the products
    return 2.0 * g * R, g * R * R + tiny


def drift(old: np.ndarray, new: np.ndarray) -> tuple[float, int, float]:
    """How far the centres moved: ``(largest, its index, second largest)``.

    The distances are computed in float64 and rounded up, so that
    ``lower - largest`` (or ``- second`` for the row whose own centre moved
    most) stays a valid lower bound.
    """
    delta = np.sqrt(((new.astype(np.float64) - old.astype(np.float64)) ** 2).sum(axis=1))
    delta = delta * (1 + 1e-12) + 1e-300
    if len(delta) == 1:
        return float(delta[0]), 0, 0.0
    order = np.argpartition(-delta, 1)[:2]
    i1 = int(order[0]) if delta[order[0]] >= delta[order[1]] else int(order[1])
    i2 = int(order[1]) if i1 == int(order[0]) else int(order[0])
    return float(delta[i1]), i1, float(delta[i2])


# --------------------------------------------------------------------------- #
# loops (compiled when numba is there)
# --------------------------------------------------------------------------- #
def _screen_rows(X, centers, labels, lower, m1, a1, m2, ex, ec, has_state, todo, best,
                 new_lower):
    """Keep the rows whose bounds prove their label; list the others in ``todo``.

    For a kept row, ``best`` gets ``||x - c_a||^2 - ||x||^2`` and ``new_lower``
    the moved bound. Returns the number of rows put in ``todo``.
    """
    n, d = X.shape
    n_todo = 0
    for i in range(n):
        keep = False
        if has_state:
            a = labels[i]
            lo = np.float64(lower[i]) - (m2 if a == a1 else m1)
            if lo > 0.0:
                xs = 0.0
                da = 0.0
                for f in range(d):
                    v = np.float64(X[i, f])
                    xs += v * v
                    t = v - np.float64(centers[a, f])
                    da += t * t
                err = ex * np.sqrt(xs) + ec
                if lo * lo - da > 2.0 * err * (1.0 + 1e-9):
                    keep = True
                    best[i] = da - xs
                    new_lower[i] = lo * _DOWN
        if not keep:
            todo[n_todo] = i
            n_todo += 1
    return n_todo


def _settle_rows(Xs, D, c_sq, centers, ex, ec, labels, new_lower, best, near):
    """Label recomputed rows from their products ``D = Xs @ (-2 C).T`` (m, K).

    A row takes its best centre when the runner-up scores more than
    ``4 E(x)`` higher, with the runner-up's distance (less ``E(x)``) as its
    lower bound; otherwise ``near[i] = 1`` and its bound is the best
    distance less ``E(x)`` (valid for every centre). ``best`` gets the exact
    ``||x - c||^2 - ||x||^2`` of the chosen centre (of the best one for near rows).
    Returns the number of near rows.
    """
    m, K = D.shape
    d = Xs.shape[1]
    n_near = 0
    for i in range(m):
        b1 = np.inf
        b2 = np.inf
        j1 = 0
        for j in range(K):
            s = np.float64(D[i, j]) + np.float64(c_sq[j])
            if s < b1:
                b2 = b1
                b1 = s
                j1 = j
            elif s < b2:
                b2 = s
        xs = 0.0
        da = 0.0
        for f in range(d):
            v = np.float64(Xs[i, f])
            xs += v * v
            t = v - np.float64(centers[j1, f])
            da += t * t
        err = ex * np.sqrt(xs) + ec
        labels[i] = j1
        best[i] = da - xs
        if b2 - b1 > 4.0 * err * (1.0 + 1e-9):
            near[i] = 0
            lo = b2 + xs - err
        else:
            near[i] = 1
            n_near += 1
            lo = b1 + xs - err
        new_lower[i] = np.sqrt(lo) * _DOWN if lo > 0.0 else 0.0
    return n_near


def _own_dist(X, centers, labels, best):
    """``best[i] = ||x_i - c_{labels[i]}||^2 - ||x_i||^2`` in float64."""
    n, d = X.shape
    for i in range(n):
        a = labels[i]
        xs = 0.0
        da = 0.0
        for f in range(d):
            v = np.float64(X[i, f])
            xs += v * v
            t = v - np.float64(centers[a, f])
            da += t * t
        best[i] = da - xs


if _USE_NUMBA:  # pragma: no branch
    import numba

    _screen_rows_nb = numba.njit(nogil=True, cache=True)(_screen_rows)
    _settle_rows_nb = numba.njit(nogil=True, cache=True)(_settle_rows)
    _own_dist_nb = numba.njit(nogil=True, cache=True)(_own_dist)


# --------------------------------------------------------------------------- #
# one block
# --------------------------------------------------------------------------- #
def pruned_block(
    X: np.ndarray,
    weights: np.ndarray | None,
    centers: np.ndarray,
    state: tuple[np.ndarray, np.ndarray] | None,
    moved: tuple[float, int, float] | None,
    *,
    coefs: tuple[float, float] | None = None,
    cm2t: np.ndarray | None = None,
    c_sq: np.ndarray | None = None,
) -> tuple[dict, tuple[np.ndarray, np.ndarray]]:
    """One pruned Lloyd sweep of a block.

    Parameters
    ----------
    X : ndarray of shape (n, d), float32 or float64
    weights : ndarray of shape (n,) or None
    centers : ndarray of shape (k, d), dtype of ``X``
        The centres of this pass.
    state : (labels, lower) or None
        The block's labels (int32) and lower bounds (float32) against the
        previous pass's centres; None computes every distance.
    moved : (largest, index, second largest) or None
        :func:`drift` from the previous pass's centres to ``centers``.
    coefs, cm2t, c_sq : optional
        :func:`error_coefs`, ``(-2 C).T`` (contiguous) and ``sq_norms(C)``,
        computed once per pass by the caller.

    Returns
    -------
    partial : dict
        ``sums``, ``counts``, ``inertia`` as :func:`daskmeans.kernels.lloyd_partial`
        for one group, and ``n_pruned``, the rows whose distances were skipped.
    state : (labels, lower)
        For the next pass.
    """
    if not _USE_NUMBA or X.dtype not in (np.float32, np.float64) or X.shape[0] == 0:
        return pruned_block_numpy(X, weights, centers, state, moved, coefs=coefs)
    n, d = X.shape
    k = centers.shape[0]
    coefs = error_coefs(centers, X.dtype) if coefs is None else coefs
    ex, ec = coefs
    cm2t = np.ascontiguousarray((centers * centers.dtype.type(-2)).T) if cm2t is None else cm2t
    c_sq = sq_norms(centers) if c_sq is None else c_sq
    labels = np.empty(n, dtype=np.intp)
    lower = np.empty(n, dtype=np.float32)
    best = np.empty(n, dtype=np.float64)
    todo = np.empty(n, dtype=np.intp)
    has_state = state is not None
    if has_state:
        labels[:] = state[0]
        old_lower = state[1]
        m1, a1, m2 = moved
    else:
        old_lower = lower
        m1, a1, m2 = 0.0, 0, 0.0
    n_todo = _screen_rows_nb(X, centers, labels, old_lower, m1, a1, m2, ex, ec, has_state,
                             todo, best, lower)
    if n_todo:
        _recompute(X, todo[:n_todo], centers, cm2t, c_sq, ex, ec, labels, lower, best)
    sums = np.zeros((k, d), dtype=np.float64)
    counts = np.zeros(k, dtype=np.float64)
    w = np.empty(0, dtype=np.float64) if weights is None else weights
    # plain Lloyd's own accumulation loop, in row order: same labels, same sums
    best_x = best.astype(X.dtype)
    inertia = _nl.accumulate_rows(X, w, labels, best_x, sums, counts, X[:0])
    out = {"sums": sums, "counts": counts, "inertia": np.array([inertia]),
           "n_pruned": n - n_todo}
    return out, (labels.astype(np.int32), lower)


def _recompute(X, rows, centers, cm2t, c_sq, ex, ec, labels, lower, best):
    """Compare ``X[rows]`` with every centre (BLAS products in sub-blocks)."""
    k = centers.shape[0]
    Xg = X[rows]
    m = Xg.shape[0]
    step = max(32, min(1024, _RECOMPUTE_BYTES // max(1, k * X.itemsize)))
    lab = np.empty(m, dtype=np.intp)
    low = np.empty(m, dtype=np.float32)
    bst = np.empty(m, dtype=np.float64)
    near = np.empty(m, dtype=np.uint8)
    buf = np.empty(min(step, m) * k, dtype=X.dtype)
    n_near = 0
    for start in range(0, m, step):
        stop = min(start + step, m)
        Xs = Xg[start:stop]
        D = buf[: (stop - start) * k].reshape(stop - start, k)
        np.matmul(Xs, cm2t, out=D)
        n_near += _settle_rows_nb(Xs, D, c_sq, centers, ex, ec, lab[start:stop],
                                  low[start:stop], bst[start:stop], near[start:stop])
    if n_near:
        idx = np.flatnonzero(near)
        lab_near, _ = nearest(np.ascontiguousarray(Xg[idx]), centers)
        lab[idx] = lab_near[0]
        tmp = np.empty(len(idx), dtype=np.float64)
        _own_dist_nb(Xg[idx], centers, lab[idx], tmp)
        bst[idx] = tmp
    labels[rows] = lab
    lower[rows] = low
    best[rows] = bst


def pruned_block_numpy(X, weights, centers, state, moved, *, coefs=None):
    """NumPy reference of :func:`pruned_block` (same labels, bounds and counts).

    Sums are added up by sub-blocks as the NumPy path of
    :func:`daskmeans.kernels.lloyd_partial` does.
    """
    n, d = X.shape
    k = centers.shape[0]
    ex, ec = error_coefs(centers, X.dtype) if coefs is None else coefs
    X64 = X.astype(np.float64)
    xs = (X64 * X64).sum(axis=1)
    err = ex * np.sqrt(xs) + ec
    labels = np.zeros(n, dtype=np.intp)
    lower = np.zeros(n, dtype=np.float32)
    todo = np.ones(n, dtype=bool)
    if state is not None and n:
        labels[:] = state[0]
        m1, a1, m2 = moved
        lo = state[1].astype(np.float64) - np.where(labels == a1, m2, m1)
        diff = X64 - centers[labels].astype(np.float64)
        da = (diff * diff).sum(axis=1)
        keep = (lo > 0) & (lo * lo - da > 2.0 * err * (1.0 + 1e-9))
        lower[keep] = (lo[keep] * _DOWN).astype(np.float32)
        todo = ~keep
    rows = np.flatnonzero(todo)
    if len(rows):
        c_sq = sq_norms(centers)
        cm2 = centers * centers.dtype.type(-2)
        Xg = X[rows]
        D = (Xg @ cm2.T).astype(np.float64) + c_sq.astype(np.float64)
        if k > 1:
            part = np.argpartition(D, 1, axis=1)[:, :2]
            two = np.take_along_axis(D, part, 1)
            b1, b2 = two.min(axis=1), two.max(axis=1)
        else:
            b1, b2 = D[:, 0], np.full(len(rows), np.inf)
        j1 = np.argmin(D, axis=1)  # first index of the minimum, as the loops
        e = err[rows]
        clear = b2 - b1 > 4.0 * e * (1.0 + 1e-9)
        lo = np.where(clear, b2, b1) + xs[rows] - e
        with np.errstate(invalid="ignore"):
            low = np.where(lo > 0, np.sqrt(np.maximum(lo, 0)) * _DOWN, 0.0)
        lab = j1.copy()
        if (~clear).any():
            idx = np.flatnonzero(~clear)
            lab_near, _ = nearest(np.ascontiguousarray(Xg[idx]), centers)
            lab[idx] = lab_near[0]
        labels[rows] = lab
        lower[rows] = low.astype(np.float32)
    sums = np.zeros((k, d), dtype=np.float64)
    counts = np.zeros(k, dtype=np.float64)
    inertia = 0.0
    step = row_block_size(k, X.itemsize, n) if n else 1
    diff = X64 - centers[labels].astype(np.float64)
    dist = np.maximum((diff * diff).sum(axis=1), 0.0)
    for start in range(0, n, step):
        sl = slice(start, start + step)
        ws = None if weights is None else weights[sl]
        s, c = accumulate(X[sl], labels[sl], ws, k)
        sums += s
        counts += c
        inertia += float(dist[sl].sum() if ws is None else dist[sl] @ ws.astype(np.float64))
    out = {"sums": sums, "counts": counts, "inertia": np.array([inertia]),
           "n_pruned": int(n - len(rows))}
    return out, (labels.astype(np.int32), lower)
