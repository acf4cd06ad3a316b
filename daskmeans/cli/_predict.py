"""``daskmeans predict MODEL INPUT --out LABELS``: label data with a fitted model.

Write the index of the nearest centre of MODEL for every row of INPUT to the
Zarr array LABELS (chunked like INPUT; replaced atomically).

INPUT is any kind :mod:`daskmeans.cli._inputs` reads (a Zarr array, an
xarray Zarr group, a Parquet table); LABELS is written like ``fit``'s labels
of that kind, atomically.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from . import _common, _inputs

HELP = "label the rows of a Zarr array with a fitted model"


def add_arguments(pred: argparse.ArgumentParser) -> None:
    """The arguments of ``daskmeans predict``."""
    pred.add_argument("model", metavar="MODEL", help="model.json written by 'daskmeans fit'")
    pred.add_argument("input", metavar="INPUT", help="path or URL of a 2-D Zarr array")
    pred.add_argument("--out", required=True, metavar="LABELS",
                      help="path of the Zarr array of labels to write")
    _common.add_scheduler_options(pred)
    _inputs.add_arguments(pred)


def run(args: argparse.Namespace) -> int:
    """Run ``daskmeans predict``."""
    adapter = _inputs.choose(args)
    model = _common.load_model(args.model)
    if args.nan_policy == "omit" and hasattr(model, "nan_policy"):
        model.nan_policy = "omit"
    source = adapter.open(args)
    _common.check_n_features(source.n_features, model)
    out = Path(args.out)
    if _common.same_path(args.out, args.input) or _common.same_path(args.out, args.model):
        raise _common.UsageError("--out must differ from MODEL and INPUT")
    if not out.parent.is_dir():
        raise _common.UsageError(f"directory {str(out.parent)!r} does not exist")
    if out.exists() and not out.is_dir():
        raise _common.UsageError(f"--out {args.out!r} exists and is not {source.label_format}")
    t0 = time.perf_counter()
    with _common.scheduler(args), _common.recorded_warnings() as caught:
        _common.write_labels(source.predict_labels(model), out, like=source.like)
        checks = source.check_written(args, out)
    lines = checks + _common.warning_lines(caught)
    for line in lines:
        _common.message(args, f"warning: {line}")
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
    _common.message(args, f"wrote {args.out}{rows} in {result['seconds']:.1f}s")
    if args.json:
        _common.emit_json(result)
    return _common.EXIT_OK
