"""Mini-batch k-means (Sculley, 2010) that streams Dask and Zarr arrays.

The algorithm is scikit-learn's :class:`~sklearn.cluster.MiniBatchKMeans`:
every mini-batch is assigned to the current centres, and every centre moves
to the running mean of all the rows it has received so far (its learning
rate is the batch's weight over the centre's running weight, the *count*).
Centres whose count falls below ``reassignment_ratio`` times the largest are
moved to random rows of the batch, and ``fit`` stops early when the smoothed
mean batch inertia has not improved for ``max_no_improvement`` batches.

On a Dask or Zarr array the fit is a *fold over the row blocks*: a chain of
tasks in which task ``i`` takes block ``i`` and the state left by task
``i - 1`` (centres, counts, step counter), runs the mini-batches of that
block and hands the new state on. The chain runs on the workers; only the
k x d state moves between tasks. Block ``i`` is read by a task that waits for
task ``i - LOOKAHEAD`` of the chain, so reads of the next blocks overlap the
fold while at most ``LOOKAHEAD + 1`` blocks are held in memory (more while
the initial sample is drawn from the first blocks of ``fit``: those blocks
and the ``LOOKAHEAD`` after them are read at once, so that the reads go on
while the initialisation runs; see :func:`first_gated_read`).

Randomness (block order, row order inside a block, reassignment) comes from
:func:`daskmeans._rng.block_rng` keyed by the step counter carried in the
state, so a fit or an update gives the same result on any scheduler, and a
model saved and loaded continues exactly as one that was not.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from numbers import Integral

import dask.array as da
import numpy as np
from dask.base import tokenize
from dask.core import flatten, get_dependencies
from dask.delayed import Delayed
from dask.highlevelgraph import HighLevelGraph

from .. import kernels as _kernels
from ._graph import compute_passes
from ._init import kmeans_plusplus
from ..io._atomic import write_json
from ._lloyd import check_block, partial_pass, warn_if_degenerate
from ._prep import check_prep_params, make_prep
from .._rng import as_seed_sequence, block_rng, purpose_key
from .._validation import (
    check_array_input,
    check_centers,
    check_int,
    check_real,
    check_sample_weight,
)
from ..estimator import KMeans, _in_memory

__all__ = ["MiniBatchKMeans"]

MODEL_FORMAT = "daskmeans.MiniBatchKMeans"
MODEL_VERSION = 1

#: Blocks read ahead of the fold (each read waits for the fold of block i - LOOKAHEAD).
LOOKAHEAD = 2
#: Leading blocks (in the first pass's order) that the initial sample is drawn from, at least.
INIT_BLOCKS = 4

_INIT_METHODS = ("k-means++", "random")
_ORDER = purpose_key("minibatch-block-order")
_PERMUTE = purpose_key("minibatch-row-order")
_REASSIGN = purpose_key("minibatch-reassign")
_POOL = purpose_key("minibatch-init-pool")
_CANDIDATE = purpose_key("minibatch-init-candidate")
_VALIDATION = purpose_key("minibatch-init-validation")


# --------------------------------------------------------------------------- #
# State and parameters of the fold (small; travel between tasks)
# --------------------------------------------------------------------------- #
@dataclass
class FoldState:
    """Everything the fold hands from one block's task to the next.

    Attributes
    ----------
    centers : ndarray of shape (k, d)
        Current centres, in the working dtype of X.
    counts : ndarray of shape (k,), float64
        Running weight received by every centre (learning-rate denominators).
    n_steps : int
        Mini-batch steps made so far; keys every random draw.
    n_since_reassign : int
        Rows seen since the last reassignment check fired.
    ewa : float or None
        Exponentially weighted average of the mean batch inertia (``fit`` only).
    ewa_min : float or None
        Smallest ``ewa`` seen so far.
    no_improvement : int
        Consecutive steps without a new smallest ``ewa``.
    fit_steps : int
        Steps made by the current ``fit`` (the first one has no ``ewa``).
    stopped : bool
        Early stopping fired; later tasks pass the state on unchanged.
    tol_abs : float
        Absolute tolerance on the squared centre shift of one step (0: off).
    """

    centers: np.ndarray
    counts: np.ndarray
    n_steps: int = 0
    n_since_reassign: int = 0
    ewa: float | None = None
    ewa_min: float | None = None
    no_improvement: int = 0
    fit_steps: int = 0
    stopped: bool = False
    tol_abs: float = 0.0

    def copy(self) -> FoldState:
        return replace(self, centers=self.centers.copy(), counts=self.counts.copy())


@dataclass(frozen=True)
class FoldParams:
    """Constants of a fold (shared by every task of a pass)."""

    seq: np.random.SeedSequence
    batch_size: int | None  # None: every block (or NumPy batch) is one step
    reassignment_ratio: float
    early_stop: bool = False
    max_no_improvement: int | None = None
    n_samples: int = 0  # rows of the whole data (smoothing factor of the ewa)
    check: bool = False
    omit_nan: bool = False  # nan_policy="omit": rows holding NaN are dropped per block


# --------------------------------------------------------------------------- #
# Kernels: pure NumPy on one block (no Dask)
# --------------------------------------------------------------------------- #
def minibatch_step(
    X: np.ndarray, w: np.ndarray | None, state: FoldState, params: FoldParams
) -> tuple[float, float]:
    """One mini-batch update of ``state`` (in place).

    Rows are assigned to the centres held before the step; every centre
    ``c`` that receives rows moves to ``(c * n_c + sum w x) / (n_c + sum w)``
    with ``n_c`` its running weight, which then grows by ``sum w``. When the
    reassignment check fires (some count is zero, or ``10 * k`` rows were
    seen since it last fired), centres whose count is below
    ``reassignment_ratio`` times the largest (at most half a batch of them,
    the lightest first) move to distinct random rows of the batch, drawn
    with probability proportional to the weight, and take the smallest count
    of the other centres.

    Parameters
    ----------
    X : ndarray of shape (n, d), dtype of ``state.centers``
    w : ndarray of shape (n,) or None
    state : FoldState
        Updated in place.
    params : FoldParams

    Returns
    -------
    inertia : float
        Weighted sum of squared distances of the batch to the centres before the step.
    shift : float
        Total squared movement of the centres in this step.
    """
    n = X.shape[0]
    k = state.centers.shape[0]
    # the check looks at the counts before the step, as scikit-learn does
    state.n_since_reassign += n
    reassign = False
    if (state.counts == 0).any() or state.n_since_reassign >= 10 * k:
        state.n_since_reassign = 0
        reassign = True
    part = _kernels.lloyd_partial(X, state.centers, w)
    got = part["counts"]
    old = state.centers
    counts = state.counts + got
    new = old.astype(np.float64)
    hit = got > 0
    new[hit] = (new[hit] * state.counts[hit, None] + part["sums"][hit]) / counts[hit, None]
    if reassign and params.reassignment_ratio > 0:
        _reassign(X, w, new, counts, state.n_steps, params)
    new = new.astype(old.dtype)
    shift = float(((new - old.astype(np.float64)) ** 2).sum()) if state.tol_abs > 0 else 0.0
    state.centers = new
    state.counts = counts
    state.n_steps += 1
    return float(part["inertia"][0]), shift


def _reassign(X, w, centers, counts, step, params) -> None:
    """Move the lightest centres to random rows of the batch (in place)."""
    n = X.shape[0]
    low = counts < params.reassignment_ratio * counts.max()
    low[np.argmax(counts)] = False  # keep one centre, whatever the ratio
    limit = int(0.5 * n)
    if low.sum() > limit:
        low[np.argsort(counts, kind="stable")[limit:]] = False
    n_move = int(low.sum())
    if w is not None:
        n_move = min(n_move, int(np.count_nonzero(w > 0)))
    if n_move == 0:
        return
    targets = np.flatnonzero(low)
    targets = targets[np.argsort(counts[targets], kind="stable")[:n_move]]
    rng = block_rng(params.seq, _REASSIGN, step)
    p = None if w is None else w / w.sum()
    rows = rng.choice(n, size=n_move, replace=False, p=p)
    centers[targets] = X[rows]
    counts[targets] = counts[np.setdiff1d(np.arange(len(counts)), targets)].min()


def _converged(state: FoldState, inertia: float, n_rows: int, shift: float,
               params: FoldParams) -> bool:
    """Early stopping on the smoothed mean batch inertia (and the centre shift)."""
    state.fit_steps += 1
    if state.fit_steps == 1:
        return False  # the first batch measures the initial centres
    mean = inertia / max(n_rows, 1)
    if state.ewa is None:
        state.ewa = mean
    else:
        alpha = min(1.0, n_rows * 2.0 / (params.n_samples + 1))
        state.ewa = state.ewa * (1 - alpha) + mean * alpha
    if state.tol_abs > 0 and shift <= state.tol_abs:
        return True
    if state.ewa_min is None or state.ewa < state.ewa_min:
        state.no_improvement = 0
        state.ewa_min = state.ewa
    else:
        state.no_improvement += 1
    return (
        params.max_no_improvement is not None
        and state.no_improvement >= params.max_no_improvement
    )


def fold_block(state: FoldState, block, params: FoldParams) -> FoldState:
    """Run the mini-batches of one block; returns a new state.

    ``block`` is ``(X, w)`` or None (not read because the fit had stopped).
    With ``params.batch_size`` None the whole block is one step; otherwise
    its rows are shuffled and split into ``ceil(n / batch_size)`` batches of
    nearly equal size.
    """
    if state.stopped or block is None or block[0].shape[0] == 0:
        return state
    X, w = block
    if params.check:
        check_block(X, w)
    state = state.copy()
    n = X.shape[0]
    if params.batch_size is None or n <= params.batch_size:
        batches = [None]
    else:
        order = block_rng(params.seq, _PERMUTE, state.n_steps).permutation(n)
        batches = np.array_split(order, math.ceil(n / params.batch_size))
    for idx in batches:
        Xb = X if idx is None else X[idx]
        wb = w if (idx is None or w is None) else w[idx]
        inertia, shift = minibatch_step(Xb, wb, state, params)
        if params.early_stop and _converged(state, inertia, Xb.shape[0], shift, params):
            state.stopped = True
            break
    return state


# --------------------------------------------------------------------------- #
# Initialisation from a sample of the leading blocks
# --------------------------------------------------------------------------- #
def _pool_chunk(block, index: int, size: int, seq) -> tuple:
    """Uniform sample of ``size`` rows (without replacement) of one block."""
    X, w = block
    take = min(size, X.shape[0])
    rows = np.sort(block_rng(seq, _POOL, index).choice(X.shape[0], take, replace=False))
    return X[rows], (np.ones(take) if w is None else w[rows].astype(np.float64))


def init_state(parts: list, spec: dict) -> FoldState:
    """Initial state from the pooled samples of the leading blocks.

    ``spec`` holds ``init`` (method name, callable or array), ``n_clusters``,
    ``n_init``, ``init_size``, ``seq``, ``tol`` and ``dtype``. Every candidate
    is seeded on its own uniform draw of ``init_size`` pooled rows, then
    refined by ``init_lloyd_iter`` (optional, default 0) Lloyd iterations on
    that draw (see :func:`refine_centers`); with several candidates, the one
    with the smallest inertia on another draw (the validation set) is kept,
    as in scikit-learn. An explicit array of centres is used as given.
    ``tol_abs`` is ``tol`` times the mean per-feature variance of the pooled
    rows.

    The same as :func:`choose_candidate` over :func:`init_candidate` for
    every candidate, which is how :func:`fold_graph` runs it (one task per
    candidate, in parallel).
    """
    if not _seeded(spec):
        return choose_candidate([], parts, spec)
    n = spec["n_init"]
    return choose_candidate([init_candidate(parts, spec, g) for g in range(n)], parts, spec)


def _seeded(spec: dict) -> bool:
    """Whether the initial centres are drawn (not an explicit array)."""
    init = spec["init"]
    return isinstance(init, str) or callable(init)


def _pool(parts: list) -> tuple[np.ndarray, np.ndarray]:
    return (np.concatenate([p[0] for p in parts], axis=0),
            np.concatenate([p[1] for p in parts], axis=0))


def _draw(pool, wts, seq, key, m):
    """Uniform draw of ``m`` pooled rows (sorted), weights and the draw's generator."""
    rng = block_rng(seq, *key)
    rows = np.sort(rng.choice(len(pool), min(m, len(pool)), replace=False))
    return pool[rows], wts[rows], rng


def init_candidate(parts: list, spec: dict, g: int) -> tuple[np.ndarray, float]:
    """Candidate ``g`` of :func:`init_state`: its centres and their inertia on the
    validation draw (infinity when there is one candidate)."""
    pool, wts = _pool(parts)
    k, seq, init, size = spec["n_clusters"], spec["seq"], spec["init"], spec["init_size"]
    S, sw, rng = _draw(pool, wts, seq, (_CANDIDATE, g), size)
    if callable(init):
        rs = np.random.RandomState(rng.integers(0, 2**31 - 1))
        C = check_centers("init (callable result)", init(S, k, rs), k, pool.shape[1],
                          spec["dtype"])
    elif init == "random":
        pos = np.flatnonzero(sw > 0)
        if len(pos) < k:
            raise ValueError(
                f"init='random': the initial sample has {len(pos)} rows of positive weight, "
                f"fewer than n_clusters={k}; increase init_size."
            )
        C = S[rng.choice(pos, k, replace=False, p=sw[pos] / sw[pos].sum())]
    else:
        keep = sw > 0
        C = kmeans_plusplus(S[keep], sw[keep], k, rng)
    C = np.ascontiguousarray(C, dtype=spec["dtype"])
    C = refine_centers(S, sw, C, spec.get("init_lloyd_iter", 0))
    if spec["n_init"] == 1:
        return C, np.inf
    V, vw, _ = _draw(pool, wts, seq, (_VALIDATION,), size)
    return C, float(_kernels.lloyd_partial(V, C, vw)["inertia"][0])


def choose_candidate(cands: list, parts: list, spec: dict) -> FoldState:
    """The state of the first candidate of smallest validation inertia (or of the
    explicit ``init`` array when ``cands`` is empty); see :func:`init_state`."""
    k = spec["n_clusters"]
    tol_abs = 0.0
    if spec["tol"] > 0:
        pool, _ = _pool(parts)
        tol_abs = float(np.var(pool, axis=0, dtype=np.float64).mean() * spec["tol"])
    if not cands:
        return FoldState(np.array(spec["init"], dtype=spec["dtype"]), np.zeros(k),
                         tol_abs=tol_abs)
    best = min(range(len(cands)), key=lambda g: cands[g][1])  # the first on ties
    return FoldState(cands[best][0], np.zeros(k), tol_abs=tol_abs)


def refine_centers(S: np.ndarray, sw: np.ndarray, C: np.ndarray, n_iter: int) -> np.ndarray:
    """At most ``n_iter`` weighted Lloyd iterations of ``C`` on the sample ``S``.

    Every centre moves to the weighted mean of the sample rows nearest to it;
    a centre that gets no weight stays where it is. Stops early once an
    iteration leaves every centre unchanged. Returns a new array in the
    dtype of ``C`` (``C`` itself when ``n_iter`` is 0).
    """
    for _ in range(n_iter):
        part = _kernels.lloyd_partial(S, C, sw)
        got = part["counts"] > 0
        new = C.astype(np.float64)
        new[got] = part["sums"][got] / part["counts"][got, None]
        new = new.astype(C.dtype)
        if np.array_equal(new, C):
            break
        C = new
    return C


def init_samples(order, spec: dict) -> list:
    """``(block, rows)`` of the leading blocks the initial sample is drawn from."""
    chunks = spec["chunks"]
    m = _leading_blocks(chunks, order, spec["pool_size"])
    total = sum(chunks[b] for b in order[:m])
    return [
        (b, math.ceil(spec["pool_size"] * chunks[b] / total)) for b in order[:m]
    ]


def _leading_blocks(chunks, order, need: int) -> int:
    """Number of leading blocks (in ``order``) to sample the initial rows from."""
    m, rows = 0, 0
    while m < len(order) and (rows < need or m < INIT_BLOCKS):
        rows += chunks[order[m]]
        m += 1
    return m


def first_gated_read(n_init_blocks: int) -> int:
    """Position (in the pass's order) of the first read that waits for the fold.

    Reads at positions ``j >= first_gated_read(n)`` wait for the fold of
    position ``j - LOOKAHEAD``. Without an initialisation in the graph
    (``n_init_blocks`` 0) that is every read from ``LOOKAHEAD`` on. With one,
    the ``n_init_blocks`` blocks of the initial sample and the ``LOOKAHEAD``
    blocks after them are read at once: the initialisation runs on one
    thread while the others read on, instead of waiting for the fold to
    start (at most ``n_init_blocks + LOOKAHEAD`` blocks are then held).
    """
    return n_init_blocks + LOOKAHEAD if n_init_blocks else LOOKAHEAD


def _start_task(state):
    return state.value if isinstance(state, _Opaque) else state


# --------------------------------------------------------------------------- #
# Graph: the chain of fold tasks with gated block reads
# --------------------------------------------------------------------------- #
class BlockReader:
    """Reads one row block of X (and of the weights) inside a task.

    The block's own (culled) graph is run by the synchronous scheduler when
    the reader is called, so that the read can be made to wait for a task of
    the fold (its *gate*): the read of block ``i`` starts once the fold of
    block ``i - LOOKAHEAD`` is done, which bounds the blocks held in memory.
    A gate whose state has stopped skips the read. Made by :func:`block_readers`.
    """

    def __init__(self, x: tuple, w: tuple | None, index: int, omit_nan: bool = False) -> None:
        self.index = index
        self.omit_nan = omit_nan
        self.x = x  # (graph, key) of the block of X
        self.w = w  # same for the weights, or None

    def __call__(self, gate=None, check=False):
        if isinstance(gate, FoldState) and gate.stopped:
            return None
        from dask.local import get_sync

        X = np.ascontiguousarray(get_sync(*self.x))
        w = None if self.w is None else np.asarray(get_sync(*self.w), dtype=np.float64)
        X, w = drop_nan_rows(X, w, self.omit_nan)
        if check:
            # here rather than in the fold task: reads run in parallel, the fold does not
            check_block(X, w)
        return X, w


def drop_nan_rows(X: np.ndarray, w, omit: bool) -> tuple:
    """``(X, w)`` without the rows holding a NaN when ``omit`` (``nan_policy="omit"``).

    A per-block copy only; the data as a whole is never filtered or copied.
    """
    if not omit:
        return X, w
    valid = ~np.isnan(X).any(axis=1)
    if valid.all():
        return X, w
    return X[valid], (None if w is None else w[valid])


def block_readers(X: da.Array, weights: da.Array | None, omit_nan: bool = False) -> list:
    """One :class:`BlockReader` per row block of ``X`` (and ``weights``), by block index."""
    xs = _block_graphs(X)
    ws = [None] * len(xs) if weights is None else _block_graphs(weights)
    return [BlockReader(x, w, b, omit_nan) for b, (x, w) in enumerate(zip(xs, ws, strict=True))]


def _block_graphs(arr: da.Array) -> list:
    """``(graph, key)`` of every row block of ``arr`` (one chunk along columns).

    The array's graph is optimised once, then each block keeps the tasks its
    key depends on: the time grows with the size of the graph, not with its
    square as when every block is sliced and optimised on its own (4,000
    blocks: 0.2 s instead of 4.7 s).
    """
    keys = list(flatten(arr.__dask_keys__()))
    dsk = dict(arr.__dask_optimize__(arr.__dask_graph__(), keys))
    out = []
    for key in keys:
        sub, todo = {}, [key]
        while todo:
            k = todo.pop()
            if k not in sub:
                sub[k] = dsk[k]
                todo.extend(get_dependencies(dsk, k))
        out.append((sub, key))
    return out


def fold_graph(
    readers: list,
    order,
    start: FoldState | None,
    params: FoldParams,
    *,
    init_spec: dict | None = None,
    name: str = "minibatch",
) -> Delayed:
    """One pass of the fold over the blocks in ``order``, as a chain of tasks.

    Task ``<name>-fold, j`` depends on the state of task ``j - 1`` and on
    ``<name>-partial-read, j``, which reads block ``order[j]`` once task
    ``j - LOOKAHEAD`` is done (the first blocks are read at once, and so are
    the leading blocks the initial sample is drawn from and the
    ``LOOKAHEAD`` after them: see :func:`first_gated_read`).

    Parameters
    ----------
    readers : list of BlockReader
        One per block of X, by block index.
    order : sequence of int
        Block indices in the order they are folded.
    start : FoldState or None
        State before the pass; None with ``init_spec`` to initialise from a
        sample of the leading blocks inside the graph.
    params : FoldParams
    init_spec : dict, optional
        See :func:`init_state`; also ``pool_size`` and ``chunks``.

    Returns
    -------
    dask.delayed.Delayed
        Computes to the :class:`FoldState` after the pass.
    """
    order = [int(b) for b in order]
    check, params = params.check, replace(params, check=False)  # checked by the reads
    token = tokenize(
        [r.x[1] for r in readers], order, repr(params), check,
        None if start is None else (start.centers, start.counts, start.n_steps),
        None if init_spec is None else repr(sorted(init_spec.items(), key=lambda kv: kv[0])),
    )
    # "-partial-" marks the per-block tasks for compute_passes, which then limits BLAS
    # to one thread under the threaded scheduler: the steps share the cores with the reads
    read, fold = f"{name}-partial-read-{token}", f"{name}-fold-{token}"
    state0 = f"{name}-start-{token}"
    dsk: dict = {}
    n_init_blocks = 0
    if init_spec is not None:
        shares = init_samples(order, init_spec)
        n_init_blocks = len(shares)
        pool = f"{name}-init-sample-{token}"
        for j, (b, share) in enumerate(shares):
            dsk[(pool, j)] = (_pool_chunk, (read, j), b, share, params.seq)
        parts = [(pool, j) for j in range(n_init_blocks)]
        if _seeded(init_spec):
            # one task per candidate: they run beside the reads, on any free thread
            cand = f"{name}-init-candidate-{token}"
            for g in range(init_spec["n_init"]):
                dsk[(cand, g)] = (init_candidate, parts, init_spec, g)
            cands = [(cand, g) for g in range(init_spec["n_init"])]
        else:
            cands = []
        dsk[state0] = (choose_candidate, cands, parts, init_spec)
    else:
        dsk[state0] = (_start_task, _Opaque(start))
    for j, b in enumerate(order):
        gate = (fold, j - LOOKAHEAD) if j >= first_gated_read(n_init_blocks) else None
        dsk[(read, j)] = (readers[b], gate, check)
        prev = state0 if j == 0 else (fold, j - 1)
        dsk[(fold, j)] = (fold_block, prev, (read, j), params)
    out = f"{name}-result-{token}"
    dsk[out] = (_start_task, (fold, len(order) - 1))
    graph = HighLevelGraph.from_collections(out, dsk, dependencies=[])
    return Delayed(out, graph)


class _Opaque:
    """A literal the scheduler passes through untouched."""

    def __init__(self, value) -> None:
        self.value = value


def fold_local(read, order, start: FoldState | None, params: FoldParams,
               init_spec: dict | None = None) -> FoldState:
    """The same pass as :func:`fold_graph`, run in this process (for NumPy data)."""
    cache = {}
    if init_spec is not None:
        parts = []
        for b, share in init_samples(order, init_spec):
            cache[b] = read(b)
            parts.append(_pool_chunk(cache[b], b, share, params.seq))
        state = init_state(parts, init_spec)
    else:
        state = start
    for b in order:
        if state.stopped:
            break
        block = cache.pop(b) if b in cache else read(b)
        state = fold_block(state, block, params)
    return state


# --------------------------------------------------------------------------- #
# The estimator
# --------------------------------------------------------------------------- #
class MiniBatchKMeans(KMeans):
    """Mini-batch k-means for NumPy, Dask and Zarr data, with ``partial_fit``.

    Parameters and semantics follow scikit-learn's
    :class:`~sklearn.cluster.MiniBatchKMeans`. ``fit`` makes at most
    ``max_iter`` passes over the data; in every pass the row blocks are
    visited in a random order and each block's rows are shuffled and cut
    into mini-batches of at most ``batch_size`` rows. On Dask and Zarr input
    the pass is a chain of tasks that hands the small state (centres,
    counts, step counter) from block to block on the workers, while later
    blocks are read in parallel. The fitted ``inertia_`` is the exact
    inertia of the final centres (one more pass).

    Parameters
    ----------
    n_clusters : int, default=8
    init : {"k-means++", "random"}, callable or array of shape (k, d), default="k-means++"
        Seeding on ``init_size`` rows drawn from the first blocks of the
        first pass (at least 4 blocks, more if they hold too few rows).
        A callable is called as ``init(X_sample, n_clusters, random_state)``.
    max_iter : int, default=100
        Maximum number of passes over the data.
    batch_size : int, default=1024
        Largest number of rows per mini-batch (batches never straddle blocks).
    tol : float, default=0.0
        Stop when the squared movement of the centres in one step is at most
        ``tol`` times the mean per-feature variance, estimated on the initial
        sample. 0 disables this rule.
    max_no_improvement : int or None, default=10
        Stop after this many consecutive steps without improvement of the
        exponentially smoothed mean batch inertia; None disables it.
    init_size : int, optional
        Rows the initialisation draws (default ``3 * batch_size``, at least
        ``3 * n_clusters``).
    n_init : "auto" or int, default="auto"
        Initialisations tried on the sample; the one with the smallest
        inertia on another draw of ``init_size`` rows is kept. "auto" is 3
        for "random" and callables, 1 otherwise.
    reassignment_ratio : float, default=0.01
        Centres whose running weight is below this fraction of the largest
        are moved to random rows of a batch (checked every ``10 * k`` rows).
    random_state : int, RandomState, Generator, SeedSequence or None, default=None
    verbose : int, default=0
        Print one line per pass.
    nan_policy : {"raise", "omit"}, default="raise"
        ``"omit"``: rows holding a NaN are dropped block by block before the
        mini-batches are cut (never a filtered copy of the data); they get
        label -1 and distance NaN in ``predict``/``transform``, and
        ``n_omitted_`` counts them after ``fit``.
    init_lloyd_iter : int, default=0
        Not in scikit-learn. Lloyd iterations (at most; they stop once the
        centres no longer move) run on the in-memory initial sample of
        ``init_size`` rows after every seeding candidate is drawn, before the
        candidates are compared on the validation rows and the fold starts.
        The running counts still start at zero, so the data's rows are
        counted once. 0 (default) is scikit-learn's initialisation. About ten
        iterations on a sample of ~10,000 rows cost a small fraction of a
        pass and, with ``n_init`` of 2 or 3, bring one pass within 1 % of a
        converged exact fit on overlapping clusters where scikit-learn's
        initialisation lands 2-3 % above it (see the README's benchmark).
        An explicit ``init`` array is used as given.

    Attributes
    ----------
    cluster_centers_ : ndarray of shape (n_clusters, n_features)
    counts_ : ndarray of shape (n_clusters,)
        Running weight received by every centre (kept by ``save``).
    labels_ : ndarray or dask.array.Array of shape (n_samples,)
        After ``fit``: NumPy for NumPy input, lazy otherwise.
    inertia_ : float
        After ``fit``: inertia of the final centres over the data.
    n_iter_ : int
        Passes made by ``fit`` (the last one may stop early).
    n_steps_ : int
        Mini-batch steps made so far (``fit`` and ``partial_fit``).
    n_passes_ : int
        Reads of the data made by the last ``fit`` (the final inertia pass included).
    inertia_history_ : list of float
        After every pass of ``fit``: the smoothed mean batch inertia times
        n_samples, an estimate of the inertia during the pass.
    cluster_sizes_ : ndarray of shape (n_clusters,)
        After ``fit``: total weight of every final cluster.
    n_features_in_ : int
    timings_ : dict
        Seconds in "fold" and "finalize".

    Examples
    --------
    >>> import numpy as np
    >>> from daskmeans import MiniBatchKMeans
    >>> X = np.array([[1.0, 2], [1, 4], [1, 0], [10, 2], [10, 4], [10, 0]])
    >>> mbk = MiniBatchKMeans(n_clusters=2, batch_size=3, random_state=0).fit(X)
    >>> sorted(np.round(mbk.cluster_centers_).tolist())
    [[1.0, 2.0], [10.0, 2.0]]
    """

    #: Fan-in of the reduction tree of the inertia, predict and score passes.
    split_every = None
    persist = False

    _init_methods = _INIT_METHODS

    def __init__(
        self,
        n_clusters=8,
        *,
        init="k-means++",
        max_iter=100,
        batch_size=1024,
        tol=0.0,
        max_no_improvement=10,
        init_size=None,
        n_init="auto",
        reassignment_ratio=0.01,
        random_state=None,
        verbose=0,
        nan_policy="raise",
        init_lloyd_iter=0,
    ):
        self.n_clusters = n_clusters
        self.init = init
        self.max_iter = max_iter
        self.batch_size = batch_size
        self.tol = tol
        self.max_no_improvement = max_no_improvement
        self.init_size = init_size
        self.n_init = n_init
        self.reassignment_ratio = reassignment_ratio
        self.random_state = random_state
        self.verbose = verbose
        self.nan_policy = nan_policy
        self.init_lloyd_iter = init_lloyd_iter

    # ------------------------------------------------------------------ #
    # validation
    # ------------------------------------------------------------------ #
    def _check_params(self) -> None:
        k = check_int("n_clusters", self.n_clusters, low=1)
        self._check_init(auto_random=3)
        check_int("max_iter", self.max_iter, low=1)
        batch = check_int("batch_size", self.batch_size, low=1)
        self._tol = check_real("tol", self.tol, low=0.0)
        if self.max_no_improvement is not None:
            check_int("max_no_improvement", self.max_no_improvement, low=0)
        if self.init_size is None:
            self._init_size = max(3 * batch, 3 * k)
        else:
            self._init_size = check_int("init_size", self.init_size, low=1)
            if self._init_size < k:
                import warnings

                warnings.warn(
                    f"init_size={self._init_size} should be larger than n_clusters={k}; "
                    f"setting it to 3 * n_clusters = {3 * k}.",
                    RuntimeWarning,
                    stacklevel=3,
                )
                self._init_size = 3 * k
        check_real("reassignment_ratio", self.reassignment_ratio, low=0.0)
        check_int("init_lloyd_iter", self.init_lloyd_iter, low=0)
        if not isinstance(self.verbose, bool | Integral) or self.verbose < 0:
            raise ValueError(f"verbose must be a non-negative integer, got {self.verbose!r}.")
        as_seed_sequence(self.random_state)
        check_prep_params("euclidean", False, self.nan_policy)

    def _prepare(self, X, sample_weight, zarr_chunks=None):
        Xd, in_memory = check_array_input(X, allow_nan=self.nan_policy == "omit",
                                          zarr_chunks=zarr_chunks)
        weights = check_sample_weight(sample_weight, Xd, in_memory=in_memory)
        return Xd, weights, in_memory

    def _init_spec(self, Xd: da.Array, seq) -> dict:
        k, d = self.n_clusters, Xd.shape[1]
        init = self.init
        if not isinstance(init, str) and not callable(init):
            init = check_centers("init", init, k, d, Xd.dtype)
        size = min(self._init_size, Xd.shape[0])
        return {
            "init": init, "n_clusters": k, "n_init": self._n_init, "init_size": size,
            "seq": seq, "tol": self._tol, "dtype": Xd.dtype,
            "init_lloyd_iter": int(self.init_lloyd_iter),
            "pool_size": size * (self._n_init + 1), "chunks": [int(c) for c in Xd.chunks[0]],
        }

    # ------------------------------------------------------------------ #
    # the fold, on Dask (workers) or in this process (NumPy input)
    # ------------------------------------------------------------------ #
    @staticmethod
    def _run_pass(Xd, weights, in_memory, readers, order, start, params, init_spec):
        if not in_memory:
            graph = fold_graph(readers, order, start, params, init_spec=init_spec)
            (state,) = compute_passes(graph)  # BLAS limited as for the other passes
            return state

        # NumPy data is already in this process: run the same functions in a loop
        return fold_local(lambda b: readers[b](), order, start, params, init_spec)

    def _readers(self, Xd, weights):
        # built once per fit (slicing Xd.blocks[b] for every block costs O(blocks) each)
        return block_readers(Xd, weights, self.nan_policy == "omit")

    # ------------------------------------------------------------------ #
    # fitting
    # ------------------------------------------------------------------ #
    def fit(self, X, y=None, sample_weight=None):
        """Compute the centres by mini-batch k-means (at most ``max_iter`` passes).

        Parameters
        ----------
        X : array-like, dask.array.Array, zarr.Array, str or os.PathLike of shape \
(n_samples, n_features)
        y : ignored
        sample_weight : array-like or dask.array.Array of shape (n_samples,), optional

        Returns
        -------
        self
        """
        self._check_params()
        Xd, weights, in_memory = self._prepare(X, sample_weight)
        n, d = Xd.shape
        k = self.n_clusters
        if k > n:
            raise ValueError(f"n_clusters={k} must be <= n_samples={n}.")
        seq = as_seed_sequence(self.random_state)
        self._seed = seq
        readers = self._readers(Xd, weights)
        params = FoldParams(
            omit_nan=self.nan_policy == "omit",
            seq=seq, batch_size=min(self.batch_size, n),
            reassignment_ratio=float(self.reassignment_ratio), early_stop=True,
            max_no_improvement=self.max_no_improvement, n_samples=n, check=not in_memory,
        )
        t0 = time.perf_counter()
        state, init_spec, history = None, self._init_spec(Xd, seq), []
        n_iter = 0
        for it in range(self.max_iter):
            order = block_rng(seq, _ORDER, it).permutation(Xd.numblocks[0])
            state = self._run_pass(
                Xd, weights, in_memory, readers, order, state, params, init_spec
            )
            params = replace(params, check=False)
            init_spec = None
            n_iter += 1
            ewa = state.ewa if state.ewa is not None else float("nan")
            history.append(float(ewa * n))
            if self.verbose:
                print(
                    f"[daskmeans] minibatch pass {it + 1}/{self.max_iter}: {state.n_steps} "
                    f"steps, smoothed batch inertia {ewa * n:.6g}"
                    + (" (converged)" if state.stopped else "")
                )
            if state.stopped:
                break
        t_fold = time.perf_counter() - t0
        t0 = time.perf_counter()
        self._set_state(state, d)
        graph = partial_pass(Xd, weights, [self.cluster_centers_], name="minibatch-inertia",
                             prep=make_prep(Xd.dtype, nan_policy=self.nan_policy))
        (res,) = compute_passes(graph)
        self.n_omitted_ = int(res.get("n_omitted", 0))
        self.inertia_ = float(res["inertia"][0])
        self.cluster_sizes_ = np.asarray(res["counts"], dtype=np.float64)
        self.n_iter_ = n_iter
        self.n_passes_ = n_iter + 1
        self.inertia_history_ = history
        warn_if_degenerate(self.cluster_sizes_, k)
        labels = self._predict_dask(Xd, check=False)
        self.labels_ = _in_memory(labels) if in_memory else labels
        self.timings_ = {"fold": t_fold, "finalize": time.perf_counter() - t0}
        return self

    def _set_state(self, state: FoldState, d: int) -> None:
        self.cluster_centers_ = state.centers
        self.counts_ = state.counts
        self.n_steps_ = int(state.n_steps)
        self._n_since_reassign = int(state.n_since_reassign)
        self.n_features_in_ = d

    def _get_state(self) -> FoldState:
        return FoldState(
            self.cluster_centers_.copy(), np.asarray(self.counts_, dtype=np.float64).copy(),
            n_steps=self.n_steps_, n_since_reassign=self._n_since_reassign,
        )

    def partial_fit(self, X, y=None, sample_weight=None):
        """Update the model with one batch (NumPy) or with every block of a Dask/Zarr array.

        Each NumPy batch, each row block of a Dask array and each stored
        row chunk of a Zarr array (in order), is one mini-batch step, as one
        call of scikit-learn's ``partial_fit``. On the first call the centres are initialised from
        a sample of the data. ``labels_`` and ``inertia_`` of an earlier
        ``fit`` are removed (they no longer describe the centres).

        Returns
        -------
        self
        """
        first = not hasattr(self, "cluster_centers_")
        if first:
            self._check_params()
        # a Zarr array: one step per stored chunk, not per group of them
        Xd, weights, in_memory = self._prepare(X, sample_weight, zarr_chunks="stored")
        if in_memory and Xd.numblocks[0] > 1:
            # a NumPy batch is one mini-batch step, however the library would chunk it
            Xd = Xd.rechunk({0: -1})
            weights = None if weights is None else weights.rechunk(-1)
        n, d = Xd.shape
        if first:
            if self.n_clusters > n:
                raise ValueError(
                    f"n_clusters={self.n_clusters} must be <= the rows of the first batch ({n})."
                )
            self._seed = as_seed_sequence(self.random_state)
        elif d != self.n_features_in_:
            raise ValueError(
                f"X has {d} features, but {type(self).__name__} was fitted with "
                f"{self.n_features_in_} features."
            )
        elif Xd.dtype != self.cluster_centers_.dtype:
            Xd = Xd.astype(self.cluster_centers_.dtype)
        params = FoldParams(
            omit_nan=self.nan_policy == "omit",
            seq=self._seed, batch_size=None, reassignment_ratio=float(self.reassignment_ratio),
            check=not in_memory,
        )
        order = np.arange(Xd.numblocks[0])
        init_spec = self._init_spec(Xd, self._seed) if first else None
        start = None if first else self._get_state()
        state = self._run_pass(
            Xd, weights, in_memory, self._readers(Xd, weights), order, start, params,
            init_spec,
        )
        self._set_state(state, d)
        for attr in ("labels_", "inertia_", "cluster_sizes_", "inertia_history_"):
            self.__dict__.pop(attr, None)
        return self

    # ------------------------------------------------------------------ #
    # persistence
    # ------------------------------------------------------------------ #
    def to_dict(self) -> dict:
        """A JSON-serialisable description of the model, counts and random state included."""
        self._check_fitted()

        seq = self._seed
        opt = {
            name: getattr(self, name, None)
            for name in ("inertia_", "n_iter_", "n_passes_", "inertia_history_")
        }
        sizes = getattr(self, "cluster_sizes_", None)
        doc = self._model_to_doc(MODEL_FORMAT, MODEL_VERSION, {
                "counts_": np.asarray(self.counts_, dtype=np.float64).tolist(),
                "n_steps_": int(self.n_steps_),
                "n_since_reassign": int(self._n_since_reassign),
                "n_features_in_": int(self.n_features_in_),
                "seed": {"entropy": str(seq.entropy), "spawn_key": list(seq.spawn_key)},
                "cluster_sizes_": None if sizes is None else np.asarray(sizes).tolist(),
                **opt,
        })
        if callable(self.init):
            doc["params"]["init"] = "k-means++"  # a callable cannot be saved
        return doc

    def save(self, path) -> None:
        """Write the model as plain, versioned JSON (atomically); ``load`` reads it back."""
        write_json(path, self.to_dict())

    @classmethod
    def from_dict(cls, doc: dict) -> MiniBatchKMeans:
        """Rebuild a model written by :meth:`to_dict`."""
        model, fit = cls._model_from_doc(doc, MODEL_FORMAT, MODEL_VERSION)
        model.counts_ = np.asarray(fit["counts_"], dtype=np.float64)
        model.n_steps_ = int(fit["n_steps_"])
        model._n_since_reassign = int(fit["n_since_reassign"])
        model.n_features_in_ = int(fit["n_features_in_"])
        model._seed = np.random.SeedSequence(
            int(fit["seed"]["entropy"]), spawn_key=tuple(fit["seed"]["spawn_key"])
        )
        for name in ("inertia_", "n_iter_", "n_passes_"):
            if fit.get(name) is not None:
                setattr(model, name, type(1.0 if name == "inertia_" else 1)(fit[name]))
        if fit.get("inertia_history_") is not None:
            model.inertia_history_ = [float(v) for v in fit["inertia_history_"]]
        if fit.get("cluster_sizes_") is not None:
            model.cluster_sizes_ = np.asarray(fit["cluster_sizes_"], dtype=np.float64)
        model._check_params()
        return model

