"""The benchmarks run with OpenBLAS's own choice of kernels.

Some machines set ``OPENBLAS_CORETYPE`` or ``OPENBLAS_L2_SIZE`` (this project's
development machine does, for its tests and CI). A benchmark should measure
what users get, so each script calls :func:`rerun_without_blas_overrides`
before NumPy is imported: it re-runs the script with both variables removed
from its own environment only, and :func:`unset_note` says so in the report.
"""

from __future__ import annotations

import os
import sys

BLAS_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
_MARK = "_DASKMEANS_BENCH_UNSET_BLAS"


def rerun_without_blas_overrides() -> None:
    """Re-run this script without :data:`BLAS_VARS` if any of them is set."""
    if any(v in os.environ for v in BLAS_VARS):
        for v in BLAS_VARS:
            os.environ.pop(v, None)
        os.environ[_MARK] = "1"
        os.execv(sys.executable, [sys.executable, *sys.argv])


def unset_note() -> str:
    """``"yes"`` when this run removed the overrides, ``"not set"`` otherwise."""
    return "yes" if os.environ.get(_MARK) else "not set"
