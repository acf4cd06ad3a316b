"""``daskmeans fit`` and ``predict`` on xarray Zarr groups and Parquet tables.

Registered in :mod:`daskmeans.cli` by :func:`add_arguments` and dispatched by
:func:`handles`: when INPUT is a Zarr group (written by xarray) or a Parquet
file or directory, or one of the flags below is given, the commands run here.

Flags::

    --variables A,B,C     data variables of a Zarr group as features (a Dataset)
    --feature-dim DIM     the dimension of one data variable that holds the features
    --columns A,B,C       feature columns of a Parquet table (default: every numeric one)
    --id-column ID        column copied next to each label in DIR/labels.parquet
    --nan-policy {raise,omit}

Outputs: ``DIR/labels.zarr`` is an xarray Zarr store with a ``label`` variable
over the sample dimensions (with their coordinates; -1 where masked);
``DIR/labels.parquet`` has one row per input row, in input order: the id
column (when given), ``label`` and ``distance`` (Euclidean distance to the
centre; NaN where omitted).
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from datetime import datetime
from pathlib import Path

import numpy as np

__all__ = ["add_arguments", "handles", "cmd_fit", "cmd_predict", "model_options"]


def _names(text: str) -> list[str]:
    names = [t.strip() for t in text.split(",")]
    if not all(names):
        raise argparse.ArgumentTypeError(f"expected comma-separated names, got {text!r}")
    return names


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the table and data-cube options to a ``fit`` or ``predict`` parser."""
    group = parser.add_argument_group(
        "xarray Zarr groups and Parquet tables",
        "INPUT may also be a Zarr group written by xarray (needs daskmeans[xarray]) or a "
        "Parquet file or directory (needs daskmeans[parquet]).",
    )
    group.add_argument("--variables", type=_names, metavar="A,B,C",
                       help="Zarr group: data variables used as features")
    group.add_argument("--feature-dim", metavar="DIM",
                       help="Zarr group: dimension of a data variable holding the features")
    group.add_argument("--columns", type=_names, metavar="A,B,C",
                       help="Parquet: feature columns (default: every numeric column but "
                            "the id column)")
    group.add_argument("--id-column", metavar="ID",
                       help="Parquet: column written next to each label")
    group.add_argument("--nan-policy", choices=["raise", "omit"], default="raise",
                       help="rows (samples) with NaN: 'raise' (default) or 'omit' (label -1, "
                            "skipped by the fit)")


def model_options(args: argparse.Namespace) -> dict:
    """Extra KMeans keyword arguments from these flags (only non-defaults)."""
    policy = getattr(args, "nan_policy", "raise")
    return {} if policy == "raise" else {"nan_policy": policy}


# --------------------------------------------------------------------------- input kinds


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
        import json

        try:
            return json.loads(meta.read_text()).get("node_type") == "group"
        except ValueError:
            return False
    return False


def input_kind(args: argparse.Namespace) -> str | None:
    """"xarray", "parquet" or None (a plain 2-D Zarr array, handled by cli.py)."""
    text = args.input
    table_flags = args.columns is not None or args.id_column is not None
    cube_flags = args.variables is not None or args.feature_dim is not None
    if table_flags and cube_flags:
        from .cli import UsageError

        raise UsageError("--columns/--id-column (Parquet) and --variables/--feature-dim "
                         "(Zarr group) cannot be combined")
    if table_flags or _is_parquet_path(text):
        return "parquet"
    if cube_flags or _is_zarr_group(text):
        return "xarray"
    return None


def handles(args: argparse.Namespace) -> bool:
    """True when this module runs the command (INPUT is a table or a data cube)."""
    return input_kind(args) is not None


# --------------------------------------------------------------------------- opening


def _open_cube(args: argparse.Namespace):
    """The xarray object to cluster and its feature_dim, with one-line usage errors."""
    from .cli import UsageError, _require_exists

    _require_exists(args.input, "INPUT")
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
                         f"({' '.join(str(exc).split())})") from None
    available = [str(v) for v in ds.data_vars]
    if args.variables is not None:
        unknown = [v for v in args.variables if v not in available]
        if unknown:
            raise UsageError(f"--variables: unknown variable(s) {', '.join(unknown)}; "
                             f"data variables: {', '.join(available)}")
    if args.feature_dim is not None:
        dim = args.feature_dim
        names = args.variables or [v for v in available if dim in ds[v].dims]
        if not names:
            dims = sorted({str(d) for v in available for d in ds[v].dims})
            raise UsageError(f"--feature-dim: no data variable has dimension {dim!r}; "
                             f"dimensions: {', '.join(dims)}")
        if len(names) != 1:
            raise UsageError(f"--feature-dim: several data variables have dimension {dim!r} "
                             f"({', '.join(names)}); pick one with --variables NAME")
        arr = ds[names[0]]
        if dim not in arr.dims:
            raise UsageError(f"--feature-dim: variable {names[0]!r} has no dimension {dim!r}; "
                             f"its dimensions: {', '.join(map(str, arr.dims))}")
        if arr.dtype.kind not in "biuf":
            raise UsageError(f"variable {names[0]!r} is not numeric (dtype {arr.dtype})")
        return arr, dim
    if args.variables is None:
        raise UsageError(f"INPUT {args.input!r} is a Zarr group: choose the features with "
                         "--variables A,B,C or --feature-dim DIM")
    for v in args.variables:
        if ds[v].dtype.kind not in "biuf":
            raise UsageError(f"--variables: {v!r} is not numeric (dtype {ds[v].dtype})")
        if set(ds[v].dims) != set(ds[args.variables[0]].dims):
            raise UsageError(f"--variables: {v!r} has dimensions {ds[v].dims}, "
                             f"{args.variables[0]!r} has {ds[args.variables[0]].dims}; "
                             "variables used together must share their dimensions")
    return ds[args.variables], None


def _open_table(args: argparse.Namespace):
    from .io._tables import read_parquet_table
    from .cli import UsageError, _require_exists

    _require_exists(args.input, "INPUT")
    try:
        import dask.dataframe  # noqa: F401
        import pyarrow  # noqa: F401
    except ImportError:
        raise UsageError("Parquet input needs dask[dataframe] and pyarrow: "
                         "pip install 'daskmeans[parquet]'") from None
    try:
        df, features = read_parquet_table(args.input, columns=args.columns,
                                          id_column=args.id_column)
    except ValueError as exc:
        raise UsageError(" ".join(str(exc).split())) from None
    if args.id_column is not None and args.id_column in features:
        raise UsageError(f"--id-column {args.id_column!r} is also a feature column")
    return df, features


# --------------------------------------------------------------------------- outputs


def _write_label_cube(labels, path: Path) -> None:
    """Write a label DataArray as an xarray Zarr store, chunk by chunk, atomically."""
    from .io._atomic import atomic_dir

    ds = labels.to_dataset()
    for name in ds.variables:
        ds[name].encoding = {}
    with atomic_dir(path) as tmp, warnings.catch_warnings():
        # zarr-python warns that consolidated metadata is not in the v3 spec
        warnings.filterwarnings("ignore", message=".*[Cc]onsolidated metadata.*")
        ds.to_zarr(str(tmp), mode="w", consolidated=True)


def _table_piece(part, labels, distances, id_column):
    import pandas as pd

    labels = np.asarray(labels, dtype=np.int64)
    dist = np.full(len(labels), np.nan)
    ok = labels >= 0
    dist[ok] = np.asarray(distances)[np.flatnonzero(ok), labels[ok]]
    out = {} if id_column is None else {id_column: part[id_column].to_numpy()}
    out["label"] = labels
    out["distance"] = dist
    return pd.DataFrame(out)


def _table_labels(df, X, model, id_column):
    """One row per input row: id, label (-1 where omitted) and distance to the centre.

    ``X`` is ``frame_to_array(df, ...)``: its blocks, the labels and the
    distances line up with the partitions of ``df`` and share their reads.
    """
    import dask.dataframe as dd
    import pandas as pd
    from dask import delayed

    from .io._tables import frame_partitions

    parts = frame_partitions(df)
    labels = model.predict(X).to_delayed().ravel()
    dists = model.transform(X).to_delayed().ravel()
    meta = {} if id_column is None else {id_column: df._meta[id_column].to_numpy()}
    meta = pd.DataFrame({**meta, "label": np.zeros(0, np.int64),
                         "distance": np.zeros(0, np.float64)})
    pieces = [delayed(_table_piece, pure=True)(p, lab, dist, id_column)
              for p, lab, dist in zip(parts, labels, dists, strict=True)]
    return dd.from_delayed(pieces, meta=meta, verify_meta=False)


def _write_label_table(labels, path: Path) -> None:
    from .io._atomic import atomic_dir

    with atomic_dir(path) as tmp:
        labels.to_parquet(str(tmp), write_index=False)


def _check_ids(path: Path, id_column: str) -> tuple[int, int]:
    """(rows, duplicated ids) of a written labels table (reads the small output only)."""
    import dask.dataframe as dd

    ids = dd.read_parquet(str(path), columns=[id_column])[id_column]
    counts = ids.value_counts()
    n_rows, n_dup = dask_compute(counts.sum(), (counts[counts > 1]).sum())
    return int(n_rows), int(n_dup)


def dask_compute(*objs):
    import dask

    return dask.compute(*objs)


def _label_counts(path: Path) -> tuple[int, int]:
    """(rows, rows labelled -1) of a written labels table."""
    import dask.dataframe as dd

    lab = dd.read_parquet(str(path), columns=["label"])["label"]
    n, n_omit = dask_compute(lab.count(), (lab < 0).sum())
    return int(n), int(n_omit)


# --------------------------------------------------------------------------- commands


def cmd_fit(args: argparse.Namespace) -> int:
    """``daskmeans fit`` for a Zarr group or a Parquet table (see the module docstring)."""
    from . import KMeans
    from .io._atomic import write_json
    from ._progress import Progress
    from .cli import (
        EXIT_OK,
        REPORT_FORMAT,
        UsageError,
        _emit_json,
        _fit_parameters,
        _message,
        _resolve_seed,
        _scheduler,
        _versions,
        _warning_lines,
    )

    started = datetime.now().astimezone()
    t_start = time.perf_counter()
    kind = input_kind(args)
    if args.sample_weight is not None:
        raise UsageError("--sample-weight is not supported with Zarr groups or Parquet input")
    if args.checkpoint is not None:
        raise UsageError("--checkpoint is not supported with Zarr groups or Parquet input")
    if kind == "xarray":
        obj, feature_dim = _open_cube(args)
    else:
        df, features = _open_table(args)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {args.out!r} exists and is not a directory")
    seed, seed_source = _resolve_seed(args)
    extra: list[str] = []
    with _scheduler(args) as scheduler_name:
        progress = Progress(sys.stderr, mode="off" if args.quiet else "auto")
        model = KMeans(
            n_clusters=args.k, init=args.init, n_init=args.n_init, max_iter=args.max_iter,
            tol=args.tol, random_state=seed, callback=progress, **model_options(args),
        )
        with warnings.catch_warnings(record=True) as caught, progress:
            warnings.simplefilter("always")
            if kind == "xarray":
                from . import xarray as dkx

                labels = dkx.fit_predict(model, obj, feature_dim=feature_dim)
                t0 = time.perf_counter()
                out.mkdir(parents=True, exist_ok=True)
                _write_label_cube(labels, out / "labels.zarr")
                data = _cube_summary(args, obj, feature_dim)
                outputs = {"labels": "labels.zarr"}
            else:
                from .io._tables import frame_to_array

                X = frame_to_array(df, columns=features)
                model.fit(X)
                t0 = time.perf_counter()
                out.mkdir(parents=True, exist_ok=True)
                table = _table_labels(df, X, model, args.id_column)
                _write_label_table(table, out / "labels.parquet")
                data = {"input": args.input, "kind": "parquet", "columns": features,
                        "id_column": args.id_column, "n_partitions": int(df.npartitions)}
                extra += _table_checks(args, out / "labels.parquet", data)
                outputs = {"labels": "labels.parquet"}
            t_labels = time.perf_counter() - t0
        messages = extra + _warning_lines(_own_warnings(caught))
        for line in messages:
            _message(args, f"warning: {line}")
        model.save(out / "model.json")
    timings = {k: float(v) for k, v in getattr(model, "timings_", {}).items()}
    timings["write_labels"] = t_labels
    timings["total"] = time.perf_counter() - t_start
    params = _fit_parameters(args, seed, seed_source)
    params.update(nan_policy=args.nan_policy, variables=args.variables,
                  feature_dim=args.feature_dim, columns=args.columns, id_column=args.id_column)
    report = {
        "format": "daskmeans.report",
        "format_version": REPORT_FORMAT,
        "command": "fit",
        "status": "ok",
        "started": started.isoformat(timespec="seconds"),
        "finished": datetime.now().astimezone().isoformat(timespec="seconds"),
        "parameters": params,
        "seed": seed,
        "data": data,
        "scheduler": scheduler_name,
        "resumed_from_iteration": None,
        "n_iter": int(model.n_iter_),
        "converged": int(model.n_iter_) < args.max_iter,
        "n_passes": int(getattr(model, "n_passes_", 0)),
        "n_omitted": _n_omitted(model, data),
        "inertia": float(model.inertia_),
        "inertia_history": [float(v) for v in model.inertia_history_],
        "cluster_sizes": [float(v) for v in model.cluster_sizes_],
        "timings": timings,
        "warnings": messages,
        "outputs": {"model": "model.json", **outputs, "report": "report.json"},
        "versions": _versions(),
    }
    write_json(out / "report.json", report)
    _message(args, f"wrote {args.out}: k={args.k}, {report['n_iter']} iterations, "
                   f"{report['n_passes']} passes, inertia {report['inertia']:.6e}, "
                   f"{timings['total']:.1f}s")
    if args.json:
        _emit_json(report)
    return EXIT_OK


def _own_warnings(caught):
    """Drop deprecation notices raised inside dependencies (pandas, dask): they are not
    about the user's data or run."""
    notices = DeprecationWarning | FutureWarning | PendingDeprecationWarning
    return [
        item for item in caught
        if not (issubclass(item.category, notices) or "Pandas" in item.category.__name__)
        or "daskmeans" in str(item.filename)
    ]


def _n_omitted(model, data: dict) -> int | None:
    value = getattr(model, "n_omitted_", None)
    if value is not None:
        return int(value)
    return data.get("n_omitted")


def _table_checks(args, path: Path, data: dict) -> list[str]:
    """Row counts of the written table; a warning line when the id column is not unique."""
    lines = []
    n_rows, n_omit = _label_counts(path)
    data["n_rows"] = n_rows
    data["n_omitted"] = n_omit
    if args.id_column is not None:
        _, n_dup = _check_ids(path, args.id_column)
        data["n_duplicated_ids"] = n_dup
        if n_dup:
            lines.append(f"id column {args.id_column!r} is not unique: {n_dup} rows share "
                         "their id with another row")
    return lines


def _cube_summary(args, obj, feature_dim) -> dict:
    sizes = {str(k): int(v) for k, v in obj.sizes.items()}
    if feature_dim is None:
        features = [str(v) for v in obj.data_vars]
    else:
        coord = obj.coords.get(feature_dim)
        features = ([str(v) for v in coord.values] if coord is not None
                    else list(range(sizes[str(feature_dim)])))
    return {"input": args.input, "kind": "xarray", "sizes": sizes,
            "feature_dim": feature_dim or "variable", "features": features}


def cmd_predict(args: argparse.Namespace) -> int:
    """``daskmeans predict`` for a Zarr group or a Parquet table."""
    from .cli import EXIT_OK, UsageError, _emit_json, _load_model, _message, _same_path, _scheduler

    model = _load_model(args.model)
    if getattr(args, "nan_policy", "raise") == "omit" and hasattr(model, "nan_policy"):
        model.nan_policy = "omit"
    kind = input_kind(args)
    out = Path(args.out)
    if _same_path(args.out, args.input) or _same_path(args.out, args.model):
        raise UsageError("--out must differ from MODEL and INPUT")
    if not out.parent.is_dir():
        raise UsageError(f"directory {str(out.parent)!r} does not exist")
    t0 = time.perf_counter()
    if kind == "xarray":
        obj, feature_dim = _open_cube(args)
        n_feat = (len(obj.data_vars) if feature_dim is None else obj.sizes[feature_dim])
    else:
        df, features = _open_table(args)
        n_feat = len(features)
    if n_feat != model.n_features_in_:
        raise UsageError(f"INPUT has {n_feat} features but MODEL was fitted with "
                         f"{model.n_features_in_}")
    data: dict = {"input": args.input, "kind": kind}
    messages: list[str] = []
    with _scheduler(args):
        if kind == "xarray":
            from . import xarray as dkx

            _write_label_cube(dkx.predict(model, obj, feature_dim=feature_dim), out)
        else:
            from .io._tables import frame_to_array

            table = _table_labels(df, frame_to_array(df, columns=features), model,
                                  args.id_column)
            _write_label_table(table, out)
            messages = _table_checks(args, out, data)
    for line in messages:
        _message(args, f"warning: {line}")
    result = {
        "command": "predict",
        "model": args.model,
        "data": data,
        "out": args.out,
        "n_clusters": int(model.cluster_centers_.shape[0]),
        "warnings": messages,
        "seconds": time.perf_counter() - t0,
    }
    _message(args, f"wrote {args.out} in {result['seconds']:.1f}s")
    if args.json:
        _emit_json(result)
    return EXIT_OK
