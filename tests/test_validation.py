"""Bad input gets a clear error naming the parameter, before any pass over the data."""

import warnings

import dask.array as da
import numpy as np
import pytest
import zarr
from sklearn.exceptions import NotFittedError

from daskmeans import KMeans
from daskmeans.testing import counting_dask

X = np.random.default_rng(0).normal(size=(50, 3))


@pytest.mark.parametrize(
    "params,exc,match",
    [
        ({"n_clusters": 0}, ValueError, "n_clusters"),
        ({"n_clusters": 2.5}, TypeError, "n_clusters"),
        ({"n_clusters": True}, TypeError, "n_clusters"),
        ({"n_clusters": 51}, ValueError, "n_samples=50 should be >= n_clusters=51"),
        ({"init": "kmeans"}, ValueError, "init must be one of"),
        ({"init": 3}, TypeError, "init"),
        ({"init": np.zeros((3, 2))}, ValueError,
         r"The shape of the initial centers \(3, 2\) does not match the number of clusters 8"),
        ({"init": np.zeros((8, 2))}, ValueError,
         r"does not match the number of features of the data 3.*init must have shape"),
        ({"init": np.full((8, 3), np.nan)}, ValueError, "init contains NaN"),
        ({"n_init": 0}, ValueError, "n_init"),
        ({"n_init": "many"}, ValueError, "n_init"),
        ({"max_iter": 0}, ValueError, "max_iter"),
        ({"max_iter": 1.5}, TypeError, "max_iter"),
        ({"tol": -1.0}, ValueError, "tol"),
        ({"tol": "small"}, TypeError, "tol"),
        ({"oversampling_factor": 0}, ValueError, "oversampling_factor"),
        ({"init_rounds": 0}, ValueError, "init_rounds"),
        ({"random_state": -3}, ValueError, "random_state"),
        ({"random_state": "seed"}, TypeError, "random_state"),
        ({"split_every": 1}, ValueError, "split_every"),
        ({"callback": 5}, TypeError, "callback"),
    ],
)
def test_bad_parameters(params, exc, match):
    Xd, counter = counting_dask(X, 10)
    with pytest.raises(exc, match=match):
        KMeans(**params).fit(Xd)
    assert counter.reads == 0  # raised before any work started


@pytest.mark.parametrize(
    "data,exc,match",
    [
        (np.zeros(10), ValueError, "Reshape your data.*2-D"),
        (np.zeros((2, 3, 4)), ValueError, "2-D"),
        (np.zeros((0, 3)), ValueError,
         r"0 sample\(s\) \(shape=\(0, 3\)\) while a minimum of 1 is required.*at least one sample"),
        (np.zeros((5, 0)), ValueError,
         r"0 feature\(s\) \(shape=\(5, 0\)\) while a minimum of 1 is required.*at least one "
         "feature"),
        (np.array([["a", "b"]] * 9), TypeError, "real numbers"),
        (np.array([["a", "b"]] * 9, dtype=object), TypeError, "real numbers"),
        (np.array([[1 + 1j, 2]] * 9), ValueError, "Complex data not supported.*real numbers"),
        (np.array([[np.nan, 1.0]] * 9), ValueError, "NaN or infinity"),
        (np.array([[np.inf, 1.0]] * 9), ValueError, "NaN or infinity"),
    ],
)
def test_bad_data(data, exc, match):
    with pytest.raises(exc, match=match):
        KMeans(2).fit(data)


def test_nan_in_dask_data_detected_before_returning():
    bad = X.copy()
    bad[33, 1] = np.nan
    with pytest.raises(ValueError, match="NaN or infinity"):
        KMeans(2, random_state=0).fit(da.from_array(bad, chunks=10))
    with pytest.raises(ValueError, match="NaN or infinity"):
        KMeans(2, init=X[:2]).fit(da.from_array(bad, chunks=10))


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("weighted", [False, True])
def test_lloyd_first_pass_checks_lazy_data_on_its_sums(value, dtype, weighted, monkeypatch):
    """Lazy data meets its finiteness check in the first Lloyd pass without a second
    read of the blocks: the float64 sums carry any NaN or infinity (a zero weight
    included), and the error is the same."""
    from daskmeans.engine import _lloyd

    reads = []
    real = _lloyd.check_block
    monkeypatch.setattr(_lloyd, "check_block",
                        lambda *a, **k: reads.append(k.get("data", True)) or real(*a, **k))
    good = X.astype(dtype)
    w = np.ones(len(good))
    km = KMeans(2, init=good[:2], max_iter=3)
    km.fit(da.from_array(good, chunks=10), sample_weight=w if weighted else None)
    assert reads and not any(reads)  # blocks checked (weights only), data not read again
    bad = good.copy()
    bad[33, 1] = value
    if weighted:
        w[33] = 0.0  # 0 * nan and 0 * inf are NaN: still caught
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # the error, not NumPy's warnings
        with pytest.raises(ValueError, match="NaN or infinity"):
            KMeans(2, init=good[:2]).fit(da.from_array(bad, chunks=10),
                                         sample_weight=w if weighted else None)


@pytest.mark.parametrize(
    "w,exc,match",
    [
        (np.ones(7), ValueError, r"sample_weight must have shape \(50,\)"),
        (-np.ones(50), ValueError, "sample_weight must be >= 0"),
        (np.full(50, np.nan), ValueError, "sample_weight contains NaN"),
        (np.zeros(50), ValueError, "at least one positive.*weights are zero"),
        (np.array(["x"] * 50), TypeError, "sample_weight must be numeric"),
    ],
)
def test_bad_sample_weight(w, exc, match):
    with pytest.raises(exc, match=match):
        KMeans(2).fit(X, sample_weight=w)


def test_negative_dask_weight_detected_in_first_pass():
    w = np.ones(50)
    w[40] = -1
    with pytest.raises(ValueError, match="sample_weight must be >= 0"):
        KMeans(2, random_state=0).fit(
            da.from_array(X, chunks=10), sample_weight=da.from_array(w, 10)
        )


def test_predict_before_fit_and_wrong_features():
    with pytest.raises(NotFittedError, match="not fitted yet"):
        KMeans(2).predict(X)
    km = KMeans(2, random_state=0).fit(X)
    with pytest.raises(ValueError, match="X has 2 features, but KMeans is expecting 3 features"):
        km.predict(X[:, :2])
    with pytest.raises(ValueError, match="X has 2 features"):
        km.transform(X[:, :2])


def test_zarr_path_errors(tmp_path):
    with pytest.raises(ValueError, match="no Zarr array found"):
        KMeans(2).fit(str(tmp_path / "missing.zarr"))
    g = zarr.open_group(str(tmp_path / "g.zarr"), mode="w")
    g.create_array("x", shape=(5, 2), dtype="f8")
    with pytest.raises(ValueError, match="is a Zarr group"):
        KMeans(2).fit(str(tmp_path / "g.zarr"))


def test_load_rejects_other_files(tmp_path):
    p = tmp_path / "m.json"
    p.write_text('{"format": "other"}')
    with pytest.raises(ValueError, match="expected format"):
        KMeans.load(p)
    with pytest.raises(ValueError, match="no file"):
        KMeans.load(tmp_path / "none.json")


def test_numpy_input_is_wrapped_without_copy_or_hash(monkeypatch):
    """NumPy data becomes row blocks that are views of it (da.from_array copies it
    and hashes all of it); the name is random unless a content name is asked for."""
    import dask.base

    from daskmeans._validation import check_array_input, check_sample_weight

    data = np.random.default_rng(3).normal(size=(1000, 4))
    hashed = []
    real = dask.base.tokenize
    monkeypatch.setattr("daskmeans._validation.tokenize",
                        lambda *a, **k: hashed.append(1) or real(*a, **k))
    Xd, in_memory = check_array_input(data)
    assert in_memory and not hashed
    graph = dict(Xd.__dask_graph__())
    blocks = [graph[(Xd.name, i, 0)] for i in range(Xd.numblocks[0])]
    assert all(np.shares_memory(b, data) for b in blocks)
    np.testing.assert_array_equal(Xd.compute(), data)
    assert check_array_input(data)[0].name != Xd.name  # random names: no hashing
    named = check_array_input(data, content_name=True)[0]
    assert hashed and named.name == check_array_input(data.copy(), content_name=True)[0].name
    assert named.name != check_array_input(data + 1, content_name=True)[0].name
    w = np.linspace(1, 2, 1000)
    wd = check_sample_weight(w, Xd, in_memory=True)
    assert wd.chunks[0] == Xd.chunks[0]
    np.testing.assert_array_equal(wd.compute(), w)


def test_parameter_table_constraints():
    """check_params: a value of a matching type that no constraint accepts is a
    ValueError, one of no matching type a TypeError; both name parameter and value."""
    from numbers import Integral, Real

    from daskmeans._errors import InvalidInputError, InvalidInputTypeError
    from daskmeans._validation import (
        Boolean,
        Callable,
        Interval,
        NoneValue,
        Options,
        RandomStateLike,
        check_params,
    )

    table = {
        "k": [Interval(Integral, 1)],
        "ratio": [Interval(Real, 0, 1, high_open=True), NoneValue()],
        "mode": [Options("a", "b"), Callable()],
        "flag": [Boolean()],
        "seed": [RandomStateLike()],
    }
    good = {"k": 3, "ratio": None, "mode": print, "flag": np.True_, "seed": np.int64(4)}
    check_params(table, good)
    check_params(table, dict(good, ratio=0.0, mode="b", seed=np.random.default_rng(0)))
    cases = [
        ({"k": 0}, InvalidInputError, "k must be an integer >= 1, got 0."),
        ({"k": True}, InvalidInputTypeError, "k must be an integer >= 1, got bool: True."),
        ({"ratio": 1.0}, InvalidInputError,
         "ratio must be a finite real number in [0, 1) or None, got 1.0."),
        ({"ratio": float("nan")}, InvalidInputError, "ratio must be"),
        ({"mode": "c"}, InvalidInputError,
         "mode must be one of ['a', 'b'] or a callable, got 'c'."),
        ({"flag": 1}, InvalidInputTypeError, "flag must be True or False, got int: 1."),
        ({"seed": -1}, InvalidInputError, "seed must be None, a non-negative int"),
        ({"seed": 1.5}, InvalidInputTypeError, "seed must be None"),
    ]
    for change, exc, msg in cases:
        with pytest.raises(exc) as info:
            check_params(table, dict(good, **change))
        assert str(info.value).startswith(msg), str(info.value)


@pytest.mark.parametrize(
    "data,exc",
    [(np.zeros(10), "InvalidInputError"), (np.zeros((5, 0)), "InvalidInputError"),
     (np.array([[1 + 1j, 2]] * 9), "InvalidInputError"),
     (np.array([["a", "b"]] * 9), "InvalidInputTypeError"),
     (np.array([[np.nan, 1.0]] * 9), "InvalidInputError")],
)
def test_bad_data_is_an_input_error(data, exc):
    """The command line tells bad input (exit 2) from internal errors by these types."""
    from daskmeans import _errors

    with pytest.raises(getattr(_errors, exc)):
        KMeans(2).fit(data)


@pytest.mark.parametrize("n, d, itemsize", [(1000, 2, 4), (10_000, 8, 4), (100_000, 8, 4),
                                            (100_000, 8, 8), (2_000_000, 32, 4)])
def test_default_row_chunks_keep_small_blocks_whole(n, d, itemsize):
    from daskmeans._validation import MIN_SPLIT_BLOCK_BYTES, TARGET_BLOCK_BYTES, default_row_chunks

    rows = default_row_chunks(n, d, itemsize)
    blocks = -(-n // rows)
    nbytes = n * d * itemsize
    if nbytes < 2 * MIN_SPLIT_BLOCK_BYTES:
        assert blocks == 1  # splitting would only add per-block calls
    else:
        assert rows * d * itemsize >= MIN_SPLIT_BLOCK_BYTES - d * itemsize
        assert blocks == 1 or blocks % 2 == 0
    assert rows * d * itemsize <= TARGET_BLOCK_BYTES
    assert blocks <= max(8, -(-nbytes // TARGET_BLOCK_BYTES) + 1)
