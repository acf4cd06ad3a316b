"""``daskmeans plot MODEL INPUT --out FILE.png``: the clusters and the convergence curve.

Draw a uniform sample of the rows of INPUT coloured by the cluster of MODEL,
the centres as stars (the first two principal axes of the sample for more
than two features), next to the model's convergence curve. Needs matplotlib
(pip install daskmeans[plot]).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from . import _common

HELP = "draw the clusters of a fitted model on a sample of INPUT (PNG)"


def add_arguments(plot: argparse.ArgumentParser) -> None:
    """The arguments of ``daskmeans plot``."""
    plot.add_argument("model", metavar="MODEL", help="model.json written by 'daskmeans fit'")
    plot.add_argument("input", metavar="INPUT", help="path or URL of a 2-D Zarr array")
    plot.add_argument("--out", required=True, metavar="FILE.png", help="image to write")
    plot.add_argument("--sample", type=_common.positive_int, default=20_000, metavar="N",
                      help="rows drawn uniformly for the scatter plot (default: 20000)")
    plot.add_argument("--seed", type=_common.random_seed, default=0, metavar="S",
                      help="seed of the sample (default: 0)")
    _common.add_scheduler_options(plot)


def run(args: argparse.Namespace) -> int:
    """Run ``daskmeans plot``."""
    if not _common.have_matplotlib():
        raise _common.UsageError("'daskmeans plot' needs matplotlib: pip install daskmeans[plot]")
    from matplotlib.figure import Figure

    from daskmeans import plot

    model = _common.load_model(args.model)
    X = _common.open_array(args.input, "INPUT", ndim=2)
    _common.check_n_features(X.shape[1], model)
    out = Path(args.out)
    fig = Figure(figsize=(12, 5), layout="constrained")
    left, right = fig.subplots(1, 2, width_ratios=[3, 2])
    with _common.scheduler(args):
        plot.clusters(model, X, sample=args.sample, ax=left, random_state=args.seed)
    plot.convergence(model, ax=right)
    _common.save_figure(fig, out)
    _common.message(args, f"wrote {out}")
    if args.json:
        _common.emit_json({"model": args.model, "input": args.input, "out": str(out)})
    return _common.EXIT_OK
