"""The kernel plan: how it is chosen, forced, described; lazy imports; warm-up."""

import dataclasses
import json
import os
import pickle
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest

from daskmeans import kernels
from daskmeans.kernels import KernelPlan, _plan, _thresholds, choose_plan
from daskmeans.testing import brute_force_lloyd

HAS_NUMBA = _plan.numba_installed()
needs_numba = pytest.mark.skipif(not HAS_NUMBA, reason="numba not installed")


def _run(code: str, **env) -> str:
    """Run ``code`` in a fresh interpreter (with ``env`` added); its stdout."""
    full = {k: v for k, v in os.environ.items() if k != "DASKMEANS_KERNELS"}
    full.update(env)
    out = subprocess.run([sys.executable, "-c", code], env=full, capture_output=True,
                         text=True, timeout=300, check=True)
    return out.stdout


def test_auto_plan_uses_numpy_below_the_threshold(monkeypatch):
    monkeypatch.delenv("DASKMEANS_KERNELS", raising=False)
    n = _thresholds.NUMBA_MIN_ELEMENTS // 8
    small = choose_plan(np.float32, 8, 8, n - 1)
    assert small.backend == "numpy" and not small.compiled
    assert "below" in small.reason and small.path(np.float32, 8) == "numpy"
    large = choose_plan(np.float32, 8, 8, n)
    assert large.backend == ("numba" if HAS_NUMBA else "numpy")
    # unknown row counts (NaN) are not small; integer data never compiled
    assert choose_plan(np.float64, 8, 8, float("nan")).backend == large.backend
    assert choose_plan(np.int64, 8, 8, 10**9).backend == "numpy"


@pytest.mark.parametrize("mode", ["numpy", "NumPy", " numpy "])
def test_env_forces_numpy(mode, monkeypatch):
    monkeypatch.setenv("DASKMEANS_KERNELS", mode)
    plan = choose_plan(np.float32, 8, 8, 10**9)
    assert plan == KernelPlan.numpy("DASKMEANS_KERNELS=numpy")
    assert plan.describe().startswith("NumPy and BLAS kernels")


@needs_numba
def test_env_forces_numba_modes_and_fields(monkeypatch):
    monkeypatch.setenv("DASKMEANS_KERNELS", "numba")
    assert choose_plan(np.float32, 8, 8, 10).compiled  # whatever the size
    full = KernelPlan.numba()
    monkeypatch.setenv("DASKMEANS_KERNELS", "numba-plain")
    plain = choose_plan(np.float32, 8, 8, 10)
    assert plain.compiled and not plain.vector_argmin and not plain.fused
    assert plain.whole_block == full.whole_block
    monkeypatch.setenv("DASKMEANS_KERNELS", "numba-subblock")
    sub = choose_plan(np.float32, 8, 8, 10)
    assert sub.compiled and not sub.whole_block and not sub.fused
    assert sub.path(np.float32, 100).startswith("subblock-")
    monkeypatch.setenv("DASKMEANS_KERNELS", "numba, rowmajor_max_k=16, step=512, screen_min_k=none")
    plan = choose_plan(np.float64, 40, 8, 10)
    assert (plan.rowmajor_max_k, plan.step, plan.screen_min_k) == (16, 512, None)
    assert plan.path(np.float64, 40) == "transposed"
    assert plan.path(np.float64, 12) == ("fused-16" if full.fused else "rowmajor")


@pytest.mark.parametrize("text", ["fast", "numba,step", "numba,colour=3", "numba,backend=numpy",
                                  "numba,step=many"])
def test_bad_env_value_names_the_variable(text, monkeypatch):
    monkeypatch.setenv("DASKMEANS_KERNELS", text)
    with pytest.raises(ValueError, match="DASKMEANS_KERNELS"):
        choose_plan(np.float32, 8, 8, 10)


def test_plan_checks_its_fields():
    with pytest.raises(ValueError, match="backend"):
        KernelPlan(backend="cuda")
    with pytest.raises(ValueError, match="compiled options"):
        KernelPlan(backend="numpy", fused=True)
    with pytest.raises(ValueError, match="whole_block"):
        KernelPlan(backend="numba", fused=True, whole_block=False)


def test_plan_is_immutable_hashable_and_pickles():
    plan = KernelPlan.numpy("why")
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.backend = "numba"
    assert pickle.loads(pickle.dumps(plan)) == plan
    assert len({plan, dataclasses.replace(plan), KernelPlan.numpy("other")}) == 2
    from dask.base import tokenize

    assert tokenize(plan) == tokenize(dataclasses.replace(plan))
    assert tokenize(plan) != tokenize(dataclasses.replace(plan, step=64))


@needs_numba
def test_describe_states_the_path():
    plan = KernelPlan.numba(columns=False)
    text = plan.describe(np.float64, 100)
    assert text.startswith("numba kernels") and "path " in text and plan.target in text
    assert plan.path(np.float64, 100) == "screened-transposed"
    assert plan.path(np.float32, 100) == "transposed"
    assert plan.path(np.float32, 20, n_groups=2) == "rowmajor"
    assert plan.path(np.int32, 20) == "numpy"


@needs_numba
def test_column_tiles_take_one_group_from_their_threshold():
    from daskmeans.kernels import _numba_loops

    if not _numba_loops.COLUMN_TILES:  # pragma: no cover
        pytest.skip("this LLVM builds no column tiles")
    # the fields below AVX-512, whatever this machine's (see the next test)
    plan = KernelPlan.numba(columns=True, column_min_k=1, column_max_features_f64=64)
    k = 100
    assert plan.path(np.float32, k) == "columns"
    assert "column tiles" in plan.describe()
    # groups take their turns; float64 beyond its width limit keeps the screened products
    assert plan.path(np.float32, k, n_groups=2) == "columns"
    assert replace(plan, column_min_k=k).path(np.float32, k, n_groups=2) == "transposed"
    wide = plan.column_max_features_f64 + 1
    assert plan.path(np.float64, k, n_features=wide) == "screened-transposed"
    assert plan.path(np.float64, k, n_features=8) == "columns"
    assert not plan.screened(np.float64, k, n_features=8)
    with pytest.raises(ValueError, match="columns=True needs whole_block"):
        KernelPlan(backend="numba", columns=True, whole_block=False)


def test_host_isa_names_the_machine():
    text = kernels.host_isa()
    assert text.split(":")[0] and ":" in text


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_default_plan_of_a_call_is_the_plan_of_its_array(dtype):
    """Without ``plan=``, a kernel call runs what choose_plan says for its array."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(500, 3)).astype(dtype)
    C = X[:4].copy()
    default = kernels.lloyd_partial(X, C)
    numpy_plan = kernels.lloyd_partial(X, C, plan=KernelPlan.numpy())
    for key in ("sums", "counts", "inertia"):
        np.testing.assert_array_equal(default[key], numpy_plan[key])
    lab, *_ = brute_force_lloyd(X, C)
    np.testing.assert_array_equal(kernels.assign(X, C), lab)


def test_import_loads_neither_dask_sklearn_nor_numba():
    out = _run("import sys, daskmeans; print(sorted(m for m in "
               "('dask', 'sklearn', 'numba', 'scipy') if m in sys.modules))")
    assert out.strip() == "[]"


def test_lazy_public_names_resolve():
    import daskmeans

    assert set(daskmeans.__all__) <= set(dir(daskmeans))
    assert daskmeans.KMeans.__name__ == "KMeans"
    assert daskmeans.MiniBatchKMeans.__name__ == "MiniBatchKMeans"
    assert callable(daskmeans.open_zarr) and callable(daskmeans.write_labels)
    assert callable(daskmeans.select_k) and callable(daskmeans.vq.kmeans2)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        daskmeans.nope  # noqa: B018


def test_small_fit_never_imports_numba():
    """A fit the automatic plan gives to NumPy neither imports nor compiles numba's kernels."""
    code = ("import sys, numpy as np\n"
            "from daskmeans import KMeans\n"
            "X = np.random.default_rng(0).normal(size=(2000, 3)).astype(np.float32)\n"
            "KMeans(4, random_state=0, max_iter=5).fit(X)\n"
            "print('daskmeans.kernels._numba_loops' in sys.modules)\n")
    assert _run(code, DASKMEANS_KERNELS="auto").strip() == "False"


@needs_numba
def test_verbose_fit_prints_the_plan(capsys, monkeypatch):
    monkeypatch.delenv("DASKMEANS_KERNELS", raising=False)
    from daskmeans import KMeans

    X = np.random.default_rng(0).normal(size=(300, 2))
    KMeans(3, random_state=0, max_iter=2, verbose=1, n_init=1).fit(X)
    out = capsys.readouterr().out
    assert "[daskmeans] kernels: NumPy and BLAS kernels" in out


@needs_numba
def test_numba_cache_dir_is_respected(tmp_path):
    out = _run("from daskmeans.kernels import cache_location; print(cache_location())",
               NUMBA_CACHE_DIR=str(tmp_path))
    assert out.strip().startswith(str(tmp_path))


@needs_numba
def test_warm_up_runs_every_mode():
    report = kernels.warm_up(["float32"])
    extra = {"numba-float-columns float32"} if KernelPlan.numba().quantized else set()
    assert set(report["steps"]) == {"numba float32", "numba-plain float32",
                                    "numba-subblock float32"} | extra
    assert report["cache"] and report["target"] == KernelPlan.numba().target


_AFTER_WARM_UP = """
import os, numpy as np, scipy.sparse
from numba.core.dispatcher import Dispatcher
from daskmeans import KMeans, HierarchicalKMeans, kernels
from daskmeans.kernels import _bounds, _numba_loops, _quantized, _sparse
kernels.warm_up(["float32"])
def compiled():
    ds = [v for m in (_numba_loops, _quantized) for v in vars(m).values()
          if isinstance(v, Dispatcher)]
    ds += [v for v in vars(_bounds._nb()).values() if isinstance(v, Dispatcher)]
    ds.append(_sparse._loops())
    return {(d.py_func.__qualname__, id(d)): len(d.signatures) for d in ds}
before = compiled()
os.environ["DASKMEANS_KERNELS"] = "numba"
rng = np.random.default_rng(0)
X = (rng.normal(size=(60, 6)) * 3)[rng.integers(0, 60, 6000)] + rng.normal(size=(6000, 6))
X = X.astype(np.float32)
w = rng.uniform(0.5, 2, len(X))
for algorithm in ("lloyd", "pruned"):
    for k in (5, 40, 70):
        KMeans(k, algorithm=algorithm, n_init=1, max_iter=4, random_state=0).fit(X, sample_weight=w)
        KMeans(k, algorithm=algorithm, n_init=1, max_iter=4, random_state=0).fit(X).predict(X)
HierarchicalKMeans(300, random_state=0, max_iter=2, refine_iter=1).fit(X)
KMeans(5, n_init=1, max_iter=3, random_state=0).fit(scipy.sparse.csr_matrix(X))
after = compiled()
print(sorted(name for name, n in after.items() if n != before[name]))
"""


@needs_numba
def test_fits_after_warm_up_compile_nothing(tmp_path):
    """``warm_up`` compiles what float32 fits with the compiled kernels use: plain and
    pruned Lloyd, weights, predict, HierarchicalKMeans, sparse rows (fresh cache)."""
    out = _run(_AFTER_WARM_UP, NUMBA_CACHE_DIR=str(tmp_path))
    assert out.strip() == "[]", out


def test_warm_up_without_numba_does_nothing(monkeypatch):
    from daskmeans.kernels import _warmup

    monkeypatch.setattr(_warmup, "numba_installed", lambda: False)
    assert _warmup.warm_up() == {"cache": None, "target": None, "steps": {}, "seconds": 0.0}


def test_warm_up_command(monkeypatch, capsys):
    from daskmeans.cli import main
    from daskmeans.kernels import _warmup

    monkeypatch.setattr(_warmup, "numba_installed", lambda: False)
    assert main(["warm-up", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["cache"] is None
    assert main(["warm-up"]) == 0
    assert "numba is not installed" in capsys.readouterr().err


@needs_numba
@pytest.mark.parametrize(("registers", "min_k", "f64", "fused_first"), [
    ((32, 64), 65, False, 0),  # AVX-512: float32 beyond the fused tiles' 64 centres
    ((16, 32), 1, True, 32),  # AVX2: but the fused tiles for <= 32 centres of wide rows
    ((32, 16), 1, True, 0),  # NEON
    ((16, 16), 1, True, 0),  # SSE
])
def test_column_tiles_by_the_vector_registers(monkeypatch, registers, min_k, f64, fused_first):
    from daskmeans.kernels import _llvm, _numba_loops

    cols = _thresholds.column_defaults(registers)
    assert cols["columns"] and cols["column_min_k"] == min_k
    assert (cols["column_max_features_f64"] > 0) is f64
    assert cols["fused_first_max_k"] == fused_first
    assert cols["quantized"] is (registers != (32, 64))  # int16 screen below AVX-512
    if not _numba_loops.COLUMN_TILES:  # pragma: no cover
        pytest.skip("this LLVM builds no column tiles")
    # the plan a fit chooses follows them
    monkeypatch.setattr(_llvm, "vector_registers", lambda: registers)
    plan = KernelPlan.numba()
    assert plan.column_min_k == min_k

    def cols(*args, **kw):  # the column tiles, screened in int16 or not
        return plan.path(*args, **kw).startswith("columns")

    assert cols(np.float32, 1000, n_features=16)
    assert cols(np.float64, 1000, n_features=16) is f64
    assert cols(np.float32, 64, n_features=16) is (min_k <= 64)
    # float32 rows of 32 features or more: the fused tiles up to fused_first centres that
    # leave at most FUSED_FIRST_MAX_PAD of a tile's width (16 or 32) as padding
    wide = _thresholds.FUSED_FIRST_MIN_FEATURES
    pad = _thresholds.FUSED_FIRST_MAX_PAD
    for k in (1, 16 - pad - 1, 16 - pad, 16, 17, 32 - pad - 1, 32 - pad, 32, 33):
        width = 16 if k <= 16 else 32
        fused = k <= 64 if min_k > 64 else (k <= fused_first and width - k <= pad)
        assert (not cols(np.float32, k, n_features=wide)) is fused, k
        # narrower rows, unknown widths, float64, several groups: as before
        assert cols(np.float32, k, n_features=wide - 1) is (min_k <= k)
        assert cols(np.float32, k) is (min_k <= k)
        assert cols(np.float32, 2 * k, 2, n_features=wide) is (min_k <= k)
        assert cols(np.float64, k, n_features=wide) is (f64 and min_k <= k)
