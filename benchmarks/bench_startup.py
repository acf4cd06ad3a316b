"""Start-up costs: import, ``--help``, and a first fit in a fresh process, cold and warm.

Every measurement runs in a fresh Python process, so that nothing is imported or
compiled beforehand, and is repeated (best of ``--repeat``), alternating the
contenders:

- ``import daskmeans`` against ``import sklearn.cluster`` (wall time of the
  import statement, in-process);
- ``daskmeans --help`` (``python -m daskmeans --help``, process wall time);
- a first ``KMeans(8, random_state=0).fit(X)`` of an N x d array (default
  100,000 x 8), float32 and float64, including the import, against
  scikit-learn's in the same conditions: *cold* with numba's cache pointed at a
  new empty folder (``NUMBA_CACHE_DIR``), *warm* with a cache filled by an
  earlier run; with ``--numba`` also the fit with the compiled kernels forced
  (``DASKMEANS_KERNELS=numba``), which shows what the compile step costs.

With ``--crossover`` it times instead, in one process, default fits of growing
size with the NumPy plan and with the compiled plan (warm cache), plus the
fixed cost of the compiled plan in a fresh process (numba's import and cache
loads): the sizes where the compiled kernels start to pay set
``NUMBA_MIN_ELEMENTS`` in ``daskmeans/kernels/_thresholds.py``.

With ``--small`` it times, in one process after a warm-up fit of every size,
default fits ``KMeans(k, random_state=0).fit(X)`` of in-memory arrays from
1,000 x 2 to 100,000 x 8 (``--sizes``) against scikit-learn's, alternating,
best of ``--repeat``, with both inertias: small data should not pay for the
machinery built for large data (goal: at most 1.5x scikit-learn's wall time at
equal or lower inertia). ``--data blobs`` clusters Gaussian blobs (8 centres
1.5 apart on the diagonal) instead of one standard normal cloud, and
``--seeds`` repeats every size over several data sets (seeds 0, 1, ...),
reporting the median ratios. ``--threads N`` limits both to N threads (BLAS
and OpenMP by threadpoolctl, dask's ``num_workers``): on a shared machine,
one thread each compares the work per core.

Usage::

    python benchmarks/bench_startup.py                  # 100,000 x 8, both dtypes
    python benchmarks/bench_startup.py --numba          # and the forced compiled kernels
    python benchmarks/bench_startup.py --n 10000 --d 2 --repeat 5
    python benchmarks/bench_startup.py --crossover
    python benchmarks/bench_startup.py --small --repeat 5
    python benchmarks/bench_startup.py --small --data blobs --seeds 5
"""

from __future__ import annotations

import os
import sys

from _blas_env import rerun_without_blas_overrides, unset_note

if __name__ == "__main__":
    rerun_without_blas_overrides()

import argparse  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
from _hardware import header_lines  # noqa: E402

FIT = r"""
import json, sys, time
t0 = time.perf_counter()
import numpy as np
X = np.random.default_rng(0).normal(size=({n}, {d})).astype("{dtype}")
t1 = time.perf_counter()
{imp}
t2 = time.perf_counter()
m = KMeans({k}, random_state=0).fit(X)
t3 = time.perf_counter()
print(json.dumps({{"import": t2 - t1, "fit": t3 - t2, "total": t3 - t1,
                   "inertia": float(m.inertia_), "n_iter": int(m.n_iter_),
                   "numba": "numba" in sys.modules}}))
"""

IMPORTS = {
    "daskmeans": "from daskmeans import KMeans",
    "sklearn": "from sklearn.cluster import KMeans",
}


def _children_cpu() -> float:
    use = resource.getrusage(resource.RUSAGE_CHILDREN)
    return use.ru_utime + use.ru_stime


def _run(code: str, env: dict | None = None) -> tuple[float, str]:
    """Run ``code`` in a fresh interpreter: (wall seconds, stdout); the CPU
    seconds it used are kept in ``_run.cpu``."""
    full = dict(os.environ)
    full.pop("DASKMEANS_KERNELS", None)
    full.update(env or {})
    t, c = time.perf_counter(), _children_cpu()
    out = subprocess.run([sys.executable, "-c", code], env=full, capture_output=True,
                         text=True, check=True)
    _run.cpu = _children_cpu() - c
    return time.perf_counter() - t, out.stdout


def import_time(stmt: str) -> float:
    code = f"import time; t = time.perf_counter(); {stmt}; print(time.perf_counter() - t)"
    return float(_run(code)[1])


def help_time() -> float:
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "daskmeans", "--help"], capture_output=True,
                   check=True)
    return time.perf_counter() - t


def first_fit(who: str, n: int, d: int, k: int, dtype: str, env: dict | None = None) -> dict:
    code = FIT.format(n=n, d=d, k=k, dtype=dtype, imp=IMPORTS[who])
    wall, out = _run(code, env)
    res = json.loads(out.strip().splitlines()[-1])
    res["wall"] = wall
    res["cpu"] = _run.cpu  # the whole process's CPU time (all threads)
    return res


def best(results: list[dict], key: str = "total") -> dict:
    return min(results, key=lambda r: r[key])


def startup(args) -> list[str]:
    rows = ["| measurement | daskmeans (s) | scikit-learn (s) | ratio |", "|---|---|---|---|"]
    imp_dm, imp_sk, helps = [], [], []
    for _ in range(args.repeat):
        imp_dm.append(import_time("import daskmeans"))
        imp_sk.append(import_time("import sklearn.cluster"))
        helps.append(help_time())
    rows.append(f"| `import daskmeans` / `import sklearn.cluster` | {min(imp_dm):.3f} | "
                f"{min(imp_sk):.3f} | {min(imp_dm) / min(imp_sk):.2f} |")
    rows.append(f"| `daskmeans --help` (process) | {min(helps):.3f} | - | - |")
    kept = tempfile.mkdtemp(prefix="bench-startup-warm-")
    try:
        for dtype in args.dtypes.split(","):
            shape = f"{args.n:,} x {args.d} {dtype}, k={args.k}"
            variants = [("default", {})]
            if args.numba:
                variants.append(("compiled forced", {"DASKMEANS_KERNELS": "numba"}))
            sk = [first_fit("sklearn", args.n, args.d, args.k, dtype)
                  for _ in range(args.repeat)]
            sk_best = best(sk)
            for label, env in variants:
                cold = []
                for _ in range(args.repeat if not env else 1):
                    empty = tempfile.mkdtemp(prefix="bench-startup-cold-")
                    try:
                        cold.append(first_fit("daskmeans", args.n, args.d, args.k, dtype,
                                              {**env, "NUMBA_CACHE_DIR": empty}))
                    finally:
                        shutil.rmtree(empty, ignore_errors=True)
                warm_env = {**env, "NUMBA_CACHE_DIR": kept}
                first_fit("daskmeans", args.n, args.d, args.k, dtype, warm_env)  # fills it
                warm = [first_fit("daskmeans", args.n, args.d, args.k, dtype, warm_env)
                        for _ in range(args.repeat)]
                for name, res in (("cold", best(cold)), ("warm", best(warm))):
                    rows.append(
                        f"| first fit {shape}, {label}, {name} cache (import + fit; "
                        f"inertia {res['inertia']:.6g} vs {sk_best['inertia']:.6g}, "
                        f"{res['n_iter']} vs {sk_best['n_iter']} iterations, numba "
                        f"{'imported' if res['numba'] else 'not imported'}) | "
                        f"{res['total']:.2f} (import {res['import']:.2f}, process CPU "
                        f"{res['cpu']:.2f}) | {sk_best['total']:.2f} (import "
                        f"{sk_best['import']:.2f}, process CPU {sk_best['cpu']:.2f}) | "
                        f"{res['total'] / sk_best['total']:.2f} |")
    finally:
        shutil.rmtree(kept, ignore_errors=True)
    return rows


CROSS = r"""
import json, os, sys, time, warnings
import numpy as np
from daskmeans import KMeans
warnings.simplefilter("ignore")
out = []
for n, d in {sizes}:
    X = np.random.default_rng(0).normal(size=(n, d)).astype("{dtype}")
    row = {{"n": n, "d": d}}
    for mode in ("numpy", "numba"):
        os.environ["DASKMEANS_KERNELS"] = mode
        KMeans(8, random_state=0, max_iter=2).fit(X)  # compile / load once
        ts = []
        for _ in range({repeat}):
            t = time.perf_counter()
            m = KMeans(8, random_state=0).fit(X)
            ts.append(time.perf_counter() - t)
        row[mode] = min(ts)
        row[mode + "_iter"] = int(m.n_iter_)
    out.append(row)
print(json.dumps(out))
"""

LOAD = r"""
import os, time, numpy as np
X = np.random.default_rng(0).normal(size=(5000, 8)).astype("{dtype}")
from daskmeans import KMeans
os.environ["DASKMEANS_KERNELS"] = "numpy"
KMeans(8, random_state=0, max_iter=1).fit(X[:100])   # dask and the rest imported
os.environ["DASKMEANS_KERNELS"] = "{mode}"
t = time.perf_counter()
KMeans(8, random_state=0, max_iter=3).fit(X)
print(time.perf_counter() - t)
"""


def crossover(args) -> list[str]:
    sizes = [(20_000, 8), (50_000, 8), (100_000, 8), (250_000, 8), (500_000, 8),
             (100_000, 32), (250_000, 32)]
    rows = ["| N x d | NumPy plan fit (s) | compiled plan fit, warm (s) | saving (s) |",
            "|---|---|---|---|"]
    kept = tempfile.mkdtemp(prefix="bench-startup-cross-")
    try:
        env = {"NUMBA_CACHE_DIR": kept}
        for dtype in args.dtypes.split(","):
            _, out = _run(CROSS.format(sizes=sizes, dtype=dtype, repeat=args.repeat), env)
            for r in json.loads(out.strip().splitlines()[-1]):
                rows.append(f"| {r['n']:,} x {r['d']} {dtype} | {r['numpy']:.3f} "
                            f"({r['numpy_iter']} it) | {r['numba']:.3f} ({r['numba_iter']} it) | "
                            f"{r['numpy'] - r['numba']:.3f} |")
            fixed = {}
            for mode in ("numpy", "numba"):
                ts = [float(_run(LOAD.format(dtype=dtype, mode=mode), env)[1])
                      for _ in range(args.repeat)]
                fixed[mode] = min(ts)
            rows.append(f"| fixed cost of the compiled plan in a fresh process, {dtype} "
                        f"(numba import + cache loads; 5,000 x 8, 3 iterations) | "
                        f"{fixed['numpy']:.3f} | {fixed['numba']:.3f} | "
                        f"{fixed['numpy'] - fixed['numba']:.3f} |")
    finally:
        shutil.rmtree(kept, ignore_errors=True)
    return rows


SMALL_SIZES = "1000x2,10000x2,10000x8,100000x2,100000x8"


def small(args) -> list[str]:
    """Warm default fits of small in-memory arrays against scikit-learn's, in this process."""
    import warnings

    from sklearn.cluster import KMeans as SKKMeans

    from daskmeans import KMeans

    many = args.seeds > 1
    rows = ["| N x d, dtype, k | daskmeans (s) | scikit-learn (s) | ratio | inertia ratio "
            "| iterations |", "|---|---|---|---|---|---|"]
    if many:
        rows[0] = (f"| N x d, dtype, k ({args.seeds} data sets, {args.data}) | daskmeans (s, "
                   "median) | scikit-learn (s, median) | ratio (median; max) | inertia ratio "
                   "(median; max) | iterations (mean) |")
    for dtype in args.dtypes.split(","):
        for text in args.sizes.split(","):
            n, d = (int(v) for v in text.lower().split("x"))
            per_seed = []
            for seed in range(args.seeds):
                rng = np.random.default_rng(seed)
                X = rng.normal(size=(n, d))
                if args.data == "blobs":
                    X += rng.integers(0, 8, n)[:, None] * 1.5
                X = X.astype(dtype)
                with _limited(args.threads):
                    per_seed.append(_small_case(X, args.k, args.repeat, seed if many else 0,
                                                KMeans, SKKMeans, warnings))
            dm = np.array([r[0] for r in per_seed])
            sk = np.array([r[1] for r in per_seed])
            ratio, inertia = dm / sk, np.array([r[2] for r in per_seed])
            if not many:
                rows.append(f"| {n:,} x {d}, {dtype}, k={args.k} | {dm[0]:.4f} | {sk[0]:.4f} | "
                            f"{ratio[0]:.2f} | {inertia[0]:.4f} | "
                            f"{per_seed[0][3]} vs {per_seed[0][4]} |")
                continue
            it_dm = np.mean([r[3] for r in per_seed])
            it_sk = np.mean([r[4] for r in per_seed])
            rows.append(f"| {n:,} x {d}, {dtype}, k={args.k} | {np.median(dm):.4f} | "
                        f"{np.median(sk):.4f} | {np.median(ratio):.2f}; {ratio.max():.2f} | "
                        f"{np.median(inertia):.4f}; {inertia.max():.4f} | "
                        f"{it_dm:.1f} vs {it_sk:.1f} |")
    return rows


def _limited(threads: int | None):
    """Both contenders on at most ``threads`` threads (no limit for None)."""
    import contextlib

    if threads is None:
        return contextlib.nullcontext()
    import dask
    from threadpoolctl import threadpool_limits

    stack = contextlib.ExitStack()
    stack.enter_context(threadpool_limits(threads))
    stack.enter_context(dask.config.set(num_workers=threads))
    return stack


def _small_case(X, k, repeat, seed, KMeans, SKKMeans, warnings) -> tuple:
    """(daskmeans s, scikit-learn s, inertia ratio, iterations, iterations): best of
    ``repeat`` warm fits each, alternating, both with ``random_state=seed``."""
    fits = {"daskmeans": lambda: KMeans(k, random_state=seed).fit(X),
            "sklearn": lambda: SKKMeans(k, random_state=seed).fit(X)}
    times: dict = {who: [] for who in fits}
    models: dict = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for fit in fits.values():
            fit()  # warm-up: imports, compiled kernels loaded, caches
        for _ in range(repeat):
            for who, fit in fits.items():
                t = time.perf_counter()
                models[who] = fit()
                times[who].append(time.perf_counter() - t)
    m_dm, m_sk = models["daskmeans"], models["sklearn"]
    return (min(times["daskmeans"]), min(times["sklearn"]), m_dm.inertia_ / m_sk.inertia_,
            m_dm.n_iter_, m_sk.n_iter_)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--d", type=int, default=8)
    p.add_argument("--k", type=int, default=8)
    p.add_argument("--dtypes", default="float32,float64")
    p.add_argument("--repeat", type=int, default=3, help="best of this many runs")
    p.add_argument("--numba", action="store_true",
                   help="also time fits with the compiled kernels forced (cold: compiles)")
    p.add_argument("--crossover", action="store_true",
                   help="time NumPy against compiled plans over sizes (sets NUMBA_MIN_ELEMENTS)")
    p.add_argument("--small", action="store_true",
                   help="warm default fits of small in-memory arrays against scikit-learn's")
    p.add_argument("--sizes", default=SMALL_SIZES,
                   help="N x d sizes of --small, comma-separated (default %(default)s)")
    p.add_argument("--data", choices=("normal", "blobs"), default="normal",
                   help="--small: one standard normal cloud, or 8 Gaussian blobs")
    p.add_argument("--seeds", type=int, default=1,
                   help="--small: data sets (and random_state) per size; medians reported")
    p.add_argument("--threads", type=int, default=None,
                   help="--small: limit both contenders to this many threads")
    args = p.parse_args(argv)
    import dask
    import sklearn

    import daskmeans

    print(f"python {sys.version.split()[0]}, numpy {np.__version__}, dask {dask.__version__}, "
          f"scikit-learn {sklearn.__version__}, daskmeans {daskmeans.__version__}")
    for line in header_lines():
        print(line)
    print(f"load average before: {os.getloadavg()[0]:.2f}; unset OPENBLAS_CORETYPE/"
          f"OPENBLAS_L2_SIZE for this run: {unset_note()}")
    print(f"command: python benchmarks/bench_startup.py {' '.join(argv or sys.argv[1:])}")
    if args.small:
        rows = small(args)
    else:
        rows = crossover(args) if args.crossover else startup(args)
    print("\n".join(rows))
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
