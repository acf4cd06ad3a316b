"""``daskmeans fit`` as a pipeline: every input adapter crossed with every algorithm.

End-to-end runs of each input kind are in test_cli.py (Zarr arrays),
test_xarray.py, test_tables.py and test_io_sparse.py; these tests cover the
crossing itself, the refusals of combinations that do not work, and the
registries that new kinds and algorithms are added to.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from daskmeans import KMeans, MiniBatchKMeans
from daskmeans.cli import _algorithms, _inputs, main
from daskmeans.cli._sources import ArraySource

pd = pytest.importorskip("pandas")


@pytest.fixture()
def table(tmp_path) -> Path:
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0], [5.0, 5.0], [0.0, 5.0]])
    X = np.concatenate([rng.normal(c, 0.3, (100, 2)) for c in centres])
    frame = pd.DataFrame({"id": np.arange(300) + 1000, "a": X[:, 0], "b": X[:, 1]})
    path = tmp_path / "t.parquet"
    frame.to_parquet(path, index=False)
    return path


def _report(out: Path) -> dict:
    return json.loads((out / "report.json").read_text())


def test_minibatch_on_a_parquet_table(table, tmp_path):
    out = tmp_path / "run"
    assert main(["fit", str(table), "--columns", "a,b", "--id-column", "id", "--k", "3",
                 "--algorithm", "minibatch", "--batch-size", "64", "--seed", "0",
                 "--out", str(out), "-q"]) == 0
    report = _report(out)
    assert report["algorithm"] == "minibatch" and report["data"]["kind"] == "parquet"
    assert report["outputs"]["labels"] == "labels.parquet" and report["n_steps"] > 0
    assert report["parameters"]["columns"] == ["a", "b"]
    model = MiniBatchKMeans.load(out / "model.json")
    labels = pd.read_parquet(out / "labels.parquet")
    frame = pd.read_parquet(table)
    np.testing.assert_array_equal(labels["id"], frame["id"])
    np.testing.assert_array_equal(labels["label"], model.predict(frame[["a", "b"]].to_numpy()))
    assert sorted(np.bincount(labels["label"])) == [100, 100, 100]


def test_every_report_has_the_same_fields(table, tmp_path):
    lloyd, mini = tmp_path / "lloyd", tmp_path / "mini"
    assert main(["fit", str(table), "--k", "3", "--seed", "0", "--out", str(lloyd), "-q"]) == 0
    assert main(["fit", str(table), "--k", "3", "--seed", "0", "--out", str(mini), "-q",
                 "--algorithm", "minibatch"]) == 0
    a, b = _report(lloyd), _report(mini)
    assert a["algorithm"] == "lloyd" and b["algorithm"] == "minibatch"
    assert set(a) == set(b) - {"n_steps", "counts"}
    assert set(a["parameters"]) == set(b["parameters"]) - {"batch_size", "init_lloyd_iter"}
    assert a["data"] == b["data"] and a["n_omitted"] == 0 == b["n_omitted"]
    assert a["outputs"] == b["outputs"] == {"model": "model.json", "labels": "labels.parquet",
                                            "report": "report.json"}


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        (["--sample-weight", "w.zarr"], "--sample-weight is not supported with Parquet input"),
        (["--checkpoint", "ck"], "--checkpoint is not supported with Parquet input"),
        (["--variables", "a"], "cannot be combined"),
    ],
)
def test_combinations_that_do_not_work_exit_2(table, tmp_path, capsys, monkeypatch, flags,
                                              needle):
    monkeypatch.chdir(tmp_path)
    assert main(["fit", str(table), "--columns", "a,b", "--k", "3", "--out", "r",
                 *flags]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and needle in err
    assert not (tmp_path / "r").exists() and not (tmp_path / "ck").exists()


def test_minibatch_refuses_a_checkpoint(tmp_path, capsys, monkeypatch):
    import daskmeans.datasets as ds

    monkeypatch.chdir(tmp_path)
    ds.write_blobs(tmp_path / "x.zarr", 50, 2, 2, chunk_rows=20, random_state=0)
    assert main(["fit", "x.zarr", "--k", "2", "--out", "r", "--algorithm", "minibatch",
                 "--checkpoint", "ck"]) == 2
    assert "--checkpoint is not supported with --algorithm minibatch" in capsys.readouterr().err
    assert not (tmp_path / "ck").exists()


def test_a_new_input_kind_is_one_registry_entry(tmp_path, monkeypatch):
    import dask.array as da

    X = np.repeat(np.array([[0.0, 0.0], [4.0, 4.0]]), 20, axis=0)

    def open_fake(args):
        return ArraySource(args.input, da.from_array(X, chunks=(10, 2)))

    fake = _inputs.InputAdapter("fake", "fake files", open_fake,
                                detect=lambda text: text.endswith(".fake"))
    monkeypatch.setattr(_inputs, "ADAPTERS", [fake, *_inputs.ADAPTERS])
    out = tmp_path / "r"
    assert main(["fit", "data.fake", "--k", "2", "--seed", "0", "--out", str(out), "-q"]) == 0
    labels = __import__("zarr").open_array(str(out / "labels.zarr"), mode="r")[:]
    np.testing.assert_array_equal(labels, KMeans.load(out / "model.json").predict(X))
    assert labels[0] != labels[-1] and _report(out)["data"]["shape"] == [40, 2]


def test_a_new_algorithm_is_one_registry_entry(tmp_path, monkeypatch, capsys):
    import daskmeans.datasets as ds

    class Fixed(_algorithms.Lloyd):
        """Lloyd from fixed centres.

        Lloyd from (-1, -1) and (1, 1)
        """

        name = "fixed"

        def add_arguments(self, group):
            group.add_argument("--shout", action="store_true", help="a flag of its own")

        def build(self, args, seed):
            model, progress = super().build(args, seed)
            model.set_params(init=np.array([[-1.0, -1.0], [1.0, 1.0]]), n_init=1)
            return model, progress

    monkeypatch.setitem(_algorithms.ALGORITHMS, "fixed", Fixed())
    monkeypatch.chdir(tmp_path)
    ds.write_blobs(tmp_path / "x.zarr", 50, 2, 2, chunk_rows=20, random_state=0)
    assert main(["fit", "--help"]) == 0
    assert "fixed: Lloyd from (-1, -1) and (1, 1)" in " ".join(capsys.readouterr().out.split())
    assert main(["fit", "x.zarr", "--k", "2", "--out", "r", "--algorithm", "fixed",
                 "--shout", "-q"]) == 0
    assert _report(tmp_path / "r")["parameters"]["algorithm"] == "fixed"
