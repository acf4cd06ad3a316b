"""End-to-end tests of the ``daskmeans`` command (run as a subprocess) and its helpers."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import zarr

from daskmeans import KMeans, open_zarr
from daskmeans._errors import InvalidInputError, InvalidInputTypeError
from daskmeans._progress import Progress, format_event
from daskmeans.cli import main
from daskmeans.datasets import make_blobs
from daskmeans.engine._checkpoint import CHECKPOINT_FILE, Checkpoint, decode


def _command() -> list[str]:
    script = Path(sys.executable).parent / "daskmeans"
    if script.exists():
        return [str(script)]
    found = shutil.which("daskmeans")
    return [found] if found else [sys.executable, "-m", "daskmeans"]


def run(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    """Run the installed command; stdout/stderr are pipes (not a terminal)."""
    proc = subprocess.run([*_command(), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}: {proc.stderr}")
    return proc


def _files(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


def _leftovers(path: Path) -> list[str]:
    return [p.name for p in path.rglob("*") if ".tmp" in p.name or ".old" in p.name]


# --------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cli")


@pytest.fixture(scope="module")
def blobs(workdir) -> Path:
    run("generate", "x.zarr", "--n-samples", "6000", "--n-features", "3", "--centers", "4",
        "--chunk-rows", "1500", "--cluster-std", "0.1", "--seed", "5", "--dtype", "float32",
        "--labels", "y.zarr", "--quiet", cwd=workdir)
    return workdir / "x.zarr"


@pytest.fixture(scope="module")
def fitted(workdir, blobs) -> subprocess.CompletedProcess:
    return run("fit", "x.zarr", "--k", "4", "--out", "res", "--seed", "0", "--json",
               cwd=workdir)


def test_generate_writes_the_blobs(workdir, blobs):
    z = zarr.open_array(str(blobs), mode="r")
    X, y = make_blobs(6000, 3, 4, cluster_std=0.1, chunk_rows=1500, random_state=5,
                      dtype="float32")
    assert z.shape == (6000, 3) and z.chunks == (1500, 3) and z.dtype == np.float32
    assert np.array_equal(z[:], X.compute())
    assert np.array_equal(zarr.open_array(str(workdir / "y.zarr"))[:], y.compute())
    assert not _leftovers(workdir)


def test_generate_json_and_drawn_seed(tmp_path):
    proc = run("generate", "u.zarr", "--n-samples", "100", "--n-features", "2", "--centers",
               "3", "--uniform", "--json", cwd=tmp_path)
    info = json.loads(proc.stdout)
    assert info["shape"] == [100, 2] and isinstance(info["seed"], int)
    again = make_blobs(100, 2, 3, uniform=True, random_state=info["seed"])[0].compute()
    assert np.array_equal(zarr.open_array(str(tmp_path / "u.zarr"))[:], again)
    assert str(info["seed"]) in proc.stderr


def test_fit_writes_model_labels_and_report(workdir, fitted):
    out = workdir / "res"
    assert sorted(p.name for p in out.iterdir()) == ["labels.zarr", "model.json", "report.json"]
    model = KMeans.load(out / "model.json")
    assert model.cluster_centers_.shape == (4, 3) and model.cluster_centers_.dtype == np.float32
    labels = zarr.open_array(str(out / "labels.zarr"), mode="r")
    assert labels.shape == (6000,) and labels.chunks == (1500,)
    assert np.array_equal(labels[:], model.predict(str(workdir / "x.zarr")).compute())

    report = json.loads((out / "report.json").read_text())
    assert json.loads(fitted.stdout) == report
    assert report["parameters"]["n_clusters"] == 4 and report["seed"] == 0
    assert report["data"]["shape"] == [6000, 3] and report["data"]["dtype"] == "float32"
    assert report["data"]["chunks"] == [1500, 3]
    assert report["n_iter"] == model.n_iter_ == len(report["inertia_history"])
    assert report["inertia"] == model.inertia_
    assert report["n_passes"] >= report["n_iter"] + 1
    assert sum(report["cluster_sizes"]) == 6000
    assert np.array_equal(np.bincount(labels[:], minlength=4), report["cluster_sizes"])
    assert {"init", "lloyd", "finalize", "total"} <= set(report["timings"])
    assert {"daskmeans", "dask", "numpy", "zarr", "python"} <= set(report["versions"])
    # not a terminal: one log line per initialisation round and Lloyd iteration
    assert fitted.stderr.count("lloyd iteration") == report["n_iter"]
    assert not _leftovers(workdir)


def test_labels_are_chunked_like_the_input_read_in_groups(tmp_path):
    run("generate", "s.zarr", "--n-samples", "4000", "--n-features", "2", "--centers", "3",
        "--chunk-rows", "200", "--seed", "1", "--quiet", cwd=tmp_path)
    assert open_zarr(str(tmp_path / "s.zarr")).chunks[0][0] == 400  # 20 chunks, 2 a block
    run("fit", "s.zarr", "--k", "3", "--out", "res", "--seed", "0", "--quiet", cwd=tmp_path)
    run("predict", "res/model.json", "s.zarr", "--out", "p.zarr", "--quiet", cwd=tmp_path)
    fit_labels = zarr.open_array(str(tmp_path / "res" / "labels.zarr"), mode="r")
    pred = zarr.open_array(str(tmp_path / "p.zarr"), mode="r")
    assert fit_labels.chunks == pred.chunks == (200,)
    model = KMeans.load(tmp_path / "res" / "model.json")
    assert np.array_equal(pred[:], fit_labels[:])
    assert np.array_equal(pred[:], model.predict(str(tmp_path / "s.zarr")).compute())


def test_recovers_the_true_clusters(workdir, fitted):
    labels = zarr.open_array(str(workdir / "res" / "labels.zarr"))[:]
    truth = zarr.open_array(str(workdir / "y.zarr"))[:]
    purity = [np.bincount(truth[labels == j]).max() / (labels == j).sum() for j in range(4)]
    assert min(purity) > 0.9


def test_predict_equals_fit_labels(workdir, fitted):
    proc = run("predict", "res/model.json", "x.zarr", "--out", "pred.zarr", "--json",
               cwd=workdir)
    pred = zarr.open_array(str(workdir / "pred.zarr"), mode="r")
    fit_labels = zarr.open_array(str(workdir / "res" / "labels.zarr"), mode="r")
    assert pred.chunks == (1500,)
    assert np.array_equal(pred[:], fit_labels[:])
    assert json.loads(proc.stdout)["n_clusters"] == 4


@pytest.mark.parametrize("algorithm", ["lloyd", "minibatch"])
def test_fit_measures_the_final_centres_in_the_labels_pass(tmp_path, monkeypatch, algorithm):
    """The labels are written by the pass that gives the final inertia and sizes:
    one read of the data fewer than a fit that measures them first, the same
    outputs to the last bit."""
    from daskmeans.cli._sources import ArraySource
    from daskmeans.engine import _blocks

    X, _ = make_blobs(20_000, 3, 5, cluster_std=2.0, chunk_rows=2_000, random_state=1)
    X.to_zarr(str(tmp_path / "x.zarr"))
    reads = []
    call = _blocks._Reader.__call__

    def counted(self):
        reads.append(1)
        return call(self)

    monkeypatch.setattr(_blocks._Reader, "__call__", counted)
    outs = {}
    for merged in (True, False):
        monkeypatch.setattr(ArraySource, "labels_of_fit", merged)
        reads.clear()
        out = tmp_path / f"run-{merged}"
        assert main(["fit", str(tmp_path / "x.zarr"), "--k", "5", "--seed", "0", "--out",
                     str(out), "--algorithm", algorithm, "-q"]) == 0
        outs[merged] = (len(reads), json.loads((out / "report.json").read_text()),
                        zarr.open_array(str(out / "labels.zarr"), mode="r")[:],
                        json.loads((out / "model.json").read_text()))
    (n_merged, rep, labels, model), (n_plain, rep0, labels0, model0) = outs[True], outs[False]
    assert n_plain - n_merged == X.numblocks[0]
    np.testing.assert_array_equal(labels, labels0)
    assert model == model0
    for key in ("inertia", "cluster_sizes", "n_passes", "n_iter", "n_omitted"):
        assert rep[key] == rep0[key], key
    assert np.array_equal(np.bincount(labels, minlength=5), rep["cluster_sizes"])


def test_update_labels_and_measures_the_data_in_one_pass(tmp_path, monkeypatch):
    """``daskmeans update`` writes the labels of INPUT in the pass that gives its
    inertia and cluster sizes under the updated centres."""
    from daskmeans import MiniBatchKMeans
    from daskmeans.cli import _common
    from daskmeans.engine import _blocks

    X, _ = make_blobs(8_000, 3, 4, cluster_std=1.0, chunk_rows=1_000, random_state=2)
    x = X.compute()
    x[[4100, 7000]] = np.nan  # left out of the labels (-1) and of the measure
    zarr.create_array(store=str(tmp_path / "day1.zarr"), data=x[:4000], chunks=(1000, 3))
    zarr.create_array(store=str(tmp_path / "day2.zarr"), data=x[4000:], chunks=(1000, 3))
    assert main(["fit", str(tmp_path / "day1.zarr"), "--k", "4", "--algorithm", "minibatch",
                 "--seed", "0", "--nan-policy", "omit", "--out", str(tmp_path / "m1"),
                 "-q"]) == 0
    reads = []
    call, write = _blocks._Reader.__call__, _common.write_labels

    def counted(self):
        reads.append(1)
        return call(self)

    def writing(*args, **kwargs):  # count the reads from the labels' pass on
        reads.clear()
        monkeypatch.setattr(_blocks._Reader, "__call__", counted)
        return write(*args, **kwargs)

    monkeypatch.setattr(_common, "write_labels", writing)
    assert main(["update", str(tmp_path / "m1" / "model.json"), str(tmp_path / "day2.zarr"),
                 "--out", str(tmp_path / "m2"), "-q"]) == 0
    assert len(reads) == 4  # the blocks of day2, once
    model = MiniBatchKMeans.load(tmp_path / "m2" / "model.json")
    report = json.loads((tmp_path / "m2" / "report.json").read_text())
    labels = zarr.open_array(str(tmp_path / "m2" / "labels.zarr"), mode="r")[:]
    day2 = x[4000:]
    np.testing.assert_array_equal(labels, model.predict(day2))
    assert (labels == -1).sum() == 2
    kept = day2[labels >= 0]
    assert report["inertia"] == pytest.approx(
        ((kept[:, None, :] - model.cluster_centers_[None]) ** 2).sum(-1).min(1).sum(), rel=1e-9)
    assert report["cluster_sizes"] == np.bincount(labels[labels >= 0], minlength=4).tolist()


def test_info_on_array_and_model(workdir, fitted, capsys, monkeypatch):
    monkeypatch.chdir(workdir)
    assert main(["info", "x.zarr", "--json"]) == 0
    arr = json.loads(capsys.readouterr().out)
    assert arr["kind"] == "array" and arr["shape"] == [6000, 3] and arr["chunks"] == [1500, 3]
    assert arr["dtype"] == "float32" and 0 < arr["size_on_disk"]
    assert arr["nbytes"] == 6000 * 3 * 4
    model = json.loads(run("info", "res/model.json", "--json", cwd=workdir).stdout)
    report = json.loads((workdir / "res" / "report.json").read_text())
    assert model["kind"] == "model" and model["n_clusters"] == 4 and model["n_features"] == 3
    assert model["n_iter"] == report["n_iter"] and model["inertia"] == report["inertia"]
    assert main(["info", "x.zarr"]) == 0
    text = capsys.readouterr().out
    assert "(6000, 3)" in text and "float32" in text and "size on disk" in text


def test_quiet_and_drawn_seed_reproduces(workdir, blobs, capsys, monkeypatch):
    monkeypatch.chdir(workdir)
    assert main(["fit", "x.zarr", "--k", "3", "--out", "drawn", "--quiet"]) == 0
    assert capsys.readouterr() == ("", "")
    report = json.loads((workdir / "drawn" / "report.json").read_text())
    assert report["parameters"]["seed_source"] == "drawn"
    assert main(["fit", "x.zarr", "--k", "3", "--out", "given", "-q", "--seed",
                 str(report["seed"])]) == 0
    a = json.loads((workdir / "drawn" / "model.json").read_text())["fitted"]
    b = json.loads((workdir / "given" / "model.json").read_text())["fitted"]
    assert a == b


def test_missing_input_exits_2_and_writes_nothing(tmp_path):
    # also checks that ``python -m daskmeans`` is the same command
    proc = subprocess.run([sys.executable, "-m", "daskmeans", "fit", "missing.zarr", "--k", "3",
                           "--out", "res"], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "missing.zarr" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_k_out_of_range_exits_2_and_writes_nothing(workdir, blobs, tmp_path, capsys):
    assert main(["fit", str(blobs), "--k", "6001", "--out", str(tmp_path / "res"),
                 "--checkpoint", str(tmp_path / "ck")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--k 6001" in err and "6000" in err
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- checkpoints


def _saved_iterations(directory: Path) -> int:
    try:
        doc = json.loads((directory / CHECKPOINT_FILE).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return -1
    return int(decode(doc["state"])["n_iter"].max())


@pytest.mark.slow
def test_sigkill_then_resume_is_bitwise_identical(tmp_path, monkeypatch):
    from daskmeans.datasets import write_blobs

    write_blobs(tmp_path / "u.zarr", 60000, 2, 1, uniform=True, chunk_rows=7500,
                random_state=3, dtype="float32")
    max_iter = 25
    args = ["fit", "u.zarr", "--k", "48", "--init", "random", "--n-init", "1", "--tol", "0",
            "--max-iter", str(max_iter), "--seed", "1", "--quiet"]
    ckpt = tmp_path / "ck"
    proc = subprocess.Popen([*_command(), *args, "--out", "res", "--checkpoint", str(ckpt)],
                            cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while proc.poll() is None and time.monotonic() < deadline:
        if _saved_iterations(ckpt) >= 1:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.005)
    assert proc.wait() == -signal.SIGKILL, "the fit ended before it could be killed"
    killed_at = _saved_iterations(ckpt)
    assert 1 <= killed_at < max_iter
    assert not (tmp_path / "res" / "model.json").exists()
    assert not (tmp_path / "res" / "report.json").exists()

    run(*args, "--out", "res", "--checkpoint", str(ckpt), cwd=tmp_path)
    monkeypatch.chdir(tmp_path)
    assert main([*args, "--out", "ref"]) == 0  # uninterrupted, in this process
    resumed = json.loads((tmp_path / "res" / "model.json").read_text())["fitted"]
    reference = json.loads((tmp_path / "ref" / "model.json").read_text())["fitted"]
    assert resumed["n_iter_"] == reference["n_iter_"] and reference["n_iter_"] > killed_at
    assert resumed["cluster_centers_"] == reference["cluster_centers_"]
    assert resumed == reference
    a = KMeans.load(tmp_path / "res" / "model.json").cluster_centers_
    b = KMeans.load(tmp_path / "ref" / "model.json").cluster_centers_
    assert a.dtype == np.float32 and a.tobytes() == b.tobytes()
    assert np.array_equal(zarr.open_array(str(tmp_path / "res" / "labels.zarr"))[:],
                          zarr.open_array(str(tmp_path / "ref" / "labels.zarr"))[:])
    report = json.loads((tmp_path / "res" / "report.json").read_text())
    assert report["resumed_from_iteration"] >= killed_at
    assert not _leftovers(tmp_path)


def test_rerun_removes_what_a_killed_run_left(workdir, blobs, tmp_path):
    out, ckpt = tmp_path / "res", tmp_path / "ck"
    args = ["fit", str(blobs), "--k", "3", "--max-iter", "2", "--seed", "0", "--out", str(out),
            "--checkpoint", str(ckpt), "-q"]
    assert main(args) == 0
    # what kill -9 leaves when it lands between a temporary and its rename
    (ckpt / f".{CHECKPOINT_FILE}.dead0001.tmp").write_text("{")
    (ckpt / ".seed.json.dead0002.tmp").write_text("{")
    (out / ".model.json.dead0003.tmp").write_text("{")
    (out / ".report.json.dead0004.tmp").write_text("{")
    (out / ".labels.zarr.dead0005.tmp").mkdir()
    assert _leftovers(tmp_path)
    assert main(args) == 0
    assert not _leftovers(tmp_path)
    assert sorted(p.name for p in out.iterdir()) == ["labels.zarr", "model.json", "report.json"]


def test_checkpoint_of_other_parameters_is_refused(workdir, blobs, tmp_path, capsys):
    ckpt = tmp_path / "ck"
    assert main(["fit", str(blobs), "--k", "3", "--max-iter", "2", "--out", str(tmp_path / "a"),
                 "--checkpoint", str(ckpt), "-q"]) == 0
    seed = json.loads((ckpt / "seed.json").read_text())["seed"]
    before = (ckpt / CHECKPOINT_FILE).read_bytes()
    # the first run may converge after one iteration (its seed is drawn): resume from what it saved
    saved = _saved_iterations(ckpt)
    assert saved in (1, 2)
    proc = run("fit", str(blobs), "--k", "4", "--max-iter", "2", "--out", str(tmp_path / "b"),
               "--checkpoint", str(ckpt), cwd=tmp_path, check=False)
    assert proc.returncode == 2
    assert "different data or parameters" in proc.stderr
    assert "params.n_clusters: saved 3, now 4" in proc.stderr and proc.stderr.count("\n") == 1
    assert proc.stderr.strip().splitlines()[-1].startswith("daskmeans: error:")
    assert "Traceback" not in proc.stderr
    assert (ckpt / CHECKPOINT_FILE).read_bytes() == before
    assert not (tmp_path / "b").exists()
    # without --seed the seed of the checkpoint is reused, so the same command resumes
    assert main(["fit", str(blobs), "--k", "3", "--max-iter", "2", "--out", str(tmp_path / "c"),
                 "--checkpoint", str(ckpt), "--json", "-q"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["seed"] == seed and report["parameters"]["seed_source"] == "checkpoint"
    assert report["resumed_from_iteration"] == saved
    assert Checkpoint(ckpt, {}).read() is not None


# --------------------------------------------------------------------- usage errors (in process)


@pytest.fixture()
def small(tmp_path) -> Path:
    import daskmeans.datasets as ds

    ds.write_blobs(tmp_path / "x.zarr", 50, 2, 2, chunk_rows=20, random_state=0)
    return tmp_path


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["fit", "x.zarr", "--k", "0", "--out", "r"], "--k"),
        (["fit", "x.zarr", "--k", "51", "--out", "r"], "--k 51"),
        (["fit", "x.zarr", "--k", "two", "--out", "r"], "--k"),
        (["fit", "x.zarr", "--k", "2"], "--out"),
        (["fit", "x.zarr", "--k", "2", "--out", "r", "--max-iter", "-1"], "--max-iter"),
        (["fit", "x.zarr", "--k", "2", "--out", "r", "--tol", "nan"], "--tol"),
        (["fit", "x.zarr", "--k", "2", "--out", "r", "--n-init", "0"], "--n-init"),
        (["fit", "x.zarr", "--k", "2", "--out", "r", "--init", "best"], "--init"),
        (["fit", "x.zarr", "--k", "2", "--out", "r", "--seed", "-4"], "--seed"),
        (["fit", "x.zarr", "--k", "2", "--out", "r", "--bogus"], "--bogus"),
        (["fit", "x.zarr", "--k", "2", "--out", "r", "--memory-limit", "lots"],
         "--memory-limit"),
        (["fit", "x.zarr", "--k", "2", "--out", "r", "--threads-per-worker", "2"],
         "--workers"),
        (["fit", "x.zarr", "--k", "2", "--out", "r", "--workers", "1", "--scheduler", "tcp://a:1"],
         "--scheduler"),
        (["fit", "x.zarr", "--k", "2", "--out", "r", "--scheduler-file", "nope.json"],
         "nope.json"),
        (["fit", "x.zarr", "--k", "2", "--out", "r", "--sample-weight", "w.zarr"], "w.zarr"),
        (["fit", "x.zarr", "--k", "2", "--out", "x.zarr/zarr.json"], "--out"),
        (["predict", "nomodel.json", "x.zarr", "--out", "p.zarr"], "nomodel.json"),
        (["predict", "x.zarr", "x.zarr", "--out", "p.zarr"], "MODEL"),
        (["info", "nothing.zarr"], "nothing.zarr"),
        (["generate", "x.zarr", "--n-samples", "10", "--n-features", "2", "--centers", "2"],
         "already exists"),
        (["generate", "g.zarr", "--n-samples", "0", "--n-features", "2", "--centers", "2"],
         "--n-samples"),
        (["generate", "g.zarr", "--n-samples", "5", "--n-features", "2", "--centers", "2",
          "--cluster-std", "-1"], "--cluster-std"),
        (["generate", "no/dir/g.zarr", "--n-samples", "5", "--n-features", "2", "--centers",
          "2"], "does not exist"),
        (["generate", "g.zarr", "--n-samples", "5", "--n-features", "2", "--centers", "2",
          "--labels", "g.zarr"], "--labels"),
        ([], "COMMAND"),
    ],
)
def test_usage_errors_exit_2_with_one_line(small, argv, needle, capsys, monkeypatch):
    monkeypatch.chdir(small)
    before = _files(small)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("daskmeans"), err
    assert needle in err and "Traceback" not in err
    assert _files(small) == before


def test_wrong_shape_and_features(small, capsys, monkeypatch):
    monkeypatch.chdir(small)
    z = zarr.create_array(str(small / "v.zarr"), shape=(10,), chunks=(5,), dtype="f8")
    z[:] = np.arange(10.0)
    assert main(["fit", "v.zarr", "--k", "2", "--out", "r"]) == 2
    assert "2-D" in capsys.readouterr().err
    assert main(["fit", "x.zarr", "--k", "2", "--out", "r", "-q"]) == 0
    import daskmeans.datasets as ds

    ds.write_blobs(small / "x3.zarr", 30, 3, 2, random_state=0)
    assert main(["predict", "r/model.json", "x3.zarr", "--out", "p.zarr"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "3 features" in err
    assert not (small / "p.zarr").exists()


def test_internal_errors_exit_1_traceback_only_when_verbose(small, capsys, monkeypatch):
    monkeypatch.chdir(small)

    def broken_fit(self, *args, **kwargs):
        raise RuntimeError("worker lost")

    monkeypatch.setattr(KMeans, "fit", broken_fit)
    assert main(["fit", "x.zarr", "--k", "2", "--out", "r"]) == 1
    err = capsys.readouterr().err
    assert "worker lost" in err and "Traceback" not in err and err.count("\n") == 1
    assert main(["fit", "x.zarr", "--k", "2", "--out", "r", "--verbose"]) == 1
    err = capsys.readouterr().err
    assert "worker lost" in err and "Traceback" in err
    assert not (small / "r").exists()


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (ValueError("index 7 is out of bounds"), 1),  # a bug inside: not the user's input
        (TypeError("unsupported operand"), 1),
        (KeyError("centers"), 1),
        (InvalidInputError("n_clusters=5 should be <= n_samples=3"), 2),
        (InvalidInputTypeError("sample_weight must be an array"), 2),
        (FileExistsError("labels.zarr already exists"), 2),
        (FileNotFoundError("weights.zarr does not exist"), 2),
    ],
)
def test_error_kind_chooses_the_exit_status(small, capsys, monkeypatch, exc, code):
    monkeypatch.chdir(small)

    def failing_fit(self, *args, **kwargs):
        raise exc

    monkeypatch.setattr(KMeans, "fit", failing_fit)
    assert main(["fit", "x.zarr", "--k", "2", "--out", "r"]) == code
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("daskmeans: error:")
    assert "Traceback" not in err
    if code == 1:
        assert type(exc).__name__ in err and "--verbose" in err
        assert main(["fit", "x.zarr", "--k", "2", "--out", "r", "--verbose"]) == 1
        assert "Traceback" in capsys.readouterr().err
    assert not (small / "r").exists()


def test_bad_values_found_in_the_first_pass_exit_2(small, capsys, monkeypatch):
    """NaN in the data or a negative weight is the user's input, though found while reading."""
    monkeypatch.chdir(small)
    x = zarr.open_array(str(small / "x.zarr"), mode="r")[:]
    x[17, 1] = np.nan
    zarr.create_array(str(small / "nan.zarr"), data=x, chunks=(20, 2))
    assert main(["fit", "nan.zarr", "--k", "2", "--out", "r"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "NaN" in err and "Traceback" not in err
    w = zarr.create_array(str(small / "w.zarr"), shape=(50,), chunks=(20,), dtype="f8")
    w[:] = np.r_[np.ones(49), -1.0]
    assert main(["fit", "x.zarr", "--k", "2", "--out", "r", "--sample-weight", "w.zarr"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "sample_weight" in err
    assert not (small / "r").exists()


def test_help_exits_0(capsys):
    assert main(["--help"]) == 0
    assert "exit status" in capsys.readouterr().out
    assert main(["fit", "--help"]) == 0
    out = capsys.readouterr().out
    for flag in ("--k", "--out", "--init", "--n-init", "--max-iter", "--tol", "--seed",
                 "--sample-weight", "--checkpoint", "--scheduler", "--scheduler-file",
                 "--workers", "--threads-per-worker", "--memory-limit", "--json", "--quiet"):
        assert flag in out


def test_sample_weight_in_process(small, capsys, monkeypatch):
    monkeypatch.chdir(small)
    w = zarr.create_array(str(small / "w.zarr"), shape=(50,), chunks=(20,), dtype="f8")
    w[:] = np.r_[np.ones(25), np.full(25, 3.0)]
    assert main(["fit", "x.zarr", "--k", "2", "--out", "r", "--sample-weight", "w.zarr",
                 "--seed", "0", "--json", "-q"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert sum(report["cluster_sizes"]) == pytest.approx(100.0)
    bad = zarr.create_array(str(small / "bad.zarr"), shape=(49,), chunks=(20,), dtype="f8")
    bad[:] = 1.0
    assert main(["fit", "x.zarr", "--k", "2", "--out", "r2", "--sample-weight", "bad.zarr"]) == 2
    assert "49" in capsys.readouterr().err and not (small / "r2").exists()


@pytest.mark.slow
def test_local_cluster(small, capsys, monkeypatch):
    monkeypatch.chdir(small)
    assert main(["fit", "x.zarr", "--k", "2", "--out", "r", "--seed", "0", "--workers", "1",
                 "--threads-per-worker", "1", "--memory-limit", "1GB", "--json", "-q"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["scheduler"].startswith("LocalCluster")
    assert main(["fit", "x.zarr", "--k", "2", "--out", "t", "--seed", "0", "-q"]) == 0
    a = json.loads((small / "r" / "model.json").read_text())["fitted"]["cluster_centers_"]
    b = json.loads((small / "t" / "model.json").read_text())["fitted"]["cluster_centers_"]
    assert a == b


# --------------------------------------------------------------------------- progress


EVENTS = [
    {"phase": "init", "iteration": 1, "max_iter": 2, "inertia": 10.0, "shift": None,
     "n_passes": 1},
    {"phase": "init", "iteration": 2, "max_iter": 2, "inertia": 5.0, "shift": None,
     "n_passes": 2},
    {"phase": "lloyd", "iteration": 1, "max_iter": 3, "inertia": 4.0, "shift": 0.5,
     "n_passes": 3},
    {"phase": "lloyd", "iteration": 2, "max_iter": 3, "inertia": 3.5, "shift": 0.01,
     "n_passes": 4},
]


def test_progress_log_lines():
    out = io.StringIO()
    progress = Progress(out)  # StringIO is not a terminal: log lines
    assert progress.mode == "log"
    for event in EVENTS:
        progress(event)
    progress.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == len(EVENTS)
    assert "init round 2/2" in lines[1] and "lloyd iteration 2/3" in lines[3]
    assert "inertia=3.500000e+00" in lines[3] and "shift=1.000e-02" in lines[3]
    assert "shift=-" in lines[0]


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_on_a_terminal():
    out = _Terminal()
    with Progress(out, width=10) as progress:
        assert progress.mode == "bar"
        for event in EVENTS:
            progress(event)
        progress.log("done")
    text = out.getvalue()
    assert text.count("\r") == len(EVENTS)
    assert text.count("\n") == 3  # end of the init bar, end of the lloyd bar, the message
    assert "[#####.....]" in text and "[##########]" in text  # init 1/2, 2/2
    assert "[###.......]" in text and "[#######...]" in text  # lloyd 1/3, 2/3
    assert "\rlloyd" in text and "2/3" in text


def test_progress_off():
    out = _Terminal()
    progress = Progress(out, mode="off")
    progress(EVENTS[0])
    progress.log("x")
    assert out.getvalue() == ""
    with pytest.raises(ValueError):
        Progress(out, mode="loud")


def test_format_event_without_total():
    text = format_event({"phase": "lloyd", "iteration": 7, "inertia": None})
    assert text.startswith("lloyd iteration 7 ") and "inertia=-" in text


def test_seed_file_is_not_replaced_once_a_checkpoint_exists(tmp_path):
    from daskmeans.cli._common import prepare_checkpoint as _prepare_checkpoint

    assert _prepare_checkpoint(str(tmp_path), 11) is None
    assert json.loads((tmp_path / "seed.json").read_text())["seed"] == 11
    assert _prepare_checkpoint(str(tmp_path), 12) is None  # nothing saved yet: replaced
    assert json.loads((tmp_path / "seed.json").read_text())["seed"] == 12
    from daskmeans.engine._lloyd import LloydState

    state = LloydState.start([np.zeros((2, 2))])
    state.n_iter[:] = 4
    Checkpoint(tmp_path, {}).save(state)
    assert _prepare_checkpoint(str(tmp_path), 13) == 4
    assert json.loads((tmp_path / "seed.json").read_text())["seed"] == 12
    os.remove(tmp_path / "seed.json")
