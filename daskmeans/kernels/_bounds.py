"""Per-block kernels of pruned (exact) Lloyd: Hamerly's bounds with rounding margins.

Every row keeps two numbers across iterations: its label ``a`` and a lower
bound ``l`` on its distance to every *other* centre. When the centres move by
``delta_j``, the triangle inequality keeps ``l - max_{j != a} delta_j`` a
valid lower bound, and the exact distance ``u`` to the row's own (moved)
centre costs ``d`` operations. If ``l`` is far enough above ``u``, no other
centre can be nearer and the row keeps its label without its ``k``
distances being computed (Hamerly, 2010, with the upper bound tightened on
every visit, so that it need not be stored). The other rows are compared with
all centres, which also gives them a fresh lower bound (their second-nearest
centre): by plain Lloyd's column tiles when its plan runs them, keeping the
second-best score as well (:func:`daskmeans.kernels._llvm.column_top2_kernel`),
else by BLAS products. A block whose bounds are too weak to keep a tenth of
its rows (the first iterations from a random start) skips the screening, so
that its pass costs about plain Lloyd's with the column tiles.

Hamerly's single bound loses all its power when a few centres move far while
most stand still, as happens at large k. So the ``s`` centres that moved most
are compared with every row exactly (one BLAS product of ``s`` columns), and
the bound is moved only by the largest drift of the others; ``s`` is chosen
per block from a sample of its rows (:func:`choose_movers`). Measured on a
100,000 x 64 mixture with k = 2,000: Hamerly's bound kept 5 to 20 % of the
rows from the 6th to the 16th iteration, this one 24 to 99.8 %.

*Same labels as plain Lloyd.* Plain Lloyd labels a row by the argmin of
``||c||^2 - 2 x.c`` computed in the data's dtype, whose rounding error is at
most ``E(x) = g (2 ||x|| R + R^2)`` (``R`` the largest centre norm, ``g`` a
few units of ``(d + 3)`` roundings, see :func:`error_coefs`). A row is kept
only when ``l^2 - u^2 > 2 E(x)``, and a recomputed row takes its best centre
only when its two best scores differ by more than ``4 E(x)``: in both cases
no rounding of plain Lloyd's products can choose another centre. With the
column tiles this test is not needed: a row's scores are the same chain of
multiply-adds whatever the other rows of its sub-block, so the tiles give
plain Lloyd's label, bitwise, and their second-best score less ``E(x)``
bounds the other centres' distances even at a tie. Otherwise the few
rows closer than that to a tie (ties proper: duplicate centres, symmetric
data) are labelled by :func:`daskmeans.kernels.nearest`, plain Lloyd's own
labelling code, run on the whole sub-blocks of rows in which plain Lloyd's
sweep computes its products (:func:`plain_labels`): BLAS may round the
product of a few rows differently from that of a whole sub-block, so only the
same operands give the same labels. Sums and counts are then added up by the same loop, in the
same row order, as plain Lloyd's sweep, so equal labels give bitwise equal
sums and centres.

The bounds are kept in float32 rounded down (4 bytes a row) and the labels in
int32 (4 bytes): 8 bytes of state per row. The compiled loops (numba,
``nogil``) are used when numba is available; :func:`pruned_block_numpy` is
the NumPy reference with the same results.
"""

from __future__ import annotations

import functools

import numpy as np

from . import _plan
from ._api import nearest, row_block_size, sq_norms
from ._numpy import _native_applies, accumulate  # NumPy path: as plain Lloyd's NumPy sweep

__all__ = [
    "BYTES_PER_ROW",
    "Drift",
    "choose_movers",
    "drift",
    "error_coefs",
    "pruned_block",
    "plain_labels",
    "pruned_block_numpy",
]

#: Bytes of state per row between iterations: int32 label, float32 lower bound.
BYTES_PER_ROW = 8
#: Factor on the rounding-error bound (second-order terms, the float64 sums).
_SAFETY = 1.5
#: A float64 value times this, rounded to float32, is below the value (for x > 0).
_DOWN = 1.0 - 2.0**-21
#: Screening is skipped when its estimated cost is above this share of a full pass.
_SKIP_SCREEN = 0.9
#: Target bytes of the distance block of the recomputed rows.
_RECOMPUTE_BYTES = 1 << 22

_USE_NUMBA = _plan.numba_installed()


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


class Drift:
    """How far every centre moved between two passes (float64, rounded up).

    Attributes
    ----------
    delta : ndarray of shape (k,)
    order : ndarray of shape (k,)
        Centres by decreasing ``delta``.
    """

    def __init__(self, delta: np.ndarray) -> None:
        self.delta = delta
        self.order = np.argsort(-delta, kind="stable").astype(np.intp)
        self.sorted = delta[self.order]

    def rest(self, s: int) -> float:
        """The largest drift outside the ``s`` centres that moved most."""
        return float(self.sorted[s]) if s < len(self.sorted) else 0.0

    def __dask_tokenize__(self):
        return ("daskmeans-drift", self.delta.tobytes())


def drift(old: np.ndarray, new: np.ndarray) -> Drift:
    """How far the centres moved from ``old`` to ``new`` (see :class:`Drift`).

    The distances are computed in float64 and rounded up, so that a lower
    bound less the drift stays a lower bound.
    """
    delta = np.sqrt(((new.astype(np.float64) - old.astype(np.float64)) ** 2).sum(axis=1))
    return Drift(delta * (1 + 1e-12) + 1e-300)


def choose_movers(X, centers, labels, lower, moved: Drift, sample: int = 256) -> int:
    """How many of the centres that moved most to compare every row with exactly.

    A row is kept when its bound, less the largest drift of the other
    centres, stays above its own distance, and when it is also farther from
    each of the ``s`` centres that moved most (compared exactly, ``s d``
    operations). On the first ``sample`` rows of the block, the ``s`` of the
    smallest estimated cost ``2 s + fail(s) k`` is chosen (a row that fails
    costs its ``k`` distances, done by BLAS about four times faster per
    operation than the compiled loop over the movers). Returns -1 when even
    that ``s`` would keep fewer than a tenth of the sampled rows: the block
    is then recomputed in full without screening (as in a first pass).
    """
    k = centers.shape[0]
    m = min(sample, X.shape[0])
    if m == 0 or k <= 1:
        return 0
    lab = labels[:m]
    diff = X[:m].astype(np.float64) - centers[lab].astype(np.float64)
    u = np.sqrt((diff * diff).sum(axis=1))
    low = lower[:m].astype(np.float64)
    best_s, best_cost = 0, np.inf
    s = 0
    while True:
        fail = float(np.mean(low - moved.rest(s) <= u))
        cost = 2.0 * s + fail * k
        if cost < best_cost:
            best_s, best_cost = s, cost
        if s >= min(k - 1, 1024):
            break
        s = min(max(1, 2 * s), k - 1, 1024)
    if best_cost >= _SKIP_SCREEN * k:
        return -1
    return best_s


# --------------------------------------------------------------------------- #
# loops (compiled when numba is there)
# --------------------------------------------------------------------------- #
def _screen_rows(X, centers, labels, lower, movers, P, p_sq, rest, ex, ec, has_state, row0,
                 todo, n_todo, best, new_lower):
    """Keep the rows whose bounds prove their label; list the others in ``todo``.

    ``rest`` is the largest drift of the centres not in ``movers``; those are
    compared through ``P = X @ (-2 C[movers]).T`` and ``p_sq`` (their squared
    norms), less the rounding bound. For a kept row, ``best`` gets
    ``||x - c_a||^2 - ||x||^2`` and ``new_lower`` the new bound. Row ``i`` of
    this sub-block is row ``row0 + i`` of the block in ``todo``; returns the
    new count of rows in ``todo``.
    """
    n, d = X.shape
    n_movers = movers.shape[0]
    for i in range(n):
        keep = False
        if has_state:
            a = labels[i]
            lo = np.float64(lower[i]) - rest
            if lo > 0.0:
                xs = 0.0
                da = 0.0
                for f in range(d):
                    v = np.float64(X[i, f])
                    xs += v * v
                    t = v - np.float64(centers[a, f])
                    da += t * t
                err = ex * np.sqrt(xs) + ec
                need = da + 2.0 * err * (1.0 + 1e-9)
                if lo * lo > need:
                    keep = True
                    low2 = lo * lo
                    for s in range(n_movers):
                        if movers[s] == a:
                            continue
                        dj = np.float64(P[i, s]) + np.float64(p_sq[s]) + xs - err
                        if dj <= need:
                            keep = False
                            break
                        if dj < low2:
                            low2 = dj
                    if keep:
                        best[i] = da - xs
                        new_lower[i] = np.sqrt(low2) * _DOWN
        if not keep:
            todo[n_todo] = row0 + i
            n_todo += 1
    return n_todo


def _settle_rows(Xs, j1, b1, b2, centers, ex, ec, labels, new_lower, best, near):
    """Label recomputed rows from their best and second scores ``b1``, ``b2``
    (``||c||^2 - 2 x.c``) and best centre ``j1``.

    A row takes its best centre when the runner-up scores more than
    ``4 E(x)`` higher, with the runner-up's distance (less ``E(x)``) as its
    lower bound; otherwise ``near[i] = 1`` and its bound is the best
    distance less ``E(x)`` (valid for every centre). ``best`` gets the exact
    ``||x - c||^2 - ||x||^2`` of the chosen centre (of the best one for near rows).
    Returns the number of near rows.
    """
    m, d = Xs.shape
    n_near = 0
    for i in range(m):
        a = j1[i]
        xs = 0.0
        da = 0.0
        for f in range(d):
            v = np.float64(Xs[i, f])
            xs += v * v
            t = v - np.float64(centers[a, f])
            da += t * t
        err = ex * np.sqrt(xs) + ec
        labels[i] = a
        best[i] = da - xs
        s1 = np.float64(b1[i])
        s2 = np.float64(b2[i])
        if s2 - s1 > 4.0 * err * (1.0 + 1e-9):
            near[i] = 0
            lo = s2 + xs - err
        else:
            near[i] = 1
            n_near += 1
            lo = s1 + xs - err
        new_lower[i] = np.sqrt(lo) * _DOWN if lo > 0.0 else 0.0
    return n_near


def _top2_columns(Dt, c_sq, j1, b1, b2):
    """Best and second-best ``Dt[j, i] + c_sq[j]`` of every column ``i`` (row of X).

    The loop runs over rows for every centre, so that it vectorises: int32
    labels share the lanes of float32 scores. Ties go to the first centre.
    """
    k, n = Dt.shape
    for i in range(n):
        b1[i] = np.inf
        b2[i] = np.inf
        j1[i] = 0
    for j in range(k):
        c = c_sq[j]
        jj = np.int32(j)
        for i in range(n):
            v = Dt[j, i] + c
            b = b1[i]
            lt = v < b
            b2[i] = min(b2[i], max(b, v))
            b1[i] = v if lt else b
            j1[i] = jj if lt else j1[i]


def _settle_columns(X, rows, lab, b2, centers, ex, ec, labels, lower, best):
    """Labels, lower bounds and exact distances of the rows ``X[rows]`` from
    their column tiles' label ``lab`` and second-best score ``b2``
    (:func:`daskmeans.kernels._numba_loops.top2_columns_of`).

    The column tiles are plain Lloyd's own, so ``lab`` is its label, bitwise,
    and ``b2`` its smallest score over the other centres: less ``E(x)``, a
    lower bound on their distances, however near a tie (no row is near).
    ``best`` gets the exact ``||x - c_a||^2 - ||x||^2``.
    """
    d = X.shape[1]
    for r in range(rows.shape[0]):
        i = rows[r]
        a = lab[r]
        xs = 0.0
        da = 0.0
        for f in range(d):
            v = np.float64(X[i, f])
            xs += v * v
            t = v - np.float64(centers[a, f])
            da += t * t
        err = ex * np.sqrt(xs) + ec
        labels[i] = a
        best[i] = da - xs
        lo = np.float64(b2[r]) + xs - err
        lower[i] = np.sqrt(lo) * _DOWN if lo > 0.0 else 0.0


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


@functools.cache
def _nb():
    """The compiled loops, made on first use (numba is imported only then)."""
    import types

    import numba

    from . import _numba_loops
    from ._numba_cache import guard

    fast = {"reassoc", "contract", "nsz", "arcp"}  # no nnan/ninf: inf compares as IEEE

    def jit(func, **kw):
        return guard(numba.njit(nogil=True, cache=True, **kw)(func))

    return types.SimpleNamespace(
        screen_rows=jit(_screen_rows, fastmath=fast),
        settle_rows=jit(_settle_rows, fastmath=fast),
        top2_columns=jit(_top2_columns, fastmath=fast),
        own_dist=jit(_own_dist),
        settle_columns=jit(_settle_columns, fastmath=fast),
        top2_columns_of=_numba_loops.top2_columns_of,
        accumulate_rows=_numba_loops.accumulate_rows,
    )


def _plain_step(plan: _plan.KernelPlan, X: np.ndarray, k: int) -> int:
    """Rows per sub-block of plain Lloyd's sweep of the block ``X`` with ``k`` centres.

    The rule of :func:`daskmeans.kernels.lloyd_partial` for one group: the
    compiled path's ``step_rows`` (or ``column_step`` for column tiles), the
    NumPy path's ``row_block_size``.
    """
    n, d = X.shape
    if plan.compiled and X.dtype in (np.float32, np.float64) and n > 0 and k > 0:
        from ._compiled import column_step, step_rows

        if plan.whole_block and plan.uses_columns(X.dtype, k, 1, d):
            return column_step(plan, X)
        screened = plan.screened(X.dtype, k, 1, d)
        return step_rows(plan, k, d, 4 if screened else X.itemsize, n)
    return plan.step or row_block_size(k, X.itemsize, n, plan.dist_block_bytes)


def plain_labels(X: np.ndarray, rows: np.ndarray, centers: np.ndarray,
                 plan: _plan.KernelPlan) -> np.ndarray:
    """Plain Lloyd's labels of ``X[rows]``, bitwise, whatever the rounding.

    Plain Lloyd's sweep of the block computes its distance products by
    sub-blocks of rows, and BLAS may round the product of a row differently
    in an operand of another shape (a few rows, one row). So the sub-blocks
    holding ``rows`` are labelled whole, by :func:`daskmeans.kernels.nearest`
    with the same plan, as one array whose own sub-blocks are those same
    sub-blocks (every one has the full length except the block's last,
    which stays last).

    Parameters
    ----------
    X : ndarray of shape (n, d)
        The whole block, as plain Lloyd's sweep sees it.
    rows : ndarray of int, sorted
    centers : ndarray of shape (k, d)
    plan : daskmeans.kernels.KernelPlan
        Plain Lloyd's plan.

    Returns
    -------
    ndarray of shape (len(rows),), intp
    """
    rows = np.asarray(rows, dtype=np.intp)
    if len(rows) == 0:
        return np.empty(0, dtype=np.intp)
    step = _plain_step(plan, X, centers.shape[0])
    tiles = np.unique(rows // step)
    if len(tiles) * step >= X.shape[0]:
        Xt = X
        pos = rows
    else:
        Xt = np.concatenate([X[t * step : (t + 1) * step] for t in tiles])
        pos = np.searchsorted(tiles, rows // step) * step + rows % step
    lab, _ = nearest(np.ascontiguousarray(Xt), centers, plan=plan)
    return lab[0][pos]


# --------------------------------------------------------------------------- #
# one block
# --------------------------------------------------------------------------- #
def pruned_block(
    X: np.ndarray,
    weights: np.ndarray | None,
    centers: np.ndarray,
    state: tuple[np.ndarray, np.ndarray] | None,
    moved: Drift | None,
    *,
    coefs: tuple[float, float] | None = None,
    cm2t: np.ndarray | None = None,
    c_sq: np.ndarray | None = None,
    plan: _plan.KernelPlan | None = None,
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
    moved : Drift or None
        :func:`drift` from the previous pass's centres to ``centers``.
    coefs, cm2t, c_sq : optional
        :func:`error_coefs`, ``(-2 C).T`` (contiguous) and ``sq_norms(C)``,
        computed once per pass by the caller.
    plan : daskmeans.kernels.KernelPlan, optional
        Plain Lloyd's kernel plan (default: chosen for this block); compiled
        loops exactly when it is compiled, so that sums match its sweep.

    Returns
    -------
    partial : dict
        ``sums``, ``counts``, ``inertia`` as :func:`daskmeans.kernels.lloyd_partial`
        for one group, and ``n_pruned``, the rows whose distances were skipped.
    state : (labels, lower)
        For the next pass.
    """
    if plan is None:
        plan = _plan.choose_plan(X.dtype, centers.shape[0], X.shape[1], X.shape[0])
    if not plan.compiled or X.dtype not in (np.float32, np.float64) or X.shape[0] == 0:
        return pruned_block_numpy(X, weights, centers, state, moved, coefs=coefs, plan=plan)
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
    movers = np.empty(0, dtype=np.intp)
    rest = 0.0
    s = choose_movers(X, centers, state[0], state[1], moved) if has_state else -1
    has_state = s >= 0  # no state, or bounds too weak to be worth screening
    if has_state:
        labels[:] = state[0]
        old_lower = state[1]
        movers = np.ascontiguousarray(moved.order[:s])
        rest = moved.rest(s)
    else:
        old_lower = lower
    n_todo = 0
    if not has_state:
        todo[:] = np.arange(n)
        n_todo = n
    else:
        # the movers' products by BLAS, in sub-blocks of bounded size
        cm2s = np.ascontiguousarray(cm2t[:, movers])
        p_sq = c_sq[movers]
        step = max(256, min(n, _RECOMPUTE_BYTES // max(1, len(movers) * X.itemsize)))
        buf = np.empty(min(step, n) * len(movers), dtype=X.dtype)
        for start in range(0, n, step):
            stop = min(start + step, n)
            P = buf[: (stop - start) * len(movers)].reshape(stop - start, len(movers))
            if len(movers):
                np.matmul(X[start:stop], cm2s, out=P)
            n_todo = _nb().screen_rows(X[start:stop], centers, labels[start:stop],
                                     old_lower[start:stop], movers, P, p_sq, rest, ex, ec,
                                     True, start, todo, n_todo, best[start:stop],
                                     lower[start:stop])
    if n_todo and plan.whole_block and plan.uses_columns(X.dtype, k, 1, d):
        # plain Lloyd's column tiles, keeping the second-best score: its labels, bitwise
        from ._compiled import Distances, column_step

        step = column_step(plan, X)
        cols = Distances(plan, centers, step, d)
        rows = todo[:n_todo]
        lab = np.empty(n_todo, dtype=np.int32)
        b1 = np.empty(n_todo, dtype=X.dtype)
        b2 = np.empty(n_todo, dtype=X.dtype)
        nb = _nb()
        nb.top2_columns_of(X, rows, *cols.column_operands(0, k), step, cols.chunk, lab, b1, b2)
        nb.settle_columns(X, rows, lab, b2, centers, ex, ec, labels, lower, best)
    elif n_todo:
        _recompute(X, todo[:n_todo], centers, c_sq, ex, ec, labels, lower, best, plan)
    sums = np.zeros((k, d), dtype=np.float64)
    counts = np.zeros(k, dtype=np.float64)
    w = np.empty(0, dtype=np.float64) if weights is None else weights
    # plain Lloyd's own accumulation loop over its own sub-blocks (float32 rows are
    # summed in float32 within one first): same labels, same sums
    best_x = best.astype(X.dtype)
    step = _plain_step(plan, X, k)
    accumulate_rows = _nb().accumulate_rows
    inertia = 0.0
    for start in range(0, n, step):
        sl = slice(start, start + step)
        inertia += accumulate_rows(X[sl], w[sl] if len(w) else w, labels[sl], best_x[sl],
                                   sums, counts, X[:0])
    out = {"sums": sums, "counts": counts, "inertia": np.array([inertia]),
           "n_pruned": n - n_todo}
    return out, (labels.astype(np.int32), lower)


def _recompute(X, rows, centers, c_sq, ex, ec, labels, lower, best, plan=None):
    """Compare ``X[rows]`` with every centre: transposed BLAS products
    ``(-2 C) @ X.T`` in sub-blocks, then the best two per row (vectorised over rows)."""
    nb = _nb()
    k = centers.shape[0]
    Xg = X if len(rows) == X.shape[0] else X[rows]  # every row: no copy
    m = Xg.shape[0]
    cm2 = centers * centers.dtype.type(-2)
    step = max(64, min(2048, _RECOMPUTE_BYTES // max(1, k * X.itemsize)))
    lab = np.empty(m, dtype=np.intp)
    low = np.empty(m, dtype=np.float32)
    bst = np.empty(m, dtype=np.float64)
    near = np.empty(m, dtype=np.uint8)
    h0 = min(step, m)
    j1 = np.empty(h0, dtype=np.int32)
    b1 = np.empty(h0, dtype=X.dtype)
    b2 = np.empty(h0, dtype=X.dtype)
    buf = np.empty(h0 * k, dtype=X.dtype)
    n_near = 0
    for start in range(0, m, step):
        stop = min(start + step, m)
        h = stop - start
        Xs = Xg[start:stop]
        Dt = buf[: h * k].reshape(k, h)
        np.matmul(cm2, Xs.T, out=Dt)
        nb.top2_columns(Dt, c_sq, j1[:h], b1[:h], b2[:h])
        n_near += nb.settle_rows(Xs, j1[:h], b1[:h], b2[:h], centers, ex, ec,
                                 lab[start:stop], low[start:stop], bst[start:stop],
                                 near[start:stop])
    if n_near:
        idx = np.flatnonzero(near)
        lab[idx] = plain_labels(X, rows[idx], centers, plan)
        tmp = np.empty(len(idx), dtype=np.float64)
        nb.own_dist(Xg[idx], centers, lab[idx], tmp)
        bst[idx] = tmp
    labels[rows] = lab
    lower[rows] = low
    best[rows] = bst


def pruned_block_numpy(X, weights, centers, state, moved, *, coefs=None, plan=None):
    """NumPy reference of :func:`pruned_block` (same labels, bounds and counts).

    Sums are added up by sub-blocks as the NumPy path of
    :func:`daskmeans.kernels.lloyd_partial` does; ``plan`` is plain Lloyd's
    (default: the NumPy plan).
    """
    n, d = X.shape
    k = centers.shape[0]
    if plan is None or plan.compiled:
        plan = _plan.KernelPlan.numpy()
    ex, ec = error_coefs(centers, X.dtype) if coefs is None else coefs
    X64 = X.astype(np.float64)
    xs = (X64 * X64).sum(axis=1)
    err = ex * np.sqrt(xs) + ec
    labels = np.zeros(n, dtype=np.intp)
    lower = np.zeros(n, dtype=np.float32)
    todo = np.ones(n, dtype=bool)
    s = choose_movers(X, centers, state[0], state[1], moved) if state is not None and n else -1
    if s >= 0:
        labels[:] = state[0]
        lo = state[1].astype(np.float64) - moved.rest(s)
        diff = X64 - centers[labels].astype(np.float64)
        da = (diff * diff).sum(axis=1)
        need = da + 2.0 * err * (1.0 + 1e-9)
        keep = (lo > 0) & (lo * lo > need)
        low2 = lo * lo
        movers = moved.order[:s]
        P = (X @ (centers[movers] * centers.dtype.type(-2)).T).astype(np.float64)
        P += sq_norms(centers[movers]).astype(np.float64) + (xs - err)[:, None]
        for col, j in enumerate(movers):
            dj = P[:, col]
            other = labels != j
            keep &= ~other | (dj > need)
            low2 = np.where(other, np.minimum(low2, dj), low2)
        lower[keep] = (np.sqrt(low2[keep]) * _DOWN).astype(np.float32)
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
            lab[idx] = plain_labels(X, rows[idx], centers, plan)
        labels[rows] = lab
        lower[rows] = low.astype(np.float32)
    sums = np.zeros((k, d), dtype=np.float64)
    counts = np.zeros(k, dtype=np.float64)
    inertia = 0.0
    step = _plain_step(plan, X, k) if n else 1
    diff = X64 - centers[labels].astype(np.float64)
    dist = np.maximum((diff * diff).sum(axis=1), 0.0)
    if n and _native_applies(plan, X, [0, k]):
        # plain Lloyd's C kernels add every weighted row in float64, in row order
        ww = None if weights is None else np.asarray(weights, dtype=np.float64)
        np.add.at(sums, labels, X64 if ww is None else ww[:, None] * X64)
        counts = np.bincount(labels, weights=ww, minlength=k).astype(np.float64)
        inertia = float(dist.sum() if ww is None else dist @ ww)
    else:
        for start in range(0, n, step):
            sl = slice(start, start + step)
            ws = None if weights is None else weights[sl]
            s, c = accumulate(X[sl], labels[sl], ws, k, plan.onehot_max_k)
            sums += s
            counts += c
            inertia += float(dist[sl].sum() if ws is None
                             else dist[sl] @ ws.astype(np.float64))
    out = {"sums": sums, "counts": counts, "inertia": np.array([inertia]),
           "n_pruned": int(n - len(rows))}
    return out, (labels.astype(np.int32), lower)
