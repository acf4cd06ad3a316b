"""The compiled (numba) path of the kernels against the NumPy path and brute force.

Paths are chosen by building kernel plans (:class:`daskmeans.kernels.KernelPlan`).
"""

from dataclasses import replace

import numpy as np
import pytest

from daskmeans.kernels import _plan

if not _plan.numba_installed():  # pragma: no cover
    pytest.skip("numba not installed", allow_module_level=True)

from daskmeans.kernels import KernelPlan, _compiled, _llvm, _thresholds  # noqa: E402
from daskmeans.kernels import _api as _kernels  # noqa: E402
from daskmeans.kernels import _numba_loops as _kernels_numba  # noqa: E402
from daskmeans.testing import brute_force_lloyd  # noqa: E402

brute = brute_force_lloyd

#: The compiled plan of the BLAS and fused-tile paths (the column tiles have
#: tests of their own), the one with everything this machine offers, and the NumPy one.
NUMBA = KernelPlan.numba(columns=False)
# the column tiles for every group and float64 up to 64 features, on any machine
# (float32 not screened in int16: tests/test_quantized.py compares that with these tiles)
COLUMNS = KernelPlan.numba(columns=_kernels_numba.COLUMN_TILES, column_min_k=1,
                           column_max_features_f64=64, quantized=False)
NUMPY = KernelPlan.numpy()
#: Compiled plans without the LLVM-IR intrinsics, whole blocks and sub-blocks.
PLAIN = KernelPlan.numba(plain=True)
SUBBLOCK = KernelPlan.numba(plain=True, whole_block=False)


def tol_for(dtype):
    return dict(rtol=1e-4, atol=1e-3) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-8)


def both_paths(func, *args, plan=NUMBA, **kwargs):
    """``func`` under the compiled ``plan`` and under the NumPy plan."""
    fast = func(*args, plan=plan, **kwargs)
    slow = func(*args, plan=NUMPY, **kwargs)
    return fast, slow


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("k", [1, 5, 300])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("plan", [NUMBA, PLAIN, SUBBLOCK], ids=["numba", "plain", "subblock"])
def test_numba_lloyd_partial_matches_numpy_and_brute_force(dtype, k, weighted, plan):
    rng = np.random.default_rng(k)
    X = rng.normal(size=(2100, 6)).astype(dtype)
    C = X[rng.choice(len(X), k, replace=False)].copy()
    w = rng.uniform(0, 3, size=len(X)) if weighted else None
    # several sub-blocks of uneven length
    fast, slow = both_paths(_kernels.lloyd_partial, X, C, w, n_far=4,
                            plan=replace(plan, step=333))
    lab, dist, sums, counts, inertia = brute(X, C, w)
    assert fast["sums"].dtype == np.float64 and fast["counts"].dtype == np.float64
    # same labels: equal counts (weighted ones up to the order of the float64 sum)
    np.testing.assert_allclose(fast["counts"], slow["counts"], rtol=1e-12)
    np.testing.assert_allclose(fast["counts"], counts, **tol_for(dtype))
    np.testing.assert_allclose(fast["sums"], sums, **tol_for(dtype))
    np.testing.assert_allclose(fast["sums"], slow["sums"], **tol_for(dtype))
    np.testing.assert_allclose(fast["inertia"][0], inertia, **tol_for(dtype))
    np.testing.assert_array_equal(fast["far"]["labels"], slow["far"]["labels"])
    np.testing.assert_allclose(fast["far"]["dist"], slow["far"]["dist"], **tol_for(dtype))


def test_numba_groups_match_numpy():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(1000, 3)).astype(np.float32)
    C = X[:20].copy()
    bounds = [0, 4, 11, 20]
    fast, slow = both_paths(_kernels.lloyd_partial, X, C, bounds=bounds, n_far=3)
    np.testing.assert_array_equal(fast["counts"], slow["counts"])
    np.testing.assert_allclose(fast["sums"], slow["sums"], rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(fast["inertia"], slow["inertia"], rtol=1e-5)
    np.testing.assert_array_equal(fast["far"]["labels"], slow["far"]["labels"])


@pytest.mark.parametrize("plan", [NUMBA, SUBBLOCK], ids=["numba", "subblock"])
def test_numba_ties_go_to_first_centre(plan):
    X = np.array([[0.0, 0.0], [2.0, 0.0], [1.0, 0.0]])
    C = np.array([[1.0, 0.0], [1.0, 0.0], [3.0, 0.0]])  # centres 0 and 1 coincide
    fast, slow = both_paths(_kernels.lloyd_partial, X, C, plan=plan)
    np.testing.assert_array_equal(fast["counts"], [3.0, 0.0, 0.0])
    np.testing.assert_array_equal(fast["counts"], slow["counts"])
    fast, slow = both_paths(_kernels.assign, X, C, return_distances=True, plan=plan)
    np.testing.assert_array_equal(fast[0], slow[0])
    np.testing.assert_allclose(fast[1], slow[1])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("plan", [NUMBA, PLAIN], ids=["numba", "plain"])
def test_numba_assign_and_nearest_match_numpy(dtype, plan):
    rng = np.random.default_rng(5)
    X = rng.normal(size=(1700, 5)).astype(dtype)
    C = X[:40].copy()
    fast, slow = both_paths(_kernels.assign, X, C, return_distances=True, plan=plan)
    assert fast[0].dtype == np.int64 and fast[1].dtype == np.float64
    np.testing.assert_array_equal(fast[0], slow[0])
    np.testing.assert_allclose(fast[1], slow[1], **tol_for(dtype))
    fast, slow = both_paths(_kernels.nearest, X, C, [0, 15, 40], plan=plan)
    np.testing.assert_array_equal(fast[0], slow[0])
    assert fast[1].dtype == np.float64
    np.testing.assert_allclose(fast[1], slow[1], **tol_for(dtype))


def test_numba_path_is_skipped_for_mixed_dtypes():
    X = np.ones((10, 2), dtype=np.float32)
    C = np.zeros((2, 2), dtype=np.float64)
    assert not _kernels._compiled_applies(NUMBA, X, C)
    out = _kernels.lloyd_partial(X, C, plan=NUMBA)
    np.testing.assert_allclose(out["counts"], [10.0, 0.0])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_numba_moments_match_numpy(dtype):
    rng = np.random.default_rng(7)
    X = (rng.normal(size=(70_001, 5)) * [1, 10, 0.1, 1e3, 1] + [0, 5, -3, 1e4, 0]).astype(dtype)
    fast, slow = both_paths(_kernels.moments, X)
    assert fast[0] == slow[0] == 70_001.0
    ref_mean = X.astype(np.float64).mean(0)
    ref_m2 = ((X.astype(np.float64) - ref_mean) ** 2).sum(0)
    np.testing.assert_allclose(fast[1], ref_mean, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(fast[2], ref_m2, rtol=1e-10)
    np.testing.assert_allclose(slow[2], ref_m2, rtol=1e-4 if dtype == np.float32 else 1e-10)


def _far_reference(X, C, w, m):
    """Brute force: the m positive-weight rows farthest from their nearest centre."""
    lab, dist, *_ = brute(X, C, w)
    ok = np.ones(len(X), bool) if w is None else w > 0
    idx = np.flatnonzero(ok)
    order = idx[np.argsort(-dist[idx], kind="stable")[:m]]
    return order, lab[order], dist[order]


@pytest.mark.parametrize("layout_k", [0, 10**9])  # transposed, row-major distances
@pytest.mark.parametrize("order", ["random", "increasing"])
def test_streamed_far_rows_are_the_farthest(layout_k, order):
    rng = np.random.default_rng(11)
    X = rng.normal(size=(5000, 4)) * rng.uniform(0.1, 3, size=(5000, 1))
    C = X[:7].copy()
    w = rng.uniform(0, 2, size=len(X))
    w[rng.random(len(X)) < 0.2] = 0.0  # zero weight: never a far row
    if order == "increasing":  # every row farther than all before: the buffer refills often
        _, dist, *_ = brute(X, C, None)
        perm = np.argsort(dist, kind="stable")
        X, w = X[perm], w[perm]
    plan = replace(NUMBA, rowmajor_max_k=layout_k, step=97)
    m = 6
    out = _kernels.lloyd_partial(X, C, w, n_far=m, plan=plan)["far"]
    idx, lab, dist = _far_reference(X, C, w, m)
    np.testing.assert_array_equal(out["labels"][0], lab)
    np.testing.assert_allclose(out["dist"][0], dist, rtol=1e-10)
    np.testing.assert_array_equal(out["rows"][0], X[idx])
    np.testing.assert_array_equal(out["weights"][0], w[idx])
    assert out["m"] == m


@pytest.mark.parametrize("n", [0, 1, 2, 7, 64, 1000])
def test_far_compact_keeps_the_largest_equal_ones_in_order(n):
    """The compiled loop sort orders as NumPy's stable argsort of -dist (ties: earlier first)."""
    rng = np.random.default_rng(n)
    dist = rng.integers(0, 5, size=n).astype(np.float64)  # many ties
    np.testing.assert_array_equal(_kernels_numba._desc_order(dist, n),
                                  np.argsort(-dist, kind="stable"))
    rows = np.arange(n, dtype=np.int64) * 10
    labels = np.arange(n, dtype=np.int64) % 3
    expect = np.argsort(-dist, kind="stable")
    for m in (1, 3, n + 1):
        d, r, lab = dist.copy(), rows.copy(), labels.copy()
        keep, tau = _kernels_numba.far_compact(d, r, lab, n, m)
        top = expect[:min(m, n)]
        assert keep == len(top)
        np.testing.assert_array_equal(d[:keep], dist[top])
        np.testing.assert_array_equal(r[:keep], rows[top])
        np.testing.assert_array_equal(lab[:keep], labels[top])
        assert tau == (dist[top[-1]] if keep == m else -np.inf)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_row_major_and_transposed_layouts_agree(dtype):
    rng = np.random.default_rng(12)
    X = rng.normal(size=(3000, 9)).astype(dtype)
    C = X[rng.choice(len(X), 30, replace=False)].copy()
    bounds = [0, 10, 30]
    out = {}
    for name, limit in (("rows", 10**9), ("cols", 0)):
        plan = replace(NUMBA, rowmajor_max_k=limit)
        out[name] = (_kernels.lloyd_partial(X, C, bounds=bounds, n_far=3, plan=plan),
                     _kernels.nearest(X, C, bounds, plan=plan))
    a, b = out["rows"], out["cols"]
    np.testing.assert_array_equal(a[0]["counts"], b[0]["counts"])
    np.testing.assert_allclose(a[0]["sums"], b[0]["sums"], **tol_for(dtype))
    np.testing.assert_allclose(a[0]["inertia"], b[0]["inertia"], **tol_for(dtype))
    np.testing.assert_array_equal(a[0]["far"]["labels"], b[0]["far"]["labels"])
    np.testing.assert_array_equal(a[1][0], b[1][0])
    lab, *_ = brute(X.astype(np.float64), C[10:].astype(np.float64), None)
    np.testing.assert_array_equal(a[1][0][1], lab + 10)


@pytest.mark.parametrize("whole", [True, False])  # one compiled call per block / per sub-block
@pytest.mark.parametrize("offset", [0.0, 1e6])
@pytest.mark.parametrize("layout_k", [0, 10**9])
def test_screened_float64_gives_exact_labels(offset, layout_k, whole, monkeypatch):
    """float32 screening of float64 data: labels of exact distances, float64 sums.

    Near-duplicate centres and rows rounded to a grid make many rows close to
    a tie, so the float64 redo is exercised; far from the origin the plain
    expansion ||x||^2 - 2 x.c + ||c||^2 cancels, the shifted screen does not.
    """
    rng = np.random.default_rng(13)
    X = (rng.normal(size=(4000, 6)) * 2).round(1) + offset
    C = X[rng.choice(len(X), 40, replace=False)].copy()
    C[1] = C[0] + 1e-9
    C[2] = C[3]
    w = rng.uniform(0, 2, size=len(X))
    if whole and not _kernels_numba.BLAS_AVAILABLE:
        pytest.skip("compiled whole-block sweep not available (SciPy missing)")
    plan = replace(NUMBA, rowmajor_max_k=layout_k, screen_rowmajor_max_k=layout_k,
                   screen_min_k=0, whole_block=whole, fused=NUMBA.fused and whole, step=512)
    assert plan.path(np.float64, len(C)).endswith("screened-" + (
        "rowmajor" if layout_k else "transposed"))
    # rows decided again in float64, counted by whichever path runs
    redone = []
    for name in ("refine_rows", "sweep_block_screened", "nearest_block_screened"):
        func = getattr(_kernels_numba, name)
        monkeypatch.setattr(_kernels_numba, name,
                            lambda *a, f=func: redone.append(f(*a)) or redone[-1])
    out = _kernels.lloyd_partial(X, C, w, n_far=3, plan=plan)
    labels, dist = _kernels.nearest(X, C, plan=plan)
    assert sum(redone) > 0
    diff = X[:, None, :] - C[None, :, :]
    exact = np.einsum("nkd,nkd->nk", diff, diff)
    ref = np.argmin(exact, axis=1)
    # ties (C[2] == C[3]; C[0] and C[1] 1e-9 apart) may go either way: every
    # label is a minimum up to the rounding of a float64 sum
    np.testing.assert_allclose(exact[np.arange(len(X)), labels[0]], exact.min(axis=1),
                               rtol=1e-14)
    assert np.mean(labels[0] == ref) > 0.99
    lab = labels[0]
    np.testing.assert_allclose(dist[0], exact.min(axis=1), rtol=1e-12, atol=1e-9)
    sums = np.zeros_like(C)
    np.add.at(sums, lab, X * w[:, None])
    np.testing.assert_allclose(out["sums"], sums, rtol=1e-12)
    np.testing.assert_allclose(out["counts"], np.bincount(lab, w, minlength=len(C)), rtol=1e-12)
    np.testing.assert_allclose(out["inertia"][0], (w * exact.min(axis=1)).sum(), rtol=1e-12)


@pytest.mark.skipif(not _kernels_numba.BLAS_AVAILABLE, reason="SciPy not installed")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layout_k", [0, 10**9])  # transposed, row-major distances
@pytest.mark.parametrize("weighted", [False, True])
def test_whole_block_call_matches_the_sub_block_loop(dtype, layout_k, weighted, monkeypatch):
    """One compiled call per block (BLAS through numba) equals the Python-driven loop."""
    rng = np.random.default_rng(14)
    X = rng.normal(size=(2345, 7)).astype(dtype)
    C = X[rng.choice(len(X), 26, replace=False)].copy()
    w = rng.uniform(0, 2, size=len(X)) if weighted else None
    bounds = [0, 9, 26]
    # a short last sub-block; the plain sweep (screened: above)
    base = replace(NUMBA, rowmajor_max_k=layout_k, step=211, screen_min_k=None)
    calls = []
    sweep = _kernels_numba.sweep_block
    monkeypatch.setattr(_kernels_numba, "sweep_block", lambda *a: calls.append(1) or sweep(*a))
    out = {}
    for whole in (True, False):
        plan = replace(base, whole_block=whole, fused=base.fused and whole)
        out[whole] = (_kernels.lloyd_partial(X, C, w, bounds=bounds, n_far=5, plan=plan),
                      _kernels.nearest(X, C, bounds, plan=plan),
                      _kernels.assign(X, C[9:].copy(), return_distances=True, plan=plan))
    assert calls == [1]  # the whole block in one call, the loop never calls it
    (a, na, aa), (b, nb, ab) = out[True], out[False]
    np.testing.assert_array_equal(a["counts"], b["counts"])
    np.testing.assert_allclose(a["sums"], b["sums"], **tol_for(dtype))
    np.testing.assert_allclose(a["inertia"], b["inertia"], **tol_for(dtype))
    for key in ("labels", "rows", "weights"):
        np.testing.assert_array_equal(a["far"][key], b["far"][key])
    np.testing.assert_array_equal(na[0], nb[0])
    np.testing.assert_allclose(na[1], nb[1], **tol_for(dtype))
    np.testing.assert_array_equal(aa[0], ab[0])
    np.testing.assert_allclose(aa[1], ab[1], **tol_for(dtype))
    lab, dist, sums, counts, inertia = brute(X.astype(np.float64), C[:9].astype(np.float64), w)
    np.testing.assert_array_equal(na[0][0], lab)
    np.testing.assert_allclose(a["inertia"][0], inertia, **tol_for(dtype))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("d", [1, 2, 3, 5, 8, 15, 16, 17, 32, 33])
@pytest.mark.parametrize("offset", [0, 1])
def test_prefetch_row_hints_every_cache_line(dtype, d, offset, monkeypatch):
    # the pure-Python body of prefetch_row, with the hint recorded
    base = np.zeros((64 + offset) * d + 64, dtype=dtype)
    A = base[offset * d : (offset + 64) * d].reshape(64, d)  # rows start anywhere
    hints = []
    monkeypatch.setattr(_kernels_numba, "prefetch",
                        lambda arr, i, j: hints.append(arr[i:, j:].__array_interface__["data"][0]))
    for i in range(A.shape[0]):
        _kernels_numba.prefetch_row.py_func(A, i)
    start = A.__array_interface__["data"][0]
    end = start + A.nbytes
    hints = np.array(hints)
    assert hints.min() >= start and hints.max() < end
    # hints at most a line apart, from the first line to the last: every line is hinted
    gaps = np.diff(np.concatenate([[start], hints, [end - 1]]))
    assert gaps.max() <= _kernels_numba._LINE_BYTES
    # and at most about two hints per line (hints are more than half a line apart)
    assert len(hints) <= 2 * A.nbytes // _kernels_numba._LINE_BYTES + 2


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int16])
def test_values_per_line_is_a_constant_in_compiled_code(dtype):
    """prefetch_row runs in every row's loop: its step must not cost a division."""
    import numba

    per_line = numba.njit(lambda A: _kernels_numba.values_per_line(A))
    A = np.zeros((3, 5), dtype)
    assert per_line(A) == _kernels_numba.values_per_line(A) == 64 // A.itemsize
    asm = next(iter(per_line.inspect_asm().values()))
    # a constant: no division instruction before the function returns
    assert not any("div" in line.split("#")[0] for line in asm.split("ret")[0].splitlines())


def test_prefetch_is_the_llvm_intrinsic():
    # a no-op fallback would silently lose the overlap of reads and compute
    assert _llvm.prefetch_kernel() is not None


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n_ahead", [0, 7, 500])
def test_prefetched_rows_do_not_change_results(dtype, n_ahead):
    rng = np.random.default_rng(5)
    X = rng.normal(size=(300, 7)).astype(dtype)
    ahead = rng.normal(size=(n_ahead, 7)).astype(dtype)
    labels = rng.integers(0, 4, size=300)
    C = rng.normal(size=(4, 7))
    best0 = rng.normal(size=300).astype(dtype)
    w = np.empty(0, dtype=dtype)
    results = []
    for rows in (X[:0], ahead):
        sums, counts, best = np.zeros((4, 7)), np.zeros(4), best0.copy()
        tot = _kernels_numba.accumulate_rows(X, w, labels, best, sums, counts, rows)
        sums2, counts2, dist = np.zeros((4, 7)), np.zeros(4), np.empty(300)
        tot2 = _kernels_numba.accumulate_exact(X.astype(np.float64), w, labels, C, sums2, counts2,
                                               dist, rows.astype(np.float64))
        D = rng.normal(size=(300, 4)).astype(dtype) if not results else results[0][-1]
        lab, bst = np.empty(300, np.intp), np.empty(300, dtype)
        _kernels_numba.argmin_rows(D, np.zeros(4, dtype), 0, 4, lab, bst, rows, True)
        labt, bstt = np.empty(300, np.intp), np.empty(300, dtype)
        _kernels_numba.argmin_columns(np.ascontiguousarray(D.T), np.zeros(4, dtype), 0, 4, labt,
                                      bstt, rows)
        np.testing.assert_array_equal(labt, lab)
        results.append((tot, sums, counts, best, tot2, sums2, dist, lab, bst, labt, bstt, D))
    for a, b in zip(*results, strict=True):
        np.testing.assert_array_equal(a, b)


def _sums_in_row_order(X, labels, sums, dtype):
    """``sums`` (float64) plus the rows of every label added in row order: into
    ``sums`` itself when ``dtype`` is float64, else first into zeros of ``dtype``."""
    if dtype == np.float64:
        out = sums.copy()
        for i, a in enumerate(labels):
            out[a] += X[i].astype(np.float64)
        return out
    part = np.zeros(sums.shape, dtype=dtype)
    for i, a in enumerate(labels):
        part[a] += X[i].astype(dtype)
    return sums + part


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("n", [300, 12])
def test_accumulate_rows_sums_in_the_rows_dtype_when_labels_have_rows_enough(dtype, weighted, n):
    # labels 5 to 8 of 12 centres: with 300 rows (75 a label) float32 rows are summed
    # in float32 first; with 12 (3 a label, under the threshold) straight into float64
    rng = np.random.default_rng(9)
    X = rng.normal(size=(n, 5)).astype(dtype)
    labels = rng.permutation(5 + np.arange(n) % 4)
    w = rng.uniform(0, 2, size=n).astype(dtype) if weighted else np.empty(0, dtype=dtype)
    sums0 = rng.normal(size=(12, 5))
    counts0 = rng.uniform(size=12)
    best0 = (rng.normal(size=n) - (X.astype(np.float64) ** 2).sum(axis=1)).astype(dtype)
    sums, counts, best = sums0.copy(), counts0.copy(), best0.copy()
    total = _kernels_numba.accumulate_rows(X, w, labels, best, sums, counts, X[:0])
    partial = dtype == np.float32 and n >= _kernels_numba._PARTIAL_ROWS_PER_CENTRE * 4
    assert partial == (dtype == np.float32 and n == 300)
    ww = w.astype(np.float64) if weighted else np.ones(n)
    if weighted:  # (a weight may be multiplied and added in one rounding)
        ref = sums0.copy()
        np.add.at(ref, labels, ww[:, None] * X.astype(np.float64))
        np.testing.assert_allclose(sums, ref, **tol_for(dtype))
    else:  # the additions in the rows' order: equal bit for bit
        np.testing.assert_array_equal(
            sums, _sums_in_row_order(X, labels, sums0, dtype if partial else np.float64))
    untouched = np.r_[0:5, 9:12]
    np.testing.assert_array_equal(sums[untouched], sums0[untouched])
    np.testing.assert_allclose(counts, counts0 + np.bincount(labels, ww, minlength=12),
                               rtol=1e-14)
    dist = np.maximum(best0.astype(np.float64) + (X.astype(np.float64) ** 2).sum(axis=1), 0)
    np.testing.assert_allclose(best, dist.astype(dtype), **tol_for(dtype))
    np.testing.assert_allclose(total, ww @ best.astype(np.float64), rtol=1e-6)


def test_vector_argmin_is_compiled():
    # LLVM 17+ (opaque pointers): rows of 5 to 64 centres are SIMD vectors
    import llvmlite.binding

    assert _kernels_numba.VECTOR_ARGMIN == (llvmlite.binding.llvm_version_info[0] >= 17)
    assert NUMBA.vector_argmin == _kernels_numba.VECTOR_ARGMIN and not PLAIN.vector_argmin
    if _kernels_numba.VECTOR_ARGMIN and _kernels_numba.BLAS_AVAILABLE:
        assert NUMBA.rowmajor_max_k == 64 and NUMBA.screen_min_k == 32


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("k", [1, 4, 5, 8, 9, 13, 16, 17, 33, 48, 50, 64, 65])
@pytest.mark.parametrize("order", ["C"])
@pytest.mark.parametrize("vector", [True, False])  # SIMD (LLVM IR) or scalar loop
def test_argmin_rows_matches_numpy(dtype, k, order, vector):
    if vector and not _kernels_numba.VECTOR_ARGMIN:  # pragma: no cover
        pytest.skip("LLVM before 17")
    rng = np.random.default_rng(k)
    # small integers: many ties, which go to the first index
    D = rng.integers(-3, 3, size=(203, k)).astype(dtype, order=order)
    c = rng.integers(-2, 2, size=k).astype(dtype)
    D[7] = np.inf  # a row with no finite candidate: the first one
    D[8, : k // 2] = np.inf
    for lo, hi in [(0, k), (k // 3, k), (0, max(1, k - 2))]:
        labels = np.empty(len(D), np.intp)
        best = np.empty(len(D), dtype)
        _kernels_numba.argmin_rows(D, c, lo, hi, labels, best, D[:0], vector)
        S = D[:, lo:hi] + c[lo:hi]
        np.testing.assert_array_equal(labels, lo + np.argmin(S, axis=1))
        np.testing.assert_array_equal(best, S.min(axis=1))


@pytest.mark.skipif(not _kernels_numba.FUSED_ARGMIN, reason="LLVM before 17")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("k", [1, 5, 16, 17, 33, 48, 64])
@pytest.mark.parametrize("n", [1, 2, 7, 601])
def test_fused_rows_match_numpy(dtype, k, n):
    """Fused tiles: the first minimising centre and the minimum of ``x . CT + c_sq``."""
    rng = np.random.default_rng(k * 1000 + n)
    d = 11
    # small integers: exact products and many ties, which go to the first index
    X = rng.integers(-3, 4, size=(n, d)).astype(dtype)
    C = rng.integers(-2, 3, size=(k, d)).astype(dtype)
    width = next(c for c in _kernels_numba.FUSED_CENTERS if c >= k)
    CT = np.zeros((d, width), dtype=dtype)
    CT[:, :k] = -2 * C.T
    c_sq = np.full(width, np.inf, dtype=dtype)
    c_sq[:k] = (C * C).sum(axis=1)
    if n > 7:
        X[5, 3] = np.nan  # a NaN row gets label 0
    labels = np.full(n, -1, np.intp)
    best = np.empty(n, dtype)
    rows = {16: _kernels_numba.fused_rows16, 32: _kernels_numba.fused_rows32,
            48: _kernels_numba.fused_rows48, 64: _kernels_numba.fused_rows64}[width]
    rows(X, CT, c_sq, labels, best)
    S = X @ CT[:, :k] + c_sq[:k]
    expected = np.argmin(S, axis=1)
    if n > 7:
        expected[5] = 0
    np.testing.assert_array_equal(labels, expected)
    np.testing.assert_array_equal(best, S.min(axis=1))


@pytest.mark.skipif(not (_kernels_numba.FUSED_ARGMIN and _kernels_numba.BLAS_AVAILABLE),
                    reason="LLVM before 17 or SciPy not installed")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("k", [3, 16, 30, 64])
@pytest.mark.parametrize("weighted", [False, True])
def test_fused_sweep_equals_the_blas_products(dtype, k, weighted, monkeypatch):
    """The whole-block sweeps with fused tiles against BLAS products and brute force."""
    rng = np.random.default_rng(k)
    X = rng.normal(size=(2345, 9)).astype(dtype)
    C = X[rng.choice(len(X), k, replace=False)].copy()
    w = rng.uniform(0, 2, size=len(X)) if weighted else None
    base = replace(NUMBA, step=211, screen_min_k=None)  # a short last sub-block
    widths = []  # the padded centres of every sweep's fused tiles (0: BLAS products)
    init = _compiled.Distances.__init__

    def spy(self, *a, **kw):
        init(self, *a, **kw)
        widths.append(self.fused)

    monkeypatch.setattr(_compiled.Distances, "__init__", spy)
    out = {}
    for on in (True, False):
        plan = replace(base, fused=on)
        widths.clear()
        out[on] = (_kernels.lloyd_partial(X, C, w, n_far=5, plan=plan),
                   _kernels.assign(X, C, return_distances=True, plan=plan))
        assert widths == ([next(c for c in (16, 32, 48, 64) if c >= k)] * 2 if on else [0, 0])
    (a, aa), (b, ab) = out[True], out[False]
    np.testing.assert_allclose(a["counts"], b["counts"], rtol=1e-12)
    np.testing.assert_array_equal(aa[0], ab[0])
    np.testing.assert_allclose(aa[1], ab[1], **tol_for(dtype))
    np.testing.assert_allclose(a["sums"], b["sums"], **tol_for(dtype))
    np.testing.assert_allclose(a["inertia"], b["inertia"], **tol_for(dtype))
    np.testing.assert_array_equal(a["far"]["labels"], b["far"]["labels"])
    lab, dist, sums, counts, inertia = brute(X.astype(np.float64), C.astype(np.float64), w)
    np.testing.assert_array_equal(aa[0], lab)
    np.testing.assert_allclose(a["inertia"][0], inertia, **tol_for(dtype))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fused_operands_start_on_a_cache_line(dtype):
    """The centres' vectors of the fused tiles never straddle two cache lines: NumPy
    allocates on 16 bytes, the operands are placed on 64."""
    rng = np.random.default_rng(2)
    for k, d in ((3, 5), (16, 32), (40, 7), (64, 128)):
        C = rng.normal(size=(k, d)).astype(dtype)
        for _ in range(4):  # several allocations: some land off a 64-byte boundary
            dists = _compiled.Distances(NUMBA, C, 256, d)
            CT, c_sq = dists.fused_operands()
            width = dists.fused
            assert CT.ctypes.data % _compiled.ALIGN_BYTES == 0
            assert c_sq.ctypes.data % _compiled.ALIGN_BYTES == 0
            assert CT.shape == (d, width) and CT.flags.c_contiguous and CT.dtype == dtype
            np.testing.assert_array_equal(CT[:, :k], -2 * C.T)
            assert (CT[:, k:] == 0).all() and np.isinf(c_sq[k:]).all()
            np.testing.assert_allclose(c_sq[:k], (C.astype(np.float64) ** 2).sum(1),
                                       rtol=1e-5)
    a = _compiled.aligned_full((7, 3), 2.5, np.float32)
    assert a.ctypes.data % 64 == 0 and a.shape == (7, 3) and (a == 2.5).all()


@pytest.mark.skipif(not (_kernels_numba.FUSED_ARGMIN and _kernels_numba.BLAS_AVAILABLE),
                    reason="LLVM before 17 or SciPy not installed")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fused_sweep_prefetches_by_the_width_of_the_rows(dtype, monkeypatch):
    """The next sub-block is hinted into the cache for rows wider than
    ``fused_prefetch_row_bytes`` only; a hint never changes a result."""
    rng = np.random.default_rng(4)
    calls = []
    sweep = _kernels_numba.sweep_fused

    def spy(*args):
        calls.append(args[-1])
        return sweep(*args)

    monkeypatch.setattr(_kernels_numba, "sweep_fused", spy)
    for d in (8, 64, 65):
        X = rng.normal(size=(1000, d)).astype(dtype)
        C = X[:10].copy()
        w = rng.uniform(0, 2, size=len(X))
        out = []
        for limit in (0, 10**9, _thresholds.FUSED_PREFETCH_ROW_BYTES):
            plan = replace(NUMBA, step=97, screen_min_k=None, fused_prefetch_row_bytes=limit)
            calls.clear()
            out.append(_kernels.lloyd_partial(X, C, w, plan=plan))
            assert calls == [d * X.itemsize > limit]
        assert NUMBA.fused_prefetch_row_bytes == _thresholds.FUSED_PREFETCH_ROW_BYTES
        for other in out[1:]:
            for key in ("sums", "counts", "inertia"):
                np.testing.assert_array_equal(other[key], out[0][key])


@pytest.mark.skipif(not _kernels_numba.FUSED_ARGMIN, reason="LLVM before 17")
@pytest.mark.parametrize("layout", ["F", "strided"])
def test_fused_rows_take_any_layout(layout):
    rng = np.random.default_rng(5)
    base = rng.normal(size=(301, 14)).astype(np.float32)
    X = np.asfortranarray(base[:, :7]) if layout == "F" else base[:, ::2]
    C = rng.normal(size=(20, 7)).astype(np.float32)
    CT = np.zeros((7, 32), dtype=np.float32)
    CT[:, :20] = -2 * C.T
    c_sq = np.full(32, np.inf, dtype=np.float32)
    c_sq[:20] = (C * C).sum(axis=1)
    labels = np.empty(len(X), np.intp)
    best = np.empty(len(X), np.float32)
    _kernels_numba.fused_rows32(X, CT, c_sq, labels, best)
    ref_l, ref_b = np.empty_like(labels), np.empty_like(best)
    _kernels_numba.fused_rows32(np.ascontiguousarray(X), CT, c_sq, ref_l, ref_b)
    np.testing.assert_array_equal(labels, ref_l)
    np.testing.assert_array_equal(best, ref_b)
    np.testing.assert_array_equal(labels, np.argmin(X @ CT[:, :20] + c_sq[:20], axis=1))


@pytest.mark.skipif(not _kernels_numba.FUSED_ARGMIN, reason="LLVM before 17")
def test_fused_rows_refuse_operands_of_the_wrong_shape():
    X = np.zeros((10, 3), dtype=np.float32)
    CT = np.zeros((3, 16), dtype=np.float32)
    c_sq = np.zeros(16, dtype=np.float32)
    labels, best = np.empty(10, np.intp), np.empty(10, np.float32)
    _kernels_numba.fused_rows16(X, CT, c_sq, labels, best)  # the right shapes
    for args in ((X, np.zeros((3, 32), np.float32), c_sq, labels, best),
                 (X, np.zeros((4, 16), np.float32), c_sq, labels, best),
                 (X, CT, np.zeros(8, np.float32), labels, best),
                 (X, CT, c_sq, labels[:9], best)):
        with pytest.raises(ValueError, match="wrong shape"):
            _kernels_numba.fused_rows16(*args)


@pytest.mark.parametrize(("registers", "expected"), [
    ((32, 64), [6, 4, 4, 4, 3, 2]),  # AVX-512: the tuned table
    ((16, 32), [6, 2, 1, 1, 1, 1]),  # AVX2
    ((32, 16), [6, 2, 1, 1, 1, 1]),  # NEON
])
def test_tile_rows_keep_the_accumulators_in_registers(registers, expected):
    count, size = registers
    rows = [_llvm.tile_rows(v, registers) for v in (1, 2, 3, 4, 6, 8)]
    assert rows == expected
    for v, r in zip((1, 2, 3, 4, 6, 8), rows, strict=True):
        per = max(1, 64 // size)
        assert r == 1 or r * v * per + v * per + 1 <= count


@pytest.mark.parametrize("env, expect", [
    ({}, "host"), ({"NUMBA_CPU_NAME": "haswell"}, "host"),
    ({"NUMBA_CPU_NAME": "haswell", "NUMBA_CPU_FEATURES": "+avx2"}, False),
    ({"NUMBA_CPU_NAME": "skylake-avx512", "NUMBA_CPU_FEATURES": "+avx512f"}, True),
    ({"NUMBA_CPU_FEATURES": "-avx512f"}, False), ({"NUMBA_CPU_FEATURES": "+sse4.2,-avx"}, False),
    ({"NUMBA_CPU_NAME": "generic"}, False),
], ids=["host", "name-only", "avx2", "avx512", "no-avx512", "no-avx", "generic"])
def test_vector_registers_follow_numbas_own_target(env, expect, tmp_path):
    """The registers the tiles are sized for match the code numba emits, read in a
    fresh process with the same variables: a CPU name alone keeps the host's
    features (numba's rule), given features change the named CPU's."""
    import os
    import platform
    import subprocess
    import sys

    import llvmlite.binding as llvm

    if platform.machine().lower() not in ("x86_64", "amd64"):  # pragma: no cover
        pytest.skip("x86 names")
    code = """
from numba.core.registry import cpu_target
from daskmeans.kernels import _llvm, _plan
cg = cpu_target.target_context.codegen()
print(cg._get_host_cpu_name(), "+avx512f" in cg._tm_features.split(","),
      _llvm.vector_registers()[1], _plan.numba_target())
"""
    full = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_CPU_")}
    full.update(env, NUMBA_CACHE_DIR=str(tmp_path))
    out = subprocess.run([sys.executable, "-c", code], env=full, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    name, numba_avx512, size, target = out.stdout.split(" ", 3)
    if expect == "host":
        expect = bool(llvm.get_host_cpu_features().get("avx512f"))
        assert (numba_avx512 == "True") == expect, out.stdout  # numba's own features
    assert (int(size) == 64) == expect, out.stdout
    assert ("avx512f" in target) == expect, out.stdout
    if "NUMBA_CPU_NAME" in env:
        assert name == env["NUMBA_CPU_NAME"] == target.split()[1]


@pytest.mark.skipif(not _kernels_numba.COLUMN_TILES, reason="LLVM before 17")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("k", [1, 3, 4, 5, 64, 130])
@pytest.mark.parametrize("n", [1, 15, 17, 601])
def test_column_rows_match_numpy(dtype, k, n):
    """Column tiles: the first minimising centre and the minimum of ``x . (-2 c) + |c|^2``,
    in chunks of groups of any size."""
    rng = np.random.default_rng(k * 1000 + n)
    d = 11
    # small integers: exact products and many ties, which go to the first index
    X = rng.integers(-3, 4, size=(n, d)).astype(dtype)
    C = rng.integers(-2, 3, size=(k, d)).astype(dtype)
    G = _llvm.column_tile_shape()[1]
    Kp = k + (-k) % G
    Cm2 = np.zeros((Kp, d), dtype=dtype)
    Cm2[:k] = -2 * C
    c_sq = np.full(Kp, np.inf, dtype=dtype)
    c_sq[:k] = (C * C).sum(axis=1)
    if n > 7:
        X[5, 3] = np.nan  # a NaN row gets label 0
    S = X @ Cm2[:k].T + c_sq[:k]
    expected = np.argmin(S, axis=1)
    if n > 7:
        expected[5] = 0
    for step, chunk in ((n, 1000), (7, 1), (16, 2)):
        labels = np.full((1, n), -1, np.intp)
        dist = np.empty((1, n))
        _kernels_numba.nearest_columns(X, Cm2, c_sq, 0, 0, step, chunk, labels, dist, False)
        np.testing.assert_array_equal(labels[0], expected)
        XT, runv, runi = _kernels_numba._column_scratch(n, d, X)
        best = np.empty(n, dtype)
        _kernels_numba.column_rows(X, Cm2, c_sq, chunk, XT, runv, runi, labels[0], best)
        np.testing.assert_array_equal(best, S.min(axis=1))


@pytest.mark.skipif(not _kernels_numba.COLUMN_TILES, reason="LLVM before 17")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("k", [1, 2, 4, 5, 130])
@pytest.mark.parametrize("n", [1, 17, 601])
def test_column_top2_rows_match_numpy(dtype, k, n):
    """Column tiles with the second-best score: the first argmin, the minimum and
    the second-smallest score of ``x . (-2 c) + |c|^2`` (a tie with the minimum
    is the second), in chunks of groups of any size; infinity with one centre."""
    rng = np.random.default_rng(k * 1000 + n + 7)
    d = 11
    X = rng.integers(-3, 4, size=(n, d)).astype(dtype)  # exact products, many ties
    C = rng.integers(-2, 3, size=(k, d)).astype(dtype)
    G = _llvm.column_tile_shape()[1]
    Kp = k + (-k) % G
    Cm2 = np.zeros((Kp, d), dtype=dtype)
    Cm2[:k] = -2 * C
    c_sq = np.full(Kp, np.inf, dtype=dtype)
    c_sq[:k] = (C * C).sum(axis=1)
    S = X @ Cm2[:k].T + c_sq[:k]
    second = np.sort(S, axis=1)[:, 1] if k > 1 else np.full(n, np.inf, dtype)
    for chunk in (1, 2, 1000):
        XT, runv, runi = _kernels_numba._column_scratch(n, d, X)
        run2 = np.empty_like(runv)
        labels = np.full(n, -1, np.intp)
        best, sec = np.empty(n, dtype), np.empty(n, dtype)
        _kernels_numba.column_top2_rows(X, Cm2, c_sq, chunk, XT, runv, runi, run2, labels,
                                        best, sec)
        np.testing.assert_array_equal(labels, np.argmin(S, axis=1))
        np.testing.assert_array_equal(best, S.min(axis=1))
        np.testing.assert_array_equal(sec, second)


@pytest.mark.skipif(not _kernels_numba.COLUMN_TILES, reason="LLVM before 17")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_top2_columns_of_rows_equal_the_whole_block_sweep(dtype):
    """Any subset of rows, in any sub-blocks, gets bitwise the labels and minima of
    the column tiles over the whole block (rows far from the origin: their
    scores lose most digits and sit at near-ties), and its second-best score is
    the smallest score of another centre (brute force in float64 as a check)."""
    rng = np.random.default_rng(3)
    n, d, k = 1500, 16, 77
    X = (100.0 + rng.normal(size=(n, d))).astype(dtype)
    C = X[rng.choice(n, k, replace=False)].copy()
    dists = _compiled.Distances(COLUMNS, C, 256, d)
    Cp, c_sq = dists.column_operands(0, k)
    labels = np.empty((1, n), np.intp)
    _kernels_numba.nearest_columns(X, Cp, c_sq, 0, 0, 256, dists.chunk, labels,
                                   np.empty((0, 0)), False)
    XT, runv, runi = _kernels_numba._column_scratch(n, d, X)
    best = np.empty(n, dtype)
    _kernels_numba.column_rows(X, Cp, c_sq, 3, XT, runv, runi, np.empty(n, np.intp), best)
    rows = np.sort(rng.choice(n, 400, replace=False))[::-1].copy()  # any order
    for step, chunk in ((7, 1), (128, 2), (400, dists.chunk)):
        lab = np.empty(len(rows), np.int32)
        b1, b2 = np.empty(len(rows), dtype), np.empty(len(rows), dtype)
        _kernels_numba.top2_columns_of(X, rows, Cp, c_sq, step, chunk, lab, b1, b2)
        np.testing.assert_array_equal(lab, labels[0, rows])
        np.testing.assert_array_equal(b1, best[rows])
        assert (b2 >= b1).all()
    S = X[rows].astype(np.float64) @ (-2.0 * C.astype(np.float64)).T + (
        C.astype(np.float64) ** 2).sum(axis=1)
    S[np.arange(len(rows)), lab] = np.inf
    scale = np.abs(S[np.isfinite(S)]).max()
    np.testing.assert_allclose(b2, S.min(axis=1), atol=1e-4 * scale if dtype == np.float32
                               else 1e-12 * scale)


@pytest.mark.skipif(not (_kernels_numba.COLUMN_TILES and _kernels_numba.BLAS_AVAILABLE),
                    reason="LLVM before 17 or SciPy not installed")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("k", [3, 70, 300])
@pytest.mark.parametrize("weighted", [False, True])
def test_column_sweep_equals_the_blas_products(dtype, k, weighted):
    """The whole-block sweeps with column tiles against BLAS products and brute force."""
    rng = np.random.default_rng(k)
    X = rng.normal(size=(2345, 9)).astype(dtype)
    C = X[rng.choice(len(X), k, replace=False)].copy()
    w = rng.uniform(0, 2, size=len(X)) if weighted else None
    cols = replace(COLUMNS, column_min_k=1, step=211)  # a short last sub-block
    blas = replace(NUMBA, step=211, screen_min_k=None, fused=False)
    assert cols.path(dtype, k, n_features=9) == "columns"
    assert blas.path(dtype, k, n_features=9) in ("rowmajor", "transposed")
    a, aa = (_kernels.lloyd_partial(X, C, w, n_far=5, plan=cols),
             _kernels.assign(X, C, return_distances=True, plan=cols))
    b, ab = (_kernels.lloyd_partial(X, C, w, n_far=5, plan=blas),
             _kernels.assign(X, C, return_distances=True, plan=blas))
    np.testing.assert_array_equal(aa[0], ab[0])
    np.testing.assert_allclose(a["counts"], b["counts"], rtol=1e-12)
    np.testing.assert_allclose(aa[1], ab[1], **tol_for(dtype))
    np.testing.assert_allclose(a["sums"], b["sums"], **tol_for(dtype))
    np.testing.assert_allclose(a["inertia"], b["inertia"], **tol_for(dtype))
    np.testing.assert_array_equal(a["far"]["labels"], b["far"]["labels"])
    lab, dist, sums, counts, inertia = brute(X.astype(np.float64), C.astype(np.float64), w)
    np.testing.assert_array_equal(aa[0], lab)
    np.testing.assert_allclose(a["inertia"][0], inertia, **tol_for(dtype))


@pytest.mark.skipif(not _kernels_numba.COLUMN_TILES, reason="LLVM before 17")
def test_column_rows_refuse_operands_of_the_wrong_shape():
    X = np.zeros((10, 3), dtype=np.float32)
    G = _llvm.column_tile_shape()[1]
    C = np.zeros((G, 3), dtype=np.float32)
    c_sq = np.zeros(G, dtype=np.float32)
    XT, runv, runi = _kernels_numba._column_scratch(10, 3, X)
    labels, best = np.empty(10, np.intp), np.empty(10, np.float32)
    _kernels_numba.column_rows(X, C, c_sq, 1, XT, runv, runi, labels, best)  # the right shapes
    bad = [(X, np.zeros((G, 4), np.float32), c_sq, 1, XT, runv, runi),
           (X, C, np.zeros(G + 1, np.float32), 1, XT, runv, runi),
           (X, C, c_sq, 0, XT, runv, runi),
           (X, C, c_sq, 1, XT[:2], runv, runi)]
    if G > 1:
        bad.append((X, np.zeros((G + 1, 3), np.float32), np.zeros(G + 1, np.float32), 1, XT,
                    runv, runi))
    for args in bad:
        with pytest.raises(ValueError, match="wrong shape"):
            _kernels_numba.column_rows(*args, labels, best)


@pytest.mark.parametrize(("registers", "expected"), [
    ((32, 64), (2, 8)),  # AVX-512
    ((16, 32), (1, 4)),  # AVX2
    ((32, 16), (1, 4)),  # NEON
    ((16, 16), (1, 1)),  # SSE: correct, with accumulators spilled
])
def test_column_tile_shape_keeps_the_tile_in_registers(registers, expected):
    count, size = registers
    rv, cg = _llvm.column_tile_shape(registers)
    assert (rv, cg) == expected
    per = max(1, 64 // size)
    # accumulators, row vectors, running minima and indices, one broadcast value
    assert cg == 1 or per * rv * (cg + 3) + 1 <= count


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layout", ["C", "F", "strided"])
def test_transpose_rows_fills_exactly_the_transposed_rows(dtype, layout):
    """Blocks of 8 x 8 in registers for C-contiguous rows, the rest one by one; any
    other layout one by one; nothing outside ``XT[:d, :m]`` is written."""
    import numba

    @numba.njit(nogil=True)
    def run(Xs, XT):
        _kernels_numba.transpose_rows(Xs, XT)

    rng = np.random.default_rng(6)
    for m, d in ((8, 8), (16, 24), (13, 5), (7, 3), (64, 9), (1001, 37), (2048, 32)):
        X = rng.normal(size=(m, 2 * d)).astype(dtype)
        X = {"C": np.ascontiguousarray(X[:, :d]), "F": np.asfortranarray(X[:, :d]),
             "strided": X[:, ::2]}[layout]
        XT = np.full((d + 2, m + 5), np.nan, dtype=dtype)
        run(X, XT)
        np.testing.assert_array_equal(XT[:d, :m], X.T)
        assert np.isnan(XT[d:]).all() and np.isnan(XT[:, m:]).all()
    if layout == "C" and _llvm.transpose_kernel() is not None:
        with pytest.raises(ValueError, match="smaller"):
            run(X, np.empty((d, m - 1), dtype=dtype))


@pytest.mark.parametrize("bits", [32, 64])
def test_transpose_rounds_transpose_within_128_bit_halves(bits):
    """The shuffles of the 8 x 8 transpose move every value to its transposed
    place, and each either keeps every lane inside its vector's 128-bit half
    or moves whole 128-bit halves (one instruction each on x86)."""
    rounds, order = _llvm.transpose_rounds(bits)
    W = _llvm.TRANSPOSE_LANES
    assert len(rounds) == 3 and all(len(r) == W for r in rounds)
    values = [np.arange(W) + W * r for r in range(W)]  # row r: r * W + column
    for rnd in rounds:
        values = [np.concatenate([values[a], values[b]])[list(mask)] for a, b, mask in rnd]
    got = np.array([values[v] for v in order])
    np.testing.assert_array_equal(got, np.arange(W * W).reshape(W, W).T)
    half = 128 // bits
    for rnd in rounds:
        for _, _, mask in rnd:
            in_lane = all((m % W) // half == lane // half for lane, m in enumerate(mask))
            blocks = np.array(mask).reshape(-1, half)
            whole = ((blocks % half == np.arange(half)).all()
                     and (np.diff(blocks, axis=1) == 1).all())
            assert in_lane or whole, mask


@pytest.mark.skipif(not _kernels_numba.COLUMN_TILES, reason="LLVM before 17")
def test_column_tiles_are_correct_for_a_generic_target(tmp_path):
    """Compiled for the architecture's baseline CPU, in a fresh process: on x86 one
    without AVX (one centre per tile), on AArch64 plain NEON (32 registers of 16 bytes,
    which every AArch64 processor has)."""
    import os
    import platform
    import subprocess
    import sys

    arm = platform.machine().lower() in ("arm64", "aarch64")
    code = """
import numpy as np
from daskmeans.kernels import KernelPlan, _api, _llvm
assert _llvm.vector_registers() == REGISTERS, _llvm.vector_registers()
rng = np.random.default_rng(3)
X = rng.normal(size=(301, 5)).astype(np.float32)
C = X[:70].copy()
plan = KernelPlan.numba(columns=True, column_min_k=1)
assert plan.path(np.float32, 70) == "columns", plan.path(np.float32, 70)
labels, _ = _api.nearest(X, C, plan=plan)
D = ((X[:, None, :].astype(np.float64) - C[None]) ** 2).sum(-1)
assert (labels[0] == D.argmin(1)).all()
print("ok")
"""
    code = code.replace("REGISTERS", repr((32, 16) if arm else (16, 16)))
    env = {**os.environ, "NUMBA_CPU_NAME": "generic", "NUMBA_CACHE_DIR": str(tmp_path)}
    env.pop("NUMBA_CPU_FEATURES", None)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def _host_has_avx2() -> bool:
    import platform

    import llvmlite.binding as llvm

    return (platform.machine().lower() in _llvm.X86_MACHINES
            and bool(llvm.get_host_cpu_features().get("avx2")))


@pytest.mark.skipif(not (_kernels_numba.FUSED_ARGMIN and _kernels_numba.BLAS_AVAILABLE),
                    reason="LLVM before 17 or SciPy not installed")
@pytest.mark.skipif(not _host_has_avx2(), reason="needs an x86 processor with AVX2")
def test_fused_tiles_take_small_groups_of_wide_rows_with_avx2_code(tmp_path):
    """With AVX2 code (compiled for it in a fresh process, on any AVX2 host) float32
    groups of up to 32 centres with 32 features or more and little padding take the
    fused tiles, the others the column tiles; labels are the float64 argmin's and sums
    NumPy's on both."""
    import os
    import subprocess
    import sys

    code = """
import numpy as np
from daskmeans.kernels import KernelPlan, _api, _llvm, lloyd_partial
assert _llvm.vector_registers() == (16, 32), _llvm.vector_registers()
rng = np.random.default_rng(5)
X = rng.normal(size=(1001, 40)).astype(np.float32)
plan = KernelPlan.numba()
for k, path in ((5, "columns"), (10, "fused-16"), (16, "fused-16"), (17, "columns"),
                (26, "fused-32"), (32, "fused-32"), (33, "columns")):
    got = plan.path(np.float32, k, n_features=40)
    assert got.replace("columns-int16", "columns") == path, (k, got)
    assert plan.path(np.float32, k, n_features=31).startswith("columns")
    C = X[rng.choice(len(X), k, replace=False)].copy()
    labels, _ = _api.nearest(X, C, plan=plan)
    D = ((X[:, None, :].astype(np.float64) - C[None]) ** 2).sum(-1)
    assert (labels[0] == D.argmin(1)).all(), k
    a = lloyd_partial(X, C, plan=plan)
    b = lloyd_partial(X, C, plan=KernelPlan.numpy())
    np.testing.assert_array_equal(a["counts"], b["counts"])
    np.testing.assert_allclose(a["sums"], b["sums"], rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(a["inertia"], b["inertia"], rtol=1e-5)
print("ok")
"""
    env = {**os.environ, "NUMBA_CPU_NAME": "haswell", "NUMBA_CPU_FEATURES": "+avx2",
           "NUMBA_CACHE_DIR": str(tmp_path)}
    env.pop("DASKMEANS_KERNELS", None)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


@pytest.mark.skipif(not (_kernels_numba.COLUMN_TILES and _kernels_numba.BLAS_AVAILABLE),
                    reason="LLVM before 17 or SciPy not installed")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_column_sweep_of_several_groups_equals_the_blas_products(dtype):
    """Groups of different sizes, each labelled by the column tiles in turn."""
    rng = np.random.default_rng(11)
    X = rng.normal(size=(1500, 6)).astype(dtype)
    bounds = [0, 3, 40, 45]
    C = X[rng.choice(len(X), bounds[-1], replace=False)].copy()
    cols = replace(COLUMNS, column_min_k=1, step=333)
    blas = replace(NUMBA, step=333, screen_min_k=None, fused=False)
    assert cols.path(dtype, 45, n_groups=3, n_features=6) == "columns"
    a = _kernels.lloyd_partial(X, C, bounds=bounds, n_far=4, plan=cols)
    b = _kernels.lloyd_partial(X, C, bounds=bounds, n_far=4, plan=blas)
    la, _ = _kernels.nearest(X, C, bounds, plan=cols)
    lb, _ = _kernels.nearest(X, C, bounds, plan=blas)
    np.testing.assert_array_equal(la, lb)
    for g in range(3):
        assert ((la[g] >= bounds[g]) & (la[g] < bounds[g + 1])).all()
    np.testing.assert_allclose(a["counts"], b["counts"], rtol=1e-12)
    np.testing.assert_allclose(a["sums"], b["sums"], **tol_for(dtype))
    np.testing.assert_allclose(a["inertia"], b["inertia"], **tol_for(dtype))
    np.testing.assert_array_equal(a["far"]["labels"], b["far"]["labels"])


@pytest.mark.skipif(not _kernels_numba.COLUMN_TILES, reason="LLVM before 17")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n_probe", [1, 3, 6])
@pytest.mark.parametrize("with_second", [False, True])
@pytest.mark.parametrize("priced", [False, True])
def test_probe_cells_compiled_matches_numpy(dtype, n_probe, with_second, priced):
    """Two-level search by the column tiles: per (row, probed cell) the first
    best fine centre, its score (plus its price) and the cell's second-best, as
    NumPy's and brute force's; empty cells and one-centre cells included,
    sub-blocks of any size."""
    rng = np.random.default_rng(n_probe)
    n, d = 901, 7
    X = rng.integers(-3, 4, size=(n, d)).astype(dtype)  # exact products, many ties
    sizes = np.array([5, 0, 1, 13, 2, 0, 9])
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    fine = rng.integers(-2, 3, size=(offsets[-1], d)).astype(dtype)
    probes = np.argsort(rng.random((n, len(sizes))), axis=1)[:, :n_probe]
    # small integer prices: exact in either path
    prices = rng.integers(0, 3, size=len(fine)).astype(np.float64) if priced else None
    plan = replace(COLUMNS, step=50)
    fast = _kernels.probe_cells(X, probes, fine, offsets, prices, with_second=with_second,
                                plan=plan)
    slow = _kernels.probe_cells(X, probes, fine, offsets, prices, with_second=with_second,
                                plan=NUMPY)
    for a, b in zip(fast, slow, strict=True):
        np.testing.assert_array_equal(a, b)
    S = (X @ (-2 * fine).T + (fine * fine).sum(axis=1)).astype(np.float64)
    if priced:
        S += prices
    for i in (0, 17, 900):
        for p in range(n_probe):
            lo, hi = offsets[probes[i, p]], offsets[probes[i, p] + 1]
            if hi == lo:
                assert fast[1][i, p] == np.inf and fast[0][i, p] == 0
                continue
            s = S[i, lo:hi]
            assert fast[0][i, p] == lo + np.argmin(s) and fast[1][i, p] == s.min()
            if with_second:
                assert fast[2][i, p] == (np.sort(s)[1] if hi - lo > 1 else np.inf)


@pytest.mark.parametrize("tile_lines", [1, 2])  # AVX2 / NEON, AVX-512 (two row vectors)
@pytest.mark.parametrize("per_line", [8, 16])  # float64, float32
def test_column_scratch_width_holds_whole_tiles(tile_lines, per_line):
    """The transposed scratch is a whole, odd number of tiles wide on every target
    (a multiple of the tile height: the column loops reject anything else)."""
    tile = per_line * tile_lines
    for step in (1, 15, 16, 31, 32, 33, 1024, 2048, 2049):
        S = _kernels_numba.column_scratch_width(step, per_line, tile_lines)
        assert S >= step and S % tile == 0 and (S // tile) % 2 == 1
        assert S < step + 2 * tile


@pytest.mark.parametrize("plan", [NUMBA, COLUMNS, PLAIN, SUBBLOCK, NUMPY],
                         ids=["numba", "columns", "plain", "subblock", "numpy"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("k", [1, 5, 64, 300])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_a_non_finite_row_makes_the_inertia_non_finite(plan, dtype, k, bad):
    """The lazy check of the mini-batch fold relies on it (engine._fold.fold_block):
    one NaN or infinite value makes a sweep's inertia NaN or infinite, with any
    weight of its row (zero included), and every label stays a valid index."""
    rng = np.random.default_rng(k)
    X = rng.normal(size=(3000, 7)).astype(dtype)
    C = X[rng.choice(3000, k, replace=False)].copy()
    X[1234, 3] = bad
    for w in (None, np.ones(3000), np.where(np.arange(3000) == 1234, 0.0, 1.0)):
        with np.errstate(invalid="ignore", over="ignore"):
            out = _kernels.lloyd_partial(X, C, w, plan=plan)
        assert not np.isfinite(out["inertia"][0])
        assert np.isfinite(np.delete(out["sums"], np.unique(
            _kernels.assign(X[1234:1235], C, plan=plan)), axis=0)).all()
    with np.errstate(invalid="ignore", over="ignore"):
        labels = _kernels.assign(X, C, plan=plan)
    assert labels.min() >= 0 and labels.max() < k
