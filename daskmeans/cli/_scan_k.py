"""``daskmeans scan-k INPUT --k-max K --out DIR``: fit a range of k and score the choice.

::

    daskmeans scan-k INPUT --k-min 2 --k-max 12 [--methods elbow,gap,fk,silhouette] --out DIR

Writes DIR/scores.json and, when matplotlib is installed, DIR/k_selection.png.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ._common import (
    EXIT_OK,
    UsageError,
    add_scheduler_options,
    emit_json,
    have_matplotlib,
    message,
    nonneg_float,
    open_array,
    positive_int,
    save_figure,
    scheduler,
    seed,
)

__all__ = ["register", "run"]

_METHODS = ("elbow", "gap", "fk", "silhouette")


def _methods(text: str) -> tuple[str, ...]:
    chosen = tuple(m.strip() for m in text.split(",") if m.strip())
    bad = [m for m in chosen if m not in _METHODS]
    if bad or not chosen:
        raise argparse.ArgumentTypeError(
            f"expected a comma-separated subset of {','.join(_METHODS)}, got {text!r}"
        )
    return chosen


def register(sub, common: argparse.ArgumentParser) -> None:
    """Add ``scan-k`` to the sub-parsers of the ``daskmeans`` command."""
    scan = sub.add_parser(
        "scan-k", parents=[common], allow_abbrev=False,
        help="fit every k in a range in shared passes and score the choice of k",
        description="Fit k-means for every k from --k-min to --k-max (all k iterate in the "
                    "same passes over INPUT) and score them by the elbow rule, the gap "
                    "statistic, f(K) and the simplified silhouette. Writes DIR/scores.json "
                    "and, when matplotlib is installed, DIR/k_selection.png.",
    )
    scan.add_argument("input", metavar="INPUT", help="path or URL of a 2-D Zarr array")
    scan.add_argument("--k-min", type=positive_int, default=2, metavar="K",
                      help="smallest k (default: 2)")
    scan.add_argument("--k-max", type=positive_int, required=True, metavar="K",
                      help="largest k")
    scan.add_argument("--methods", type=_methods, default=_METHODS, metavar="LIST",
                      help="comma-separated methods (default: elbow,gap,fk,silhouette)")
    scan.add_argument("--n-refs", type=positive_int, default=5, metavar="B",
                      help="reference data sets of the gap statistic (default: 5)")
    scan.add_argument("--ref-size", type=positive_int, default=100_000, metavar="N",
                      help="rows per reference data set (default: 100000)")
    scan.add_argument("--init", choices=["k-means++", "random", "k-means||"],
                      default="k-means++", help="initialisation (default: k-means++, one "
                                                "shared sampling pass for every k)")
    scan.add_argument("--n-init", type=positive_int, default=3, metavar="N",
                      help="initialisations per k, iterated in the same passes (default: 3)")
    scan.add_argument("--max-iter", type=positive_int, default=300, metavar="N",
                      help="largest number of Lloyd iterations (default: 300)")
    scan.add_argument("--tol", type=nonneg_float, default=1e-4, metavar="TOL",
                      help="relative tolerance on the centre shift (default: 1e-4)")
    scan.add_argument("--seed", type=seed, default=0, metavar="S",
                      help="random seed (default: 0)")
    scan.add_argument("--out", required=True, metavar="DIR", help="output directory")
    add_scheduler_options(scan)
    scan.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Run ``daskmeans scan-k``."""
    from daskmeans.select_k import select_k
    from daskmeans.io._atomic import write_json

    if args.k_min >= args.k_max:
        raise UsageError(f"--k-min ({args.k_min}) must be smaller than --k-max ({args.k_max})")
    X = open_array(args.input, "INPUT", ndim=2)
    if args.k_max > X.shape[0]:
        raise UsageError(f"--k-max {args.k_max} is larger than the {X.shape[0]} rows of INPUT")
    out = Path(args.out)
    with scheduler(args) as where:
        message(args, f"scanning k = {args.k_min}..{args.k_max} on {X.shape[0]:,} x "
                      f"{X.shape[1]} ({where}), methods {','.join(args.methods)}")
        res = select_k(
            X, range(args.k_min, args.k_max + 1), methods=args.methods, n_refs=args.n_refs,
            ref_size=args.ref_size, random_state=args.seed, init=args.init,
            n_init=args.n_init, max_iter=args.max_iter, tol=args.tol,
        )
    doc = {"input": args.input, "seed": args.seed, **res.to_dict()}
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "scores.json", doc)
    figure = None
    if have_matplotlib():
        from daskmeans import plot

        figure = out / "k_selection.png"
        save_figure(plot.k_selection(res), figure)
    else:
        message(args, "matplotlib is not installed: no plot (pip install daskmeans[plot])")
    doc["files"] = {"scores": str(out / "scores.json"),
                    "plot": None if figure is None else str(figure)}
    best = ", ".join(f"{m} k={k}" for m, k in res.best_k_.items())
    message(args, f"chosen: {best}; {res.n_passes_} passes over the data "
                  f"(+{res.n_ref_passes_} over generated reference data); wrote {out}")
    if args.json:
        emit_json(doc)
    return EXIT_OK
