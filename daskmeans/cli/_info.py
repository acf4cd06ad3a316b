"""``daskmeans info INPUT|MODEL``: describe a Zarr array or a model file.

Show the shape, dtype, chunks and size on disk of a Zarr array, or the
summary of a model.json.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os

from . import _common

HELP = "describe a Zarr array or a model"


def add_arguments(info: argparse.ArgumentParser) -> None:
    """The arguments of ``daskmeans info``."""
    info.add_argument("target", metavar="INPUT|MODEL", help="Zarr array or model.json")


def _size_on_disk(arr, text: str) -> int | None:
    path = _common.local(text)
    if not _common.is_url(text) and path.is_dir():
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

    _common.require_exists(text, "INPUT")
    try:
        arr = open_zarr_array(text)
    except (ValueError, TypeError, KeyError, FileNotFoundError) as exc:
        raise _common.UsageError(
            f"INPUT {text!r} is not a readable Zarr array ({_common.one_line(exc)})"
        ) from None
    n_chunks = math.prod(math.ceil(s / c) for s, c in zip(arr.shape, arr.chunks, strict=True))
    return {
        "kind": "array",
        "path": text,
        "shape": list(arr.shape),
        "dtype": str(arr.dtype),
        "chunks": list(arr.chunks),
        "n_chunks": int(n_chunks),
        "nbytes": math.prod(arr.shape) * arr.dtype.itemsize,
        "size_on_disk": _size_on_disk(arr, text),
        "attributes": dict(arr.attrs),
    }


def _model_info(text: str) -> dict:
    model = _common.load_model(text)
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


def run(args: argparse.Namespace) -> int:
    """Run ``daskmeans info``."""
    target = args.target
    _common.require_exists(target, "INPUT|MODEL")
    is_model = target.endswith(".json") or (
        not _common.is_url(target) and _common.local(target).is_file()
    )
    info = _model_info(target) if is_model else _array_info(target)
    if args.json:
        _common.emit_json(info)
    elif not args.quiet:
        _print_info(info)
    return _common.EXIT_OK
