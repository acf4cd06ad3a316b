"""Time one block's Lloyd sweep on either side of a kernel threshold.

Each threshold of ``daskmeans/kernels/_thresholds.py`` is a field of the kernel
plan; this script times :func:`daskmeans.kernels.lloyd_partial` on one block
(``--rows`` x ``--d``, the size of a default Dask block) with plans that differ
only in that field, over the numbers of centres where it matters, on
``--threads`` threads (one block per thread, as Dask runs them), best of
``--repeat``. The value that wins is the threshold for this machine; the header
says which machine.

Usage::

    python benchmarks/bench_thresholds.py rowmajor_max_k
    python benchmarks/bench_thresholds.py screen_min_k --dtype float64
    python benchmarks/bench_thresholds.py row_block_bytes --ks 8,16
    python benchmarks/bench_thresholds.py onehot_max_k --kernels numpy

Thresholds and the plan values compared (the rest of the plan is the automatic
compiled plan, or ``--kernels``):

- ``rowmajor_max_k``: row-major (``10**9``) against transposed (``0``) products;
- ``screen_min_k``: screened (``0``) against plain (``none``) float64 products;
- ``screen_rowmajor_max_k``: screened row-major against screened transposed;
- ``row_block_bytes``, ``dist_block_bytes_compiled``, ``dist_block_bytes``:
  64 KiB to 1 MiB (2 MiB for the last);
- ``onehot_max_k``: one-hot product (``10**9``) against sort + reduceat (``0``),
  NumPy plan;
- ``columns``: the column tiles against the fused tiles and BLAS products (on
  any processor: the base plan's default may be off);
- ``column_min_k``: column tiles from 1 centre against never;
- ``column_max_features_f64``: float64 column tiles against screened products
  (choose the features with ``--d``);
- ``column_block_bytes``: 64 KiB to 1 MiB;
- ``fused_prefetch_row_bytes``: the fused sweep hinting the next sub-block into
  the cache (``0``) against not (``10**9``); the rows' width decides (``--d``).
- ``quantized``: float32 column tiles screened in int16 against not (the
  column tiles on for every group); the rows' width sets
  ``QUANTIZED_MAX_FEATURES`` (``--d``).
"""

from __future__ import annotations

import sys

from _blas_env import rerun_without_blas_overrides

if __name__ == "__main__":
    rerun_without_blas_overrides()

import argparse  # noqa: E402
import os  # noqa: E402
import time  # noqa: E402
from concurrent.futures import ThreadPoolExecutor  # noqa: E402
from dataclasses import replace  # noqa: E402

import numpy as np  # noqa: E402
from _hardware import header_lines  # noqa: E402

KIB = 1024
SWEEPS = {
    "rowmajor_max_k": ([10**9, 0], "8,16,24,32,48,64,80"),
    "screen_min_k": ([0, None], "16,24,32,48,64,128"),
    "screen_rowmajor_max_k": ([10**9, 0], "8,16,32,64"),
    "row_block_bytes": ([64 * KIB, 128 * KIB, 256 * KIB, 512 * KIB, 1024 * KIB], "8,16,64"),
    "dist_block_bytes_compiled": ([256 * KIB, 512 * KIB, 1024 * KIB, 2048 * KIB], "16,256"),
    "dist_block_bytes": ([512 * KIB, 1024 * KIB, 2048 * KIB, 4096 * KIB], "8,64,256"),
    "onehot_max_k": ([10**9, 0], "8,32,64,128"),
    "columns": ([True, False], "4,8,16,32,64,256,1024"),
    "column_min_k": ([1, 10**9], "4,8,16,24,32,48,64"),
    "column_max_features_f64": ([10**9, 0], "32,64,256,1024"),
    "column_block_bytes": ([64 * KIB, 128 * KIB, 256 * KIB, 512 * KIB, 1024 * KIB],
                           "16,64,256,1024"),
    "fused_prefetch_row_bytes": ([0, 10**9], "16,32,64"),
    "quantized": ([True, False], "16,64,256,1024"),
}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("name", choices=sorted(SWEEPS))
    p.add_argument("--rows", type=int, default=125_000)
    p.add_argument("--d", type=int, default=32)
    p.add_argument("--ks", default=None, help="numbers of centres (default: per threshold)")
    p.add_argument("--dtype", default=None, help="default: float64 for screen_*, else float32")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--kernels", default="numba", help="base plan mode (DASKMEANS_KERNELS)")
    args = p.parse_args(argv)

    from threadpoolctl import threadpool_limits

    from daskmeans.kernels import choose_plan, lloyd_partial

    values, ks = SWEEPS[args.name]
    ks = [int(k) for k in (args.ks or ks).split(",")]
    wants_f64 = args.name.startswith("screen") or args.name == "column_max_features_f64"
    dtype = np.dtype(args.dtype or ("float64" if wants_f64 else "float32"))
    mode = "numpy" if args.name in ("onehot_max_k", "dist_block_bytes") else args.kernels
    base = choose_plan(dtype, 16, args.d, 10**9, mode=mode)
    if (args.name in ("columns", "quantized") or args.name.startswith("column_")) \
            and base.compiled:
        # the column tiles for every group, float64 of any width, whatever this processor's
        # defaults (with AVX-512 they start at 65 centres, float32 only): the swept field
        # alone then differs
        base = replace(base, columns=True, column_min_k=1, column_max_features_f64=10**9)
    for line in header_lines():
        print(line)
    print(f"threshold {args.name}; block {args.rows:,} x {args.d} {dtype.name}; "
          f"{args.threads} threads; best of {args.repeat}; load {os.getloadavg()[0]:.2f}")
    print(f"base plan: {base.describe()}")
    rng = np.random.default_rng(0)
    blocks = [rng.normal(size=(args.rows, args.d)).astype(dtype) for _ in range(args.threads)]
    print("| k | " + " | ".join(f"{args.name}={v}" for v in values) + " |")
    print("|---|" + "---|" * len(values))
    with threadpool_limits(1, "blas"), ThreadPoolExecutor(args.threads) as pool:
        for k in ks:
            C = np.ascontiguousarray(blocks[0][rng.choice(args.rows, k, replace=False)])
            cells = []
            for v in values:
                plan = replace(base, **{args.name: v})
                list(pool.map(lambda X, plan=plan, C=C: lloyd_partial(X, C, plan=plan), blocks))
                ts = []
                for _ in range(args.repeat):
                    t = time.perf_counter()
                    list(pool.map(lambda X, plan=plan, C=C: lloyd_partial(X, C, plan=plan), blocks))
                    ts.append(time.perf_counter() - t)
                cells.append(f"{min(ts) * 1e3:.2f} ms ({plan.path(dtype, k, 1, args.d)})")
            print(f"| {k} | " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
