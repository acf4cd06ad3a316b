"""Shared fixtures and helpers for the test suite."""

from __future__ import annotations

import dask
import numpy as np
import pytest


@pytest.fixture(autouse=True)
def _threaded_default():
    """Every test starts on dask's threaded scheduler unless it sets up a client."""
    with dask.config.set(scheduler="threads"):
        yield


@pytest.fixture
def blobs():
    """Well separated Gaussian blobs: (X float64, true labels, true centres)."""
    rng = np.random.default_rng(42)
    k, d, n = 5, 3, 3000
    centers = rng.uniform(-10, 10, size=(k, d))
    y = rng.integers(0, k, size=n)
    X = centers[y] + rng.normal(scale=0.7, size=(n, d))
    return X, y, centers


@pytest.fixture
def big_blobs():
    """12 overlapping blobs in 4-D, 24,000 rows."""
    rng = np.random.default_rng(7)
    k, d, n = 12, 4, 24_000
    centers = rng.normal(size=(k, d)) * 3
    y = rng.integers(0, k, size=n)
    X = centers[y] + rng.normal(size=(n, d)) * rng.uniform(0.5, 1.5, size=k)[y, None]
    return X


@pytest.fixture
def deferred_fit():
    """``fit(model, x, rows) -> (model, labels, reads)``: fit ``model`` on ``x``
    (blocks of ``rows`` rows, reads counted) inside
    :func:`daskmeans._base.deferred_final_pass`, check that the last pass was
    left undone, compute the labels and that pass together and complete the
    fit; ``reads`` is the blocks read by that compute."""
    from daskmeans._base import complete_final_pass, deferred_final_pass, pending_final_pass
    from daskmeans.engine._graph import compute_passes
    from daskmeans.testing import counting_dask

    def fit(model, x, rows):
        X, counter = counting_dask(x, rows)
        with deferred_final_pass(model):
            model.fit(X)
        pending = pending_final_pass(model)
        assert pending is not None and not hasattr(model, "inertia_")
        before = counter.reads
        labels, result = compute_passes(model.labels_, pending, optimize=False)
        complete_final_pass(model, result)
        assert pending_final_pass(model) is None
        return model, labels, counter.reads - before

    return fit
