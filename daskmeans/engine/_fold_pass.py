"""One pass of the mini-batch fold, run where it should be.

:func:`run_pass` runs a pass (:mod:`daskmeans.engine._fold`) in this process
for NumPy data (:func:`~daskmeans.engine._fold.fold_local`), on local threads
without dask's scheduler (:class:`FoldThreads`), or as the Dask graph of
:func:`~daskmeans.engine._fold.fold_graph` on the scheduler.

The graph is a chain of fold tasks beside gated block reads. Under dask's
threaded scheduler every task's end goes through the scheduler's thread before
the next task starts: a read ends, the scheduler wakes and hands the fold step
to the chain's thread; the step ends, the scheduler wakes and hands the read it
released to a reading thread. With the chain on a thread of its own beside one
reading thread per core, the cores are oversubscribed too, and a step finishing
its compiled call waits for the interpreter lock held by a thread that waits
for a core.

:class:`FoldThreads` runs the same pass with ``n`` threads in all (the calling
thread and ``n - 1`` of its own), each taking the next piece of work itself:
the next fold step when its block is read and no other thread is folding,
otherwise an initialisation candidate, otherwise the next read that its gate
allows. Every piece is the call the graph's task would make, with the same
arguments, and the steps run in the pass's order on the states of the steps
before them, so the result is bitwise the graph's; the blocks held at once are
bounded as in the graph (:func:`daskmeans.engine._fold.read_gate`).

:func:`fold_threads` decides when a pass runs this way: under dask's own
threaded scheduler (no client, no configured pool) and with no dask callbacks
active (a ``ProgressBar`` or diagnostics then see the graph's tasks).
``benchmarks/bench_minibatch.py`` (method ``graph``) measures the fold both ways.
"""

from __future__ import annotations

import contextlib
import threading

from dask.delayed import Delayed

from . import _fold
from ._fold import FoldParams, FoldState, fold_graph, fold_local
from ._graph import compute_passes

__all__ = ["THREADS", "FoldThreads", "fold_threads", "run_pass"]

#: Whether a pass under dask's own threaded scheduler runs on :class:`FoldThreads`;
#: False runs the graph there too (the benchmarks compare).
THREADS = True


def run_pass(readers: list, order, start: FoldState | None, params: FoldParams, *,
             in_memory: bool, init_spec: dict | None = None) -> FoldState:
    """One pass of the fold: in this process for NumPy data, which is here already
    (:func:`~daskmeans.engine._fold.fold_local`); on local threads
    (:class:`FoldThreads`, see :func:`fold_threads`); else on the scheduler
    (:func:`~daskmeans.engine._fold.fold_graph`).

    ``readers`` come from :func:`~daskmeans.engine._fold.block_readers`, built
    once per fit (slicing ``X.blocks[b]`` for every block and pass costs
    O(blocks) each).
    """
    if in_memory:
        return fold_local(lambda b: readers[b](), order, start, params, init_spec)
    if THREADS and (n := fold_threads()):
        # local threads: the same calls without the scheduler's hand-offs (and no graph)
        return FoldThreads(readers, order, start, params, init_spec, n)()
    graph = fold_graph(readers, order, start, params, init_spec=init_spec)
    # BLAS limited as for the other passes; the chain of the fold gets its own thread
    (state,) = compute_passes(graph, chain=True)
    return state


class _FoldGraph:
    """Stands for a pass's graph (a Delayed) when asking which scheduler would run it."""

    __dask_scheduler__ = staticmethod(Delayed.__dask_scheduler__)


def fold_threads() -> int | None:
    """Threads for a pass of the fold run by :class:`FoldThreads`, or None when it
    goes through the scheduler (:func:`~daskmeans.engine._fold.fold_graph`).

    The threads are dask's ``num_workers`` (one a core by default).
    """
    import dask
    import dask.threaded
    from dask.callbacks import Callback
    from dask.system import CPU_COUNT

    from ._blocks import scheduler_of

    if dask.config.get("pool", None) is not None or Callback.active:
        return None
    try:
        get = scheduler_of([_FoldGraph()])
    except Exception:  # noqa: BLE001 - be conservative: the graph
        return None
    if get is not dask.threaded.get:
        return None
    return max(1, int(dask.config.get("num_workers", None) or CPU_COUNT))


_DONE = object()


class FoldThreads:
    """One pass of the fold (:func:`daskmeans.engine._fold.fold_graph`'s) on threads.

    Parameters
    ----------
    readers, order, start, params, init_spec
        As for :func:`daskmeans.engine._fold.fold_graph`.
    n_threads : int
        Threads at most, the calling thread included: no more are started than
        can have work at once, the reads the gates let run together and a fold
        step (:func:`daskmeans.engine._fold.first_gated_read` plus one), nor more
        than there are blocks.
    """

    def __init__(self, readers: list, order, start, params, init_spec: dict | None,
                 n_threads: int) -> None:
        self.readers = readers
        self.order = [int(b) for b in order]
        self.params = params
        self.init_spec = init_spec
        self.cond = threading.Condition()
        self.blocks: dict = {}  # position -> (X, w) or None, read and not yet folded
        self.next_read = 0  # position of the next block to read
        self.folded = -1  # position of the last step folded
        self.folding = False
        self.state = start  # the state after step ``folded`` (None: not initialised yet)
        self.error: BaseException | None = None
        self.n_init_blocks = 0
        if init_spec is not None:
            self.shares = _fold.init_samples(self.order, init_spec)
            self.n_init_blocks = len(self.shares)
            self.parts: list = [None] * self.n_init_blocks
            n_cand = init_spec["n_init"] if _fold._seeded(init_spec) else 0
            self.cands: list = [None] * n_cand
            self.next_cand = 0
            self.choosing = False
        useful = _fold.first_gated_read(self.n_init_blocks) + 1
        self.n_threads = max(1, min(n_threads, useful, len(self.order)))

    # ----------------------------------------------------------------------- #
    def __call__(self):
        """Run the pass; returns the :class:`~daskmeans.engine._fold.FoldState` after it."""
        from ._blocks import _shared_blas_limit

        # threads of the pass's own (a shared pool would be shared with fits in other
        # threads, whose passes would hold it); starting one costs far less than a block
        threads = [threading.Thread(target=self._work, name=f"daskmeans-fold-{i}",
                                    daemon=True) for i in range(1, self.n_threads)]
        limit = _shared_blas_limit() if self.n_threads >= 2 else contextlib.nullcontext()
        with limit:
            try:
                for t in threads:
                    t.start()
                self._work()
            finally:
                with self.cond:  # an interrupt of this thread stops the others too
                    if self.error is None and self.folded < len(self.order) - 1:
                        self.error = RuntimeError("the fold was interrupted")
                    self.cond.notify_all()
                for t in threads:
                    if t.ident is not None:
                        t.join()
        if self.error is not None:
            raise self.error
        return self.state

    def _work(self) -> None:
        """Take pieces of work until the pass is done or has failed."""
        while True:
            with self.cond:
                task = self._next()
                while task is None:
                    self.cond.wait()
                    task = self._next()
            if task is _DONE:
                return
            try:
                task()
            except BaseException as exc:  # noqa: BLE001 - handed to the calling thread
                with self.cond:
                    if self.error is None:
                        self.error = exc
                    self.cond.notify_all()
                return

    def _next(self):
        """The next piece of work (a callable), None to wait, or ``_DONE``; under the lock."""
        if self.error is not None or self.folded == len(self.order) - 1:
            return _DONE
        pos = self.folded + 1
        if self.state is not None and not self.folding and pos in self.blocks:
            self.folding = True
            return lambda: self._fold(pos)
        if self.state is None and self.init_spec is not None:
            if all(p is not None for p in self.parts):
                if self.next_cand < len(self.cands):
                    g = self.next_cand
                    self.next_cand += 1
                    return lambda: self._candidate(g)
                if not self.choosing and all(c is not None for c in self.cands):
                    self.choosing = True
                    return self._choose
        j = self.next_read
        if j < len(self.order):
            gate = _fold.read_gate(j, self.n_init_blocks)
            if gate is None or self.folded >= gate:
                self.next_read += 1
                return lambda: self._read(j, gate is not None)
        return None

    # ----------------------------------------------------------------------- #
    def _read(self, j: int, gated: bool) -> None:
        # the graph's read gets the state of the step it waits for, and skips the read
        # when that state has stopped; the state now is that one or a later one, and a
        # stopped state stays stopped, so every step after it passes the state on as is
        gate = self.state if gated else None
        block = self.readers[self.order[j]](gate, self.params.check)
        part = None
        if j < self.n_init_blocks:
            b, share = self.shares[j]
            part = _fold._pool_chunk(block, b, share, self.params.seq, self.params.check)
        with self.cond:
            self.blocks[j] = block
            if part is not None:
                self.parts[j] = part
            self.cond.notify_all()

    def _fold(self, pos: int) -> None:
        with self.cond:
            block = self.blocks.pop(pos)
            state = self.state
        state = _fold.fold_block(state, block, self.params)
        with self.cond:
            self.state = state
            self.folded = pos
            self.folding = False
            self.cond.notify_all()

    def _candidate(self, g: int) -> None:
        cand = _fold.init_candidate(self.parts, self.init_spec, g)
        with self.cond:
            self.cands[g] = cand
            self.cond.notify_all()

    def _choose(self) -> None:
        state = _fold.choose_candidate(self.cands, self.parts, self.init_spec)
        with self.cond:
            self.state = state
            self.cond.notify_all()
