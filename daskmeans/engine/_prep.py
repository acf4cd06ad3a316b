"""Row preprocessing applied to every block before the kernels see it.

A :class:`Prep` is a small, immutable description of what to do to the rows
of one block: upcast to the working dtype, mask rows holding NaN (they get
weight 0, so every kernel ignores them), centre and scale every feature, and
L2-normalise every row (cosine k-means). The chunk functions of
:mod:`daskmeans.engine._lloyd`, :mod:`daskmeans.engine._init` and the estimator call
:func:`apply_prep` on each block they read; the result is a transient copy of
that block only, never of the data. Like the kernels, this module is pure
NumPy and never imports dask.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from ..kernels import _sparse as _sparse_kernels
from ..kernels._sparse import is_sparse as _is_sparse

__all__ = [
    "PREP_PARAMS",
    "Prep",
    "ZeroRowsError",
    "apply_prep",
    "make_prep",
    "normalize_rows",
    "zero_rows_block",
]

#: Estimator parameters that configure the row preprocessing, with their choices.
PREP_PARAMS = {
    "metric": ("euclidean", "cosine"),
    "nan_policy": ("raise", "omit"),
}


class ZeroRowsError(ValueError):
    """Rows of zeros met where ``metric="cosine"`` needs a direction."""

    def __init__(self, count: int) -> None:
        self.count = int(count)
        super().__init__(
            f"X contains {self.count} row(s) of zeros in one block; metric='cosine' needs "
            "rows with a non-zero norm."
        )


@dataclass(frozen=True, eq=False)
class Prep:
    """What to do to the rows of every block, in this order.

    Attributes
    ----------
    dtype : numpy dtype or None
        Working dtype; blocks of another dtype are cast to it.
    mask_nan : bool
        Rows holding a NaN get weight 0 and their values are replaced by 0.
    center : ndarray of shape (d,) or None
        Subtracted from every row.
    scale : ndarray of shape (d,) or None
        Every row is divided by it (no zeros).
    normalize : bool
        Rows are divided by their Euclidean norm.
    standardize : bool
        ``center`` and ``scale`` are (to be) the mean and standard deviation
        of the data; while they are None the statistics are still pending.
    """

    dtype: np.dtype | None = None
    mask_nan: bool = False
    center: np.ndarray | None = None
    scale: np.ndarray | None = None
    normalize: bool = False
    standardize: bool = False

    @property
    def pending(self) -> bool:
        """True when standardisation waits for the data's statistics."""
        return self.standardize and self.scale is None

    @property
    def identity(self) -> bool:
        """True when applying it changes nothing but, perhaps, the dtype."""
        return not (self.mask_nan or self.normalize or self.scale is not None
                    or self.center is not None)

    def resolve(self, moments) -> Prep:
        """The standardising prep from (count, mean, m2) of the raw data.

        Features with zero variance get scale 1, as in scikit-learn's
        ``StandardScaler``.
        """
        count, mean, m2 = moments
        if count <= 0:
            raise ValueError("X has no usable rows to standardise (all were omitted).")
        var = np.asarray(m2, dtype=np.float64) / count
        scale = np.sqrt(var)
        scale[~(scale > 10 * np.finfo(np.float64).eps * np.maximum(1.0, np.abs(mean)))] = 1.0
        return dataclasses.replace(
            self, center=np.asarray(mean, dtype=np.float64), scale=scale
        )

    def without_stats(self) -> Prep:
        """The same prep before standardisation (masking and dtype only)."""
        return dataclasses.replace(self, center=None, scale=None, normalize=False)

    def scaled_moments(self, moments):
        """Moments after centring and scaling, from those of the raw data (no normalisation)."""
        count, mean, m2 = moments
        c = 0.0 if self.center is None else self.center
        s = 1.0 if self.scale is None else self.scale
        return count, (mean - c) / s, m2 / s**2

    def to_work(self, centers: np.ndarray, what: str = "init") -> np.ndarray:
        """Map centres (or sampled rows, ``what="X"``) from original units to the working space."""
        C = np.asarray(centers, dtype=np.float64)
        if self.center is not None:
            C = C - self.center
        if self.scale is not None:
            C = C / self.scale
        if self.normalize:
            C = normalize_rows(C, what=what)
        return C if self.dtype is None else C.astype(self.dtype)

    def to_original(self, centers: np.ndarray) -> np.ndarray:
        """Map centres from the working space back to original units."""
        C = np.asarray(centers, dtype=np.float64)
        if self.scale is not None:
            C = C * self.scale
        if self.center is not None:
            C = C + self.center
        return C.astype(centers.dtype)


def make_prep(
    dtype=None, *, nan_policy: str = "raise", metric: str = "euclidean",
    standardize: bool = False, stats=None,
) -> Prep | None:
    """The prep for the estimator's parameters, or None when there is nothing to do.

    ``stats`` = (mean, scale) of a fitted standardisation; without it a
    standardising prep is *pending* (see :meth:`Prep.resolve`).
    """
    center, scale = (None, None) if stats is None else stats
    prep = Prep(
        dtype=None if dtype is None else np.dtype(dtype),
        mask_nan=nan_policy == "omit",
        normalize=metric == "cosine",
        standardize=bool(standardize),
        center=None if scale is None else np.asarray(center, dtype=np.float64),
        scale=None if scale is None else np.asarray(scale, dtype=np.float64),
    )
    if not (prep.mask_nan or prep.normalize or prep.standardize):
        return None
    return prep


def normalize_rows(C: np.ndarray, *, what: str = "centres", old: np.ndarray | None = None):
    """Rows divided by their Euclidean norm.

    A zero row keeps ``old``'s row when given (a centre whose members cancel
    out), and raises ValueError otherwise.
    """
    C = np.asarray(C)
    norms = np.sqrt(np.einsum("ij,ij->i", C, C, dtype=np.float64))
    zero = ~(norms > 0)
    if zero.any():
        if old is None:
            if what == "X":
                raise ZeroRowsError(int(zero.sum()))
            raise ValueError(
                f"{what} has {int(zero.sum())} row(s) of zeros; metric='cosine' needs "
                "rows with a non-zero norm."
            )
        out = C.astype(np.float64)
        out[~zero] /= norms[~zero, None]
        out[zero] = old[zero]
        return out.astype(C.dtype)
    return (C / norms[:, None]).astype(C.dtype, copy=False)


def apply_prep(
    prep: Prep | None, X: np.ndarray, w: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Apply ``prep`` to one block.

    Parameters
    ----------
    prep : Prep or None
    X : ndarray of shape (n, d)
    w : ndarray of shape (n,) or None

    Returns
    -------
    X : ndarray of shape (n, d)
        In the working dtype; a new array unless nothing had to change.
    w : ndarray of shape (n,) or None
        Weights with masked rows set to 0 (float64), or the input weights.
    valid : ndarray of shape (n,), bool, or None
        Rows kept (None when no row can be masked).

    Raises
    ------
    ZeroRowsError
        ``prep.normalize`` and an unmasked row of zeros (after centring).
    """
    if prep is None:
        return X, w, None
    if prep.dtype is not None and X.dtype != prep.dtype:
        X = X.astype(prep.dtype)
    if _is_sparse(X):
        return _apply_prep_sparse(prep, X, w)
    valid = None
    if prep.mask_nan:
        bad = np.isnan(X).any(axis=1)
        valid = ~bad
        if bad.any():
            X = np.where(bad[:, None], X.dtype.type(0), X)
            w = valid.astype(np.float64) if w is None else np.where(valid, w, 0.0)
    if prep.pending:
        return X, w, valid
    if prep.center is not None:
        X = X - prep.center.astype(X.dtype)
    if prep.scale is not None:
        X = X / prep.scale.astype(X.dtype)
    if prep.normalize:
        norms = np.sqrt(np.einsum("ij,ij->i", X, X, dtype=np.float64))
        zero = ~(norms > 0)
        if valid is not None:
            zero &= valid
            norms[~valid] = 1.0
        if zero.any():
            raise ZeroRowsError(int(zero.sum()))
        X = X / norms.astype(X.dtype)[:, None]
        if valid is not None:
            X[~valid] = 0
    return X, w, valid


def _apply_prep_sparse(prep: Prep, X, w):
    """:func:`apply_prep` for a ``scipy.sparse`` block: only ``normalize`` keeps it
    sparse (centring would make it dense; the estimators refuse those settings)."""
    if prep.mask_nan or prep.center is not None or prep.scale is not None:
        raise ValueError(
            "sparse X supports metric='cosine' but not standardize=True or "
            "nan_policy='omit' (centring would make it dense)."
        )
    if prep.pending or not prep.normalize:
        return X, w, None
    X, zero = _sparse_kernels.normalize_rows(X)
    if zero.any():
        raise ZeroRowsError(int(zero.sum()))
    return X, w, None


def zero_rows_block(X: np.ndarray, prep: Prep) -> np.ndarray:
    """Number of kept rows of a block that are zero after centring and scaling, as (1,)."""
    if _is_sparse(X):  # no centring or scaling for sparse blocks
        return np.array([np.count_nonzero(~(_sparse_kernels.sq_norms(X) > 0))], dtype=np.int64)
    X, _, valid = apply_prep(dataclasses.replace(prep, normalize=False), X, None)
    zero = ~(np.einsum("ij,ij->i", X, X, dtype=np.float64) > 0)
    if valid is not None:
        zero &= valid
    return np.array([np.count_nonzero(zero)], dtype=np.int64)
