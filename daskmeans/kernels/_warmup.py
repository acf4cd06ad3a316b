"""Compile every variant of the compiled kernels into numba's cache.

numba compiles a kernel on its first call, for the types it meets, and keeps
the machine code in its cache (see :func:`cache_location`); a later process
loads it instead of compiling. A fit only compiles what it uses, but in a
fresh container, or a batch job whose cache is not kept, every first fit
pays that compile. :func:`warm_up` (``daskmeans warm-up`` on the command
line) runs every compiled path once on tiny data, for float32 and float64,
so that an image or a job's set-up step can fill the cache ahead of time
(the command also runs small fits, which compile the estimators' own uses).

Where the cache lives is numba's rule: ``NUMBA_CACHE_DIR`` when it is set
(it must be set before numba is imported, and the same for the warm-up and
the jobs that use it); otherwise a ``__pycache__`` folder next to the
installed package when that is writable, else the user's cache folder
(``~/.cache/numba`` on Linux). A cache entry is for one machine type (CPU
name and features, as numba's ``NUMBA_CPU_NAME`` sets them) and one numba
version: warm up on the kind of machine that will run the jobs.
"""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np

from ._plan import KernelPlan, numba_installed

__all__ = ["cache_location", "warm_up"]


def cache_location() -> str | None:
    """The folder numba caches the kernels in, or None without numba.

    Imports numba.
    """
    if not numba_installed():
        return None
    from . import _numba_loops

    cache = getattr(_numba_loops.accumulate_rows, "_cache", None)
    path = getattr(cache, "_cache_path", None)  # numba's FunctionCache
    return None if path is None else str(path)


def _sweeps(plan: KernelPlan, X: np.ndarray, w: np.ndarray) -> None:
    """Every sweep of the kernel API under ``plan`` (groups, far rows, weights)."""
    from . import _api

    rng = np.random.default_rng(0)
    for k in (3, 20, 40, 70):  # fused tiles / row-major / screened float64 / transposed
        C = np.ascontiguousarray(X[rng.choice(len(X), k, replace=False)])
        for weights in (None, w):
            _api.lloyd_partial(X, C, weights, n_far=2, with_moments=True, plan=plan)
        _api.lloyd_partial(X, C, bounds=[0, k // 2, k], n_far=2, plan=plan)
        _api.nearest(X, C, [0, k // 2, k], plan=plan)
        _api.assign(X, C, return_distances=True, plan=plan)
        _api.assign(X, C, plan=plan)
        # two-level search (HierarchicalKMeans): two cells, both probed
        probes = np.stack([np.arange(len(X)) % 2, 1 - np.arange(len(X)) % 2], axis=1)
        _api.probe_cells(X, probes, C, np.array([0, k // 2, k]), plan=plan)
        _api.top_centers(X, C, 2, plan=plan)  # the cells a row probes
        labels = np.arange(len(X)) % k
        for weights in (None, w):  # the sums of the two-level passes' labels
            _api.accumulate(X, labels, weights, k, plan=plan)


def _other_loops(plan: KernelPlan, X: np.ndarray, w: np.ndarray) -> None:
    """The k-means++ trials, pruned Lloyd's loops (a first pass and one with
    bounds) and the sparse loop."""
    from . import _api, _bounds, _sparse

    n = X.shape[0]
    x_sq = _api.sq_norms(X).astype(np.float64)
    picks = np.array([0, 1], dtype=np.intp)
    XT = _api.seeding_operand(X, plan)  # the column tiles' trials, where the plan has them
    for weights in (np.empty(0), w):  # unit weights are passed as length 0
        for operand in (None, XT) if XT is not None else (None,):
            _api.seeding_step(X, x_sq, picks, np.full(n, np.inf), weights, np.empty(n), operand)

    rng = np.random.default_rng(1)
    # the BLAS products and the column tiles (with AVX-512, float32 from 65 centres)
    for k in (3, 40, 70):
        C = np.ascontiguousarray(X[rng.choice(len(X), k, replace=False)])
        C2 = C + C.dtype.type(1e-3)
        for weights in (None, w):
            _, state = _bounds.pruned_block(X, weights, C, None, None, plan=plan)
            _bounds.pruned_block(X, weights, C2, state, _bounds.drift(C, C2), plan=plan)
    # rows at a near-tie are settled exactly: compiled on the data that has some
    labels = np.zeros(n, dtype=np.intp)
    _bounds._nb().own_dist(X, np.ascontiguousarray(X[:2]), labels, np.empty(n))
    try:
        import scipy.sparse
    except ImportError:  # pragma: no cover - SciPy comes with the "fast" extra
        return
    csr = scipy.sparse.csr_matrix(X)
    C = np.ascontiguousarray(X[:4])
    for accumulate in (True, False):
        _sparse._sweep(csr, C, np.array([0, 2, 4]), w, accumulate)


def warm_up(dtypes=("float32", "float64"), *, verbose: bool = False) -> dict:
    """Compile every variant of the compiled kernels into numba's cache.

    Parameters
    ----------
    dtypes : sequence of str
        Data types to compile for.
    verbose : bool
        Print every step and its time.

    Returns
    -------
    dict
        ``cache`` (the folder, or None), ``target`` (the CPU numba compiles
        for), ``steps`` (name -> seconds) and ``seconds`` in all; ``cache`` is
        None and ``steps`` empty when numba is not installed.

    Examples
    --------
    >>> from daskmeans.kernels import warm_up
    >>> report = warm_up(["float32"])  # doctest: +SKIP
    >>> sorted(report)  # doctest: +SKIP
    ['cache', 'seconds', 'steps', 'target']
    """
    t_all = time.perf_counter()
    out: dict = {"cache": None, "target": None, "steps": {}, "seconds": 0.0}
    if not numba_installed():
        return out
    full = KernelPlan.numba()
    plans = {
        "numba": full,
        "numba-plain": KernelPlan.numba(plain=True),
        "numba-subblock": KernelPlan.numba(plain=True, whole_block=False),
    }
    if full.quantized:  # the float32 column tiles also run where the int16 screen does not
        plans["numba-float-columns"] = replace(full, quantized=False)
    out["cache"] = cache_location()
    out["target"] = full.target
    for name in dtypes:
        dtype = np.dtype(name)
        X = np.random.default_rng(0).normal(size=(300, 5)).astype(dtype)
        w = np.random.default_rng(1).uniform(0.5, 2, size=len(X))
        for mode, plan in plans.items():
            t = time.perf_counter()
            _sweeps(replace(plan, step=128), X, w)
            if mode == "numba":
                _other_loops(plan, X, w)
            out["steps"][f"{mode} {dtype.name}"] = time.perf_counter() - t
            if verbose:
                print(f"{mode} {dtype.name}: {out['steps'][f'{mode} {dtype.name}']:.1f} s",
                      flush=True)
    out["seconds"] = time.perf_counter() - t_all
    return out
