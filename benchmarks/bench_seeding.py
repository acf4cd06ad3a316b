"""One greedy k-means++ step: the candidates' products by BLAS or by the column tiles.

For each sample shape (rows x features, candidates a step) and dtype, the
median seconds of one step (:func:`daskmeans.kernels.seeding_step`) with the
products computed by BLAS (``X @ C.T``) and by the column tiles over the
sample held transposed (:func:`daskmeans.kernels.seeding_operand`), with one
BLAS thread (as inside Dask's tasks) and with two. The largest sample for
which the tiles win sets ``SEEDING_TILE_BYTES``
(:mod:`daskmeans.kernels._thresholds`).

Usage::

    python benchmarks/bench_seeding.py
    python benchmarks/bench_seeding.py --shapes 10000x32x6,100000x8x6 --repeat 200
"""

from __future__ import annotations

from _blas_env import rerun_without_blas_overrides
from _hardware import header_lines

if __name__ == "__main__":
    rerun_without_blas_overrides()

import argparse  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from daskmeans import kernels  # noqa: E402

SHAPES = ("3000x7x6,10000x8x4,10000x32x6,30000x32x6,50000x32x6,70000x32x6,100000x32x6,"
          "400000x8x6,10000x256x8,20000x128x8,40000x128x8")


def median_seconds(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shapes", default=SHAPES, help="comma-separated ROWSxFEATURESxCANDIDATES")
    ap.add_argument("--dtypes", default="float32,float64")
    ap.add_argument("--repeat", type=int, default=60)
    args = ap.parse_args()
    for line in header_lines():
        print(line)
    plan = kernels.KernelPlan.numba()
    if not (plan.whole_block and plan.columns):
        raise SystemExit("needs the compiled column tiles (numba and SciPy)")
    rng = np.random.default_rng(0)
    print("\n| rows x features, candidates | dtype | MiB | BLAS, 1 / 2 threads (us) "
          "| tiles, 1 / 2 threads (us) | tiles / BLAS, 1 thread |")
    print("|---|---|---|---|---|---|")
    for shape in args.shapes.split(","):
        n, d, T = (int(v) for v in shape.split("x"))
        for dtype in args.dtypes.split(","):
            X = (rng.normal(size=(n, d)) * 3).astype(dtype)
            XT = kernels.seeding_operand(X, kernels.KernelPlan.numba(seeding_tile_bytes=1 << 62))
            x_sq = kernels.sq_norms(X).astype(np.float64)
            closest = rng.uniform(0, 100, n)
            picks = rng.choice(n, T).astype(np.intp)
            w, cum = np.empty(0), np.empty(n)
            row = {}
            for threads in (1, 2):
                with threadpool_limits(threads):
                    for name, operand in (("blas", None), ("tiles", XT)):
                        def step(operand=operand, args=(X, x_sq, picks, closest, w, cum)):
                            X_, sq, p, near, w_, c = args
                            kernels.seeding_step(X_, sq, p, near.copy(), w_, c, operand)

                        step()  # compiled and loaded before timing
                        row[name, threads] = median_seconds(step, args.repeat) * 1e6
            print(f"| {n:,} x {d}, {T} | {dtype} | {X.nbytes / 2**20:.1f} "
                  f"| {row['blas', 1]:.0f} / {row['blas', 2]:.0f} "
                  f"| {row['tiles', 1]:.0f} / {row['tiles', 2]:.0f} "
                  f"| {row['tiles', 1] / row['blas', 1]:.2f} |")


if __name__ == "__main__":
    main()
