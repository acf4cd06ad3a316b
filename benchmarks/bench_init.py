"""Initialisation at large k: k-means|| against ``init="hierarchical"``.

On N x 64 float32 rows drawn from a mixture of Gaussian components (the data
of ``bench_large_k.py``), held as a Dask array of row blocks (so that
k-means|| runs its passes, as on Zarr data), for every k: ``KMeans(k,
init=..., max_iter=M)`` with each initialisation, reporting the seconds and
passes of the initialisation, the seconds of the Lloyd iterations, and the
inertia of the fit. The size from which ``init="auto"`` takes the
hierarchical start (:data:`daskmeans.engine._init.HIERARCHICAL_INIT_MIN_K`)
is read off this table: where the hierarchical start reaches an equal or
lower inertia in less total time.

Usage::

    python benchmarks/bench_init.py --n 200000 --k 256,1024,4096 --max-iter 20
"""

from __future__ import annotations

import sys

from _blas_env import rerun_without_blas_overrides
from _hardware import header_lines

if __name__ == "__main__":
    rerun_without_blas_overrides()

import argparse  # noqa: E402
import time  # noqa: E402

import dask.array as da  # noqa: E402
from bench_large_k import make_data  # noqa: E402

INITS = ("k-means||", "hierarchical")


def run(Xd, k: int, init: str, max_iter: int, seed: int) -> dict:
    from daskmeans import KMeans

    t = time.perf_counter()
    km = KMeans(k, init=init, max_iter=max_iter, random_state=seed).fit(Xd)
    wall = time.perf_counter() - t
    return {"wall": wall, "init_s": km.timings_.get("init", float("nan")),
            "lloyd_s": km.timings_.get("lloyd", float("nan")),
            "init_passes": km.n_passes_ - km.n_iter_ - 1, "n_iter": km.n_iter_,
            "inertia": km.inertia_}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=200_000)
    p.add_argument("--d", type=int, default=64)
    p.add_argument("--components", type=int, default=2000)
    p.add_argument("--k", default="256,1024,4096", help="values of k, comma-separated")
    p.add_argument("--max-iter", type=int, default=20)
    p.add_argument("--block-rows", type=int, default=50_000)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    for line in header_lines():
        print(line)
    X = make_data(args.n, args.d, args.components)
    Xd = da.from_array(X, chunks=(args.block_rows, args.d))
    print(f"data: {args.n:,} x {args.d} float32, {args.components} components, "
          f"{Xd.numblocks[0]} blocks; KMeans(k, init=..., max_iter={args.max_iter}, "
          f"random_state={args.seed})\n", flush=True)
    print("| k | init | init (s) | init passes | Lloyd (s), iterations | fit (s) | inertia |"
          " fit time vs k-means|| | inertia vs k-means|| |")
    print("|---|---|---|---|---|---|---|---|---|")
    for k in (int(v) for v in args.k.split(",")):
        base = None
        for init in INITS:
            r = run(Xd, k, init, args.max_iter, args.seed)
            base = base or r
            print(f"| {k:,} | {init} | {r['init_s']:.2f} | {r['init_passes']} | "
                  f"{r['lloyd_s']:.2f}, {r['n_iter']} | {r['wall']:.2f} | {r['inertia']:.6g} | "
                  f"{r['wall'] / base['wall']:.2f} | {r['inertia'] / base['inertia']:.4f} |",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
