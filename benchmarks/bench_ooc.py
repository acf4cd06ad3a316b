"""Out-of-core benchmark: a Zarr array larger than a LocalCluster's memory limit.

Writes (once) a float32 Zarr array of blobs, starts a LocalCluster of 2 worker
processes whose total memory limit is well under the data size, and reports in
one run:

- seconds of one read pass over the array (``X.sum(axis=0)``),
- seconds per Lloyd iteration (from the fit's callback timestamps),
- passes over the data of a default fit (k-means|| + Lloyd to convergence),
- peak RSS of client plus workers (psutil, sampled every 50 ms),

against the targets: iteration <= 1.1 x read pass, peak RSS < data / 2,
default fit <= 12 passes. ``--persist-compare`` also times a fit with
``persist=False`` and ``persist=True`` on a slice that fits in memory.

Example::

    python benchmarks/bench_ooc.py --gb 4 --path /tmp/ooc.zarr

If ``OPENBLAS_CORETYPE`` or ``OPENBLAS_L2_SIZE`` is set, the script re-runs
itself with both removed from its own environment (benchmark only; see
``_blas_env.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time

from _blas_env import rerun_without_blas_overrides, unset_note

if __name__ == "__main__":
    rerun_without_blas_overrides()

import numpy as np  # noqa: E402


class PeakRSS:
    """Samples the summed RSS of this process and all its descendants."""

    def __init__(self, interval: float = 0.05):
        import psutil

        self._proc = psutil.Process()
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _total(self) -> int:
        total = self._proc.memory_info().rss
        for child in self._proc.children(recursive=True):
            try:
                total += child.memory_info().rss
            except Exception:  # noqa: BLE001 - a process may exit between listing and reading
                pass
        return total

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self._total())
            time.sleep(self.interval)

    def reset(self):
        self.peak = self._total()

    def __enter__(self):
        self.reset()
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def write_data(path: str, gb: float, d: int, k: int, chunk_rows: int, seed: int,
               cluster_std: float) -> tuple:
    """Write the array block by block (never whole in memory) unless it already exists."""
    import zarr

    rows = int(gb * 1e9 / (4 * d)) // chunk_rows * chunk_rows
    if os.path.exists(path):
        z = zarr.open_array(path, mode="r")
        if z.shape == (rows, d) and z.attrs.get("bench_cluster_std") == cluster_std:
            return z.shape, z.nbytes
    from daskmeans.datasets import write_blobs

    write_blobs(path, rows, d, k, chunk_rows=chunk_rows, random_state=seed, dtype=np.float32,
                cluster_std=cluster_std, overwrite=True)
    z = zarr.open_array(path, mode="a")
    z.attrs["bench_cluster_std"] = cluster_std
    return z.shape, z.nbytes


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--path", default="ooc_bench.zarr")
    parser.add_argument("--gb", type=float, default=4.0, help="data size in GB (float32)")
    parser.add_argument("--features", type=int, default=32)
    parser.add_argument("--clusters", type=int, default=16)
    parser.add_argument("--chunk-rows", type=int, default=131_072)
    parser.add_argument("--memory-limit", default="1.5GiB", help="per worker (2 workers)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cluster-std", type=float, default=0.1,
                        help="blob spread; centres lie in [-1, 1]^d, so 0.1 gives separated "
                             "clusters and 1.0 heavily overlapping ones")
    parser.add_argument("--persist-compare", action="store_true")
    args = parser.parse_args(argv)

    import dask
    from dask.utils import parse_bytes
    from distributed import Client, LocalCluster

    from daskmeans import KMeans, open_zarr

    t0 = time.perf_counter()
    shape, nbytes = write_data(args.path, args.gb, args.features, args.clusters,
                               args.chunk_rows, args.seed, args.cluster_std)
    print(f"data: {shape} float32, {nbytes / 1e9:.2f} GB ({time.perf_counter() - t0:.1f} s "
          "to write or find)")
    limit = parse_bytes(args.memory_limit)
    out: dict = {"shape": list(shape), "data_gb": nbytes / 1e9, "cluster_std": args.cluster_std,
                 "workers": 2, "memory_limit_per_worker_gib": limit / 2**30,
                 "unset_openblas_overrides": unset_note()}
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, memory_limit=limit,
                      dashboard_address=None, silence_logs=40) as cluster, Client(cluster):
        X = open_zarr(args.path)
        X.sum(axis=0).compute()  # warm up (imports, page cache)
        with PeakRSS() as rss:
            t = time.perf_counter()
            X.sum(axis=0).compute()
            read = time.perf_counter() - t
        out["read_pass_s"] = read
        out["read_pass_peak_rss_gb"] = rss.peak / 1e9
        print(f"read pass: {read:.2f} s")

        stamps: list = []

        def callback(event):
            stamps.append((event["phase"], time.perf_counter()))

        with PeakRSS() as rss:
            t = time.perf_counter()
            km = KMeans(args.clusters, random_state=args.seed, callback=callback).fit(args.path)
            fit_s = time.perf_counter() - t
        lloyd_t = [s for p, s in stamps if p == "lloyd"]
        init_end = [s for p, s in stamps if p == "init"][-1]
        per_iter = np.diff([init_end] + lloyd_t)[1:]  # first one also holds the weights pass
        out.update({
            "fit_s": fit_s,
            "n_passes": km.n_passes_,
            "n_iter": km.n_iter_,
            "fit_in_read_passes": fit_s / read,
            "seconds_per_iteration": float(np.median(per_iter)) if len(per_iter) else None,
            "peak_rss_gb": rss.peak / 1e9,
            "timings": km.timings_,
        })
        out["iteration_over_read"] = (out["seconds_per_iteration"] or np.nan) / read
        if args.persist_compare:
            n_fit = int(min(shape[0], 0.15 * 2 * limit / (4 * shape[1])))
            n_fit = n_fit // args.chunk_rows * args.chunk_rows
            Xs = X[:n_fit]
            cmp = {"rows": n_fit, "gb": n_fit * shape[1] * 4 / 1e9}
            for persist in (False, True):
                t = time.perf_counter()
                m = KMeans(args.clusters, random_state=args.seed, persist=persist).fit(Xs)
                cmp[f"persist={persist}"] = {"fit_s": time.perf_counter() - t,
                                             "n_passes": m.n_passes_,
                                             "persist_s": m.timings_["persist"]}
            out["persist_compare"] = cmp
        del dask
    targets = {
        "iteration <= 1.1 x read pass": out["iteration_over_read"] <= 1.1,
        "peak RSS < data / 2": out["peak_rss_gb"] < out["data_gb"] / 2,
        "default fit <= 12 passes": out["n_passes"] <= 12,
    }
    out["targets_met"] = targets
    print(json.dumps(out, indent=2, default=float))
    return out


if __name__ == "__main__":
    main()
