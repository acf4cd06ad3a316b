"""The per-block NumPy kernels against brute-force NumPy references."""

from dataclasses import replace

import numpy as np
import pytest

from daskmeans.kernels import KernelPlan
from daskmeans.kernels import _api as _kernels
from daskmeans.kernels._plan import numba_installed
from daskmeans.testing import brute_force_lloyd

brute = brute_force_lloyd


def tol_for(dtype):
    return dict(rtol=1e-4, atol=1e-3) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-8)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("k", [1, 3, 100])
@pytest.mark.parametrize("weighted", [False, True])
def test_lloyd_partial_matches_brute_force(dtype, k, weighted):
    rng = np.random.default_rng(k)
    X = rng.normal(size=(1500, 4)).astype(dtype)
    C = X[rng.choice(len(X), k, replace=False)].copy()
    w = rng.uniform(0, 3, size=len(X)) if weighted else None
    # force several sub-blocks so the sub-block loop is exercised
    plan = replace(KernelPlan.numpy(), dist_block_bytes=256 * k * X.itemsize)
    out = _kernels.lloyd_partial(X, C, w, plan=plan)
    lab, dist, sums, counts, inertia = brute(X, C, w)
    assert out["sums"].dtype == np.float64 and out["counts"].dtype == np.float64
    np.testing.assert_allclose(out["counts"], counts, **tol_for(dtype))
    np.testing.assert_allclose(out["sums"], sums, **tol_for(dtype))
    np.testing.assert_allclose(out["inertia"][0], inertia, **tol_for(dtype))
    np.testing.assert_array_equal(_kernels.assign(X, C, plan=plan), lab)


def test_groups_are_independent():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(700, 3))
    C1, C2 = X[:4].copy(), X[10:17].copy()
    out = _kernels.lloyd_partial(X, np.concatenate([C1, C2]), bounds=[0, 4, 11])
    for C, sl, g in ((C1, slice(0, 4), 0), (C2, slice(4, 11), 1)):
        _, _, sums, counts, inertia = brute(X, C)
        np.testing.assert_allclose(out["sums"][sl], sums)
        np.testing.assert_allclose(out["counts"][sl], counts)
        np.testing.assert_allclose(out["inertia"][g], inertia)
    labels, dist = _kernels.nearest(X, np.concatenate([C1, C2]), [0, 4, 11])
    np.testing.assert_array_equal(labels[1] - 4, brute(X, C2)[0])
    np.testing.assert_allclose(dist[0], brute(X, C1)[1], atol=1e-9)


def test_combine_partials_equals_whole_block():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(900, 2))
    C = X[:6].copy()
    whole = _kernels.lloyd_partial(X, C, n_far=3, with_moments=True)
    parts = [_kernels.lloyd_partial(X[i : i + 200], C, n_far=3, with_moments=True)
             for i in range(0, 900, 200)]
    comb = _kernels.combine_partials([_kernels.combine_partials(parts[:2]),
                                      _kernels.combine_partials(parts[2:])])
    np.testing.assert_allclose(comb["sums"], whole["sums"])
    np.testing.assert_allclose(comb["inertia"], whole["inertia"])
    np.testing.assert_allclose(comb["far"]["dist"], whole["far"]["dist"])
    n, mean, m2 = comb["moments"]
    assert n == 900
    np.testing.assert_allclose(mean, X.mean(0))
    np.testing.assert_allclose(m2 / n, X.var(0))


def test_far_rows_are_the_farthest_and_skip_zero_weights():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(300, 2))
    C = np.zeros((2, 2))
    w = np.ones(300)
    far_idx = np.argmax((X**2).sum(1))
    w[far_idx] = 0.0
    out = _kernels.lloyd_partial(X, C, w, n_far=2)
    d = (X**2).sum(1)
    d[far_idx] = -1
    expected = np.sort(d)[::-1][:2]
    np.testing.assert_allclose(out["far"]["dist"][0], expected)


def test_check_finite_raises():
    X = np.ones((10, 2))
    X[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN or infinity"):
        _kernels.lloyd_partial(X, X[:1].copy() * 0, check_finite=True)


_ACCUMULATE_PLANS = [pytest.param(KernelPlan.numpy(), id="numpy"),
                     pytest.param("numba", id="numba", marks=pytest.mark.skipif(
                         not numba_installed(), reason="numba not installed"))]


@pytest.mark.parametrize("plan", _ACCUMULATE_PLANS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_accumulate_strategies_agree(plan, dtype):
    plan = KernelPlan.numba() if plan == "numba" else plan
    rng = np.random.default_rng(3)
    X = rng.normal(size=(2000, 5)).astype(dtype)
    for k in (8, 500):  # one-hot product and sort + reduceat paths (NumPy)
        lab = rng.integers(0, k, size=2000)
        w = rng.uniform(size=2000)
        for weights in (w, None):
            sums, counts = _kernels.accumulate(X, lab, weights, k, plan=plan)
            wt = np.ones(2000) if weights is None else weights
            ref = np.zeros((k, 5))
            np.add.at(ref, lab, X.astype(np.float64) * wt[:, None])
            tol = 1e-12 if dtype == np.float64 or plan.compiled else 1e-4
            np.testing.assert_allclose(sums, ref, atol=tol)
            np.testing.assert_allclose(counts, np.bincount(lab, weights=wt, minlength=k))


@pytest.mark.skipif(not numba_installed(), reason="numba not installed")
def test_accumulate_compiled_checks_labels():
    X = np.ones((10, 2))
    with pytest.raises(ValueError, match="labels must be 10 integers"):
        _kernels.accumulate(X, np.full(10, 4), None, 4, plan=KernelPlan.numba())
    with pytest.raises(ValueError, match="labels must be 10 integers"):
        _kernels.accumulate(X, np.full(9, 1), None, 4, plan=KernelPlan.numba())


@pytest.mark.parametrize("plan", _ACCUMULATE_PLANS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("n_top", [1, 3, 7, 16, 20])
def test_top_centers_nearest_first(plan, dtype, n_top):
    plan = KernelPlan.numba() if plan == "numba" else plan
    rng = np.random.default_rng(5)
    X = rng.normal(size=(3000, 4)).astype(dtype)
    C = np.ascontiguousarray(X[rng.choice(3000, 20, replace=False)])
    C[3] = C[11]  # equal centres: the lower index first
    X[:20] = C  # rows at distance zero
    got = _kernels.top_centers(X, C, n_top, plan=plan)
    D = _kernels.distances_block(X, C, _kernels.sq_norms(C))
    want = np.argsort(D, axis=1, kind="stable")[:, :n_top]
    assert got.shape == (3000, n_top)
    np.testing.assert_array_equal(got, want)
    # rows 3 and 11 are the equal centres 3 and 11: tied at the top, 3 first
    np.testing.assert_array_equal(got[[3, 11], 0], [3, 3])
    if n_top > 1:
        np.testing.assert_array_equal(got[[3, 11], 1], [11, 11])
    # as many as there are centres: every row's whole order
    few = np.ascontiguousarray(C[:n_top])
    D = _kernels.distances_block(X, few, _kernels.sq_norms(few))
    np.testing.assert_array_equal(_kernels.top_centers(X, few, n_top, plan=plan),
                                  np.argsort(D, axis=1, kind="stable"))
