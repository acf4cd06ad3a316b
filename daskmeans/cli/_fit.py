"""``daskmeans fit``: one pipeline, an input adapter crossed with an algorithm.

Fit k-means to the Zarr array INPUT and write DIR/model.json (loadable with
daskmeans.KMeans.load), DIR/labels.zarr (one label per row, chunked like
INPUT) and DIR/report.json. Existing outputs in DIR are replaced, each
atomically.

::

    daskmeans fit INPUT --k K --out DIR [--algorithm lloyd|minibatch] [...]

The pipeline: choose the adapter of INPUT (:mod:`daskmeans.cli._inputs`) and
the algorithm (:mod:`daskmeans.cli._algorithms`); check every flag and open
INPUT before any work starts (bad input exits 2 with nothing written); then,
on the chosen scheduler, fit, write the labels, the model and
``report.json``, each atomically.
"""

from __future__ import annotations

import argparse
import contextlib
import time
from pathlib import Path

from . import _algorithms, _common, _inputs

HELP = "fit k-means and write DIR/model.json, DIR/labels.zarr, DIR/report.json"


def add_arguments(fit: argparse.ArgumentParser) -> None:
    """The arguments of ``daskmeans fit``."""
    fit.add_argument("input", metavar="INPUT", help="path or URL of a 2-D Zarr array")
    fit.add_argument("--k", type=_common.positive_int, required=True, metavar="K",
                     help="number of clusters")
    fit.add_argument("--out", required=True, metavar="DIR", help="output directory")
    fit.add_argument("--init", choices=["auto", "k-means||", "k-means++", "random",
                                        "hierarchical"],
                     default="auto", help="initialisation (default: auto, k-means|| below "
                                          "4,096 clusters, hierarchical from there)")
    fit.add_argument("--n-init", type=_common.n_init, default="auto", metavar="N",
                     help="number of initialisations run together; 'auto' (default) is 1 "
                          "for k-means|| and k-means++, 10 for random")
    fit.add_argument("--max-iter", type=_common.positive_int, default=None, metavar="N",
                     help="largest number of Lloyd iterations (default: 300; with "
                          "--algorithm hierarchical, 5 fine iterations)")
    fit.add_argument("--tol", type=_common.nonneg_float, default=1e-4, metavar="TOL",
                     help="relative tolerance on the centre shift (default: 1e-4)")
    fit.add_argument("--seed", type=_common.random_seed, metavar="S",
                     help="random seed (default: drawn at random, recorded in the report "
                          "and the checkpoint)")
    fit.add_argument("--sample-weight", metavar="URL",
                     help="path or URL of a 1-D Zarr array of non-negative row weights")
    fit.add_argument("--checkpoint", metavar="DIR",
                     help="save the fit state there after every iteration; running the same "
                          "command again resumes from it with a bitwise identical result")
    _common.add_scheduler_options(fit)
    _inputs.add_arguments(fit)
    group = fit.add_argument_group("algorithm")
    algorithms = _algorithms.ALGORITHMS
    group.add_argument(
        "--algorithm", choices=list(algorithms), default=next(iter(algorithms)),
        help="; ".join(f"{name}: {a.help}" for name, a in algorithms.items()),
    )
    for algorithm in algorithms.values():
        algorithm.add_arguments(group)


def _fit_kwargs(args: argparse.Namespace, adapter, algorithm) -> dict:
    """Check the flags that not every input or algorithm takes; keywords for ``fit``."""
    kwargs = {}
    if args.sample_weight is not None:
        if not adapter.supports_sample_weight:
            raise _common.UsageError(
                f"--sample-weight is not supported with {adapter.description}")
        kwargs["sample_weight"] = args.sample_weight
    if args.checkpoint is not None:
        if not adapter.supports_checkpoint:
            raise _common.UsageError(f"--checkpoint is not supported with {adapter.description}")
        if not algorithm.supports_checkpoint:
            raise _common.UsageError(
                f"--checkpoint is not supported with --algorithm {algorithm.name}")
        kwargs["checkpoint"] = args.checkpoint
    return kwargs


def _parameters(args: argparse.Namespace, algorithm, seed: int, seed_source: str) -> dict:
    """The report's ``parameters``: every flag of the fit, input flags included."""
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
        "nan_policy": args.nan_policy,
        **{k: v for a in _inputs.ADAPTERS for k, v in a.parameters(args).items()},
        **algorithm.parameters(args),
    }


def run(args: argparse.Namespace) -> int:
    """Run ``daskmeans fit``."""
    from daskmeans._base import complete_final_pass, deferred_final_pass, pending_final_pass

    started, t_start = _common.now(), time.perf_counter()
    # everything the user gave is checked before any work starts
    adapter = _inputs.choose(args)
    algorithm = _algorithms.ALGORITHMS[args.algorithm]
    if args.max_iter is None:
        args.max_iter = algorithm.default_max_iter
    fit_kwargs = _fit_kwargs(args, adapter, algorithm)
    source = adapter.open(args)
    if source.n_rows is not None and args.k > source.n_rows:
        raise _common.UsageError(f"--k {args.k} is larger than the number of rows of "
                                 f"INPUT ({source.n_rows})")
    if source.n_rows is not None:
        _common.check_sample_weight(args.sample_weight, source.n_rows)
    out = _common.output_dir(args.out)
    if args.checkpoint is not None:
        ckpt = Path(args.checkpoint)
        if ckpt.exists() and not ckpt.is_dir():
            raise _common.UsageError(
                f"--checkpoint {args.checkpoint!r} exists and is not a directory")
    seed, seed_source = _common.resolve_seed(args)

    with _common.scheduler(args) as where:
        resumed_from = None
        if args.checkpoint is not None:
            resumed_from = _common.prepare_checkpoint(args.checkpoint, seed)
        model, progress = algorithm.build(args, seed)
        with _common.recorded_warnings() as caught, progress:
            # the labels are written anyway: their pass also makes the fit's last one
            with (deferred_final_pass(model) if source.labels_of_fit
                  else contextlib.nullcontext()):
                algorithm.fit(source, model, **fit_kwargs)
            pending = pending_final_pass(model)
            t0 = time.perf_counter()
            out.mkdir(parents=True, exist_ok=True)
            labels_path = out / source.label_file
            done = _common.write_labels(source.fit_labels(model), labels_path,
                                        like=source.like,
                                        also=() if pending is None else (pending,))
            if pending is not None:
                complete_final_pass(model, done[0])
            checks = source.check_written(args, labels_path)
            t_labels = time.perf_counter() - t0
        lines = checks + _common.warning_lines(caught)
        for line in lines:
            _common.message(args, f"warning: {line}")
        model.save(out / "model.json")

    fields = {
        "algorithm": algorithm.name,
        "parameters": _parameters(args, algorithm, seed, seed_source),
        "seed": seed,
        "data": source.summary(),
        "scheduler": where,
        "resumed_from_iteration": resumed_from,
        **algorithm.results(model, args),
        "timings": {**{k: float(v) for k, v in getattr(model, "timings_", {}).items()},
                    "write_labels": t_labels},
    }
    if fields["n_omitted"] is None:
        fields["n_omitted"] = fields["data"].get("n_omitted")
    report = _common.build_report(
        "fit", started=started, t_start=t_start, fields=fields, warnings=lines,
        outputs={"model": "model.json", "labels": source.label_file},
    )
    _common.write_report(args, out, report)
    resumed = "" if resumed_from is None else f", resumed from iteration {resumed_from}"
    _common.message(args, f"wrote {args.out}: k={args.k}, {algorithm.summary(report)}, "
                          f"inertia {report['inertia']:.6e}, "
                          f"{report['timings']['total']:.1f}s{resumed}")
    return _common.EXIT_OK
