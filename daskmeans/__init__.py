"""daskmeans: k-means for data larger than memory, on Dask and Zarr.

The public API mirrors scikit-learn's :class:`~sklearn.cluster.KMeans`; data
may be a NumPy array, a Dask array, a Zarr array, or the path or URL of one.
"""

from typing import TYPE_CHECKING

from . import vq
from .io._zarr import open_zarr
from .io._labels import write_labels
from .estimator import KMeans
from .minibatch import MiniBatchKMeans
from .select_k import select_k

if TYPE_CHECKING:
    from . import plot

__version__ = "0.1.0"

__all__ = [
    "KMeans",
    "MiniBatchKMeans",
    "__version__",
    "open_zarr",
    "plot",
    "select_k",
    "vq",
    "write_labels",
]


def __getattr__(name: str):
    # daskmeans.plot is imported on first use: matplotlib stays an optional extra
    if name == "plot":
        import importlib

        return importlib.import_module(f"{__name__}.plot")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
