"""``daskmeans scan-k INPUT --k-max K --out DIR``: fit a range of k and score the choice.

Fit k-means for every k from --k-min to --k-max (all k iterate in the same
passes over INPUT) and score them by the elbow rule, the gap statistic, f(K)
and the simplified silhouette. Writes DIR/scores.json and, when matplotlib
is installed, DIR/k_selection.png.

::

    daskmeans scan-k INPUT --k-min 2 --k-max 12 [--methods elbow,gap,fk,silhouette] --out DIR
"""

from __future__ import annotations

import argparse
from pathlib import Path

from . import _common

_METHODS = ("elbow", "gap", "fk", "silhouette")


def _methods(text: str) -> tuple[str, ...]:
    chosen = tuple(m.strip() for m in text.split(",") if m.strip())
    bad = [m for m in chosen if m not in _METHODS]
    if bad or not chosen:
        raise argparse.ArgumentTypeError(
            f"expected a comma-separated subset of {','.join(_METHODS)}, got {text!r}"
        )
    return chosen


HELP = "fit every k in a range in shared passes and score the choice of k"


def add_arguments(scan: argparse.ArgumentParser) -> None:
    """The arguments of ``daskmeans scan-k``."""
    scan.add_argument("input", metavar="INPUT", help="path or URL of a 2-D Zarr array")
    scan.add_argument("--k-min", type=_common.positive_int, default=2, metavar="K",
                      help="smallest k (default: 2)")
    scan.add_argument("--k-max", type=_common.positive_int, required=True, metavar="K",
                      help="largest k")
    scan.add_argument("--methods", type=_methods, default=_METHODS, metavar="LIST",
                      help="comma-separated methods (default: elbow,gap,fk,silhouette)")
    scan.add_argument("--n-refs", type=_common.positive_int, default=5, metavar="B",
                      help="reference data sets of the gap statistic (default: 5)")
    scan.add_argument("--ref-size", type=_common.positive_int, default=100_000, metavar="N",
                      help="rows per reference data set (default: 100000)")
    scan.add_argument("--init", choices=["k-means++", "random", "k-means||"],
                      default="k-means++", help="initialisation (default: k-means++, one "
                                                "shared sampling pass for every k)")
    scan.add_argument("--n-init", type=_common.positive_int, default=3, metavar="N",
                      help="initialisations per k, iterated in the same passes (default: 3)")
    scan.add_argument("--max-iter", type=_common.positive_int, default=300, metavar="N",
                      help="largest number of Lloyd iterations (default: 300)")
    scan.add_argument("--tol", type=_common.nonneg_float, default=1e-4, metavar="TOL",
                      help="relative tolerance on the centre shift (default: 1e-4)")
    scan.add_argument("--seed", type=_common.random_seed, default=0, metavar="S",
                      help="random seed (default: 0)")
    scan.add_argument("--out", required=True, metavar="DIR", help="output directory")
    _common.add_scheduler_options(scan)


def run(args: argparse.Namespace) -> int:
    """Run ``daskmeans scan-k``."""
    from daskmeans.io._atomic import write_json
    from daskmeans.select_k import select_k

    if args.k_min >= args.k_max:
        raise _common.UsageError(
            f"--k-min ({args.k_min}) must be smaller than --k-max ({args.k_max})")
    X = _common.open_array(args.input, "INPUT", ndim=2)
    if args.k_max > X.shape[0]:
        raise _common.UsageError(
            f"--k-max {args.k_max} is larger than the {X.shape[0]} rows of INPUT")
    out = Path(args.out)
    with _common.scheduler(args) as where:
        _common.message(args, f"scanning k = {args.k_min}..{args.k_max} on "
                              f"{X.shape[0]:,} x {X.shape[1]} ({where}), "
                              f"methods {','.join(args.methods)}")
        res = select_k(
            X, range(args.k_min, args.k_max + 1), methods=args.methods, n_refs=args.n_refs,
            ref_size=args.ref_size, random_state=args.seed, init=args.init,
            n_init=args.n_init, max_iter=args.max_iter, tol=args.tol,
        )
    doc = {"input": args.input, "seed": args.seed, **res.to_dict()}
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "scores.json", doc)
    figure = None
    if _common.have_matplotlib():
        from daskmeans import plot

        figure = out / "k_selection.png"
        _common.save_figure(plot.k_selection(res), figure)
    else:
        _common.message(args, "matplotlib is not installed: no plot (pip install daskmeans[plot])")
    doc["files"] = {"scores": str(out / "scores.json"),
                    "plot": None if figure is None else str(figure)}
    best = ", ".join(f"{m} k={k}" for m, k in res.best_k_.items())
    _common.message(args, f"chosen: {best}; {res.n_passes_} passes over the data "
                          f"(+{res.n_ref_passes_} over generated reference data); "
                          f"wrote {out}")
    if args.json:
        _common.emit_json(doc)
    return _common.EXIT_OK
