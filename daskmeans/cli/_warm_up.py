"""``daskmeans warm-up``: compile every kernel into numba's cache.

numba compiles each kernel on its first use; in a fresh container or batch
job that first fit waits for the compiler. Run this once where the image is
built (or in a job's set-up step, with ``NUMBA_CACHE_DIR`` pointing at a kept
folder, set the same way for the jobs) so that fits load the compiled kernels
instead. Prints the cache folder, the CPU numba compiled for and the time
taken. Without numba installed it does nothing and says so.
"""

from __future__ import annotations

import argparse

from . import _common

HELP = "compile every kernel into numba's cache (for images and batch jobs)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``daskmeans warm-up``."""
    parser.add_argument("--dtype", choices=("float32", "float64", "both"), default="both",
                        help="data types to compile for (default: %(default)s)")
    parser.add_argument("--no-fits", action="store_true",
                        help="compile the kernels only, not the small fits that also "
                             "compile the estimators' own uses")


def run(args: argparse.Namespace) -> int:
    """Run ``daskmeans warm-up``."""
    from daskmeans.kernels import warm_up

    dtypes = ("float32", "float64") if args.dtype == "both" else (args.dtype,)
    report = warm_up(dtypes, fits=not args.no_fits, verbose=args.verbose)
    if args.json:
        _common.emit_json(report)
    elif report["cache"] is None:
        _common.message(args, "numba is not installed: nothing to compile "
                              "(the NumPy kernels need no warm-up)")
    else:
        _common.message(args, f"compiled the kernels in {report['seconds']:.1f} s for "
                              f"{report['target']}; cache: {report['cache']}")
    return 0
