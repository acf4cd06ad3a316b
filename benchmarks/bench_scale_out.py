"""What travels between workers, phase by phase, on a distributed cluster.

Starts a ``distributed.LocalCluster`` of single-thread worker processes over
a Zarr array written to a temporary directory, runs every phase of a fit
(Lloyd with given centres, predict and labels, MiniBatchKMeans, the three
initialisations, ``select_k``, the command line's ``fit``, ``predict``,
``scan-k`` and ``update``, a checkpointed fit, the variance for ``tol``,
``standardize``, ``nan_policy`` and ``metric="cosine"``) and prints, per
phase, the bytes in the workers' incoming transfer logs
(``Worker.transfer_incoming_log``), how many of them were raw data blocks
(keys named like the blocks of :func:`daskmeans.open_zarr`), the bound
``blocks x k x d x 8`` bytes, the tasks the scheduler ran and its own CPU
time.

``--sweep`` instead measures one Lloyd pass and one read pass at several
worker counts and stored chunk sizes: tasks, scheduler CPU time per task,
bytes moved and wall time against the read pass (the figures behind
``docs/scaling.md``).

Examples::

    python benchmarks/bench_scale_out.py --rows 400000 --d 32 --chunk-rows 10000 --k 16
    python benchmarks/bench_scale_out.py --sweep --workers 8 16 --chunk-rows 1000 10000 100000
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time

from _blas_env import rerun_without_blas_overrides, unset_note

if __name__ == "__main__":
    rerun_without_blas_overrides()

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

PHASES = (
    "lloyd-given", "tol-variance", "predict-labels", "minibatch", "k-means++", "random",
    "k-means||", "select_k", "standardize", "nan_policy", "cosine", "checkpoint",
    "cli-fit", "cli-predict", "cli-scan-k", "cli-update",
)


# --------------------------------------------------------------------------- #
# measuring
# --------------------------------------------------------------------------- #
def _clear_log(dask_worker) -> None:
    dask_worker.transfer_incoming_log.clear()


def _read_log(dask_worker) -> list:
    return [dict(e["keys"]) for e in dask_worker.transfer_incoming_log]


def _scheduler_cpu(dask_scheduler) -> float:
    """CPU seconds of the scheduler's process so far."""
    import psutil

    t = psutil.Process().cpu_times()
    return t.user + t.system


class Meter:
    """Incoming transfers of every worker and the scheduler's CPU time, per phase.

    Parameters
    ----------
    client : distributed.Client
    raw_prefixes : tuple of str
        Key name prefixes of raw data blocks (``"zarr-"``).
    """

    def __init__(self, client, raw_prefixes=("zarr-",)) -> None:
        self.client = client
        self.raw_prefixes = raw_prefixes

    def start(self) -> None:
        self.client.run(_clear_log)
        self._tasks0 = self._n_tasks()
        self._cpu0 = self.client.run_on_scheduler(_scheduler_cpu)
        self._t0 = time.perf_counter()

    def _n_tasks(self) -> int:
        return int(self.client.run_on_scheduler(_finished_tasks))

    def stop(self) -> dict:
        wall = time.perf_counter() - self._t0
        cpu = self.client.run_on_scheduler(_scheduler_cpu) - self._cpu0
        tasks = self._n_tasks() - self._tasks0
        logs = self.client.run(_read_log)
        total = raw = 0
        raw_keys = []
        for entries in logs.values():
            for keys in entries:
                for key, nbytes in keys.items():
                    total += nbytes
                    name = key[0] if isinstance(key, tuple) else str(key)
                    if str(name).startswith(self.raw_prefixes):
                        raw += nbytes
                        raw_keys.append(key)
        return {"bytes": total, "raw_bytes": raw, "raw_keys": raw_keys, "tasks": tasks,
                "scheduler_cpu": cpu, "wall": wall}


def _finished_tasks(dask_scheduler) -> int:
    """Tasks that reached memory on this scheduler so far (a plugin counts them)."""
    plugin = dask_scheduler.plugins.get("daskmeans-task-counter")
    return plugin.count if plugin is not None else 0


def _task_counter():
    """A scheduler plugin that counts tasks that finished (reached memory or erred)."""
    from distributed.diagnostics.plugin import SchedulerPlugin

    class TaskCounter(SchedulerPlugin):
        name = "daskmeans-task-counter"

        def __init__(self) -> None:
            self.count = 0

        def transition(self, key, start, finish, *args, **kwargs) -> None:
            if start == "processing" and finish in ("memory", "erred"):
                self.count += 1

    return TaskCounter()

def install_counter(client) -> None:
    """Register the task counter on the scheduler (idempotent)."""

    def _add(dask_scheduler):
        if "daskmeans-task-counter" not in dask_scheduler.plugins:
            dask_scheduler.add_plugin(_task_counter(), name="daskmeans-task-counter")

    client.run_on_scheduler(_add)


# --------------------------------------------------------------------------- #
# data and phases
# --------------------------------------------------------------------------- #
def write_blobs(path: str, n: int, d: int, k: int, chunk_rows: int, seed: int = 0,
                nan_rows: int = 0) -> None:
    """A float32 Zarr array of ``k`` Gaussian blobs (``nan_rows`` rows of NaN)."""
    import zarr

    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=10.0, size=(k, d))
    z = zarr.create_array(path, shape=(n, d), chunks=(chunk_rows, d), dtype="f4",
                          overwrite=True)
    step = max(chunk_rows, (1 << 24) // (4 * d) // chunk_rows * chunk_rows)
    for s in range(0, n, step):
        e = min(n, s + step)
        lab = rng.integers(0, k, e - s)
        block = (centres[lab] + rng.standard_normal((e - s, d))).astype(np.float32)
        z[s:e] = block
    if nan_rows:
        z[np.arange(nan_rows) * (n // nan_rows)] = np.nan


def run_phase(name: str, *, path: str, nan_path: str, out: str, k: int, address: str,
              seed: int = 0, chunks=None) -> None:
    """Run one phase of a fit on the active client (``chunks`` for :func:`open_zarr`)."""
    import daskmeans

    X = daskmeans.open_zarr(path, chunks=chunks)
    d = X.shape[1]
    c0 = np.asarray(X[:k].compute(), dtype=np.float32) if name == "lloyd-given" else None
    km = daskmeans.KMeans
    if name == "lloyd-given":
        km(k, init=c0, n_init=1, max_iter=5, tol=0.0).fit(X)
    elif name == "tol-variance":
        km(k, init=np.random.default_rng(seed).normal(size=(k, d)), n_init=1, max_iter=1,
           tol=1e-4).fit(X)
    elif name == "predict-labels":
        model = daskmeans.KMeans.load(os.path.join(out, "model.json"))
        daskmeans.write_labels(model, path, os.path.join(out, "labels.zarr"), overwrite=True)
    elif name == "minibatch":
        daskmeans.MiniBatchKMeans(k, max_iter=1, random_state=seed).fit(X)
    elif name in ("k-means++", "random", "k-means||"):
        km(k, init=name, n_init=1, max_iter=1, random_state=seed).fit(X)
    elif name == "select_k":
        daskmeans.select_k(X, range(2, 6), random_state=seed, n_refs=2, ref_size=10_000,
                           max_iter=3)
    elif name == "standardize":
        km(k, standardize=True, max_iter=1, random_state=seed).fit(X)
    elif name == "nan_policy":
        km(k, nan_policy="omit", max_iter=1, random_state=seed).fit(
            daskmeans.open_zarr(nan_path, chunks=chunks))
    elif name == "cosine":
        km(k, metric="cosine", max_iter=1, random_state=seed).fit(X)
    elif name == "checkpoint":
        km(k, max_iter=2, random_state=seed).fit(X, checkpoint=tempfile.mkdtemp(dir=out))
    elif name.startswith("cli-"):
        from daskmeans.cli import main

        sched = ["--scheduler", address]
        fit_dir = os.path.join(out, "cli-fit")
        mb_dir = os.path.join(out, "cli-mb")
        if name == "cli-fit":
            argv = ["fit", path, "--k", str(k), "--out", fit_dir, "--max-iter", "2",
                    "--seed", str(seed), *sched]
        elif name == "cli-predict":
            if not os.path.exists(os.path.join(fit_dir, "model.json")):
                run_phase("cli-fit", path=path, nan_path=nan_path, out=out, k=k,
                          address=address, seed=seed)
            argv = ["predict", os.path.join(fit_dir, "model.json"), path, "--out",
                    os.path.join(out, "cli-labels.zarr"), *sched]
        elif name == "cli-scan-k":
            argv = ["scan-k", path, "--k-min", "2", "--k-max", "4", "--n-refs", "2",
                    "--max-iter", "3", "--out", os.path.join(out, "cli-scan"), *sched]
        else:  # cli-update needs a mini-batch model
            if not os.path.exists(os.path.join(mb_dir, "model.json")):
                main(["fit", path, "--k", str(k), "--out", mb_dir, "--algorithm",
                      "minibatch", "--max-iter", "1", "--seed", str(seed), *sched])
            argv = ["update", os.path.join(mb_dir, "model.json"), path, "--out",
                    os.path.join(out, "cli-update"), *sched]
        rc = main(argv)
        if rc not in (0, None):
            raise RuntimeError(f"daskmeans {' '.join(argv)} returned {rc}")
    else:
        raise ValueError(f"unknown phase {name!r}")


def measure_phases(client, phases, **kwargs) -> dict:
    """``{phase: Meter result}`` for every phase, run one after the other."""
    install_counter(client)
    meter = Meter(client)
    res = {}
    for name in phases:
        if name in ("predict-labels", "cli-predict", "cli-update"):
            # their models are made outside the measurement
            _prepare_cli(name, client=client, **kwargs)
        meter.start()
        run_phase(name, **kwargs)
        res[name] = meter.stop()
    return res


def _prepare_cli(name, *, client, path, out, k, address, seed=0, chunks=None, **_):
    if name == "predict-labels":  # a model to predict with, fitted on a few rows
        import daskmeans

        rows = np.asarray(daskmeans.open_zarr(path)[: 50 * k].compute())
        model = daskmeans.KMeans(k, n_init=1, max_iter=2, random_state=seed).fit(rows)
        model.save(os.path.join(out, "model.json"))
        return
    from daskmeans.cli import main

    sched = ["--scheduler", address]
    if name == "cli-predict" and not os.path.exists(os.path.join(out, "cli-fit", "model.json")):
        main(["fit", path, "--k", str(k), "--out", os.path.join(out, "cli-fit"),
              "--max-iter", "2", "--seed", str(seed), *sched])
    if name == "cli-update" and not os.path.exists(os.path.join(out, "cli-mb", "model.json")):
        main(["fit", path, "--k", str(k), "--out", os.path.join(out, "cli-mb"),
              "--algorithm", "minibatch", "--max-iter", "1", "--seed", str(seed), *sched])


# --------------------------------------------------------------------------- #
# sweep: tasks and scheduler time per pass
# --------------------------------------------------------------------------- #
def sweep_case(client, path: str, k: int, repeat: int = 3) -> dict:
    """One pass of each kind, best of ``repeat``: tasks, scheduler CPU, bytes, wall.

    ``read``: ``X.sum(axis=0)`` (dask's own reduction, a task per block);
    ``lloyd-1``: a Lloyd pass with one task per block
    (``daskmeans.blocks-per-task=1``); ``lloyd``: the default grouping.
    """
    import dask

    import daskmeans
    from daskmeans.engine._graph import compute_passes
    from daskmeans.engine._lloyd import partial_pass

    X = daskmeans.open_zarr(path, chunks="stored")
    C = np.asarray(X[:k].compute(), dtype=X.dtype)
    meter = Meter(client)
    install_counter(client)
    out = {"blocks": X.numblocks[0]}
    for what in ("read", "lloyd-1", "lloyd"):
        best = None
        for _ in range(repeat):
            forced = 1 if what == "lloyd-1" else None
            with dask.config.set({"daskmeans.blocks-per-task": forced}):
                meter.start()
                if what == "read":
                    dask.compute(X.sum(axis=0))
                else:
                    compute_passes(partial_pass(X, None, [C], name="kmeans"))
                r = meter.stop()
            if best is None or r["wall"] < best["wall"]:
                best = r
        out[what] = best
    return out


@contextlib.contextmanager
def separate_scheduler(n_workers: int, memory_limit: str, base: str):
    """A ``dask scheduler`` process and ``n_workers`` single-thread workers, started
    as by hand (so the scheduler's CPU time is its own, not the client's)."""
    import subprocess

    from distributed import Client

    sfile = os.path.join(base, f"scheduler-{os.getpid()}-{n_workers}.json")
    if os.path.exists(sfile):
        os.remove(sfile)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."),
         os.environ.get("PYTHONPATH", "")]))
    sched = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler",
                              "--scheduler-file", sfile, "--no-dashboard", "--port", "0"],
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers = None
    try:
        while not os.path.exists(sfile):
            time.sleep(0.1)
        workers = subprocess.Popen(
            [sys.executable, "-m", "distributed.cli.dask_worker", "--scheduler-file", sfile,
             "--nworkers", str(n_workers), "--nthreads", "1", "--memory-limit", memory_limit,
             "--no-dashboard"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        with Client(scheduler_file=sfile) as client:
            client.wait_for_workers(n_workers, timeout=300)
            yield client
    finally:
        for proc in (workers, sched):
            if proc is not None:
                proc.terminate()
                proc.wait(timeout=60)


# --------------------------------------------------------------------------- #
# report
# --------------------------------------------------------------------------- #
def machine() -> str:
    import platform

    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            info = f.read()
        cpu = next(line.split(":", 1)[1].strip() for line in info.splitlines()
                   if line.startswith("model name"))
        flags = next(line.split(":", 1)[1].split() for line in info.splitlines()
                     if line.startswith("flags"))
        ext = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "SSE"
    except (OSError, StopIteration):
        ext = "?"
    try:
        from threadpoolctl import threadpool_info

        blas = ", ".join(f"{i.get('internal_api')} {i.get('version')} "
                         f"{i.get('architecture')}" for i in threadpool_info()
                         if i.get("user_api") == "blas")
    except ImportError:
        blas = "?"
    return f"{cpu}, {ext}, {blas} (BLAS overrides unset: {unset_note()})"


def _mb(b: float) -> str:
    return f"{b / 1e6:.3f}"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=400_000)
    p.add_argument("--d", type=int, default=32)
    p.add_argument("--k", type=int, default=16)
    p.add_argument("--chunk-rows", type=int, nargs="+", default=[10_000])
    p.add_argument("--workers", type=int, nargs="+", default=[4])
    p.add_argument("--memory-limit", default="1GiB")
    p.add_argument("--phases", nargs="+", default=list(PHASES))
    p.add_argument("--sweep", action="store_true")
    p.add_argument("--dir", default=None, help="where to write the data (a temp dir)")
    p.add_argument("--stored", action="store_true",
                   help="one block per stored chunk (open_zarr chunks='stored')")
    args = p.parse_args(argv)

    import dask
    from distributed import Client, LocalCluster

    print(f"# {machine()}")
    print(f"# load average {os.getloadavg()}")
    base = args.dir or tempfile.mkdtemp(prefix="daskmeans-scale-")
    dask.config.set({"distributed.worker.daemon": False})
    if args.sweep:
        print("| workers | stored chunk rows | blocks | pass | tasks | scheduler CPU s | "
              "ms / task | scheduler share | MB moved | wall s | wall / read |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for cr in args.chunk_rows:
            path = os.path.join(base, f"x-{cr}.zarr")
            write_blobs(path, args.rows, args.d, args.k, cr)
            for nw in args.workers:
                with separate_scheduler(nw, args.memory_limit, base) as client:
                    r = sweep_case(client, path, args.k)
                for what in ("read", "lloyd-1", "lloyd"):
                    m = r[what]
                    per = 1e3 * m["scheduler_cpu"] / max(1, m["tasks"])
                    print(f"| {nw} | {cr} | {r['blocks']} | {what} | {m['tasks']} | "
                          f"{m['scheduler_cpu']:.3f} | {per:.2f} | "
                          f"{100 * m['scheduler_cpu'] / m['wall']:.0f} % | {_mb(m['bytes'])} | "
                          f"{m['wall']:.3f} | {m['wall'] / r['read']['wall']:.2f} |")
        return
    cr = args.chunk_rows[0]
    path = os.path.join(base, "x.zarr")
    nan_path = os.path.join(base, "x-nan.zarr")
    write_blobs(path, args.rows, args.d, args.k, cr)
    write_blobs(nan_path, args.rows, args.d, args.k, cr, nan_rows=50)
    out = os.path.join(base, "out")
    os.makedirs(out, exist_ok=True)
    nw = args.workers[0]
    with LocalCluster(n_workers=nw, threads_per_worker=1, processes=True,
                      memory_limit=args.memory_limit, dashboard_address=None) as c, \
            Client(c) as client:
        import daskmeans

        chunks = "stored" if args.stored else None
        X = daskmeans.open_zarr(path, chunks=chunks)
        blocks = X.numblocks[0]
        bound = blocks * args.k * args.d * 8
        print(f"# {args.rows} x {args.d} float32 ({X.nbytes / 1e6:.0f} MB), stored chunks of "
              f"{cr} rows, {blocks} blocks of {X.chunks[0][0]} rows, k = {args.k}, "
              f"{nw} single-thread workers; bound blocks x k x d x 8 = {_mb(bound)} MB")
        res = measure_phases(client, args.phases, path=path, nan_path=nan_path, out=out,
                             k=args.k, address=c.scheduler_address, chunks=chunks)
    print("| phase | MB moved | raw data blocks MB | within bound | tasks | "
          "scheduler CPU s | wall s |")
    print("|---|---|---|---|---|---|---|")
    for name, r in res.items():
        print(f"| {name} | {_mb(r['bytes'])} | {_mb(r['raw_bytes'])} | "
              f"{'yes' if r['bytes'] <= bound and not r['raw_keys'] else 'NO'} | {r['tasks']} | "
              f"{r['scheduler_cpu']:.2f} | {r['wall']:.2f} |")


if __name__ == "__main__":
    main()
