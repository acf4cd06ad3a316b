"""The kernels compiled when daskmeans is installed (``_native.c``), through ctypes.

A fused assignment-and-accumulation loop for groups of up to
:data:`~daskmeans.kernels._thresholds.NATIVE_MAX_K` centres and up to 64
features, in float32 and float64: the NumPy plan runs it in place of its BLAS
products, argmin and one-hot sums (several times faster on small data, and
nothing to compile at run time, unlike numba). setuptools builds it as an
optional extension: where no C compiler was found at install (or on a
compiler without GCC's vector extensions), :func:`available` is False and the
NumPy code runs. The call releases the GIL (ctypes does for a C library).
"""

from __future__ import annotations

import ctypes
import functools
import importlib.util

import numpy as np

__all__ = ["applies", "available", "lloyd_loop", "pairwise_sum", "sweep"]

#: The interface version this module speaks (``dm_version`` of the library).
_VERSION = 2


@functools.cache
def _library():
    """The loaded library with its functions typed, or None."""
    try:
        spec = importlib.util.find_spec("daskmeans.kernels._native_lib")
    except (ImportError, ValueError):  # pragma: no cover
        return None
    if spec is None or not spec.origin:
        return None
    return load(spec.origin)


def load(path: str):
    """The library at ``path`` with its functions typed, or None where it does not
    load or speaks another interface version (a stale build)."""
    try:
        lib = ctypes.CDLL(path)
        if lib.dm_version() != _VERSION:  # pragma: no cover - a stale build
            return None
    except (OSError, AttributeError):  # pragma: no cover
        return None
    p, i, f = ctypes.c_void_p, ctypes.c_int64, ctypes.c_double
    for fn in (lib.dm_sweep_f32, lib.dm_sweep_f64):
        fn.argtypes = [p, i, i, p, i, p, p, p, p, p, p, p]
        fn.restype = None
    for fn in (lib.dm_prepare_f32, lib.dm_prepare_f64):
        fn.argtypes = [p, i, i, p, i, p]
        fn.restype = None
    for fn in (lib.dm_lloyd_f32, lib.dm_lloyd_f64):
        fn.argtypes = [p, i, i, p, i, p, i, f, p, i, p, p, p, p, p, p, p, p]
        fn.restype = i
    lib.dm_pairwise_sum.argtypes = [p, i]
    lib.dm_pairwise_sum.restype = f
    lib.group = int(lib.dm_group())
    lib.max_features = int(lib.dm_max_features())
    return lib


def available() -> bool:
    """Whether the compiled library was built and loads."""
    return _library() is not None


def applies(X: np.ndarray, n_centers: int, max_k: int) -> bool:
    """Whether :func:`sweep` takes these rows and this many centres a group."""
    return (0 < n_centers <= max_k and X.ndim == 2 and X.dtype in (np.float32, np.float64)
            and available() and X.shape[1] <= _library().max_features)


def _ptr(a: np.ndarray | None):
    return None if a is None else a.ctypes.data


def sweep(X: np.ndarray, centers: np.ndarray, weights: np.ndarray | None = None, *,
          labels: np.ndarray | None = None, dists: np.ndarray | None = None,
          sums: np.ndarray | None = None, counts: np.ndarray | None = None,
          inertia: np.ndarray | None = None) -> None:
    """Label every row of ``X`` by its nearest centre; fill what is given.

    ``labels`` (n,) int64 and ``dists`` (n,) of the data's dtype receive each
    row's centre and squared distance; ``sums`` (k, d), ``counts`` (k,) and
    ``inertia`` (1,), all float64 and given together, receive the weighted
    rows, weights and distances, added to what they hold. Scores are
    ``|c|^2 - 2 x . c`` in the data's dtype; the first minimising centre wins.
    See ``_native.c``. :func:`applies` must hold.
    """
    lib = _library()
    n, d = X.shape
    X = np.ascontiguousarray(X)
    CT, c_sq = _prepared(lib, centers, X.dtype)
    if weights is not None:
        weights = np.ascontiguousarray(weights, dtype=np.float64)
    for out, dtype in ((labels, np.int64), (dists, X.dtype), (sums, np.float64),
                       (counts, np.float64), (inertia, np.float64)):
        if out is not None and (out.dtype != dtype or not out.flags.c_contiguous):
            raise ValueError("native sweep: an output of the wrong type or layout")
    fn = lib.dm_sweep_f32 if X.dtype == np.float32 else lib.dm_sweep_f64
    fn(_ptr(X), n, d, _ptr(CT), CT.shape[1], _ptr(c_sq), _ptr(weights), _ptr(labels),
       _ptr(dists), _ptr(sums), _ptr(counts), _ptr(inertia))


def _prepared(lib, centers: np.ndarray, dtype) -> tuple[np.ndarray, np.ndarray]:
    """The sweep's form of the centres: ``-2 C^T`` padded to whole groups, and the
    squared norms (``dm_prepare_*``, the code the Lloyd loop runs too)."""
    C = np.ascontiguousarray(centers, dtype=dtype)
    k, d = C.shape
    K = k + (-k) % lib.group
    CT = np.empty((d, K), dtype=dtype)
    c_sq = np.empty(K, dtype=dtype)
    fn = lib.dm_prepare_f32 if dtype == np.float32 else lib.dm_prepare_f64
    fn(_ptr(C), k, d, _ptr(CT), K, _ptr(c_sq))
    return CT, c_sq


def lloyd_loop(X: np.ndarray, centers: np.ndarray, weights: np.ndarray | None, *,
               max_iter: int, tol: float) -> dict:
    """Up to ``max_iter`` Lloyd iterations of the rows ``X`` (one block) in one call.

    The iterations are those of the fit loop, with the same arithmetic:
    :func:`sweep`, centres moved to the float64 means of their rows rounded
    to the data's type, and the squared shift of the centres summed in
    NumPy's order (:func:`pairwise_sum`). :func:`applies` must hold.

    Returns
    -------
    dict
        ``centers`` (k, d) after the last iteration applied; ``n_iter`` the
        iterations applied; ``inertia`` and ``shift`` (n_iter,) of each;
        ``counts`` (k,) the weights of the last pass applied;
        ``status``: ``"max_iter"``, ``"tol"`` (shift at most ``tol``),
        ``"strict"`` (shift zero) or ``"empty"`` (the next pass left a
        cluster empty and was not applied: the caller relocates it).
    """
    lib = _library()
    X = np.ascontiguousarray(X)
    dtype = X.dtype
    C = np.array(centers, dtype=dtype, order="C", copy=True)
    k, d = C.shape
    K = k + (-k) % lib.group
    if weights is not None:
        weights = np.ascontiguousarray(weights, dtype=np.float64)
    CT = np.empty((d, K), dtype=dtype)
    c_sq = np.empty(K, dtype=dtype)
    sums = np.empty((k, d))
    counts = np.empty(k)
    sizes = np.zeros(k)
    sq = np.empty((k, d))
    inertia = np.empty(max(max_iter, 1))
    shift = np.empty(max(max_iter, 1))
    status = np.zeros(1, dtype=np.int64)
    fn = lib.dm_lloyd_f32 if dtype == np.float32 else lib.dm_lloyd_f64
    done = int(fn(_ptr(X), X.shape[0], d, _ptr(C), k, _ptr(weights), max_iter, float(tol),
                  _ptr(CT), K, _ptr(c_sq), _ptr(sums), _ptr(counts), _ptr(sq), _ptr(sizes),
                  _ptr(inertia), _ptr(shift), _ptr(status)))
    return {"centers": C, "n_iter": done, "inertia": inertia[:done].copy(),
            "shift": shift[:done].copy(), "counts": sizes,
            "status": _STATUS[int(status[0])]}


_STATUS = ("max_iter", "tol", "strict", "empty")


def pairwise_sum(a: np.ndarray) -> float:
    """``a.sum()`` of a float64 array as the C loop sums (NumPy's order)."""
    a = np.ascontiguousarray(a, dtype=np.float64).ravel()
    return float(_library().dm_pairwise_sum(_ptr(a), a.size))
