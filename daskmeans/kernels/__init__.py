"""Per-block arithmetic of daskmeans.

Every function here takes plain NumPy arrays and returns plain NumPy arrays or
small dictionaries of them; nothing here knows about Dask. Graph code in
:mod:`daskmeans.engine` maps these functions over the blocks of a Dask array
and combines their results.
"""

from __future__ import annotations

from ._api import (
    accumulate,
    assign,
    combine_moments,
    combine_partials,
    distances_block,
    lloyd_partial,
    moments,
    nearest,
    row_block_size,
    sq_norms,
)

__all__ = [
    "accumulate",
    "assign",
    "combine_moments",
    "combine_partials",
    "distances_block",
    "lloyd_partial",
    "moments",
    "nearest",
    "row_block_size",
    "sq_norms",
]
