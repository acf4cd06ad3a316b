"""compute_passes limits BLAS to one thread per task under the threaded scheduler only."""

import threading

import dask
import dask.array as da
import numpy as np
import pytest

from daskmeans.engine import _graph

threadpoolctl = pytest.importorskip("threadpoolctl")


def _blas_threads():
    info = [p["num_threads"] for p in threadpoolctl.threadpool_info() if p["user_api"] == "blas"]
    return max(info) if info else None


def _pass(n_blocks, seen):
    X = da.from_array(np.ones((10 * n_blocks, 2)), chunks=(10, 2))

    def chunk(block, w, index):
        seen.append(_blas_threads())
        return block.sum()

    return _graph.block_reduce(X, None, chunk, sum, name="t")


def test_limit_is_one_thread_under_threads_and_restored():
    if _blas_threads() is None:
        pytest.skip("no BLAS found by threadpoolctl")
    before = _blas_threads()
    seen: list = []
    with dask.config.set(scheduler="threads", num_workers=2):
        (total,) = _graph.compute_passes(_pass(6, seen))
    assert total == 120.0
    assert set(seen) == {1}
    assert _blas_threads() == before


def test_no_limit_for_sync_scheduler_or_single_block():
    if _blas_threads() is None:
        pytest.skip("no BLAS found by threadpoolctl")
    before = _blas_threads()
    seen: list = []
    with dask.config.set(scheduler="sync"):
        _graph.compute_passes(_pass(6, seen))
    with dask.config.set(scheduler="threads", num_workers=2):
        _graph.compute_passes(_pass(1, seen))
    assert set(seen) == {before}


def test_concurrent_computes_restore_the_original_limit():
    if _blas_threads() is None:
        pytest.skip("no BLAS found by threadpoolctl")
    before = _blas_threads()
    seen: list = []
    g = _pass(4, seen)

    def work():
        with dask.config.set(scheduler="threads", num_workers=2):
            for _ in range(10):
                _graph.compute_passes(g)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(seen) == 4 * 10 * 4
    assert _blas_threads() == before


def test_limit_covers_the_blas_that_compiled_kernels_call():
    """The compiled whole-block sweep calls SciPy's BLAS through numba: that
    library must be limited too, or every Dask thread starts BLAS threads."""
    from daskmeans.kernels import _plan

    if not _plan.numba_installed():
        pytest.skip("numba not installed")
    # a compiled plan imports the loops, and with them SciPy's BLAS
    from daskmeans.kernels import _numba_loops as _kernels_numba

    if not _kernels_numba.BLAS_AVAILABLE:
        pytest.skip("compiled whole-block sweep not available (numba or SciPy missing)")
    libs = [p["filepath"] for p in threadpoolctl.threadpool_info() if p["user_api"] == "blas"]
    seen: list = []

    def chunk(block, w, index):
        seen.append({p["filepath"]: p["num_threads"] for p in threadpoolctl.threadpool_info()
                     if p["user_api"] == "blas"})
        return block.sum()

    X = da.from_array(np.ones((60, 2)), chunks=(10, 2))
    with dask.config.set(scheduler="threads", num_workers=2):
        _graph.compute_passes(_graph.block_reduce(X, None, chunk, sum, name="t"))
    assert seen and all(set(s.values()) == {1} and set(s) == set(libs) for s in seen)


def test_pass_runner_limits_blas_like_compute_passes():
    """The graph-once path of PassRunner keeps the one-thread limit, then restores it."""
    if _blas_threads() is None:
        pytest.skip("no BLAS found by threadpoolctl")
    before = _blas_threads()
    seen: list = []
    X = da.from_array(np.ones((60, 2)), chunks=(10, 2))

    def chunk(block, w, index, *, scale):
        seen.append(_blas_threads())
        return block.sum() * scale

    with dask.config.set(scheduler="threads", num_workers=2):
        run = _graph.PassRunner(X, None, chunk, sum, name="t")
        assert [run({"scale": s}) for s in (1.0, 2.0)] == [120.0, 240.0]
    assert set(seen) == {1}
    assert _blas_threads() == before


def test_results_for_numpy_input_are_computed_with_blas_limited(monkeypatch):
    """labels_ and predict for NumPy input run their blocks under the same limit."""
    if _blas_threads() is None:
        pytest.skip("no BLAS found by threadpoolctl")
    from daskmeans import KMeans
    from daskmeans import _base as estimator

    before = _blas_threads()
    seen: list = []
    real = estimator._predict_block  # the per-block task of labels_ and predict
    def spy(X, *args, **kwargs):
        if len(X):  # not dask's call on an empty block to learn the output's type
            seen.append(_blas_threads())
        return real(X, *args, **kwargs)

    monkeypatch.setattr(estimator, "_predict_block", spy)
    X = np.random.default_rng(0).normal(size=(3000, 3))
    with dask.config.set(scheduler="threads", num_workers=2):
        km = KMeans(3, random_state=0, max_iter=5).fit(X)
        labels = km.predict(X)
    np.testing.assert_array_equal(labels, km.labels_)
    assert seen and set(seen) == {1}
    assert _blas_threads() == before
