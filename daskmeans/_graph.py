"""Graph building: map a kernel over row blocks and combine by a tree.

This is the only module that writes task graphs by hand. A *pass* is one
:func:`block_reduce` graph computed once: every row block of ``X`` is read by
exactly one ``<name>-partial`` task, whose small result travels up a tree of
``<name>-combine`` tasks with fan-in ``split_every``. No arithmetic on data
happens here; the functions passed in do it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import dask
import dask.array as da
from dask.base import tokenize
from dask.delayed import Delayed
from dask.highlevelgraph import HighLevelGraph

__all__ = ["DEFAULT_SPLIT_EVERY", "block_reduce", "compute_passes", "resolve_split_every"]

#: Fan-in of the combine tree when neither the caller nor dask's config sets one.
DEFAULT_SPLIT_EVERY = 8


def resolve_split_every(split_every: int | None) -> int:
    """Return the tree fan-in: the argument, dask's ``split_every`` config, or 8."""
    if split_every is None:
        split_every = dask.config.get("split_every", None)
        if isinstance(split_every, dict) or split_every is None:
            split_every = DEFAULT_SPLIT_EVERY
    return max(2, int(split_every))


def _call_chunk(func, block, weights, index, consts):
    return func(block, weights, index, **consts)


def _call_combine(func, parts):
    return func(parts)


def block_reduce(
    X: da.Array,
    weights: da.Array | None,
    chunk: Callable[..., Any],
    combine: Callable[[list], Any],
    *,
    name: str,
    split_every: int | None = None,
    consts: dict | None = None,
    finalize: Callable[[Any], Any] | None = None,
) -> Delayed:
    """Build a one-pass tree reduction over the row blocks of ``X``.

    Parameters
    ----------
    X : dask.array.Array of shape (n, d)
        Must have a single block along axis 1.
    weights : dask.array.Array of shape (n,) or None
        Chunked like the rows of ``X``.
    chunk : callable
        ``chunk(block, weight_block_or_None, block_index, **consts)`` returns a
        small result for one block.
    combine : callable
        ``combine(list_of_results)`` merges results of ``chunk`` or of itself.
    name : str
        Prefix of the task names, e.g. ``"kmeans"`` gives ``kmeans-partial``,
        ``kmeans-combine`` and ``kmeans-result`` in the dashboard.
    split_every : int, optional
        Fan-in of the combine tree (see :func:`resolve_split_every`).
    consts : dict, optional
        Small keyword arguments for ``chunk`` (centres, flags); stored once in
        the graph and shared by every partial task.
    finalize : callable, optional
        Applied to the root of the tree, in the ``<name>-result`` task.

    Returns
    -------
    dask.delayed.Delayed
        Computing it reads every block of ``X`` exactly once.
    """
    if X.numblocks[1] != 1:
        raise ValueError("internal: X must have one block along the features axis")
    fan_in = resolve_split_every(split_every)
    consts = consts or {}
    token = tokenize(X.name, None if weights is None else weights.name, chunk, combine, consts, fan_in, finalize)
    const_key = f"{name}-consts-{token}"
    part = f"{name}-partial-{token}"
    dsk: dict = {const_key: consts}
    n_blocks = X.numblocks[0]
    for i in range(n_blocks):
        wkey = None if weights is None else (weights.name, i)
        dsk[(part, i)] = (_call_chunk, chunk, (X.name, i, 0), wkey, i, const_key)
    level = [(part, i) for i in range(n_blocks)]
    depth = 0
    comb = f"{name}-combine-{token}"
    while len(level) > 1:
        nxt = []
        for j in range(0, len(level), fan_in):
            key = (comb, depth, j // fan_in)
            dsk[key] = (_call_combine, combine, list(level[j : j + fan_in]))
            nxt.append(key)
        level = nxt
        depth += 1
    out = f"{name}-result-{token}"
    root = level[0]
    dsk[out] = (finalize, root) if finalize is not None else (_identity, root)
    deps = [X] if weights is None else [X, weights]
    graph = HighLevelGraph.from_collections(out, dsk, dependencies=deps)
    return Delayed(out, graph)


def _identity(x):
    return x


def compute_passes(*passes: Delayed) -> tuple:
    """Compute several one-pass reductions together (they share the reads).

    Uses the active ``distributed.Client`` when there is one, dask's
    configured scheduler otherwise (threads by default).
    """
    return dask.compute(*passes)
