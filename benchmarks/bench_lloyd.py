"""Seconds per Lloyd iteration: daskmeans against scikit-learn, dask-ml and the read floor.

Everything runs in one process, on the same data and the same starting centres
``C0`` for every contender:

- the floor: one streaming pass ``X.sum(axis=0)`` over the Dask array, and the
  GEMM ``X @ C0.T`` on the NumPy array;
- scikit-learn ``KMeans(algorithm="lloyd", n_init=1, init=C0, tol=0, max_iter=10)``;
- dask-ml's ``KMeans`` where it is installed (skipped with a message otherwise);
- daskmeans ``KMeans(init=C0, n_init=1, tol=0, max_iter=10)`` on a Dask array,
  threaded scheduler.

scikit-learn and daskmeans alternate over the repeats and each keeps its best
time, so that a change of the machine's load affects both. The header reports
the CPU time stolen by the hypervisor and other busy processes, the usual
causes of noise on a shared virtual machine.

Seconds per iteration are fit wall time divided by ``n_iter_``; every ratio is
against scikit-learn and against the read pass. With ``--default-fit`` (on by
default) it also compares the default fits on the k=16 case. The markdown
table is printed and written to ``benchmarks/RESULTS.md`` (``--out``).

Usage::

    python benchmarks/bench_lloyd.py              # all cases, float32 and float64
    python benchmarks/bench_lloyd.py --quick      # N / 10, fewer repeats
    python benchmarks/bench_lloyd.py --cases 2000000x32x16 --dtypes float32
    python benchmarks/bench_lloyd.py --ooc --gb 3 --path /tmp/ooc.zarr   # then bench_ooc.py

If ``OPENBLAS_CORETYPE`` or ``OPENBLAS_L2_SIZE`` is set, the script re-runs
itself with both removed from its own environment (benchmark only), unless the
run forces a target (below).

Both ways, natively and with the AVX2 target forced (numba's code generation and
OpenBLAS's kernels; runs on any x86 processor with AVX2, AVX-512 ones included),
and report both tables::

    python benchmarks/bench_lloyd.py --out native.md
    NUMBA_CPU_NAME=haswell NUMBA_CPU_FEATURES=+avx2 OPENBLAS_CORETYPE=Haswell \
        python benchmarks/bench_lloyd.py --keep-blas-env --out avx2.md

A forced run keeps ``OPENBLAS_CORETYPE`` when ``--keep-blas-env`` is given,
``DASKMEANS_BENCH_KEEP_BLAS=1`` is set, or ``NUMBA_CPU_NAME`` /
``NUMBA_CPU_FEATURES`` is set (see ``benchmarks/_blas_env.py``). The header
prints the OpenBLAS core type and the numba target in force, and what forced
them.
"""

from __future__ import annotations

import os
import sys

from _blas_env import rerun_without_blas_overrides, unset_note
from _hardware import header_lines

if __name__ == "__main__":
    rerun_without_blas_overrides()

import argparse  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import dask  # noqa: E402
import dask.array as da  # noqa: E402
import numpy as np  # noqa: E402

DEFAULT_CASES = "2000000x32x16,400000x32x256,200000x128x1024"


def parse_cases(text: str) -> list[tuple[int, int, int]]:
    out = []
    for item in text.split(","):
        n, d, k = (int(float(v)) for v in item.lower().split("x"))
        out.append((n, d, k))
    return out


def make_data(n: int, d: int, dtype, seed: int = 0) -> np.ndarray:
    """Gaussian blobs: 64 centres, unit noise; generated block by block."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=4.0, size=(64, d))
    X = np.empty((n, d), dtype=dtype)
    step = 1 << 18
    for start in range(0, n, step):
        m = min(step, n - start)
        lab = rng.integers(0, 64, size=m)
        X[start : start + m] = centres[lab] + rng.standard_normal((m, d), dtype=np.float32)
    return X


def even_chunks(n: int, d: int, itemsize: int, n_threads: int, target_bytes: int) -> int:
    """Rows per block: about ``target_bytes``, a block count that is a multiple of the threads."""
    blocks = max(1, math.ceil(n * d * itemsize / target_bytes))
    blocks = max(blocks, 2 * n_threads)
    blocks = math.ceil(blocks / n_threads) * n_threads
    return math.ceil(n / blocks)


def best_time(func, repeat: int) -> tuple[float, object]:
    best, out = math.inf, None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = func()
        best = min(best, time.perf_counter() - t0)
    return best, out


def cpu_counters() -> tuple[float, float] | None:
    """(steal, total) jiffies of all CPUs from /proc/stat (Linux), else None."""
    try:
        with open("/proc/stat") as f:
            fields = [float(v) for v in f.readline().split()[1:]]
    except OSError:
        return None
    return fields[7] if len(fields) > 7 else 0.0, sum(fields)


def busy_others() -> str:
    """Other processes using the CPU now (psutil, where installed)."""
    try:
        import psutil
    except ImportError:
        return "psutil not installed"
    me = os.getpid()
    procs = list(psutil.process_iter(["pid", "name"]))
    for p in procs:
        try:
            p.cpu_percent(None)
        except psutil.Error:
            pass
    time.sleep(0.5)
    busy = []
    for p in procs:
        try:
            pct = p.cpu_percent(None)
        except psutil.Error:
            continue
        if p.pid != me and pct > 10:
            busy.append(f"{p.info['name']} {pct:.0f}%")
    return ", ".join(busy) or "none"


def run_case(n, d, k, dtype, args, rows_per_block):
    from sklearn.cluster import KMeans as SKKMeans

    import daskmeans

    X = make_data(n, d, dtype, seed=0)
    rng = np.random.default_rng(1)
    C0 = X[np.sort(rng.choice(n, k, replace=False))].copy()
    Xd = da.from_array(X, chunks=(rows_per_block, d))
    it = args.max_iter
    row = {"case": f"{n:,} x {d} x {k}", "dtype": np.dtype(dtype).name}

    row["read"], _ = best_time(lambda: Xd.sum(axis=0).compute(), args.repeat + 1)
    # preallocated, touched output: time the product, not page faults of a new (N, k) array
    out = np.ones((n, k), dtype=X.dtype)
    row["gemm"], _ = best_time(lambda: np.matmul(X, C0.T, out=out), args.repeat + 1)
    out = None

    def sk_fit():
        km = SKKMeans(k, algorithm="lloyd", n_init=1, init=C0, tol=0, max_iter=it)
        km.fit(X)
        return km

    def dm_fit():
        km = daskmeans.KMeans(k, init=C0, n_init=1, tol=0, max_iter=it)
        km.fit(Xd)
        return km

    row["daskml"] = None
    if not args.no_dask_ml:
        try:
            import dask_ml
            from dask_ml.cluster import KMeans as DMLKMeans

            def dml_fit():
                km = DMLKMeans(k, init=C0, max_iter=it, tol=0, n_init=1)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    km.fit(Xd)
                return km

            t, km = best_time(dml_fit, 1)
            row["daskml"] = t / max(1, int(km.n_iter_))
            row["daskml_version"] = dask_ml.__version__
        except Exception as exc:  # noqa: BLE001 - report and go on
            row["daskml_error"] = f"{type(exc).__name__}: {exc}"[:120]

    # scikit-learn and daskmeans alternate, so that a change in the machine's
    # load during the case affects both; each keeps its best time
    with dask.config.set(scheduler="threads"):
        dm_fit()  # warm-up: compiles the optional numba loops once
        best = {"sklearn": (math.inf, None), "daskmeans": (math.inf, None)}
        for _ in range(args.repeat):
            for key, fn in (("sklearn", sk_fit), ("daskmeans", dm_fit)):
                t, km = best_time(fn, 1)
                if t < best[key][0]:
                    best[key] = (t, km)
    t, km = best["sklearn"]
    row["sklearn"] = t / km.n_iter_
    row["sklearn_iter"] = km.n_iter_
    t, km = best["daskmeans"]
    row["daskmeans"] = t / km.n_iter_
    row["daskmeans_lloyd"] = km.timings_.get("lloyd", float("nan")) / km.n_iter_
    row["daskmeans_iter"] = km.n_iter_
    return row


def default_fit(n, d, k, dtype, args, rows_per_block):
    from sklearn.cluster import KMeans as SKKMeans

    import daskmeans

    X = make_data(n, d, dtype, seed=0)
    Xd = da.from_array(X, chunks=(rows_per_block, d))
    t0 = time.perf_counter()
    sk = SKKMeans(k, random_state=0).fit(X)
    t_sk = time.perf_counter() - t0
    with dask.config.set(scheduler="threads"):
        t0 = time.perf_counter()
        dm = daskmeans.KMeans(k, random_state=0).fit(Xd)
        t_dm = time.perf_counter() - t0
    return {
        "case": f"{n:,} x {d} x {k}",
        "dtype": np.dtype(dtype).name,
        "sk_time": t_sk,
        "sk_inertia": float(sk.inertia_),
        "sk_iter": int(sk.n_iter_),
        "dm_time": t_dm,
        "dm_inertia": float(dm.inertia_),
        "dm_iter": int(dm.n_iter_),
        "dm_passes": int(getattr(dm, "n_passes_", -1)),
        "dm_timings": getattr(dm, "timings_", {}),
    }


def fmt(x, digits=3):
    return "-" if x is None else f"{x:.{digits}f}"


def table(rows) -> str:
    head = (
        "| case (N x d x k) | dtype | read pass | GEMM X@C.T | scikit-learn | dask-ml "
        "| daskmeans | daskmeans / sklearn | daskmeans / read | sklearn / read |\n"
        "|---|---|---|---|---|---|---|---|---|---|\n"
    )
    body = ""
    for r in rows:
        body += (
            f"| {r['case']} | {r['dtype']} | {fmt(r['read'])} | {fmt(r['gemm'])} "
            f"| {fmt(r['sklearn'])} | {fmt(r['daskml'])} | {fmt(r['daskmeans'])} "
            f"| {r['daskmeans'] / r['sklearn']:.2f} | {r['daskmeans'] / r['read']:.2f} "
            f"| {r['sklearn'] / r['read']:.2f} |\n"
        )
    return head + body


def default_table(rows) -> str:
    head = (
        "| case | dtype | scikit-learn fit (s) | inertia | daskmeans fit (s) | inertia "
        "| time ratio | inertia ratio |\n|---|---|---|---|---|---|---|---|\n"
    )
    body = ""
    for r in rows:
        body += (
            f"| {r['case']} | {r['dtype']} | {r['sk_time']:.2f} ({r['sk_iter']} it) "
            f"| {r['sk_inertia']:.6g} | {r['dm_time']:.2f} ({r['dm_iter']} it, "
            f"{r['dm_passes']} passes) | {r['dm_inertia']:.6g} "
            f"| {r['dm_time'] / r['sk_time']:.2f} | {r['dm_inertia'] / r['sk_inertia']:.5f} |\n"
        )
    return head + body


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cases", default=DEFAULT_CASES, help="NxDxK,... (default: %(default)s)")
    p.add_argument("--dtypes", default="float32,float64")
    p.add_argument("--quick", action="store_true", help="N / 10, one repeat, no default fit")
    p.add_argument("--max-iter", type=int, default=10)
    p.add_argument("--repeat", type=int, default=2, help="best of this many fits")
    p.add_argument("--block-mib", type=float, default=8.0, help="target MiB per Dask block")
    p.add_argument("--rows-per-block", type=int, default=None, help="override the block rows")
    p.add_argument("--no-dask-ml", action="store_true")
    p.add_argument("--no-default-fit", action="store_true")
    p.add_argument("--ooc", nargs=argparse.REMAINDER, default=None,
                   help="afterwards run bench_ooc.py with the arguments that follow "
                        "(e.g. --ooc --gb 3 --path /tmp/x.zarr)")
    p.add_argument("--out", default=str(Path(__file__).with_name("RESULTS.md")),
                   help="markdown file to write ('' to skip)")
    args = p.parse_args(argv)
    cases = parse_cases(args.cases)
    if args.quick:
        cases = [(max(1000, n // 10), d, k) for n, d, k in cases]
        args.repeat = 1
        args.no_default_fit = True
    dtypes = [np.dtype(t).type for t in args.dtypes.split(",")]
    n_threads = os.cpu_count() or 1

    import sklearn

    import daskmeans
    from daskmeans import kernels as _kernels

    header = [
        f"python {platform.python_version()}, numpy {np.__version__}, dask {dask.__version__}, "
        f"scikit-learn {sklearn.__version__}, daskmeans {daskmeans.__version__}",
        *header_lines(),
        f"{n_threads} threads; load average before: {os.getloadavg()[0]:.2f}",
        "unset OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE for this run: "
        + unset_note(),
        "daskmeans kernels (large float32): "
        + _kernels.choose_plan(np.float32, 16, 32, 10**9).describe(),
    ]
    try:
        import dask_ml

        header.append(f"dask-ml {dask_ml.__version__}")
    except ImportError:
        header.append("dask-ml: not installed, skipped")
    header.append(f"other processes using the CPU before the run: {busy_others()}")
    for line in header:
        print(line, flush=True)
    counters = cpu_counters()

    rows = []
    for n, d, k in cases:
        for dt in dtypes:
            rpb = args.rows_per_block or even_chunks(
                n, d, np.dtype(dt).itemsize, n_threads, int(args.block_mib * 2**20)
            )
            r = run_case(n, d, k, dt, args, rpb)
            r["rows_per_block"] = rpb
            rows.append(r)
            extra = f", dask-ml error: {r['daskml_error']}" if "daskml_error" in r else ""
            print(
                f"{r['case']} {r['dtype']} blocks of {rpb} rows: read {r['read']:.4f} "
                f"gemm {r['gemm']:.4f} sklearn {r['sklearn']:.4f} ({r['sklearn_iter']} it) "
                f"dask-ml {fmt(r['daskml'], 4)} daskmeans {r['daskmeans']:.4f} "
                f"(lloyd phase {r['daskmeans_lloyd']:.4f}, {r['daskmeans_iter']} it){extra}",
                flush=True,
            )
    out = "Seconds per Lloyd iteration (fit wall time / n_iter_), best of "
    out += f"{args.repeat}; same data and starting centres for all.\n\n" + table(rows)

    if not args.no_default_fit:
        drows = []
        for n, d, k in cases:
            if k != 16:
                continue
            for dt in dtypes:
                rpb = args.rows_per_block or even_chunks(
                    n, d, np.dtype(dt).itemsize, n_threads, int(args.block_mib * 2**20)
                )
                drows.append(default_fit(n, d, k, dt, args, rpb))
                print(drows[-1], flush=True)
        if drows:
            out += "\nDefault fits (scikit-learn: k-means++, n_init='auto'; daskmeans: "
            out += "k-means||, defaults), random_state=0:\n\n" + default_table(drows)
    header.append(f"load average after: {os.getloadavg()[0]:.2f}")
    end = cpu_counters()
    if counters and end and end[1] > counters[1]:
        steal = 100 * (end[0] - counters[0]) / (end[1] - counters[1])
        header.append(f"CPU time stolen by the hypervisor during the run: {steal:.1f} %")
    header.append(f"other processes using the CPU after the run: {busy_others()}")
    text = "\n".join(f"- {h}" for h in header) + "\n\n" + out
    print()
    print(text)
    if args.out:
        write_results(Path(args.out), text)
    if args.ooc is not None:
        import subprocess

        script = Path(__file__).with_name("bench_ooc.py")
        print(f"\nout-of-core benchmark: {script.name} {' '.join(args.ooc)}", flush=True)
        return subprocess.call([sys.executable, str(script), *args.ooc])
    return 0


START, END = "<!-- bench_lloyd:start -->", "<!-- bench_lloyd:end -->"


def write_results(path: Path, text: str) -> None:
    """Replace the text between the markers of ``path`` (or write a new file)."""
    block = f"{START}\n{text}\n{END}"
    old = path.read_text() if path.exists() else ""
    if START in old and END in old:
        head, rest = old.split(START, 1)
        new = head + block + rest.split(END, 1)[1]
    else:
        new = "# Benchmark results (bench_lloyd.py)\n\n" + block + "\n"
    path.write_text(new)


if __name__ == "__main__":
    raise SystemExit(main())
