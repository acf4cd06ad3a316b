"""daskmeans: k-means for data larger than memory, on Dask and Zarr.

The public API mirrors scikit-learn's :class:`~sklearn.cluster.KMeans`; data
may be a NumPy array, a Dask array, a Zarr array, or the path or URL of one.
"""

from . import vq
from ._io import open_zarr, write_labels
from .estimator import KMeans
from .minibatch import MiniBatchKMeans

__version__ = "0.1.0"

__all__ = ["KMeans", "MiniBatchKMeans", "__version__", "open_zarr", "vq", "write_labels"]
