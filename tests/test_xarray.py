"""daskmeans.xarray: DataArray/Dataset in, label maps and named centres out; CLI on Zarr groups."""

from __future__ import annotations

import json
import runpy
import subprocess
import sys
import warnings
from pathlib import Path

import dask.array as da
import numpy as np
import pytest

xr = pytest.importorskip("xarray", reason="xarray is not installed (daskmeans[xarray])")

import daskmeans.xarray as dkx  # noqa: E402
from daskmeans import KMeans  # noqa: E402
from daskmeans.testing import CountingArray  # noqa: E402

T, Y, X, B = 2, 12, 16, 3
CHUNKS = (1, 6, 8, B)
BANDS = ["red", "nir", "swir"]
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _cube_values(seed=0):
    """(time, y, x, band) with three spectral classes along x and a NaN land mask."""
    rng = np.random.default_rng(seed)
    means = np.array([[0.0, 0.0, 0.0], [5.0, 1.0, 3.0], [1.0, 6.0, -2.0]])
    cls = np.broadcast_to((np.arange(X) * 3 // X)[None, None, :], (T, Y, X))
    v = means[cls] + rng.normal(scale=0.3, size=(T, Y, X, B))
    land = np.zeros((Y, X), bool)
    land[:4, :5] = True
    v[:, land, :] = np.nan
    v[1, 7, 9, 2] = np.nan  # one sample with a single missing band is omitted too
    return v


def _cube(values=None, *, counter=False):
    values = _cube_values() if values is None else values
    src = CountingArray(values) if counter else values
    data = da.from_array(src, chunks=CHUNKS, asarray=True, inline_array=False)
    if counter:
        src.reads = 0
    arr = xr.DataArray(
        data, dims=("time", "y", "x", "band"), name="reflectance",
        coords={"time": np.array(["2024-01-01", "2024-02-01"], dtype="datetime64[ns]"),
                "y": 100.0 - np.arange(Y), "x": 10.0 + np.arange(X), "band": BANDS,
                "wavelength": ("band", [665.0, 842.0, 1610.0])},
    )
    return (arr, src) if counter else arr


def _start(values):
    rows = values.reshape(-1, B)
    ok = rows[~np.isnan(rows).any(axis=1)]
    return ok[[0, len(ok) // 2, len(ok) - 1]].copy()


def _reference(values, init):
    """Fit the stacked NumPy array with the NaN rows removed, from the same start."""
    rows = values.reshape(-1, B)
    mask = np.isnan(rows).any(axis=1)
    ref = KMeans(3, init=init).fit(rows[~mask])
    labels = np.full(len(rows), -1)
    labels[~mask] = ref.labels_
    return ref, labels.reshape(values.shape[:-1])


def test_dataarray_equals_stacked_numpy_without_nan_rows():
    values = _cube_values()
    cube = _cube(values)
    init = _start(values)
    model = KMeans(3, init=init, nan_policy="omit")
    labels = dkx.fit_predict(model, cube, feature_dim="band")
    ref, ref_labels = _reference(values, init)
    np.testing.assert_allclose(model.cluster_centers_, ref.cluster_centers_, rtol=1e-7)
    assert isinstance(labels.data, da.Array)  # lazy
    assert labels.dims == ("time", "y", "x")
    assert labels.dtype.kind == "i"
    assert labels.data.chunks == cube.data.chunks[:3]
    got = labels.values
    np.testing.assert_array_equal(got, ref_labels)
    assert (got[:, :4, :5] == -1).all() and got[1, 7, 9] == -1
    assert model.n_omitted_ == int((ref_labels == -1).sum())
    for name in ("time", "y", "x"):
        np.testing.assert_array_equal(labels[name].values, cube[name].values)
    assert "wavelength" not in labels.coords and "band" not in labels.coords


def test_feature_dim_anywhere_and_numpy_backed():
    values = _cube_values()
    init = _start(values)
    _, ref_labels = _reference(values, init)
    cube = _cube(values).transpose("band", "x", "time", "y")
    labels = dkx.fit_predict(KMeans(3, init=init, nan_policy="omit"), cube, feature_dim="band")
    assert labels.dims == ("x", "time", "y")
    np.testing.assert_array_equal(labels.transpose("time", "y", "x").values, ref_labels)
    in_memory = _cube(values).compute()
    labels = dkx.fit_predict(KMeans(3, init=init, nan_policy="omit"), in_memory,
                             feature_dim="band")
    np.testing.assert_array_equal(labels.values, ref_labels)


def test_dataset_variables_are_features():
    values = _cube_values()
    init = _start(values)
    ds = _cube(values).drop_vars("wavelength").to_dataset(dim="band")
    assert list(ds.data_vars) == BANDS
    model = KMeans(3, init=init, nan_policy="omit")
    labels = dkx.fit_predict(model, ds)
    ref, ref_labels = _reference(values, init)
    np.testing.assert_allclose(model.cluster_centers_, ref.cluster_centers_, rtol=1e-7)
    np.testing.assert_array_equal(labels.values, ref_labels)
    C = dkx.centers(model, ds)
    assert C.dims == ("cluster", "variable")
    assert list(C["variable"].values) == BANDS
    np.testing.assert_array_equal(C.values, model.cluster_centers_)


def test_centers_carry_feature_coordinates():
    values = _cube_values()
    cube = _cube(values)
    model = KMeans(3, init=_start(values), nan_policy="omit")
    dkx.fit_predict(model, cube, feature_dim="band")
    C = dkx.centers(model, cube, feature_dim="band")
    assert C.dims == ("cluster", "band")
    assert list(C["band"].values) == BANDS
    np.testing.assert_array_equal(C["wavelength"].values, [665.0, 842.0, 1610.0])
    np.testing.assert_array_equal(C["cluster"].values, [0, 1, 2])


def test_no_extra_pass_and_no_large_chunk():
    cube, counter = _cube(counter=True)
    n_blocks = cube.data.npartitions
    model = KMeans(3, nan_policy="omit", random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", da.PerformanceWarning)
        labels = dkx.fit_predict(model, cube, feature_dim="band")
        # fit: one read of every block per pass, plus the block holding the first
        # k-means|| centre
        assert model.n_passes_ * n_blocks <= counter.reads <= model.n_passes_ * n_blocks + 1
        before = counter.reads
        labels.compute()
    assert counter.reads - before == n_blocks  # labels: exactly one more pass
    stacked = dkx.stack_samples(cube.data)
    assert max(stacked.chunks[0]) == np.prod(CHUNKS[:3])  # blocks keep their size
    assert stacked.numblocks[0] == n_blocks


def test_predict_and_to_zarr_chunk_by_chunk(tmp_path):
    values = _cube_values()
    cube = _cube(values)
    model = KMeans(3, init=_start(values), nan_policy="omit")
    fitted = dkx.fit_predict(model, cube, feature_dim="band")
    labels = dkx.predict(model, cube, feature_dim="band")
    np.testing.assert_array_equal(labels.values, fitted.values)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zarr's note on consolidated metadata in v3
        labels.to_dataset().to_zarr(tmp_path / "labels.zarr")
    back = xr.open_zarr(tmp_path / "labels.zarr")["label"]
    assert back.dims == ("time", "y", "x")
    assert back.chunks == tuple(c for c in cube.chunks[:3])
    np.testing.assert_array_equal(back.values, fitted.values)
    np.testing.assert_array_equal(back["y"].values, cube["y"].values)


def test_bad_arguments():
    cube = _cube()
    model = KMeans(2)
    with pytest.raises(ValueError, match="feature_dim is required"):
        dkx.fit_predict(model, cube)
    with pytest.raises(ValueError, match="'wl' is not a dimension"):
        dkx.fit_predict(model, cube, feature_dim="wl")
    with pytest.raises(ValueError, match="feature_dim must be None for a Dataset"):
        dkx.fit_predict(model, cube.to_dataset(dim="band"), feature_dim="band")
    with pytest.raises(TypeError, match="DataArray or Dataset"):
        dkx.fit_predict(model, np.zeros((3, 2)))
    with pytest.raises(ValueError, match="not fitted"):
        dkx.centers(KMeans(2), cube, feature_dim="band")


# --------------------------------------------------------------------------- command line


def _run(*args, cwd):
    return subprocess.run([sys.executable, "-m", "daskmeans", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def cube_store(tmp_path_factory):
    path = tmp_path_factory.mktemp("cube") / "cube.zarr"
    ds = _cube().to_dataset()
    ds["ndvi"] = (ds.reflectance.sel(band="nir") - ds.reflectance.sel(band="red")) / 10
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.to_zarr(path)
    return path


def test_cli_fit_feature_dim_writes_label_map(cube_store, tmp_path):
    r = _run("fit", cube_store, "--feature-dim", "band", "--k", 3, "--seed", 0,
             "--nan-policy", "omit", "--out", tmp_path / "run", "-q", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    labels = xr.open_zarr(tmp_path / "run" / "labels.zarr")["label"]
    assert labels.dims == ("time", "y", "x")
    np.testing.assert_array_equal(labels["x"].values, 10.0 + np.arange(X))
    lab = labels.values
    np.testing.assert_array_equal(lab == -1, np.isnan(_cube_values()).any(axis=-1))
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["n_omitted"] == int((lab == -1).sum())
    assert report["data"]["features"] == BANDS
    model = KMeans.load(tmp_path / "run" / "model.json")
    r = _run("predict", tmp_path / "run" / "model.json", cube_store, "--feature-dim", "band",
             "--nan-policy", "omit", "--out", tmp_path / "pred.zarr", "-q", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    np.testing.assert_array_equal(xr.open_zarr(tmp_path / "pred.zarr")["label"].values, lab)
    assert model.n_features_in_ == B


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--variables", "zz"], "unknown variable(s) zz"),
        (["--feature-dim", "wl"], "no data variable has dimension 'wl'"),
        ([], "choose the features with --variables"),
    ],
)
def test_cli_bad_usage_is_one_line_exit_2(cube_store, tmp_path, flags, message, capsys):
    from daskmeans.cli import main

    code = main(["fit", str(cube_store), *flags, "--k", "2", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], err


def test_cli_fit_variables(cube_store, tmp_path):
    from daskmeans.cli import main

    code = main(["fit", str(cube_store), "--variables", "ndvi", "--k", "2", "--seed", "1",
                 "--nan-policy", "omit", "--out", str(tmp_path / "run"), "-q"])
    assert code == 0
    lab = xr.open_zarr(tmp_path / "run" / "labels.zarr")["label"].values
    assert lab.shape == (T, Y, X) and (lab[:, :4, :5] == -1).all()


def test_example_cube(tmp_path):
    pytest.importorskip("matplotlib")
    example = runpy.run_path(str(EXAMPLES / "cube_xarray.py"))
    out = example["main"](tmp_path, size=(2, 24, 32), k=3, seed=0)
    assert (out / "label_map.png").exists()
    labels = xr.open_zarr(out / "labels.zarr")["label"]
    assert (labels.values == -1).any() and (labels.values >= 0).any()

