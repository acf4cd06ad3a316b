"""The benchmarks run with OpenBLAS's own choice of kernels, unless told to keep a forced one.

Some machines set ``OPENBLAS_CORETYPE`` or ``OPENBLAS_L2_SIZE`` (this project's
development machine does, for its tests and CI). A benchmark should measure
what users get, so each script calls :func:`rerun_without_blas_overrides`
before NumPy is imported: it re-runs the script with both variables removed
from its own environment only, and :func:`unset_note` says so in the report.

A *forced-target* run keeps them: measuring the AVX2 code paths on a machine
with AVX-512, for example::

    NUMBA_CPU_NAME=haswell NUMBA_CPU_FEATURES=+avx2 OPENBLAS_CORETYPE=Haswell \
        python benchmarks/bench_lloyd.py

(numba needs both: with a CPU name alone it keeps the host's features.)

The overrides are kept when any of these holds:

- the command line has ``--keep-blas-env`` (removed from ``sys.argv`` before
  the script parses its arguments);
- ``DASKMEANS_BENCH_KEEP_BLAS=1`` is set;
- ``NUMBA_CPU_NAME`` or ``NUMBA_CPU_FEATURES`` is set: numba's target is
  forced, and the BLAS override set with it belongs to the same run.

The report's header (:mod:`_hardware`) says which OpenBLAS core type and numba
target were in force, and whether they were forced.
"""

from __future__ import annotations

import os
import sys

__all__ = ["BLAS_VARS", "KEEP_ENV", "KEEP_FLAG", "keep_requested", "rerun_without_blas_overrides",
           "unset_note"]

BLAS_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
KEEP_FLAG = "--keep-blas-env"
KEEP_ENV = "DASKMEANS_BENCH_KEEP_BLAS"
_NUMBA_VARS = ("NUMBA_CPU_NAME", "NUMBA_CPU_FEATURES")
_MARK = "_DASKMEANS_BENCH_UNSET_BLAS"


def keep_requested() -> bool:
    """Whether this run keeps :data:`BLAS_VARS` (see the module's docstring).

    Consumes ``--keep-blas-env`` from ``sys.argv`` and records the choice in
    ``DASKMEANS_BENCH_KEEP_BLAS``, so that processes the script starts keep it too.
    """
    keep = KEEP_FLAG in sys.argv[1:]
    if keep:
        sys.argv[1:] = [a for a in sys.argv[1:] if a != KEEP_FLAG]
        os.environ[KEEP_ENV] = "1"
    return (keep or os.environ.get(KEEP_ENV, "") not in ("", "0")
            or any(os.environ.get(v) for v in _NUMBA_VARS))


def rerun_without_blas_overrides() -> None:
    """Re-run this script without :data:`BLAS_VARS` if any of them is set,
    unless :func:`keep_requested`."""
    if keep_requested():
        return
    if any(v in os.environ for v in BLAS_VARS):
        for v in BLAS_VARS:
            os.environ.pop(v, None)
        os.environ[_MARK] = "1"
        os.execv(sys.executable, [sys.executable, *sys.argv])


def unset_note() -> str:
    """Whether the BLAS overrides were removed: ``"yes"``, ``"not set"``, or
    ``"kept (forced target: ...)"``."""
    if os.environ.get(_MARK):
        return "yes"
    kept = [f"{v}={os.environ[v]}" for v in BLAS_VARS if v in os.environ]
    if kept:
        return f"kept (forced target: {', '.join(kept)})"
    return "not set"
