"""Pieces every sub-command of the ``daskmeans`` command shares.

Exit statuses and the exceptions that choose them; the argument types and
option groups; the scheduler a command runs on; paths, messages and the
``--json`` document; the one label writer and the one ``report.json``
builder. Nothing here imports NumPy, Dask, Zarr or the estimators at module
level (``daskmeans --help`` stays fast): they are imported where used.

This module imports nothing else of :mod:`daskmeans.cli`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import sys
import time
import warnings
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn

from daskmeans._errors import InputError

PROG = "daskmeans"
#: Version of the layout of ``report.json``.
REPORT_FORMAT = 1
#: File in a checkpoint directory that remembers the seed of a run without ``--seed``.
SEED_FILE = "seed.json"

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
EXIT_SIGINT, EXIT_SIGTERM = 130, 143


class UsageError(InputError):
    """Bad usage or bad input found by the command line: one line, exit status 2."""


class Terminated(Exception):
    """Raised in the main thread when SIGTERM arrives, so that cleanup runs."""


# --------------------------------------------------------------------------- parser pieces


class Parser(argparse.ArgumentParser):
    """ArgumentParser whose errors are one line on stderr and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _typed(text: str, convert, accept, expected: str):
    """``convert(text)`` if it works and ``accept`` takes it, else an argparse error."""
    try:
        value = convert(text)
    except ValueError:
        value = None
    if value is None or not accept(value):
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """Argument type: an integer >= 1."""
    return _typed(text, int, lambda v: v >= 1, "a positive integer")


def random_seed(text: str) -> int:
    """Argument type: a random seed in [0, 2**63)."""
    return _typed(text, int, lambda v: 0 <= v < 2**63, "an integer in [0, 2**63)")


def nonneg_float(text: str) -> float:
    """Argument type: a finite number >= 0."""
    return _typed(text, float, lambda v: math.isfinite(v) and v >= 0, "a finite number >= 0")


def n_init(text: str) -> int | str:
    """Argument type: ``auto`` or a positive integer."""
    return "auto" if text == "auto" else positive_int(text)


def memory_limit(text: str) -> str:
    """Argument type: ``auto`` or a size such as ``4GB``."""
    if text == "auto":
        return text
    from dask.utils import parse_bytes

    try:
        parse_bytes(text)
    except (ValueError, TypeError):
        raise argparse.ArgumentTypeError(
            f"expected a size such as 4GB or 'auto', got {text!r}"
        ) from None
    return text


def names(text: str) -> list[str]:
    """Argument type: comma-separated names."""
    found = [t.strip() for t in text.split(",")]
    if not all(found):
        raise argparse.ArgumentTypeError(f"expected comma-separated names, got {text!r}")
    return found


def common_options() -> argparse.ArgumentParser:
    """Parent parser with the options of every sub-command (--json, --quiet, --verbose)."""
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("output and logging")
    group.add_argument("--json", action="store_true",
                       help="print the result (for fit: the report) as JSON on stdout")
    group.add_argument("--quiet", "-q", action="store_true",
                       help="no progress and no messages on stderr except errors")
    group.add_argument("--verbose", "-v", action="store_true",
                       help="show the Python traceback of internal errors")
    return common


def add_scheduler_options(parser: argparse.ArgumentParser) -> None:
    """Add --scheduler, --scheduler-file and the LocalCluster options to ``parser``."""
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
    where.add_argument("--workers", type=positive_int, metavar="N",
                       help="start a LocalCluster with N worker processes for this run")
    group.add_argument("--threads-per-worker", type=positive_int, metavar="T",
                       help="threads per worker of the LocalCluster (with --workers)")
    group.add_argument("--memory-limit", type=memory_limit, metavar="M",
                       help="memory limit per worker of the LocalCluster, e.g. 4GB "
                            "(with --workers)")


# --------------------------------------------------------------------------- scheduler


@contextlib.contextmanager
def scheduler(args: argparse.Namespace) -> Iterator[str]:
    """Activate the scheduler the options ask for; yield a description of it.

    Dask's threaded scheduler by default; a ``LocalCluster`` with
    ``--workers``; a running scheduler with ``--scheduler`` or
    ``--scheduler-file``.
    """
    import dask

    local_only = args.threads_per_worker is not None or args.memory_limit is not None
    if local_only and args.workers is None:
        raise UsageError("--threads-per-worker and --memory-limit need --workers")
    if args.scheduler_file is not None:
        require_exists(args.scheduler_file, "--scheduler-file")
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


# --------------------------------------------------------------------------- paths and inputs


def is_url(text: str) -> bool:
    """True for a URL other than ``file://`` (no local checks apply)."""
    return "://" in text and not text.startswith("file://")


def local(text: str) -> Path:
    """The local path of a plain path or a ``file://`` URL."""
    return Path(text[len("file://"):] if text.startswith("file://") else text)


def require_exists(text: str, what: str) -> None:
    """Raise :class:`UsageError` if a local path does not exist."""
    if not is_url(text) and not local(text).exists():
        raise UsageError(f"{what} {text!r} does not exist")


def same_path(a: str, b: str) -> bool:
    """True when two paths or URLs name the same place."""
    if is_url(a) or is_url(b):
        return a.rstrip("/") == b.rstrip("/")
    return os.path.abspath(local(a)) == os.path.abspath(local(b))


def output_dir(text: str) -> Path:
    """The ``--out DIR`` of a command that writes several files, checked."""
    out = Path(text)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {text!r} exists and is not a directory")
    return out


def open_array(text: str, what: str, *, ndim: int, chunks=None):
    """Open a Zarr array read-only as a Dask array, with one-line errors.

    ``chunks`` as :func:`daskmeans.open_zarr` (``"stored"``: one block per stored chunk).
    """
    from daskmeans.io import open_zarr

    require_exists(text, what)
    try:
        arr = open_zarr(text, chunks=chunks)
    except (ValueError, TypeError, KeyError, FileNotFoundError) as exc:
        raise UsageError(
            f"{what} {text!r} is not a readable Zarr array ({one_line(exc)})"
        ) from None
    if arr.ndim != ndim:
        shape = "(n_samples, n_features)" if ndim == 2 else "(n_samples,)"
        raise UsageError(f"{what} {text!r} must be {ndim}-D {shape}, got shape {arr.shape}")
    if arr.dtype.kind not in "biuf":
        raise UsageError(f"{what} {text!r} must hold real numbers, got dtype {arr.dtype}")
    return arr


def check_sample_weight(text: str | None, n_rows: int) -> None:
    """Check that ``--sample-weight`` is a 1-D Zarr array with one value per row."""
    if text is None:
        return
    w = open_array(text, "--sample-weight", ndim=1)
    if w.shape[0] != n_rows:
        raise UsageError(f"--sample-weight has {w.shape[0]} values but INPUT has {n_rows} rows")


def load_model(text: str, cls=None, what: str = "a daskmeans model"):
    """Load a ``model.json`` (``KMeans.load`` unless ``cls`` is given), one-line errors."""
    if cls is None:
        from daskmeans import KMeans as cls

    require_exists(text, "MODEL")
    try:
        return cls.load(text)
    except (ValueError, KeyError, TypeError, UnicodeDecodeError, IsADirectoryError) as exc:
        raise UsageError(f"MODEL {text!r} is not {what} ({one_line(exc)})") from None


def check_n_features(n_features: int, model) -> None:
    """Raise :class:`UsageError` when INPUT and MODEL disagree on the number of features."""
    if n_features != model.n_features_in_:
        raise UsageError(f"INPUT has {n_features} features but MODEL was fitted with "
                         f"{model.n_features_in_}")


# --------------------------------------------------------------------------- seeds, checkpoints


def resolve_seed(args: argparse.Namespace) -> tuple[int, str]:
    """The seed of a fit and where it came from: given, checkpoint or drawn."""
    if args.seed is not None:
        return args.seed, "given"
    checkpoint = getattr(args, "checkpoint", None)
    if checkpoint is not None:
        path = Path(checkpoint) / SEED_FILE
        with contextlib.suppress(FileNotFoundError):
            try:
                value = json.loads(path.read_text())["seed"]
            except (ValueError, KeyError, TypeError):
                raise UsageError(f"{path} is damaged; remove it or pass --seed") from None
            if isinstance(value, int) and value >= 0:
                return value, "checkpoint"
            raise UsageError(f"{path} holds an invalid seed; remove it or pass --seed")
    return draw_seed(), "drawn"


def draw_seed() -> int:
    """A random seed for a run without ``--seed`` (recorded, so the run can be repeated)."""
    import secrets

    return secrets.randbits(32)


def prepare_checkpoint(directory: str, seed: int) -> int | None:
    """Create the checkpoint directory, remember the seed, and return saved iterations.

    The seed file is (re)written only while no checkpoint has been saved, so the
    seed that belongs to an existing checkpoint is never replaced.

    Returns
    -------
    int or None
        Lloyd iterations already saved, None when nothing was saved.
    """
    import numpy as np

    from daskmeans.engine._checkpoint import CHECKPOINT_FILE, Checkpoint, decode
    from daskmeans.io._atomic import remove_leftovers, write_json

    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    remove_leftovers(path, (SEED_FILE, CHECKPOINT_FILE))  # of a run killed mid-write
    try:
        doc = Checkpoint(path, {}).read()
    except ValueError as exc:
        raise UsageError(one_line(exc)) from None
    if doc is None:
        write_json(path / SEED_FILE, {"seed": seed})
        return None
    with contextlib.suppress(Exception):
        return int(np.max(decode(doc["state"])["n_iter"]))
    return 0


# --------------------------------------------------------------------------- messages


def one_line(exc: BaseException | str) -> str:
    """The text of an exception (or a string) on one line."""
    text = str(exc).strip() or type(exc).__name__
    return " ".join(text.split())


def message(args: argparse.Namespace, text: str) -> None:
    """A message on stderr, unless ``--quiet``."""
    if not args.quiet:
        print(f"{PROG}: {text}", file=sys.stderr, flush=True)


def error(text: str) -> None:
    """An error line on stderr (printed even with ``--quiet``)."""
    print(f"{PROG}: error: {text}", file=sys.stderr, flush=True)


def emit_json(doc: dict) -> None:
    """Print the ``--json`` document on stdout."""
    sys.stdout.write(json.dumps(doc, indent=2, default=_json_default) + "\n")
    sys.stdout.flush()


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    tolist = getattr(value, "tolist", None)  # NumPy scalars and arrays
    if callable(tolist):
        return tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


@contextlib.contextmanager
def recorded_warnings() -> Iterator[list]:
    """Record every warning raised inside the block (shown later, and in the report)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield caught


def warning_lines(caught: Sequence[warnings.WarningMessage]) -> list[str]:
    """One line per distinct warning about the user's data or run.

    Deprecation notices raised inside dependencies (pandas, dask) are dropped:
    they are not about the data or the run.
    """
    notices = DeprecationWarning | FutureWarning | PendingDeprecationWarning
    lines: list[str] = []
    for item in caught:
        foreign = issubclass(item.category, notices) or "Pandas" in item.category.__name__
        if foreign and "daskmeans" not in str(item.filename):
            continue
        line = f"{item.category.__name__}: {one_line(item.message)}"  # type: ignore[arg-type]
        if line not in lines:
            lines.append(line)
    return lines


# --------------------------------------------------------------------------- outputs


def write_labels(labels, path: Path, *, like: str | None = None, also: tuple = ()) -> list:
    """Write lazy labels to ``path`` block by block, atomically: the one label writer.

    Parameters
    ----------
    labels : dask.array.Array, xarray.DataArray or dask.dataframe.DataFrame
        A 1-D Dask array of int64 labels becomes a Zarr array (through
        :func:`daskmeans.io._labels.store_labels`), chunked like the stored rows of
        ``like`` when given (every block holds whole stored chunks, as
        :func:`daskmeans.open_zarr` reads them, so the rechunk only splits);
        a DataArray becomes an xarray Zarr store with a ``label`` variable; a
        Dask DataFrame becomes a Parquet directory.
    path : Path
        Destination; an existing one is replaced once the new one is complete.
    like : str, optional
        Path or URL of the Zarr array the labels belong to.
    also : tuple, optional
        Lazy results computed with 1-D Dask array labels, in the same compute
        (a fit's deferred last pass: see :func:`daskmeans._base.deferred_final_pass`).

    Returns
    -------
    list
        The values of ``also``.
    """
    from daskmeans.io._atomic import atomic_dir

    if also and (hasattr(labels, "to_dataset") or hasattr(labels, "to_parquet")):
        raise ValueError("internal: results computed with the labels need Dask array labels")
    if hasattr(labels, "to_dataset"):  # xarray.DataArray
        ds = labels.to_dataset()
        for name in ds.variables:
            ds[name].encoding = {}
        with atomic_dir(path) as tmp, warnings.catch_warnings():
            # zarr-python warns that consolidated metadata is not in the v3 spec
            warnings.filterwarnings("ignore", message=".*[Cc]onsolidated metadata.*")
            ds.to_zarr(str(tmp), mode="w", consolidated=True)
        return []
    if hasattr(labels, "to_parquet"):  # dask DataFrame
        with atomic_dir(path) as tmp:
            labels.to_parquet(str(tmp), write_index=False)
        return []
    from daskmeans.io._labels import store_labels_with, whole_chunks
    from daskmeans.io._zarr import stored_row_chunks

    rows = labels.chunks[0][0] if like is None else stored_row_chunks(like)
    if not whole_chunks(labels.chunks[0], rows):
        labels = labels.rechunk((rows,))
    return store_labels_with(labels, str(path), also=also, overwrite=True, zarr_format=3,
                             chunk_rows=rows,
                             attributes={"description": "daskmeans cluster labels"})


def versions() -> dict:
    """Versions of Python, the platform and the libraries that shape the result."""
    import dask
    import distributed
    import numpy as np
    import zarr

    return {
        "daskmeans": version(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "dask": dask.__version__,
        "distributed": distributed.__version__,
        "zarr": zarr.__version__,
        "platform": platform.platform(),
    }


def version() -> str:
    """The version of daskmeans."""
    try:
        from daskmeans import __version__

        return __version__
    except Exception:  # pragma: no cover - broken installation
        return "unknown"


def now() -> datetime:
    """The local time, with its time zone."""
    return datetime.now().astimezone()


def build_report(command: str, *, started: datetime, t_start: float, fields: dict,
                 warnings: list[str], outputs: dict) -> dict:
    """The ``report.json`` of a command that writes a model (``fit``, ``update``).

    Parameters
    ----------
    command : str
        The sub-command.
    started : datetime
        When the command started (:func:`now`).
    t_start : float
        ``time.perf_counter()`` when the command started; ``timings.total``
        is measured from it.
    fields : dict
        What the command found: ``algorithm``, ``parameters``, ``data``,
        ``n_iter``, ``inertia``, ``timings`` and so on, in report order.
    warnings : list of str
        From :func:`warning_lines` and the command's own checks.
    outputs : dict
        Files written under ``--out`` besides ``report.json``.

    Returns
    -------
    dict
    """
    report = {
        "format": "daskmeans.report",
        "format_version": REPORT_FORMAT,
        "command": command,
    }
    if "algorithm" in fields:
        report["algorithm"] = fields["algorithm"]
    report["status"] = "ok"
    report["started"] = started.isoformat(timespec="seconds")
    report["finished"] = now().isoformat(timespec="seconds")
    report.update(fields)
    report["timings"] = {**fields.get("timings", {}), "total": time.perf_counter() - t_start}
    report["warnings"] = list(warnings)
    report["outputs"] = {**outputs, "report": "report.json"}
    report["versions"] = versions()
    return report


def write_report(args: argparse.Namespace, out: Path, report: dict) -> None:
    """Write ``report.json`` atomically; print it with ``--json``."""
    from daskmeans.io._atomic import write_json

    write_json(out / "report.json", report)
    if args.json:
        emit_json(report)


def have_matplotlib() -> bool:
    """True when matplotlib (the ``plot`` extra) is installed."""
    import importlib.util

    return importlib.util.find_spec("matplotlib") is not None


def save_figure(fig, path: Path) -> None:
    """Write a matplotlib figure atomically (temporary name in the same directory, rename)."""
    import tempfile

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=100)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
