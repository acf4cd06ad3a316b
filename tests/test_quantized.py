"""The int16-screened column tiles (:mod:`daskmeans.kernels._quantized`).

They must give the float32 column tiles' labels, sums and counts bitwise, on
any data: near ties, NaN and infinite rows, extreme scales, odd widths. The
plans compared differ in ``quantized`` only.
"""

from dataclasses import replace

import numpy as np
import pytest

from daskmeans.kernels import _plan

if not _plan.numba_installed():  # pragma: no cover
    pytest.skip("numba not installed", allow_module_level=True)

from daskmeans.kernels import KernelPlan, _llvm, _thresholds  # noqa: E402
from daskmeans.kernels import _api as _kernels  # noqa: E402
from daskmeans.kernels import _numba_loops as nb  # noqa: E402
from daskmeans.kernels import _quantized as qz  # noqa: E402

pytestmark = pytest.mark.skipif(not qz.INT_TILES, reason="LLVM before 17")

#: The column tiles for every group, with and without the int16 screen.
FLOAT = KernelPlan.numba(column_min_k=1, fused=False, quantized=False)
INT16 = replace(FLOAT, quantized=True, quantized_max_features=10**6)


def blobs(n, d, k, seed, scale=1.0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(8, d))
    X = centres[rng.integers(0, 8, n)] + rng.normal(size=(n, d)) * rng.uniform(
        0.3, 1.5, size=(n, 1))
    X = (X * scale).astype(np.float32)
    return X, np.ascontiguousarray(X[rng.choice(n, k, replace=False)])


def sweeps(X, C, w=None, bounds=None):
    """lloyd_partial and nearest under both plans."""
    out = []
    for plan in (INT16, FLOAT):
        part = _kernels.lloyd_partial(X, C, w, bounds=bounds, n_far=3, plan=plan)
        lab = _kernels.nearest(X, C, bounds if bounds is not None else [0, len(C)], plan=plan)
        out.append((part, lab))
    return out


def assert_same(X, C, w=None, bounds=None):
    (qp, (ql, qd)), (fp, (fl, fd)) = sweeps(X, C, w, bounds)
    np.testing.assert_array_equal(ql, fl)
    np.testing.assert_array_equal(qp["sums"], fp["sums"])  # bitwise, NaN where NaN
    np.testing.assert_array_equal(qp["counts"], fp["counts"])
    # distances from the differences to the centres (the float32 tiles' norms
    # lose them to cancellation far from the origin)
    finite = np.isfinite(X).all(axis=1)
    X64, C64 = X.astype(np.float64), C.astype(np.float64)
    exact = ((X64[None] - C64[ql]) ** 2).sum(-1)
    np.testing.assert_allclose(qd[:, finite], exact[:, finite], rtol=1e-5,
                               atol=1e-30 + 1e-6 * exact[:, finite].max(initial=0))
    wts = np.ones(len(X)) if w is None else w
    if finite.all():
        np.testing.assert_allclose(qp["inertia"], (exact * wts).sum(axis=1), rtol=1e-5)
    else:
        assert np.isnan(qp["inertia"]).all() and np.isnan(fp["inertia"]).all()
    return ql


@pytest.mark.parametrize("d", [1, 2, 3, 7, 32, 33, 130])
@pytest.mark.parametrize("k", [1, 5, 64, 200])
@pytest.mark.parametrize("weighted", [False, True])
def test_int16_screen_gives_the_float32_tiles_results(d, k, weighted):
    X, C = blobs(3000, d, k, seed=d * 1000 + k)
    w = np.random.default_rng(1).uniform(0.1, 3, len(X)) if weighted else None
    labels = assert_same(X, C, w)
    # and they are the nearest centres, where float32 scores can tell them apart
    X64, C64 = X.astype(np.float64), C.astype(np.float64)
    D = ((X64[:, None, :] - C64[None]) ** 2).sum(-1)
    gap = np.sort(np.concatenate([D, np.full((len(X), 1), np.inf)], axis=1), axis=1)[:, :2]
    size = (X64**2).sum(1) + (C64**2).sum(1).max()
    clear = gap[:, 1] - gap[:, 0] > 1e-5 * size
    assert clear.any()
    np.testing.assert_array_equal(labels[0][clear], D.argmin(axis=1)[clear])


@pytest.mark.parametrize("scale", [1e-30, 1e-3, 1e3, 1e18, 1e30])
def test_int16_screen_at_any_scale(scale):
    """Also where the float32 tiles' products are subnormal or overflow (their
    labels are kept, whatever they are worth there)."""
    X, C = blobs(2000, 16, 40, seed=3, scale=scale)
    (qp, (ql, _)), (fp, (fl, _)) = sweeps(X, C)
    np.testing.assert_array_equal(ql, fl)
    np.testing.assert_array_equal(qp["sums"], fp["sums"])
    np.testing.assert_array_equal(qp["counts"], fp["counts"])


def test_groups_and_offsets():
    X, C = blobs(2500, 12, 90, seed=4)
    X += 1e4  # far from the origin: products much larger than the distances
    C += 1e4
    assert_same(X, C, bounds=[0, 30, 31, 90])


def test_rows_with_nan_or_infinity_are_labelled_by_the_float_tiles():
    X, C = blobs(1500, 9, 20, seed=5)
    X[3, 2] = np.nan
    X[700, 0] = np.inf
    X[701, 8] = -np.inf
    X[1499] = np.nan
    labels = assert_same(X, C)
    assert labels[0][3] == labels[0][1499] == 0  # as every path labels a NaN row


def test_near_ties_are_labelled_again():
    """Rows halfway between two centres (up to far less than the int16 levels)
    go to the float32 tiles, whose labels they keep."""
    rng = np.random.default_rng(6)
    d, k = 16, 24
    C = rng.normal(size=(k, d)).astype(np.float32)
    a, b = C[0].astype(np.float64), C[1].astype(np.float64)
    t = rng.uniform(-1, 1, size=(800, 1)) * 1e-6
    X = (0.5 * (a + b) + t * (b - a)).astype(np.float32)
    X = np.concatenate([X, rng.normal(size=(800, d)).astype(np.float32)])
    labels = assert_same(X, C)
    assert set(labels[0][:800]) <= {0, 1}
    n = len(X)
    lab = np.empty(n, np.intp)
    G = _llvm.column_tile_shape()[1]
    Cq, inv_c, l1_c = qz.centre_operands(C, G)
    c_sq = np.full(len(Cq), np.inf, np.float32)
    c_sq[:k] = (C.astype(np.float64) ** 2).sum(1).astype(np.float32)
    scratch = qz._quantized_scratch(n, d, len(Cq))
    XQ, XTq, n_sq, flags, runv, runi, run2, redo, hint = scratch
    n_redo = qz.screen_rows(X, Cq, c_sq, k, inv_c, l1_c, qz.levels(d), 100, XQ, XTq, n_sq,
                            flags, runv, runi, run2, lab, redo, hint)
    again = set(redo[:n_redo])
    assert set(range(800)) <= again  # every tie
    assert n_redo < 800 + 200  # and few others


def test_levels_keep_every_sum_in_int32():
    for d in (1, 2, 3, 31, 32, 33, 256, 1000, 4096):
        Q = qz.levels(d)
        pairs = (d + 1) // 2
        assert 2 * pairs * Q * Q <= 2**29
        assert Q == 2**14 or 2 * pairs * (Q + 1) ** 2 > 2**29


def test_quantize_rows_rounds_on_the_sub_block_scale():
    rng = np.random.default_rng(7)
    X = rng.normal(size=(50, 5)).astype(np.float32)
    X[10, 1] = np.nan
    X[20, 4] = -np.inf
    Q = qz.levels(5)
    XQ = np.full((50, 6), 99, np.int16)
    flags = np.empty(50, np.int32)
    inv, top = qz.quantize_rows(X, Q, XQ, flags, np.float32(0))
    finite = np.isfinite(X).all(axis=1)
    np.testing.assert_array_equal(flags, np.where(finite, 0, -1))
    assert top == np.abs(X[finite]).max()
    assert np.float32(Q / np.abs(X[finite]).max()) == inv
    scaled = X[finite].astype(np.float64) * np.float64(inv)
    assert np.abs(scaled - XQ[finite, :5]).max() <= 0.5 + 1e-6
    assert np.abs(XQ).max() <= Q
    assert (XQ[~finite] == 0).all() and (XQ[:, 5] == 0).all()  # rows not finite, padding


def test_centre_operands():
    C = np.array([[1.0, -2.0, 0.5], [0.0, 0.25, -1.0]], np.float32)
    Cq, inv_c, l1_c = qz.centre_operands(C, 4)
    halves = Cq.view(np.int16)
    assert Cq.shape == (4, 2) and halves.shape == (4, 4)
    np.testing.assert_array_equal(halves[:2, :3], -np.rint(C * inv_c))
    assert (halves[2:] == 0).all() and (halves[:, 3] == 0).all()
    assert inv_c == qz.levels(3) / 2.0
    assert l1_c == np.abs(np.rint(C * inv_c)).sum(axis=1).max()
    C[1, 1] = np.inf
    assert qz.centre_operands(C, 4) is None


def test_non_finite_centres_take_the_float_tiles():
    X, C = blobs(600, 6, 10, seed=8)
    C[4, 2] = np.inf
    assert_same(X, C)


def test_int_tile_scores_are_exact_integer_products():
    """The tile's scores, labels and second-best scores against NumPy in int64,
    at the extreme levels."""
    rng = np.random.default_rng(9)
    d, k, m = 21, 13, 64
    Q = qz.levels(d)
    pairs = (d + 1) // 2
    xq = rng.integers(-Q, Q + 1, size=(m, 2 * pairs)).astype(np.int16)
    xq[:, d:] = 0
    xq[0, :d] = Q
    xq[1, :d] = -Q
    G = _llvm.column_tile_shape()[1]
    Kp = k + (-k) % G
    cq = np.zeros((Kp, 2 * pairs), np.int16)
    cq[:k, :d] = rng.integers(-Q, Q + 1, size=(k, d))
    cq[2] = cq[5]  # equal scores: the first index wins, the second equals the best
    n_sq = np.full(Kp, 2**31 - 1, np.int32)
    n_sq[:k] = rng.integers(0, 2**28, size=k)
    n_sq[5] = n_sq[2]
    XT = np.ascontiguousarray(xq.view(np.int32).T)
    S = XT.shape[1]
    runv, runi, run2 = (np.empty(S, np.int32) for _ in range(3))
    tile = qz._INT_TILE
    run = nb.numba.njit(lambda XT, Cq, n, g, v, i, s, T: [
        tile(XT, r, Cq, n, 0, g, v, i, s) for r in range(0, XT.shape[1], T)])
    run(XT, cq.view(np.int32), n_sq, Kp // G, runv, runi, run2, 16 * _llvm.column_tile_shape()[0])
    scores = n_sq[:k].astype(np.int64) + xq[:, :d].astype(np.int64) @ cq[:k, :d].astype(np.int64).T
    order = np.argsort(scores, axis=1, kind="stable")
    np.testing.assert_array_equal(runi[:m], order[:, 0])
    np.testing.assert_array_equal(runv[:m], scores.min(axis=1))
    np.testing.assert_array_equal(run2[:m], np.take_along_axis(scores, order[:, 1:2], 1)[:, 0])


def test_plan_screens_float32_column_tiles_where_int16_is_fast(monkeypatch):
    monkeypatch.delenv(_plan.KERNELS_ENV, raising=False)
    plan = KernelPlan.numba()
    assert plan.quantized == (plan.columns and qz.INT_TILES and _llvm.int16_madd_native()
                              and _llvm.vector_registers()[1] < 64)  # AVX2, not AVX-512
    q = replace(FLOAT, quantized=True)
    assert q.path(np.float32, 300, 1, 32) == "columns-int16"
    assert q.path(np.float64, 300, 1, 32) != "columns-int16"
    wide = _thresholds.QUANTIZED_MAX_FEATURES + 1
    assert q.path(np.float32, 300, 1, wide) == "columns"
    assert "screened in int16" in q.describe()
    assert replace(q, columns=False).path(np.float32, 300, 1, 32) != "columns-int16"
    assert not KernelPlan.numba(columns=False).quantized
    assert not _plan.choose_plan(np.float32, 300, 32, 10**7,
                                 mode="numba,quantized=false").quantized


@pytest.mark.parametrize("d", [4, 5])  # rows as wide as the int16 ones, or not
def test_quantize_rows_takes_the_scale_of_the_sub_blocks_before(d):
    rng = np.random.default_rng(10)
    X = rng.normal(size=(40, d)).astype(np.float32)
    top = np.abs(X).max()
    Q = qz.levels(d)
    width = d + d % 2
    flags = np.empty(40, np.int32)
    for hint, scale in ((2 * top, 2 * top), (top / 2, top), (np.float32(0), top)):
        XQ = np.full((40, width), 99, np.int16)
        inv, got = qz.quantize_rows(X, Q, XQ, flags, np.float32(hint))
        assert got == top and (flags == 0).all()
        expected = scale if d == width else top  # odd widths: the sub-block's own scale
        assert inv == np.float32(Q / np.float64(np.float32(expected)))
        np.testing.assert_array_equal(XQ[:, :d], np.rint(X * inv).astype(np.int16))
    X[7, 1] = np.nan
    XQ = np.full((40, width), 99, np.int16)
    inv, got = qz.quantize_rows(X, Q, XQ, flags, np.float32(2 * top))
    assert flags[7] == -1 and (XQ[7] == 0).all() and (np.delete(flags, 7) == 0).all()


def test_a_sweep_of_near_ties_leaves_the_int16_tiles():
    """Rows all at near ties would all be labelled twice: past a share of them
    (``_MAX_REDO``) the float32 tiles label the rest directly, with the same results."""
    rng = np.random.default_rng(11)
    d, k, n = 8, 6, 20000
    C = rng.normal(size=(k, d)).astype(np.float32)
    a, b = C[0].astype(np.float64), C[1].astype(np.float64)
    X = (0.5 * (a + b) + rng.uniform(-1, 1, size=(n, 1)) * 1e-7 * (b - a)).astype(np.float32)
    assert_same(X, C)
    G = _llvm.column_tile_shape()[1]
    Cq, inv_c, l1_c = qz.centre_operands(C, G)
    Cp = np.zeros((len(Cq), d), np.float32)
    Cp[:k] = -2 * C
    c_sq = np.full(len(Cq), np.inf, np.float32)
    c_sq[:k] = (C.astype(np.float64) ** 2).sum(1).astype(np.float32)
    labels = np.zeros((1, n), np.intp)
    step = 1000
    redone = qz.nearest_quantized(X, Cp, c_sq, C, Cq, inv_c, l1_c, 0, 0, step, 100, 100, labels,
                                  np.empty((0, 0)), False)
    assert qz._MIN_TALLY <= redone <= qz._MIN_TALLY + step  # then the float32 tiles alone
    assert set(labels[0]) <= {0, 1}


_OTHER_TARGET = """
import numpy as np
from dataclasses import replace
from daskmeans.kernels import KernelPlan, _api, _llvm
rng = np.random.default_rng(12)
X = rng.normal(size=(3001, 19)).astype(np.float32)
X[7, 3] = np.nan
C = X[rng.choice(np.arange(10, 3001), 70, replace=False)].copy()
flt = KernelPlan.numba(columns=True, column_min_k=1, fused=False, quantized=False)
q = replace(flt, quantized=True)
assert q.path(np.float32, 70, 1, 19) == "columns-int16"
a, b = _api.lloyd_partial(X, C, plan=q), _api.lloyd_partial(X, C, plan=flt)
assert np.array_equal(a["sums"], b["sums"], equal_nan=True)
assert np.array_equal(a["counts"], b["counts"])
la, lb = _api.nearest(X, C, plan=q)[0], _api.nearest(X, C, plan=flt)[0]
assert (la == lb).all()
print(_llvm.int16_madd_native(), "ok")
"""


@pytest.mark.parametrize("target", ["generic", "haswell"])
def test_int16_tiles_on_other_targets(target, tmp_path):
    """The portable multiply-add (any LLVM target, here generic x86-64 code) and
    AVX2's ``vpmaddwd``, compiled in a fresh process: the float32 tiles' results."""
    import os
    import platform
    import subprocess
    import sys

    import llvmlite.binding as llvm

    x86 = platform.machine().lower() in _llvm.X86_MACHINES
    if target == "haswell" and not (x86 and llvm.get_host_cpu_features().get("avx2")):
        pytest.skip("needs an x86 processor with AVX2")
    env = {**os.environ, "NUMBA_CPU_NAME": target, "NUMBA_CACHE_DIR": str(tmp_path)}
    env.pop("NUMBA_CPU_FEATURES", None)
    if target == "haswell":
        env["NUMBA_CPU_FEATURES"] = "+avx2"
    out = subprocess.run([sys.executable, "-c", _OTHER_TARGET], env=env, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    # vpmaddwd with AVX2 code; the portable form for generic code
    assert out.stdout.split() == [str(target == "haswell"), "ok"], out.stdout
