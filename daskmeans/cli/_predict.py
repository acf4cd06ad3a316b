"""``daskmeans predict MODEL INPUT --out LABELS``: label data with a fitted model.

INPUT is any kind :mod:`daskmeans.cli._inputs` reads (a Zarr array, an
xarray Zarr group, a Parquet table); LABELS is written like ``fit``'s labels
of that kind, atomically.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from . import _inputs
from ._common import (
    EXIT_OK,
    UsageError,
    add_scheduler_options,
    check_n_features,
    emit_json,
    load_model,
    message,
    recorded_warnings,
    same_path,
    scheduler,
    warning_lines,
    write_labels,
)

__all__ = ["register", "run"]


def register(sub, common: argparse.ArgumentParser) -> None:
    """Add ``predict`` to the sub-parsers of the ``daskmeans`` command."""
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
    add_scheduler_options(pred)
    _inputs.add_arguments(pred)
    pred.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Run ``daskmeans predict``."""
    adapter = _inputs.choose(args)
    model = load_model(args.model)
    if args.nan_policy == "omit" and hasattr(model, "nan_policy"):
        model.nan_policy = "omit"
    source = adapter.open(args)
    check_n_features(source.n_features, model)
    out = Path(args.out)
    if same_path(args.out, args.input) or same_path(args.out, args.model):
        raise UsageError("--out must differ from MODEL and INPUT")
    if not out.parent.is_dir():
        raise UsageError(f"directory {str(out.parent)!r} does not exist")
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {args.out!r} exists and is not {source.label_format}")
    t0 = time.perf_counter()
    with scheduler(args), recorded_warnings() as caught:
        write_labels(source.predict_labels(model), out, like=source.like)
        checks = source.check_written(args, out)
    lines = checks + warning_lines(caught)
    for line in lines:
        message(args, f"warning: {line}")
    result = {
        "command": "predict",
        "model": args.model,
        "data": source.summary(),
        "out": args.out,
        "n_clusters": int(model.cluster_centers_.shape[0]),
        "warnings": lines,
        "seconds": time.perf_counter() - t0,
    }
    rows = "" if source.n_rows is None else f": {source.n_rows} labels"
    message(args, f"wrote {args.out}{rows} in {result['seconds']:.1f}s")
    if args.json:
        emit_json(result)
    return EXIT_OK
