"""``daskmeans fit --algorithm minibatch`` and ``daskmeans update`` (mini-batch k-means).

::

    daskmeans fit INPUT --k K --out DIR --algorithm minibatch [--batch-size B] [...]
    daskmeans update MODEL INPUT --out DIR

Both write DIR/model.json, DIR/labels.zarr and DIR/report.json atomically and
follow the conventions of :mod:`daskmeans.cli` (exit status, one-line errors,
messages on stderr, the ``--json`` document on stdout).
"""

from __future__ import annotations

import argparse
import time
import warnings
from datetime import datetime
from pathlib import Path

__all__ = ["add_fit_options", "add_parsers", "cmd_fit", "cmd_update", "handles"]


def add_fit_options(fit: argparse.ArgumentParser) -> None:
    """Add ``--algorithm``, ``--batch-size`` and ``--init-lloyd-iter`` to ``fit``."""
    from .cli import _positive_int

    group = fit.add_argument_group("algorithm")
    group.add_argument(
        "--algorithm", choices=["lloyd", "minibatch"], default="lloyd",
        help="lloyd: exact k-means (default); minibatch: mini-batch k-means, where "
             "--max-iter counts passes over the data and --tol bounds the centre shift of "
             "one mini-batch step (0 leaves only the no-improvement rule); --init k-means|| "
             "is read as k-means++; no --checkpoint",
    )
    group.add_argument("--batch-size", type=_positive_int, default=1024, metavar="B",
                       help="rows per mini-batch with --algorithm minibatch (default: 1024)")
    group.add_argument("--init-lloyd-iter", type=int, default=0, metavar="I",
                       help="with --algorithm minibatch: Lloyd iterations that refine every "
                            "initial candidate on the in-memory initial sample (default: 0, "
                            "scikit-learn's initialisation)")


def add_parsers(sub, common: argparse.ArgumentParser) -> None:
    """Add the ``update`` sub-command."""
    from .cli import _scheduler_options

    upd = sub.add_parser(
        "update", parents=[common], allow_abbrev=False,
        help="update a mini-batch model with new data (partial_fit)",
        description="Update the MiniBatchKMeans MODEL (written by 'daskmeans fit --algorithm "
                    "minibatch' or 'daskmeans update') with the rows of INPUT, one mini-batch "
                    "step per Zarr chunk, and write DIR/model.json, DIR/labels.zarr (labels "
                    "of INPUT under the updated centres) and DIR/report.json, atomically.",
    )
    upd.add_argument("model", metavar="MODEL", help="model.json of a mini-batch model")
    upd.add_argument("input", metavar="INPUT", help="path or URL of a 2-D Zarr array")
    upd.add_argument("--out", required=True, metavar="DIR", help="output directory")
    upd.add_argument("--sample-weight", metavar="URL",
                     help="path or URL of a 1-D Zarr array of non-negative row weights")
    _scheduler_options(upd)
    upd.set_defaults(handler=cmd_update)


def handles(args: argparse.Namespace) -> bool:
    """True when ``fit`` was asked for mini-batch k-means."""
    return getattr(args, "algorithm", "lloyd") == "minibatch"


def _check_inputs(args, n_clusters: int | None, chunks=None):
    from . import cli

    X = cli._open_array(args.input, "INPUT", ndim=2, chunks=chunks)
    n = X.shape[0]
    if n_clusters is not None and n_clusters > n:
        raise cli.UsageError(f"--k {n_clusters} is larger than the number of rows of INPUT ({n})")
    if args.sample_weight is not None:
        w = cli._open_array(args.sample_weight, "--sample-weight", ndim=1)
        if w.shape[0] != n:
            raise cli.UsageError(
                f"--sample-weight has {w.shape[0]} values but INPUT has {n} rows"
            )
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise cli.UsageError(f"--out {args.out!r} exists and is not a directory")
    return X, out


def _finish(args, command: str, model, X, out: Path, started, t_start, caught, extra: dict):
    """Write labels, model and report; print the summary."""
    from . import cli
    from .io._atomic import write_json

    messages = cli._warning_lines(caught)
    for line in messages:
        cli._message(args, f"warning: {line}")
    report = {
        "format": "daskmeans.report",
        "format_version": cli.REPORT_FORMAT,
        "command": command,
        "algorithm": "minibatch",
        "status": "ok",
        "started": started.isoformat(timespec="seconds"),
        "finished": datetime.now().astimezone().isoformat(timespec="seconds"),
        "data": cli._data_summary(args.input, X),
        "n_steps": int(model.n_steps_),
        "counts": [float(v) for v in model.counts_],
        **extra,
        "warnings": messages,
        "outputs": {"model": "model.json", "labels": "labels.zarr", "report": "report.json"},
        "versions": cli._versions(),
    }
    report["timings"]["total"] = time.perf_counter() - t_start
    write_json(out / "report.json", report)
    cli._message(args, f"wrote {args.out}: k={model.n_clusters}, {model.n_steps_} mini-batch "
                       f"steps, inertia {report['inertia']:.6e}, "
                       f"{report['timings']['total']:.1f}s")
    if args.json:
        cli._emit_json(report)
    return cli.EXIT_OK


def cmd_fit(args: argparse.Namespace) -> int:
    """``daskmeans fit --algorithm minibatch``."""
    from . import cli
    from .minibatch import MiniBatchKMeans

    started = datetime.now().astimezone()
    t_start = time.perf_counter()
    if args.checkpoint is not None:
        raise cli.UsageError("--checkpoint is not supported with --algorithm minibatch")
    X, out = _check_inputs(args, args.k)
    seed, seed_source = cli._resolve_seed(args)
    init = "k-means++" if args.init == "k-means||" else args.init
    with cli._scheduler(args) as scheduler_name:
        model = MiniBatchKMeans(
            n_clusters=args.k, init=init, n_init=args.n_init, max_iter=args.max_iter,
            batch_size=args.batch_size, tol=args.tol, random_state=seed,
            verbose=0 if args.quiet else 1, init_lloyd_iter=args.init_lloyd_iter,
        )
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model.fit(X, sample_weight=args.sample_weight)
            t0 = time.perf_counter()
            out.mkdir(parents=True, exist_ok=True)
            cli._write_labels(model.labels_, out / "labels.zarr", like=args.input)
            t_labels = time.perf_counter() - t0
        model.save(out / "model.json")
    params = cli._fit_parameters(args, seed, seed_source)
    params.update(algorithm="minibatch", batch_size=args.batch_size, init=init,
                  init_lloyd_iter=args.init_lloyd_iter)
    extra = {
        "parameters": params,
        "seed": seed,
        "scheduler": scheduler_name,
        "n_iter": int(model.n_iter_),
        "converged": int(model.n_iter_) < args.max_iter,
        "n_passes": int(model.n_passes_),
        "inertia": float(model.inertia_),
        "inertia_history": [float(v) for v in model.inertia_history_],
        "cluster_sizes": [float(v) for v in model.cluster_sizes_],
        "timings": {**{k: float(v) for k, v in model.timings_.items()},
                    "write_labels": t_labels},
    }
    return _finish(args, "fit", model, X, out, started, t_start, caught, extra)


def cmd_update(args: argparse.Namespace) -> int:
    """``daskmeans update MODEL INPUT --out DIR``."""
    from . import cli
    from .engine._lloyd import partial_pass
    from .minibatch import MiniBatchKMeans

    started = datetime.now().astimezone()
    t_start = time.perf_counter()
    cli._require_exists(args.model, "MODEL")
    try:
        model = MiniBatchKMeans.load(args.model)
    except (ValueError, KeyError, TypeError, UnicodeDecodeError, IsADirectoryError) as exc:
        raise cli.UsageError(
            f"MODEL {args.model!r} is not a daskmeans mini-batch model ({cli._one_line(exc)})"
        ) from None
    # one step per stored chunk (partial_fit's rule for Zarr input)
    X, out = _check_inputs(args, None, chunks="stored")
    if X.shape[1] != model.n_features_in_:
        raise cli.UsageError(
            f"INPUT has {X.shape[1]} features but MODEL was fitted with {model.n_features_in_}"
        )
    steps_before = int(model.n_steps_)
    with cli._scheduler(args) as scheduler_name:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            t0 = time.perf_counter()
            model.partial_fit(X, sample_weight=args.sample_weight)
            t_update = time.perf_counter() - t0
            t0 = time.perf_counter()
            out.mkdir(parents=True, exist_ok=True)
            Xd = X.astype(model.cluster_centers_.dtype)
            cli._write_labels(model._predict_dask(Xd, check=False), out / "labels.zarr",
                              like=args.input)
            from .engine._graph import compute_passes
            from ._validation import check_sample_weight

            weights = check_sample_weight(
                None if args.sample_weight is None else cli._open_array(
                    args.sample_weight, "--sample-weight", ndim=1), Xd, in_memory=False)
            (res,) = compute_passes(partial_pass(Xd, weights, [model.cluster_centers_],
                                                 name="minibatch-update-inertia"))
            t_final = time.perf_counter() - t0
        model.save(out / "model.json")
    extra = {
        "parameters": {"model": args.model, "sample_weight": args.sample_weight},
        "scheduler": scheduler_name,
        "n_steps_before": steps_before,
        "inertia": float(res["inertia"][0]),
        "cluster_sizes": [float(v) for v in res["counts"]],
        "timings": {"update": t_update, "labels_and_inertia": t_final},
    }
    return _finish(args, "update", model, X, out, started, t_start, caught, extra)
