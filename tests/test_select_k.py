"""Tests of daskmeans.select_k: the rules, the shared passes and the done-when test."""

from __future__ import annotations

import importlib
import json

import dask.array as da
import numpy as np
import pytest

from daskmeans import KMeans
from daskmeans.datasets import make_blobs
from daskmeans.select_k import elbow_index, fk_scores, gap_choice, select_k

# the package attribute daskmeans.select_k is the function; this is the module
sk = importlib.import_module("daskmeans.select_k")


def separated_centres(k: int, d: int, seed: int, sep: float = 3.0) -> np.ndarray:
    """k centres in [-5, 5]^d at least ``sep`` apart."""
    rng = np.random.default_rng(seed)
    out: list = []
    while len(out) < k:
        c = rng.uniform(-5, 5, d)
        if all(np.linalg.norm(c - o) > sep for o in out):
            out.append(c)
    return np.array(out)


def small_blobs(n=3000, k=3, d=2, seed=0):
    C = separated_centres(k, d, seed)
    X, _ = make_blobs(n, d, C, cluster_std=[0.3] * k, chunk_rows=n // 4, random_state=seed)
    return X


# --------------------------------------------------------------------------- rules
def test_elbow_rule_picks_the_corner():
    ks = np.arange(1, 8)
    inertia = np.array([100.0, 50, 10, 8, 6, 4, 2])
    i, dist = elbow_index(ks, inertia)
    assert ks[i] == 3
    assert dist[0] == pytest.approx(0) and dist[-1] == pytest.approx(0)
    assert np.argmax(dist) == i


def test_fk_matches_hand_computation():
    # N_d = 2: alpha_2 = 1 - 3/8 = 0.625, alpha_3 = 0.625 + 0.375/6 = 0.6875
    S = {1: 100.0, 2: 40.0, 3: 30.0}
    f = fk_scores([1, 2, 3], S, 2)
    np.testing.assert_allclose(f, [1.0, 40 / (0.625 * 100), 30 / (0.6875 * 40)])
    assert fk_scores([2], {1: 0.0, 2: 0.0}, 3)[0] == 1.0


def test_gap_rule_smallest_k_within_one_sd():
    ks = [1, 2, 3, 4]
    gap = np.array([0.1, 0.5, 0.52, 0.53])
    s = np.array([0.01, 0.01, 0.05, 0.01])
    assert ks[gap_choice(ks, gap, s)] == 2  # 0.5 >= 0.52 - 0.05
    assert ks[gap_choice(ks, np.array([1.0, 2, 3, 4]), np.zeros(4))] == 4  # none: the largest


# --------------------------------------------------------------------------- select_k
def test_result_shape_models_and_json():
    X = small_blobs()
    res = select_k(X, [2, 3, 4, 5], n_refs=2, random_state=0, ref_size=2000)
    assert list(res.ks_) == [2, 3, 4, 5]
    assert set(res.scores_) == {"elbow", "gap", "fk", "silhouette"}
    assert all(len(v) == 4 for v in res.scores_.values())
    assert res.best_k_ == {"elbow": 3, "gap": 3, "fk": 3, "silhouette": 3}
    assert np.all(np.diff(res.inertia_) < 0)
    for k, model in res.models_.items():
        assert isinstance(model, KMeans)
        assert model.cluster_centers_.shape == (k, 2)
        assert model.cluster_sizes_.sum() == pytest.approx(3000)
        np.testing.assert_array_equal(model.cluster_centers_, res.cluster_centers_[k])
        # the stored inertia is that of the stored centres
        assert -model.score(X) == pytest.approx(model.inertia_, rel=1e-9)
    json.dumps(res.to_dict())
    assert res.gap_sd_.shape == (4,) and res.ref_log_inertia_.shape == (2, 4)


def test_passes_are_shared_and_counted(monkeypatch):
    X = small_blobs()
    calls = []
    real = sk.compute_passes

    def counting(*graphs):
        calls.append([str(g.key) for g in graphs])
        return real(*graphs)

    monkeypatch.setattr(sk, "compute_passes", counting)
    import daskmeans.engine._lloyd as lloyd_mod

    monkeypatch.setattr(lloyd_mod, "compute_passes", counting)
    from daskmeans.engine._graph import PassRunner

    real_call = PassRunner.__call__

    def counting_runner(self, consts):  # Lloyd passes built once, computed per iteration
        calls.append([f"{self.kwargs['name']}-result"])
        return real_call(self, consts)

    monkeypatch.setattr(PassRunner, "__call__", counting_runner)
    res = select_k(X, range(2, 9), methods=("elbow", "fk", "silhouette"), random_state=1)
    # preparation + shared Lloyd passes + one scoring pass, whatever the number of k
    assert res.n_passes_ == len(calls)
    assert res.n_ref_passes_ == 0
    lloyd_passes = sum(1 for c in calls if "kmeans-result" in c[0])
    assert lloyd_passes == res.n_passes_ - 2
    # every k iterates in the same passes: as many as the slowest candidate needs
    assert lloyd_passes >= max(m.n_iter_ for m in res.models_.values())
    assert lloyd_passes < sum(m.n_iter_ for m in res.models_.values())


def test_silhouette_matches_direct_computation():
    X = small_blobs(n=2000, k=3, seed=2)
    res = select_k(X, [2, 3], methods=("silhouette",), random_state=0)
    Xn = X.compute()
    for k, s in zip(res.ks_, res.scores_["silhouette"], strict=True):
        C = res.cluster_centers_[int(k)]
        D = np.sqrt(((Xn[:, None, :] - C[None]) ** 2).sum(-1))
        D.sort(axis=1)
        a, b = D[:, 0], D[:, 1]
        assert s == pytest.approx(np.mean((b - a) / np.maximum(a, b)), rel=1e-9)


def test_reproducible_and_numpy_input():
    X = small_blobs(n=1200, seed=3)
    r1 = select_k(X.compute(), [2, 3, 4], n_refs=2, random_state=5)
    r2 = select_k(X.compute(), [2, 3, 4], n_refs=2, random_state=5)
    np.testing.assert_array_equal(r1.inertia_, r2.inertia_)
    np.testing.assert_array_equal(r1.scores_["gap"], r2.scores_["gap"])


@pytest.mark.parametrize("init", ["random", "k-means||"])
def test_other_inits(init):
    X = small_blobs(n=1200, seed=4)
    res = select_k(X, [2, 3, 4], methods=("fk",), init=init, n_init=2, random_state=0)
    assert res.best_k_["fk"] == 3


@pytest.mark.parametrize(
    ("kwargs", "err", "match"),
    [
        ({"ks": [3]}, ValueError, "at least two"),
        ({"ks": [0, 2]}, ValueError, ">= 1"),
        ({"ks": [2, 5000]}, ValueError, "larger than n_samples"),
        ({"methods": ("nope",)}, ValueError, "methods"),
        ({"n_refs": 0}, ValueError, "n_refs"),
        ({"n_clusters": 3}, TypeError, "unexpected keyword"),
        ({"init": np.zeros((2, 2))}, ValueError, "init"),
    ],
)
def test_validation(kwargs, err, match):
    X = small_blobs(n=400)
    kwargs = {"ks": [2, 3], **kwargs}
    with pytest.raises(err, match=match):
        select_k(X, **kwargs)


# --------------------------------------------------------------------------- done when
@pytest.mark.slow
@pytest.mark.parametrize("k_true", [4, 6, 9])
def test_gap_and_fk_find_the_true_k(k_true):
    C = separated_centres(k_true, 5, seed=k_true)
    X, _ = make_blobs(200_000, 5, C, cluster_std=[0.3] * k_true, chunk_rows=50_000,
                      random_state=k_true)
    assert isinstance(X, da.Array)
    res = select_k(X, range(2, 12), methods=("gap", "fk"), n_refs=3, ref_size=20_000,
                   random_state=0)
    assert res.best_k_ == {"gap": k_true, "fk": k_true}
    # ten values of k (and f(K)'s k - 1) fitted in the passes of about one fit
    assert res.n_passes_ <= 40
    print(f"k={k_true}: {res.n_passes_} data passes, {res.n_ref_passes_} reference passes")


# --------------------------------------------------------------------------- command line
def test_cli_scan_k(tmp_path):
    import subprocess
    import sys

    from daskmeans.datasets import write_blobs

    C = separated_centres(3, 3, seed=7)
    write_blobs(tmp_path / "X.zarr", 6000, 3, C, cluster_std=[0.3] * 3, chunk_rows=1500,
                random_state=0)
    out = tmp_path / "scan"
    proc = subprocess.run(
        [sys.executable, "-m", "daskmeans", "scan-k", str(tmp_path / "X.zarr"), "--k-min", "2",
         "--k-max", "6", "--methods", "gap,fk,elbow", "--n-refs", "2", "--ref-size", "2000",
         "--out", str(out), "--json", "-q"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((out / "scores.json").read_text())
    assert doc["ks"] == [2, 3, 4, 5, 6]
    assert doc["best_k"] == {"gap": 3, "fk": 3, "elbow": 3}
    assert json.loads(proc.stdout)["n_passes"] == doc["n_passes"]
    assert (out / "k_selection.png").stat().st_size > 5000
    bad = subprocess.run(
        [sys.executable, "-m", "daskmeans", "scan-k", str(tmp_path / "X.zarr"), "--k-max", "3",
         "--methods", "gap,nope", "--out", str(out)],
        capture_output=True, text=True, timeout=60,
    )
    assert bad.returncode == 2 and "nope" in bad.stderr


# --------------------------------------------------------------------------- sparse input
def sparse_blobs(n=1200, d=20, seed=0):
    """Three blobs with most coordinates set to zero: (dense ndarray, CSR matrix)."""
    sparse = pytest.importorskip("scipy.sparse")
    rng = np.random.default_rng(seed)
    C = rng.uniform(-5, 5, (3, d))
    D = np.concatenate([c + 0.3 * rng.standard_normal((n // 3, d)) for c in C])
    D[np.abs(D) < 2] = 0.0
    return D, sparse.csr_matrix(D)


@pytest.mark.parametrize("init, chunks", [("k-means++", None), ("random", (300, -1)),
                                          ("k-means||", (300, -1))])
def test_sparse_matches_the_densified_matrix(init, chunks):
    D, S = sparse_blobs()
    assert S.nnz < 0.8 * D.size
    if chunks is not None:  # Dask arrays of CSR blocks against dense blocks of the same rows
        D, S = da.from_array(D, chunks=chunks), da.from_array(S, chunks=chunks)
    methods = ("elbow", "fk", "silhouette")
    a = select_k(S, [2, 3, 4, 5], methods=methods, random_state=0, init=init)
    b = select_k(D, [2, 3, 4, 5], methods=methods, random_state=0, init=init)
    assert a.best_k_ == b.best_k_ == {"elbow": 3, "fk": 3, "silhouette": 3}
    np.testing.assert_allclose(a.inertia_, b.inertia_, rtol=1e-10)
    for m in methods:
        np.testing.assert_allclose(a.scores_[m], b.scores_[m], rtol=1e-10, atol=1e-12)
    for k in a.ks_:
        assert isinstance(a.cluster_centers_[k], np.ndarray)
        np.testing.assert_allclose(a.cluster_centers_[k], b.cluster_centers_[k], rtol=1e-10,
                                   atol=1e-12)
        np.testing.assert_array_equal(a.models_[k].cluster_sizes_, b.models_[k].cluster_sizes_)
    assert a.n_passes_ == b.n_passes_


def test_sparse_refuses_gap_before_any_pass(monkeypatch):
    from daskmeans._errors import InvalidInputError

    _, S = sparse_blobs(n=300)

    def no_pass(*args, **kwargs):
        raise AssertionError("a pass ran before the method was refused")

    monkeypatch.setattr(sk, "compute_passes", no_pass)
    with pytest.raises(InvalidInputError, match="'gap'"):
        select_k(S, [2, 3], random_state=0)  # the default methods include the gap statistic
    with pytest.raises(InvalidInputError, match="'gap'"):
        select_k(da.from_array(S, chunks=(100, -1)), [2, 3], methods=("gap",), random_state=0)
