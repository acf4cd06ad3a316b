"""Per-block arithmetic on ``scipy.sparse`` row blocks (CSR), centres dense.

The functions here mirror the dense kernels of :mod:`daskmeans.kernels` with
the same arguments and results, for a block ``X`` that is a SciPy sparse
matrix or array (CSR; other formats are converted once per call). The
dense kernels hand a sparse block over to them, so graph code does not need
to know which representation a block has.

What is computed, and what is never densified:

- distances by a sparse-dense product ``X @ C.T`` (SciPy's CSR kernel) on
  sub-blocks of rows, plus squared row norms from the stored values:
  ``|x|^2 - 2 x.c + |c|^2``. The only dense intermediate is the (rows x k)
  product of a sub-block, sized like the dense kernels' distance tiles;
- weighted per-centre sums by the sparse product ``onehot(labels) @ X``
  (k x d, sparse, float64), written out as the dense float64 (k x d) result
  that the combine step adds up (the size of the centres);
- rows are densified only when they are *selected*: the farthest rows used
  to relocate empty clusters (at most ``n_far`` = k per group) and the rows
  drawn by the initialisations (:func:`take_rows`). Their number is bounded by
  the sample size, never by the number of rows of the data.

``centers.T`` is needed C-contiguous by SciPy's product; it is made once per
set of centres and shared by the blocks of a pass (:func:`_centers_t`).
"""

from __future__ import annotations

import functools
import threading

import numpy as np

__all__ = [
    "accumulate",
    "assign",
    "check_finite",
    "distances_block",
    "is_sparse",
    "lloyd_partial",
    "moments",
    "nearest",
    "normalize_rows",
    "sq_norms",
    "take_rows",
]

#: Bytes of the (rows x k) product tile of one sub-block.
_TILE_BYTES = 8 * 2**20


def is_sparse(X) -> bool:
    """True for a SciPy sparse matrix or array (checked without importing SciPy)."""
    return (
        not isinstance(X, np.ndarray)
        and hasattr(X, "tocsr")
        and (type(X).__module__ or "").startswith("scipy.sparse")
    )


def _csr(X):
    """``X`` in CSR format with canonical (summed, sorted) indices."""
    if X.format != "csr":
        X = X.tocsr()
    return X


def _row_ids(X) -> np.ndarray:
    """Row index of every stored value of a CSR block."""
    return np.repeat(np.arange(X.shape[0], dtype=np.intp), np.diff(X.indptr))


def sq_norms(X) -> np.ndarray:
    """Squared Euclidean norm of every row, shape (n,), in the dtype of ``X``."""
    X = _csr(X)
    data = X.data
    out = np.bincount(_row_ids(X), weights=(data.astype(np.float64) ** 2),
                      minlength=X.shape[0])
    return out.astype(X.dtype, copy=False)


def check_finite(X) -> bool:
    """True when every stored value is finite (implicit zeros are)."""
    return bool(np.isfinite(X.data).all()) if X.nnz else True


def normalize_rows(X):
    """Rows divided by their Euclidean norm, as a new CSR block.

    Returns ``(X, zero)``: the normalised block and the boolean mask of rows of
    zeros (left as they are; the caller decides whether that is an error).
    """
    X = _csr(X)
    norms = np.sqrt(sq_norms(X).astype(np.float64))
    zero = ~(norms > 0)
    scale = np.where(zero, 1.0, norms)
    out = X.copy()
    out.data = (X.data / np.repeat(scale, np.diff(X.indptr))).astype(X.dtype, copy=False)
    return out, zero


def take_rows(X, idx) -> np.ndarray:
    """Dense copy of the rows ``idx`` (any integer or boolean index array).

    ``idx`` may have any shape; the result has shape ``idx.shape + (d,)``
    (boolean: ``(count, d)``). Only the selected rows are densified.
    """
    idx = np.asarray(idx)
    if idx.dtype == bool:
        idx = np.flatnonzero(idx)
    flat = idx.reshape(-1)
    X = _csr(X)
    rows = X[flat].toarray() if flat.size else np.zeros((0, X.shape[1]), X.dtype)
    return rows.reshape(idx.shape + (X.shape[1],))


def _use_compiled(X, centers: np.ndarray) -> bool:
    """Whether the compiled (numba) loops run: the kernel plan's choice for this
    data (``DASKMEANS_KERNELS``; numba installed), float32/float64 of one dtype."""
    if X.dtype not in (np.float32, np.float64) or centers.dtype != X.dtype:
        return False
    from ._plan import choose_plan

    return choose_plan(X.dtype, centers.shape[0], X.shape[1], X.shape[0]).compiled


@functools.lru_cache(maxsize=1)
def _loops():
    """The compiled loops (numba imported and the functions built on first use)."""
    import numba

    @numba.njit(nogil=True, cache=True, fastmath={"contract"})
    def sweep(data, indices, indptr, ct, c_sq, bounds, w, labels, mins, sums, counts,
              accumulate):
        """Nearest centre of every group for every row, fused with the weighted sums.

        Per row: ``acc = x @ C.T`` from the stored values (k contiguous values of
        ``ct`` per stored value), distances ``|c|^2 - 2 acc`` in the dtype of the
        data, their argmin per group, ``|x|^2`` added in float64; with
        ``accumulate``, the row's weight and values are added to its centres.
        """
        n = indptr.shape[0] - 1
        k = ct.shape[1]
        g = bounds.shape[0] - 1
        acc = np.empty(k, dtype=ct.dtype)
        for i in range(n):
            acc[:] = 0
            xsq = 0.0
            lo_p, hi_p = indptr[i], indptr[i + 1]
            for p in range(lo_p, hi_p):
                v = data[p]
                xsq += np.float64(v) * np.float64(v)
                row = ct[indices[p]]
                for j in range(k):
                    acc[j] += v * row[j]
            for gi in range(g):
                lo, hi = bounds[gi], bounds[gi + 1]
                best = c_sq[lo] - 2 * acc[lo]
                arg = lo
                for j in range(lo + 1, hi):
                    dj = c_sq[j] - 2 * acc[j]
                    if dj < best:
                        best = dj
                        arg = j
                m = np.float64(best) + xsq
                labels[gi, i] = arg
                mins[gi, i] = m if m > 0 else 0.0
                if accumulate:
                    wi = w[i]
                    counts[arg] += wi
                    for p in range(lo_p, hi_p):
                        sums[arg, indices[p]] += wi * np.float64(data[p])

    from ._numba_cache import guard

    return guard(sweep)


def _sweep(X, centers: np.ndarray, bounds: np.ndarray, w, accumulate: bool):
    """``(labels (g, n), mins (g, n) float64, sums (K, d) or None, counts (K,) or None)``
    by the compiled loop."""
    n, d = X.shape
    K = centers.shape[0]
    g = len(bounds) - 1
    labels = np.empty((g, n), dtype=np.intp)
    mins = np.empty((g, n), dtype=np.float64)
    sums = np.zeros((K, d) if accumulate else (1, 1), dtype=np.float64)
    counts = np.zeros(K, dtype=np.float64)
    ws = np.ones(n) if w is None else np.asarray(w, dtype=np.float64)
    c_sq = np.einsum("ij,ij->i", centers, centers)
    indptr = X.indptr
    _loops()(X.data, X.indices, indptr, _centers_t(centers), c_sq, bounds, ws, labels, mins,
             sums, counts, accumulate)
    return labels, mins, (sums if accumulate else None), (counts if accumulate else None)


_CACHE_LOCK = threading.Lock()
_CACHE: list = [None, None, None]


def _probe(centers: np.ndarray) -> np.ndarray:
    """A strided sample of about 1,000 values, to notice centres changed in place."""
    flat = centers.reshape(-1)
    return flat[:: max(1, flat.size // 1024)].copy()


def _centers_t(centers: np.ndarray) -> np.ndarray:
    """``centers.T`` C-contiguous, made once per centres array (a pass's blocks share it).

    The cache holds one entry, keyed by the array object and checked against a
    sample of its values.
    """
    with _CACHE_LOCK:
        if _CACHE[0] is centers and np.array_equal(_CACHE[2], _probe(centers)):
            return _CACHE[1]
    ct = np.ascontiguousarray(centers.T)
    with _CACHE_LOCK:
        _CACHE[0], _CACHE[1], _CACHE[2] = centers, ct, _probe(centers)
    return ct


def _step(n_centers: int, itemsize: int, n: int) -> int:
    return max(1, min(n, _TILE_BYTES // max(1, n_centers * itemsize)))


def _bounds(bounds, K: int) -> np.ndarray:
    if bounds is None:
        return np.array([0, K], dtype=np.intp)
    return np.asarray(bounds, dtype=np.intp)


def _products(Xs, ct: np.ndarray) -> np.ndarray:
    """``Xs @ C.T`` as a dense (rows x k) array in the dtype of the centres."""
    P = Xs @ ct
    return np.asarray(P, dtype=ct.dtype)


def _nearest_tile(Xs, ct, c_sq, bounds):
    """(labels (g, rows), squared distances (g, rows) float64) of one sub-block."""
    D = _products(Xs, ct)
    D *= -2
    D += c_sq
    x_sq = sq_norms(Xs).astype(np.float64)
    g = len(bounds) - 1
    labels = np.empty((g, Xs.shape[0]), dtype=np.intp)
    mins = np.empty((g, Xs.shape[0]), dtype=np.float64)
    rows = np.arange(Xs.shape[0])
    for j in range(g):
        lo, hi = bounds[j], bounds[j + 1]
        lab = np.argmin(D[:, lo:hi], axis=1)
        labels[j] = lab + lo
        mins[j] = D[rows, lab + lo]
    mins += x_sq
    np.maximum(mins, 0, out=mins)
    return labels, mins


def nearest(X, centers: np.ndarray, bounds=None) -> tuple[np.ndarray, np.ndarray]:
    """Nearest centre of every group for every row (see ``kernels.nearest``).

    Returns
    -------
    labels : ndarray of shape (n_groups, n), intp (global centre indices)
    sq_dist : ndarray of shape (n_groups, n), float64
    """
    X = _csr(X)
    bounds = _bounds(bounds, centers.shape[0])
    if _use_compiled(X, centers):
        labels, dist, _, _ = _sweep(X, centers, bounds, None, False)
        return labels, dist
    n = X.shape[0]
    labels = np.empty((len(bounds) - 1, n), dtype=np.intp)
    dist = np.empty((len(bounds) - 1, n), dtype=np.float64)
    ct = _centers_t(centers)
    c_sq = np.einsum("ij,ij->i", centers, centers)
    step = _step(centers.shape[0], centers.itemsize, n)
    for start in range(0, n, step):
        lab, mins = _nearest_tile(X[start : start + step], ct, c_sq, bounds)
        labels[:, start : start + step] = lab
        dist[:, start : start + step] = mins
    return labels, dist


def assign(X, centers: np.ndarray, *, return_distances: bool = False,
           check_finite: bool = False):
    """Labels (int64) of the nearest centre, and optionally squared distances (float64)."""
    if check_finite and not globals()["check_finite"](X):
        raise ValueError(
            "Input X contains NaN or infinity; expected finite values in every row."
        )
    labels, dist = nearest(X, centers)
    labels = labels[0].astype(np.int64)
    return (labels, dist[0]) if return_distances else labels


def distances_block(X, centers: np.ndarray, c_sq: np.ndarray) -> np.ndarray:
    """Squared distances (n, k) to every centre, dense, in the dtype of the centres.

    The result is as large as the dense kernels' (an (n, k) output asked for by
    ``transform``); the block itself stays sparse.
    """
    X = _csr(X)
    D = _products(X, _centers_t(centers))
    D *= -2
    D += c_sq
    D += sq_norms(X).astype(D.dtype)[:, None]
    np.maximum(D, 0, out=D)
    return D


def _sums(X, labels: np.ndarray, w: np.ndarray, n_centers: int) -> np.ndarray:
    """Dense float64 (k, d): ``sums[labels[g, i]] += w[i] * X[i]`` for every row and group.

    ``labels`` is (g, n) of global centre indices: one sparse (k x n) one-hot
    matrix of the weights, in float64, multiplied by the block (a sparse
    product), then written out dense.
    """
    import scipy.sparse as sp

    g, n = labels.shape
    cols = np.tile(np.arange(n, dtype=np.intp), g)
    onehot = sp.csr_matrix(
        (np.tile(np.asarray(w, dtype=np.float64), g), (labels.reshape(-1), cols)),
        shape=(n_centers, n),
    )
    return np.asarray((onehot @ X).toarray(), dtype=np.float64)


def accumulate(X, labels: np.ndarray, weights, n_centers: int):
    """Weighted per-centre sums (dense (k, d) float64) and weights (k,) float64."""
    X = _csr(X)
    n, d = X.shape
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
    counts = np.bincount(labels, weights=w, minlength=n_centers).astype(np.float64)
    sums = _sums(X, np.asarray(labels, dtype=np.intp)[None, :], w, n_centers)
    return sums, counts


def _far_rows(X, w, labels, mins, m: int) -> dict:
    """The ``m`` rows farthest from their centre per group, sorted by decreasing distance.

    Zero-weight rows never qualify. Only these rows are densified.
    """
    g, n = mins.shape
    take = min(m, n)
    if w is not None:
        mins = np.where(w > 0, mins, -np.inf)
    idx = np.argpartition(mins, n - take, axis=1)[:, n - take :] if take else np.zeros(
        (g, 0), np.intp)
    dist = np.take_along_axis(mins, idx, 1)
    order = np.argsort(-dist, axis=1, kind="stable")
    idx = np.take_along_axis(idx, order, 1)
    ws = np.ones(n) if w is None else w
    return {
        "dist": np.take_along_axis(dist, order, 1),
        "rows": take_rows(X, idx),
        "labels": np.take_along_axis(labels, idx, 1),
        "weights": ws[idx].astype(np.float64),
        "m": m,
    }


def lloyd_partial(X, centers: np.ndarray, weights=None, *, bounds=None, n_far: int = 0,
                  check_finite: bool = False, with_moments: bool = False) -> dict:
    """One sweep of a sparse block: the dict of ``kernels.lloyd_partial``.

    ``sums`` (K, d) float64, ``counts`` (K,) float64, ``inertia`` (n_groups,)
    float64, optionally ``far`` and ``moments``.
    """
    X = _csr(X)
    if check_finite and not globals()["check_finite"](X):
        raise ValueError(
            "Input X contains NaN or infinity; expected finite values in every row."
        )
    bounds = _bounds(bounds, centers.shape[0])
    n, d = X.shape
    K = centers.shape[0]
    g = len(bounds) - 1
    w = None if weights is None else np.asarray(weights, dtype=np.float64)
    ws = np.ones(n) if w is None else w
    if _use_compiled(X, centers):
        labels, mins, sums, counts = _sweep(X, centers, bounds, ws, True)
    else:
        labels, mins = nearest(X, centers, bounds)
        counts = np.zeros(K, dtype=np.float64)
        for j in range(g):
            counts += np.bincount(labels[j], weights=ws, minlength=K)
        sums = _sums(X, labels, ws, K)
    inertia = mins @ ws
    out = {"sums": sums, "counts": counts, "inertia": inertia}
    if n_far:
        out["far"] = _far_rows(X, w, labels, mins, n_far)
    if with_moments:
        out["moments"] = moments(X)
    return out


def moments(X) -> tuple[float, np.ndarray, np.ndarray]:
    """Count, mean and sum of squared deviations of every column (float64).

    The implicit zeros count: ``m2 = sum over stored values of (x - mean)^2``
    plus ``(n - stored) * mean^2`` per column.
    """
    X = _csr(X)
    n, d = X.shape
    if n == 0:
        return 0.0, np.zeros(d), np.zeros(d)
    data = X.data.astype(np.float64)
    cols = X.indices
    mean = np.bincount(cols, weights=data, minlength=d) / n
    dev = data - mean[cols]
    stored = np.bincount(cols, minlength=d)
    m2 = np.bincount(cols, weights=dev * dev, minlength=d) + (n - stored) * mean**2
    return float(n), mean, m2
