"""A local Zarr directory: chunk files read by the reading thread, or through Zarr's store.

:func:`daskmeans.open_zarr` decodes whole stored chunks straight into the
block (``daskmeans/io/_direct.py``). For an array in a local directory the
chunk files are read by the reading thread itself; any other store is
fetched through Zarr, whose store hands every read to its event-loop thread
and a thread pool. This script times both ways on the same array, one
after the other in every round, on dask's threaded scheduler with 2
threads (``--threads``):

* the read pass, ``X.sum()`` (the unit of ``bench_minibatch.py``),
* ``MiniBatchKMeans`` one pass (the fold alone, as ``bench_minibatch.py``
  times it, with its initialisation: 10,000 rows, 3 candidates, 10 Lloyd
  iterations),
* ``KMeans`` from fixed starting centres, ``--max-iter`` Lloyd iterations
  (default 3), the whole ``fit``,

with the CPU seconds of the process beside the wall seconds (CPU / 2 x wall is
how busy the two cores were). "store" is the same code with the local-directory
test switched off, so every chunk goes through Zarr's store; "files, read" and
"files, mapped" read the chunk files with dask's configuration
``daskmeans.memory-map`` off and on (compressed chunks are decoded from a
buffer the file was read into, or from the file memory-mapped).

Data: the array of ``bench_minibatch.py`` (6,000,000 x 32 float32, 48 zstd
chunks of 125,000 rows), written to ``--dir`` if it is not there; with
``--uncompressed`` the same values stored without compression (``X-raw.zarr``),
whose chunks in local files are read straight into the block.

Usage::

    python benchmarks/bench_read.py [--dir DIR] [--rounds R] [--threads T] [--max-iter I]
        [--uncompressed]
"""

from __future__ import annotations

import argparse
import functools
import os
import tempfile
import time

from _blas_env import rerun_without_blas_overrides, unset_note

if __name__ == "__main__":
    rerun_without_blas_overrides()

import dask  # noqa: E402
import numpy as np  # noqa: E402
from _hardware import header_lines  # noqa: E402
from bench_minibatch import CHUNK, K, write_data  # noqa: E402

import daskmeans  # noqa: E402
from daskmeans import KMeans, MiniBatchKMeans  # noqa: E402
from daskmeans.io import _direct  # noqa: E402

print = functools.partial(print, flush=True)  # noqa: A001 - progress of a long run

WAYS = ("store", "read", "mapped")


def timed(fn) -> tuple[float, float]:
    """Wall and process CPU seconds of ``fn()``."""
    w, c = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w, time.process_time() - c


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dir", default=None, help="where the Zarr array is (default: temp)")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-iter", type=int, default=3)
    ap.add_argument("--uncompressed", action="store_true",
                    help="the same values stored without compression")
    args = ap.parse_args()
    for line in header_lines():
        print(line)
    print(f"daskmeans {daskmeans.__version__}, dask {dask.__version__}, "
          f"unset OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE for this run: {unset_note()}")
    tmp = args.dir or tempfile.mkdtemp(prefix="bench-read-")
    path = os.path.join(tmp, "X-raw.zarr" if args.uncompressed else "X.zarr")
    if not os.path.exists(path):
        write_data(path, 6_000_000, compressors=None if args.uncompressed else "auto")
    local_folder = _direct._local_folder
    mb = {"batch_size": CHUNK, "max_iter": 1, "max_no_improvement": None, "random_state": 0,
          "init_size": 10_000, "n_init": 3, "init_lloyd_iter": 10, "compute_labels": False}
    with dask.config.set(scheduler="threads", num_workers=args.threads):
        X = daskmeans.open_zarr(path)
        start = np.asarray(X[:K])
        print(f"X: {X.shape} {X.dtype}, {X.numblocks[0]} blocks, {args.threads} threads, "
              f"{'uncompressed' if args.uncompressed else 'zstd'}")

        def fold():
            model = MiniBatchKMeans(K, **mb).fit(X)
            return model.timings_["fold"]

        def lloyd():
            KMeans(K, init=start, n_init=1, max_iter=args.max_iter, tol=0).fit(X)

        # one-off costs (compiled kernels, thread pools), untimed
        MiniBatchKMeans(K, **mb).fit(X[: 2 * CHUNK])
        lloyd()
        runs = {way: [] for way in WAYS}
        for _ in range(args.rounds):
            for way in WAYS:
                _direct._local_folder = local_folder if way != "store" else (lambda sp: None)
                try:
                    with dask.config.set({"daskmeans.memory-map": way == "mapped"}):
                        read = timed(lambda: X.sum().compute())
                        c0 = time.process_time()
                        t_fold = fold()
                        fold_cpu = time.process_time() - c0  # the fit's, a little more
                        fit = timed(lloyd)
                finally:
                    _direct._local_folder = local_folder
                runs[way].append((*read, t_fold, fold_cpu, *fit))
    print("\n| chunks read | read pass: wall min / median (CPU) | MiniBatchKMeans fold: "
          "min / median (CPU of the fit) | fold / read pass: fastest / paired median | "
          f"KMeans {args.max_iter} iterations, fit: min / median (CPU) |")
    print("|---|---|---|---|---|")
    for way in WAYS:
        a = np.array(runs[way])
        med = np.median(a, axis=0)
        label = {"read": "from the files, read", "mapped": "from the files, mapped",
                 "store": "through Zarr's store"}[way]
        print(f"| {label} | {a[:, 0].min():.3f} / {med[0]:.3f} s ({med[1]:.2f}) "
              f"| {a[:, 2].min():.3f} / {med[2]:.3f} s ({med[3]:.2f}) "
              f"| {a[:, 2].min() / a[:, 0].min():.2f} / {np.median(a[:, 2] / a[:, 0]):.2f} "
              f"| {a[:, 4].min():.3f} / {med[4]:.3f} s ({med[5]:.2f}) |")
    print(f"\n{args.rounds} rounds, the two ways alternating")


if __name__ == "__main__":
    main()
