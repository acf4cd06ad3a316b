"""The C kernels built at install (daskmeans.kernels._native) against NumPy and brute force."""

from dataclasses import replace

import numpy as np
import pytest

from daskmeans.kernels import KernelPlan, _native
from daskmeans.kernels import _api as kernels

NUMPY = KernelPlan.numpy()
NO_NATIVE = replace(NUMPY, native_max_k=0)


def test_the_library_was_built_and_loads():
    # the install builds it wherever a C compiler is found (as on every CI machine)
    assert _native.available()
    assert "C kernels up to 128 centres" in NUMPY.describe()


def _exact_scores(X, C):
    """``|c|^2 - 2 x . c`` of small integers: exact in float32 and float64."""
    return (C * C).sum(axis=1) - 2 * X.astype(np.float64) @ C.T.astype(np.float64)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("k", [1, 3, 4, 5, 32, 101])
@pytest.mark.parametrize("n", [1, 7, 9, 1003])
@pytest.mark.parametrize("weighted", [False, True])
def test_sweep_matches_brute_force(dtype, k, n, weighted):
    """First minimising centre (many ties), distances, weighted sums, counts and
    inertia; partial tiles of rows and padded groups of centres."""
    rng = np.random.default_rng(k * 100 + n)
    d = 6
    X = rng.integers(-3, 4, size=(n, d)).astype(dtype)
    C = rng.integers(-2, 3, size=(k, d)).astype(dtype)
    w = rng.uniform(0.5, 2.0, size=n) if weighted else None
    labels = np.full(n, -1, dtype=np.int64)
    dists = np.empty(n, dtype=dtype)
    sums, counts, inertia = np.zeros((k, d)), np.zeros(k), np.array([1.5])
    _native.sweep(X, C, w, labels=labels, dists=dists, sums=sums, counts=counts,
                  inertia=inertia)
    S = _exact_scores(X, C)
    expected = np.argmin(S, axis=1)  # the first on ties
    np.testing.assert_array_equal(labels, expected)
    exact = S.min(axis=1) + (X.astype(np.float64) ** 2).sum(axis=1)
    np.testing.assert_array_equal(dists, exact)
    ww = np.ones(n) if w is None else w
    ref_sums = np.zeros((k, d))
    np.add.at(ref_sums, expected, ww[:, None] * X)
    np.testing.assert_allclose(sums, ref_sums, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(counts, np.bincount(expected, ww, k), rtol=1e-12)
    np.testing.assert_allclose(inertia[0], 1.5 + (ww * exact).sum(), rtol=1e-12)


def test_nan_row_keeps_centre_zero_and_a_nan_distance():
    X = np.array([[0.0, 0.0], [np.nan, 1.0], [5.0, 5.0]], dtype=np.float32)
    C = np.array([[4.0, 4.0], [0.0, 0.0]], dtype=np.float32)
    labels = np.empty(3, dtype=np.int64)
    dists = np.empty(3, dtype=np.float32)
    _native.sweep(X, C, labels=labels, dists=dists)
    np.testing.assert_array_equal(labels, [1, 0, 0])
    assert np.isnan(dists[1]) and dists[0] == 0 and dists[2] == 2


def test_applies_only_within_its_limits():
    X = np.zeros((10, 64), dtype=np.float32)
    assert _native.applies(X, 32, 32) and _native.applies(X, 128, 128)
    assert not _native.applies(X, 33, 32)
    assert not _native.applies(np.zeros((10, 65), dtype=np.float32), 8, 32)
    assert not _native.applies(X.astype(np.int32), 8, 32)
    with pytest.raises(ValueError, match="wrong type"):
        _native.sweep(X, X[:3], labels=np.empty(10, dtype=np.int32))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_numpy_plan_with_and_without_the_c_kernels(dtype):
    """lloyd_partial, nearest and assign of the NumPy plan: the same labels, sums,
    counts, inertia and far rows with the C kernels as without (exact data),
    several groups of centres (the NumPy code weights float32 rows in float32,
    the C kernels in float64: sums agree to float32's precision)."""
    rng = np.random.default_rng(3)
    X = rng.integers(-3, 4, size=(2500, 5)).astype(dtype)
    C = rng.integers(-2, 3, size=(12, 5)).astype(dtype)
    w = rng.uniform(0.5, 2.0, size=len(X))
    bounds = [0, 5, 12]
    for weights in (None, w):
        fast = kernels.lloyd_partial(X, C, weights, bounds=bounds, n_far=3, plan=NUMPY)
        slow = kernels.lloyd_partial(X, C, weights, bounds=bounds, n_far=3, plan=NO_NATIVE)
        for key in ("sums", "counts", "inertia"):
            np.testing.assert_allclose(fast[key], slow[key],
                                       rtol=1e-5 if dtype == np.float32 else 1e-12)
        np.testing.assert_array_equal(fast["far"]["dist"], slow["far"]["dist"])
    a = kernels.nearest(X, C, bounds, plan=NUMPY)
    b = kernels.nearest(X, C, bounds, plan=NO_NATIVE)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    la, da = kernels.assign(X, C, return_distances=True, plan=NUMPY)
    lb, db = kernels.assign(X, C, return_distances=True, plan=NO_NATIVE)
    np.testing.assert_array_equal(la, lb)
    np.testing.assert_array_equal(da, db)
