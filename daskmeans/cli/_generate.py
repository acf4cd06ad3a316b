"""``daskmeans generate OUT --n-samples N --n-features D --centers K``: test data in Zarr.

Write Gaussian blobs with a random spread per cluster (centres uniform in
[-1, 1]^D, each cluster's standard deviation uniform in [S/10, S]) to a Zarr
array, block by block, never whole in memory. OUT appears only when
complete.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from . import _common

HELP = "write Gaussian blobs (or uniform points) to a Zarr array"


def add_arguments(gen: argparse.ArgumentParser) -> None:
    """The arguments of ``daskmeans generate``."""
    gen.add_argument("out", metavar="OUT", help="path of the Zarr array to create")
    gen.add_argument("--n-samples", type=_common.positive_int, required=True, metavar="N",
                     help="number of rows")
    gen.add_argument("--n-features", type=_common.positive_int, required=True, metavar="D",
                     help="number of columns")
    gen.add_argument("--centers", type=_common.positive_int, required=True, metavar="K",
                     help="number of clusters")
    gen.add_argument("--cluster-std", type=_common.nonneg_float, default=0.5, metavar="S",
                     help="largest per-cluster standard deviation (default: 0.5)")
    gen.add_argument("--chunk-rows", type=_common.positive_int, metavar="R",
                     help="rows per Zarr chunk (default: about 64 MiB per chunk)")
    gen.add_argument("--seed", type=_common.random_seed, metavar="S",
                     help="random seed (default: drawn at random and printed)")
    gen.add_argument("--uniform", action="store_true",
                     help="points uniform in [-1, 1]^D instead of blobs")
    gen.add_argument("--dtype", choices=["float32", "float64"], default="float64",
                     help="element type (default: float64)")
    gen.add_argument("--labels", metavar="PATH",
                     help="also write the true cluster of every row (int64) to this Zarr array")
    gen.add_argument("--overwrite", action="store_true",
                     help="replace OUT (and --labels) if they exist")


def run(args: argparse.Namespace) -> int:
    """Run ``daskmeans generate``."""
    from daskmeans.datasets import write_blobs

    out = Path(args.out)
    targets = [out] + ([Path(args.labels)] if args.labels else [])
    if args.labels and _common.same_path(args.out, args.labels):
        raise _common.UsageError("--labels must differ from OUT")
    for path in targets:
        if path.exists() and not args.overwrite:
            raise _common.UsageError(
                f"{str(path)!r} already exists (use --overwrite to replace it)")
        if not path.parent.is_dir():
            raise _common.UsageError(f"directory {str(path.parent)!r} does not exist")
    used_seed = args.seed if args.seed is not None else _common.draw_seed()
    t0 = time.perf_counter()
    info = write_blobs(
        out, args.n_samples, args.n_features, args.centers,
        labels_out=args.labels, cluster_std=args.cluster_std, chunk_rows=args.chunk_rows,
        random_state=used_seed, uniform=args.uniform, dtype=args.dtype,
        overwrite=args.overwrite,
    )
    info["seed"] = used_seed
    info["seconds"] = round(time.perf_counter() - t0, 6)
    info.pop("seed_entropy", None)
    _common.message(args, f"wrote {args.out}: shape {tuple(info['shape'])}, {info['dtype']}, "
                          f"chunks {tuple(info['chunks'])}, seed {used_seed}")
    if args.json:
        _common.emit_json(info)
    return _common.EXIT_OK
