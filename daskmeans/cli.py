"""The ``daskmeans`` command: generate data, fit, predict and inspect, as batch jobs.

Sub-commands::

    daskmeans generate OUT --n-samples N --n-features D --centers K [...]
    daskmeans fit INPUT --k K --out DIR [...]
    daskmeans predict MODEL INPUT --out LABELS
    daskmeans info INPUT|MODEL

Exit status: 0 on success; 2 for bad usage or bad input (a one-line message on
standard error, no traceback); 1 for any other failure (the message, and the
traceback with ``--verbose``); 130 and 143 when interrupted by SIGINT or
SIGTERM. Every output is written under a temporary name in its destination
directory and renamed when complete. Progress and messages go to standard
error; standard output only carries the ``--json`` document.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import secrets
import signal
import sys
import time
import traceback
import warnings
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from . import _cli_extra, _cli_minibatch, _cli_tables

__all__ = ["main", "build_parser"]

PROG = "daskmeans"
#: Version of the layout of ``report.json``.
REPORT_FORMAT = 1
#: File in a checkpoint directory that remembers the seed of a run without ``--seed``.
SEED_FILE = "seed.json"

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
EXIT_SIGINT, EXIT_SIGTERM = 130, 143


class UsageError(Exception):
    """Bad usage or bad input: reported in one line, exit status 2."""


class Terminated(Exception):
    """Raised in the main thread when SIGTERM arrives, so that cleanup runs."""


# --------------------------------------------------------------------------- parser


class _Parser(argparse.ArgumentParser):
    """ArgumentParser whose errors are one line on stderr and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0 or value >= 2**63:
        raise argparse.ArgumentTypeError(f"expected an integer in [0, 2**63), got {text!r}")
    return value


def _nonneg_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}")
    return value


def _n_init(text: str) -> int | str:
    return "auto" if text == "auto" else _positive_int(text)


def _memory_limit(text: str) -> str:
    from dask.utils import parse_bytes

    if text == "auto":
        return text
    try:
        parse_bytes(text)
    except (ValueError, TypeError):
        raise argparse.ArgumentTypeError(
            f"expected a size such as 4GB or 'auto', got {text!r}"
        ) from None
    return text


def _common_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("output and logging")
    group.add_argument("--json", action="store_true",
                       help="print the result (for fit: the report) as JSON on stdout")
    group.add_argument("--quiet", "-q", action="store_true",
                       help="no progress and no messages on stderr except errors")
    group.add_argument("--verbose", "-v", action="store_true",
                       help="show the Python traceback of internal errors")
    return common


def _scheduler_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "scheduler", "default: dask's local threaded scheduler (no cluster needed)"
    )
    where = group.add_mutually_exclusive_group()
    where.add_argument("--scheduler", metavar="ADDRESS",
                       help="connect to a running dask.distributed scheduler, e.g. "
                            "tcp://host:8786 or tls://host:8786 (security settings come "
                            "from dask's configuration)")
    where.add_argument("--scheduler-file", metavar="FILE",
                       help="connect to the scheduler described in this file "
                            "(dask scheduler --scheduler-file, dask-mpi, dask-jobqueue)")
    where.add_argument("--workers", type=_positive_int, metavar="N",
                       help="start a LocalCluster with N worker processes for this run")
    group.add_argument("--threads-per-worker", type=_positive_int, metavar="T",
                       help="threads per worker of the LocalCluster (with --workers)")
    group.add_argument("--memory-limit", type=_memory_limit, metavar="M",
                       help="memory limit per worker of the LocalCluster, e.g. 4GB "
                            "(with --workers)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``daskmeans`` command.

    Returns
    -------
    argparse.ArgumentParser
    """
    parser = _Parser(
        prog=PROG,
        description="k-means for data larger than memory, on Dask and Zarr, as batch jobs.",
        epilog="exit status: 0 success, 2 bad usage or bad input, 1 any other failure "
               "(130/143 when interrupted by SIGINT/SIGTERM). Run 'daskmeans COMMAND --help' "
               "for the options of each command.",
        allow_abbrev=False,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    common = _common_options()

    gen = sub.add_parser(
        "generate", parents=[common], allow_abbrev=False,
        help="write Gaussian blobs (or uniform points) to a Zarr array",
        description="Write Gaussian blobs with a random spread per cluster (centres uniform "
                    "in [-1, 1]^D, each cluster's standard deviation uniform in "
                    "[S/10, S]) to a Zarr array, block by block, never whole in memory. "
                    "OUT appears only when complete.",
    )
    gen.add_argument("out", metavar="OUT", help="path of the Zarr array to create")
    gen.add_argument("--n-samples", type=_positive_int, required=True, metavar="N",
                     help="number of rows")
    gen.add_argument("--n-features", type=_positive_int, required=True, metavar="D",
                     help="number of columns")
    gen.add_argument("--centers", type=_positive_int, required=True, metavar="K",
                     help="number of clusters")
    gen.add_argument("--cluster-std", type=_nonneg_float, default=0.5, metavar="S",
                     help="largest per-cluster standard deviation (default: 0.5)")
    gen.add_argument("--chunk-rows", type=_positive_int, metavar="R",
                     help="rows per Zarr chunk (default: about 64 MiB per chunk)")
    gen.add_argument("--seed", type=_seed, metavar="S",
                     help="random seed (default: drawn at random and printed)")
    gen.add_argument("--uniform", action="store_true",
                     help="points uniform in [-1, 1]^D instead of blobs")
    gen.add_argument("--dtype", choices=["float32", "float64"], default="float64",
                     help="element type (default: float64)")
    gen.add_argument("--labels", metavar="PATH",
                     help="also write the true cluster of every row (int64) to this Zarr array")
    gen.add_argument("--overwrite", action="store_true",
                     help="replace OUT (and --labels) if they exist")
    gen.set_defaults(handler=_cmd_generate)

    fit = sub.add_parser(
        "fit", parents=[common], allow_abbrev=False,
        help="fit k-means and write DIR/model.json, DIR/labels.zarr, DIR/report.json",
        description="Fit k-means to the Zarr array INPUT and write DIR/model.json (loadable "
                    "with daskmeans.KMeans.load), DIR/labels.zarr (one label per row, "
                    "chunked like INPUT) and DIR/report.json. "
                    "Existing outputs in DIR are replaced, each atomically.",
    )
    fit.add_argument("input", metavar="INPUT", help="path or URL of a 2-D Zarr array")
    fit.add_argument("--k", type=_positive_int, required=True, metavar="K",
                     help="number of clusters")
    fit.add_argument("--out", required=True, metavar="DIR", help="output directory")
    fit.add_argument("--init", choices=["k-means||", "k-means++", "random"],
                     default="k-means||", help="initialisation (default: k-means||)")
    fit.add_argument("--n-init", type=_n_init, default="auto", metavar="N",
                     help="number of initialisations run together; 'auto' (default) is 1 "
                          "for k-means|| and k-means++, 10 for random")
    fit.add_argument("--max-iter", type=_positive_int, default=300, metavar="N",
                     help="largest number of Lloyd iterations (default: 300)")
    fit.add_argument("--tol", type=_nonneg_float, default=1e-4, metavar="TOL",
                     help="relative tolerance on the centre shift (default: 1e-4)")
    fit.add_argument("--seed", type=_seed, metavar="S",
                     help="random seed (default: drawn at random, recorded in the report "
                          "and the checkpoint)")
    fit.add_argument("--sample-weight", metavar="URL",
                     help="path or URL of a 1-D Zarr array of non-negative row weights")
    fit.add_argument("--checkpoint", metavar="DIR",
                     help="save the fit state there after every iteration; running the same "
                          "command again resumes from it with a bitwise identical result")
    _scheduler_options(fit)
    _cli_tables.add_arguments(fit)
    _cli_minibatch.add_fit_options(fit)
    fit.set_defaults(handler=_cmd_fit)

    pred = sub.add_parser(
        "predict", parents=[common], allow_abbrev=False,
        help="label the rows of a Zarr array with a fitted model",
        description="Write the index of the nearest centre of MODEL for every row of INPUT "
                    "to the Zarr array LABELS (chunked like INPUT; replaced atomically).",
    )
    pred.add_argument("model", metavar="MODEL", help="model.json written by 'daskmeans fit'")
    pred.add_argument("input", metavar="INPUT", help="path or URL of a 2-D Zarr array")
    pred.add_argument("--out", required=True, metavar="LABELS",
                      help="path of the Zarr array of labels to write")
    _scheduler_options(pred)
    _cli_tables.add_arguments(pred)
    pred.set_defaults(handler=_cmd_predict)

    info = sub.add_parser(
        "info", parents=[common], allow_abbrev=False,
        help="describe a Zarr array or a model",
        description="Show the shape, dtype, chunks and size on disk of a Zarr array, or the "
                    "summary of a model.json.",
    )
    info.add_argument("target", metavar="INPUT|MODEL", help="Zarr array or model.json")
    info.set_defaults(handler=_cmd_info)
    _cli_extra.add_parsers(sub, common)  # scan-k, plot
    _cli_minibatch.add_parsers(sub, common)  # update
    return parser


# --------------------------------------------------------------------------- helpers


def _version() -> str:
    try:
        from daskmeans import __version__

        return __version__
    except Exception:  # pragma: no cover - broken installation
        return "unknown"


def _versions() -> dict:
    """Versions of Python, the platform and the libraries that shape the result."""
    import dask
    import distributed
    import zarr

    return {
        "daskmeans": _version(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "dask": dask.__version__,
        "distributed": distributed.__version__,
        "zarr": zarr.__version__,
        "platform": platform.platform(),
    }


def _is_url(text: str) -> bool:
    return "://" in text and not text.startswith("file://")


def _local(text: str) -> Path:
    return Path(text[len("file://"):] if text.startswith("file://") else text)


def _require_exists(text: str, what: str) -> None:
    """Raise :class:`UsageError` if a local path does not exist."""
    if not _is_url(text) and not _local(text).exists():
        raise UsageError(f"{what} {text!r} does not exist")


def _open_array(text: str, what: str, *, ndim: int, chunks=None):
    """Open a Zarr array read-only as a Dask array, with one-line errors.

    ``chunks`` as :func:`daskmeans.open_zarr` (``"stored"``: one block per stored chunk).
    """
    from daskmeans.io._zarr import open_zarr

    _require_exists(text, what)
    try:
        arr = open_zarr(text, chunks=chunks)
    except (ValueError, TypeError, KeyError, FileNotFoundError) as exc:
        raise UsageError(
            f"{what} {text!r} is not a readable Zarr array ({_one_line(exc)})"
        ) from None
    if arr.ndim != ndim:
        shape = "(n_samples, n_features)" if ndim == 2 else "(n_samples,)"
        raise UsageError(f"{what} {text!r} must be {ndim}-D {shape}, got shape {arr.shape}")
    if arr.dtype.kind not in "biuf":
        raise UsageError(f"{what} {text!r} must hold real numbers, got dtype {arr.dtype}")
    return arr


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return " ".join(text.split())


def _same_path(a: str, b: str) -> bool:
    if _is_url(a) or _is_url(b):
        return a.rstrip("/") == b.rstrip("/")
    return os.path.abspath(_local(a)) == os.path.abspath(_local(b))


def _emit_json(doc: dict) -> None:
    sys.stdout.write(json.dumps(doc, indent=2, default=_json_default) + "\n")
    sys.stdout.flush()


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _message(args: argparse.Namespace, text: str) -> None:
    if not args.quiet:
        print(f"{PROG}: {text}", file=sys.stderr, flush=True)


def _write_labels(labels, path: Path, like: str | None = None) -> None:
    """Stream a lazy 1-D array of labels into a new Zarr array at ``path``, atomically.

    With ``like`` (the input's path or URL) the labels are chunked like its
    stored rows; each block of ``labels`` holds whole stored chunks (as
    :func:`daskmeans.open_zarr` reads them), so every chunk is written by one task.
    """
    import dask.array as da
    import zarr

    from daskmeans.io._atomic import atomic_dir

    from daskmeans.io._zarr import stored_row_chunks

    rows = labels.chunks[0][0] if like is None else stored_row_chunks(like)
    with atomic_dir(path) as tmp:
        target = zarr.create_array(
            store=str(tmp), shape=labels.shape, chunks=(rows,),
            dtype=labels.dtype, attributes={"description": "daskmeans cluster labels"},
        )
        da.store(labels, target, lock=False, compute=True)


@contextlib.contextmanager
def _scheduler(args: argparse.Namespace) -> Iterator[str]:
    """Activate the scheduler the options ask for; yield a description of it."""
    import dask

    local_only = args.threads_per_worker is not None or args.memory_limit is not None
    if local_only and args.workers is None:
        raise UsageError("--threads-per-worker and --memory-limit need --workers")
    if args.scheduler_file is not None:
        _require_exists(args.scheduler_file, "--scheduler-file")
    if args.scheduler is None and args.scheduler_file is None and args.workers is None:
        with dask.config.set(scheduler="threads"):
            yield "threads"
        return
    from distributed import Client, LocalCluster

    if args.workers is not None:
        kwargs: dict[str, Any] = {"n_workers": args.workers, "processes": True,
                                  "dashboard_address": ":0"}
        if args.threads_per_worker is not None:
            kwargs["threads_per_worker"] = args.threads_per_worker
        if args.memory_limit is not None:
            kwargs["memory_limit"] = args.memory_limit
        with LocalCluster(**kwargs) as cluster, Client(cluster):
            yield f"LocalCluster(n_workers={args.workers})"
        return
    if args.scheduler_file is not None:
        client = Client(scheduler_file=args.scheduler_file)
        where = f"scheduler file {args.scheduler_file}"
    else:
        client = Client(args.scheduler)
        where = str(args.scheduler)
    with client:
        yield f"distributed ({where})"


def _resolve_seed(args: argparse.Namespace) -> tuple[int, str]:
    """The seed of a fit and where it came from: given, checkpoint or drawn."""
    if args.seed is not None:
        return args.seed, "given"
    if args.checkpoint is not None:
        path = Path(args.checkpoint) / SEED_FILE
        with contextlib.suppress(FileNotFoundError):
            try:
                seed = json.loads(path.read_text())["seed"]
            except (ValueError, KeyError, TypeError):
                raise UsageError(f"{path} is damaged; remove it or pass --seed") from None
            if isinstance(seed, int) and seed >= 0:
                return seed, "checkpoint"
            raise UsageError(f"{path} holds an invalid seed; remove it or pass --seed")
    return secrets.randbits(32), "drawn"


def _prepare_checkpoint(directory: str, seed: int) -> int | None:
    """Create the checkpoint directory, remember the seed, and return saved iterations.

    The seed file is (re)written only while no checkpoint has been saved, so the
    seed that belongs to an existing checkpoint is never replaced.

    Returns
    -------
    int or None
        Lloyd iterations already saved, None when nothing was saved.
    """
    from daskmeans.engine._checkpoint import Checkpoint, decode
    from daskmeans.io._atomic import write_json

    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    try:
        doc = Checkpoint(path, {}).read()
    except ValueError as exc:
        raise UsageError(_one_line(exc)) from None
    if doc is None:
        write_json(path / SEED_FILE, {"seed": seed})
        return None
    with contextlib.suppress(Exception):
        return int(np.max(decode(doc["state"])["n_iter"]))
    return 0


# --------------------------------------------------------------------------- commands


def _cmd_generate(args: argparse.Namespace) -> int:
    from daskmeans.datasets import write_blobs

    out = Path(args.out)
    targets = [out] + ([Path(args.labels)] if args.labels else [])
    if args.labels and _same_path(args.out, args.labels):
        raise UsageError("--labels must differ from OUT")
    for path in targets:
        if path.exists() and not args.overwrite:
            raise UsageError(f"{str(path)!r} already exists (use --overwrite to replace it)")
        if not path.parent.is_dir():
            raise UsageError(f"directory {str(path.parent)!r} does not exist")
    seed = args.seed if args.seed is not None else secrets.randbits(32)
    t0 = time.perf_counter()
    info = write_blobs(
        out, args.n_samples, args.n_features, args.centers,
        labels_out=args.labels, cluster_std=args.cluster_std, chunk_rows=args.chunk_rows,
        random_state=seed, uniform=args.uniform, dtype=args.dtype, overwrite=args.overwrite,
    )
    info["seed"] = seed
    info["seconds"] = round(time.perf_counter() - t0, 6)
    info.pop("seed_entropy", None)
    _message(args, f"wrote {args.out}: shape {tuple(info['shape'])}, {info['dtype']}, "
                   f"chunks {tuple(info['chunks'])}, seed {seed}")
    if args.json:
        _emit_json(info)
    return EXIT_OK


def _fit_parameters(args: argparse.Namespace, seed: int, seed_source: str) -> dict:
    return {
        "n_clusters": args.k,
        "init": args.init,
        "n_init": args.n_init,
        "max_iter": args.max_iter,
        "tol": args.tol,
        "seed": seed,
        "seed_source": seed_source,
        "sample_weight": args.sample_weight,
        "checkpoint": args.checkpoint,
    }


def _data_summary(text: str, X) -> dict:
    return {
        "input": text,
        "shape": list(X.shape),
        "dtype": str(X.dtype),
        "chunks": [int(X.chunks[0][0]), int(X.shape[1])],
        "n_chunks": int(X.numblocks[0]),
    }


def _cmd_fit(args: argparse.Namespace) -> int:
    from daskmeans import KMeans
    from daskmeans.io._atomic import write_json
    from daskmeans._progress import Progress

    if _cli_tables.handles(args):  # xarray Zarr group or Parquet table
        return _cli_tables.cmd_fit(args)
    if _cli_minibatch.handles(args):  # --algorithm minibatch
        return _cli_minibatch.cmd_fit(args)
    started = datetime.now().astimezone()
    t_start = time.perf_counter()
    X = _open_array(args.input, "INPUT", ndim=2)
    n, d = X.shape
    if args.k > n:
        raise UsageError(f"--k {args.k} is larger than the number of rows of INPUT ({n})")
    if args.sample_weight is not None:
        w = _open_array(args.sample_weight, "--sample-weight", ndim=1)
        if w.shape[0] != n:
            raise UsageError(f"--sample-weight has {w.shape[0]} values but INPUT has {n} rows")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {args.out!r} exists and is not a directory")
    if args.checkpoint is not None:
        ckpt = Path(args.checkpoint)
        if ckpt.exists() and not ckpt.is_dir():
            raise UsageError(f"--checkpoint {args.checkpoint!r} exists and is not a directory")
    seed, seed_source = _resolve_seed(args)

    with _scheduler(args) as scheduler_name:
        resumed_from = None
        if args.checkpoint is not None:
            resumed_from = _prepare_checkpoint(args.checkpoint, seed)
        progress = Progress(sys.stderr, mode="off" if args.quiet else "auto")
        model = KMeans(
            n_clusters=args.k, init=args.init, n_init=args.n_init, max_iter=args.max_iter,
            tol=args.tol, random_state=seed, callback=progress,
            **_cli_tables.model_options(args),
        )
        with warnings.catch_warnings(record=True) as caught, progress:
            warnings.simplefilter("always")
            model.fit(X, sample_weight=args.sample_weight, checkpoint=args.checkpoint)
            t0 = time.perf_counter()
            out.mkdir(parents=True, exist_ok=True)
            _write_labels(model.labels_, out / "labels.zarr", like=args.input)
            t_labels = time.perf_counter() - t0
        messages = _warning_lines(caught)
        for line in messages:
            _message(args, f"warning: {line}")
        model.save(out / "model.json")

    timings = {k: float(v) for k, v in getattr(model, "timings_", {}).items()}
    timings["write_labels"] = t_labels
    timings["total"] = time.perf_counter() - t_start
    report = {
        "format": "daskmeans.report",
        "format_version": REPORT_FORMAT,
        "command": "fit",
        "status": "ok",
        "started": started.isoformat(timespec="seconds"),
        "finished": datetime.now().astimezone().isoformat(timespec="seconds"),
        "parameters": _fit_parameters(args, seed, seed_source),
        "seed": seed,
        "data": _data_summary(args.input, X),
        "scheduler": scheduler_name,
        "resumed_from_iteration": resumed_from,
        "n_iter": int(model.n_iter_),
        "converged": int(model.n_iter_) < args.max_iter,
        "n_passes": int(getattr(model, "n_passes_", 0)),
        "inertia": float(model.inertia_),
        "inertia_history": [float(v) for v in model.inertia_history_],
        "cluster_sizes": [float(v) for v in model.cluster_sizes_],
        "timings": timings,
        "warnings": messages,
        "outputs": {"model": "model.json", "labels": "labels.zarr", "report": "report.json"},
        "versions": _versions(),
    }
    write_json(out / "report.json", report)
    resumed = "" if resumed_from is None else f", resumed from iteration {resumed_from}"
    _message(args, f"wrote {args.out}: k={args.k}, {report['n_iter']} iterations, "
                   f"{report['n_passes']} passes, inertia {report['inertia']:.6e}, "
                   f"{timings['total']:.1f}s{resumed}")
    if args.json:
        _emit_json(report)
    return EXIT_OK


def _warning_lines(caught: Sequence[warnings.WarningMessage]) -> list[str]:
    lines: list[str] = []
    for item in caught:
        line = f"{item.category.__name__}: {_one_line(item.message)}"  # type: ignore[arg-type]
        if line not in lines:
            lines.append(line)
    return lines


def _load_model(text: str):
    from daskmeans import KMeans

    _require_exists(text, "MODEL")
    try:
        return KMeans.load(text)
    except (ValueError, KeyError, TypeError, UnicodeDecodeError, IsADirectoryError) as exc:
        raise UsageError(f"MODEL {text!r} is not a daskmeans model ({_one_line(exc)})") from None


def _cmd_predict(args: argparse.Namespace) -> int:
    if _cli_tables.handles(args):  # xarray Zarr group or Parquet table
        return _cli_tables.cmd_predict(args)
    model = _load_model(args.model)
    X = _open_array(args.input, "INPUT", ndim=2)
    if X.shape[1] != model.n_features_in_:
        raise UsageError(
            f"INPUT has {X.shape[1]} features but MODEL was fitted with "
            f"{model.n_features_in_}"
        )
    out = Path(args.out)
    if _same_path(args.out, args.input) or _same_path(args.out, args.model):
        raise UsageError("--out must differ from MODEL and INPUT")
    if not out.parent.is_dir():
        raise UsageError(f"directory {str(out.parent)!r} does not exist")
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {args.out!r} exists and is not a Zarr array")
    t0 = time.perf_counter()
    with _scheduler(args):
        _write_labels(model.predict(X), out, like=args.input)
    result = {
        "command": "predict",
        "model": args.model,
        "data": _data_summary(args.input, X),
        "out": args.out,
        "n_clusters": int(model.cluster_centers_.shape[0]),
        "seconds": time.perf_counter() - t0,
    }
    _message(args, f"wrote {args.out}: {X.shape[0]} labels in {result['seconds']:.1f}s")
    if args.json:
        _emit_json(result)
    return EXIT_OK


def _size_on_disk(arr, text: str) -> int | None:
    path = _local(text)
    if not _is_url(text) and path.is_dir():
        total = 0
        for root, _dirs, files in os.walk(path):
            for name in files:
                with contextlib.suppress(OSError):
                    total += os.stat(os.path.join(root, name)).st_size
        return total
    with contextlib.suppress(Exception):
        return int(arr.nbytes_stored())
    return None


def _array_info(text: str) -> dict:
    from daskmeans.io._zarr import open_zarr_array

    _require_exists(text, "INPUT")
    try:
        arr = open_zarr_array(text)
    except (ValueError, TypeError, KeyError, FileNotFoundError) as exc:
        raise UsageError(
            f"INPUT {text!r} is not a readable Zarr array ({_one_line(exc)})"
        ) from None
    nbytes = int(np.prod(arr.shape, dtype=np.int64)) * arr.dtype.itemsize
    stored = _size_on_disk(arr, text)
    return {
        "kind": "array",
        "path": text,
        "shape": list(arr.shape),
        "dtype": str(arr.dtype),
        "chunks": list(arr.chunks),
        "n_chunks": int(np.prod([math.ceil(s / c) for s, c in zip(arr.shape, arr.chunks,
                                                                   strict=True)])),
        "nbytes": nbytes,
        "size_on_disk": stored,
        "attributes": dict(arr.attrs),
    }


def _model_info(text: str) -> dict:
    model = _load_model(text)
    centers = model.cluster_centers_
    return {
        "kind": "model",
        "path": text,
        "n_clusters": int(centers.shape[0]),
        "n_features": int(model.n_features_in_),
        "dtype": str(centers.dtype),
        "inertia": float(model.inertia_),
        "n_iter": int(model.n_iter_),
        "n_passes": getattr(model, "n_passes_", None),
        "cluster_sizes": [float(v) for v in model.cluster_sizes_],
        "params": {k: v for k, v in model.get_params().items() if k != "callback"},
    }


def _human_size(n: int | None) -> str:
    if n is None:
        return "unknown"
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"  # pragma: no cover


def _print_info(info: dict) -> None:
    if info["kind"] == "array":
        lines = [
            f"path:         {info['path']}",
            f"shape:        {tuple(info['shape'])}",
            f"dtype:        {info['dtype']}",
            f"chunks:       {tuple(info['chunks'])} ({info['n_chunks']} chunks)",
            f"size:         {_human_size(info['nbytes'])} uncompressed",
            f"size on disk: {_human_size(info['size_on_disk'])}",
        ]
    else:
        sizes = info["cluster_sizes"]
        lines = [
            f"path:         {info['path']}",
            f"model:        KMeans, {info['n_clusters']} clusters, "
            f"{info['n_features']} features, {info['dtype']}",
            f"inertia:      {info['inertia']:.6e}",
            f"iterations:   {info['n_iter']}",
            f"passes:       {info['n_passes']}",
            f"sizes:        min {min(sizes):g}, max {max(sizes):g}" if sizes else "sizes: -",
        ]
    print("\n".join(lines), flush=True)


def _cmd_info(args: argparse.Namespace) -> int:
    target = args.target
    _require_exists(target, "INPUT|MODEL")
    is_model = target.endswith(".json") or (not _is_url(target) and _local(target).is_file())
    info = _model_info(target) if is_model else _array_info(target)
    if args.json:
        _emit_json(info)
    elif not args.quiet:
        _print_info(info)
    return EXIT_OK


# --------------------------------------------------------------------------- entry point


def _on_sigterm(signum: int, frame: Any) -> None:
    raise Terminated()


def _error(text: str) -> None:
    print(f"{PROG}: error: {text}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``daskmeans`` command.

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments without the program name; ``sys.argv[1:]`` by default.

    Returns
    -------
    int
        Exit status: 0 success, 2 bad usage or input, 1 other failure,
        130/143 interrupted.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version and usage errors
        return int(exc.code or 0) if not isinstance(exc.code, str) else EXIT_USAGE
    previous = None
    with contextlib.suppress(ValueError):  # not in the main thread
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return args.handler(args)
    except UsageError as exc:
        _error(_one_line(exc))
        return EXIT_USAGE
    except (ValueError, TypeError) as exc:
        # Validation errors of the library name the parameter and the value received.
        _error(_one_line(exc))
        if args.verbose:
            traceback.print_exc()
        return EXIT_USAGE
    except KeyboardInterrupt:
        _error("interrupted")
        return EXIT_SIGINT
    except Terminated:
        _error("terminated")
        return EXIT_SIGTERM
    except Exception as exc:
        _error(f"{type(exc).__name__}: {_one_line(exc)}"
               + ("" if args.verbose else " (run with --verbose for the traceback)"))
        if args.verbose:
            traceback.print_exc()
        return EXIT_FAILURE
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
