"""The pieces of one block's sweep by the column tiles, timed apart.

For one block (``--rows`` x ``--d``, the size of a MiniBatchKMeans step in
``bench_minibatch.py``) and ``--k`` centres, in each ``--dtypes``, on one
thread, the median milliseconds of:

* ``transpose``: the block's rows written transposed into the tiles' scratch,
  sub-block by sub-block (8 x 8 blocks in registers), nothing else;
* ``labels``: the transposes and the column tiles (every row's label and
  minimum), no sums;
* ``sums``: the sums, counts and distances of the rows
  (``accumulate_rows``; float64 sums, float32 rows summed in float32 first)
  from given labels, the rows in cache as after the tiles;
* ``sweep``: :func:`daskmeans.kernels.lloyd_partial` with the column tiles,
  all of it;

and the GFLOP/s of ``labels`` (``2 rows d k`` a sweep). It also counts the
shuffle instructions of the compiled transpose loop (deterministic, unlike the
timings on a shared machine). Run it natively and with another target
forced (``NUMBA_CPU_NAME=haswell NUMBA_CPU_FEATURES=+avx2``, with a
``NUMBA_CACHE_DIR`` of its own); the header says which.

Usage::

    python benchmarks/bench_step.py
    python benchmarks/bench_step.py --rows 125000 --d 32 --k 64 --repeat 40
"""

from __future__ import annotations

from _blas_env import rerun_without_blas_overrides
from _hardware import header_lines

if __name__ == "__main__":
    rerun_without_blas_overrides()

import argparse  # noqa: E402
import collections  # noqa: E402
import dataclasses  # noqa: E402
import re  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

_SHUFFLES = re.compile(r"\t(v(?:perm\w*|unpck\w+|shuf\w+|insert\w+|extract\w+|blend\w*ps|"
                       r"blend\w*pd|movsldup|movshdup|movlhps|movhlps))\s")


def _median_ms(fn, repeat: int) -> float:
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)) * 1e3


def _case(rows: int, d: int, k: int, dtype, repeat: int) -> dict:
    import numba

    from daskmeans import kernels
    from daskmeans.kernels import _numba_loops as nl
    from daskmeans.kernels._compiled import Distances, column_step

    rng = np.random.default_rng(0)
    X = rng.standard_normal((rows, d)).astype(dtype)
    C = np.ascontiguousarray(X[rng.choice(rows, k, replace=False)])
    plan = dataclasses.replace(kernels.choose_plan(dtype, k, d, rows, mode="numba"),
                               fused=False, fused_first_max_k=0, column_min_k=1,
                               column_max_features_f64=max(d, 1), screen_min_k=None)
    step = column_step(plan, X)
    dists = Distances(plan, C, step, d)
    assert dists.columns, "the column tiles are not available here"
    Cm, c_sq = dists.column_operands(0, k)
    chunk = dists.chunk
    XT, runv, runi = nl._column_scratch(step, d, X)
    lab = np.empty(step, dtype=np.intp)
    best = np.empty(step, dtype=X.dtype)

    @numba.njit(nogil=True)
    def transposes(X, XT, step):
        for s in range(0, X.shape[0], step):
            nl.transpose_rows(X[s : min(s + step, X.shape[0])], XT)

    @numba.njit(nogil=True)
    def labels(X, Cm, c_sq, chunk, XT, runv, runi, lab, best, step):
        for s in range(0, X.shape[0], step):
            m = min(step, X.shape[0] - s)
            nl.column_rows(X[s : s + m], Cm, c_sq, chunk, XT, runv, runi, lab[:m], best[:m])

    all_labels = rng.integers(0, k, rows).astype(np.intp)
    dist = np.zeros(rows, dtype=X.dtype)
    sums = np.zeros((k, d))
    counts = np.zeros(k)
    no_w = np.empty(0)

    @numba.njit(nogil=True)
    def accumulate(X, XT, w, lab, dist, sums, counts, step):
        total = 0.0
        for s in range(0, X.shape[0], step):
            e = min(s + step, X.shape[0])
            nl.transpose_rows(X[s:e], XT)  # the rows into cache, as the tiles leave them
            total += nl.accumulate_rows(X[s:e], w, lab[s:e], dist[s:e], sums, counts, X[:0])
        return total

    out = {
        "transpose": _median_ms(lambda: transposes(X, XT, step), repeat),
        "labels": _median_ms(lambda: labels(X, Cm, c_sq, chunk, XT, runv, runi, lab, best,
                                            step), repeat),
        "sums": _median_ms(lambda: accumulate(X, XT, no_w, all_labels, dist, sums, counts,
                                                step),
                           repeat),
        "sweep": _median_ms(lambda: kernels.lloyd_partial(X, C, plan=plan), repeat),
    }
    # 'sums' includes a transpose to bring the rows into cache: report it without
    out["sums"] = max(0.0, out["sums"] - out["transpose"])
    out["gflops"] = 2 * rows * d * k / (out["labels"] * 1e-3) / 1e9
    asm = transposes.inspect_asm(transposes.signatures[0])
    out["shuffles"] = dict(sorted(collections.Counter(_SHUFFLES.findall(asm)).items()))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=125_000)
    p.add_argument("--d", type=int, default=32)
    p.add_argument("--k", type=int, default=64)
    p.add_argument("--dtypes", default="float32,float64")
    p.add_argument("--repeat", type=int, default=40)
    args = p.parse_args(argv)
    from threadpoolctl import threadpool_limits

    for line in header_lines():
        print(line)
    print(f"block {args.rows:,} x {args.d}, {args.k} centres, one thread, "
          f"median of {args.repeat} calls (ms)")
    print()
    print("| dtype | transpose | labels | labels GFLOP/s | sums | sweep | "
          "shuffle instructions of the transpose loop |")
    print("|---|---|---|---|---|---|---|")
    with threadpool_limits(1):
        for name in args.dtypes.split(","):
            r = _case(args.rows, args.d, args.k, np.dtype(name).type, args.repeat)
            shuffles = ", ".join(f"{op} {n}" for op, n in r["shuffles"].items()) or "none"
            print(f"| {name} | {r['transpose']:.2f} | {r['labels']:.2f} | {r['gflops']:.0f} | "
                  f"{r['sums']:.2f} | {r['sweep']:.2f} | {shuffles} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
