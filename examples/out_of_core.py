"""k-means on a Zarr array larger than the memory of the Dask cluster that fits it.

1. Write Gaussian blobs to a Zarr array, block by block (never whole in memory).
2. Start a LocalCluster whose total worker memory is smaller than the array.
3. Fit k-means: every iteration streams the blocks from disk once.
4. Write one label per row to another Zarr array, block by block.
5. Draw the clusters (a uniform sample, projected on its principal axes) and
   the convergence curve.

Run ``python examples/out_of_core.py [OUTPUT_DIR]`` (about 540 MB of data
against one 500 MB worker; about a minute on 2 cores).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from dask.utils import format_bytes, parse_bytes

import daskmeans
from daskmeans import KMeans, plot
from daskmeans.datasets import write_blobs


def main(out="ooc-output", *, n_samples: int = 4_200_000, n_features: int = 16,
         n_clusters: int = 8, memory_limit: str = "500MB", n_workers: int = 1,
         chunk_rows: int = 100_000, seed: int = 0) -> dict:
    """Generate, fit, label and plot; return the numbers it prints."""
    from distributed import Client, LocalCluster

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data = out / "X.zarr"
    t0 = time.perf_counter()
    write_blobs(data, n_samples, n_features, n_clusters, cluster_std=0.3,
                chunk_rows=chunk_rows, random_state=seed, overwrite=True)
    size = n_samples * n_features * 8
    cluster_memory = n_workers * parse_bytes(memory_limit)
    print(f"data: {format_bytes(size)} on disk; cluster memory: {format_bytes(cluster_memory)} "
          f"({'larger' if size > cluster_memory else 'smaller'} than memory); written in "
          f"{time.perf_counter() - t0:.1f} s")
    with LocalCluster(n_workers=n_workers, threads_per_worker=2, memory_limit=memory_limit,
                      processes=True, dashboard_address=None) as cluster, Client(cluster):
        t0 = time.perf_counter()
        model = KMeans(n_clusters, init="k-means++", random_state=seed).fit(str(data))
        t_fit = time.perf_counter() - t0
        daskmeans.write_labels(model, str(data), str(out / "labels.zarr"), overwrite=True)
        fig = plot.clusters(model, str(data), sample=10_000)
    fig.savefig(out / "out_of_core_clusters.png", dpi=80)
    plot.convergence(model).savefig(out / "out_of_core_convergence.png", dpi=80)
    import zarr

    labels = zarr.open_array(str(out / "labels.zarr"), mode="r")
    print(f"fit: {t_fit:.1f} s, {model.n_passes_} passes, {model.n_iter_} iterations, "
          f"inertia {model.inertia_:.6g}")
    print(f"labels: {labels.shape[0]} rows written to {out / 'labels.zarr'}")
    return {"bytes": size, "cluster_memory": cluster_memory, "inertia": model.inertia_,
            "n_passes": model.n_passes_, "n_labels": int(labels.shape[0])}


if __name__ == "__main__":
    main(*sys.argv[1:2])
