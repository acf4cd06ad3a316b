"""The algorithms of ``daskmeans fit --algorithm NAME``: one small class each.

An algorithm builds the estimator from the parsed flags, fits it on a
:class:`~daskmeans.cli._sources.Source`, and names what its fit adds to the
report and to the closing message. The pipeline in :mod:`daskmeans.cli._fit`
does the rest (inputs, scheduler, labels, model file, report).

To add one: subclass :class:`Algorithm` with a docstring whose second
paragraph is its text under ``--algorithm`` in ``daskmeans fit --help``, add
its flags in :meth:`Algorithm.add_arguments` (they appear in the "algorithm"
group), and put an instance in :data:`ALGORITHMS`.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import sys

from ._common import UsageError, _typed, one_line, positive_int

__all__ = ["ALGORITHMS", "Algorithm", "Hierarchical", "Lloyd", "MiniBatch"]


class Algorithm:
    """How ``daskmeans fit`` runs one algorithm."""

    name = ""
    #: ``--max-iter`` when it is not given.
    default_max_iter = 300

    @property
    def help(self) -> str:
        """Its text under ``--algorithm`` in ``fit --help``: the docstring's 2nd paragraph."""
        return " ".join(re.split(r"\n\s*\n", self.__doc__ or "")[1].split())
    supports_checkpoint = False

    def add_arguments(self, group) -> None:
        """Add this algorithm's flags to the "algorithm" group of ``fit``."""

    def parameters(self, args: argparse.Namespace) -> dict:
        """Flags of this algorithm recorded in the report's ``parameters``."""
        return {"algorithm": self.name}

    def build(self, args: argparse.Namespace, seed: int):
        """The estimator to fit and a context manager showing its progress."""
        raise NotImplementedError

    def fit(self, source, model, **fit_kwargs) -> None:
        """Fit ``model`` on ``source``; ``fit_kwargs``: sample_weight, checkpoint."""
        source.fit(model, **fit_kwargs)

    def results(self, model, args: argparse.Namespace) -> dict:
        """What the fit found, in report order (``n_iter`` ... ``cluster_sizes``)."""
        return {
            "n_iter": int(model.n_iter_),
            "converged": int(model.n_iter_) < args.max_iter,
            "n_passes": int(getattr(model, "n_passes_", 0)),
            "n_omitted": _n_omitted(model),
            "inertia": float(model.inertia_),
            "inertia_history": [float(v) for v in model.inertia_history_],
            "cluster_sizes": [float(v) for v in model.cluster_sizes_],
        }

    def summary(self, report: dict) -> str:
        """The middle of the closing message ``wrote DIR: k=K, <summary>, inertia ...``."""
        return f"{report['n_iter']} iterations, {report['n_passes']} passes"


def _n_omitted(model) -> int | None:
    value = getattr(model, "n_omitted_", None)
    return None if value is None else int(value)


def _model_options(args: argparse.Namespace) -> dict:
    """Estimator keywords of flags shared by every algorithm (only non-defaults)."""
    policy = getattr(args, "nan_policy", "raise")
    return {} if policy == "raise" else {"nan_policy": policy}


class Lloyd(Algorithm):
    """Exact k-means (Lloyd's iterations), with checkpoints.

    exact k-means (default)
    """

    name = "lloyd"
    supports_checkpoint = True

    def build(self, args: argparse.Namespace, seed: int):
        from daskmeans import KMeans
        from daskmeans._progress import Progress

        progress = Progress(sys.stderr, mode="off" if args.quiet else "auto")
        model = KMeans(
            n_clusters=args.k, init=args.init, n_init=args.n_init, max_iter=args.max_iter,
            tol=args.tol, random_state=seed, callback=progress, **_model_options(args),
        )
        return model, progress

    def fit(self, source, model, **fit_kwargs) -> None:
        from daskmeans.engine._checkpoint import CheckpointMismatchError

        try:
            source.fit(model, **fit_kwargs)
        except CheckpointMismatchError as exc:  # --checkpoint of another run: bad input
            raise UsageError(one_line(exc)) from None


class MiniBatch(Algorithm):
    """Mini-batch k-means (one pass or a few over the data).

    mini-batch k-means, where --max-iter counts passes over the data and --tol
    bounds the centre shift of one mini-batch step (0 leaves only the no-improvement
    rule); --init auto and k-means|| are read as k-means++; no --checkpoint
    """

    name = "minibatch"

    def add_arguments(self, group) -> None:
        group.add_argument("--batch-size", type=positive_int, default=1024, metavar="B",
                           help="rows per mini-batch with --algorithm minibatch "
                                "(default: 1024)")
        group.add_argument("--init-lloyd-iter", type=int, default=0, metavar="I",
                           help="with --algorithm minibatch: Lloyd iterations that refine "
                                "every initial candidate on the in-memory initial sample "
                                "(default: 0, scikit-learn's initialisation)")

    @staticmethod
    def _init(args: argparse.Namespace) -> str:
        return "k-means++" if args.init in ("auto", "k-means||") else args.init

    def parameters(self, args: argparse.Namespace) -> dict:
        return {"algorithm": self.name, "batch_size": args.batch_size,
                "init": self._init(args), "init_lloyd_iter": args.init_lloyd_iter}

    def build(self, args: argparse.Namespace, seed: int):
        from daskmeans import MiniBatchKMeans

        model = MiniBatchKMeans(
            n_clusters=args.k, init=self._init(args), n_init=args.n_init,
            max_iter=args.max_iter, batch_size=args.batch_size, tol=args.tol,
            random_state=seed, verbose=0 if args.quiet else 1,
            init_lloyd_iter=args.init_lloyd_iter, **_model_options(args),
        )
        return model, contextlib.nullcontext()

    def results(self, model, args: argparse.Namespace) -> dict:
        return {
            **super().results(model, args),
            "n_steps": int(model.n_steps_),
            "counts": [float(v) for v in model.counts_],
        }

    def summary(self, report: dict) -> str:
        return f"{report['n_steps']} mini-batch steps"


def tree_levels(text: str):
    """Argument type of ``--levels``: ``auto`` or an integer >= 2."""
    if text == "auto":
        return text
    return _typed(text, int, lambda v: v >= 2, "'auto' or an integer >= 2")


class Hierarchical(Algorithm):
    """Hierarchical k-means for very large k (:class:`daskmeans.HierarchicalKMeans`).

    hierarchical k-means for very large k: about sqrt(k) coarse cells (deeper
    trees with --levels), then every cell's share of the k centres, one pass per
    iteration; --max-iter counts the fine iterations; --init and --n-init do not
    apply; no --checkpoint
    """

    name = "hierarchical"
    default_max_iter = 5  # HierarchicalKMeans' own: fine iterations

    def add_arguments(self, group) -> None:
        group.add_argument("--levels", type=tree_levels, default="auto", metavar="L",
                           help="with --algorithm hierarchical: levels of the tree, 2 or more, "
                                "or auto (default: auto: 2 levels up to k = 1,000,000, 3 "
                                "above)")
        group.add_argument("--n-coarse", type=positive_int, default=None, metavar="M",
                           help="with --algorithm hierarchical: cells of the level above the "
                                "fine one (default: round(sqrt(k)) with 2 levels, "
                                "round(k^((L-1)/L)) with L)")
        group.add_argument("--n-probe", type=positive_int, default=8, metavar="P",
                           help="with --algorithm hierarchical: coarse cells searched by the "
                                "labels and the refinement (default: 8)")
        group.add_argument("--refine-iter", type=int, default=2, metavar="R",
                           help="with --algorithm hierarchical: iterations in which every row "
                                "probes its --n-probe nearest cells (default: 2; 0 with "
                                "--n-probe 1: the plain two-level fit)")
        group.add_argument("--coarse-iter", type=int, default=5, metavar="I",
                           help="with --algorithm hierarchical: Lloyd iterations of the coarse "
                                "level (default: 5)")
        group.add_argument("--n-neighbors", type=int, default=16, metavar="L",
                           help="with --algorithm hierarchical: the final labels and predict "
                                "also compare every row with the L fine centres nearest to its "
                                "own, across cells (0: cells only; default: 16)")
        group.add_argument("--balanced", action="store_true",
                           help="with --algorithm hierarchical: cap the cluster sizes at "
                                "--max-size-ratio times the mean")
        group.add_argument("--max-size-ratio", type=float, default=2.0, metavar="R",
                           help="the cap of --balanced (default: 2.0)")

    def parameters(self, args: argparse.Namespace) -> dict:
        return {"algorithm": self.name, "n_levels": args.levels, "n_coarse": args.n_coarse,
                "n_probe": args.n_probe,
                "coarse_iter": args.coarse_iter, "n_neighbors": args.n_neighbors,
                "refine_iter": args.refine_iter, "balanced": args.balanced,
                "max_size_ratio": args.max_size_ratio}

    def build(self, args: argparse.Namespace, seed: int):
        from daskmeans import HierarchicalKMeans

        def progress(event: dict) -> None:
            if args.quiet:
                return
            detail = ", ".join(
                f"{key} {value:.6g}" if isinstance(value, float) else f"{key} {value}"
                for key, value in event.items() if key not in ("phase", "max_iter"))
            print(f"[{event['phase']}] {detail}", file=sys.stderr, flush=True)

        model = HierarchicalKMeans(
            n_clusters=args.k, n_levels=args.levels, n_coarse=args.n_coarse,
            max_iter=args.max_iter, tol=args.tol,
            n_probe=args.n_probe, refine_iter=args.refine_iter, balanced=args.balanced,
            coarse_iter=args.coarse_iter, n_neighbors=args.n_neighbors,
            max_size_ratio=args.max_size_ratio, random_state=seed, callback=progress,
        )
        return model, contextlib.nullcontext()

    def results(self, model, args: argparse.Namespace) -> dict:
        return {
            **super().results(model, args),
            "passes": {k: int(v) for k, v in model.passes_.items()},
            "n_coarse": int(len(model.coarse_centers_)),
            "n_levels": int(model.n_levels_),
            "level_sizes": [int(len(centers)) for centers, _ in model.levels_],
            "level_passes": [{k: int(v) for k, v in p.items()} for p in model.level_passes_],
        }

    def summary(self, report: dict) -> str:
        p = report["passes"]
        cells = f"{report['n_coarse']} cells"
        if report.get("n_levels", 2) > 2:
            sizes = ", ".join(str(v) for v in report["level_sizes"][:-1])
            cells = f"{report['n_levels']} levels ({sizes} cells)"
        return (f"{cells}, passes: coarse {p['coarse']}, seed {p['seed']}, "
                f"fine {p['fine']}, refine {p['refine']}, labels {p['labels']}")


#: ``--algorithm`` choices, the default first.
ALGORITHMS: dict[str, Algorithm] = {a.name: a for a in (Lloyd(), MiniBatch(), Hierarchical())}
