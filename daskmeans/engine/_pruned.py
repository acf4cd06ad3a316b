"""Pruned exact Lloyd on Dask arrays: one pass per iteration, bounds kept per block.

Every iteration is one :func:`daskmeans.engine._graph.block_reduce` pass (run
by a :class:`daskmeans.engine._graph.PassRunner`, as plain Lloyd's) whose
``kmeans-pruned-partial`` tasks call :func:`daskmeans.kernels._bounds.pruned_block`:
a row whose bounds prove that its label cannot change costs ``d`` operations
instead of ``k d``. The partial sums are combined by the same tree as plain
Lloyd's, and the labels equal plain Lloyd's (see :mod:`daskmeans.kernels._bounds`),
so the centres of every iteration are bitwise those of
:func:`daskmeans.engine._lloyd.lloyd` from the same start.

The per-row state (int32 label and float32 lower bound, 8 bytes a row) lives
between passes in a *bounds store*, keyed by block index and stamped with the
pass that wrote it (a block whose stamp is not that of the previous pass is
recomputed in full, so a failed or interrupted pass never leaves stale
bounds in use):

* :class:`MemoryStore`: a dictionary of NumPy arrays in this process, for
  dask's local schedulers (threads, sync). It holds ``8 N`` bytes, against
  ``4 d N`` for float32 data (1/32 of it at d = 64).
* :class:`WorkerStore`: the same in the memory of the worker process that
  computed the block, for a ``distributed`` cluster: nothing written, nothing
  moved; every pass pins a block's task to the same worker (a loose
  restriction), and a block that runs elsewhere is recomputed in full.
* :class:`ZarrStore`: two Zarr arrays in a temporary directory (block by
  block: ``(n_blocks, max_block_rows)``, one chunk per block), for a
  ``distributed`` cluster whose workers share that file system, when
  asked for. Every pass reads and writes ``8 N`` bytes there (plus a stamp
  of 8 bytes per block), i.e. 1/32 of a float32 read pass at d = 64.

A pass in which a cluster comes out empty is done again as a plain pass with
the farthest rows (exactly as :func:`daskmeans.engine._lloyd.lloyd` does), and
the next pass recomputes every row's bounds.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import tempfile
import threading
import uuid
from collections.abc import Callable

import dask.array as da
import numpy as np

from .. import kernels as _kernels
from .._persist import active_client
from ..kernels import _bounds
from ._graph import PassRunner, _local_scheduler, compute_passes
from ._lloyd import (
    LloydState,
    _tol_from_moments,
    fit_plan,
    partial_pass,
    prepare_block,
    update_centers,
)
from ._prep import normalize_rows

__all__ = ["AUTO_MIN_K", "AUTO_MIN_K_COLUMNS", "MemoryStore", "WorkerStore", "ZarrStore",
           "auto_min_k", "make_store",
           "pruned_lloyd", "use_pruned"]

#: Smallest k for which ``algorithm="auto"`` prunes when the kernels compare
#: rows with centres by BLAS products (no column tiles): there, a pass that
#: prunes nothing costs more than plain Lloyd's (benchmarks/RESULTS.md).
AUTO_MIN_K = 4096
#: The same with the column tiles, where a pass that prunes nothing costs
#: about plain Lloyd's: from 1,024 centres pruning saved time within the
#: first iterations, at 256 it broke even (benchmarks/RESULTS.md).
AUTO_MIN_K_COLUMNS = 1024


def auto_min_k(dtype=np.float32, n_features: int | None = None) -> int:
    """Smallest k for which ``algorithm="auto"`` prunes, for this kernel plan.

    :data:`AUTO_MIN_K_COLUMNS` when plain Lloyd's sweeps of ``dtype`` data
    with that many centres run the column tiles (then pruned Lloyd's
    recomputed rows do too, see :mod:`daskmeans.kernels._bounds`), else
    :data:`AUTO_MIN_K`. ``n_features`` unknown: as float32 data.
    """
    k = AUTO_MIN_K_COLUMNS
    plan = _kernels.choose_plan(dtype, k, n_features or 1, 1 << 40)
    if plan.compiled and plan.whole_block and plan.uses_columns(dtype, k, 1, n_features):
        return AUTO_MIN_K_COLUMNS
    return AUTO_MIN_K


def use_pruned(algorithm: str, n_clusters: int, n_groups: int, *, dtype=np.float32,
               n_features: int | None = None) -> bool:
    """Whether a fit with ``algorithm`` runs :func:`pruned_lloyd`.

    ``"pruned"`` (and its synonym ``"elkan"``) always; ``"auto"`` for a
    single group of centres with at least :func:`auto_min_k` of them (several
    ``n_init`` groups share plain Lloyd's passes instead).
    """
    if algorithm in ("pruned", "elkan"):
        return True
    if algorithm == "auto":
        if n_groups != 1 or n_clusters < min(AUTO_MIN_K, AUTO_MIN_K_COLUMNS):
            return False  # no plan asked for: a small fit imports no numba
        return n_clusters >= auto_min_k(dtype, n_features)
    return False


class MemoryStore:
    """Per-block bounds in this process's memory (dask's local schedulers)."""

    def __init__(self) -> None:
        self._blocks: dict = {}
        self._token = uuid.uuid4().hex

    def __dask_tokenize__(self):
        return ("daskmeans-bounds-memory", self._token)

    def get(self, index: int, stamp: int):
        """The block's ``(labels, lower)`` if written by pass ``stamp``, else None."""
        entry = self._blocks.get(index)
        if entry is None or entry[0] != stamp:
            return None
        return entry[1]

    def put(self, index: int, stamp: int, state) -> None:
        self._blocks[index] = (stamp, state)

    @property
    def nbytes(self) -> int:
        """Bytes held."""
        return sum(a.nbytes for _, st in self._blocks.values() for a in st)

    def close(self) -> None:
        self._blocks.clear()


#: Bounds held by this process for :class:`WorkerStore` instances, by their
#: token: ``{token: {block index: (stamp, state)}}``. On a distributed worker
#: this is the worker process's memory.
_PROCESS_BOUNDS: dict = {}
_PROCESS_LOCK = threading.Lock()


def _drop_process_bounds(token: str) -> int:
    """Forget a :class:`WorkerStore`'s bounds in this process; returns the bytes freed."""
    with _PROCESS_LOCK:
        blocks = _PROCESS_BOUNDS.pop(token, {})
    return sum(a.nbytes for _, st in blocks.values() for a in st)


class WorkerStore:
    """Per-block bounds in the memory of the worker that computed the block.

    For a ``distributed`` cluster: nothing is written to disk (the workers
    need no shared file system) and nothing travels between workers. A
    block's task that runs on another worker than in the previous pass finds
    no bounds there, or stale ones (their stamp tells), and computes the
    block in full, as after a lost worker: results never depend on where
    tasks ran, only the work saved does. :meth:`close` drops the bounds on
    every worker of ``client``.

    Parameters
    ----------
    client : distributed.Client, optional
        The client whose workers :meth:`close` clears (not pickled).
    """

    def __init__(self, client=None) -> None:
        self._token = uuid.uuid4().hex
        self._client = client

    def __dask_tokenize__(self):
        return ("daskmeans-bounds-worker", self._token)

    def __getstate__(self):
        return {"_token": self._token, "_client": None}

    def get(self, index: int, stamp: int):
        entry = _PROCESS_BOUNDS.get(self._token, {}).get(index)
        if entry is None or entry[0] != stamp:
            return None
        return entry[1]

    def put(self, index: int, stamp: int, state) -> None:
        with _PROCESS_LOCK:
            _PROCESS_BOUNDS.setdefault(self._token, {})[index] = (stamp, state)

    def placement(self):
        """A context in which a pass's block tasks prefer the same worker every pass.

        Task ``b`` of a pass (a fixed group of blocks) is annotated with the
        ``b``-th worker, by sorted address, modulo their number, as a loose
        restriction (``allow_other_workers``): without it the scheduler may
        place a block's reading task on another worker in each pass, which
        leaves its bounds behind. Nothing otherwise.
        """
        import contextlib

        if self._client is None:
            return contextlib.nullcontext()
        try:
            addrs = sorted(self._client.scheduler_info()["workers"])
        except Exception:  # noqa: BLE001 - no placement, only less reuse
            return contextlib.nullcontext()
        if not addrs:
            return contextlib.nullcontext()

        def where(key):
            if isinstance(key, tuple) and len(key) == 2 and "-partial-" in str(key[0]):
                return [addrs[int(key[1]) % len(addrs)]]
            return list(addrs)

        import dask

        return dask.annotate(workers=where, allow_other_workers=True)

    @property
    def nbytes(self) -> int:
        """Bytes held in this process (the workers' share is not counted)."""
        blocks = _PROCESS_BOUNDS.get(self._token, {})
        return sum(a.nbytes for _, st in blocks.values() for a in st)

    def close(self) -> None:
        _drop_process_bounds(self._token)
        if self._client is not None:
            try:
                self._client.run(_drop_process_bounds, self._token)
            except Exception:  # noqa: BLE001 - a closed cluster holds nothing
                pass


class ZarrStore:
    """Per-block bounds in Zarr arrays on disk (one chunk per block).

    Parameters
    ----------
    path : str
        A directory (created; removed by :meth:`close` when ``owned``).
    n_blocks, max_rows : int
        Blocks of the data and rows of the largest one.
    owned : bool
        Remove ``path`` on :meth:`close`.
    """

    def __init__(self, path: str, n_blocks: int, max_rows: int, *, owned: bool = True) -> None:
        import zarr

        self.path = path
        self.owned = owned
        self.n_blocks = n_blocks
        self.max_rows = max(1, int(max_rows))
        shape = (n_blocks, self.max_rows)
        chunks = (1, self.max_rows)
        zarr.open_array(os.path.join(path, "labels"), mode="w", shape=shape, chunks=chunks,
                        dtype="int32", fill_value=0)
        zarr.open_array(os.path.join(path, "lower"), mode="w", shape=shape, chunks=chunks,
                        dtype="float32", fill_value=0)
        # stamp and row count of every block (one chunk per block: no two writers share one)
        zarr.open_array(os.path.join(path, "stamp"), mode="w", shape=(n_blocks, 2),
                        chunks=(1, 2), dtype="int64", fill_value=-1)

    def __dask_tokenize__(self):
        return ("daskmeans-bounds-zarr", self.path)

    def _arr(self, name):
        cache = self.__dict__.setdefault("_open", {})
        if name not in cache:
            import zarr

            cache[name] = zarr.open_array(os.path.join(self.path, name), mode="r+")
        return cache[name]

    def __getstate__(self):
        state = dict(self.__dict__)
        state.pop("_open", None)  # opened arrays stay in the process that opened them
        return state

    def get(self, index: int, stamp: int):
        stamp_rows = self._arr("stamp")[index]
        if int(stamp_rows[0]) != stamp:
            return None
        n = int(stamp_rows[1])
        return self._arr("labels")[index, :n], self._arr("lower")[index, :n]

    def put(self, index: int, stamp: int, state) -> None:
        labels, lower = state
        n = len(labels)
        if n > self.max_rows:
            raise ValueError(f"internal: block {index} has {n} rows, store holds {self.max_rows}")
        self._arr("stamp")[index] = np.array([-1, n])  # invalid while the rows are written
        self._arr("labels")[index, :n] = labels
        self._arr("lower")[index, :n] = lower
        self._arr("stamp")[index] = np.array([stamp, n])

    @property
    def nbytes(self) -> int:
        return 0

    def close(self) -> None:
        if self.owned:
            shutil.rmtree(self.path, ignore_errors=True)


def make_store(X: da.Array, kind: str = "auto", directory: str | None = None):
    """A bounds store for passes over ``X``.

    ``kind="auto"``: :class:`MemoryStore` under dask's local schedulers,
    :class:`WorkerStore` on a ``distributed`` cluster (the workers' memory).
    ``"zarr"``: :class:`ZarrStore` in a temporary directory (in ``directory``
    when given), which the workers must share.
    """
    if kind not in ("auto", "memory", "worker", "zarr"):
        raise ValueError("bounds store must be 'auto', 'memory', 'worker' or 'zarr'; "
                         f"got {kind!r}.")
    rows = X.chunks[0]
    known = not any(math.isnan(r) for r in rows)
    local = _local_scheduler([X])
    if kind == "memory" or (kind == "auto" and local):
        return MemoryStore()
    if kind in ("auto", "worker"):
        return WorkerStore(None if local else active_client())
    if not known:
        raise ValueError("a Zarr bounds store needs blocks of known size; compute_chunk_sizes()")
    path = tempfile.mkdtemp(prefix="daskmeans-bounds-", dir=directory)
    return ZarrStore(path, len(rows), max(rows) if rows else 1)


def _pruned_chunk(X, w, index, *, centers, cm2t, c_sq, coefs, moved, stamp, store, check,
                  with_moments, prep=None, plan=None):
    X, w, valid = prepare_block(X, w, prep, check)
    old = store.get(index, stamp - 1) if moved is not None else None
    out, new = _bounds.pruned_block(X, w, centers, old, moved, coefs=coefs, cm2t=cm2t,
                                    c_sq=c_sq, plan=plan)
    store.put(index, stamp, new)
    out["n_rows"] = X.shape[0]
    out["n_reused"] = X.shape[0] if old is not None else 0  # rows that found their bounds
    if with_moments:
        out["moments"] = _kernels.moments(X if valid is None else X[valid], plan=plan)
    if prep is not None:
        if prep.normalize:
            out["inertia"] = out["inertia"] * 0.5
        out["n_omitted"] = 0 if valid is None else int(np.count_nonzero(~valid))
    return out


def _pruned_combine(parts):
    out = _kernels.combine_partials(parts)
    for key in ("n_pruned", "n_rows", "n_reused", "n_omitted"):
        if key in parts[0]:
            out[key] = sum(p[key] for p in parts)
    return out


def pruned_lloyd(
    X: da.Array,
    weights,
    state: LloydState,
    *,
    max_iter: int,
    tol: float,
    split_every=None,
    check_first: bool = False,
    callback: Callable[[dict], None] | None = None,
    on_iteration: Callable[[LloydState], None] | None = None,
    verbose: int = 0,
    prep=None,
    store="auto",
) -> LloydState:
    """Lloyd iterations with pruned distance computations, one pass each.

    Same arguments, convergence rule and result as
    :func:`daskmeans.engine._lloyd.lloyd` (same centres, bitwise, from the
    same state); the inertia of an iteration is computed from exact
    distances rather than from expanded products, so it may differ from
    plain Lloyd's in its last digits. Groups of centres (``n_init``) run one
    after the other, each with passes of its own. ``store`` is a bounds
    store, or its kind for :func:`make_store`. Callback events carry
    ``pruned``, the fraction of rows whose distances were skipped.
    """
    own_store = isinstance(store, str)
    if own_store:
        store = make_store(X, store)
    check = check_first
    if state.tol_abs is None and tol == 0:
        state.tol_abs = 0.0
    runner = PassRunner(X, weights, _pruned_chunk, _pruned_combine, name="kmeans-pruned",
                        split_every=split_every)
    plan = fit_plan(X, state.centers, verbose)  # plain Lloyd's: same sums, same centres
    place = getattr(store, "placement", contextlib.nullcontext)
    stamp = 0
    try:
        for g in np.flatnonzero(state.active):
            moved = None
            while state.active[g]:
                C = state.centers[g]
                need_moments = state.tol_abs is None
                stamp += 1
                consts = {
                    "centers": np.ascontiguousarray(C),
                    "cm2t": np.ascontiguousarray((C * C.dtype.type(-2)).T),
                    "c_sq": _kernels.sq_norms(C),
                    "coefs": _bounds.error_coefs(C, C.dtype),
                    "moved": moved,
                    "stamp": stamp,
                    "store": store,
                    "check": check,
                    "with_moments": need_moments,
                    "plan": plan,
                }
                if prep is not None:
                    consts["prep"] = prep
                with place():
                    res = runner(consts)
                state.n_passes += 1
                check = False
                far = None
                if (res["counts"] == 0).any():
                    # relocate empty clusters as plain Lloyd does: its pass with the far rows
                    (res2,) = compute_passes(partial_pass(
                        X, weights, [C], n_far=len(C), split_every=split_every,
                        name="kmeans-relocate", prep=prep, plan=plan))
                    state.n_passes += 1
                    far = res2["far"]
                if need_moments:
                    state.tol_abs = _tol_from_moments(res["moments"], tol)
                state.n_omitted = int(res.get("n_omitted", 0))
                new, sizes, _ = update_centers(C, res["sums"], res["counts"], far, 0, 0)
                if prep is not None and prep.normalize:
                    new = normalize_rows(new, old=C)
                # relocated rows changed labels behind their bounds: recompute them all
                moved = None if far is not None else _bounds.drift(C, new)
                shift = state.advance(g, new, res["inertia"][0], sizes, max_iter)
                pruned = res["n_pruned"] / max(1, res["n_rows"])
                it = int(state.n_iter[g])
                if verbose:
                    print(
                        f"[daskmeans] iteration {it}: inertia {state.inertia[g]:.6g}, "
                        f"shift {shift:.3g} (tol {state.tol_abs:.3g}), "
                        f"{100 * pruned:.1f} % of rows pruned"
                    )
                if on_iteration is not None:
                    on_iteration(state)
                if callback is not None:
                    callback({
                        "phase": "lloyd",
                        "iteration": it,
                        "max_iter": max_iter,
                        "inertia": float(state.inertia[g]),
                        "shift": shift,
                        "n_passes": state.n_passes,
                        "pruned": float(pruned),
                        "reused": float(res["n_reused"] / max(1, res["n_rows"])),
                    })
    finally:
        if own_store:
            store.close()
    return state

