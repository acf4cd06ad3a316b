"""Tests of daskmeans.engine._checkpoint: exact, atomic, fingerprinted Lloyd checkpoints."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from daskmeans import KMeans
from daskmeans.datasets import make_blobs
from daskmeans.engine._checkpoint import (
    CHECKPOINT_FILE,
    Checkpoint,
    CheckpointMismatchError,
    decode,
    encode,
)
from daskmeans.engine._lloyd import LloydState


def _state(dtype, seed=0) -> LloydState:
    rng = np.random.default_rng(seed)
    centers = [rng.standard_normal((3, 2)).astype(dtype), rng.standard_normal((3, 2)).astype(dtype)]
    state = LloydState.start(centers, tol_abs=1e-7 / 3, n_passes=5)
    state.n_iter[:] = [4, 2]
    state.active[1] = False
    state.strict[1] = True
    state.inertia[0] = 1 / 3
    state.history = [[0.1 + 0.2, 1 / 7, float("nan")], [np.float64(2.5)]]
    state.sizes = [rng.random(3), np.array([1.0, np.inf, 0.0])]
    return state


def _assert_same_state(a: LloydState, b: LloydState) -> None:
    assert len(a.centers) == len(b.centers)
    for x, y in zip(a.centers, b.centers, strict=True):
        assert x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes()
    for name in ("n_iter", "active", "strict", "inertia"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and x.tobytes() == y.tobytes(), name
    assert json.dumps(a.history) == json.dumps([[float(v) for v in h] for h in b.history])
    assert a.tol_abs == b.tol_abs and a.n_passes == b.n_passes
    for x, y in zip(a.sizes, b.sizes, strict=True):
        assert x.tobytes() == y.tobytes()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_round_trip_is_bitwise(tmp_path, dtype):
    state = _state(dtype)
    ckpt = Checkpoint(tmp_path / "ck", {"n_clusters": 3, "data": {"shape": [10, 2]}})
    assert ckpt.load() is None
    ckpt.save(state)
    loaded = Checkpoint(tmp_path / "ck", {"n_clusters": 3, "data": {"shape": [10, 2]}}).load()
    assert isinstance(loaded, LloydState)
    _assert_same_state(state, loaded)
    assert loaded.centers[0].flags.writeable


def test_file_is_plain_json_without_pickle(tmp_path):
    ckpt = Checkpoint(tmp_path, {"k": 3})
    ckpt.save(_state(np.float32))
    doc = json.loads((tmp_path / CHECKPOINT_FILE).read_text())
    assert doc["kind"] == "daskmeans-checkpoint" and doc["format"] == 1
    assert "pickle" not in (tmp_path / CHECKPOINT_FILE).read_text()
    with pytest.raises(TypeError):
        encode(np.array([object()], dtype=object))


def test_encode_decode_values():
    values = [None, True, 3, "x", 0.1, float("inf"), -float("inf"), np.float32(1.1),
              np.arange(6, dtype=">i4").reshape(2, 3), [1, (2, 3)], {"a": [np.int64(2)]}]
    back = decode(json.loads(json.dumps(encode(values))))
    assert back[:7] == [None, True, 3, "x", 0.1, float("inf"), -float("inf")]
    assert back[7] == np.float32(1.1) and back[7].dtype == np.float32
    assert np.array_equal(back[8], np.arange(6).reshape(2, 3)) and back[8].dtype == np.int32
    assert back[9] == [1, [2, 3]] and back[10] == {"a": [2]}
    nan = decode(json.loads(json.dumps(encode(float("nan")))))
    assert np.isnan(nan)


def test_different_fingerprint_is_refused(tmp_path):
    Checkpoint(tmp_path, {"params": {"n_clusters": 3, "tol": 1e-4}, "data": "a"}).save(
        _state(np.float64)
    )
    other = Checkpoint(tmp_path, {"params": {"n_clusters": 4, "tol": 1e-4}, "data": "a"})
    with pytest.raises(CheckpointMismatchError, match="different data or parameters") as info:
        other.load()
    assert isinstance(info.value, ValueError)
    assert "params" in str(info.value) and "3" in str(info.value) and "4" in str(info.value)
    with pytest.raises(ValueError, match="data"):
        Checkpoint(tmp_path, {"params": {"n_clusters": 3, "tol": 1e-4}, "data": "b"}).load()


def test_fingerprint_compares_canonical_json(tmp_path):
    Checkpoint(tmp_path, {"shape": (10, 2), "k": np.int64(3)}).save(_state(np.float64))
    assert Checkpoint(tmp_path, {"k": 3, "shape": [10, 2]}).load() is not None


def test_damaged_or_foreign_files_are_reported(tmp_path):
    path = tmp_path / CHECKPOINT_FILE
    path.write_text("{not json")
    with pytest.raises(ValueError, match="not a valid checkpoint"):
        Checkpoint(tmp_path, {}).load()
    path.write_text(json.dumps({"kind": "something-else"}))
    with pytest.raises(ValueError, match="not a daskmeans checkpoint"):
        Checkpoint(tmp_path, {}).load()
    path.write_text(json.dumps({"kind": "daskmeans-checkpoint", "format": 99}))
    with pytest.raises(ValueError, match="format 99"):
        Checkpoint(tmp_path, {}).load()


def test_state_fields_must_match(tmp_path):
    ckpt = Checkpoint(tmp_path, {})
    ckpt.save(_state(np.float64))
    doc = json.loads(ckpt.path.read_text())
    del doc["state"]["__dict__"]["sizes"]
    ckpt.path.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="incompatible version"):
        ckpt.load()


def test_save_is_atomic(tmp_path, monkeypatch):
    ckpt = Checkpoint(tmp_path, {"k": 3})
    first = _state(np.float64, seed=1)
    ckpt.save(first)

    def failing_replace(src, dst):
        raise OSError("simulated crash before the rename")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="simulated"):
        ckpt.save(_state(np.float64, seed=2))
    monkeypatch.undo()
    _assert_same_state(first, ckpt.load())
    assert [p.name for p in tmp_path.iterdir()] == [CHECKPOINT_FILE]


def test_load_removes_what_a_killed_save_left(tmp_path):
    ckpt = Checkpoint(tmp_path, {"k": 3})
    first = _state(np.float64, seed=1)
    ckpt.save(first)
    # a save killed by SIGKILL after writing its temporary and before the rename
    (tmp_path / f".{CHECKPOINT_FILE}.k1ll3d.tmp").write_text('{"partial": ')
    (tmp_path / "notes.tmp").write_text("not ours")
    _assert_same_state(first, ckpt.load())
    assert sorted(p.name for p in tmp_path.iterdir()) == [CHECKPOINT_FILE, "notes.tmp"]


def test_clear(tmp_path):
    ckpt = Checkpoint(tmp_path, {})
    ckpt.save(_state(np.float64))
    ckpt.clear()
    assert ckpt.load() is None
    ckpt.clear()


class _Stop(Exception):
    pass


def _stop_after(n: int):
    def callback(event):
        if event["phase"] == "lloyd" and event["iteration"] >= n:
            raise _Stop()

    return callback


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_interrupted_fit_resumes_bitwise(tmp_path, dtype):
    X, _ = make_blobs(3000, 3, 6, cluster_std=0.6, chunk_rows=500, random_state=2, dtype=dtype)
    params = {"n_clusters": 6, "random_state": 0, "tol": 0.0, "max_iter": 25, "init": "random"}
    ref = KMeans(**params).fit(X)
    ckdir = tmp_path / "ck"
    with pytest.raises(_Stop):
        KMeans(**params, callback=_stop_after(3)).fit(X, checkpoint=ckdir)
    saved = Checkpoint(ckdir, {}).read()
    n_saved = int(decode(saved["state"])["n_iter"].max())
    assert 1 <= n_saved < ref.n_iter_
    resumed = KMeans(**params).fit(X, checkpoint=ckdir)
    assert resumed.cluster_centers_.dtype == dtype
    assert resumed.cluster_centers_.tobytes() == ref.cluster_centers_.tobytes()
    assert resumed.n_iter_ == ref.n_iter_ and resumed.inertia_ == ref.inertia_
    assert resumed.inertia_history_ == ref.inertia_history_
    assert np.array_equal(resumed.labels_.compute(), ref.labels_.compute())


def test_numpy_fit_resumes_from_its_checkpoint(tmp_path):
    """NumPy data is recognised by a hash of its content (its Dask name is random
    otherwise), so an interrupted fit on the same array resumes."""
    X, _ = make_blobs(2000, 3, 5, cluster_std=0.6, chunk_rows=500, random_state=4)
    X = X.compute()
    w = np.linspace(0.5, 1.5, len(X))
    params = {"n_clusters": 5, "random_state": 0, "tol": 0.0, "max_iter": 12, "init": "random"}
    ref = KMeans(**params).fit(X, sample_weight=w)
    with pytest.raises(_Stop):
        KMeans(**params, callback=_stop_after(3)).fit(X, sample_weight=w,
                                                     checkpoint=tmp_path / "ck")
    resumed = KMeans(**params).fit(X.copy(), sample_weight=w.copy(), checkpoint=tmp_path / "ck")
    assert resumed.cluster_centers_.tobytes() == ref.cluster_centers_.tobytes()
    assert resumed.inertia_history_ == ref.inertia_history_
    np.testing.assert_array_equal(resumed.labels_, ref.labels_)
    with pytest.raises(ValueError, match="different data or parameters"):
        KMeans(**params).fit(X + 1.0, sample_weight=w, checkpoint=tmp_path / "ck")


def test_fit_refuses_checkpoint_of_other_parameters(tmp_path):
    X, _ = make_blobs(500, 2, 3, chunk_rows=100, random_state=0)
    KMeans(n_clusters=3, random_state=0, max_iter=3).fit(X, checkpoint=tmp_path)
    before = (tmp_path / CHECKPOINT_FILE).read_bytes()
    with pytest.raises(ValueError, match="different data or parameters"):
        KMeans(n_clusters=4, random_state=0, max_iter=3).fit(X, checkpoint=tmp_path)
    X2, _ = make_blobs(500, 2, 3, chunk_rows=100, random_state=1)
    with pytest.raises(ValueError, match="different data or parameters"):
        KMeans(n_clusters=3, random_state=0, max_iter=3).fit(X2, checkpoint=tmp_path)
    assert (tmp_path / CHECKPOINT_FILE).read_bytes() == before
