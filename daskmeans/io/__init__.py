"""Reading and writing data: Zarr arrays (local or object storage), tables, labels.

:func:`open_zarr` opens a stored array as a lazy Dask array chunked along
rows; :func:`write_labels` writes a fitted model's labels back to Zarr, chunk
by chunk and atomically.
"""

from ._labels import write_labels
from ._zarr import open_zarr

__all__ = ["open_zarr", "write_labels"]
