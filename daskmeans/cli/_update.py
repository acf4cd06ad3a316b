"""``daskmeans update MODEL INPUT --out DIR``: a mini-batch model updated with new data.

Update the MiniBatchKMeans MODEL (written by 'daskmeans fit --algorithm
minibatch' or 'daskmeans update') with the rows of INPUT, one mini-batch
step per Zarr chunk, and write DIR/model.json, DIR/labels.zarr (labels of
INPUT under the updated centres) and DIR/report.json, atomically.
"""

from __future__ import annotations

import argparse
import time

from . import _common
from ._sources import ArraySource

HELP = "update a mini-batch model with new data (partial_fit)"


def add_arguments(upd: argparse.ArgumentParser) -> None:
    """The arguments of ``daskmeans update``."""
    upd.add_argument("model", metavar="MODEL", help="model.json of a mini-batch model")
    upd.add_argument("input", metavar="INPUT", help="path or URL of a 2-D Zarr array")
    upd.add_argument("--out", required=True, metavar="DIR", help="output directory")
    upd.add_argument("--sample-weight", metavar="URL",
                     help="path or URL of a 1-D Zarr array of non-negative row weights")
    _common.add_scheduler_options(upd)


def run(args: argparse.Namespace) -> int:
    """Run ``daskmeans update``."""
    from daskmeans import MiniBatchKMeans
    from daskmeans._base import labels_and_measure

    started, t_start = _common.now(), time.perf_counter()
    model = _common.load_model(args.model, MiniBatchKMeans, "a daskmeans mini-batch model")
    # one step per stored chunk (partial_fit's rule for Zarr input)
    X = _common.open_array(args.input, "INPUT", ndim=2, chunks="stored")
    _common.check_sample_weight(args.sample_weight, X.shape[0])
    out = _common.output_dir(args.out)
    _common.check_n_features(X.shape[1], model)
    steps_before = int(model.n_steps_)
    with _common.scheduler(args) as where:
        with _common.recorded_warnings() as caught:
            t0 = time.perf_counter()
            compute_labels = model.compute_labels  # labels, inertia, sizes: one pass below
            model.set_params(compute_labels=False).partial_fit(X, sample_weight=args.sample_weight)
            model.set_params(compute_labels=compute_labels)
            t_update = time.perf_counter() - t0
            t0 = time.perf_counter()
            out.mkdir(parents=True, exist_ok=True)
            w = None
            if args.sample_weight is not None:
                w = _common.open_array(args.sample_weight, "--sample-weight", ndim=1)
            labels, measure = labels_and_measure(model, X, sample_weight=w)
            (res,) = _common.write_labels(labels, out / "labels.zarr", like=args.input,
                                          also=(measure,))
            inertia, sizes = float(res["inertia"][0]), [float(v) for v in res["counts"]]
            t_final = time.perf_counter() - t0
        lines = _common.warning_lines(caught)
        for line in lines:
            _common.message(args, f"warning: {line}")
        model.save(out / "model.json")
    fields = {
        "algorithm": "minibatch",
        "parameters": {"model": args.model, "sample_weight": args.sample_weight},
        "data": ArraySource(args.input, X).summary(),
        "scheduler": where,
        "n_steps_before": steps_before,
        "n_steps": int(model.n_steps_),
        "counts": [float(v) for v in model.counts_],
        "inertia": inertia,
        "cluster_sizes": sizes,
        "timings": {"update": t_update, "labels_and_inertia": t_final},
    }
    report = _common.build_report(
        "update", started=started, t_start=t_start, fields=fields, warnings=lines,
        outputs={"model": "model.json", "labels": "labels.zarr"},
    )
    _common.write_report(args, out, report)
    _common.message(args, f"wrote {args.out}: k={model.n_clusters}, {model.n_steps_} "
                          f"mini-batch steps, inertia {inertia:.6e}, "
                          f"{report['timings']['total']:.1f}s")
    return _common.EXIT_OK
