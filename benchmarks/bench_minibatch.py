"""MiniBatchKMeans on a Zarr array: wall time in read passes and inertia vs a converged fit.

Data: 6,000,000 x 32 float32 rows from 64 overlapping Gaussian clusters
(centres drawn N(0, 1), per-cluster spreads uniform in [0.5, 1.5]), written
block by block to a Zarr array (125,000-row chunks, Zarr's default codec).

Reported, all on dask's threaded scheduler with 2 threads:

* the read pass: ``X.sum()`` over the Zarr array (the unit of wall time),
  and, for comparison only, the same with two Zarr chunks per Dask task and
  the same on 3 threads (as a fold run as a Dask graph does: its chain of
  tasks takes a thread beyond the 2 of the reads);
* daskmeans.MiniBatchKMeans with 1 and 3 passes (early stopping off) with the
  initialisation given by ``--init-size``, ``--n-init`` and
  ``--init-lloyd-iter`` (default: 10,000 rows, 3 candidates, 10 Lloyd
  iterations on the sample), and with 1 pass and scikit-learn's
  initialisation ("plain": one k-means++ candidate, no Lloyd iterations);
  method ``graph`` is ``ours`` with the fold's pass run as a Dask graph by
  the threaded scheduler instead of on the fold's own threads
  (``daskmeans.engine._fold_pass.THREADS`` off; not in the default methods):
  wall time of the fold, and of the whole ``fit`` (the fold plus the pass
  that computes the exact ``inertia_``), and the inertia relative to the
  converged exact fit;
* scikit-learn's MiniBatchKMeans.partial_fit over the same chunks, 1 and 3
  passes (its inertia is measured afterwards, not timed);
* the converged exact fit: daskmeans.KMeans (k-means||, tol=1e-5, at most 150 iterations);
* with ``--seeds N``, the inertia of every row over ``random_state`` 0 to N - 1
  (one untimed fit each): median, lowest and highest. One seed's inertia says
  little about a method: which local optimum a single pass lands in moves it
  by a few tenths of a percent either way.

Every timed row is run ``--repeat`` times (default 3), round robin over the
rows, and the fastest run is reported, all runs printed: the machine this was
written on is shared, and a single run can be slowed by other work. The fits are deterministic (same
inertia every run). A read pass is timed three times at the start and once
before every timed run, and the unit is the fastest of them all (reads get
faster once the process is warm, so this is the strictest unit). A second
column pairs every timed run with the read pass timed just before it and
gives the median of those ratios: the fastest of many read passes against
the fastest of a few runs favours the read pass when the machine's speed
drifts, while neighbours in time see the same machine. A third divides the
fastest run by the fastest of the read passes timed just before its runs
(as many read passes as runs): the first column's minimum over 18 read
passes against 3 runs is lower by the spread of the noise alone.

Before the timed runs, small untimed MiniBatchKMeans fits on the first two
chunks, one with the settings of every timed daskmeans row, pay the one-off
costs (loading the compiled kernels, starting thread pools); their times are
printed.

The converged fit takes minutes: with ``--dir`` its inertia is cached in
``DIR/reference.json`` (keyed by the data's shape and seed) and reused by
later runs; ``--reference-inertia`` gives it directly. ``--methods`` runs a
subset of the rows and ``--param NAME=VALUE`` passes extra constructor
arguments to daskmeans' MiniBatchKMeans (for experiments).

Usage::

    python benchmarks/bench_minibatch.py [--dir DIR] [--rows N] [--batch-size B]
        [--init-size S] [--n-init N] [--init-lloyd-iter I] [--repeat R]
        [--reference-inertia R] [--methods ours:1,ours:3,plain:1,sklearn:1,sklearn:3,graph:1]
        [--param NAME=VALUE ...] [--seeds N]

If ``OPENBLAS_CORETYPE`` or ``OPENBLAS_L2_SIZE`` is set, the script re-runs
itself with both removed from its own environment (benchmark only; see
``_blas_env.py``).
"""

from __future__ import annotations

import argparse
import ast
import functools
import json
import os
import tempfile
import time

from _blas_env import rerun_without_blas_overrides, unset_note

if __name__ == "__main__":
    rerun_without_blas_overrides()

import dask  # noqa: E402
import numpy as np  # noqa: E402
import zarr  # noqa: E402
from threadpoolctl import threadpool_info  # noqa: E402

import daskmeans  # noqa: E402
from daskmeans import KMeans, MiniBatchKMeans  # noqa: E402
from daskmeans.engine import _fold_pass  # noqa: E402

K, D, CHUNK = 64, 32, 125_000
print = functools.partial(print, flush=True)  # noqa: A001 - progress of a long run


def write_data(path: str, n: int, seed: int = 0, compressors="auto") -> None:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(K, D)).astype(np.float32)
    spreads = rng.uniform(0.5, 1.5, size=K).astype(np.float32)
    z = zarr.create_array(store=path, shape=(n, D), chunks=(CHUNK, D), dtype="float32",
                          compressors=compressors, overwrite=True)
    for start in range(0, n, CHUNK):
        m = min(CHUNK, n - start)
        r = np.random.default_rng([seed, start])
        y = r.integers(0, K, size=m)
        block = centers[y] + r.standard_normal((m, D), dtype=np.float32) * spreads[y, None]
        z[start : start + m] = block


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", default=None, help="where to write the Zarr array (default: temp)")
    ap.add_argument("--rows", type=int, default=6_000_000)
    ap.add_argument("--batch-size", type=int, default=CHUNK)
    ap.add_argument("--init-size", type=int, default=10_000)
    ap.add_argument("--n-init", type=int, default=3)
    ap.add_argument("--init-lloyd-iter", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=3,
                    help="timed runs of every row; the table shows the fastest")
    ap.add_argument("--reference-inertia", type=float, default=None,
                    help="inertia of the converged exact fit (skips computing it)")
    ap.add_argument("--methods", default="ours:1,ours:3,plain:1,sklearn:1,sklearn:3",
                    help="comma-separated NAME:PASSES with NAME in ours (--init-size, --n-init, "
                         "--init-lloyd-iter), plain (scikit-learn's initialisation: "
                         "--init-size, n_init=1, init_lloyd_iter=0), sklearn, graph (ours "
                         "with the fold's pass as a Dask graph)")
    ap.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                    help="extra MiniBatchKMeans argument (Python literal), repeatable")
    ap.add_argument("--seeds", type=int, default=0,
                    help="also give every row's inertia over random_state 0 .. N-1 (untimed)")
    args = ap.parse_args()
    methods = [(m.split(":")[0], int(m.split(":")[1])) for m in args.methods.split(",") if m]
    extra = {}
    for item in args.param:
        name, value = item.split("=", 1)
        try:
            extra[name] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            extra[name] = value
    if extra:
        print(f"extra MiniBatchKMeans parameters: {extra}")
    tmp = args.dir or tempfile.mkdtemp(prefix="bench-minibatch-")
    path = os.path.join(tmp, "X.zarr")
    if not os.path.exists(path):
        _, t = timed(lambda: write_data(path, args.rows))
        print(f"wrote {path} in {t:.1f}s")
    blas = [(i.get("internal_api"), i.get("architecture"), i.get("num_threads"))
            for i in threadpool_info()]
    print(f"daskmeans {daskmeans.__version__}, dask {dask.__version__}, BLAS {blas}, "
          f"unset OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE for this run: {unset_note()}")
    with dask.config.set(scheduler="threads", num_workers=2):
        X = daskmeans.open_zarr(path)
        print(f"X: {X.shape} {X.dtype}, chunks {X.chunks[0][0]} rows, {X.numblocks[0]} blocks")
        reads = []

        def read_pass():
            reads.append(timed(lambda: X.sum().compute())[1])

        for _ in range(3):
            read_pass()
        print(f"read passes (X.sum): {[round(r, 2) for r in reads]}")

        reference = _reference(tmp if args.dir else None, X, args.reference_inertia)
        ref = reference["inertia"]
        ours = {"init_size": args.init_size, "n_init": args.n_init,
                "init_lloyd_iter": args.init_lloyd_iter}
        plain = {"init_size": args.init_size, "n_init": 1, "init_lloyd_iter": 0}
        # one-off costs (loading the compiled kernels, thread pools) are not a property of
        # the data: pay them once, untimed, on the first two chunks, with the settings of
        # every timed configuration (the initial sample's kernels depend on its size)
        warm = [kw for name, kw in (("ours", ours), ("plain", plain))
                if any(m == name or (m, name) == ("graph", "ours") for m, _ in methods)]
        for kw in warm or [{}]:
            _, t_warm = timed(lambda kw=kw: MiniBatchKMeans(
                K, batch_size=args.batch_size, max_iter=1, random_state=0,
                **dict(kw, **extra)).fit(X[: 2 * CHUNK]))
            print(f"warm-up fit on {2 * CHUNK} rows ({_fmt(kw) or 'defaults'}; untimed in "
                  f"the table): {t_warm:.2f}s")
        zarr_arr = zarr.open_array(path, mode="r")
        entries = []  # label, run() -> (loop seconds, fit seconds or None, fitted object)
        for name, passes in methods:
            if name in ("ours", "plain", "graph"):
                kw = dict(plain if name == "plain" else ours, **extra)

                def run(kw=kw, passes=passes, seed=0, threads=name != "graph"):
                    model = MiniBatchKMeans(K, batch_size=args.batch_size, max_iter=passes,
                                            max_no_improvement=None, random_state=seed, **kw)
                    _fold_pass.THREADS = threads
                    try:
                        _, t = timed(lambda: model.fit(X))
                    finally:
                        _fold_pass.THREADS = True
                    return model.timings_["fold"], t, model

                how = ", the pass as a Dask graph" if name == "graph" else ""
                entries.append((f"daskmeans MiniBatchKMeans ({_fmt(kw)}{how}), {passes} "
                                "pass(es)", run))
            elif name == "sklearn":
                from sklearn.cluster import MiniBatchKMeans as SKMiniBatchKMeans

                def run(passes=passes, seed=0):
                    sk = SKMiniBatchKMeans(K, batch_size=args.batch_size, random_state=seed,
                                           compute_labels=False)

                    def loop():
                        for _ in range(passes):
                            for start in range(0, zarr_arr.shape[0], CHUNK):
                                sk.partial_fit(zarr_arr[start : start + CHUNK])

                    _, t = timed(loop)
                    return t, None, sk

                entries.append((f"scikit-learn partial_fit over chunks, {passes} pass(es)", run))
        # round robin: a stretch of time slowed by other work falls on every row alike
        runs = {label: [] for label, _ in entries}
        paired = {label: [] for label, _ in entries}  # this run / the read pass just before it
        before = {label: [] for label, _ in entries}  # the read passes timed just before
        for _ in range(args.repeat):
            for label, run in entries:
                read_pass()
                runs[label].append(run())
                paired[label].append(runs[label][-1][0] / reads[-1])
                before[label].append(reads[-1])
        rows = []
        for label, _ in entries:
            done = runs[label]
            last = done[-1][2]
            if isinstance(last, MiniBatchKMeans):
                inertias = {r[2].inertia_ for r in done}
                assert len(inertias) == 1, "the fit is deterministic"
                inertia, fits = last.inertia_, [r[1] for r in done]
            else:
                inertia, fits = -_frozen(last.cluster_centers_).score(X), None
            loops = [r[0] for r in done]
            rows.append((label, min(loops), None if fits is None else min(fits), inertia,
                         float(np.median(paired[label])), min(loops) / min(before[label])))
            print(f"{label}: fold/loop {_fmt_times(loops)}"
                  + ("" if fits is None else f", fit {_fmt_times(fits)}")
                  + f", {100 * (inertia / ref - 1):+.2f}%")
        seeded = {}  # label: inertia relative to the reference, by seed
        for label, run in entries if args.seeds else []:
            rel = []
            for seed in range(args.seeds):
                fitted = run(seed=seed)[2]
                value = (fitted.inertia_ if isinstance(fitted, MiniBatchKMeans)
                         else -_frozen(fitted.cluster_centers_).score(X))
                rel.append(100 * (value / ref - 1))
            seeded[label] = rel
            print(f"{label}: inertia vs converged by seed {[round(r, 2) for r in rel]}")

        # for comparison only: the same read pass with two Zarr chunks per Dask task
        # (zarr then decodes both at once); not the unit, which follows the array's chunks
        X2 = daskmeans.open_zarr(path, chunks=(2 * CHUNK, D))
        wide = [timed(lambda: X2.sum().compute())[1] for _ in range(3)]
        # and with one thread more (3), as the fold's graph runs: its chain takes a thread
        with dask.config.set(num_workers=3):
            three = [timed(lambda: X.sum().compute())[1] for _ in range(3)]

    read = min(reads)
    print(f"read passes (X.sum): {[round(r, 2) for r in reads]}, fastest {read:.2f}s, "
          f"median {np.median(reads):.2f}s")
    print(f"read pass with two Zarr chunks per task (not the unit): fastest of 3 {min(wide):.2f}s")
    print(f"read pass on 3 threads (not the unit; a fold's graph runs its chain on a third "
          "thread): "
          f"fastest of 3 {min(three):.2f}s")
    print()
    print("| method | fold / loop (read passes) | same, paired: median of run / read pass "
          "timed just before it | same, fastest run / fastest of the read passes timed just "
          "before its runs | whole fit incl. exact inertia pass (read passes) | "
          "inertia vs converged |")
    print("|---|---|---|---|---|---|")
    for name, t_loop, t_fit, inertia, pair, same_n in rows:
        fit = "-" if t_fit is None else f"{t_fit:.2f}s ({t_fit / read:.2f})"
        print(f"| {name} | {t_loop:.2f}s ({t_loop / read:.2f}) | {pair:.2f} | {same_n:.2f} | "
              f"{fit} | {100 * (inertia / ref - 1):+.2f}% |")
    print(f"\nread pass {read:.2f}s (fastest of {len(reads)}); reference: {reference['how']}")
    if seeded:
        print(f"\n| method | inertia vs converged over random_state 0..{args.seeds - 1}: "
              "median | lowest | highest |")
        print("|---|---|---|---|")
        for label, rel in seeded.items():
            print(f"| {label} | {np.median(rel):+.2f}% | {min(rel):+.2f}% | {max(rel):+.2f}% |")


def _reference(cache_dir, X, given):
    """Inertia of the converged exact fit: given, cached in ``cache_dir``, or computed."""
    if given is not None:
        return {"inertia": given, "how": f"given ({given:.6e})"}
    key = {"shape": list(X.shape), "chunks": int(X.chunks[0][0]), "k": K, "data_seed": 0}
    cache = None if cache_dir is None else os.path.join(cache_dir, "reference.json")
    if cache is not None and os.path.exists(cache):
        with open(cache) as f:
            doc = json.load(f)
        if doc.get("key") == key:
            print(f"reference inertia from the cache: {doc['inertia']:.6e}")
            return doc
    exact, t = timed(lambda: KMeans(K, tol=1e-5, max_iter=150, random_state=0).fit(X))
    print(f"exact KMeans: inertia {exact.inertia_:.6e}, {exact.n_iter_} iterations, {t:.0f}s")
    doc = {"key": key, "inertia": float(exact.inertia_),
           "how": f"KMeans(tol=1e-5, max_iter=150, random_state=0): {exact.n_iter_} "
                  f"iterations, {t:.0f}s"}
    if cache is not None:
        with open(cache, "w") as f:
            json.dump(doc, f)
    return doc


def _fmt(kw):
    return ", ".join(f"{k}={v}" for k, v in kw.items())


def _fmt_times(ts):
    return f"{min(ts):.2f}s (runs: {', '.join(f'{t:.2f}' for t in ts)})"


def _frozen(centers):
    """A KMeans carrying given centres, to score them with one pass."""
    km = KMeans(len(centers))
    km.cluster_centers_ = np.asarray(centers)
    km.n_features_in_ = centers.shape[1]
    return km


if __name__ == "__main__":
    main()
