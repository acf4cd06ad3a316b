"""On a cluster only small results travel between workers, never data blocks.

One ``LocalCluster`` of 4 single-thread worker processes over a Zarr array of
32 blocks; every phase of a fit runs on it and the bytes in the workers'
incoming transfer logs (``Worker.transfer_incoming_log``) are summed. Per pass
over the data they must stay below ``blocks x (k x d x 8)`` (the partial sums)
plus the candidate rows a block may send (at most ``k`` rows) and a fixed
4 KiB per block for counts, containers and constants; sampled rows are added
for the phases that sample. The keys of raw data blocks never appear there.
The benchmark ``benchmarks/bench_scale_out.py`` measures the same on larger data.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import zarr

import daskmeans

distributed = pytest.importorskip("distributed")

N_BLOCKS, ROWS, D, K = 32, 2_000, 8, 8


def _clear(dask_worker) -> None:
    dask_worker.transfer_incoming_log.clear()


def _log(dask_worker) -> list:
    return [dict(e["keys"]) for e in dask_worker.transfer_incoming_log]


def _add_pass_counter(dask_scheduler) -> None:
    from distributed.diagnostics.plugin import SchedulerPlugin

    class Passes(SchedulerPlugin):
        """Names of the passes (``<name>-partial-<token>``) whose tasks ran."""

        name = "daskmeans-passes"

        def __init__(self) -> None:
            self.names: set = set()
            self.raw: list = []

        def transition(self, key, start, finish, *args, **kwargs) -> None:
            name = str(key[0] if isinstance(key, tuple) else key)
            if finish == "memory" and "-partial-" in name:
                self.names.add(name)
            if finish == "memory" and name.startswith("zarr-"):
                self.raw.append(key)

    if "daskmeans-passes" not in dask_scheduler.plugins:
        dask_scheduler.add_plugin(Passes(), name="daskmeans-passes")


def _take_passes(dask_scheduler) -> tuple[int, list]:
    """Passes made and raw block keys held in worker memory since the last call."""
    plugin = dask_scheduler.plugins["daskmeans-passes"]
    out = len(plugin.names), plugin.raw
    plugin.names, plugin.raw = set(), []
    return out


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    base = tmp_path_factory.mktemp("scale")
    rng = np.random.default_rng(0)
    centres = rng.normal(scale=8.0, size=(K, D))
    n = N_BLOCKS * ROWS
    X = (centres[rng.integers(0, K, n)] + rng.standard_normal((n, D))).astype(np.float32)
    for name, data in (("x", X), ("nan", X.copy())):
        if name == "nan":
            data[rng.choice(n, 50, replace=False), 2] = np.nan
        z = zarr.create_array(str(base / f"{name}.zarr"), shape=data.shape,
                              chunks=(ROWS, D), dtype="f4")
        z[:] = data
    with distributed.LocalCluster(n_workers=4, threads_per_worker=1, processes=True,
                                  memory_limit="1GiB", dashboard_address=None) as cl, \
            distributed.Client(cl) as client:
        client.run_on_scheduler(_add_pass_counter)
        yield client, base


def _measure(client, run) -> tuple[int, list, int]:
    """Run ``run()``; return (bytes moved, raw block keys moved, passes made).

    A raw block held in a worker's memory as a task's result (rather than read
    and reduced by one task) counts as moved: whether the scheduler ships it
    depends on timing, so its existence is what is asserted against.
    """
    client.run(_clear)
    client.run_on_scheduler(_take_passes)
    run()
    total, raw = 0, []
    for entries in client.run(_log).values():
        for keys in entries:
            for key, nbytes in keys.items():
                total += nbytes
                name = key[0] if isinstance(key, tuple) else str(key)
                if str(name).startswith("zarr-"):
                    raw.append(key)
    passes, held = client.run_on_scheduler(_take_passes)
    return total, raw + held, passes


def _phases(base):
    path, nan_path = str(base / "x.zarr"), str(base / "nan.zarr")

    def X():
        return daskmeans.open_zarr(path, chunks="stored")

    c0 = np.random.default_rng(1).normal(size=(K, D)).astype(np.float32)
    km = daskmeans.KMeans
    sample = max(10_000, 50 * K)  # rows of the k-means++ and select_k samples
    return {
        "lloyd-given": (lambda: km(K, init=c0, n_init=1, max_iter=5, tol=0.0).fit(X()), 0),
        "tol-variance": (lambda: km(K, init=c0, n_init=1, max_iter=1).fit(X()), 0),
        "k-means++": (lambda: km(K, init="k-means++", max_iter=1, random_state=0).fit(X()),
                      sample),
        "random": (lambda: km(K, init="random", n_init=3, max_iter=1,
                              random_state=0).fit(X()), 3 * K),
        "k-means||": (lambda: km(K, max_iter=1, random_state=0).fit(X()), 0),
        "standardize": (lambda: km(K, standardize=True, max_iter=1,
                                   random_state=0).fit(X()), 0),
        "nan_policy": (lambda: km(K, nan_policy="omit", max_iter=1, random_state=0).fit(
            daskmeans.open_zarr(nan_path, chunks="stored")), 0),
        "cosine": (lambda: km(K, metric="cosine", max_iter=1, random_state=0).fit(X()), 0),
        "checkpoint": (lambda: km(K, max_iter=2, random_state=0).fit(
            X(), checkpoint=str(base / "ckpt")), 0),
        "minibatch": (lambda: daskmeans.MiniBatchKMeans(K, max_iter=1, random_state=0).fit(
            X()), 0),
        "predict-labels": (lambda: daskmeans.write_labels(
            km(K, init=c0, n_init=1, max_iter=1).fit(X()[:4000].compute()),
            path, str(base / "labels.zarr"), overwrite=True), 0),
        "select_k": (lambda: daskmeans.select_k(X(), range(2, 6), random_state=0, n_refs=2,
                                                ref_size=5_000, max_iter=3), sample),
    }


PHASES = ["lloyd-given", "tol-variance", "k-means++", "random", "k-means||", "standardize",
          "nan_policy", "cosine", "checkpoint", "minibatch", "predict-labels", "select_k"]


@pytest.mark.parametrize("phase", PHASES)
def test_only_small_results_travel(cluster, phase):
    client, base = cluster
    run, sampled_rows = _phases(base)[phase]
    moved, raw, passes = _measure(client, run)
    assert not raw, f"{phase}: raw data blocks moved between workers: {raw[:3]}"
    per_block = K * D * 8 + K * (D * 8 + 8) + 4096
    # sampled rows climb the combine tree (two levels for 32 blocks), in float64 at most
    bound = max(1, passes) * N_BLOCKS * per_block + 2 * sampled_rows * D * 8
    assert moved <= bound, (phase, moved, bound, passes)
    data_bytes = N_BLOCKS * ROWS * D * 4
    assert moved < max(1, passes) * data_bytes / 8


def test_cli_phases_move_no_blocks(cluster):
    """``daskmeans fit``, ``predict``, ``scan-k`` and ``update`` with ``--scheduler``."""
    from daskmeans.cli import main

    client, base = cluster
    address = client.scheduler.address
    path = str(base / "x.zarr")
    out = str(base / "cli")
    runs = {
        "fit": ["fit", path, "--k", str(K), "--out", os.path.join(out, "fit"), "--max-iter",
                "2", "--seed", "0"],
        "predict": ["predict", os.path.join(out, "fit", "model.json"), path, "--out",
                    os.path.join(out, "labels.zarr")],
        "scan-k": ["scan-k", path, "--k-min", "2", "--k-max", "3", "--n-refs", "1",
                   "--max-iter", "2", "--out", os.path.join(out, "scan")],
        "fit-minibatch": ["fit", path, "--k", str(K), "--out", os.path.join(out, "mb"),
                          "--algorithm", "minibatch", "--max-iter", "1", "--seed", "0"],
        "update": ["update", os.path.join(out, "mb", "model.json"), path, "--out",
                   os.path.join(out, "upd")],
    }
    for what, argv in runs.items():
        rc = None

        def run(argv=argv):
            nonlocal rc
            rc = main([*argv, "--scheduler", address])

        moved, raw, passes = _measure(client, run)
        assert rc in (0, None), what
        assert not raw, f"daskmeans {what}: raw data blocks moved: {raw[:3]}"
        n_blocks = daskmeans.open_zarr(path).numblocks[0]
        bound = max(1, passes) * n_blocks * (K * D * 8 + K * (D * 8 + 8) + 4096) \
            + 2 * 10_000 * D * 8
        assert moved <= bound, (what, moved, bound)
