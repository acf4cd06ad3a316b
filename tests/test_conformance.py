"""Drop-in for scikit-learn: its estimator checks, exception types and wording,
feature names, set_output, and the parameter tables of the shared base."""

import importlib
import inspect
import json
import os
import pkgutil
import subprocess
import sys
import warnings

import dask.array as da
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from sklearn.exceptions import NotFittedError
from sklearn.utils.estimator_checks import parametrize_with_checks

import daskmeans
from daskmeans import HierarchicalKMeans, KMeans, MiniBatchKMeans
from daskmeans._base import KMeansBase, lazy_labels, resolved_params
from daskmeans._errors import InvalidInputError, InvalidInputTypeError

ESTIMATORS = (KMeans, MiniBatchKMeans)

#: What scikit-learn 1.9 declares as expected failures for its own KMeans and
#: MiniBatchKMeans (sklearn/utils/_test_common/instance_generator.py); nothing more.
SKLEARN_XFAILS = {
    "check_sample_weight_equivalence_on_dense_data": (
        "sample_weight is not equivalent to removing/repeating samples (as scikit-learn's)."
    ),
    "check_sample_weight_equivalence_on_sparse_data": (
        "sample_weight is not equivalent to removing/repeating samples (as scikit-learn's)."
    ),
}


def _check_name(check) -> str:
    return getattr(check, "func", check).__name__


def _checked_estimators():
    return [KMeans(), MiniBatchKMeans(), HierarchicalKMeans()]


with warnings.catch_warnings():
    # the estimators implement scikit-learn's protocol without deriving from its
    # BaseEstimator (so that importing daskmeans does not import scikit-learn)
    warnings.filterwarnings("ignore", "Estimator .* does not inherit from", UserWarning)
    _with_checks = parametrize_with_checks(_checked_estimators(),
                                           expected_failed_checks=lambda est: SKLEARN_XFAILS)


@_with_checks
def test_sklearn_estimator_checks(estimator, check):
    if _check_name(check) == "check_array_api_input" and not os.environ.get("SCIPY_ARRAY_API"):
        # it needs SCIPY_ARRAY_API=1 before SciPy is imported: run it in a fresh process
        _run_check_with_array_api(estimator, check)
        return
    check(estimator)


_ARRAY_API_RESULTS: dict = {}


def _run_check_with_array_api(estimator, check) -> None:
    """Run the array API check of every estimator in one fresh process (with
    SCIPY_ARRAY_API=1 set before SciPy is imported), once; look up this one's result."""
    key = (type(estimator).__name__, repr(sorted(check.keywords.items())))
    if key not in _ARRAY_API_RESULTS:
        code = ["import traceback, daskmeans", "from sklearn.utils import estimator_checks as ec"]
        for est in _checked_estimators():
            name = type(est).__name__
            code += [
                "try:",
                f"    ec.{_check_name(check)}({name!r}, daskmeans.{name}(**{est.get_params()!r}),"
                f" **{check.keywords!r})",
                f"    print('RESULT', {name!r}, 'ok')",
                "except Exception:",
                f"    print('RESULT', {name!r}, repr(traceback.format_exc()))",
            ]
        env = dict(os.environ, SCIPY_ARRAY_API="1")
        run = subprocess.run([sys.executable, "-c", "\n".join(code)], env=env,
                             capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stderr[-3000:]
        for line in run.stdout.splitlines():
            if line.startswith("RESULT "):
                _, name, result = line.split(" ", 2)
                _ARRAY_API_RESULTS[(name, key[1])] = result
    assert _ARRAY_API_RESULTS[key] == "ok", _ARRAY_API_RESULTS[key]


def test_declared_xfails_are_those_of_sklearn():
    from sklearn.cluster import KMeans as SKKMeans
    from sklearn.cluster import MiniBatchKMeans as SKMiniBatchKMeans
    from sklearn.utils._test_common.instance_generator import _get_expected_failed_checks

    for est in (SKKMeans(), SKMiniBatchKMeans()):
        assert set(_get_expected_failed_checks(est)) == set(SKLEARN_XFAILS)


def _subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def _all_estimators():
    # every module of the package, so that estimators added later are found too
    for info in pkgutil.iter_modules(daskmeans.__path__):
        if not info.name.startswith("_") and info.name not in ("plot", "__main__"):
            importlib.import_module(f"daskmeans.{info.name}")
    return sorted(set(_subclasses(KMeansBase)), key=lambda c: c.__name__)


def test_parameter_tables_name_every_init_parameter():
    found = _all_estimators()
    assert {KMeans, MiniBatchKMeans} <= set(found)
    for cls in found:
        init = inspect.signature(cls.__init__).parameters
        names = {p for p in init if p != "self"}
        assert set(cls._parameter_table) == names, cls.__name__
        assert all(init[p].kind == init[p].KEYWORD_ONLY for p in names - {"n_clusters"})


def test_minibatch_is_not_a_kmeans():
    assert not issubclass(MiniBatchKMeans, KMeans)
    assert issubclass(MiniBatchKMeans, KMeansBase) and issubclass(KMeans, KMeansBase)


X = np.random.default_rng(0).normal(size=(40, 3))


@pytest.mark.parametrize("cls", ESTIMATORS)
@pytest.mark.parametrize("method", ["predict", "transform", "score", "get_feature_names_out"])
def test_not_fitted_error(cls, method):
    args = () if method == "get_feature_names_out" else (X,)
    with pytest.raises(NotFittedError, match=f"This {cls.__name__} instance is not fitted yet"):
        getattr(cls(2), method)(*args)


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_not_fitted_error_for_writers(cls, tmp_path):
    with pytest.raises(NotFittedError):
        daskmeans.write_labels(cls(2), X, tmp_path / "labels.zarr")
    with pytest.raises(NotFittedError):
        cls(2).save(tmp_path / "m.json")
    with pytest.raises(NotFittedError):
        lazy_labels(cls(2), X)


@pytest.mark.parametrize("cls", ESTIMATORS)
@pytest.mark.parametrize(
    ("kwargs", "data", "match"),
    [
        ({"n_clusters": 50}, X, r"n_samples=40 should be >= n_clusters=50"),
        ({"init": np.zeros((3, 3))}, X,
         r"The shape of the initial centers \(3, 3\) does not match the number of clusters 2"),
        ({"init": np.zeros((2, 4))}, X,
         r"The shape of the initial centers \(2, 4\) does not match the number of features "
         r"of the data 3"),
        ({}, X[:, 0], r"Expected 2D array, got 1D array instead.*Reshape your data"),
        ({}, X[:, :0],
         r"0 feature\(s\) \(shape=\(40, 0\)\) while a minimum of 1 is required"),
        ({}, X[:0], r"0 sample\(s\) \(shape=\(0, 3\)\) while a minimum of 1 is required"),
        ({}, X.astype(complex), "Complex data not supported"),
    ],
)
def test_sklearn_wording_for_bad_input(cls, kwargs, data, match):
    with pytest.raises(ValueError, match=match) as info:
        cls(**{"n_clusters": 2, **kwargs}).fit(data)
    assert isinstance(info.value, InvalidInputError)
    with pytest.raises(ValueError, match=match):  # the same from the lazy path
        cls(**{"n_clusters": 2, **kwargs}).fit(da.from_array(data))


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_zero_sample_weights_and_object_dtype(cls):
    with pytest.raises(ValueError, match="weights are zero") as info:
        cls(2).fit(X, sample_weight=np.zeros(len(X)))
    assert isinstance(info.value, InvalidInputError)
    # numbers held in an object array are converted, as scikit-learn does; others are not
    km = cls(2, random_state=0).fit(X.astype(object))
    assert km.cluster_centers_.dtype == np.float64
    bad = X.astype(object)
    bad[0, 0] = {"a": 1}
    with pytest.raises(TypeError, match="argument must be a string.* number"):
        cls(2).fit(bad)


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_explicit_init_runs_one_init_with_sklearns_warning(cls):
    with pytest.warns(RuntimeWarning, match="Explicit initial center position passed: "
                                            f"performing only one init in {cls.__name__} "
                                            "instead of n_init=3"):
        km = cls(2, init=X[:2], n_init=3).fit(X)
    with pytest.warns(RuntimeWarning, match="Explicit initial center position passed"):
        assert resolved_params(km)["n_init"] == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cls(2, init=X[:2]).fit(X)  # n_init="auto" asks for one: no warning


@pytest.mark.parametrize(("cls", "many"), [(KMeans, 10), (MiniBatchKMeans, 3)])
def test_n_init_auto_follows_sklearn(cls, many):
    assert resolved_params(cls(2, init="random"))["n_init"] == many
    assert resolved_params(cls(2, init=lambda X, k, rs: X[:k]))["n_init"] == many
    assert resolved_params(cls(2, init="k-means++"))["n_init"] == 1
    assert resolved_params(cls(2, n_init=4))["n_init"] == 4


@pytest.mark.parametrize("cls", ESTIMATORS)
@pytest.mark.parametrize(
    ("params", "exc"),
    [({"n_clusters": 0}, InvalidInputError), ({"n_clusters": 2.0}, InvalidInputTypeError),
     ({"max_iter": "10"}, InvalidInputTypeError), ({"tol": -1}, InvalidInputError),
     ({"tol": float("inf")}, InvalidInputError), ({"verbose": -1}, InvalidInputError),
     ({"random_state": "seed"}, InvalidInputTypeError), ({"init": "nope"}, InvalidInputError),
     ({"n_init": "many"}, InvalidInputError), ({"nan_policy": "drop"}, InvalidInputError)],
)
def test_bad_parameters_are_input_errors_naming_the_parameter(cls, params, exc):
    (name, value), = params.items()
    with pytest.raises(exc, match=f"{name} must be .*, got .*{value!r}"):
        cls(**params).fit(X)


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_feature_names_from_pandas(cls):
    df = pd.DataFrame(X, columns=["a", "b", "c"], index=np.arange(100, 140))
    km = cls(2, random_state=0).fit(df)
    assert km.n_features_in_ == 3
    assert km.feature_names_in_.dtype == object
    assert km.feature_names_in_.tolist() == ["a", "b", "c"]
    prefix = cls.__name__.lower()
    assert km.get_feature_names_out().tolist() == [f"{prefix}0", f"{prefix}1"]
    assert km.get_feature_names_out(["a", "b", "c"]).tolist() == [f"{prefix}0", f"{prefix}1"]
    with pytest.raises(ValueError, match="input_features is not equal to feature_names_in_"):
        km.get_feature_names_out(["a", "b", "x"])
    with pytest.raises(ValueError, match="Feature names must be in the same order"):
        km.predict(df[["c", "b", "a"]])
    with pytest.raises(ValueError, match="Feature names unseen at fit time:\n- x\n"):
        km.transform(df.rename(columns={"a": "x"}))
    with pytest.warns(UserWarning, match="X does not have valid feature names"):
        km.predict(X)
    # fitted without names: names of a later X warn, and the attribute is gone after a refit
    with pytest.warns(UserWarning, match="X has feature names, but"):
        cls(2, random_state=0).fit(X).predict(df)
    assert not hasattr(km.fit(X), "feature_names_in_")
    # a saved model keeps them
    again = cls.from_dict(json.loads(json.dumps(cls(2, random_state=0).fit(df).to_dict())))
    assert again.feature_names_in_.tolist() == ["a", "b", "c"]


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_feature_names_from_dask_dataframe(cls):
    df = pd.DataFrame(X, columns=["a", "b", "c"])
    ddf = dd.from_pandas(df, npartitions=3)
    km = cls(2, random_state=0).fit(ddf)
    assert km.feature_names_in_.tolist() == ["a", "b", "c"]
    np.testing.assert_array_equal(km.predict(ddf).compute().to_numpy(), km.predict(df))
    with pytest.raises(ValueError, match="Feature names must be in the same order"):
        km.predict(ddf[["c", "b", "a"]])


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_set_output_pandas(cls):
    df = pd.DataFrame(X, columns=["a", "b", "c"], index=np.arange(100, 140))
    km = cls(2, random_state=0).set_output(transform="pandas")
    out = km.fit_transform(df)
    prefix = cls.__name__.lower()
    assert isinstance(out, pd.DataFrame)
    assert out.columns.tolist() == [f"{prefix}0", f"{prefix}1"]
    assert out.index.tolist() == df.index.tolist()
    np.testing.assert_allclose(out.to_numpy(), km.set_output(transform="default").transform(df))
    # lazy input stays lazy: a DataFrame would compute every distance at once
    with pytest.raises(ValueError, match="applies to in-memory input"):
        km.set_output(transform="pandas").transform(dd.from_pandas(df, npartitions=2))


def test_minibatch_fit_transform_and_fit_predict():
    mbk = MiniBatchKMeans(3, random_state=0, batch_size=10)
    D = mbk.fit_transform(X)
    assert D.shape == (40, 3)
    np.testing.assert_array_equal(D.argmin(axis=1), mbk.labels_)
    np.testing.assert_array_equal(MiniBatchKMeans(3, random_state=0, batch_size=10)
                                  .fit_predict(X), mbk.labels_)


def test_minibatch_attributes_as_sklearn():
    from sklearn.cluster import MiniBatchKMeans as SKMiniBatchKMeans

    rng = np.random.default_rng(1)
    Y = rng.normal(size=(300, 2))
    C0 = Y[:4].copy()
    ours = MiniBatchKMeans(4, init=C0, batch_size=100, random_state=0, reassignment_ratio=0.0)
    ref = SKMiniBatchKMeans(4, init=C0, n_init=1, batch_size=100, random_state=0,
                            reassignment_ratio=0.0)
    for start in (0, 100, 200):
        ours.partial_fit(Y[start:start + 100])
        ref.partial_fit(Y[start:start + 100])
        assert ours.n_steps_ == ref.n_steps_
        # labels_ and inertia_ of the batch under the updated centres (compute_labels)
        np.testing.assert_array_equal(ours.labels_, ref.labels_)
        np.testing.assert_allclose(ours.inertia_, ref.inertia_, rtol=1e-10)
    fitted = MiniBatchKMeans(4, batch_size=60, max_iter=3, max_no_improvement=None,
                             random_state=0).fit(Y)
    assert fitted.n_iter_ == 3 and fitted.n_steps_ == 3 * 5  # n_iter_ counts passes
    quiet = MiniBatchKMeans(4, batch_size=60, max_iter=3, max_no_improvement=None,
                            random_state=0, compute_labels=False).fit(Y)
    assert not hasattr(quiet, "labels_") and quiet.n_passes_ == 3
    assert quiet.inertia_ == quiet.inertia_history_[-1]  # scikit-learn's smoothed estimate
    np.testing.assert_array_equal(quiet.cluster_centers_, fitted.cluster_centers_)


@pytest.mark.parametrize(
    ("k", "batch_size", "init_size", "n", "expected"),
    [(3, 10, None, 1000, 30), (20, 5, None, 1000, 60), (3, 10, None, 20, 20),
     (3, 10, 50, 1000, 50), (3, 10, 5000, 1000, 1000)],
)
def test_minibatch_init_size_follows_sklearn(k, batch_size, init_size, n, expected):
    model = MiniBatchKMeans(k, batch_size=batch_size, init_size=init_size)
    model._validate_params()
    model._resolve_sizes(n)
    assert model._init_size == expected


def test_minibatch_init_size_below_n_clusters_warns():
    with pytest.warns(RuntimeWarning, match="init_size=2 should be larger than n_clusters=3"):
        model = MiniBatchKMeans(3, init_size=2, random_state=0).fit(X)
    assert model._init_size == 9


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_estimator_tags_are_honest(cls):
    from sklearn.utils import get_tags

    tags = get_tags(cls())
    assert tags.input_tags.sparse and not tags.input_tags.allow_nan
    assert tags.transformer_tags.preserves_dtype == ["float64", "float32"]
    assert get_tags(cls(nan_policy="omit")).input_tags.allow_nan
    if cls is KMeans:  # centring would make sparse data dense: refused, and said so
        assert not get_tags(cls(standardize=True)).input_tags.sparse
    for dtype in (np.float32, np.float64):
        assert cls(2, random_state=0).fit(X.astype(dtype)).transform(X.astype(dtype)).dtype == dtype


def test_estimators_work_without_sklearn():
    """scikit-learn is optional: the stand-in base gives parameters, errors and methods."""
    code = """
import sys
sys.modules["sklearn"] = None  # import sklearn now fails
import json
import numpy as np
import daskmeans
from daskmeans._compat import NotFittedError
X = np.random.default_rng(0).normal(size=(40, 3))
for cls in (daskmeans.KMeans, daskmeans.MiniBatchKMeans, daskmeans.HierarchicalKMeans):
    km = cls(2, random_state=0).fit(X)
    assert repr(km) == f"{cls.__name__}(n_clusters=2, random_state=0)", repr(km)
    assert km.set_params(max_iter=50) is km and km.get_params()["max_iter"] == 50
    frame = km.set_output(transform="pandas").transform(X)
    assert list(frame.columns) == km.get_feature_names_out().tolist(), frame
    km.set_output(transform="default")
    assert (km.fit_predict(X) == km.predict(X)).all()
    assert km.fit_transform(X).shape == (40, 2)
    again = cls.from_dict(json.loads(json.dumps(km.to_dict())))
    assert again.get_params() == km.get_params()
    assert (again.predict(X) == km.predict(X)).all()
    try:
        cls(2).predict(X)
    except NotFittedError as exc:
        assert isinstance(exc, ValueError) and "not fitted yet" in str(exc)
    else:
        raise AssertionError("no NotFittedError")
    try:
        cls(0).fit(X)
    except ValueError as exc:
        assert "n_clusters must be an integer >= 1" in str(exc)
print("ok")
"""
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr[-3000:]


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_sparse_input_has_the_same_wording(cls):
    import scipy.sparse as sp

    with pytest.raises(InvalidInputError, match=r"0 feature\(s\) \(shape=\(5, 0\)\)"):
        cls(2).fit(sp.csr_matrix((5, 0)))
    bad = sp.csr_matrix(X)
    bad.data[0] = np.nan
    with pytest.raises(InvalidInputError, match="NaN"):
        cls(2).fit(bad)
