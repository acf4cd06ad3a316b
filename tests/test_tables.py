"""Dask DataFrames and Parquet: unknown partition lengths, labels on the index, ids kept."""

from __future__ import annotations

import json
import runpy
import subprocess
import sys
from pathlib import Path

import dask.array as da
import numpy as np
import pytest
from dask.callbacks import Callback

pd = pytest.importorskip("pandas", reason="pandas is not installed (daskmeans[parquet])")
dd = pytest.importorskip("dask.dataframe", reason="dask[dataframe] is not installed")
pytest.importorskip("pyarrow", reason="pyarrow is not installed (daskmeans[parquet])")

from daskmeans import KMeans  # noqa: E402
from daskmeans.io._tables import frame_to_array  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


class ComputeCounter(Callback):
    """Counts the graphs dask computes (one per pass for a fit)."""

    def __init__(self):
        super().__init__()
        self.n = 0

    def _start(self, dsk):
        self.n += 1


def _table(n=1200, seed=0, nan_rows=()):
    rng = np.random.default_rng(seed)
    centers = np.array([[0.0, 0.0, 0.0], [6.0, 0.0, 3.0], [0.0, 7.0, -3.0]])
    y = rng.integers(0, 3, n)
    X = centers[y] + rng.normal(scale=0.4, size=(n, 3))
    X[list(nan_rows), 1] = np.nan
    pdf = pd.DataFrame(X, columns=["a", "b", "c"], index=pd.Index(rng.permutation(n) * 5,
                                                                   name="key"))
    return pdf


def _start(X):
    ok = X[~np.isnan(X).any(axis=1)]
    return ok[[0, 1, 2]].copy()


def test_frame_fits_without_computing_lengths():
    pdf = _table()
    df = dd.from_pandas(pdf, npartitions=5, sort=False)
    init = _start(pdf.to_numpy())
    counter = ComputeCounter()
    with counter:
        model = KMeans(3, init=init).fit(df)
        assert np.isnan(frame_to_array(df).chunks[0]).all()  # lengths stay unknown
    # every compute is a pass of the fit: no extra graph computes partition lengths
    assert counter.n == model.n_passes_
    ref = KMeans(3, init=init).fit(pdf.to_numpy())
    np.testing.assert_allclose(model.cluster_centers_, ref.cluster_centers_, rtol=1e-7)
    assert isinstance(model.labels_, dd.Series)
    labels = model.labels_.compute()
    pd.testing.assert_index_equal(labels.index, pdf.index)
    np.testing.assert_array_equal(labels.to_numpy(), ref.labels_)
    pred = model.predict(df)
    assert isinstance(pred, dd.Series)
    np.testing.assert_array_equal(pred.compute().to_numpy(), ref.labels_)


@pytest.mark.parametrize("init", ["k-means||", "k-means++", "random"])
def test_every_init_with_unknown_lengths_is_one_compute_per_pass(init):
    df = dd.from_pandas(_table(), npartitions=4, sort=False)
    counter = ComputeCounter()
    with counter:
        model = KMeans(3, init=init, random_state=0).fit(df)
    assert counter.n == model.n_passes_
    assert len(np.unique(model.labels_.compute())) == 3


def test_dask_array_with_unknown_chunks_and_nan_policy():
    pdf = _table(nan_rows=[3, 50, 700])
    X = dd.from_pandas(pdf, npartitions=3, sort=False).to_dask_array()
    assert np.isnan(X.chunks[0]).all()
    init = _start(pdf.to_numpy())
    model = KMeans(3, init=init, nan_policy="omit").fit(X)
    assert isinstance(model.labels_, da.Array)
    labels = model.labels_.compute()
    keep = ~pdf.isna().any(axis=1).to_numpy()
    ref = KMeans(3, init=init).fit(pdf.to_numpy()[keep])
    np.testing.assert_allclose(model.cluster_centers_, ref.cluster_centers_, rtol=1e-7)
    np.testing.assert_array_equal(labels[keep], ref.labels_)
    assert (labels[~keep] == -1).all() and model.n_omitted_ == 3


def test_sample_weight_series_and_n_samples_check():
    pdf = _table(n=300)
    df = dd.from_pandas(pdf, npartitions=3, sort=False)
    w = pdf["a"].abs() + 1
    init = _start(pdf.to_numpy())
    model = KMeans(3, init=init).fit(df, sample_weight=dd.from_pandas(w, npartitions=3,
                                                                      sort=False))
    ref = KMeans(3, init=init).fit(pdf.to_numpy(), sample_weight=w.to_numpy())
    np.testing.assert_allclose(model.cluster_centers_, ref.cluster_centers_, rtol=1e-7)
    with pytest.raises(ValueError, match="n_samples=300 should be >= n_clusters=400"):
        KMeans(400, random_state=0).fit(df)


def test_non_numeric_columns_are_rejected():
    pdf = _table(n=50).assign(city="Lyon")
    df = dd.from_pandas(pdf, npartitions=2)
    with pytest.raises(ValueError, match=r"must be numeric .* city"):
        KMeans(2).fit(df)
    with pytest.raises(ValueError, match=r"unknown column\(s\) \['zz'\]"):
        frame_to_array(df, columns=["a", "zz"])


# --------------------------------------------------------------------------- command line


@pytest.fixture(scope="module")
def customers(tmp_path_factory):
    root = tmp_path_factory.mktemp("pq")
    pdf = _table(n=900, seed=3, nan_rows=[10, 11]).reset_index(drop=True)
    pdf.insert(0, "cid", np.random.default_rng(1).permutation(900) + 10_000)
    pdf["city"] = "Graz"
    path = root / "customers"
    dd.from_pandas(pdf, npartitions=3, sort=False).to_parquet(path, write_index=False)
    return path, pdf


def test_cli_parquet_keeps_ids_row_for_row(customers, tmp_path):
    path, pdf = customers
    cmd = [sys.executable, "-m", "daskmeans", "fit", str(path), "--columns", "a,b,c",
           "--id-column", "cid", "--nan-policy", "omit", "--k", "3", "--seed", "0",
           "--out", str(tmp_path / "run"), "-q"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    out = pd.read_parquet(tmp_path / "run" / "labels.parquet")
    assert list(out.columns) == ["cid", "label", "distance"]
    np.testing.assert_array_equal(out["cid"].to_numpy(), pdf["cid"].to_numpy())
    model = KMeans.load(tmp_path / "run" / "model.json")
    X = pdf[["a", "b", "c"]].to_numpy()
    keep = ~np.isnan(X).any(axis=1)
    C = model.cluster_centers_
    d2 = ((X[keep, None, :] - C[None]) ** 2).sum(-1)
    np.testing.assert_array_equal(out["label"].to_numpy()[keep], d2.argmin(1))
    np.testing.assert_allclose(out["distance"].to_numpy()[keep], np.sqrt(d2.min(1)), rtol=1e-6)
    assert (out["label"].to_numpy()[~keep] == -1).all()
    assert out["distance"].isna().sum() == 2
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["n_omitted"] == 2 and report["warnings"] == []
    assert report["data"]["n_rows"] == 900


def test_cli_parquet_predict_duplicate_ids_and_bad_usage(customers, tmp_path, capsys):
    from daskmeans.cli import main

    path, pdf = customers
    model = KMeans(3, random_state=0, nan_policy="omit").fit(pdf[["a", "b", "c"]].to_numpy())
    model.save(tmp_path / "model.json")
    dup = tmp_path / "dup.parquet"
    pdf.assign(cid=pdf["cid"] % 450).to_parquet(dup, index=False)
    code = main(["predict", str(tmp_path / "model.json"), str(dup), "--columns", "a,b,c",
                 "--id-column", "cid", "--nan-policy", "omit", "--out",
                 str(tmp_path / "pred.parquet"), "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    result = json.loads(captured.out)
    assert any("not unique" in line for line in result["warnings"])
    out = pd.read_parquet(tmp_path / "pred.parquet")
    assert len(out) == 900 and (out["label"].to_numpy()[:10] == model.labels_[:10]).all()
    for flags, message in [
        (["--columns", "a,zz"], "unknown column(s) ['zz']"),
        (["--columns", "a,city"], "must be numeric"),
        (["--columns", "a", "--id-column", "nope"], "--id-column: unknown column 'nope'"),
    ]:
        code = main(["fit", str(path), *flags, "--k", "2", "--out", str(tmp_path / "o")])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and message in err[0], err


def test_example_customers(tmp_path):
    example = runpy.run_path(str(EXAMPLES / "customers_parquet.py"))
    out = example["main"](tmp_path, n=2000, k=3, seed=0, files=3)
    labels = pd.read_parquet(out / "labels.parquet")
    source = pd.read_parquet(out / "customers.parquet")
    np.testing.assert_array_equal(labels.index.to_numpy(), source["customer_id"].to_numpy())
    assert set(labels["segment"].unique()) <= {-1, 0, 1, 2}
    assert (labels["segment"] == -1).sum() == source["income_k"].isna().sum()
