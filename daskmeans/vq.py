"""``scipy.cluster.vq`` for NumPy and Dask arrays, on the daskmeans kernels.

The four functions keep SciPy 1.17's signatures, semantics and return types:
NumPy input gives NumPy output; Dask (or Zarr) input is read block by block,
one pass per iteration, and the per-row results of :func:`vq` stay lazy.

- :func:`whiten` divides every feature by its standard deviation.
- :func:`vq` assigns every observation to its nearest code (codes as int32,
  Euclidean, not squared, distances).
- :func:`kmeans` runs k-means ``iter`` times from random observations and
  keeps the codebook of lowest *distortion* (mean Euclidean distance); each
  run stops when the distortion changes by at most ``thresh``; codes that
  lose all their observations are dropped.
- :func:`kmeans2` runs exactly ``iter`` Lloyd iterations from
  ``minit`` = "random" (Gaussian with the data's mean and covariance),
  "points", "++" or "matrix"; empty clusters keep their previous centroid
  and warn (or raise :class:`ClusterError` with ``missing="raise"``).

Examples
--------
>>> import numpy as np
>>> from daskmeans.vq import kmeans2, vq
>>> X = np.array([[0.0, 0.0], [0.1, 0.0], [5.0, 5.0], [5.1, 5.0]])
>>> centroid, label = kmeans2(X, X[[0, 2]], minit="matrix")
>>> label.tolist()
[0, 0, 1, 1]
>>> code, dist = vq(X, centroid)
>>> code.dtype.name
'int32'
"""

from __future__ import annotations

import math
import warnings
from numbers import Integral

import dask.array as da
import numpy as np

from . import kernels as _kernels
from ._validation import as_float_dtype
from .engine._graph import block_reduce, compute_passes

__all__ = ["ClusterError", "kmeans", "kmeans2", "vq", "whiten"]


class ClusterError(Exception):
    """Raised by :func:`kmeans2` with ``missing="raise"`` when a cluster is empty."""


_MINITS = ("random", "points", "++", "matrix")
_MISSING = ("warn", "raise")


# --------------------------------------------------------------------------- #
# input handling
# --------------------------------------------------------------------------- #
def _is_lazy(obj) -> bool:
    return isinstance(obj, da.Array) or (type(obj).__module__ or "").startswith("zarr")


def _as_obs(obs, name: str, check_finite: bool, dtype=None):
    """(X, lazy, was_1d): X 2-D NumPy or Dask (one column block) of a float dtype."""
    from ._sparse import is_sparse_input

    if is_sparse_input(obs):
        raise TypeError(
            f"{name} is a sparse matrix; daskmeans.vq, like scipy.cluster.vq, takes dense "
            "arrays. daskmeans.KMeans and MiniBatchKMeans take sparse input."
        )
    lazy = _is_lazy(obs)
    if lazy:
        X = obs if isinstance(obs, da.Array) else da.from_array(obs, chunks=obs.chunks)
    else:
        X = np.asarray(obs)
    if X.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {X.dtype}.")
    was_1d = X.ndim == 1
    if was_1d:
        X = X.reshape(-1, 1)
    if X.ndim != 2:
        raise ValueError("Input of rank > 2 is not supported.")
    work = np.dtype(dtype) if dtype is not None else as_float_dtype(X.dtype)
    if X.dtype != work:
        X = X.astype(work)  # lazy and per block for Dask input
    if lazy:
        if X.numblocks[1] != 1:
            X = X.rechunk({1: -1})
        if check_finite:
            X = X.map_blocks(_finite_block, dtype=X.dtype)
    elif check_finite and not np.isfinite(X).all():
        raise ValueError("array must not contain infs or NaNs")
    return X, lazy, was_1d


def _finite_block(block):
    if not np.isfinite(block).all():
        raise ValueError("array must not contain infs or NaNs")
    return block


def _rng(rng, seed):
    """The random source SciPy would use for ``rng``/``seed``.

    ``rng`` goes through :func:`numpy.random.default_rng` (an int, a
    ``Generator``, a ``RandomState`` or a ``SeedSequence``); the older
    ``seed`` keeps its meaning (an int seeds a ``RandomState``; a
    ``Generator`` or a ``RandomState`` is used as it is). Neither given: NumPy's
    global ``RandomState``, so ``numpy.random.seed`` makes a run repeatable, as
    in SciPy.
    """
    if rng is not None and seed is not None:
        raise TypeError("pass rng or seed (its older name), not both")
    if seed is not None:
        if isinstance(seed, np.random.RandomState | np.random.Generator):
            return seed
        if isinstance(seed, Integral | np.integer):
            return np.random.RandomState(seed)
        raise ValueError(
            f"seed must be an int, a numpy.random.Generator or a numpy.random.RandomState, "
            f"got {seed!r}"
        )
    if rng is None:
        return np.random.mtrand._rand
    return np.random.default_rng(rng)


def _randint(gen, n: int) -> int:
    """One integer in [0, n) from a ``Generator`` or a ``RandomState``."""
    if isinstance(gen, np.random.Generator):
        return int(gen.integers(0, n))
    return int(gen.randint(0, n))


def _rows(X, idx) -> np.ndarray:
    """Rows ``idx`` of X as NumPy (reads only the blocks holding them for Dask)."""
    idx = np.asarray(idx, dtype=np.intp)
    if isinstance(X, da.Array):
        return np.asarray(X[idx].compute())
    return X[idx]


# --------------------------------------------------------------------------- #
# whiten and vq
# --------------------------------------------------------------------------- #
def whiten(obs, check_finite=None):
    """Divide every feature (column) by its standard deviation.

    Parameters
    ----------
    obs : ndarray or dask.array.Array of shape (M, N)
    check_finite : bool, optional
        Check for NaN and infinity. Default: True for NumPy input, False for
        (lazy) Dask input.

    Returns
    -------
    ndarray or dask.array.Array of shape (M, N)
        Columns with standard deviation zero are left unchanged (with a
        RuntimeWarning when ``check_finite`` is on).
    """
    lazy = _is_lazy(obs)
    if check_finite is None:
        check_finite = not lazy
    X, lazy, was_1d = _as_obs(obs, "obs", check_finite, dtype=None)
    if was_1d:
        X = X[:, 0]
    std = X.std(axis=0)
    if lazy:
        return X / da.where(std == 0, 1.0, std)
    zero = std == 0
    if check_finite and zero.any():
        warnings.warn(
            "Some columns have standard deviation zero. The values of these columns will "
            "not change.", RuntimeWarning, stacklevel=2,
        )
    return X / np.where(zero, 1.0, std)


def _direct_dist(X: np.ndarray, book: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Euclidean distance of every row to ``book[labels]``, by differences.

    The expanded product ``|x|^2 - 2 x.c + |c|^2`` that finds the nearest code
    loses digits to cancellation (a row equal to a code gets about 6e-8, not 0,
    in float64); SciPy sums squared differences. This is one more pass over the
    block, in sub-blocks of about a million values, in the dtype of ``X``.
    """
    n, d = X.shape
    out = np.empty(n, dtype=X.dtype)
    step = max(1, 2**20 // max(d, 1))
    for start in range(0, n, step):
        diff = X[start : start + step] - book[labels[start : start + step]]
        out[start : start + step] = np.einsum("ij,ij->i", diff, diff)
    return np.sqrt(out, out=out)


def _vq_block(X, code_book):
    labels = _kernels.assign(X, code_book)
    return np.stack([labels.astype(np.float64), _direct_dist(X, code_book, labels)], axis=1)


def vq(obs, code_book, check_finite=True):
    """Assign every observation to its nearest code.

    Parameters
    ----------
    obs : ndarray or dask.array.Array of shape (M, N) or (M,)
    code_book : ndarray of shape (k, N), or (k,) for 1-D observations
    check_finite : bool, default=True
        Raise ValueError if ``obs`` or ``code_book`` holds NaN or infinity
        (for Dask input, when each block is read).

    Returns
    -------
    code : ndarray or dask.array.Array of shape (M,)
        Index of the nearest code (int32 for floating input; for integer
        input the default integer, as SciPy's Python path gives).
    dist : ndarray or dask.array.Array of shape (M,)
        Euclidean distance to it, in the common float dtype of the inputs,
        computed from the differences (0 for a row equal to its code). Both are
        lazy for Dask input (computing them together reads the data once).
    """
    book = np.asarray(code_book)
    common = np.result_type(_dtype_of(obs), book.dtype)
    ct = np.result_type(as_float_dtype(_dtype_of(obs)), as_float_dtype(book.dtype))
    code_dtype = np.int32 if common.kind == "f" else np.intp
    if np.ndim(obs) != book.ndim:
        raise ValueError("observation and code should have same number of dimensions")
    X, lazy, was_1d = _as_obs(obs, "obs", check_finite, dtype=ct)
    if book.ndim == 1:
        book = book.reshape(-1, 1)
    if book.ndim != 2 or book.shape[1] != X.shape[1]:
        raise ValueError("obs and code should have same number of features (columns)")
    if check_finite and not np.isfinite(book).all():
        raise ValueError("array must not contain infs or NaNs")
    book = np.ascontiguousarray(book, dtype=ct)
    if not lazy:
        out = _vq_block(X, book)
        return out[:, 0].astype(code_dtype), out[:, 1].astype(ct)
    out = X.map_blocks(_vq_block, book, dtype=np.float64,
                       chunks=(X.chunks[0], (2,)), name="vq-assign")
    return out[:, 0].astype(code_dtype), out[:, 1].astype(ct)


def _dtype_of(obs):
    return obs.dtype if hasattr(obs, "dtype") else np.asarray(obs).dtype


# --------------------------------------------------------------------------- #
# one pass: assignment, distortion and new means
# --------------------------------------------------------------------------- #
def _means_chunk(X, w, index, *, centers):
    labels = _kernels.assign(X, centers)
    sums, counts = _kernels.accumulate(X, labels, None, len(centers))
    dist = float(_direct_dist(X, centers, labels).sum(dtype=np.float64))
    return {"sums": sums, "counts": counts, "dist": dist, "n": X.shape[0]}


def _means_combine(parts):
    return {
        "sums": np.sum([p["sums"] for p in parts], axis=0),
        "counts": np.sum([p["counts"] for p in parts], axis=0),
        "dist": sum(p["dist"] for p in parts),
        "n": sum(p["n"] for p in parts),
    }


def _means_pass(X, centers: np.ndarray) -> dict:
    """Sums and counts per code and the total distance, in one pass."""
    centers = np.ascontiguousarray(centers, dtype=X.dtype)
    if isinstance(X, da.Array):
        graph = block_reduce(X, None, _means_chunk, _means_combine, name="vq-means",
                             consts={"centers": centers})
        (res,) = compute_passes(graph)
        return res
    return _means_chunk(X, None, 0, centers=centers)


def _update(res: dict, old: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    has = res["counts"] > 0
    new = old.astype(np.float64, copy=True)
    new[has] = res["sums"][has] / res["counts"][has, None]
    return new.astype(old.dtype), has


def _kmeans_run(X, guess: np.ndarray, thresh: float):
    book = np.asarray(guess, dtype=X.dtype)
    prev = math.inf
    diff = math.inf
    avg = math.inf
    while diff > thresh:
        res = _means_pass(X, book)
        avg = res["dist"] / res["n"]
        new, has = _update(res, book)
        book = new[has]
        diff = abs(prev - avg)
        prev = avg
    return book, avg


def kmeans(obs, k_or_guess, iter=20, thresh=1e-05, check_finite=True, *, rng=None,  # noqa: A002
           seed=None):
    """k-means on observation vectors, best of ``iter`` runs (SciPy semantics).

    Parameters
    ----------
    obs : ndarray or dask.array.Array of shape (M, N) or (M,)
        Observations (whitened first, typically).
    k_or_guess : int or ndarray of shape (k, N) (or (k,) for 1-D observations)
        Number of codes, drawn from the observations at random for every
        run; or the initial codebook (one run, ``iter`` ignored).
    iter : int, default=20
        Number of runs (restarts), not of iterations.
    thresh : float, default=1e-05
        A run stops after the first iteration whose distortion (mean distance)
        differs from the previous iteration's by at most ``thresh``, an
        absolute change, as in SciPy.
    check_finite : bool, default=True
        Raise ValueError if ``obs`` or an initial codebook holds NaN or
        infinity (for Dask input, when each block is read).
    rng : int, numpy.random.Generator, numpy.random.RandomState, optional
        Normalised by :func:`numpy.random.default_rng`. With neither ``rng``
        nor ``seed``, NumPy's global random state is used (as in SciPy).
    seed : int, numpy.random.Generator or numpy.random.RandomState, optional
        SciPy's older name: an int seeds a ``RandomState`` (the stream SciPy
        gives for ``seed=int``); pass ``rng`` or ``seed``, not both.

    Returns
    -------
    codebook : ndarray of shape (k', N), or (k',) for 1-D observations
        k' <= k: codes left without observations are dropped.
    distortion : float
        Mean Euclidean (not squared) distance of the observations to their
        nearest code (for the codebook before the last update, as in SciPy).
    """
    X, _, was_1d = _as_obs(obs, "obs", check_finite)
    guess = np.asarray(k_or_guess)
    if check_finite and guess.dtype.kind in "f" and not np.isfinite(guess).all():
        raise ValueError("array must not contain infs or NaNs")
    if isinstance(iter, bool) or not isinstance(iter, Integral | float) or iter < 1:
        raise ValueError(f"iter must be at least 1, got {iter}")
    if guess.size != 1:
        if guess.size < 1:
            raise ValueError(f"Asked for 0 clusters. Initial book was {guess}")
        if guess.ndim == 1:
            guess = guess.reshape(-1, 1)
        book, dist = _kmeans_run(X, guess, thresh)
        return (book[:, 0] if was_1d else book), dist
    k = int(guess)
    if k != guess:
        raise ValueError("If k_or_guess is a scalar, it must be an integer.")
    if k < 1:
        raise ValueError(f"Asked for {k} clusters.")
    gen = _rng(rng, seed)
    best_book, best = None, math.inf
    for _ in range(int(iter)):
        idx = gen.choice(X.shape[0], size=k, replace=False)
        book, dist = _kmeans_run(X, _rows(X, idx), thresh)
        if dist < best:
            best_book, best = book, dist
    return (best_book[:, 0] if was_1d else best_book), best


def _krandinit(X, k: int, gen) -> np.ndarray:
    """k draws from a Gaussian with the data's mean and covariance."""
    n, d = X.shape
    if isinstance(X, da.Array):
        mu, cov = da.compute(X.mean(axis=0), da.cov(X.T))
    else:
        mu, cov = X.mean(axis=0), np.cov(X.T)
    mu = np.asarray(mu)
    if d > n:
        # rank-deficient covariance: sample in the span of the data
        _, s, vh = np.linalg.svd(np.asarray(X) - mu, full_matrices=False)
        x = gen.standard_normal(size=(k, s.size))
        x = x @ (s[:, None] * vh / np.sqrt(n - 1.0))
    else:
        cov = np.atleast_2d(np.asarray(cov))
        x = gen.standard_normal(size=(k, d))
        x = x @ np.linalg.cholesky(cov).T
    return x + mu


def _kpp(X, k: int, gen) -> np.ndarray:
    """k-means++ seeding (D^2 sampling), one pass per new centre for Dask input."""
    n = X.shape[0]
    centers = [_rows(X, [_randint(gen, n)])[0]]
    for _ in range(1, k):
        C = np.asarray(centers, dtype=X.dtype)
        if isinstance(X, da.Array):
            d2 = X.map_blocks(lambda b, C=C: _kernels.nearest(b, C)[1][0], dtype=np.float64,
                              drop_axis=1).compute()
        else:
            d2 = _kernels.nearest(X, C)[1][0]
        cum = np.cumsum(d2 / d2.sum())
        idx = int(np.searchsorted(cum, gen.uniform()))
        centers.append(_rows(X, [min(idx, n - 1)])[0])
    return np.asarray(centers)


def kmeans2(data, k, iter=10, thresh=1e-05, minit="random", missing="warn",  # noqa: A002
            check_finite=True, *, rng=None, seed=None):
    """Exactly ``iter`` Lloyd iterations from the chosen start (SciPy semantics).

    Parameters
    ----------
    data : ndarray or dask.array.Array of shape (M, N) or (M,)
    k : int or ndarray of shape (k, N)
        Number of clusters, or the initial centroids (with ``minit="matrix"``
        or whenever an array is given).
    iter : int, default=10
        Number of iterations.
    thresh : float, default=1e-05
        Not used: ``kmeans2`` always runs ``iter`` iterations (as in SciPy).
    minit : {"random", "points", "++", "matrix"}, default="random"
    missing : {"warn", "raise"}, default="warn"
        What to do about an empty cluster: warn and keep its previous
        centroid, or raise :class:`ClusterError`.
    check_finite : bool, default=True
        Raise ValueError if ``data`` holds NaN or infinity (for Dask input,
        when each block is read).
    rng : int, numpy.random.Generator, numpy.random.RandomState, optional
        Normalised by :func:`numpy.random.default_rng`. With neither ``rng``
        nor ``seed``, NumPy's global random state is used (as in SciPy).
    seed : int, numpy.random.Generator or numpy.random.RandomState, optional
        SciPy's older name: an int seeds a ``RandomState``; pass ``rng`` or
        ``seed``, not both.

    Returns
    -------
    centroid : ndarray of shape (k, N) (or (k,) for 1-D data)
    label : ndarray of shape (M,), int32, or a lazy dask.array.Array for Dask input
        Nearest centroid of the last iteration's assignment (made before its
        update, as in SciPy).
    """
    if int(iter) < 1:
        raise ValueError(f"Invalid iter ({iter}), must be a positive integer.")
    if missing not in _MISSING:
        raise ValueError(f"Unknown missing method {missing!r}")
    X, lazy, was_1d = _as_obs(data, "data", check_finite)
    book = np.array(k, copy=True)
    if X.shape[0] < 1 or book.size < 1:
        raise ValueError("Empty input is not supported.")
    if minit == "matrix" or book.size > 1:
        if was_1d:
            if book.ndim != 1:
                raise ValueError("k array doesn't match data rank")
            book = book.reshape(-1, 1)
        elif book.ndim != 2:
            raise ValueError("k array doesn't match data rank")
        if book.shape[1] != X.shape[1]:
            raise ValueError("k array doesn't match data dimension")
        nc = book.shape[0]
    else:
        nc = int(book)
        if nc < 1:
            raise ValueError(f"Cannot ask kmeans2 for {nc} clusters (k was {book})")
        if nc != book:
            warnings.warn("k was not an integer, was converted.", stacklevel=2)
        if minit not in _MINITS:
            raise ValueError(f"Unknown init method {minit!r}")
        gen = _rng(rng, seed)
        if minit == "random":
            book = _krandinit(X, nc, gen)
        elif minit == "points":
            book = _rows(X, gen.choice(X.shape[0], size=nc, replace=False))
        else:  # "++" ("matrix" with a scalar k is not meaningful: SciPy fails too)
            if minit == "matrix":
                raise ValueError("k array doesn't match data rank")
            book = _kpp(X, nc, gen)
    book = np.ascontiguousarray(book, dtype=X.dtype)
    for _ in range(int(iter)):
        used = book
        res = _means_pass(X, book)
        new, has = _update(res, book)
        if not has.all():
            if missing == "raise":
                raise ClusterError(
                    "One of the clusters is empty. Re-run kmeans with a different "
                    "initialization."
                )
            warnings.warn(
                "One of the clusters is empty. Re-run kmeans with a different initialization.",
                stacklevel=2,
            )
        book = new
    label, _ = vq(X, used, check_finite=False)
    centroid = book[:, 0] if was_1d else book
    return centroid, label
