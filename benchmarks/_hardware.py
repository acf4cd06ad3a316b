"""The hardware header every benchmark prints: CPU model, vector extensions,
BLAS (library, version, kernel architecture, threads) and the numba target.

Usage in a benchmark script::

    from _hardware import header_lines
    for line in header_lines():
        print(line)

Call it after NumPy is imported (threadpoolctl finds the BLAS libraries that
are loaded). Nothing here imports numba unless it is installed; the numba
target honours ``NUMBA_CPU_NAME`` and ``NUMBA_CPU_FEATURES`` as numba does.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

__all__ = ["blas_info", "cpu_model", "header_lines", "numba_target", "openblas_core",
           "vector_extensions"]


def cpu_model() -> str:
    """The processor's model name (``/proc/cpuinfo`` on Linux), and its threads."""
    name = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Model", "cpu model"):
                    name = value.strip()
                    break
    except OSError:
        pass
    name = name or platform.processor() or platform.machine() or "unknown"
    return f"{name}, {os.cpu_count() or 1} logical CPUs"


def vector_extensions() -> str:
    """``"<machine>: AVX-512, AVX2, ..."``: the vector instruction sets found."""
    from daskmeans.kernels import host_isa

    return host_isa()


def blas_info() -> str:
    """Every BLAS library loaded: API, version, kernel architecture, threads."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "threadpoolctl not installed"
    lines = [
        f"{p.get('internal_api')} {p.get('version')} arch={p.get('architecture')} "
        f"threads={p.get('num_threads')} ({Path(p.get('filepath', '')).name})"
        for p in threadpool_info() if p.get("user_api") == "blas"
    ]
    return "; ".join(lines) or "none found"


def _forced(names: tuple) -> str:
    """``"forced by A=x, B=y"`` for the variables set, else ``""``."""
    set_ = [f"{v}={os.environ[v]}" for v in names if os.environ.get(v)]
    return f"forced by {', '.join(set_)}" if set_ else ""


def openblas_core() -> str:
    """The OpenBLAS core type in force and whether ``OPENBLAS_CORETYPE`` forced it."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "unknown (threadpoolctl not installed)"
    cores = sorted({str(p.get("architecture")) for p in threadpool_info()
                    if p.get("internal_api") == "openblas"})
    if not cores:
        return "no OpenBLAS loaded"
    forced = _forced(("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"))
    return f"{', '.join(cores)} ({forced or 'OpenBLAS chose it for this CPU'})"


def numba_target() -> str:
    """The CPU numba compiles for (name and vector features), whether
    ``NUMBA_CPU_NAME``/``NUMBA_CPU_FEATURES`` forced it, or why there is none."""
    from daskmeans.kernels import _plan

    if not _plan.numba_installed():
        return "numba not installed"
    import numba

    forced = _forced(("NUMBA_CPU_NAME", "NUMBA_CPU_FEATURES"))
    return (f"numba {numba.__version__}, {_plan.numba_target()} "
            f"({forced or 'the host CPU'})")


def header_lines() -> list[str]:
    """The hardware lines of a benchmark report."""
    overrides = [f"{v}={os.environ[v]}" for v in ("NUMBA_CPU_NAME", "NUMBA_CPU_FEATURES",
                                                  "OPENBLAS_CORETYPE", "DASKMEANS_KERNELS")
                 if v in os.environ]
    return [
        f"CPU: {cpu_model()}",
        f"vector extensions: {vector_extensions()}",
        f"BLAS: {blas_info()}",
        f"OpenBLAS core type: {openblas_core()}",
        f"numba target: {numba_target()}",
        f"overrides: {', '.join(overrides) or 'none'}",
    ]
