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


def warm_up_fits(dtypes, report: dict, verbose: bool = False) -> None:
    """Small fits with the compiled kernels forced (``KMeans`` plain and pruned,
    with weights, ``predict``; ``MiniBatchKMeans``): compiles the engine's own
    uses of the kernels. Adds their times to ``report["steps"]``."""
    import os
    import time
    import warnings

    import numpy as np

    from daskmeans import KMeans, MiniBatchKMeans
    from daskmeans.kernels import KERNELS_ENV

    old = os.environ.get(KERNELS_ENV)
    os.environ[KERNELS_ENV] = "numba"
    try:
        for name in dtypes:
            t = time.perf_counter()
            X = np.random.default_rng(1).normal(size=(3000, 4)).astype(name)
            w = np.random.default_rng(2).uniform(0.5, 2, size=len(X))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                for algorithm in ("lloyd", "pruned"):
                    KMeans(5, n_init=2, max_iter=5, random_state=0, algorithm=algorithm).fit(
                        X, sample_weight=w).predict(X)
                KMeans(5, n_init=1, max_iter=3, random_state=0, init="k-means++").fit(X)
                MiniBatchKMeans(5, random_state=0, max_iter=2).fit(X)
            report["steps"][f"fits {name}"] = time.perf_counter() - t
            if verbose:
                print(f"fits {name}: {report['steps'][f'fits {name}']:.1f} s", flush=True)
    finally:
        if old is None:
            os.environ.pop(KERNELS_ENV, None)
        else:
            os.environ[KERNELS_ENV] = old


def run(args: argparse.Namespace) -> int:
    """Run ``daskmeans warm-up``."""
    import time

    from daskmeans.kernels import warm_up

    t = time.perf_counter()
    dtypes = ("float32", "float64") if args.dtype == "both" else (args.dtype,)
    report = warm_up(dtypes, verbose=args.verbose)
    if report["cache"] is not None and not args.no_fits:
        warm_up_fits(dtypes, report, args.verbose)
    report["seconds"] = time.perf_counter() - t
    if args.json:
        _common.emit_json(report)
    elif report["cache"] is None:
        _common.message(args, "numba is not installed: nothing to compile "
                              "(the NumPy kernels need no warm-up)")
    else:
        _common.message(args, f"compiled the kernels in {report['seconds']:.1f} s for "
                              f"{report['target']}; cache: {report['cache']}")
    return 0
