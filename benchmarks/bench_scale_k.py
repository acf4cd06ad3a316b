"""The scale run of very large k: ``daskmeans fit --algorithm hierarchical`` from Zarr.

Writes an N x d float32 Zarr array drawn from a mixture of ``--components``
Gaussians (block by block, never whole in memory; the mixture of
``bench_large_k.py``), times one read pass over it, then runs the command

    daskmeans fit DATA --k K --algorithm hierarchical --out OUT --json [--n-probe P]

in a child process on local threads, and reports its wall time, the passes
over the data of each level (from ``report.json``), the seconds of each
level (timed from the command's progress lines), its peak resident memory
(``getrusage`` of the child) against the size of the data, and an
extrapolation to a cluster: the wall time taken as block work and spread
over ``--workers`` x ``--threads-per-worker`` threads, in rounds of one block
per thread (optimistic: the in-memory work between passes does not spread;
two runs at different N separate it), stated as an extrapolation.

Usage::

    python benchmarks/bench_scale_k.py --dir /scratch --n 10000000 --k 100000
"""

from __future__ import annotations

import sys

from _blas_env import rerun_without_blas_overrides

if __name__ == "__main__":
    rerun_without_blas_overrides()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from _hardware import header_lines  # noqa: E402


def run_timed(cmd: list) -> tuple:
    """Run ``cmd``, timing its progress lines (``[level] ...`` on stderr).

    Returns its stdout (None when it failed), its stderr, and for every level
    the number of its progress lines and the seconds up to its last line since
    the line before (an ``"end"`` entry: after the last line).
    """
    import threading

    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out: list = []
    reader = threading.Thread(target=lambda: out.append(proc.stdout.read()), daemon=True)
    reader.start()
    phases: dict = {}
    lines = []
    last = time.perf_counter()
    for line in proc.stderr:
        lines.append(line)
        now = time.perf_counter()
        if line.startswith("[") and "]" in line:
            name = line[1:line.index("]")]
            count, seconds = phases.get(name, (0, 0.0))
            phases[name] = (count + 1, seconds + now - last)
            last = now
    proc.wait()
    reader.join()
    phases["end"] = (1, time.perf_counter() - last)
    stdout = out[0] if out and proc.returncode == 0 else None
    return stdout, "".join(lines), phases


def write_mixture(path: Path, n: int, d: int, n_comp: int, chunk: int, seed: int = 0) -> None:
    """An n x d float32 mixture of ``n_comp`` Gaussians (centres N(0, 1.5^2),
    spreads 0.5 to 1.5, Dirichlet(2) weights) into a Zarr array, block by block."""
    import zarr

    root = np.random.SeedSequence(seed)
    rng = np.random.default_rng(root)
    comp = rng.normal(size=(n_comp, d)).astype(np.float32) * 1.5
    spread = rng.uniform(0.5, 1.5, n_comp).astype(np.float32)
    p = rng.dirichlet(np.full(n_comp, 2.0))
    tmp = path.with_name(path.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    arr = zarr.create_array(str(tmp), shape=(n, d), chunks=(chunk, d), dtype="float32")
    for b, child in enumerate(root.spawn((n + chunk - 1) // chunk)):
        r = np.random.default_rng(child)
        s, e = b * chunk, min((b + 1) * chunk, n)
        lab = r.choice(n_comp, e - s, p=p)
        arr[s:e] = comp[lab] + r.normal(size=(e - s, d)).astype(np.float32) * spread[lab, None]
    tmp.rename(path)


def read_pass(path: Path) -> tuple[float, int]:
    """Seconds of one read pass (``X.sum(axis=0)``) and the number of blocks."""
    import dask.array as da

    X = da.from_zarr(str(path))
    t = time.perf_counter()
    X.sum(axis=0).compute()
    return time.perf_counter() - t, X.numblocks[0]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dir", default=None, help="where to write the data (default: temp)")
    p.add_argument("--n", type=int, default=10_000_000)
    p.add_argument("--d", type=int, default=64)
    p.add_argument("--k", type=int, default=100_000)
    p.add_argument("--components", type=int, default=3000)
    p.add_argument("--chunk", type=int, default=250_000, help="rows per Zarr chunk")
    p.add_argument("--n-probe", type=int, default=None)
    p.add_argument("--max-iter", type=int, default=None)
    p.add_argument("--workers", type=int, default=16, help="cluster of the extrapolation")
    p.add_argument("--threads-per-worker", type=int, default=1)
    p.add_argument("--keep", action="store_true", help="keep the data and the outputs")
    args = p.parse_args(argv)

    for line in header_lines():
        print(line)
    base = Path(args.dir or tempfile.mkdtemp(prefix="bench-scale-k-"))
    base.mkdir(parents=True, exist_ok=True)
    data = base / f"mixture-{args.n}x{args.d}.zarr"
    out = base / "out"
    try:
        if not data.exists():
            t = time.perf_counter()
            write_mixture(data, args.n, args.d, args.components, args.chunk)
            print(f"wrote {data.name} in {time.perf_counter() - t:.1f} s")
        gib = args.n * args.d * 4 / 2**30
        t_read, n_blocks = read_pass(data)
        print(f"data: {args.n:,} x {args.d} float32 ({gib:.2f} GiB), {n_blocks} chunks of "
              f"{args.chunk:,} rows; one read pass {t_read:.2f} s", flush=True)
        cmd = [sys.executable, "-m", "daskmeans", "fit", str(data), "--k", str(args.k),
               "--algorithm", "hierarchical", "--out", str(out), "--json", "--seed", "0"]
        if args.n_probe is not None:
            cmd += ["--n-probe", str(args.n_probe)]
        if args.max_iter is not None:
            cmd += ["--max-iter", str(args.max_iter)]
        print("command: daskmeans " + " ".join(cmd[3:]), flush=True)
        t = time.perf_counter()
        stdout, stderr, phases = run_timed(cmd)
        wall = time.perf_counter() - t
        peak_gib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20
        if stdout is None:
            print(stderr[-4000:])
            return 1
        report = json.loads(stdout)
        keys = ("n_coarse", "n_iter", "converged", "n_passes", "passes", "inertia", "timings")
        print(json.dumps({k: report.get(k) for k in keys}, indent=1, default=str))
        sizes = np.asarray(report.get("cluster_sizes") or [0.0])
        print(f"largest cluster / mean: {sizes.max() / max(sizes.mean(), 1e-300):.2f}; "
              f"empty clusters: {int((sizes == 0).sum())}")
        passes = report.get("n_passes")
        print("\n| level | progress lines | seconds | seconds per line |\n|---|---|---|---|")
        for name, (count, seconds) in phases.items():
            print(f"| {name} | {count} | {seconds:.1f} | {seconds / count:.2f} |")
        print("(a level's seconds run from the previous progress line to its last one: its "
              "passes and the in-memory work before them; 'end': after the last line, "
              "the labels written and the model saved)")
        print()
        print(f"| rows | k | wall time | passes | peak RSS (GiB) | data (GiB) |"
              f" read pass | {args.workers} x {args.threads_per_worker} workers, extrapolated |")
        print("|---|---|---|---|---|---|---|---|")
        threads = args.workers * args.threads_per_worker
        local = os.cpu_count() or 1
        # a pass runs its blocks in rounds of one block per thread
        rounds = -(-n_blocks // local) / -(-n_blocks // threads)
        extra = wall / rounds
        print(f"| {args.n:,} | {args.k:,} | {wall:.0f} s | {passes} | {peak_gib:.2f} | "
              f"{gib:.2f} | {t_read:.2f} s | {extra:.0f} s |")
        print(f"\nextrapolation: the whole wall time of this run ({local} threads, "
              f"{-(-n_blocks // local)} rounds of blocks per pass) taken as block work and "
              f"spread over {threads} threads ({-(-n_blocks // threads)} rounds); work that "
              f"does not spread (in-memory steps, the model written) makes it optimistic; "
              f"not a measurement.")
    finally:
        if not args.keep:
            shutil.rmtree(out, ignore_errors=True)
            if args.dir is None:
                shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
