"""Checks of an array's dtype and shape that need nothing but its metadata.

Kept apart from :mod:`daskmeans._validation` so that every container module
(dense, sparse, Zarr) can use them without importing the input dispatch.
"""

from __future__ import annotations

import numpy as np

from ._errors import InvalidInputError, InvalidInputTypeError

__all__ = ["as_float_dtype", "check_shape"]


def as_float_dtype(dtype) -> np.dtype:
    """The working dtype for data of ``dtype``: float32 stays, float16 becomes
    float32, every other real numeric dtype becomes float64."""
    dtype = np.dtype(dtype)
    if dtype == np.float32 or dtype == np.float16:
        return np.dtype(np.float32)
    if dtype == np.float64:
        return np.dtype(np.float64)
    if dtype.kind in "biu" or dtype.kind == "f":
        return np.dtype(np.float64)
    raise InvalidInputTypeError(
        f"X must hold real numbers (integer or floating point), got dtype {dtype}."
    )


def check_shape(X, name: str = "X") -> None:
    """2-D, with at least one row and one column (scikit-learn's wording first).

    For every container (NumPy, Dask, sparse): only ``ndim`` and ``shape`` are read.

    Unknown row counts (NaN, as from a Dask DataFrame) pass: the first pass
    counts the rows for the checks that need them.
    """
    if X.ndim != 2:
        shape = f"got an array of shape {X.shape}"
        if X.ndim < 2:
            what = "scalar array" if X.ndim == 0 else "1D array"
            raise InvalidInputError(
                f"Expected 2D array, got {what} instead. Reshape your data either using "
                "array.reshape(-1, 1) if your data has a single feature or "
                "array.reshape(1, -1) if it contains a single sample. "
                f"({name} must be 2-D (n_samples, n_features); {shape}.)"
            )
        raise InvalidInputError(
            f"Found array with dim {X.ndim}, while 2 is expected: {name} must be 2-D "
            f"(n_samples, n_features); {shape}."
        )
    n, d = X.shape
    if n < 1:
        raise InvalidInputError(
            f"Found array with 0 sample(s) (shape={X.shape}) while a minimum of 1 is "
            f"required: {name} must have at least one sample (row)."
        )
    if d < 1:
        raise InvalidInputError(
            f"Found array with 0 feature(s) (shape={X.shape}) while a minimum of 1 is "
            f"required: {name} must have at least one feature (column)."
        )
