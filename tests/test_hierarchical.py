"""HierarchicalKMeans: two levels, one pass per iteration, probes and size caps."""

import dask.array as da
import numpy as np
import pytest

from daskmeans import HierarchicalKMeans, KMeans
from daskmeans.hierarchical import allocate, neighbor_lists, probe_labels
from daskmeans.testing import counting_dask


def _mixture(n=3000, d=6, n_comp=24, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    comp = rng.normal(size=(n_comp, d)) * 4
    sizes = rng.dirichlet(np.full(n_comp, 1.0))
    lab = rng.choice(n_comp, n, p=sizes)
    return (comp[lab] + rng.normal(size=(n, d))).astype(dtype)


def _brute_labels(X, C):
    D = ((X[:, None, :].astype(np.float64) - C[None].astype(np.float64)) ** 2).sum(-1)
    return D.argmin(1), D.min(1)


def test_one_coarse_cell_is_flat_kmeans():
    X = _mixture()
    hk = HierarchicalKMeans(20, n_coarse=1, max_iter=30, refine_iter=0, random_state=0).fit(X)
    km = KMeans(20, init=hk.initial_centers_, max_iter=30, algorithm="lloyd").fit(X)
    np.testing.assert_allclose(hk.cluster_centers_, km.cluster_centers_, rtol=1e-9, atol=1e-9)
    np.testing.assert_array_equal(hk.labels_, km.labels_)
    assert hk.inertia_ == pytest.approx(km.inertia_, rel=1e-9)
    assert hk.n_iter_ == km.n_iter_


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_all_probes_is_flat_assignment(dtype):
    X = _mixture(dtype=dtype)
    hk = HierarchicalKMeans(30, n_coarse=5, n_probe=5, random_state=1).fit(X)
    ref, dist = _brute_labels(X, hk.cluster_centers_)
    np.testing.assert_array_equal(hk.labels_, ref)
    np.testing.assert_array_equal(hk.predict(X), ref)
    assert hk.inertia_ == pytest.approx(dist.sum(), rel=1e-5)
    # one probe: the best centre of the row's nearest cell only
    lab1, _ = probe_labels(X, hk.coarse_centers_, hk.cluster_centers_, hk.cell_offsets_, 1)
    cells, _ = _brute_labels(X, hk.coarse_centers_)
    for i in range(0, len(X), 97):
        lo, hi = hk.cell_offsets_[cells[i]], hk.cell_offsets_[cells[i] + 1]
        sub, _ = _brute_labels(X[i : i + 1], hk.cluster_centers_[lo:hi])
        assert lab1[i] == lo + sub[0]


def test_refinement_improves_on_two_levels():
    X = _mixture(n=4000, n_comp=40, seed=2)
    plain = HierarchicalKMeans(40, n_coarse=6, n_probe=1, refine_iter=0, random_state=3).fit(X)
    refined = HierarchicalKMeans(40, n_coarse=6, n_probe=3, refine_iter=5,
                                 random_state=3).fit(X)
    assert refined.inertia_ <= plain.inertia_
    assert refined.passes_["refine"] >= 1


@pytest.mark.parametrize(("ratio", "n_probe"), [(2.0, 1)])
def test_balanced_caps_hold(ratio, n_probe):
    X = _mixture(n=3000, n_comp=6, seed=4)  # very unequal components
    w = np.random.default_rng(5).uniform(0.5, 2.0, len(X))
    hk = HierarchicalKMeans(12, n_coarse=3, balanced=True, max_size_ratio=ratio,
                            n_probe=n_probe, random_state=6).fit(X, sample_weight=w)
    sizes = np.bincount(hk.labels_, weights=w, minlength=12)
    np.testing.assert_allclose(sizes, hk.cluster_sizes_)
    assert sizes.max() <= ratio * w.sum() / 12 * (1 + 1e-9)
    free = HierarchicalKMeans(12, n_coarse=3, random_state=6).fit(X, sample_weight=w)
    assert free.cluster_sizes_.max() > ratio * w.sum() / 12  # the cap did something
    np.testing.assert_array_equal(hk.predict(X), hk.labels_)


def test_one_pass_per_iteration_at_each_level():
    X = _mixture(n=2000, seed=7)
    Xd, counter = counting_dask(X, 500)
    events = []
    hk = HierarchicalKMeans(16, n_coarse=4, max_iter=5, n_probe=2, refine_iter=2,
                            random_state=8, callback=events.append).fit(Xd)
    passes = hk.passes_
    assert passes["seed"] == 1 and 1 <= passes["fine"] <= 5 and passes["refine"] == 2
    assert counter.reads == hk.n_passes_ * Xd.numblocks[0]
    assert sum(e["phase"] == "fine" for e in events) == passes["fine"]
    assert sum(e["phase"] == "refine" for e in events) == passes["refine"]
    # the lazy labels and the inertia of the last pass are those of the two-level search
    nbrs = neighbor_lists(hk.cluster_centers_, hk.coarse_centers_, hk.cell_offsets_, 16)
    lab, dist = probe_labels(X, hk.coarse_centers_, hk.cluster_centers_, hk.cell_offsets_, 2,
                             neighbors=nbrs)
    np.testing.assert_array_equal(np.asarray(hk.labels_.compute()), lab)
    np.testing.assert_array_equal(hk.predict(X), lab)
    assert hk.inertia_ == pytest.approx(dist.sum(), rel=1e-9)


def test_model_round_trip(tmp_path):
    X = _mixture(dtype=np.float32)
    hk = HierarchicalKMeans(20, n_coarse=4, n_probe=2, balanced=True, random_state=9).fit(X)
    hk.save(tmp_path / "m.json")
    back = HierarchicalKMeans.load(tmp_path / "m.json")
    np.testing.assert_array_equal(back.cluster_centers_, hk.cluster_centers_)
    np.testing.assert_array_equal(back.cell_offsets_, hk.cell_offsets_)
    np.testing.assert_array_equal(back.predict(X), hk.predict(X))
    assert back.passes_ == hk.passes_


def test_allocate_and_bad_parameters():
    assert allocate(np.array([5.0, 0.0, 15.0]), 8).tolist() == [2, 0, 6]
    assert allocate(np.array([1.0, 1.0, 100.0]), 3).tolist() == [1, 1, 1]
    assert allocate(np.array([3.0, 1.0]), 10).sum() == 10
    X = _mixture(n=200)
    with pytest.raises(ValueError, match="n_coarse"):
        HierarchicalKMeans(4, n_coarse=5).fit(X)
    with pytest.raises(ValueError, match="n_probe"):
        HierarchicalKMeans(4, n_probe=0).fit(X)
    with pytest.raises(ValueError, match="max_size_ratio"):
        HierarchicalKMeans(4, balanced=True, max_size_ratio=0.5).fit(X)
    with pytest.raises(ValueError, match="n_clusters"):
        HierarchicalKMeans(500).fit(X)


def test_dask_input_with_weights_same_blocks_same_result():
    X = _mixture(n=1500, seed=10)
    w = np.random.default_rng(11).uniform(0.1, 3, len(X))
    wd = da.from_array(w, chunks=400)
    a = HierarchicalKMeans(9, n_coarse=3, random_state=12).fit(
        da.from_array(X, chunks=400), sample_weight=wd)
    Xc, _ = counting_dask(X, 400)
    b = HierarchicalKMeans(9, n_coarse=3, random_state=12).fit(Xc, sample_weight=wd)
    np.testing.assert_array_equal(a.cluster_centers_, b.cluster_centers_)
    assert a.inertia_ == b.inertia_
    nbrs = neighbor_lists(a.cluster_centers_, a.coarse_centers_, a.cell_offsets_, 16)
    lab, dist = probe_labels(X, a.coarse_centers_, a.cluster_centers_, a.cell_offsets_, 1,
                             neighbors=nbrs)
    np.testing.assert_array_equal(np.asarray(a.labels_.compute()), lab)
    assert a.inertia_ == pytest.approx(dist @ w, rel=1e-9)


def test_command_line_fit_hierarchical(tmp_path, capsys):
    import json

    import zarr

    from daskmeans.cli import main

    X = _mixture(n=1200, dtype=np.float32, seed=13)
    z = zarr.open_array(str(tmp_path / "x.zarr"), mode="w", shape=X.shape, chunks=(400, 6),
                        dtype=X.dtype)
    z[:] = X
    out = tmp_path / "res"
    assert main(["fit", str(tmp_path / "x.zarr"), "--algorithm", "hierarchical", "--k", "16",
                 "--n-probe", "2", "--balanced", "--max-size-ratio", "3", "--seed", "1",
                 "--n-neighbors", "4", "--coarse-iter", "3", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "[coarse-init]" in err and "[fine] iteration 1" in err and "[labels]" in err
    model = HierarchicalKMeans.load(out / "model.json")
    assert model.cluster_centers_.shape == (16, 6) and model.coarse_centers_.shape == (4, 6)
    labels = zarr.open_array(str(out / "labels.zarr"), mode="r")[:]
    np.testing.assert_array_equal(labels, model.predict(X))
    report = json.loads((out / "report.json").read_text())
    assert report["algorithm"] == "hierarchical" and report["passes"]["seed"] == 1
    assert report["n_passes"] == sum(report["passes"].values())
    assert model.n_neighbors == 4 and model.coarse_iter == 3
    assert report["passes"]["coarse"] <= 3 + 1  # the flag reached the coarse level
    assert report["parameters"]["n_neighbors"] == 4
    # without --max-iter: HierarchicalKMeans' own 5 fine iterations, not Lloyd's 300, and
    # the estimator's refinement defaults
    default = HierarchicalKMeans()
    assert report["parameters"]["max_iter"] == default.max_iter == model.max_iter == 5
    assert model.refine_iter == default.refine_iter and report["passes"]["refine"] >= 1


def test_command_line_hierarchical_bad_neighbors(tmp_path, capsys):
    import zarr

    from daskmeans.cli import main

    X = _mixture(n=300, dtype=np.float32, seed=3)
    zarr.open_array(str(tmp_path / "x.zarr"), mode="w", shape=X.shape, chunks=(100, 6),
                    dtype=X.dtype)[:] = X
    code = main(["fit", str(tmp_path / "x.zarr"), "--algorithm", "hierarchical", "--k", "8",
                 "--n-neighbors", "-1", "--out", str(tmp_path / "res")])
    assert code != 0
    assert "n_neighbors" in capsys.readouterr().err
    assert not (tmp_path / "res").exists()


def test_hierarchical_initialisation_of_flat_kmeans():
    X = _mixture(n=3000, n_comp=30, seed=15, dtype=np.float32)
    Xd, counter = counting_dask(X, 1000)
    km = KMeans(30, init="hierarchical", random_state=0).fit(Xd)
    # the initialisation's passes are counted, one read of every block each
    assert counter.reads == km.n_passes_ * Xd.numblocks[0]
    hk = HierarchicalKMeans(30, max_iter=5, random_state=0).fit(X)
    assert km.inertia_ <= hk.inertia_ * (1 + 1e-6)
    with pytest.raises(ValueError, match="init='hierarchical'"):
        KMeans(4, init="hierarchical", metric="cosine").fit(X)


def test_neighbor_step_never_worse_and_exact_with_every_centre():
    X = _mixture(n=2000, n_comp=30, seed=17)
    hk = HierarchicalKMeans(40, n_coarse=6, n_neighbors=0, random_state=18).fit(X)
    args = (X, hk.coarse_centers_, hk.cluster_centers_, hk.cell_offsets_, 1)
    _, d0 = probe_labels(*args)
    nbrs = neighbor_lists(hk.cluster_centers_, hk.coarse_centers_, hk.cell_offsets_, 8)
    assert nbrs.shape == (40, 8) and not (nbrs == np.arange(40)[:, None]).any()
    _, d1 = probe_labels(*args, neighbors=nbrs)
    assert (d1 <= d0 + 1e-9).all() and d1.sum() < d0.sum()
    # every other centre a neighbour: the flat assignment
    full = neighbor_lists(hk.cluster_centers_, hk.coarse_centers_, hk.cell_offsets_, 39, 6)
    lab, _ = probe_labels(*args, neighbors=full)
    np.testing.assert_array_equal(lab, _brute_labels(X, hk.cluster_centers_)[0])


@pytest.mark.parametrize("dask_input", [False, True])
def test_balanced_cap_enforced_when_prices_fall_short(dask_input, monkeypatch):
    import daskmeans.hierarchical as H

    monkeypatch.setattr(H, "_PRICE_PASSES", 1)  # the direct enforcement must do it
    rng = np.random.default_rng(19)
    comp = rng.normal(size=(8, 4)) * 5
    lab = rng.choice(8, 3000, p=rng.dirichlet(np.full(8, 0.3)))  # very unequal sizes
    X = comp[lab] + rng.normal(size=(3000, 4))
    w = rng.uniform(0.5, 2.0, len(X))
    Xin, win = ((da.from_array(X, chunks=700), da.from_array(w, chunks=700)) if dask_input
                else (X, w))
    hk = HierarchicalKMeans(30, n_coarse=5, balanced=True, max_size_ratio=1.2, max_iter=3,
                            random_state=20).fit(Xin, sample_weight=win)
    labels = np.asarray(hk.labels_.compute() if dask_input else hk.labels_)
    sizes = np.bincount(labels, weights=w, minlength=30)
    np.testing.assert_allclose(sizes, hk.cluster_sizes_)
    assert sizes.max() <= 1.2 * w.sum() / 30 * (1 + 1e-9)
    assert hk.passes_["labels"] == 2
    dist = ((X - hk.cluster_centers_[labels]) ** 2).sum(axis=1)
    assert hk.inertia_ == pytest.approx(dist @ w, rel=1e-6)


def test_sklearn_sparse_checks():
    # the tags say dense input only, and sparse input is refused as they say
    # (scikit-learn's check_estimator passes as a whole; these are its sparse checks)
    from sklearn.utils import estimator_checks as ec

    est = HierarchicalKMeans(4, random_state=0)
    assert est.__sklearn_tags__().input_tags.sparse is False
    for check in (ec.check_estimator_sparse_tag, ec.check_estimator_sparse_array,
                  ec.check_estimator_sparse_matrix):
        check("HierarchicalKMeans", est)


def test_empty_fine_centre_splits_the_largest_cluster_of_its_cell():
    from daskmeans.hierarchical import _reseed_empty

    C = np.array([[0.0, 0], [5, 5], [9, 9], [20, 20]])
    counts = np.array([10.0, 0, 30, 5])  # centre 1 empty; cell 0 = centres 0..2
    inertia = np.array([4.0, 0, 90, 50])
    offsets = np.array([0, 3, 4])
    moved = _reseed_empty(C, counts, inertia, offsets, np.random.default_rng(0))
    assert moved == 1
    # centre 2 (largest inertia of the cell, RMS radius sqrt(3)) is split about its mean
    np.testing.assert_allclose((C[1] + C[2]) / 2, [9, 9])
    assert np.linalg.norm(C[1] - C[2]) == pytest.approx(0.1 * np.sqrt(3))
    np.testing.assert_array_equal(C[[0, 3]], [[0, 0], [20, 20]])


@pytest.mark.parametrize("n_probe", [2, 5, 9, 12])
def test_coarse_probes_nearest_first(n_probe):
    from daskmeans.hierarchical import _coarse_probes

    X = _mixture(n=500, seed=21)
    coarse = X[::50].copy()  # 10 cells
    got = _coarse_probes(X, coarse, n_probe)
    D = ((X[:, None, :] - coarse[None]) ** 2).sum(-1)
    want = np.argsort(D, axis=1, kind="stable")[:, :n_probe]
    assert got.shape == (len(X), min(n_probe, len(coarse)))
    np.testing.assert_array_equal(got, want[:, : got.shape[1]])


# --------------------------------------------------------------------------- #
# deeper trees
# --------------------------------------------------------------------------- #
def _descend(X, levels):
    """Greedy top-down search with one probe a level, by brute force: cell indices."""
    cells = _brute_labels(X, levels[0][0])[0]
    for C, off in levels[1:]:
        for i in range(len(X)):
            lo, hi = off[cells[i]], off[cells[i] + 1]
            cells[i] = lo + _brute_labels(X[i : i + 1], C[lo:hi])[0][0]
    return cells


def test_three_levels_search_is_exact_with_every_cell():
    from daskmeans.hierarchical import CoarseTree, _coarse_probes

    X = _mixture(n=2000, n_comp=30, seed=23)
    hk = HierarchicalKMeans(60, n_levels=3, n_probe=1, random_state=24).fit(X)
    sizes = [len(C) for C, _ in hk.levels_]
    assert hk.n_levels_ == 3 and sizes == [4, 15, 60]  # round(60^(2/3)), round(sqrt(15))
    assert hk.coarse_centers_ is hk.levels_[1][0] and hk.cell_offsets_[-1] == 60
    for C, off in hk.levels_[1:]:  # every level grouped by its cells above
        assert off[0] == 0 and off[-1] == len(C) and (np.diff(off) >= 0).all()
    tree = CoarseTree(hk.levels_[:-1])
    # every cell of every level probed: the exact order of the coarse cells
    D = ((X[:, None, :] - hk.coarse_centers_[None]) ** 2).sum(-1)
    got = _coarse_probes(X, tree, 15)
    np.testing.assert_array_equal(np.sort(got, axis=1), np.tile(np.arange(15), (len(X), 1)))
    np.testing.assert_array_equal(got[:, :3], np.argsort(D, axis=1, kind="stable")[:, :3])
    # one probe: the greedy descent
    np.testing.assert_array_equal(_coarse_probes(X, tree, 1)[:, 0], _descend(X, hk.levels_[:-1]))
    # n_probe = the coarse cells: the flat assignment, in the labels and predict
    full = HierarchicalKMeans(60, n_levels=3, n_probe=15, random_state=24).fit(X)
    ref, dist = _brute_labels(X, full.cluster_centers_)
    np.testing.assert_array_equal(full.labels_, ref)
    np.testing.assert_array_equal(full.predict(X), ref)
    assert full.inertia_ == pytest.approx(dist.sum(), rel=1e-9)


def test_three_levels_inertia_close_to_two_and_flat():
    X = _mixture(n=6000, d=8, n_comp=40, seed=25, dtype=np.float32)
    two = HierarchicalKMeans(120, n_levels=2, random_state=26).fit(X)
    three = HierarchicalKMeans(120, n_levels=3, random_state=26).fit(X)
    flat = KMeans(120, n_init=1, random_state=26).fit(X)
    assert three.inertia_ == pytest.approx(two.inertia_, rel=0.05)
    assert three.inertia_ <= 1.05 * flat.inertia_
    np.testing.assert_array_equal(three.predict(X), three.labels_)


def test_three_levels_one_pass_per_iteration_at_each_level():
    X = _mixture(n=2000, seed=27)
    Xd, counter = counting_dask(X, 500)
    events = []
    hk = HierarchicalKMeans(40, n_levels=3, coarse_iter=3, max_iter=4, n_probe=2,
                            refine_iter=2, random_state=28, callback=events.append).fit(Xd)
    assert counter.reads == hk.n_passes_ * Xd.numblocks[0]
    top, mid, fine = hk.level_passes_
    assert 1 <= top["coarse"] <= 1 + 3 and mid["seed"] == 1 and 1 <= mid["fine"] <= 3
    assert fine == {"seed": 1, "fine": fine["fine"], "refine": 2, "labels": 1}
    assert 1 <= fine["fine"] <= 4
    assert hk.passes_["coarse"] == top["coarse"] + mid["seed"] + mid["fine"]
    assert hk.n_passes_ == sum(sum(p.values()) for p in hk.level_passes_)
    # every pass has one event, which names its level
    assert all("level" in e for e in events)
    for level, passes in enumerate(hk.level_passes_):
        mine = [e for e in events if e["level"] == level]
        for phase in ("seed", "fine", "refine", "labels"):
            assert sum(e["phase"] == phase for e in mine) == passes.get(phase, 0)
    assert sum(e["phase"] in ("coarse-init", "lloyd") for e in events) == top["coarse"]
    # the lazy labels are those of the tree search
    np.testing.assert_array_equal(np.asarray(hk.labels_.compute()), hk.predict(X))


def test_three_levels_model_round_trip_and_format_1(tmp_path):
    import json

    X = _mixture(dtype=np.float32, seed=29)
    hk = HierarchicalKMeans(30, n_levels=3, n_probe=2, random_state=30).fit(X)
    hk.save(tmp_path / "m.json")
    back = HierarchicalKMeans.load(tmp_path / "m.json")
    assert back.n_levels_ == 3 and back.level_passes_ == hk.level_passes_
    for (C, off), (C2, off2) in zip(hk.levels_, back.levels_, strict=True):
        np.testing.assert_array_equal(C, C2)
        np.testing.assert_array_equal(off, off2)
    np.testing.assert_array_equal(back.predict(X), hk.predict(X))
    np.testing.assert_array_equal(back.predict(X), hk.labels_)
    # a two-level model written in format 1 (coarse_centers_, no levels) still loads
    two = HierarchicalKMeans(20, n_coarse=4, random_state=31).fit(X)
    doc = two.to_dict()
    fit = doc["fitted"]
    fit["coarse_centers_"] = fit.pop("levels_")[0]["centers"]
    del fit["level_passes_"]
    doc["format_version"] = 1
    del doc["params"]["n_levels"]
    (tmp_path / "v1.json").write_text(json.dumps(doc))
    old = HierarchicalKMeans.load(tmp_path / "v1.json")
    assert old.n_levels_ == 2 and old.level_passes_[1]["labels"] == two.passes_["labels"]
    np.testing.assert_array_equal(old.coarse_centers_, two.coarse_centers_)
    np.testing.assert_array_equal(old.predict(X), two.predict(X))


def test_two_levels_explicit_is_the_default():
    from daskmeans.hierarchical import auto_levels

    X = _mixture(n=2000, seed=32, dtype=np.float32)
    a = HierarchicalKMeans(50, n_probe=3, random_state=33).fit(X)
    b = HierarchicalKMeans(50, n_levels=2, n_probe=3, random_state=33).fit(X)
    np.testing.assert_array_equal(a.cluster_centers_, b.cluster_centers_)
    np.testing.assert_array_equal(a.labels_, b.labels_)
    assert a.inertia_ == b.inertia_ and a.n_levels_ == 2 and len(a.levels_) == 2
    assert a.level_passes_[0] == {"coarse": a.passes_["coarse"]}
    # two levels at the sizes of the benchmarks (up to 100,000), three above 1,000,000
    assert [auto_levels(k) for k in (1, 10_000, 100_000, 1_000_000, 1_000_001)] == [
        2, 2, 2, 2, 3]


@pytest.mark.parametrize("bad", [1, 0, -2, "deep", 2.5, True, None])
def test_bad_n_levels(bad):
    X = _mixture(n=200)
    with pytest.raises((ValueError, TypeError), match="n_levels") as info:
        HierarchicalKMeans(4, n_levels=bad).fit(X)
    assert "auto" in str(info.value) and repr(bad) in str(info.value)


def test_command_line_fit_three_levels(tmp_path, capsys):
    import json

    import zarr

    from daskmeans.cli import main

    X = _mixture(n=1200, dtype=np.float32, seed=34)
    zarr.open_array(str(tmp_path / "x.zarr"), mode="w", shape=X.shape, chunks=(400, 6),
                    dtype=X.dtype)[:] = X
    out = tmp_path / "res"
    assert main(["fit", str(tmp_path / "x.zarr"), "--algorithm", "hierarchical", "--k", "27",
                 "--levels", "3", "--n-probe", "2", "--seed", "1", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "[seed] n_passes" in err and "level 1" in err and "level 2" in err
    model = HierarchicalKMeans.load(out / "model.json")
    assert model.n_levels == 3 and [len(C) for C, _ in model.levels_] == [3, 9, 27]
    labels = zarr.open_array(str(out / "labels.zarr"), mode="r")[:]
    np.testing.assert_array_equal(labels, model.predict(X))
    report = json.loads((out / "report.json").read_text())
    assert report["n_levels"] == 3 and report["level_sizes"] == [3, 9, 27]
    assert report["parameters"]["n_levels"] == 3
    assert report["n_passes"] == sum(sum(p.values()) for p in report["level_passes"])
    assert main(["fit", str(tmp_path / "x.zarr"), "--algorithm", "hierarchical", "--k", "8",
                 "--levels", "1", "--out", str(tmp_path / "bad")]) != 0
    assert "--levels" in capsys.readouterr().err and not (tmp_path / "bad").exists()


def _reference_d2_seeding(cands, k, rng):
    """k-means++ (D^2) sampling written out directly: the same draws as ``_kmeanspp``."""
    X = cands.astype(np.float64)
    chosen = [int(rng.integers(len(X)))]
    closest = ((X - X[chosen[0]]) ** 2).sum(axis=1)
    for _ in range(1, k):
        cum = np.cumsum(closest)
        if cum[-1] <= 0:
            chosen.append(int(rng.integers(len(X))))
        else:
            chosen.append(min(int(np.searchsorted(cum, rng.random() * cum[-1])), len(X) - 1))
        closest = np.minimum(closest, ((X - X[chosen[-1]]) ** 2).sum(axis=1))
    return cands[chosen]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cell_seeding_is_d2_sampling(dtype):
    from daskmeans.hierarchical import _kmeanspp

    cands = _mixture(n=800, d=6, n_comp=12, seed=4, dtype=dtype)
    got = _kmeanspp(cands, 60, np.random.default_rng(7))
    np.testing.assert_array_equal(got, _reference_d2_seeding(cands, 60, np.random.default_rng(7)))
    assert len({row.tobytes() for row in got}) == 60  # a chosen row has weight 0 after
    # fewer distinct rows than centres: every distinct row, then repeats
    dup = np.repeat(cands[:5], 3, axis=0)
    got = _kmeanspp(dup, 8, np.random.default_rng(1))
    assert {row.tobytes() for row in got} == {row.tobytes() for row in cands[:5]}
