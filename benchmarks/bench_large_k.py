"""Large k: pruned and plain Lloyd, scikit-learn and faiss per iteration; hierarchical fits.

On N x 64 float32 rows drawn from a mixture of a few thousand Gaussian
components (unequal weights and spreads), for every k:

* seconds per Lloyd iteration from the same start (k distinct random rows)
  of scikit-learn (``algorithm="lloyd"``), faiss (when installed), daskmeans
  ``algorithm="lloyd"`` and ``algorithm="pruned"``; the pruned and plain runs
  are checked to end on the same centres;
* a flat daskmeans fit run to convergence (``tol=1e-4``, pruned Lloyd from the
  same start) against ``HierarchicalKMeans`` (its defaults, and 10 fine then 3
  refinement iterations probing 8 cells, a plain two-level fit (no refinement
  passes) on fewer, larger cells than its default ``sqrt(k)``: ``PLAIN_CELLS * sqrt(k)``
  cells, 10 coarse and 10 fine iterations, and the settings of ``--hier-grid``; the
  tree's depth with ``--levels``), in
  wall time and inertia of the final labels, and the largest cluster over the mean
  size (also with ``balanced=True``).

Every ratio comes from one run on one machine. Usage::

    python benchmarks/bench_large_k.py --n 1000000 --k 1000,10000,50000
"""

from __future__ import annotations

import os
import sys

from _blas_env import rerun_without_blas_overrides, unset_note
from _hardware import header_lines

rerun_without_blas_overrides()

import argparse  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402

import dask  # noqa: E402
import dask.array as da  # noqa: E402
import numpy as np  # noqa: E402


def make_data(n: int, d: int, n_comp: int, seed: int = 0) -> np.ndarray:
    """A mixture of ``n_comp`` Gaussians: centres N(0, 1.5^2), spreads 0.5 to 1.5."""
    rng = np.random.default_rng(seed)
    comp = rng.normal(size=(n_comp, d)).astype(np.float32) * 1.5
    spread = rng.uniform(0.5, 1.5, n_comp).astype(np.float32)
    lab = rng.choice(n_comp, n, p=rng.dirichlet(np.full(n_comp, 2.0)))
    X = np.empty((n, d), dtype=np.float32)
    step = 1 << 16
    for s in range(0, n, step):
        e = min(s + step, n)
        X[s:e] = comp[lab[s:e]] + rng.normal(size=(e - s, d)).astype(np.float32) * spread[
            lab[s:e], None]
    return X


def per_iter_sklearn(X, C0, iters):
    from sklearn.cluster import KMeans as SK

    t = time.perf_counter()
    km = SK(len(C0), init=C0, n_init=1, max_iter=iters, tol=0, algorithm="lloyd").fit(X)
    return (time.perf_counter() - t) / km.n_iter_, km.n_iter_


def per_iter_faiss(X, C0, iters):
    try:
        import faiss
    except ImportError:
        return None, 0
    faiss.omp_set_num_threads(os.cpu_count() or 1)
    k, d = C0.shape
    clus = faiss.Clustering(d, k)
    clus.niter = iters
    clus.max_points_per_centroid = 1 << 30  # no subsampling
    clus.min_points_per_centroid = 1
    faiss.copy_array_to_vector(np.ascontiguousarray(C0).ravel(), clus.centroids)
    index = faiss.IndexFlatL2(d)
    t = time.perf_counter()
    clus.train(np.ascontiguousarray(X), index)
    return (time.perf_counter() - t) / iters, iters


def per_iter_daskmeans(Xd, C0, iters, algorithm):
    from daskmeans import KMeans

    events = []
    km = KMeans(len(C0), init=C0, max_iter=iters, tol=0, algorithm=algorithm,
                callback=events.append).fit(Xd)
    pruned = [e.get("pruned", 0.0) for e in events if e.get("phase") == "lloyd"]
    return km.timings_["lloyd"] / km.n_iter_, km, pruned


def largest_over_mean(sizes) -> float:
    sizes = np.asarray(sizes, dtype=np.float64)
    return float(sizes.max() / sizes.mean())


def run_k(X, Xd, k, args, rows):
    rng = np.random.default_rng(k)
    C0 = X[np.sort(rng.choice(len(X), k, replace=False))].copy()
    r = {"k": k}
    if not args.no_sklearn:
        r["sklearn"], r["sklearn_iter"] = per_iter_sklearn(X, C0, args.sk_iters)
        print(f"k={k}: scikit-learn {r['sklearn']:.3f} s/it ({r['sklearn_iter']} it)", flush=True)
    if not args.no_faiss:
        r["faiss"], _ = per_iter_faiss(X, C0, args.sk_iters)
        if r["faiss"] is not None:
            print(f"k={k}: faiss {r['faiss']:.3f} s/it", flush=True)
    r["plain"], plain_km, _ = per_iter_daskmeans(Xd, C0, args.sk_iters, "lloyd")
    print(f"k={k}: daskmeans lloyd {r['plain']:.3f} s/it", flush=True)
    r["pruned"], pruned_km, frac = per_iter_daskmeans(Xd, C0, args.iters, "pruned")
    r["pruned_frac"] = frac
    print(f"k={k}: daskmeans pruned {r['pruned']:.3f} s/it over {pruned_km.n_iter_} it, "
          f"rows pruned per iteration: {' '.join(f'{100 * f:.0f}%' for f in frac)}",
          flush=True)
    if args.sk_iters == args.iters:
        r["same_centres"] = bool(np.array_equal(plain_km.cluster_centers_,
                                                pruned_km.cluster_centers_))
    else:
        _, check, _ = per_iter_daskmeans(Xd, C0, args.sk_iters, "pruned")
        r["same_centres"] = bool(np.array_equal(plain_km.cluster_centers_,
                                                check.cluster_centers_))
    if args.no_hierarchical:
        return r
    from daskmeans import HierarchicalKMeans, KMeans

    t = time.perf_counter()
    flat = KMeans(k, init=C0, max_iter=args.flat_max_iter, tol=1e-4, algorithm="pruned").fit(Xd)
    r["flat_time"] = time.perf_counter() - t
    r["flat_inertia"], r["flat_iter"] = flat.inertia_, flat.n_iter_
    r["flat_ratio"] = largest_over_mean(flat.cluster_sizes_)
    print(f"k={k}: flat to convergence {r['flat_time']:.1f} s, {flat.n_iter_} it, "
          f"inertia {flat.inertia_:.6g}", flush=True)
    refined = {"max_iter": 10, "n_probe": 8, "refine_iter": 3}
    plain = {"refine_iter": 0, "coarse_iter": 10, "max_iter": 10,
             "n_coarse": max(1, round(PLAIN_CELLS * np.sqrt(k)))}
    runs = [("hier", {}), ("hier_refined", refined), ("hier_plain", plain),
            ("hier_balanced", {"balanced": True, "max_size_ratio": 2.0})]
    runs += [(f"hier[{text}]", kw) for text, kw in parse_grid(args.hier_grid)]
    for name, kw in runs:
        t = time.perf_counter()
        hk = HierarchicalKMeans(k, random_state=0, **{"n_levels": args.levels, **kw}).fit(Xd)
        r[f"{name}_time"] = time.perf_counter() - t
        r[f"{name}_inertia"] = hk.inertia_
        r[f"{name}_passes"] = hk.n_passes_
        r[f"{name}_ratio"] = largest_over_mean(hk.cluster_sizes_)
        r[f"{name}_cells"] = len(hk.coarse_centers_)
        print(f"k={k}: {name} ({hk.n_levels_} levels, "
              f"{' x '.join(str(len(c)) for c, _ in hk.levels_[:-1])} cells) "
              f"{r[f'{name}_time']:.1f} s "
              f"({r[f'{name}_time'] / r['flat_time']:.3f} of flat), {hk.n_passes_} passes "
              f"{hk.passes_}, "
              f"inertia {hk.inertia_:.6g} ({hk.inertia_ / flat.inertia_ - 1:+.2%} vs flat)",
              flush=True)
    return r


#: Cells of the plain two-level run, times sqrt(k): fewer, larger cells than the
#: default (each row then meets k / n_coarse fine centres a pass, not sqrt(k)), which
#: lose less without refinement passes (benchmarks/RESULTS.md).
PLAIN_CELLS = 0.15


def parse_grid(text: str | None) -> list:
    """``"max_iter=5,n_probe=8;refine_iter=0"`` -> [(text, kwargs), ...] (integers)."""
    out = []
    for part in (text or "").split(";"):
        if part.strip():
            kw = {key.strip(): int(value) for key, value in
                  (item.split("=") for item in part.split(","))}
            out.append((part.strip(), kw))
    return out


def fmt(x, spec=".3f"):
    return "-" if x is None else format(x, spec)


def table(rows) -> str:
    out = ["| k | scikit-learn s/it | faiss s/it | lloyd s/it | pruned s/it | pruned / sklearn "
           "| pruned / lloyd | same centres |",
           "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        sk = r.get("sklearn")
        out.append(
            f"| {r['k']:,} | {fmt(sk)} | {fmt(r.get('faiss'))} | {r['plain']:.3f} | "
            f"{r['pruned']:.3f} | {fmt(None if sk is None else r['pruned'] / sk, '.2f')} | "
            f"{r['pruned'] / r['plain']:.2f} | {r.get('same_centres')} |")
    if any("flat_time" in r for r in rows):
        out += ["", "| k | flat s (it) | hierarchical s (passes) | time / flat | inertia vs flat "
                "| refined s | refined inertia vs flat | plain two-level s (cells) "
                "| plain time / flat | plain inertia vs flat "
                "| largest/mean flat, hier, balanced |",
                "|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in rows:
            if "flat_time" not in r:
                continue
            fi = r["flat_inertia"]
            out.append(
                f"| {r['k']:,} | {r['flat_time']:.1f} ({r['flat_iter']}) | "
                f"{r['hier_time']:.1f} ({r['hier_passes']}) | "
                f"{r['hier_time'] / r['flat_time']:.3f} | {r['hier_inertia'] / fi - 1:+.2%} | "
                f"{r['hier_refined_time']:.1f} | {r['hier_refined_inertia'] / fi - 1:+.2%} | "
                f"{r['hier_plain_time']:.1f} ({r['hier_plain_cells']}) | "
                f"{r['hier_plain_time'] / r['flat_time']:.3f} | "
                f"{r['hier_plain_inertia'] / fi - 1:+.2%} | "
                f"{r['flat_ratio']:.2f}, {r['hier_ratio']:.2f}, {r['hier_balanced_ratio']:.2f} |")
    return "\n".join(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=1_000_000, help="rows (default: %(default)s)")
    p.add_argument("--d", type=int, default=64)
    p.add_argument("--components", type=int, default=2000)
    p.add_argument("--k", default="1000,10000,50000", help="values of k, comma-separated")
    p.add_argument("--iters", type=int, default=20,
                   help="iterations of pruned Lloyd averaged (default: %(default)s)")
    p.add_argument("--sk-iters", type=int, default=20,
                   help="iterations of scikit-learn, faiss and plain Lloyd averaged; their "
                        "cost per iteration does not fall (default: %(default)s)")
    p.add_argument("--flat-max-iter", type=int, default=100)
    p.add_argument("--block-rows", type=int, default=100_000)
    p.add_argument("--no-sklearn", action="store_true")
    p.add_argument("--no-faiss", action="store_true")
    p.add_argument("--no-hierarchical", action="store_true")
    p.add_argument("--hier-grid", default=None,
                   help="more HierarchicalKMeans settings to time against flat k-means, "
                        "';'-separated, each 'name=int,...' (e.g. "
                        "'max_iter=3,n_probe=6;refine_iter=0,n_probe=1'; 'n_levels=3' "
                        "for a deeper tree)")
    p.add_argument("--levels", default="auto",
                   help="n_levels of every HierarchicalKMeans fit: 'auto' (default) or an "
                        "integer >= 2 (a --hier-grid setting overrides it)")
    args = p.parse_args(argv)
    if args.levels != "auto":
        args.levels = int(args.levels)
    ks = [int(v) for v in args.k.split(",")]

    import sklearn

    import daskmeans
    from daskmeans import kernels as _kernels

    header = [
        f"python {platform.python_version()}, numpy {np.__version__}, dask {dask.__version__}, "
        f"scikit-learn {sklearn.__version__}, daskmeans {daskmeans.__version__}",
        *header_lines(),
        f"{os.cpu_count()} threads; load average before: {os.getloadavg()[0]:.2f}",
        "unset OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE for this run: " + unset_note(),
        "daskmeans kernels (float32, k=1000): "
        + _kernels.choose_plan(np.float32, 1000, args.d, args.n).describe(),
    ]
    try:
        import faiss

        header.append(f"faiss {faiss.__version__}")
    except ImportError:
        header.append("faiss: not installed, skipped")
    header.append(f"data: {args.n:,} x {args.d} float32, {args.components} components; "
                  f"blocks of {args.block_rows:,} rows; command: {' '.join(sys.argv)}")
    for line in header:
        print(line, flush=True)
    X = make_data(args.n, args.d, args.components)
    Xd = da.from_array(X, chunks=(args.block_rows, args.d))
    rows = [run_k(X, Xd, k, args, args.block_rows) for k in ks]
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    print()
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
