"""scikit-learn's exception and warning types, resolved when raised: users catch
and filter scikit-learn's own classes."""

import subprocess
import sys
import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning, NotFittedError

from daskmeans import KMeans, MiniBatchKMeans, _compat

X = np.random.default_rng(0).normal(size=(30, 2))


def test_types_are_sklearns_when_installed():
    assert _compat.not_fitted_error() is NotFittedError
    assert _compat.convergence_warning() is ConvergenceWarning
    assert _compat.NotFittedError is NotFittedError  # the module attributes too
    assert _compat.ConvergenceWarning is ConvergenceWarning
    with pytest.raises(AttributeError, match="no attribute 'Nothing'"):
        _compat.Nothing  # noqa: B018


@pytest.mark.parametrize("cls", [KMeans, MiniBatchKMeans])
def test_users_catch_and_filter_sklearns_classes(cls):
    try:
        cls(2).predict(X)
    except NotFittedError as exc:  # scikit-learn's, and still a ValueError
        assert isinstance(exc, ValueError) and isinstance(exc, AttributeError)
    else:
        raise AssertionError("no NotFittedError")
    duplicates = np.repeat(X[:3], 10, axis=0)  # 3 distinct points, 5 clusters
    with pytest.warns(ConvergenceWarning, match=r"Number of distinct clusters \(3\) found "
                                                r"smaller than n_clusters \(5\)"):
        KMeans(5, random_state=0).fit(duplicates)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", category=ConvergenceWarning)
        with pytest.raises(ConvergenceWarning):
            KMeans(5, random_state=0).fit(duplicates)


def test_stand_ins_without_sklearn():
    code = """
import sys, warnings
sys.modules["sklearn"] = None  # import sklearn now fails
import numpy as np
from daskmeans import KMeans, _compat
E, W = _compat.not_fitted_error(), _compat.convergence_warning()
assert E.__name__ == "NotFittedError"
assert issubclass(E, ValueError) and issubclass(E, AttributeError)
assert W.__name__ == "ConvergenceWarning" and issubclass(W, UserWarning)
with warnings.catch_warnings(record=True) as seen:
    warnings.simplefilter("always")
    KMeans(5, random_state=0).fit(np.repeat(np.eye(3), 10, axis=0))
assert [w.category for w in seen] == [W], seen
print("ok")
"""
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr[-3000:]
