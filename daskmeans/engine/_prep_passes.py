"""The graph side of the row preprocessing: statistics and error counts.

:mod:`daskmeans.engine._prep` says what to do to a block; this module holds the few
decisions that need passes over the data: when ``standardize`` needs its own
statistics pass, and counting the rows of zeros that ``metric="cosine"``
rejects (only on the error path).
"""

from __future__ import annotations

import dataclasses

import dask.array as da
import numpy as np

from ._graph import compute_passes
from ._lloyd import LloydState, stats_pass
from ._prep import Prep, zero_rows_block

__all__ = ["count_zero_rows", "fitted_prep", "resolve_initial_prep"]

#: Initialisations whose one sampling pass does not depend on the scale, so it
#: can also measure the statistics of ``standardize``.
SCALE_FREE_INITS = ("random", "k-means++")


def resolve_initial_prep(
    prep: Prep | None, X: da.Array, weights, init, *, check: bool, split_every=None,
    tol: float = 0.0,
) -> tuple[Prep | None, int, float | None]:
    """Resolve a pending standardisation when the initialisation needs it first.

    k-means|| computes scaled distances from its first round, and explicit
    initial centres must be mapped into the scaled space before the first
    Lloyd pass, so both need the mean and scale beforehand: one statistics
    pass. ``"random"`` and ``"k-means++"`` draw their sample without looking
    at distances and measure the statistics in that same pass (nothing to do
    here).

    Returns
    -------
    prep : Prep or None
        Resolved, or unchanged.
    n_passes : int
        1 when a statistics pass was made, else 0.
    tol_abs : float or None
        ``tol`` times the mean variance of the preprocessed data when known.
    """
    if prep is None or not prep.pending or (isinstance(init, str) and init in SCALE_FREE_INITS):
        return prep, 0, None
    (res,) = compute_passes(stats_pass(X, weights, check=check, split_every=split_every,
                                       prep=prep))
    prep = prep.resolve(res["moments"])
    tol_abs = None
    if not prep.normalize:
        count, _, m2 = prep.scaled_moments(res["moments"])
        tol_abs = float(np.mean(m2 / count) * tol) if count else 0.0
    return prep, 1, tol_abs


def fitted_prep(prep: Prep | None, state: LloydState) -> Prep | None:
    """The prep of a fit after initialisation (or resumed from a checkpoint)."""
    if prep is None or not prep.pending:
        return prep
    if state.prep_stats is None:
        raise ValueError(
            "checkpoint: the saved state has no standardisation statistics; remove the "
            "checkpoint directory and fit again."
        )
    return dataclasses.replace(
        prep, center=np.asarray(state.prep_stats["mean"], dtype=np.float64),
        scale=np.asarray(state.prep_stats["scale"], dtype=np.float64),
    )


def count_zero_rows(X: da.Array, prep: Prep) -> int:
    """Kept rows of X that are zero after centring and scaling (one pass, error path only)."""
    counts = X.map_blocks(zero_rows_block, prep, dtype=np.int64, chunks=((1,) * X.numblocks[0],),
                          drop_axis=1, new_axis=None)
    return int(counts.sum().compute())
