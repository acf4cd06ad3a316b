"""Tables as k-means input: Dask DataFrames and Parquet, without computing lengths.

A Dask DataFrame becomes a Dask array with one block per partition and
unknown (NaN) row counts; the core works on such arrays without asking for
the partition lengths (they would cost a pass over the data). Labels for a
DataFrame come back as a Dask Series with the DataFrame's index, partition
by partition.

Everything here is lazy: no function computes anything.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = [
    "check_columns",
    "frame_labels",
    "frame_to_array",
    "is_dask_frame",
    "read_parquet_table",
]


def is_dask_frame(obj) -> bool:
    """True for a Dask DataFrame (not a Series)."""
    mod = type(obj).__module__ or ""
    return mod.startswith("dask.dataframe") and hasattr(obj, "columns")


def _is_numeric(dtype) -> bool:
    try:
        kind = np.dtype(dtype).kind
    except TypeError:
        # pandas extension dtypes (nullable Int64, Float64, string, category)
        kind = getattr(getattr(dtype, "numpy_dtype", None), "kind", "O")
        if getattr(dtype, "name", "") in ("category", "string", "object"):
            kind = "O"
    return kind in "iuf"


def check_columns(columns_available, dtypes, columns: Sequence[str] | None, *,
                  name: str = "X") -> list[str]:
    """Resolve and check the feature columns of a table.

    Parameters
    ----------
    columns_available : sequence of str
        Columns of the table, in order.
    dtypes : mapping column -> dtype
    columns : sequence of str or None
        Requested columns; None means every column (all must be numeric).
    name : str
        Name used in error messages.

    Returns
    -------
    list of str

    Raises
    ------
    ValueError
        A requested column does not exist, or a column is not numeric.
    """
    available = [str(c) for c in columns_available]
    if columns is None:
        columns = available
    columns = [str(c) for c in columns]
    if not columns:
        raise ValueError(f"{name}: no feature columns given.")
    missing = [c for c in columns if c not in available]
    if missing:
        raise ValueError(
            f"{name}: unknown column(s) {missing}; available: {available}."
        )
    bad = [f"{c} ({dtypes[c]})" for c in columns if not _is_numeric(dtypes[c])]
    if bad:
        raise ValueError(
            f"{name}: column(s) must be numeric (integer or floating point), got "
            f"{', '.join(bad)}."
        )
    dup = sorted({c for c in columns if columns.count(c) > 1})
    if dup:
        raise ValueError(f"{name}: column(s) {dup} given more than once.")
    return columns


def _partition_to_numpy(part, dtype):
    # pandas nullable dtypes: missing values (pd.NA) become NaN
    return part.to_numpy(dtype=dtype, na_value=np.nan)


def frame_to_array(df, *, name: str = "X", columns: Sequence[str] | None = None):
    """A Dask DataFrame as a 2-D float Dask array, one block per partition.

    Row counts stay unknown (NaN chunk sizes): nothing is computed.

    Parameters
    ----------
    df : dask.dataframe.DataFrame
    name : str
        Name used in error messages.
    columns : sequence of str, optional
        Feature columns (default: all; every one must be numeric).

    Returns
    -------
    dask.array.Array of shape (nan, n_features), float32 or float64
    """
    cols = check_columns(list(df.columns), dict(df.dtypes.items()), columns, name=name)
    sub = df[cols]
    dtypes = [np.dtype(getattr(t, "numpy_dtype", t)) for t in sub.dtypes]
    work = np.result_type(*dtypes)
    work = np.dtype(np.float32) if work in (np.float16, np.float32) else np.dtype(np.float64)
    if any(t != work for t in dtypes):
        sub = sub.astype(work)
    return sub.to_dask_array(lengths=None)


def frame_labels(df, labels):
    """Labels (a Dask array with one block per partition) as a Series on ``df``'s index.

    Parameters
    ----------
    df : dask.dataframe.DataFrame
        The table the labels were computed from.
    labels : dask.array.Array of shape (n,), int64
        One block per partition of ``df``.

    Returns
    -------
    dask.dataframe.Series
        Named ``"label"``, aligned with ``df.index``.
    """
    import dask.dataframe as dd

    return dd.from_dask_array(labels, columns="label", index=df.index)


def read_parquet_table(path, *, columns: Sequence[str] | None, id_column: str | None = None,
                       storage_options: dict | None = None):
    """Open a Parquet file or directory lazily and check the requested columns.

    Returns
    -------
    df : dask.dataframe.DataFrame
        The feature columns (and the id column when given).
    columns : list of str
    """
    import dask.dataframe as dd

    try:
        df = dd.read_parquet(path, storage_options=storage_options)
    except (FileNotFoundError, OSError) as exc:
        raise ValueError(f"INPUT: cannot read Parquet at {str(path)!r}: {exc}") from exc
    cols = list(df.columns)
    if id_column is not None and id_column not in cols:
        raise ValueError(f"--id-column: unknown column {id_column!r}; available: {cols}.")
    feature_candidates = None if columns is None else list(columns)
    if feature_candidates is None:
        feature_candidates = [
            c for c in cols if c != id_column and _is_numeric(df.dtypes[c])
        ]
    features = check_columns(cols, dict(df.dtypes.items()), feature_candidates, name="--columns")
    keep = features + ([id_column] if id_column is not None and id_column not in features else [])
    return df[keep], features
