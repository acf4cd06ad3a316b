"""Whether ``fit`` persists its input, and the active distributed client."""

from __future__ import annotations

import sys

import dask.array as da

__all__ = ["active_client", "persist_inputs", "resolve_persist", "wait_persisted"]

#: ``persist="auto"`` persists when the data takes at most this share of the
#: cluster's total worker memory limit (distributed starts spilling at 60 %).
AUTO_PERSIST_CLUSTER_FRACTION = 0.4


#: Without a distributed client, the share of the memory available on this machine.
AUTO_PERSIST_LOCAL_FRACTION = 0.25


def active_client():
    """The active ``distributed.Client``, or None (threaded scheduler).

    Without ``distributed`` imported there is no client: it is not imported
    here then (a NumPy fit on the threaded scheduler does not need it).
    """
    if sys.modules.get("distributed") is None:
        return None
    try:
        from distributed import get_client
    except ImportError:  # pragma: no cover - distributed is a dependency
        return None
    try:
        return get_client()
    except ValueError:
        return None


def _memory_budget() -> tuple[float, str]:
    """Bytes that persisted data may take under ``persist="auto"``, and where."""
    import psutil

    client = active_client()
    if client is None:
        avail = psutil.virtual_memory().available
        return AUTO_PERSIST_LOCAL_FRACTION * avail, "local memory"
    workers = client.scheduler_info(n_workers=-1).get("workers", {})
    host = psutil.virtual_memory().total
    total = sum((w.get("memory_limit") or host) for w in workers.values())
    return AUTO_PERSIST_CLUSTER_FRACTION * total, "cluster memory"


def resolve_persist(persist, nbytes: int, *, in_memory: bool) -> bool:
    """Decide whether ``fit`` persists its input before the passes.

    Parameters
    ----------
    persist : bool or "auto"
        The estimator parameter.
    nbytes : int
        Bytes of the (working dtype) data and weights.
    in_memory : bool
        The input was a NumPy array. It is persisted (shipped to the workers
        once instead of with every pass's graph) only on a distributed
        cluster; on the local scheduler it already is in memory.

    Returns
    -------
    bool
    """
    if persist is False:
        return False
    if in_memory and active_client() is None:
        return False
    if persist is True:
        return True
    budget, _ = _memory_budget()
    return nbytes <= budget


def persist_inputs(X: da.Array, weights):
    """Persist ``X`` (and the weights) on the active scheduler; one read of the data.

    The returned arrays keep the names of the originals, so graphs built on
    them read the persisted blocks. Dropping the returned arrays releases the
    memory.
    """
    import dask

    if weights is None:
        (X,) = dask.persist(X)
        return X, None
    return dask.persist(X, weights)


def wait_persisted(*arrays) -> None:
    """Block until persisted arrays are in (cluster) memory, so timings are honest."""
    client = active_client()
    if client is None:
        return
    from distributed import wait

    wait([a for a in arrays if a is not None])
