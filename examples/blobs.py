"""The classic k-means pictures on two "boards" of 3 x 3 clusters in 2-D.

* uniform board: points uniform inside nine square tiles (with gaps between
  them), like the squares of a board;
* Gaussian board: Gaussian blobs centred on the same nine squares.

For each board the script chooses k with :func:`daskmeans.select_k` (elbow,
gap statistic, f(K), simplified silhouette; every k fitted in the same
passes), fits k-means with the k chosen by f(K), draws the
clusters and the convergence curve, and writes a GIF of the Lloyd iterations.

Run ``python examples/blobs.py [OUTPUT_DIR]`` (about 20 s on 2 cores).
"""

from __future__ import annotations

import sys
from pathlib import Path

import dask.array as da
import numpy as np

from daskmeans import KMeans, plot, select_k

BOARD = 3  # 3 x 3 squares


def make_board(n: int, kind: str, *, seed: int = 0, chunk_rows: int = 10_000) -> da.Array:
    """``n`` points on a 3 x 3 board: ``kind`` is "uniform" or "gaussian"."""
    rng = np.random.default_rng(seed)
    tile = rng.integers(0, BOARD * BOARD, n)
    corner = np.column_stack([tile % BOARD, tile // BOARD]).astype(float)
    if kind == "uniform":
        X = corner + 0.15 + 0.7 * rng.random((n, 2))  # tiles of side 0.7, gaps 0.3
    elif kind == "gaussian":
        X = corner + 0.5 + 0.12 * rng.standard_normal((n, 2))
    else:
        raise ValueError(f"kind must be 'uniform' or 'gaussian', got {kind!r}")
    return da.from_array(X, chunks=(chunk_rows, 2))


def run_board(kind: str, out: Path, *, n: int, ks, n_refs: int, seed: int,
              animate: bool = True) -> dict:
    X = make_board(n, kind, seed=seed)
    res = select_k(X, ks, n_refs=n_refs, ref_size=min(n, 20_000), random_state=seed)
    plot.k_selection(res).savefig(out / f"{kind}_board_k_selection.png", dpi=80)
    k = res.best_k_["fk"]
    model = KMeans(k, random_state=seed).fit(X)
    plot.clusters(model, X, sample=10_000).savefig(out / f"{kind}_board_clusters.png", dpi=80)
    plot.convergence(model).savefig(out / f"{kind}_board_convergence.png", dpi=80)
    if animate:
        plot.animate(X, k, out / f"{kind}_board_lloyd.gif", sample=1500, max_iter=15,
                     random_state=seed)
    chosen = ", ".join(f"{m}={v}" for m, v in res.best_k_.items())
    print(f"{kind} board: chosen k: {chosen}; {res.n_passes_} passes for "
          f"{len(res.ks_)} values of k")
    print(f"{kind} board: k={k} inertia {model.inertia_:.4g} after {model.n_iter_} iterations")
    return {"best_k": res.best_k_, "k": k, "inertia": model.inertia_,
            "n_passes": res.n_passes_}


def main(out="blobs-output", *, n: int = 40_000, ks=range(2, 13), n_refs: int = 3,
         seed: int = 0, animate: bool = True) -> dict:
    """Run both boards; return their results (also printed)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    results = {
        kind: run_board(kind, out, n=n, ks=ks, n_refs=n_refs, seed=seed, animate=animate)
        for kind in ("uniform", "gaussian")
    }
    print(f"figures in {out}")
    return results


if __name__ == "__main__":
    main(*sys.argv[1:2])
