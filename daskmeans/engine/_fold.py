"""The mini-batch k-means fold (Sculley, 2010) over the row blocks of a Dask array.

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
while the initialisation runs, and the window shrinks back to ``LOOKAHEAD``
one block a read; see :func:`first_gated_read` and :func:`read_gate`).

Randomness (block order, row order inside a block, reassignment) comes from
:func:`daskmeans._rng.block_rng` keyed by the step counter carried in the
state, so a fit or an update gives the same result on any scheduler, and a
model saved and loaded continues exactly as one that was not.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, replace

import dask.array as da
import numpy as np
from dask.base import tokenize
from dask.core import flatten, get_dependencies
from dask.delayed import Delayed
from dask.highlevelgraph import HighLevelGraph

from .. import kernels as _kernels
from .._errors import InvalidInputError
from .._rng import block_rng, purpose_key
from .._validation import check_centers
from ..io._buffers import BlockBuffers
from ..kernels._sparse import is_sparse as _is_sparse
from ..kernels._sparse import take_rows as _take_rows
from ._init import kmeans_plusplus
from ._lloyd import check_block

__all__ = [
    "BUFFERS",
    "INIT_BLOCKS",
    "LOOKAHEAD",
    "ORDER_KEY",
    "BlockReader",
    "FoldParams",
    "FoldState",
    "block_readers",
    "choose_candidate",
    "drop_nan_rows",
    "first_gated_read",
    "read_gate",
    "fold_block",
    "fold_graph",
    "fold_local",
    "init_candidate",
    "init_samples",
    "init_state",
    "minibatch_step",
    "refine_centers",
]

#: Blocks read ahead of the fold once the reads made at once are used up (then each read
#: waits for the fold of block i - LOOKAHEAD; see :func:`read_gate`).
LOOKAHEAD = 3
#: Leading blocks (in the first pass's order) that the initial sample is drawn from, at least.
INIT_BLOCKS = 4
#: Block buffers the readers of a fit recycle (:func:`block_readers`): enough for the blocks
#: held while the initialisation runs and the reads then in flight; more blocks alive at
#: once (a large initial sample) take plain allocations.
BUFFERS = 2 * (INIT_BLOCKS + LOOKAHEAD)

#: Random key of the block order of every pass of ``fit``.
ORDER_KEY = purpose_key("minibatch-block-order")
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
    check: bool = False  # lazy input: non-finite rows raise (see fold_block)
    omit_nan: bool = False  # nan_policy="omit": rows holding NaN are dropped per block
    plan: object = None  # daskmeans.kernels.KernelPlan of every step; None: per block


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
    part = _kernels.lloyd_partial(X, state.centers, w, plan=params.plan)
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
    centers[targets] = _take_rows(X, rows) if _is_sparse(X) else X[rows]
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

    With ``params.check`` (lazy input) dense rows are checked for NaN and
    infinity after each step, and only when its inertia is not finite: such
    rows always make it so, and the step's state is dropped with the raised
    error. The weights, and sparse blocks, are checked by the read
    (:class:`BlockReader`).
    """
    if state.stopped or block is None or block[0].shape[0] == 0:
        return state
    X, w = block
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
        with np.errstate(invalid="ignore") if params.check else contextlib.nullcontext():
            inertia, shift = minibatch_step(Xb, wb, state, params)
        if params.check and not math.isfinite(inertia) and not _is_sparse(Xb):
            # non-finite rows make the batch's inertia NaN or infinite (tested for every
            # kernel path): only then is the batch scanned, to tell them from an overflow
            check_block(Xb, wb)
        if params.early_stop and _converged(state, inertia, Xb.shape[0], shift, params):
            state.stopped = True
            break
    return state


# --------------------------------------------------------------------------- #
# Initialisation from a sample of the leading blocks
# --------------------------------------------------------------------------- #
def _pool_chunk(block, index: int, size: int, seq, check: bool = False) -> tuple:
    """Uniform sample of ``size`` rows (without replacement) of one block.

    ``check``: raise if the sampled rows hold NaN or infinity (the rest of the
    block is checked by its fold step, see :func:`fold_block`).
    """
    X, w = block
    take = min(size, X.shape[0])
    rows = np.sort(block_rng(seq, _POOL, index).choice(X.shape[0], take, replace=False))
    sample = _take_rows(X, rows) if _is_sparse(X) else X[rows]
    if check and not _is_sparse(X):
        check_block(sample, None)
    return sample, (np.ones(take) if w is None else w[rows].astype(np.float64))


def init_state(parts: list, spec: dict) -> FoldState:
    """Initial state from the pooled samples of the leading blocks.

    ``spec`` holds ``init`` (method name, callable or array), ``n_clusters``,
    ``n_init``, ``init_size``, ``seq``, ``tol`` and ``dtype``, and optionally
    ``plan``, the fit's kernel plan (the sample's own when absent). Every candidate
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
    plan = spec.get("plan")  # the fold's: the sample is small, the kernels the fit's
    S, sw, rng = _draw(pool, wts, seq, (_CANDIDATE, g), size)
    if callable(init):
        rs = np.random.RandomState(rng.integers(0, 2**31 - 1))
        C = check_centers("init (callable result)", init(S, k, rs), k, pool.shape[1],
                          spec["dtype"])
    elif init == "random":
        pos = np.flatnonzero(sw > 0)
        if len(pos) < k:
            raise InvalidInputError(
                f"init='random': the initial sample has {len(pos)} rows of positive weight, "
                f"fewer than n_clusters={k}; increase init_size."
            )
        C = S[rng.choice(pos, k, replace=False, p=sw[pos] / sw[pos].sum())]
    else:
        keep = sw > 0
        C = kmeans_plusplus(S[keep], sw[keep], k, rng, plan=plan)
    C = np.ascontiguousarray(C, dtype=spec["dtype"])
    C = refine_centers(S, sw, C, spec.get("init_lloyd_iter", 0), plan=plan)
    if spec["n_init"] == 1:
        return C, np.inf
    V, vw, _ = _draw(pool, wts, seq, (_VALIDATION,), size)
    return C, float(_kernels.lloyd_partial(V, C, vw, plan=plan)["inertia"][0])


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


def refine_centers(S: np.ndarray, sw: np.ndarray, C: np.ndarray, n_iter: int,
                   plan=None) -> np.ndarray:
    """At most ``n_iter`` weighted Lloyd iterations of ``C`` on the sample ``S``.

    Every centre moves to the weighted mean of the sample rows nearest to it;
    a centre that gets no weight stays where it is. Stops early once an
    iteration leaves every centre unchanged. Returns a new array in the
    dtype of ``C`` (``C`` itself when ``n_iter`` is 0). ``plan``: the kernels'
    (:func:`daskmeans.kernels.choose_plan`; chosen for ``S`` when None).
    """
    for _ in range(n_iter):
        part = _kernels.lloyd_partial(S, C, sw, plan=plan)
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

    Reads at positions ``j >= first_gated_read(n)`` wait for a fold task
    (:func:`read_gate`), of position ``j - LOOKAHEAD`` once the reads made
    at once are used up. Without an initialisation in the graph
    (``n_init_blocks`` 0) that is every read from ``LOOKAHEAD`` on. With one,
    the ``n_init_blocks`` blocks of the initial sample and the ``LOOKAHEAD``
    blocks after them are read at once: the initialisation runs on one
    thread while the others read on, instead of waiting for the fold to
    start (at most ``n_init_blocks + LOOKAHEAD`` blocks are then held).
    """
    return n_init_blocks + LOOKAHEAD if n_init_blocks else LOOKAHEAD


def read_gate(j: int, n_init_blocks: int) -> int | None:
    """Position of the fold task that the read at position ``j`` waits for (None: none).

    The reads before :func:`first_gated_read` start at once. After them the
    window of blocks read ahead of the fold shrinks by one block a read, from
    the ``n_init_blocks + LOOKAHEAD`` blocks read while the initialisation
    runs down to ``LOOKAHEAD``: the reads go on as the fold starts to work
    through the blocks read at once, instead of waiting until it has used
    all but ``LOOKAHEAD`` of them, and no more blocks are held than while the
    initialisation ran.
    """
    first = first_gated_read(n_init_blocks)
    if j < first:
        return None
    return j - max(LOOKAHEAD, first - (j - first))


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

    def __init__(self, x: tuple, w: tuple | None, index: int, omit_nan: bool = False,
                 buffers: BlockBuffers | None = None) -> None:
        self.index = index
        self.omit_nan = omit_nan
        self.x = x  # (graph, key) of the block of X
        self.w = w  # same for the weights, or None
        self.buffers = buffers  # shared by the readers of a fit

    def __call__(self, gate=None, check=False):
        if isinstance(gate, FoldState) and gate.stopped:
            return None
        from dask.local import get_sync

        pooled = self.buffers.active() if self.buffers is not None else contextlib.nullcontext()
        with pooled:
            X = get_sync(*self.x)
        X = X if _is_sparse(X) else np.ascontiguousarray(X)  # sparse: kept sparse
        w = None if self.w is None else np.asarray(get_sync(*self.w), dtype=np.float64)
        X, w = drop_nan_rows(X, w, self.omit_nan)
        if check:
            # here rather than in the fold task: reads run in parallel, the fold does not.
            # Dense rows are left to the fold (see fold_block): a scan of every block
            # would cost a few percent of the pass
            check_block(X, w, data=_is_sparse(X))
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
    """One :class:`BlockReader` per row block of ``X`` (and ``weights``), by block index.

    The readers share one :class:`daskmeans.io._buffers.BlockBuffers`: blocks
    that Zarr arrays opened by :func:`daskmeans.open_zarr` decode take the
    memory of earlier blocks that the fold is done with, instead of fresh pages.
    """
    xs = _block_graphs(X)
    ws = [None] * len(xs) if weights is None else _block_graphs(weights)
    buffers = BlockBuffers(max_buffers=BUFFERS)
    return [BlockReader(x, w, b, omit_nan, buffers)
            for b, (x, w) in enumerate(zip(xs, ws, strict=True))]


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
    check = params.check  # the reads check weights and sparse blocks, the fold dense rows
    token = tokenize(
        [r.x[1] for r in readers], order, repr(params),  # params hold check
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
            dsk[(pool, j)] = (_pool_chunk, (read, j), b, share, params.seq, check)
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
        g = read_gate(j, n_init_blocks)
        gate = None if g is None else (fold, g)
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
            parts.append(_pool_chunk(cache[b], b, share, params.seq, params.check))
        state = init_state(parts, init_spec)
    else:
        state = start
    for b in order:
        if state.stopped:
            break
        block = cache.pop(b) if b in cache else read(b)
        state = fold_block(state, block, params)
    return state
