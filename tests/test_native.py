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


# --------------------------------------------------------------------------- #
# the Lloyd loop of one in-memory block (kernels.lloyd_block)
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("shape", [(0,), (5,), (8,), (100,), (128,), (129,), (1000,),
                                   (4099,), (64, 33), (128, 64)])
def test_pairwise_sum_is_numpys_sum(shape):
    """The shift that decides convergence is summed in NumPy's order, to the bit."""
    rng = np.random.default_rng(sum(shape))
    a = rng.random(shape) * 10.0 ** rng.uniform(-8, 8, size=shape)
    assert _native.pairwise_sum(a) == float(a.sum())


def _fit_pair(monkeypatch, X, k, seed, sample_weight=None, **params):
    """The same fit with the C loop and with the Python loop (passes one by one)."""
    from daskmeans import KMeans
    from daskmeans.engine import _lloyd

    calls = []
    real = _native.lloyd_loop
    monkeypatch.setattr(_native, "lloyd_loop",
                        lambda *a, **kw: calls.append(1) or real(*a, **kw))
    fast = KMeans(k, random_state=seed, **params).fit(X, sample_weight=sample_weight)
    monkeypatch.setattr(_lloyd, "BLOCK_LOOP", False)
    slow = KMeans(k, random_state=seed, **params).fit(X, sample_weight=sample_weight)
    return fast, slow, len(calls)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n, d, k", [(1000, 2, 8), (10_000, 8, 8), (3001, 7, 64),
                                     (2000, 30, 128)])
@pytest.mark.parametrize("weighted", [False, True])
def test_block_loop_is_bitwise_the_fit_loop(monkeypatch, dtype, n, d, k, weighted):
    rng = np.random.default_rng(n + d + k)
    X = rng.standard_normal((n, d)).astype(dtype)
    w = rng.uniform(0.1, 3.0, size=n) if weighted else None
    fast, slow, n_calls = _fit_pair(monkeypatch, X, k, seed=3, sample_weight=w)
    assert n_calls >= 1  # the C loop ran the iterations
    np.testing.assert_array_equal(fast.cluster_centers_, slow.cluster_centers_)
    np.testing.assert_array_equal(fast.labels_, slow.labels_)
    np.testing.assert_array_equal(fast.cluster_sizes_, slow.cluster_sizes_)
    assert fast.inertia_ == slow.inertia_
    assert fast.inertia_history_ == slow.inertia_history_
    assert (fast.n_iter_, fast.n_passes_) == (slow.n_iter_, slow.n_passes_)


@pytest.mark.parametrize("max_iter, tol", [(3, 1e-4), (300, 0.0)])
def test_block_loop_stops_as_the_fit_loop(monkeypatch, max_iter, tol):
    """At max_iter, and (tol=0) only when the centres stop moving: a strict stop."""
    X = np.random.default_rng(5).standard_normal((2000, 3))
    fast, slow, n_calls = _fit_pair(monkeypatch, X, 6, seed=1, max_iter=max_iter, tol=tol)
    assert n_calls >= 1
    assert fast.n_iter_ == slow.n_iter_ <= max_iter
    np.testing.assert_array_equal(fast.cluster_centers_, slow.cluster_centers_)
    assert fast.inertia_history_ == slow.inertia_history_


def test_block_loop_hands_an_empty_cluster_back(monkeypatch):
    """A pass that empties a cluster is not applied by the C loop: the fit relocates
    the cluster to the farthest row (as scikit-learn), then goes on."""
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(0, 1, (500, 2)), [[60.0, 60.0]]])
    init = np.array([[0.0, 0.0], [0.1, 0.0], [0.0, 0.1], [500.0, 500.0]])
    fast, slow, n_calls = _fit_pair(monkeypatch, X, 4, seed=0, init=init, n_init=1)
    assert n_calls >= 1
    np.testing.assert_array_equal(fast.cluster_centers_, slow.cluster_centers_)
    assert fast.inertia_history_ == slow.inertia_history_
    assert (fast.cluster_sizes_ > 0).all()  # relocated


def test_numpy_lloyd_resumes_the_block_loop_after_a_relocation(monkeypatch):
    """lloyd_numpy (k-means|| candidates, samples): the pass that empties a cluster
    runs in Python, then the C loop takes the iterations again."""
    from daskmeans.engine import _lloyd

    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(0, 1, (500, 2)), [[60.0, 60.0]]])
    init = np.array([[0.0, 0.0], [0.1, 0.0], [0.0, 0.1], [500.0, 500.0]])
    w = rng.uniform(0.5, 2.0, size=len(X))
    statuses = []
    real = _native.lloyd_loop
    monkeypatch.setattr(_native, "lloyd_loop",
                        lambda *a, **kw: statuses.append(real(*a, **kw)) or statuses[-1])
    fast = _lloyd.lloyd_numpy(X, w, init, max_iter=50, tol_abs=1e-8, plan=NUMPY)
    assert statuses[0]["status"] == "empty" and statuses[0]["n_iter"] == 0
    assert len(statuses) >= 2 and statuses[1]["n_iter"] > 0
    monkeypatch.setattr(_lloyd, "BLOCK_LOOP", False)
    slow = _lloyd.lloyd_numpy(X, w, init, max_iter=50, tol_abs=1e-8, plan=NUMPY)
    np.testing.assert_array_equal(fast[0], slow[0])
    assert fast[1:] == slow[1:]


def test_block_loop_equals_numpy_lloyd_reference():
    """The loop's centres against plain NumPy Lloyd from the same start."""
    rng = np.random.default_rng(2)
    X = rng.standard_normal((3000, 4))
    C0 = X[:5].copy()
    out = kernels.lloyd_block(X, C0, None, max_iter=7, tol=0.0, plan=NUMPY)
    assert out["n_iter"] == 7 and out["status"] == "max_iter"
    C = C0.copy()
    for it in range(7):
        lab = np.argmin(((X[:, None, :] - C[None]) ** 2).sum(-1), axis=1)
        inertia = ((X - C[lab]) ** 2).sum()
        np.testing.assert_allclose(out["inertia"][it], inertia, rtol=1e-10)
        C = np.array([X[lab == j].mean(axis=0) for j in range(5)])
    np.testing.assert_allclose(out["centers"], C, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(out["counts"], np.bincount(lab, minlength=5))


def test_block_loop_declines_what_it_does_not_run():
    X = np.random.default_rng(0).standard_normal((100, 3))
    assert kernels.lloyd_block(X, X[:200 // 2], None, max_iter=2, tol=0.0,
                               plan=NO_NATIVE) is None  # the C kernels are off
    assert kernels.lloyd_block(X, X[:4].astype(np.float32), None, max_iter=2, tol=0.0,
                               plan=NUMPY) is None  # mixed dtypes


# --------------------------------------------------------------------------- #
# the portable build: what targets without the x86-64 clones run
# --------------------------------------------------------------------------- #
@pytest.fixture(scope="module")
def portable_library(tmp_path_factory):
    """``_native.c`` built with -DDM_PORTABLE for the baseline target: the vector
    extensions' generic lowering (two 16-byte registers a vector, as on NEON), the
    code that runs where the AVX2 clone does not. Built by the C compiler Python
    was configured with, which the install uses too (and which CI has: the first
    test of this module checks the install built the library)."""
    import shlex
    import shutil
    import subprocess
    import sysconfig
    from pathlib import Path

    cc = shlex.split(sysconfig.get_config_var("CC") or "cc")
    assert shutil.which(cc[0]) is not None, f"no C compiler {cc[0]!r} to build the library"
    source = Path(_native.__file__).with_name("_native.c")
    out = tmp_path_factory.mktemp("portable") / "_native_portable.so"
    subprocess.run([*cc, "-O3", "-shared", "-fPIC", "-DDM_PORTABLE", "-o", str(out),
                    str(source)], check=True, capture_output=True)
    lib = _native.load(str(out))
    assert lib is not None
    return lib


def test_portable_build_has_no_clones(portable_library):
    """-DDM_PORTABLE builds one plain body a function (no ifunc dispatching to clones),
    so that the tests below run the generic lowering and not the AVX2 clone."""
    import shutil
    import subprocess

    nm = shutil.which("nm")  # binutils come with the C compiler
    assert nm is not None
    table = subprocess.run([nm, "-D", "--defined-only", portable_library._name],
                           capture_output=True, text=True, check=True).stdout
    kinds = {line.split()[-1]: line.split()[-2] for line in table.splitlines()
             if len(line.split()) >= 2}
    assert kinds.get("dm_sweep_f32") == "T" and kinds.get("dm_lloyd_f64") == "T"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("k", [1, 5, 32, 101])
@pytest.mark.parametrize("n", [7, 1003])
def test_portable_sweep_matches_brute_force(monkeypatch, portable_library, dtype, k, n):
    monkeypatch.setattr(_native, "_library", lambda: portable_library)
    test_sweep_matches_brute_force(dtype, k, n, weighted=True)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_portable_loop_equals_the_installed_one(monkeypatch, portable_library, dtype):
    """Integer rows and centres keep every score exact whatever the compiler fuses:
    the same labels, counts and centres as the installed library's loop."""
    rng = np.random.default_rng(5)
    X = rng.integers(-20, 21, size=(2000, 7)).astype(dtype)
    C0 = X[:9].copy()
    want = kernels.lloyd_block(X, C0, None, max_iter=4, tol=0.0, plan=NUMPY)
    monkeypatch.setattr(_native, "_library", lambda: portable_library)
    got = kernels.lloyd_block(X, C0, None, max_iter=4, tol=0.0, plan=NUMPY)
    assert got["n_iter"] == want["n_iter"]
    np.testing.assert_array_equal(got["counts"], want["counts"])
    np.testing.assert_allclose(got["centers"], want["centers"], rtol=1e-6)
    np.testing.assert_allclose(got["inertia"], want["inertia"], rtol=1e-6)
