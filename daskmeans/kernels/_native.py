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

__all__ = ["applies", "available", "sweep"]

#: The interface version this module speaks (``dm_version`` of the library).
_VERSION = 1


@functools.cache
def _library():
    """The loaded library with its functions typed, or None."""
    try:
        spec = importlib.util.find_spec("daskmeans.kernels._native_lib")
    except (ImportError, ValueError):  # pragma: no cover
        return None
    if spec is None or not spec.origin:
        return None
    try:
        lib = ctypes.CDLL(spec.origin)
        if lib.dm_version() != _VERSION:  # pragma: no cover - a stale build
            return None
    except (OSError, AttributeError):  # pragma: no cover
        return None
    p, i = ctypes.c_void_p, ctypes.c_int64
    for fn in (lib.dm_sweep_f32, lib.dm_sweep_f64):
        fn.argtypes = [p, i, i, p, i, p, p, p, p, p, p, p]
        fn.restype = None
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
    k = centers.shape[0]
    X = np.ascontiguousarray(X)
    K = k + (-k) % lib.group
    CT = np.zeros((d, K), dtype=X.dtype)
    CT[:, :k] = (centers * centers.dtype.type(-2)).T  # exact: scaling by a power of two
    c_sq = np.full(K, np.inf, dtype=X.dtype)
    c_sq[:k] = np.einsum("ij,ij->i", centers, centers)
    if weights is not None:
        weights = np.ascontiguousarray(weights, dtype=np.float64)
    for out, dtype in ((labels, np.int64), (dists, X.dtype), (sums, np.float64),
                       (counts, np.float64), (inertia, np.float64)):
        if out is not None and (out.dtype != dtype or not out.flags.c_contiguous):
            raise ValueError("native sweep: an output of the wrong type or layout")
    fn = lib.dm_sweep_f32 if X.dtype == np.float32 else lib.dm_sweep_f64
    fn(_ptr(X), n, d, _ptr(CT), K, _ptr(c_sq), _ptr(weights), _ptr(labels), _ptr(dists),
       _ptr(sums), _ptr(counts), _ptr(inertia))
