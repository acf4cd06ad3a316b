"""The README's demo: generate a Zarr data set, fit k-means out of core, write results.

Runs on the embedded default: dask's local threaded scheduler and a local
directory (``demo-output/`` under the current directory, or the first argument).
It takes well under a minute on a 2-core laptop.

    python examples/demo.py [OUTPUT_DIR]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

import daskmeans
from daskmeans import KMeans
from daskmeans.datasets import write_blobs


def main(out_dir="demo-output", n_samples=2_000_000, n_features=16, k=12, seed=0) -> dict:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = out / "blobs.zarr"
    t0 = time.perf_counter()
    write_blobs(data, n_samples, n_features, k, cluster_std=0.08, chunk_rows=125_000,
                random_state=seed, dtype=np.float32, overwrite=True)
    t_gen = time.perf_counter() - t0

    X = daskmeans.open_zarr(data)
    print(f"data: {data} shape={X.shape} dtype={X.dtype} blocks={X.numblocks[0]} "
          f"({X.nbytes / 2**20:.0f} MiB, written in {t_gen:.1f} s)")
    t0 = time.perf_counter()
    km = KMeans(n_clusters=k, random_state=seed, verbose=1).fit(str(data))
    t_fit = time.perf_counter() - t0
    print(f"fit: {km.n_iter_} Lloyd iterations, {km.n_passes_} passes over the data, "
          f"inertia {km.inertia_:.6g}, {t_fit:.1f} s "
          f"(init {km.timings_['init']:.1f} s, Lloyd {km.timings_['lloyd']:.1f} s)")

    labels_path = out / "labels.zarr"
    km.predict(str(data)).rechunk(X.chunks[0]).to_zarr(str(labels_path), overwrite=True)
    km.save(out / "model.json")
    sizes = np.asarray(km.cluster_sizes_, dtype=np.int64)
    print(f"cluster sizes: {sizes.tolist()}")
    print(f"wrote {out / 'model.json'} and {labels_path}")
    return {"inertia": km.inertia_, "n_iter": km.n_iter_, "n_passes": km.n_passes_,
            "sizes": sizes}


if __name__ == "__main__":
    main(*(sys.argv[1:2] or []))
