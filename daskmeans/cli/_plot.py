"""``daskmeans plot MODEL INPUT --out FILE.png``: the clusters and the convergence curve."""

from __future__ import annotations

import argparse
from pathlib import Path

from ._common import (
    EXIT_OK,
    UsageError,
    add_scheduler_options,
    check_n_features,
    emit_json,
    have_matplotlib,
    load_model,
    message,
    open_array,
    positive_int,
    save_figure,
    scheduler,
    seed,
)

__all__ = ["register", "run"]


def register(sub, common: argparse.ArgumentParser) -> None:
    """Add ``plot`` to the sub-parsers of the ``daskmeans`` command."""
    plot = sub.add_parser(
        "plot", parents=[common], allow_abbrev=False,
        help="draw the clusters of a fitted model on a sample of INPUT (PNG)",
        description="Draw a uniform sample of the rows of INPUT coloured by the cluster of "
                    "MODEL, the centres as stars (the first two principal axes of the sample "
                    "for more than two features), next to the model's convergence curve. "
                    "Needs matplotlib (pip install daskmeans[plot]).",
    )
    plot.add_argument("model", metavar="MODEL", help="model.json written by 'daskmeans fit'")
    plot.add_argument("input", metavar="INPUT", help="path or URL of a 2-D Zarr array")
    plot.add_argument("--out", required=True, metavar="FILE.png", help="image to write")
    plot.add_argument("--sample", type=positive_int, default=20_000, metavar="N",
                      help="rows drawn uniformly for the scatter plot (default: 20000)")
    plot.add_argument("--seed", type=seed, default=0, metavar="S",
                      help="seed of the sample (default: 0)")
    add_scheduler_options(plot)
    plot.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Run ``daskmeans plot``."""
    if not have_matplotlib():
        raise UsageError("'daskmeans plot' needs matplotlib: pip install daskmeans[plot]")
    from matplotlib.figure import Figure

    from daskmeans import plot

    model = load_model(args.model)
    X = open_array(args.input, "INPUT", ndim=2)
    check_n_features(X.shape[1], model)
    out = Path(args.out)
    fig = Figure(figsize=(12, 5), layout="constrained")
    left, right = fig.subplots(1, 2, width_ratios=[3, 2])
    with scheduler(args):
        plot.clusters(model, X, sample=args.sample, ax=left, random_state=args.seed)
    plot.convergence(model, ax=right)
    save_figure(fig, out)
    message(args, f"wrote {out}")
    if args.json:
        emit_json({"model": args.model, "input": args.input, "out": str(out)})
    return EXIT_OK
