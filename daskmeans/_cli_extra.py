"""The ``scan-k`` and ``plot`` sub-commands of the ``daskmeans`` command.

::

    daskmeans scan-k INPUT --k-min 2 --k-max 12 [--methods elbow,gap,fk,silhouette] --out DIR
    daskmeans plot MODEL INPUT --out FILE.png

:func:`add_parsers` registers them on the sub-parsers of
:func:`daskmeans.cli.build_parser`; their handlers follow the conventions of
:mod:`daskmeans.cli` (exit status, one-line errors, messages on stderr, the
``--json`` document on stdout, atomic outputs).
"""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["add_parsers", "cmd_plot", "cmd_scan_k"]

_METHODS = ("elbow", "gap", "fk", "silhouette")


def _methods(text: str) -> tuple[str, ...]:
    names = tuple(m.strip() for m in text.split(",") if m.strip())
    bad = [m for m in names if m not in _METHODS]
    if bad or not names:
        raise argparse.ArgumentTypeError(
            f"expected a comma-separated subset of {','.join(_METHODS)}, got {text!r}"
        )
    return names


def add_parsers(sub, common: argparse.ArgumentParser) -> None:
    """Add ``scan-k`` and ``plot`` to the sub-parsers ``sub`` of the daskmeans command.

    Parameters
    ----------
    sub : argparse._SubParsersAction
    common : argparse.ArgumentParser
        Parent parser with the options shared by every command (--json, --quiet, --verbose).
    """
    from .cli import _nonneg_float, _positive_int, _scheduler_options, _seed

    scan = sub.add_parser(
        "scan-k", parents=[common], allow_abbrev=False,
        help="fit every k in a range in shared passes and score the choice of k",
        description="Fit k-means for every k from --k-min to --k-max (all k iterate in the "
                    "same passes over INPUT) and score them by the elbow rule, the gap "
                    "statistic, f(K) and the simplified silhouette. Writes DIR/scores.json "
                    "and, when matplotlib is installed, DIR/k_selection.png.",
    )
    scan.add_argument("input", metavar="INPUT", help="path or URL of a 2-D Zarr array")
    scan.add_argument("--k-min", type=_positive_int, default=2, metavar="K",
                      help="smallest k (default: 2)")
    scan.add_argument("--k-max", type=_positive_int, required=True, metavar="K",
                      help="largest k")
    scan.add_argument("--methods", type=_methods, default=_METHODS, metavar="LIST",
                      help="comma-separated methods (default: elbow,gap,fk,silhouette)")
    scan.add_argument("--n-refs", type=_positive_int, default=5, metavar="B",
                      help="reference data sets of the gap statistic (default: 5)")
    scan.add_argument("--ref-size", type=_positive_int, default=100_000, metavar="N",
                      help="rows per reference data set (default: 100000)")
    scan.add_argument("--init", choices=["k-means++", "random", "k-means||"],
                      default="k-means++", help="initialisation (default: k-means++, one "
                                                "shared sampling pass for every k)")
    scan.add_argument("--n-init", type=_positive_int, default=3, metavar="N",
                      help="initialisations per k, iterated in the same passes (default: 3)")
    scan.add_argument("--max-iter", type=_positive_int, default=300, metavar="N",
                      help="largest number of Lloyd iterations (default: 300)")
    scan.add_argument("--tol", type=_nonneg_float, default=1e-4, metavar="TOL",
                      help="relative tolerance on the centre shift (default: 1e-4)")
    scan.add_argument("--seed", type=_seed, default=0, metavar="S",
                      help="random seed (default: 0)")
    scan.add_argument("--out", required=True, metavar="DIR", help="output directory")
    _scheduler_options(scan)
    scan.set_defaults(handler=cmd_scan_k)

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
    plot.add_argument("--sample", type=_positive_int, default=20_000, metavar="N",
                      help="rows drawn uniformly for the scatter plot (default: 20000)")
    plot.add_argument("--seed", type=_seed, default=0, metavar="S",
                      help="seed of the sample (default: 0)")
    _scheduler_options(plot)
    plot.set_defaults(handler=cmd_plot)


def _have_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _save_figure(fig, path: Path) -> None:
    """Write a figure atomically (temporary name in the same directory, then rename)."""
    import os
    import tempfile

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=100)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def cmd_scan_k(args: argparse.Namespace) -> int:
    """Run ``daskmeans scan-k``."""
    from .io._atomic import write_json
    from .cli import UsageError, _emit_json, _message, _open_array, _scheduler
    from .select_k import select_k

    if args.k_min >= args.k_max:
        raise UsageError(f"--k-min ({args.k_min}) must be smaller than --k-max ({args.k_max})")
    X = _open_array(args.input, "INPUT", ndim=2)
    if args.k_max > X.shape[0]:
        raise UsageError(f"--k-max {args.k_max} is larger than the {X.shape[0]} rows of INPUT")
    out = Path(args.out)
    with _scheduler(args) as where:
        _message(args, f"scanning k = {args.k_min}..{args.k_max} on {X.shape[0]:,} x "
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
    if _have_matplotlib():
        from . import plot

        figure = out / "k_selection.png"
        _save_figure(plot.k_selection(res), figure)
    else:
        _message(args, "matplotlib is not installed: no plot (pip install daskmeans[plot])")
    doc["files"] = {"scores": str(out / "scores.json"),
                    "plot": None if figure is None else str(figure)}
    best = ", ".join(f"{m} k={k}" for m, k in res.best_k_.items())
    _message(args, f"chosen: {best}; {res.n_passes_} passes over the data "
                   f"(+{res.n_ref_passes_} over generated reference data); wrote {out}")
    if args.json:
        _emit_json(doc)
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    """Run ``daskmeans plot``."""
    from .cli import UsageError, _emit_json, _load_model, _message, _open_array, _scheduler

    if not _have_matplotlib():
        raise UsageError("'daskmeans plot' needs matplotlib: pip install daskmeans[plot]")
    from matplotlib.figure import Figure

    from . import plot

    model = _load_model(args.model)
    X = _open_array(args.input, "INPUT", ndim=2)
    if X.shape[1] != model.n_features_in_:
        raise UsageError(f"INPUT has {X.shape[1]} features but MODEL was fitted with "
                         f"{model.n_features_in_}")
    out = Path(args.out)
    fig = Figure(figsize=(12, 5), layout="constrained")
    left, right = fig.subplots(1, 2, width_ratios=[3, 2])
    with _scheduler(args):
        plot.clusters(model, X, sample=args.sample, ax=left, random_state=args.seed)
    plot.convergence(model, ax=right)
    _save_figure(fig, out)
    _message(args, f"wrote {out}")
    if args.json:
        _emit_json({"model": args.model, "input": args.input, "out": str(out)})
    return 0
