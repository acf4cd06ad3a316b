"""scikit-learn's estimator protocol without scikit-learn's base classes: parameters,
repr, tags, set_output and the HTML repr, each compared with scikit-learn's own."""

import re

import numpy as np
import pandas as pd
import pytest
import sklearn
from sklearn import base as skbase
from sklearn.base import clone
from sklearn.cluster import KMeans as SKKMeans
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils import estimator_html_repr, get_tags

from daskmeans import HierarchicalKMeans, KMeans, MiniBatchKMeans
from daskmeans._sklearn_api import BaseEstimator, ClusterMixin, TransformerMixin

X = np.random.default_rng(0).normal(size=(60, 3))
ESTIMATORS = (KMeans, MiniBatchKMeans, HierarchicalKMeans)


def sklearn_repr(est, **kwargs) -> str:
    """scikit-learn's repr code applied to ``est``."""
    return skbase.BaseEstimator.__repr__(est, **kwargs)


class Outer(BaseEstimator):
    def __init__(self, inner=None, alpha=1.0):
        self.inner = inner
        self.alpha = alpha


class SKOuter(skbase.BaseEstimator):
    def __init__(self, inner=None, alpha=1.0):
        self.inner = inner
        self.alpha = alpha


def test_get_params_and_nested_set_params_as_sklearn():
    ours, ref = Outer(KMeans(3), alpha=2.0), SKOuter(KMeans(3), alpha=2.0)

    def shown(params):
        return {k: repr(v) for k, v in params.items()}

    assert shown(ours.get_params(deep=False)) == shown(ref.get_params(deep=False))
    assert shown(ours.get_params()) == shown(ref.get_params())
    assert "inner__n_clusters" in ours.get_params()
    assert ours.set_params(inner__n_clusters=5, alpha=0.5) is ours
    ref.set_params(inner__n_clusters=5, alpha=0.5)
    assert ours.inner.n_clusters == ref.inner.n_clusters == 5 and ours.alpha == 0.5
    assert KMeans().set_params() is not None  # no parameters: nothing to check


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_invalid_parameter_has_sklearns_wording(cls):
    est = cls(3)
    with pytest.raises(ValueError) as ours:
        est.set_params(n_cluster=4)
    with pytest.raises(ValueError) as ref:
        skbase.BaseEstimator.set_params(est, n_cluster=4)
    assert str(ours.value) == str(ref.value)
    assert str(ours.value).startswith(
        f"Invalid parameter 'n_cluster' for estimator {cls.__name__}(n_clusters=3). "
        "Valid parameters are: ['")


@pytest.mark.parametrize("est", [
    KMeans(),
    KMeans(3),
    KMeans(3, init=np.arange(6.0).reshape(3, 2)),
    KMeans(init=np.arange(400.0).reshape(200, 2)),  # long: scikit-learn's ellipsis
    KMeans(10, max_iter=10, tol=1e-3, random_state=np.random.RandomState(0), verbose=1,
           n_init=4, oversampling_factor=3.0, init_rounds=2, split_every=4, metric="cosine",
           persist=True, algorithm="lloyd"),  # several lines
    KMeans(tol=float("nan")),
    MiniBatchKMeans(5, batch_size=100),
    HierarchicalKMeans(100),
    Outer(KMeans(3)),
], ids=repr)
def test_repr_is_sklearns(est):
    assert repr(est) == sklearn_repr(est)
    assert repr(est) == sklearn_repr(est, N_CHAR_MAX=700)
    with sklearn.config_context(print_changed_only=False):
        assert repr(est) == sklearn_repr(est)


def test_repr_reads_like_sklearns_kmeans():
    assert repr(KMeans(n_clusters=3)) == repr(SKKMeans(n_clusters=3)) == "KMeans(n_clusters=3)"
    assert repr(KMeans()) == "KMeans()"
    assert repr(KMeans(3, random_state=0)) == repr(SKKMeans(3, random_state=0))


def test_tags_are_those_of_sklearns_mixins():
    class Ours(ClusterMixin, TransformerMixin, BaseEstimator):
        pass

    class Theirs(skbase.ClusterMixin, skbase.TransformerMixin, skbase.BaseEstimator):
        pass

    assert get_tags(Ours()) == get_tags(Theirs())
    assert get_tags(BaseEstimator()) == get_tags(skbase.BaseEstimator())


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_sklearn_sees_a_clusterer_and_transformer(cls):
    est = cls(3)
    assert skbase.is_clusterer(est)
    assert not skbase.is_classifier(est) and not skbase.is_regressor(est)
    assert get_tags(est).transformer_tags is not None
    # the protocol, not the class: documented in docs/estimators.md
    assert not isinstance(est, skbase.BaseEstimator)


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_clone_pipeline_and_grid_search(cls):
    est = cls(3, random_state=0).set_output(transform="pandas")
    twin = clone(est)
    assert twin is not est and twin.get_params() == est.get_params()
    assert twin._sklearn_output_config == {"transform": "pandas"}  # clone keeps set_output
    pipe = make_pipeline(StandardScaler(), cls(3, random_state=0)).fit(X)
    ref = cls(3, random_state=0).fit(StandardScaler().fit_transform(X))
    np.testing.assert_array_equal(pipe.predict(X), ref.labels_)
    search = GridSearchCV(cls(random_state=0), {"n_clusters": [2, 4]}, cv=2).fit(X)
    assert search.best_params_["n_clusters"] == 4  # higher score (minus inertia) with more
    assert search.best_estimator_.n_clusters == 4


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_set_output_pandas_keeps_the_index(cls):
    df = pd.DataFrame(X, columns=["a", "b", "c"], index=np.arange(7, 67))
    est = cls(3, random_state=0).set_output(transform="pandas")
    out = est.fit_transform(df)
    assert isinstance(out, pd.DataFrame)
    assert out.columns.tolist() == est.get_feature_names_out().tolist()
    assert out.index.tolist() == df.index.tolist()
    est = cls(3, random_state=0).set_output(transform="pandas").fit(X)
    again = est.transform(X)  # NumPy input: a fresh index
    assert isinstance(again, pd.DataFrame) and again.index.tolist() == list(range(60))
    np.testing.assert_allclose(again.to_numpy(), out.to_numpy())
    plain = est.set_output(transform="default").transform(X)
    assert isinstance(plain, np.ndarray)
    np.testing.assert_array_equal(plain, again.to_numpy())
    assert est.set_output() is est and est._sklearn_output_config == {"transform": "default"}


def test_global_transform_output_is_honoured():
    km = KMeans(3, random_state=0).fit(X)
    with sklearn.config_context(transform_output="pandas"):
        assert isinstance(km.transform(X), pd.DataFrame)
        # the estimator's own choice comes first, as with scikit-learn
        assert isinstance(km.set_output(transform="default").transform(X), np.ndarray)
    assert isinstance(KMeans(3, random_state=0).fit(X).transform(X), np.ndarray)


def test_pipeline_set_output_reaches_the_estimator():
    df = pd.DataFrame(X, columns=["a", "b", "c"])
    pipe = make_pipeline(StandardScaler(), KMeans(3, random_state=0)).set_output(
        transform="pandas")
    out = pipe.fit_transform(df)
    assert isinstance(out, pd.DataFrame)
    assert out.columns.tolist() == ["kmeans0", "kmeans1", "kmeans2"]


def test_set_output_refuses_unknown_containers():
    with pytest.raises(ValueError, match=r"transform must be one of \['default', 'pandas', "
                                         r"'polars'\] or None, got 'arrow'"):
        KMeans().set_output(transform="arrow")
    km = KMeans(3, random_state=0).fit(X)
    km._sklearn_output_config = {"transform": "arrow"}  # as scikit-learn's check
    with pytest.raises(ValueError, match=r"output config must be in \['default', 'pandas', "
                                         r"'polars'\], got arrow"):
        km.transform(X)


def test_polars_output_or_sklearns_import_error():
    km = KMeans(3, random_state=0).fit(X).set_output(transform="polars")
    try:
        import polars as pl
    except ImportError:
        with pytest.raises(ImportError, match="requires polars to be installed"):
            km.transform(X)
        return
    out = km.transform(X)
    assert isinstance(out, pl.DataFrame) and out.columns == ["kmeans0", "kmeans1", "kmeans2"]


def test_html_repr_is_sklearns():
    km = KMeans(3, random_state=0).fit(X)
    bundle = km._repr_mimebundle_()
    assert bundle["text/plain"] == repr(km)
    ids = re.compile(r"-id-\d+")  # a counter numbers the elements of every drawing
    assert (ids.sub("", bundle["text/html"]) == ids.sub("", estimator_html_repr(km))
            == ids.sub("", km._repr_html_()))
    assert f"<pre>{repr(km)}</pre>" in bundle["text/html"]
    assert "n_clusters" in bundle["text/html"]  # the parameter table
    assert "cluster_centers_" in bundle["text/html"]  # the fitted attributes
    with sklearn.config_context(display="text"):
        assert not hasattr(km, "_repr_html_")
        assert km._repr_mimebundle_() == {"text/plain": repr(km)}
