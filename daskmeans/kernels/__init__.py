"""Per-block arithmetic of daskmeans, and the plan that says which path runs.

Every kernel takes plain NumPy arrays and returns plain NumPy arrays or small
dictionaries of them; nothing here knows about Dask. Graph code in
:mod:`daskmeans.engine` maps these functions over the blocks of a Dask array
and combines their results.

A :class:`KernelPlan`, chosen once per fit or predict by :func:`choose_plan`,
states which path runs: NumPy and BLAS (:mod:`._numpy`, the reference), or
compiled numba loops (:mod:`._numba_loops`, driven by :mod:`._compiled`), with
the hand-written LLVM-IR intrinsics of :mod:`._llvm` where this LLVM builds
them. Every threshold is in :mod:`._thresholds`.

``DASKMEANS_KERNELS`` forces a path:

- ``auto`` (default): compiled kernels for arrays of at least
  :data:`._thresholds.NUMBA_MIN_ELEMENTS` elements when numba is installed,
  else NumPy;
- ``numpy``: NumPy and BLAS only (numba is never imported);
- ``numba``: compiled kernels whatever the size, with the LLVM-IR intrinsics;
- ``numba-plain``: compiled kernels without the LLVM-IR argmin and tiles;
- ``numba-subblock``: as ``numba-plain``, sub-blocks driven from Python.

A mode may be followed by ``,field=value`` pairs setting plan fields, e.g.
``DASKMEANS_KERNELS=numba,rowmajor_max_k=16``. numba compiles each kernel on
first use and caches it (see :func:`warm_up` and ``daskmeans warm-up``, and
:func:`cache_location` for where the cache lives). See ``docs/kernels.md``.
"""

from __future__ import annotations

from ._api import (
    accumulate,
    assign,
    combine_moments,
    combine_partials,
    distances_block,
    lloyd_block,
    lloyd_partial,
    moments,
    nearest,
    probe_cells,
    row_block_size,
    seeding_compiled,
    seeding_operand,
    seeding_step,
    sq_norms,
    top_centers,
)
from ._plan import KERNELS_ENV, MODES, KernelPlan, choose_plan, host_isa, numba_target
from ._warmup import cache_location, warm_up

__all__ = [
    "KERNELS_ENV",
    "MODES",
    "KernelPlan",
    "accumulate",
    "assign",
    "cache_location",
    "choose_plan",
    "combine_moments",
    "combine_partials",
    "distances_block",
    "host_isa",
    "lloyd_block",
    "lloyd_partial",
    "moments",
    "nearest",
    "numba_target",
    "probe_cells",
    "row_block_size",
    "seeding_compiled",
    "seeding_operand",
    "seeding_step",
    "sq_norms",
    "top_centers",
    "warm_up",
]
