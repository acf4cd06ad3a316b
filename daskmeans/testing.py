"""Helpers for testing code built on daskmeans (shipped, like numpy.testing).

:class:`CountingArray` counts block reads, which turns "one pass over the data
per iteration" into an assertion.
"""

from __future__ import annotations

import threading

import dask.array as da
import numpy as np

__all__ = ["CountingArray", "brute_force_lloyd", "counting_dask"]


class CountingArray:
    """A read-only array-like that counts how many times it is read.

    Wrapped with :func:`dask.array.from_array`, every task that reads a block
    calls ``__getitem__`` once, so ``reads / numblocks`` is the number of
    passes over the data.

    Parameters
    ----------
    data : numpy.ndarray
    """

    def __init__(self, data: np.ndarray):
        self.data = data
        self.shape = data.shape
        self.dtype = data.dtype
        self.ndim = data.ndim
        self.reads = 0
        self._lock = threading.Lock()

    def __getitem__(self, key):
        with self._lock:
            self.reads += 1
        return self.data[key]


def counting_dask(X: np.ndarray, rows: int) -> tuple[da.Array, CountingArray]:
    """A Dask array over ``X`` (blocks of ``rows`` rows, all columns) whose reads are counted.

    Returns
    -------
    array : dask.array.Array
    counter : CountingArray
        ``counter.reads`` is the number of blocks read so far.
    """
    counter = CountingArray(X)
    arr = da.from_array(counter, chunks=(rows,) + X.shape[1:], asarray=True, inline_array=False)
    counter.reads = 0  # from_array may peek at the data to build its meta
    return arr, counter


def brute_force_lloyd(X: np.ndarray, C: np.ndarray, w: np.ndarray | None = None) -> tuple:
    """Reference for one Lloyd sweep by explicit differences, in float64.

    Parameters
    ----------
    X : ndarray of shape (n, d)
    C : ndarray of shape (k, d)
    w : ndarray of shape (n,), optional

    Returns
    -------
    labels : ndarray of shape (n,)
    sq_dist : ndarray of shape (n,)
        Squared distance to the nearest centre.
    sums : ndarray of shape (k, d)
        Weighted sum of the rows of every cluster.
    counts : ndarray of shape (k,)
        Total weight of every cluster.
    inertia : float
    """
    D = ((X[:, None, :].astype(np.float64) - C[None, :, :].astype(np.float64)) ** 2).sum(-1)
    labels = D.argmin(1)
    dist = D[np.arange(len(X)), labels]
    w = np.ones(len(X)) if w is None else w
    sums = np.zeros(C.shape, dtype=np.float64)
    np.add.at(sums, labels, X.astype(np.float64) * w[:, None])
    counts = np.bincount(labels, weights=w, minlength=len(C))
    return labels, dist, sums, counts, float(dist @ w)
