"""Parameter and input checks shared by the estimators and the command line.

Every check raises :class:`~daskmeans._errors.InvalidInputError` (a
``ValueError``) or :class:`~daskmeans._errors.InvalidInputTypeError` (a
``TypeError``) naming the parameter, the value received and what is expected,
before any pass over the data starts. Conditions that scikit-learn checks too
are reported with its wording first (so that code matching its messages keeps
working), then ours.

Estimator parameters are described by a *parameter table* (a dict of
parameter name to a list of :class:`Constraint`, any one of which the value
must satisfy) and checked by :func:`check_params`.
"""

from __future__ import annotations

import math
import uuid
from numbers import Integral, Real

import dask.array as da
import numpy as np
from dask.base import tokenize

from ._arrays import as_float_dtype, check_shape
from ._errors import InvalidInputError, InvalidInputTypeError
from .io._zarr import is_path_like, open_zarr

__all__ = [
    "ArrayLike",
    "Boolean",
    "Callable",
    "Constraint",
    "Interval",
    "NoneValue",
    "Options",
    "RandomStateLike",
    "as_float_dtype",
    "check_array_input",
    "check_centers",
    "check_int",
    "check_params",
    "check_real",
    "check_sample_weight",
    "check_shape",
    "default_row_chunks",
    "has_unknown_rows",
    "numpy_blocks",
]

#: Target bytes per block when the estimator chunks a NumPy array itself.
TARGET_BLOCK_BYTES = 16 * 2**20
#: Fewest bytes per block when :func:`default_row_chunks` splits an array for
#: the threads: on smaller blocks every pass pays the per-block NumPy calls
#: more often than the threads save (``benchmarks/bench_startup.py --small``).
MIN_SPLIT_BLOCK_BYTES = 2**20


def check_int(name: str, value, *, low: int | None = None, high: int | None = None) -> int:
    """Check that ``value`` is an integer (not bool) within ``[low, high]``."""
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise InvalidInputTypeError(
            f"{name} must be an integer, got {type(value).__name__}: {value!r}."
        )
    value = int(value)
    if (low is not None and value < low) or (high is not None and value > high):
        rng = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise InvalidInputError(f"{name} must be an integer {rng}, got {value}.")
    return value


def check_real(
    name: str, value, *, low: float | None = None, low_inclusive: bool = True
) -> float:
    """Check that ``value`` is a finite real number above ``low``."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise InvalidInputTypeError(
            f"{name} must be a real number, got {type(value).__name__}: {value!r}."
        )
    value = float(value)
    if not math.isfinite(value):
        raise InvalidInputError(f"{name} must be finite, got {value}.")
    if low is not None and (value < low or (value == low and not low_inclusive)):
        op = ">=" if low_inclusive else ">"
        raise InvalidInputError(f"{name} must be {op} {low}, got {value}.")
    return value


# --------------------------------------------------------------------------- #
# Parameter tables
# --------------------------------------------------------------------------- #
class Constraint:
    """One form a parameter's value may take (an entry of a parameter table).

    :func:`check_params` first asks :meth:`matches_type`: a value of the right
    type that :meth:`accepts` rejects is a ``ValueError`` (out of range,
    unknown option); a value that no constraint of the parameter matches by
    type is a ``TypeError``.
    """

    def matches_type(self, value) -> bool:
        """Whether ``value`` has a type this constraint is about."""
        raise NotImplementedError

    def accepts(self, value) -> bool:
        """Whether ``value`` (of a matching type) is allowed."""
        return True

    def describe(self) -> str:
        """What is expected, as it reads after "must be"."""
        raise NotImplementedError


class Interval(Constraint):
    """An integer (``kind=Integral``) or finite real number (``Real``) in a range.

    ``low``/``high`` are the bounds (None: unbounded), included unless
    ``low_open``/``high_open``. Booleans are never numbers here.
    """

    def __init__(self, kind, low=None, high=None, *, low_open: bool = False,
                 high_open: bool = False) -> None:
        if kind not in (Integral, Real):
            raise ValueError(f"kind must be numbers.Integral or numbers.Real, got {kind!r}.")
        self.kind, self.low, self.high = kind, low, high
        self.low_open, self.high_open = low_open, high_open

    def matches_type(self, value) -> bool:
        return isinstance(value, self.kind) and not isinstance(value, bool | np.bool_)

    def accepts(self, value) -> bool:
        if self.kind is Real and not math.isfinite(value):
            return False
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            return False
        return not (
            self.high is not None and (value > self.high or (self.high_open and value == self.high))
        )

    def describe(self) -> str:
        what = "an integer" if self.kind is Integral else "a finite real number"
        if self.low is not None and self.high is not None:
            left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
            return f"{what} in {left}{self.low}, {self.high}{right}"
        if self.low is not None:
            return f"{what} {'>' if self.low_open else '>='} {self.low}"
        if self.high is not None:
            return f"{what} {'<' if self.high_open else '<='} {self.high}"
        return what


class Options(Constraint):
    """One of a few strings."""

    def __init__(self, *values: str) -> None:
        self.values = tuple(values)

    def matches_type(self, value) -> bool:
        return isinstance(value, str)

    def accepts(self, value) -> bool:
        return value in self.values

    def describe(self) -> str:
        if len(self.values) == 1:
            return repr(self.values[0])
        return f"one of {list(self.values)}"


class Boolean(Constraint):
    """``True`` or ``False`` (NumPy booleans included)."""

    def matches_type(self, value) -> bool:
        return isinstance(value, bool | np.bool_)

    def describe(self) -> str:
        return "True or False"


class NoneValue(Constraint):
    """``None``."""

    def matches_type(self, value) -> bool:
        return value is None

    def describe(self) -> str:
        return "None"


class Callable(Constraint):
    """Any callable."""

    def matches_type(self, value) -> bool:
        return callable(value)

    def describe(self) -> str:
        return "a callable"


class ArrayLike(Constraint):
    """An array, or a list or tuple (shape and values are checked where used)."""

    def __init__(self, what: str = "an array") -> None:
        self.what = what

    def matches_type(self, value) -> bool:
        return hasattr(value, "__array__") or isinstance(value, list | tuple)

    def describe(self) -> str:
        return self.what


class RandomStateLike(Constraint):
    """A seed as scikit-learn takes it (see :func:`daskmeans._rng.as_seed_sequence`)."""

    def matches_type(self, value) -> bool:
        return value is None or (
            isinstance(value, Integral) and not isinstance(value, bool | np.bool_)
        ) or isinstance(
            value, np.random.RandomState | np.random.Generator | np.random.SeedSequence
        )

    def accepts(self, value) -> bool:
        return not isinstance(value, Integral) or value >= 0

    def describe(self) -> str:
        return "None, a non-negative int, a numpy RandomState, Generator or SeedSequence"


def _either(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " or " + parts[-1]


def check_params(table: dict, params: dict) -> None:
    """Check every parameter named in ``table`` against its constraints.

    Parameters
    ----------
    table : dict of str to list of Constraint
        A value is valid when one constraint of its parameter accepts it.
    params : dict
        The values (``estimator.get_params(deep=False)``).

    Raises
    ------
    InvalidInputTypeError
        No constraint is about the value's type.
    InvalidInputError
        Some constraint is about the value's type but none accepts it.
    """
    for name, constraints in table.items():
        value = params[name]
        typed = [c for c in constraints if c.matches_type(value)]
        if any(c.accepts(value) for c in typed):
            continue
        expected = _either([c.describe() for c in constraints])
        if typed:
            raise InvalidInputError(f"{name} must be {expected}, got {value!r}.")
        raise InvalidInputTypeError(
            f"{name} must be {expected}, got {type(value).__name__}: {value!r}."
        )


def default_row_chunks(n_rows: int, n_features: int, itemsize: int) -> int:
    """Rows per block for arrays the library chunks itself.

    Blocks of at most about 16 MiB, at least 8 of them when there are enough
    rows and bytes (so that threads have work to share, but no block below
    :data:`MIN_SPLIT_BLOCK_BYTES` or 4,096 rows), an even number, and all of
    (nearly) the same length so that no thread waits on a short last block.
    The rule depends only on the shape, so results do not depend on the machine.
    """
    nbytes = n_rows * n_features * itemsize
    split = min(8, n_rows // 4096, nbytes // MIN_SPLIT_BLOCK_BYTES)
    split -= split % 2 if split > 1 else 0  # even, rounded down: blocks stay large enough
    blocks = max(math.ceil(nbytes / TARGET_BLOCK_BYTES), split, 1)
    if blocks > 1:
        blocks += blocks % 2
    return max(1, math.ceil(n_rows / blocks))


def numpy_blocks(arr: np.ndarray, rows, *, content_name: bool = False) -> da.Array:
    """A NumPy array as a Dask array of row blocks that are views of it.

    ``da.from_array`` copies a NumPy array and hashes all of it to name the
    result: for 2,000,000 x 32 float32 rows that is 23 ms and 127 ms on every
    ``fit``, ``predict`` or ``transform``, and twice the memory. Here nothing
    is copied and the name is random, unless ``content_name`` asks for a hash
    of the content (a checkpointed fit must recognise the same data later).

    Parameters
    ----------
    arr : ndarray
        Split along its first axis only.
    rows : int or tuple of int
        Rows per block, or the row chunk sizes.
    content_name : bool
        Name the array by a hash of its content instead of a random token.
    """
    n = arr.shape[0]
    if isinstance(rows, Integral):
        rows = tuple(min(int(rows), n - start) for start in range(0, n, int(rows))) or (0,)
    token = tokenize(arr) if content_name else uuid.uuid4().hex
    name = f"array-{token}"
    rest = (0,) * (arr.ndim - 1)
    dsk = {}
    start = 0
    for i, size in enumerate(rows):
        dsk[(name, i) + rest] = arr[start : start + size]
        start += size
    chunks = (tuple(rows),) + tuple((s,) for s in arr.shape[1:])
    return da.Array(dsk, name, chunks, dtype=arr.dtype)


def check_array_input(
    X,
    *,
    name: str = "X",
    storage_options: dict | None = None,
    dtype=None,
    allow_nan: bool = False,
    content_name: bool = False,
    zarr_chunks=None,
) -> tuple[da.Array, bool]:
    """Validate data and return it as a 2-D float Dask array with one column block.

    Parameters
    ----------
    X : array-like, dask.array.Array, zarr.Array, str or os.PathLike
        NumPy arrays and lists are wrapped (not copied when already float);
        strings and paths are opened as Zarr arrays, lazily.
    name : str
        Parameter name used in error messages.
    storage_options : dict, optional
        fsspec options used when ``X`` is a URL.
    dtype : numpy dtype, optional
        Force the working dtype (used by predict to match the fitted centres).
        Dask and Zarr input is cast lazily, block by block (float16 becomes
        float32 per block, never as a whole copy).
    allow_nan : bool
        Accept NaN (``nan_policy="omit"``); infinity is still an error.
    content_name : bool
        NumPy input: name the Dask array by a hash of the data (see
        :func:`numpy_blocks`), so that the same data gets the same name.
    zarr_chunks : optional
        ``chunks`` of :func:`~daskmeans.open_zarr` for Zarr input (default:
        stored chunks grouped to about 16 MiB; ``"stored"``: as stored).

    Returns
    -------
    X : dask.array.Array
        Shape (n_samples, n_features), float32 or float64, chunked along rows.
    in_memory : bool
        True when the input was a NumPy array (results are returned as NumPy).
    """
    from ._sparse import check_sparse_input, is_sparse_input

    if is_sparse_input(X):  # scipy.sparse or Dask of sparse blocks: kept sparse
        return check_sparse_input(X, name=name, dtype=dtype, allow_nan=allow_nan,
                                  content_name=content_name)
    in_memory = False
    if is_path_like(X):
        X = open_zarr(X, storage_options=storage_options, chunks=zarr_chunks)
    elif _is_zarr_array(X):
        X = open_zarr(X, chunks=zarr_chunks)
    elif isinstance(X, da.Array):
        pass
    elif _is_dask_frame(X):
        from .io._tables import frame_to_array

        X = frame_to_array(X, name=name)
    else:
        if hasattr(X, "dtype") and hasattr(X, "shape") and not isinstance(X, np.ndarray):
            # array-likes such as pandas objects
            X = np.asarray(X)
        if not isinstance(X, np.ndarray):
            try:
                X = np.asarray(X)
            except Exception as exc:  # pragma: no cover - numpy's message is kept
                raise TypeError(f"{name} could not be converted to an array: {exc}") from exc
        in_memory = True
        if X.dtype == object:
            X = _object_as_float(X, name)
    check_shape(X, name)
    if X.dtype.kind == "c":
        raise InvalidInputError(
            f"Complex data not supported: {name} must hold real numbers, got dtype {X.dtype}."
        )
    if X.dtype.kind not in "biuf":
        raise InvalidInputTypeError(f"{name} must hold real numbers, got dtype {X.dtype}.")
    work = as_float_dtype(X.dtype) if dtype is None else np.dtype(dtype)
    n, d = X.shape
    if in_memory:
        if X.dtype != work:
            X = X.astype(work)
        if allow_nan:
            if np.isinf(X).any():
                raise InvalidInputError(
                    f"Input {name} contains infinity; expected finite values or NaN "
                    "(nan_policy='omit')."
                )
        elif not np.isfinite(X).all():
            raise InvalidInputError(
                f"Input {name} contains NaN or infinity; expected finite values."
            )
        rows = default_row_chunks(n, d, work.itemsize)
        X = numpy_blocks(X, rows, content_name=content_name)
    else:
        if X.dtype != work:
            X = X.astype(work)
        if X.numblocks[1] != 1:
            X = X.rechunk({1: -1})
    return X, in_memory


def _object_as_float(X: np.ndarray, name: str) -> np.ndarray:
    """An array of dtype object holding numbers, as float64 (as scikit-learn converts it)."""
    try:
        return X.astype(np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidInputTypeError(
            f"{name} must hold real numbers; its values (dtype object) could not be "
            f"converted: {exc}"
        ) from exc


def has_unknown_rows(X: da.Array) -> bool:
    """True when the row chunk sizes of ``X`` are unknown (NaN)."""
    return any(math.isnan(c) for c in X.chunks[0])


def _is_dask_frame(obj) -> bool:
    mod = type(obj).__module__ or ""
    return mod.startswith("dask.dataframe") and hasattr(obj, "to_dask_array")


def _is_zarr_array(obj) -> bool:
    mod = type(obj).__module__ or ""
    return mod.startswith("zarr") and hasattr(obj, "shape") and hasattr(obj, "chunks")


def check_sample_weight(sample_weight, X: da.Array, *, in_memory: bool,
                        content_name: bool = False) -> da.Array | None:
    """Validate ``sample_weight`` and chunk it like the rows of ``X``.

    Returns None for ``None`` (all ones). Negative, NaN or infinite weights,
    a wrong length, or weights that are all zero raise ValueError. NumPy
    weights are wrapped by :func:`numpy_blocks` (``content_name`` as there).
    """
    if sample_weight is None:
        return None
    n = X.shape[0]
    if isinstance(sample_weight, Real) and not isinstance(sample_weight, bool):
        w = float(sample_weight)
        if not math.isfinite(w) or w <= 0:
            raise InvalidInputError(
                f"sample_weight must be a positive finite number, got {w}."
            )
        if has_unknown_rows(X):
            return X[:, 0].map_blocks(np.full_like, w, dtype=np.float64)
        return da.full(n, w, chunks=(X.chunks[0],), dtype=np.float64)
    if is_path_like(sample_weight) or _is_zarr_array(sample_weight):
        sample_weight = open_zarr(sample_weight)
    if _is_dask_frame(sample_weight) or hasattr(sample_weight, "to_dask_array"):
        sample_weight = sample_weight.to_dask_array()
    if isinstance(sample_weight, da.Array) and has_unknown_rows(X):
        if sample_weight.ndim != 1 or sample_weight.numblocks[0] != X.numblocks[0]:
            raise InvalidInputError(
                f"sample_weight must be a 1-D Dask array or Series partitioned like X "
                f"({X.numblocks[0]} blocks of unknown size), got shape {sample_weight.shape} "
                f"in {sample_weight.numblocks} blocks."
            )
        if sample_weight.dtype.kind not in "biuf":
            raise InvalidInputTypeError(
                f"sample_weight must be numeric, got dtype {sample_weight.dtype}."
            )
        return sample_weight.astype(np.float64)
    if has_unknown_rows(X):
        raise InvalidInputError(
            "sample_weight must be a Dask array or Series partitioned like X when X has "
            "unknown chunk sizes (as from a Dask DataFrame)."
        )
    if isinstance(sample_weight, da.Array):
        if sample_weight.ndim != 1 or sample_weight.shape[0] != n:
            raise InvalidInputError(
                f"sample_weight must have shape ({n},) to match X, got {sample_weight.shape}."
            )
        if sample_weight.dtype.kind not in "biuf":
            raise InvalidInputTypeError(
                f"sample_weight must be numeric, got dtype {sample_weight.dtype}."
            )
        return sample_weight.astype(np.float64).rechunk((X.chunks[0],))
    w = np.asarray(sample_weight)
    if w.dtype.kind not in "biuf":
        raise InvalidInputTypeError(f"sample_weight must be numeric, got dtype {w.dtype}.")
    w = w.astype(np.float64)
    if w.ndim != 1 or w.shape[0] != n:
        raise InvalidInputError(
            f"sample_weight must have shape ({n},) to match X, got {w.shape}."
        )
    if not np.isfinite(w).all():
        raise InvalidInputError(
            "sample_weight contains NaN or infinity; expected finite values >= 0."
        )
    if (w < 0).any():
        raise InvalidInputError(
            f"sample_weight must be >= 0, got {int((w < 0).sum())} negative value(s) "
            f"(minimum {w.min()})."
        )
    if not (w > 0).any():
        raise InvalidInputError(
            "sample_weight must have at least one positive value; all weights are zero."
        )
    return numpy_blocks(w, X.chunks[0], content_name=content_name)


def check_centers(name: str, centers, n_clusters: int, n_features: int, dtype) -> np.ndarray:
    """Validate an explicit array of initial centres of shape (n_clusters, n_features)."""
    C = np.asarray(centers)
    if C.dtype.kind not in "biuf":
        raise InvalidInputTypeError(f"{name} must be numeric, got dtype {C.dtype}.")
    if C.ndim != 2 or C.shape[0] != n_clusters:
        raise InvalidInputError(
            f"The shape of the initial centers {C.shape} does not match the number of "
            f"clusters {n_clusters}: {name} must have shape (n_clusters, n_features) = "
            f"({n_clusters}, {n_features})."
        )
    if C.shape[1] != n_features:
        raise InvalidInputError(
            f"The shape of the initial centers {C.shape} does not match the number of "
            f"features of the data {n_features}: {name} must have shape (n_clusters, "
            f"n_features) = ({n_clusters}, {n_features})."
        )
    if not np.isfinite(C).all():
        raise InvalidInputError(f"{name} contains NaN or infinity; expected finite values.")
    return np.ascontiguousarray(C, dtype=dtype)
