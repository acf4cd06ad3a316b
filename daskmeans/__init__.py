"""daskmeans: k-means for data larger than memory, on Dask and Zarr.

The public API mirrors scikit-learn's :class:`~sklearn.cluster.KMeans`; data
may be a NumPy array, a Dask array, a Zarr array, or the path or URL of one.

Every public name is imported on first use (PEP 562), so ``import daskmeans``
loads neither Dask, scikit-learn nor numba.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover - for static tools only
    from . import datasets, plot, testing, vq, xarray  # noqa: F401
    from .estimator import KMeans
    from .hierarchical import HierarchicalKMeans
    from .io import open_zarr, write_labels
    from .minibatch import MiniBatchKMeans
    from .select_k import select_k

__version__ = "0.1.0"

__all__ = [
    "HierarchicalKMeans",
    "KMeans",
    "MiniBatchKMeans",
    "__version__",
    "open_zarr",
    "plot",
    "select_k",
    "vq",
    "write_labels",
]

#: Public name -> (module, attribute or None for the module itself).
_LAZY = {
    "KMeans": (".estimator", "KMeans"),
    "HierarchicalKMeans": (".hierarchical", "HierarchicalKMeans"),
    "MiniBatchKMeans": (".minibatch", "MiniBatchKMeans"),
    "open_zarr": (".io", "open_zarr"),
    "write_labels": (".io", "write_labels"),
    "select_k": (".select_k", "select_k"),
    "vq": (".vq", None),
    "plot": (".plot", None),
    "datasets": (".datasets", None),
    "testing": (".testing", None),
    "xarray": (".xarray", None),
}


def __getattr__(name: str):
    try:
        module, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    mod = importlib.import_module(module, __name__)
    value = mod if attr is None else getattr(mod, attr)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


#: Public functions that share their name with the module defining them.
_SHADOWED = frozenset(
    name for name, (module, attr) in _LAZY.items() if attr is not None and module == f".{name}"
)


class _Package(types.ModuleType):
    """The package's module type: ``daskmeans.select_k`` stays the function.

    Importing the submodule ``daskmeans.select_k`` makes Python bind the module
    as an attribute of the package, which would hide the function of the same
    name. The module remains reachable as ``sys.modules["daskmeans.select_k"]``
    and by ``from daskmeans.select_k import ...``.
    """

    def __setattr__(self, name: str, value) -> None:
        if name in _SHADOWED and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
