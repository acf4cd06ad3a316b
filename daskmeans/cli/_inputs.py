"""What INPUT is, for ``daskmeans fit`` and ``predict``: one adapter per kind of input.

An adapter recognises its kind of INPUT (from the path or the flags given)
and opens it, with one-line usage errors, as a
:class:`~daskmeans.cli._sources.Source` that the
``fit`` pipeline (:mod:`daskmeans.cli._fit`) and ``predict`` use without
knowing its kind: fit a model on it, give its labels lazily, describe it in
the report. Labels are written by :func:`daskmeans.cli._common.write_labels`.

Kinds::

    parquet   a Parquet file or directory      DIR/labels.parquet
    xarray    a Zarr group written by xarray   DIR/labels.zarr (xarray store)
    array     a 2-D Zarr array (the default)   DIR/labels.zarr (Zarr array)

To add a kind: write a ``Source`` subclass and its ``open(args)``
function, and put an :class:`InputAdapter` in :data:`ADAPTERS` ahead of the
kinds it must take precedence over (the Zarr array kind, last, takes any
INPUT no other kind claims). For example::

    InputAdapter("npz", "sparse .npz files", _open_npz,
                 detect=lambda text: text.endswith(".npz"))

Outputs of the table and cube kinds: ``labels.zarr`` is an xarray Zarr store
with a ``label`` variable over the sample dimensions (with their coordinates;
-1 where masked); ``labels.parquet`` has one row per input row, in input
order: the id column (when given), ``label`` and ``distance`` (Euclidean
distance to the centre; NaN where omitted).
"""

from __future__ import annotations

import argparse
import json
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ._common import UsageError, names, one_line, open_array, require_exists
from ._sources import ArraySource, Source

__all__ = ["ADAPTERS", "ArraySource", "InputAdapter", "Source", "add_arguments", "choose"]


def _anything(text: str) -> bool:
    return True


@dataclass(frozen=True)
class InputAdapter:
    """One kind of INPUT: how it is recognised and opened.

    Parameters
    ----------
    name : str
        The kind, as in error messages.
    description : str
        The kind in messages: "--sample-weight is not supported with ...".
    open : callable
        ``open(args) -> Source``: open INPUT, checked; raise
        :class:`~daskmeans.cli._common.UsageError` for bad input.
    detect : callable, optional
        ``detect(INPUT) -> bool``: True when the path is of this kind.
    flags : tuple of str
        Destinations of flags that only this kind takes; any of them given
        selects it. Recorded in the report's ``parameters``.
    add_arguments : callable, optional
        ``add_arguments(parser)``: add the flags of this kind to ``fit`` and
        ``predict`` (those of the built-in kinds are in :func:`add_arguments`).
    supports_sample_weight, supports_checkpoint : bool
        Whether ``fit --sample-weight`` and ``--checkpoint`` work with it.
    """

    name: str
    description: str
    open: Callable[[argparse.Namespace], Source]
    detect: Callable[[str], bool] = _anything
    flags: tuple[str, ...] = ()
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None
    supports_sample_weight: bool = False
    supports_checkpoint: bool = False

    def given(self, args: argparse.Namespace) -> list[str]:
        """The flags of this kind given on the command line."""
        return [f for f in self.flags if getattr(args, f, None) is not None]

    def claims(self, args: argparse.Namespace) -> bool:
        """True when INPUT (or the flags given) is of this kind."""
        return bool(self.given(args)) or self.detect(args.input)

    def parameters(self, args: argparse.Namespace) -> dict:
        """The flags of this kind, for the report's ``parameters``."""
        return {f: getattr(args, f, None) for f in self.flags}


# --------------------------------------------------------------------------- Zarr array


def _open_array(args: argparse.Namespace) -> Source:
    return ArraySource(args.input, open_array(args.input, "INPUT", ndim=2), like=args.input)


# --------------------------------------------------------------------------- tables and cubes


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of every kind of INPUT to a ``fit`` or ``predict`` parser."""
    group = parser.add_argument_group(
        "xarray Zarr groups and Parquet tables",
        "INPUT may also be a Zarr group written by xarray (needs daskmeans[xarray]) or a "
        "Parquet file or directory (needs daskmeans[parquet]).",
    )
    group.add_argument("--variables", type=names, metavar="A,B,C",
                       help="Zarr group: data variables used as features")
    group.add_argument("--feature-dim", metavar="DIM",
                       help="Zarr group: dimension of a data variable holding the features")
    group.add_argument("--columns", type=names, metavar="A,B,C",
                       help="Parquet: feature columns (default: every numeric column but "
                            "the id column)")
    group.add_argument("--id-column", metavar="ID",
                       help="Parquet: column written next to each label")
    group.add_argument("--nan-policy", choices=["raise", "omit"], default="raise",
                       help="rows (samples) with NaN: 'raise' (default) or 'omit' (label -1, "
                            "skipped by the fit)")
    for adapter in ADAPTERS:
        if adapter.add_arguments is not None:
            adapter.add_arguments(parser)


def _is_parquet_path(text: str) -> bool:
    path = Path(text)
    if path.suffix.lower() in (".parquet", ".pq"):
        return True
    if path.is_dir():
        return (path / "_metadata").exists() or any(path.glob("*.parquet"))
    return False


def _is_zarr_group(text: str) -> bool:
    path = Path(text)
    if not path.is_dir():
        return False
    if (path / ".zgroup").exists():
        return True
    meta = path / "zarr.json"
    if meta.exists():
        try:
            return json.loads(meta.read_text()).get("node_type") == "group"
        except ValueError:
            return False
    return False


class CubeSource(Source):
    kind = "xarray"
    label_format = "an xarray Zarr store"

    def __init__(self, text: str, obj, feature_dim):
        self.text = text
        self.obj = obj
        self.feature_dim = feature_dim
        sizes = {str(k): int(v) for k, v in obj.sizes.items()}
        if feature_dim is None:
            self.n_features = len(obj.data_vars)
            self.n_rows = math.prod(sizes.values())
        else:
            self.n_features = sizes[str(feature_dim)]
            self.n_rows = math.prod(v for k, v in sizes.items() if k != str(feature_dim))
        self._labels = None

    def fit(self, model, **fit_kwargs) -> None:
        from daskmeans import xarray as dkx

        self._labels = dkx.fit_predict(model, self.obj, feature_dim=self.feature_dim,
                                       **fit_kwargs)

    def fit_labels(self, model):
        return self._labels

    def predict_labels(self, model):
        from daskmeans import xarray as dkx

        return dkx.predict(model, self.obj, feature_dim=self.feature_dim)

    def summary(self) -> dict:
        obj, feature_dim = self.obj, self.feature_dim
        sizes = {str(k): int(v) for k, v in obj.sizes.items()}
        if feature_dim is None:
            features = [str(v) for v in obj.data_vars]
        else:
            coord = obj.coords.get(feature_dim)
            features = ([str(v) for v in coord.values] if coord is not None
                        else list(range(sizes[str(feature_dim)])))
        return {"input": self.text, "kind": self.kind, "sizes": sizes,
                "feature_dim": feature_dim or "variable", "features": features}


def _open_cube_source(args: argparse.Namespace) -> Source:
    obj, feature_dim = _open_cube(args)
    return CubeSource(args.input, obj, feature_dim)


def _open_cube(args: argparse.Namespace):
    """The xarray object to cluster and its feature_dim, with one-line usage errors."""
    require_exists(args.input, "INPUT")
    try:
        import xarray as xr
    except ImportError:
        raise UsageError("Zarr groups need xarray: pip install 'daskmeans[xarray]'") from None
    try:
        with warnings.catch_warnings():
            # stores without consolidated metadata are fine (xarray falls back)
            warnings.filterwarnings("ignore", message=".*consolidated metadata.*")
            ds = xr.open_zarr(args.input, chunks={})
    except Exception as exc:  # noqa: BLE001 - any reader error is bad input
        raise UsageError(f"INPUT {args.input!r} is not an xarray Zarr group "
                         f"({one_line(exc)})") from None
    available = [str(v) for v in ds.data_vars]
    if args.variables is not None:
        unknown = [v for v in args.variables if v not in available]
        if unknown:
            raise UsageError(f"--variables: unknown variable(s) {', '.join(unknown)}; "
                             f"data variables: {', '.join(available)}")
    if args.feature_dim is not None:
        dim = args.feature_dim
        chosen = args.variables or [v for v in available if dim in ds[v].dims]
        if not chosen:
            dims = sorted({str(d) for v in available for d in ds[v].dims})
            raise UsageError(f"--feature-dim: no data variable has dimension {dim!r}; "
                             f"dimensions: {', '.join(dims)}")
        if len(chosen) != 1:
            raise UsageError(f"--feature-dim: several data variables have dimension {dim!r} "
                             f"({', '.join(chosen)}); pick one with --variables NAME")
        arr = ds[chosen[0]]
        if dim not in arr.dims:
            raise UsageError(f"--feature-dim: variable {chosen[0]!r} has no dimension {dim!r}; "
                             f"its dimensions: {', '.join(map(str, arr.dims))}")
        if arr.dtype.kind not in "biuf":
            raise UsageError(f"variable {chosen[0]!r} is not numeric (dtype {arr.dtype})")
        return arr, dim
    if args.variables is None:
        raise UsageError(f"INPUT {args.input!r} is a Zarr group: choose the features with "
                         "--variables A,B,C or --feature-dim DIM")
    first = args.variables[0]
    for v in args.variables:
        if ds[v].dtype.kind not in "biuf":
            raise UsageError(f"--variables: {v!r} is not numeric (dtype {ds[v].dtype})")
        if set(ds[v].dims) != set(ds[first].dims):
            raise UsageError(f"--variables: {v!r} has dimensions {ds[v].dims}, "
                             f"{first!r} has {ds[first].dims}; "
                             "variables used together must share their dimensions")
    return ds[args.variables], None


class TableSource(Source):
    kind = "parquet"
    label_file = "labels.parquet"
    label_format = "a Parquet directory"

    def __init__(self, text: str, df, features: list[str], id_column: str | None):
        self.text = text
        self.df = df
        self.features = features
        self.id_column = id_column
        self.n_features = len(features)
        self._data = {"input": text, "kind": self.kind, "columns": features,
                      "id_column": id_column, "n_partitions": int(df.npartitions)}
        self._X = None

    def _array(self):
        from daskmeans.io._tables import frame_to_array

        if self._X is None:
            self._X = frame_to_array(self.df, columns=self.features)
        return self._X

    def fit(self, model, **fit_kwargs) -> None:
        model.fit(self._array(), **fit_kwargs)

    def fit_labels(self, model):
        return self.predict_labels(model)

    def predict_labels(self, model):
        """One row per input row: id, label (-1 where omitted) and distance to the centre.

        The blocks of the feature array, the labels and the distances line up
        with the partitions of the table and share their reads.
        """
        import dask.dataframe as dd
        import numpy as np
        import pandas as pd
        from dask import delayed

        from daskmeans.io._tables import frame_partitions

        df, id_column, X = self.df, self.id_column, self._array()
        parts = frame_partitions(df)
        labels = model.predict(X).to_delayed().ravel()
        dists = model.transform(X).to_delayed().ravel()
        meta = {} if id_column is None else {id_column: df._meta[id_column].to_numpy()}
        meta = pd.DataFrame({**meta, "label": np.zeros(0, np.int64),
                             "distance": np.zeros(0, np.float64)})
        pieces = [delayed(_table_piece, pure=True)(p, lab, dist, id_column)
                  for p, lab, dist in zip(parts, labels, dists, strict=True)]
        return dd.from_delayed(pieces, meta=meta, verify_meta=False)

    def summary(self) -> dict:
        return dict(self._data)

    def check_written(self, args: argparse.Namespace, path: Path) -> list[str]:
        """Row counts of the written table; a warning line when the id column is not unique."""
        import dask
        import dask.dataframe as dd

        lines = []
        lab = dd.read_parquet(str(path), columns=["label"])["label"]
        n_rows, n_omit = dask.compute(lab.count(), (lab < 0).sum())
        self._data["n_rows"] = int(n_rows)
        self._data["n_omitted"] = int(n_omit)
        if self.id_column is not None:
            ids = dd.read_parquet(str(path), columns=[self.id_column])[self.id_column]
            counts = ids.value_counts()
            (n_dup,) = dask.compute((counts[counts > 1]).sum())
            n_dup = int(n_dup)
            self._data["n_duplicated_ids"] = n_dup
            if n_dup:
                lines.append(f"id column {self.id_column!r} is not unique: {n_dup} rows share "
                             "their id with another row")
        return lines


def _table_piece(part, labels, distances, id_column):
    import numpy as np
    import pandas as pd

    labels = np.asarray(labels, dtype=np.int64)
    dist = np.full(len(labels), np.nan)
    ok = labels >= 0
    dist[ok] = np.asarray(distances)[np.flatnonzero(ok), labels[ok]]
    out = {} if id_column is None else {id_column: part[id_column].to_numpy()}
    out["label"] = labels
    out["distance"] = dist
    return pd.DataFrame(out)


def _open_table(args: argparse.Namespace) -> Source:
    require_exists(args.input, "INPUT")
    try:
        import dask.dataframe  # noqa: F401
        import pyarrow  # noqa: F401
    except ImportError:
        raise UsageError("Parquet input needs dask[dataframe] and pyarrow: "
                         "pip install 'daskmeans[parquet]'") from None
    from daskmeans.io._tables import read_parquet_table

    try:
        df, features = read_parquet_table(args.input, columns=args.columns,
                                          id_column=args.id_column)
    except ValueError as exc:  # the table's columns do not fit the flags
        raise UsageError(one_line(exc)) from None
    if args.id_column is not None and args.id_column in features:
        raise UsageError(f"--id-column {args.id_column!r} is also a feature column")
    return TableSource(args.input, df, features, args.id_column)


def _is_sparse_input(text: str) -> bool:
    from ._sparse import is_sparse_input

    return is_sparse_input(text)


def _open_sparse(args: argparse.Namespace) -> Source:
    from ._sparse import open_sparse  # save_npz files and AnnData-layout CSR groups

    return open_sparse(args)


# --------------------------------------------------------------------------- registry

#: Every kind of INPUT, asked in this order; the first that claims INPUT opens it.
ADAPTERS: list[InputAdapter] = [
    InputAdapter("parquet", "Parquet input", _open_table, detect=_is_parquet_path,
                 flags=("columns", "id_column")),
    InputAdapter("sparse", "sparse matrices", _open_sparse, detect=_is_sparse_input,
                 supports_sample_weight=True),
    InputAdapter("xarray", "Zarr groups", _open_cube_source, detect=_is_zarr_group,
                 flags=("variables", "feature_dim")),
    InputAdapter("array", "Zarr arrays", _open_array, supports_sample_weight=True,
                 supports_checkpoint=True),
]


def _flag_names(adapter: InputAdapter) -> str:
    return "/".join("--" + f.replace("_", "-") for f in adapter.flags)


def choose(args: argparse.Namespace) -> InputAdapter:
    """The adapter of INPUT (from the flags given, else from its path)."""
    chosen = [a for a in ADAPTERS if a.given(args)]
    if len(chosen) > 1:
        raise UsageError(" and ".join(f"{_flag_names(a)} ({a.description})" for a in chosen)
                         + " cannot be combined")
    for adapter in chosen or ADAPTERS:
        if adapter.claims(args):
            return adapter
    raise UsageError(f"INPUT {args.input!r}: unknown kind of input")  # pragma: no cover
