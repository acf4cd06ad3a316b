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
