"""Hierarchical k-means for very large k: :class:`HierarchicalKMeans`.

A *coarse* level of about ``sqrt(k)`` centres is fitted by ordinary k-means
(k-means++ on a sample, then a few Lloyd passes). Every coarse cell then gets
a share of the ``k`` *fine* centres in proportion to its weight, seeded by
k-means++ on rows sampled from the cell (one pass, weighted sampling without
replacement), and all cells' fine Lloyd iterations run together, one pass
over the data per iteration, in which a row is compared only with the fine
centres of its nearest coarse cell: ``sqrt(k) + k / sqrt(k)`` distances a
row instead of ``k``. An optional refinement lets every row probe its
``n_probe`` nearest coarse cells (all ``k`` centres then move as one
k-means), and ``predict`` searches the same way.

Deeper trees (``n_levels=L``, L >= 3; ``"auto"`` above k = 1,000,000): the
coarse level has about ``k^((L-1)/L)`` centres and is itself fitted as a
tree of ``L - 1`` levels, on the same data, in its own passes (one per
iteration at every level). A row then finds its coarse cells top-down
(:class:`CoarseTree`): the ``n_probe`` nearest cells of the top level, then
at every level the ``n_probe`` nearest among the children of those found
above, in the seeding, fine and refinement passes, the final labels and
``predict``: about ``L k^(1/L)`` distances a row with one probe, not
``2 sqrt(k)``.

``balanced=True`` caps the cluster sizes: every fine centre carries a
*price* added to its squared distance when rows choose their centre. After
every pass, a cluster above ``max_size_ratio`` times the mean size raises its
price by the regret (the extra cost of the second choice) below which its
excess lies, read from a per-cluster histogram of the rows' regrets (an
auction: prices only rise), until no cluster is above it in the final labels;
when the prices fall short, one pass over the blocks in order enforces the
cap (:func:`_capped_block`).

The final labels and ``predict`` also compare every row with the
``n_neighbors`` fine centres nearest to the one its cells gave
(:func:`neighbor_lists`), which recovers many of the rows whose nearest
centre lies in another cell.

Memory: the client and every task hold the ``k x d`` centres and the
``k x d`` partial sums of one pass, never anything of size N.
"""

from __future__ import annotations

import time
import warnings
from numbers import Integral, Real

import dask.array as da
import numpy as np

from . import kernels as _kernels
from ._base import COMMON_PARAMETERS, KMeansBase, _as_frame_labels, in_memory
from ._rng import as_seed_sequence
from ._validation import Boolean, Interval, NoneValue, Options, check_sample_weight
from ._validation import Callable as CallableC
from .engine._graph import PassRunner, block_reduce, compute_passes
from .engine._init import init_centers
from .engine._lloyd import LloydState, _tol_from_moments, check_block, lloyd
from .kernels import _numpy as _kernels_numpy

__all__ = ["CoarseTree", "HierarchicalKMeans", "allocate", "auto_levels", "neighbor_lists",
           "probe_labels"]


# --------------------------------------------------------------------------- #
# per-block arithmetic
# --------------------------------------------------------------------------- #
#: Most probes that :func:`_child_probes` finds by repeated argmin (beyond: a sort),
#: as :func:`daskmeans.kernels.top_centers` does for the top level.
_PROBE_BY_ARGMIN = _kernels_numpy.TOP_BY_ARGMIN


class CoarseTree:
    """The levels above the fine one of a tree of three levels or more.

    Parameters
    ----------
    levels : list of (centers, offsets)
        From the top down. Level 0's ``offsets`` is ``[0, m_0]`` (one root
        cell); the centres of level ``l`` are grouped by their cell of level
        ``l - 1``: cell ``c`` owns ``centers[offsets[c]:offsets[c + 1]]``. The
        cells of the fine centres are the last level's centres.

    A row's cells are found top-down (:func:`_tree_probes`): the ``P``
    nearest centres of the top level, then at every level the ``P`` nearest
    among the children of the ``P`` cells found above (a beam search). With
    ``P`` at least the number of cells of every level it is exhaustive.
    """

    def __init__(self, levels) -> None:
        self.levels = [(np.ascontiguousarray(C), np.asarray(off, dtype=np.int64))
                       for C, off in levels]

    @property
    def centers(self) -> np.ndarray:
        """The last level's centres: the cells of the fine centres."""
        return self.levels[-1][0]

    def __dask_tokenize__(self):
        from dask.base import tokenize

        return ("daskmeans-coarse-tree", tokenize(*[a for lvl in self.levels for a in lvl]))


def _cells_of(coarse) -> np.ndarray:
    """The centres of the coarse cells: ``coarse`` itself, or a tree's last level."""
    return coarse.centers if isinstance(coarse, CoarseTree) else coarse


def _child_probes(X: np.ndarray, parents: np.ndarray, centers: np.ndarray,
                  offsets: np.ndarray, n_probe: int) -> np.ndarray:
    """The ``n_probe`` nearest, among the children of every row's ``parents``
    (n, P), nearest first: (n, n_probe), indices into ``centers``.

    Scores are ``||c||^2 - 2 x.c`` in the data's dtype, as in the cells; ties
    go to the earlier parent, then to the lower index. A row whose parents
    have fewer than ``n_probe`` children in all (only when a cell lost all
    its children) repeats its nearest.
    """
    n, P = parents.shape
    if n == 0:
        return np.zeros((0, n_probe), dtype=np.intp)
    if n_probe == 1:  # the best child of every parent (compiled), then the best parent
        lab, score = _kernels.probe_cells(X, parents, centers, offsets)
        return lab[np.arange(n), np.argmin(score, axis=1)][:, None].astype(np.intp)
    from .kernels._numpy import pairs_by_cell

    cand = np.zeros((n * P, n_probe), dtype=np.intp)
    scores = np.full((n * P, n_probe), np.inf, dtype=np.result_type(X.dtype, centers.dtype))
    pairs, bounds = pairs_by_cell(parents, len(offsets) - 1)
    m2 = centers.dtype.type(-2)
    c_sq = _kernels.sq_norms(centers)
    for c in np.flatnonzero(np.diff(bounds)):
        lo, hi = int(offsets[c]), int(offsets[c + 1])
        if hi == lo:
            continue
        q = pairs[bounds[c] : bounds[c + 1]]
        D = np.take(X, q // P, axis=0) @ (centers[lo:hi] * m2).T
        D += c_sq[lo:hi]
        t = min(n_probe, hi - lo)
        if t < hi - lo:
            part = np.argpartition(D, t - 1, axis=1)[:, :t]
            part.sort(axis=1)  # lower index first among equal scores
        else:
            part = np.broadcast_to(np.arange(hi - lo), (len(q), t))
        cand[q, :t] = part + lo
        scores[q, :t] = np.take_along_axis(D, part, 1)
    cand = cand.reshape(n, P * n_probe)
    scores = scores.reshape(n, P * n_probe)
    if n_probe <= _PROBE_BY_ARGMIN:  # one argmin per probe (the first of equals)
        rows = np.arange(n)
        out = np.empty((n, n_probe), dtype=np.intp)
        found = np.empty((n, n_probe), dtype=bool)
        for p in range(n_probe):
            j = np.argmin(scores, axis=1)
            out[:, p] = cand[rows, j]
            found[:, p] = np.isfinite(scores[rows, j])
            scores[rows, j] = np.inf
    else:
        order = np.argsort(scores, axis=1, kind="stable")[:, :n_probe]
        out = np.take_along_axis(cand, order, 1)
        found = np.isfinite(np.take_along_axis(scores, order, 1))
    if not found.all():
        out = np.where(found, out, out[:, :1])
    return out


def _tree_probes(X: np.ndarray, tree: CoarseTree, n_probe: int) -> np.ndarray:
    """The cells of the last level of ``tree`` that every row searches: (n, P).

    Top-down, ``min(n_probe, cells)`` of every level: the nearest of the top
    level (:func:`_coarse_probes`), then the nearest among their children
    (:func:`_child_probes`), nearest first.
    """
    top = tree.levels[0][0]
    probes = _coarse_probes(X, top, min(n_probe, top.shape[0]))
    for centers, offsets in tree.levels[1:]:
        probes = _child_probes(X, probes, centers, offsets, min(n_probe, centers.shape[0]))
    return probes


def _coarse_probes(X: np.ndarray, coarse, n_probe: int) -> np.ndarray:
    """The ``n_probe`` nearest coarse centres of every row, nearest first: (n, P).

    ``coarse``: the coarse centres (m, d), searched exhaustively, or a
    :class:`CoarseTree`, searched top-down (the ``n_probe`` nearest cells
    the tree finds)."""
    if isinstance(coarse, CoarseTree):
        return _tree_probes(X, coarse, n_probe)
    if n_probe == 1:
        labels, _ = _kernels.nearest(X, coarse)
        return labels[0][:, None]
    return _kernels.top_centers(X, coarse, n_probe)


def probe_labels(X: np.ndarray, coarse: np.ndarray, fine: np.ndarray, offsets: np.ndarray,
                 n_probe: int = 1, prices: np.ndarray | None = None, *,
                 with_regret: bool = False, neighbors: np.ndarray | None = None):
    """Two-level search: the best fine centre among the ``n_probe`` nearest cells,
    then among that centre's nearest fine centres (``neighbors``).

    Parameters
    ----------
    X : ndarray of shape (n, d)
    coarse : ndarray of shape (m, d) or CoarseTree
        The coarse centres, or the levels above the fine one (the coarse
        centres are its last level), searched top-down.
    fine : ndarray of shape (k, d)
        Fine centres grouped by cell: cell ``c`` owns ``offsets[c]:offsets[c + 1]``.
    offsets : ndarray of shape (m + 1,)
    n_probe : int
    prices : ndarray of shape (k,), optional
        Added to the squared distances when choosing (balanced fits).
    with_regret : bool
        Also return every row's regret: how much more its second choice
        (among the searched centres, prices included) costs than its first.
    neighbors : ndarray of shape (k, L), optional
        :func:`neighbor_lists`: after the cells, every row is also compared
        with the ``L`` fine centres nearest to the one it found, whatever
        their cell (the rows near a cell's border, whose nearest centre
        often lies in a cell that was not searched).

    Returns
    -------
    labels : ndarray of shape (n,), int64
        Index into ``fine``.
    sq_dist : ndarray of shape (n,), float64
        Squared distance to that centre.
    regret : ndarray of shape (n,), float64, only with ``with_regret``
        Infinite for a row with a single candidate.
    """
    n = X.shape[0]
    if n == 0:
        labels = np.zeros(0, dtype=np.int64)
        return (labels, np.zeros(0), np.zeros(0)) if with_regret else (labels, np.zeros(0))
    probes = _coarse_probes(X, coarse, min(n_probe, _cells_of(coarse).shape[0]))
    x_sq = _kernels.sq_norms(X).astype(np.float64)
    found = _kernels.probe_cells(X, probes, fine, offsets, prices, with_second=with_regret)
    cand, scores = found[0], found[1]
    # the best cell of every row; on ties the nearer cell (the first probe)
    r = np.arange(n)
    pick = np.argmin(scores, axis=1)
    labels = cand[r, pick]
    score = scores[r, pick]
    second = None
    if with_regret:
        # runner-up: the other cells' best, or the second best of the chosen cell
        scores[r, pick] = np.inf
        second = np.minimum(scores.min(axis=1), found[2][r, pick])
    if neighbors is not None and neighbors.shape[1]:
        _neighbor_step(X, fine, prices, neighbors, labels, score, second)
    dist = score + x_sq
    if prices is not None:
        dist -= prices[labels]
    np.maximum(dist, 0.0, out=dist)
    if with_regret:
        return labels, dist, second - score
    return labels, dist


#: Whether a balanced fit raises prices in its fine passes (else only in the final labels).
_FIT_PRICES = True
#: Passes of the final labels that raise prices before the cap is enforced directly.
_PRICE_PASSES = 10
#: Share of the cap that a balanced fit's price rise aims below it.
_CAP_SLACK = 0.02
#: Factor on a balanced fit's price rise (above 1: fewer passes, a little more inertia).
_PRICE_OVERSHOOT = 1.0 + 1e-9
#: Whether the fine and refinement passes take the neighbour step too (else only
#: the final labels and ``predict``).
_NEIGHBORS_IN_PASSES = False
#: Rows per slice of the neighbour step (its gathered centres: rows x L x d).
_NEIGHBOR_ROWS = 2048


def _neighbor_step(X, fine, prices, neighbors, labels, score, second):
    """Compare every row with the neighbours of its centre; update in place.

    Scores are ``||c||^2 - 2 x.c`` in the data's dtype (plus the price), as
    in the cells; a neighbour replaces the centre only when strictly better.
    ``second`` (with regrets) gets the runner-up among all centres seen.
    """
    n = X.shape[0]
    f_sq = _kernels.sq_norms(fine)
    m2 = fine.dtype.type(-2)
    for start in range(0, n, _NEIGHBOR_ROWS):
        stop = min(start + _NEIGHBOR_ROWS, n)
        lab = labels[start:stop]
        cand = neighbors[lab]  # (h, L)
        D = np.einsum("hd,hld->hl", X[start:stop], fine[cand]) * m2
        D += f_sq[cand]
        D = D.astype(np.float64)
        if prices is not None:
            D += prices[cand]
        D[cand == lab[:, None]] = np.inf  # the centre itself was scored by its cell
        r = np.arange(stop - start)
        j = np.argmin(D, axis=1)
        best = D[r, j]
        old = score[start:stop]
        better = best < old
        if second is not None:
            D[r, j] = np.inf
            runner = D.min(axis=1)
            sec = second[start:stop]
            second[start:stop] = np.where(better, np.minimum(old, runner),
                                          np.minimum(sec, best))
        rows = np.flatnonzero(better) + start
        score[rows] = best[better]
        labels[rows] = cand[better, j[better]]


def neighbor_lists(fine: np.ndarray, coarse, offsets: np.ndarray,
                   n_neighbors: int, n_cells: int = 4) -> np.ndarray | None:
    """The ``n_neighbors`` nearest fine centres of every fine centre.

    Searched among the fine centres of the ``n_cells`` coarse cells nearest
    to the centre's own cell (``k x n_cells k / m`` distances, not ``k^2``;
    with a :class:`CoarseTree` for ``coarse``, the cells its search finds).
    A centre's own index fills the list where there are too few others.

    Returns
    -------
    ndarray of shape (k, n_neighbors), int64, or None when ``n_neighbors`` is 0.
    """
    cells = _cells_of(coarse)
    k, m = fine.shape[0], cells.shape[0]
    if n_neighbors <= 0 or k <= 1:
        return None
    L = min(n_neighbors, k - 1)
    out = np.repeat(np.arange(k, dtype=np.int64)[:, None], L, axis=1)
    Fc = fine.astype(np.float64)
    f_sq = (Fc * Fc).sum(axis=1)
    near_cells = _coarse_probes(cells, coarse, min(n_cells, m))
    for c in range(m):
        lo, hi = int(offsets[c]), int(offsets[c + 1])
        if hi == lo:
            continue
        cand = np.concatenate([np.arange(offsets[j], offsets[j + 1]) for j in near_cells[c]])
        D = f_sq[lo:hi, None] - 2.0 * Fc[lo:hi] @ Fc[cand].T + f_sq[cand]
        D[cand[None, :] == np.arange(lo, hi)[:, None]] = np.inf
        t = min(L, len(cand) - 1)
        if t <= 0:
            continue
        part = np.argpartition(D, t - 1, axis=1)[:, :t]
        order = np.argsort(np.take_along_axis(D, part, 1), axis=1, kind="stable")
        out[lo:hi, :t] = cand[np.take_along_axis(part, order, 1)]
    return out


def _regret_hist(labels, regret, w, k, edges):
    """Weight of every cluster's rows per bin of regret: (k, len(edges))."""
    b = np.searchsorted(edges, regret, side="right") - 1  # bin i: edges[i] <= r < edges[i+1]
    nb = len(edges)
    wt = np.ones(len(labels)) if w is None else w
    return np.bincount(labels * nb + np.clip(b, 0, nb - 1), weights=wt,
                       minlength=k * nb).reshape(k, nb)


def _probe_chunk(X, w, index, *, coarse, fine, offsets, n_probe, prices, check,
                 with_moments=False, edges=None, neighbors=None):
    if check:
        check_block(X, w)
    k = fine.shape[0]
    regret = None
    if edges is not None:
        labels, dist, regret = probe_labels(X, coarse, fine, offsets, n_probe, prices,
                                            with_regret=True, neighbors=neighbors)
    else:
        labels, dist = probe_labels(X, coarse, fine, offsets, n_probe, prices,
                                    neighbors=neighbors)
    sums, counts = _kernels.accumulate(X, labels, w, k)
    wd = dist if w is None else dist * w
    out = {
        "sums": sums,
        "counts": counts,
        "inertia": np.array([wd.sum()]),
        "cluster_inertia": np.bincount(labels, weights=wd, minlength=k),
    }
    if regret is not None:
        out["regret_hist"] = _regret_hist(labels, regret, w, k, edges)
    if with_moments:
        out["moments"] = _kernels.moments(X)
    return out


def _probe_combine(parts):
    out = _kernels.combine_partials(parts)
    for key in ("cluster_inertia", "regret_hist"):
        if key in parts[0]:
            out[key] = np.sum([p[key] for p in parts], axis=0)
    return out


def _sample_chunk(X, w, index, *, coarse, quota, seed, check):
    """Weighted sample without replacement of up to ``quota[c]`` rows of every cell.

    Every row gets the key ``E / w`` (``E`` exponential): the rows with the
    smallest keys of a cell, across all blocks, are a weighted sample of it
    (Efraimidis and Spirakis). Returns the block's best rows per cell.
    """
    if check:
        check_block(X, w)
    n = X.shape[0]
    rng = np.random.default_rng([seed, index])
    cells = _coarse_probes(X, coarse, 1)[:, 0]
    keys = rng.exponential(size=n)
    if w is not None:
        with np.errstate(divide="ignore"):
            keys = np.where(w > 0, keys / np.maximum(w, 1e-300), np.inf)
    return _keep_best({"keys": keys, "cells": cells, "rows": X}, quota)


def _keep_best(part, quota):
    keys, cells = part["keys"], part["cells"]
    order = np.lexsort((keys, cells))
    keys, cells = keys[order], cells[order]
    finite = np.isfinite(keys)
    starts = np.searchsorted(cells, cells, side="left")
    rank = np.arange(len(cells)) - starts
    keep = finite & (rank < quota[cells])
    idx = order[keep]
    return {"keys": part["keys"][idx], "cells": part["cells"][idx], "rows": part["rows"][idx]}


def _sample_combine(parts, quota):
    cat = {key: np.concatenate([p[key] for p in parts]) for key in ("keys", "cells", "rows")}
    return _keep_best(cat, quota)


class _SampleCombine:
    def __init__(self, quota):
        self.quota = quota

    def __call__(self, parts):
        return _sample_combine(parts, self.quota)

    def __dask_tokenize__(self):
        return ("daskmeans-hier-sample", self.quota.tobytes())


def _reseed_empty(centers: np.ndarray, counts: np.ndarray, cluster_inertia: np.ndarray,
                  offsets: np.ndarray, rng: np.random.Generator) -> int:
    """Move every empty fine centre next to the centre of its cell whose cluster
    has the largest inertia, splitting that cluster in two (in place).

    The two centres are set a tenth of the cluster's RMS radius apart on
    either side of its mean, along a random direction; the next pass divides
    its rows between them. A cell without such a cluster borrows the
    largest of all. Each cluster is split at most once a pass. Returns the
    number of centres moved. (Not in balanced fits: measured on a 200,000 x
    64 mixture at k = 10,000, it raised their inertia.)
    """
    empty = np.flatnonzero(counts <= 0)
    if len(empty) == 0:
        return 0
    cell_of = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
    score = np.where(counts > 0, cluster_inertia, 0.0).astype(np.float64)
    moved = 0
    for e in empty:
        lo, hi = int(offsets[cell_of[e]]), int(offsets[cell_of[e] + 1])
        j = lo + int(np.argmax(score[lo:hi]))
        if score[j] <= 0:
            j = int(np.argmax(score))
            if score[j] <= 0:
                break
        radius = np.sqrt(cluster_inertia[j] / counts[j])
        step = rng.normal(size=centers.shape[1])
        step *= 0.05 * radius / max(float(np.sqrt(step @ step)), 1e-300)
        centers[e] = centers[j] + step
        centers[j] = centers[j] - step
        score[j] = 0.0
        moved += 1
    return moved


def _regroup(fine: np.ndarray, coarse):
    """Fine centres grouped by their nearest coarse centre (with a
    :class:`CoarseTree`, the cell its search finds): ``(fine, offsets, perm)``."""
    cells = _coarse_probes(fine, coarse, 1)[:, 0]
    perm = np.argsort(cells, kind="stable")
    counts = np.bincount(cells, minlength=_cells_of(coarse).shape[0])
    offsets = np.concatenate(([0], np.cumsum(counts))).astype(np.int64)
    return np.ascontiguousarray(fine[perm]), offsets, perm


def allocate(weights: np.ndarray, k: int) -> np.ndarray:
    """Fine centres per cell in proportion to ``weights`` (largest remainders).

    Every cell of positive weight then gets at least one centre when ``k``
    allows, taken from the cells with the most.
    """
    weights = np.asarray(weights, dtype=np.float64)
    if not (weights > 0).any():
        weights = np.ones(len(weights))
    share = weights / weights.sum() * k
    out = np.floor(share).astype(np.int64)
    left = k - int(out.sum())
    if left > 0:
        out[np.argsort(-(share - out), kind="stable")[:left]] += 1
    pos = weights > 0
    if k >= int(pos.sum()):
        for c in np.flatnonzero(pos & (out == 0)):
            out[int(np.argmax(out))] -= 1
            out[c] = 1
    return out


def _kmeanspp(cands: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding (D^2 sampling) of ``k`` rows of ``cands`` in memory."""
    n = len(cands)
    if k >= n:
        out = cands[np.arange(k) % n] if n else np.zeros((k, cands.shape[1]), cands.dtype)
        return out.copy()
    X = cands.astype(np.float64)
    x_sq = np.einsum("ij,ij->i", X, X)

    def sq_dist_to(i):  # expanded: one matrix-vector product a step
        v = X @ (-2.0 * X[i])
        v += x_sq
        v += x_sq[i]
        return np.maximum(v, 0.0, out=v)

    chosen = [int(rng.integers(n))]
    closest = sq_dist_to(chosen[0])
    for _ in range(1, k):
        cum = np.cumsum(closest)
        total = cum[-1]
        if total <= 0:
            i = int(rng.integers(n))
        else:
            i = min(int(np.searchsorted(cum, rng.random() * total)), n - 1)
        chosen.append(i)
        np.minimum(closest, sq_dist_to(i), out=closest)
    return cands[chosen].copy()


#: Most children per cell of ``n_levels="auto"``: the fewest levels whose
#: branching factor ``k^(1/L)`` is at most this (two levels up to k = 1,000,000).
#: Measured on 2 cores (docs/large-k.md), a third level was not faster up to
#: k = 50,000 and cost 3 to 5 % of inertia at the same ``n_probe``; two levels'
#: per-row work (``2 sqrt(k)``) and in-memory seeding (``k sqrt(k)``) outgrow
#: it only far beyond.
_AUTO_MAX_BRANCHING = 1000


def auto_levels(n_clusters: int) -> int:
    """The levels of ``n_levels="auto"``: the fewest (at least 2) whose branching
    factor ``n_clusters^(1/L)`` is at most ``_AUTO_MAX_BRANCHING``: 2 up to
    1,000,000 clusters, 3 up to 1,000,000,000."""
    L = 2
    while n_clusters > _AUTO_MAX_BRANCHING ** L:
        L += 1
    return L


# --------------------------------------------------------------------------- #
# the estimator
# --------------------------------------------------------------------------- #
class HierarchicalKMeans(KMeansBase):
    """Hierarchical k-means for very large k, one pass over the data per iteration.

    Parameters
    ----------
    n_clusters : int, default=8
        Number of (fine) clusters k.
    n_levels : int or "auto", default="auto"
        Levels of the tree, at least 2: the fine centres and the levels of
        cells above them. With ``L > 2`` the coarse level (``n_coarse``
        cells) is fitted as a tree of ``L - 1`` levels and rows find their
        cells top-down, ``n_probe`` cells a level. ``"auto"``: the fewest
        levels whose cells have at most 1,000 children each
        (:func:`auto_levels`): 2 up to 1,000,000 clusters, 3 above.
    n_coarse : int or None, default=None
        Cells of the level just above the fine one; ``None`` is
        ``round(sqrt(n_clusters))`` with two levels, ``round(n_clusters **
        ((L - 1) / L))`` with ``L``.
    coarse_iter : int, default=5
        Lloyd iterations of the coarse level (at most); with deeper trees,
        the iterations of every level above the fine one.
    max_iter : int, default=5
        Iterations of the fine level (at most), all cells in the same passes.
    tol : float, default=1e-4
        Convergence of both levels, as for :class:`~daskmeans.KMeans`.
    n_probe : int, default=8
        Coarse cells searched by ``predict``, by the final labels and by the
        refinement (with deeper trees: the cells kept at every level of the
        search).
    refine_iter : int, default=2
        Iterations in which every row probes its ``n_probe`` nearest cells
        and all ``k`` centres move together (with ``n_probe >= 2``; with
        ``n_probe`` equal to the number of cells they are Lloyd iterations).
        The defaults (5 coarse and 5 fine iterations, then 2 of refinement
        probing 8 cells) recover what the cell borders lose, in less time
        than more fine iterations would take (measurements in
        ``docs/large-k.md``); ``refine_iter=0, n_probe=1`` is the plain
        two-level fit.
    oversampling : float, default=4.0
        Candidate rows sampled per fine centre of a cell for its k-means++ seeding.
    n_neighbors : int, default=16
        After its cells, every row is also compared with this many fine
        centres nearest to the one it found, whatever their cell (in the
        final labels and ``predict``; 0 turns it off). A row near the border
        of its cell often has its nearest centre in the next one.
    balanced : bool, default=False
        Cap the cluster sizes at ``max_size_ratio`` times the mean (by weight):
        guaranteed in ``labels_`` and ``cluster_sizes_`` (unless a single row
        outweighs the room left in every cluster, with a warning);
        ``predict`` uses the prices only.
    max_size_ratio : float, default=2.0
        The cap of ``balanced=True``, at least 1.
    verbose : int, default=0
    random_state : int, numpy.random.Generator/RandomState or None
    split_every : int, optional
        Fan-in of the combine tree.
    callback : callable, optional
        Called after every pass with an event dict whose ``"phase"`` is
        ``"coarse-init"``, ``"lloyd"`` (the top level's Lloyd), ``"seed"``,
        ``"fine"``, ``"refine"`` or ``"labels"``, and whose ``"level"`` is
        the level of the tree that the pass fits (0 the top, ``L - 1`` the
        fine centres).

    Attributes
    ----------
    cluster_centers_ : ndarray of shape (n_clusters, n_features)
        Fine centres, grouped by coarse cell.
    coarse_centers_ : ndarray of shape (n_coarse, n_features)
        The centres of the level just above the fine one.
    cell_offsets_ : ndarray of shape (n_coarse + 1,)
        Cell ``c`` owns ``cluster_centers_[cell_offsets_[c]:cell_offsets_[c + 1]]``.
    levels_ : list of (ndarray, ndarray)
        The tree from the top down: every level's ``(centers, offsets)``,
        its centres grouped by their cell of the level above (cell ``c``
        owns ``centers[offsets[c]:offsets[c + 1]]``; the top level's offsets
        are ``[0, m]``). The last is ``(cluster_centers_, cell_offsets_)``,
        the one before it holds ``coarse_centers_``.
    n_levels_ : int
        ``len(levels_)``.
    cluster_prices_ : ndarray of shape (n_clusters,) or None
        Added to the squared distances when choosing a centre (``balanced``).
    labels_ : ndarray or dask.array.Array of shape (n_samples,)
    inertia_ : float
    cluster_sizes_ : ndarray of shape (n_clusters,)
        Total weight of every cluster in the final labels.
    n_iter_ : int
        Fine (and refinement) iterations.
    inertia_history_ : list of float
        Inertia of every fine (and refinement) pass, before its update.
    n_passes_ : int
        Passes over the data, all levels together.
    passes_ : dict
        Passes per step: ``coarse`` (every level above the fine one),
        ``seed``, ``fine``, ``refine``, ``labels`` (the fine level).
    level_passes_ : list of dict
        Passes of every level, from the top: ``{"coarse": ...}`` (its
        k-means++ and Lloyd), then ``{"seed": ..., "fine": ...}`` for every
        level between, then the fine level's ``seed``, ``fine``, ``refine``
        and ``labels``. They add up to ``n_passes_``.
    initial_centers_ : ndarray of shape (n_clusters, n_features)
        The seeded fine centres (before the fine iterations).

    Examples
    --------
    >>> import numpy as np
    >>> from daskmeans import HierarchicalKMeans
    >>> rng = np.random.default_rng(0)
    >>> X = np.concatenate([rng.normal(c, 0.1, size=(50, 2)) for c in range(8)])
    >>> hk = HierarchicalKMeans(n_clusters=8, n_coarse=2, random_state=0).fit(X)
    >>> hk.cluster_centers_.shape, hk.coarse_centers_.shape
    ((8, 2), (2, 2))
    >>> int(hk.predict(X[:1])[0]) == int(hk.labels_[0])
    True
    >>> deep = HierarchicalKMeans(n_clusters=8, n_levels=3, random_state=0).fit(X)
    >>> [len(centers) for centers, offsets in deep.levels_]
    [2, 4, 8]
    """

    _parameter_table = {
        **COMMON_PARAMETERS,
        "n_levels": [Interval(Integral, 2), Options("auto")],
        "n_coarse": [Interval(Integral, 1), NoneValue()],
        "coarse_iter": [Interval(Integral, 1)],
        "n_probe": [Interval(Integral, 1)],
        "refine_iter": [Interval(Integral, 0)],
        "oversampling": [Interval(Real, 1)],
        "n_neighbors": [Interval(Integral, 0)],
        "balanced": [Boolean()],
        "max_size_ratio": [Interval(Real, 1)],
        "split_every": [Interval(Integral, 2), NoneValue()],
        "callback": [CallableC(), NoneValue()],
    }
    _model_format = "daskmeans.HierarchicalKMeans"
    _sparse_input = False  # the two-level search takes dense rows
    _model_version = 2  # 2: the levels of the tree (1: two levels, coarse_centers_)

    def __init__(
        self,
        n_clusters=8,
        *,
        n_levels="auto",
        n_coarse=None,
        coarse_iter=5,
        max_iter=5,
        tol=1e-4,
        n_probe=8,
        refine_iter=2,
        oversampling=4.0,
        n_neighbors=16,
        balanced=False,
        max_size_ratio=2.0,
        verbose=0,
        random_state=None,
        split_every=None,
        callback=None,
    ):
        self.n_clusters = n_clusters
        self.n_levels = n_levels
        self.n_coarse = n_coarse
        self.coarse_iter = coarse_iter
        self.max_iter = max_iter
        self.tol = tol
        self.n_probe = n_probe
        self.refine_iter = refine_iter
        self.oversampling = oversampling
        self.n_neighbors = n_neighbors
        self.balanced = balanced
        self.max_size_ratio = max_size_ratio
        self.verbose = verbose
        self.random_state = random_state
        self.split_every = split_every
        self.callback = callback

    def _resolve_params(self) -> None:
        k = self.n_clusters
        L = self.n_levels
        if isinstance(L, str):  # "auto"
            L = auto_levels(k)
        self._levels = int(L)
        if self.n_coarse is not None:
            m = self.n_coarse
        elif self._levels == 2:
            m = max(1, round(np.sqrt(k)))
        else:  # the level above the fine one: k^((L-1)/L) cells
            m = max(1, min(k, round(k ** ((self._levels - 1) / self._levels))))
        if m > k:
            raise ValueError(f"n_coarse={m} must be <= n_clusters={k}.")
        self._m = int(m)
        self._reassign = getattr(self, "_reassign", True)

    # ------------------------------------------------------------------ #
    def _event(self, level: int, **event) -> None:
        event["level"] = level
        if self.verbose:
            detail = ", ".join(f"{k} {v:.6g}" if isinstance(v, float) else f"{k} {v}"
                               for k, v in event.items() if k != "phase")
            print(f"[daskmeans] {event['phase']}: {detail}")
        if self.callback is not None:
            self.callback(event)

    def _level_callback(self, level: int):
        """``callback`` with the level added to the events of another engine."""
        if self.callback is None:
            return None

        def callback(event: dict) -> None:
            self.callback({**event, "level": level})

        return callback

    def fit(self, X, y=None, sample_weight=None, *, storage_options=None):
        """Fit the levels from the top down, each level's cells together.

        Parameters
        ----------
        X : array-like, dask.array.Array, zarr.Array, str or os.PathLike of shape \
(n_samples, n_features)
        y : ignored
        sample_weight : array-like of shape (n_samples,), optional
        storage_options : dict, optional
            fsspec options when X is a URL.

        Returns
        -------
        self
        """
        self._validate_params()
        Xd, in_mem = self._validate_data(X, reset=True, storage_options=storage_options)
        self._check_n_samples(Xd)
        weights = check_sample_weight(sample_weight, Xd, in_memory=in_mem)
        t0 = time.perf_counter()
        grown = self._grow(Xd, weights, check=not in_mem,
                           seq=as_seed_sequence(self.random_state))
        passes = grown["passes"]

        # ---- final labels (and, with balanced, prices until the cap holds)
        coarse, fine, offsets = grown["coarse"], grown["fine"], grown["offsets"]
        self.coarse_centers_ = _cells_of(coarse)
        self.cell_offsets_ = offsets
        self.cluster_centers_ = fine
        self.cluster_prices_ = grown["prices"]
        self.levels_ = grown["upper"] + [(fine, offsets)]
        self.n_levels_ = len(self.levels_)
        labels, inertia, sizes, n_label_passes = self._final_labels(Xd, weights, in_mem)
        passes["labels"] = n_label_passes
        self.inertia_ = inertia
        self.cluster_sizes_ = sizes
        self.n_iter_ = grown["n_iter"]
        self.inertia_history_ = grown["history"]
        self.level_passes_ = grown["level_passes"] + [
            {key: int(passes[key]) for key in ("seed", "fine", "refine", "labels")}]
        self.passes_ = passes
        self.n_passes_ = int(sum(passes.values()))
        self.labels_ = labels if in_mem else _as_frame_labels(X, labels)
        self.timings_ = {"fit": time.perf_counter() - t0}
        return self

    def _grow(self, Xd, weights, *, check: bool, seq) -> dict:
        """Every level of the tree, without the final labels.

        The levels above the fine one: the coarse level's k-means++ and Lloyd
        (two levels), or a fit of ``n_levels - 1`` levels whose fine centres
        are the coarse cells (deeper trees). Then the split, the fine and the
        refinement passes of this level. Returns a dict: ``coarse`` (the
        coarse centres, or a :class:`CoarseTree`), ``upper`` (the levels above
        the fine one, as ``(centers, offsets)`` from the top), ``fine``,
        ``offsets``, ``prices``, ``counts`` (every fine centre's weight in the
        last pass), ``tol_abs``, ``passes``, ``level_passes`` (of the levels
        above), ``n_iter``, ``history``.
        """
        k, m = self.n_clusters, self._m
        fine_level = self._levels - 1
        seeds = seq.spawn(3)
        passes = {"coarse": 0, "seed": 0, "fine": 0, "refine": 0, "labels": 0}

        if self._levels == 2:
            # ---- coarse level: k-means++ on a sample, then Lloyd
            centers, n_init_passes, moments = init_centers(
                Xd, weights, m, "k-means++", seeds[0], 1, check=check,
                split_every=self.split_every,
            )
            check = check and n_init_passes == 0
            tol_abs = None
            if moments is not None:
                tol_abs = _tol_from_moments(moments, self.tol)
            state = LloydState.start([np.ascontiguousarray(centers[0], dtype=Xd.dtype)],
                                     tol_abs=tol_abs, n_passes=n_init_passes)
            self._event(0, phase="coarse-init", n_passes=state.n_passes)
            state = lloyd(Xd, weights, state, max_iter=self.coarse_iter, tol=self.tol,
                          split_every=self.split_every, check_first=check,
                          callback=self._level_callback(0), verbose=self.verbose)
            passes["coarse"] = state.n_passes
            coarse = state.centers[0]
            tol_abs = state.tol_abs
            cell_weights = state.sizes[0]
            upper = [(coarse, np.array([0, m], dtype=np.int64))]
            level_passes = [{"coarse": int(state.n_passes)}]
        else:
            # ---- the levels above: a fit of one level fewer whose fine centres are the cells
            sub = HierarchicalKMeans(
                m, n_levels=self._levels - 1, coarse_iter=self.coarse_iter,
                max_iter=self.coarse_iter, tol=self.tol, n_probe=self.n_probe,
                refine_iter=0, oversampling=self.oversampling, n_neighbors=0,
                verbose=self.verbose, split_every=self.split_every, callback=self.callback)
            sub._resolve_params()
            above = sub._grow(Xd, weights, check=check, seq=seeds[0])
            upper = above["upper"] + [(above["fine"], above["offsets"])]
            coarse = CoarseTree(upper)
            tol_abs = above["tol_abs"]
            level_passes = above["level_passes"] + [
                {key: int(above["passes"][key]) for key in ("seed", "fine")}]
            passes["coarse"] = int(sum(sum(p.values()) for p in level_passes))
            # every cell gets a fine centre, even one that was empty in the last pass
            cell_weights = np.maximum(above["counts"], 1e-300)
        check = False

        # ---- split: fine centres per cell by weight, seeded in one sampling pass
        per_cell = allocate(cell_weights, k)
        offsets = np.concatenate(([0], np.cumsum(per_cell))).astype(np.int64)
        quota = np.ceil(per_cell * self.oversampling).astype(np.int64) + (per_cell > 0)
        seed_int = int(seeds[1].generate_state(1)[0])
        graph = block_reduce(Xd, weights, _sample_chunk, _SampleCombine(quota),
                             name="hkmeans-seed", split_every=self.split_every,
                             consts={"coarse": coarse, "quota": quota, "seed": seed_int,
                                     "check": False})
        (sample,) = compute_passes(graph)
        passes["seed"] = 1
        rng = np.random.default_rng(seeds[2])
        cells = _cells_of(coarse)
        fine = np.empty((k, Xd.shape[1]), dtype=Xd.dtype)
        order = np.argsort(sample["cells"], kind="stable")
        cells_sorted = sample["cells"][order]
        for c in range(cells.shape[0]):
            lo, hi = offsets[c], offsets[c + 1]
            if hi == lo:
                continue
            s, e = np.searchsorted(cells_sorted, [c, c + 1])
            cands = sample["rows"][order[s:e]]
            if len(cands) == 0:  # an empty cell: its centres start at the coarse centre
                fine[lo:hi] = cells[c]
                continue
            fine[lo:hi] = _kmeanspp(cands, int(hi - lo), rng)
        self.initial_centers_ = fine.copy()
        self._event(fine_level, phase="seed", n_passes=passes["coarse"] + 1)

        # ---- fine level: every cell's Lloyd iterations in the same passes
        prices = np.zeros(k) if self.balanced else None
        self._edges = None
        runner = PassRunner(Xd, weights, _probe_chunk, _probe_combine, name="hkmeans-fine",
                            split_every=self.split_every)
        n_iter = 0
        total = None
        history = []
        counts = None
        for phase, n_probe, iters in (("fine", 1, self.max_iter),
                                      ("refine", self.n_probe, self.refine_iter)):
            for it in range(1, iters + 1):
                nbrs = (self._neighbors_for(fine, coarse, offsets, n_probe)
                        if _NEIGHBORS_IN_PASSES else None)
                res = runner({"coarse": coarse, "fine": fine, "offsets": offsets,
                              "n_probe": n_probe, "prices": prices, "check": False,
                              "edges": self._edges, "neighbors": nbrs})
                passes[phase] += 1
                n_iter += 1
                total = float(res["counts"].sum())
                history.append(float(res["inertia"][0]))
                counts = res["counts"]
                new = fine.astype(np.float64)
                nz = counts > 0
                new[nz] = res["sums"][nz] / counts[nz, None]
                n_empty = 0
                if prices is None:  # balanced fits: prices empty clusters on purpose
                    n_empty = _reseed_empty(new, counts, res["cluster_inertia"], offsets, rng)
                new = new.astype(fine.dtype)
                shift = float(((new.astype(np.float64) - fine) ** 2).sum())
                fine = new
                capped = True
                if prices is not None and _FIT_PRICES:  # this pass's order of the centres
                    capped = self._raise_prices(prices, counts, res.get("regret_hist"),
                                                float(res["inertia"][0]), total)
                elif prices is not None and self._edges is None:  # the regret bins only
                    self._raise_prices(prices, counts, None, float(res["inertia"][0]), total)
                if self._reassign:
                    fine, offsets, perm = _regroup(fine, coarse)
                    counts = counts[perm]
                    if prices is not None:
                        prices = prices[perm]
                self._event(fine_level, phase=phase, iteration=it,
                            inertia=float(res["inertia"][0]), shift=shift,
                            n_passes=sum(passes.values()), n_empty=n_empty)
                if shift <= tol_abs and capped:
                    break
        return {"coarse": coarse, "upper": upper, "fine": fine, "offsets": offsets,
                "prices": prices, "counts": counts, "tol_abs": tol_abs, "passes": passes,
                "level_passes": level_passes, "n_iter": n_iter, "history": history}

    def _coarse_search(self):
        """What the fitted model's rows search first: the coarse centres (two
        levels) or the :class:`CoarseTree` of the levels above the fine one."""
        levels = getattr(self, "levels_", None)
        if levels is None or len(levels) <= 2:
            return self.coarse_centers_
        cache = getattr(self, "_tree_cache", None)
        if cache is None or cache[0] is not levels[-2][0]:
            cache = (levels[-2][0], CoarseTree(levels[:-1]))
            self._tree_cache = cache
        return cache[1]

    def _neighbors_for(self, fine, coarse, offsets, n_probe):
        """Neighbour lists of the fine centres, or None (off, or every cell searched)."""
        if not self.n_neighbors or n_probe >= _cells_of(coarse).shape[0]:
            return None
        return neighbor_lists(fine, coarse, offsets, self.n_neighbors)

    def _fitted_neighbors(self):
        """:meth:`_neighbors_for` the fitted centres and ``n_probe`` (cached)."""
        cache = getattr(self, "_neighbors_cache", None)
        if cache is not None and cache[0] is self.cluster_centers_:
            return cache[1]
        nbrs = self._neighbors_for(self.cluster_centers_, self._coarse_search(),
                                   self.cell_offsets_, self.n_probe)
        self._neighbors_cache = (self.cluster_centers_, nbrs)
        return nbrs

    def _cap(self, total: float) -> float:
        return self.max_size_ratio * total / self.n_clusters

    def _raise_prices(self, prices, counts, hist, inertia, total) -> bool:
        """Raise the prices of the clusters above the cap; True when none is.

        An auction: a cluster above the cap raises its price by the regret
        (second choice's cost less the first's) below which its excess
        weight lies, read from the pass's per-cluster histogram of regrets
        (the bin's upper edge, so at least the excess moves to its second
        choice). Prices only rise. The bins are set from the mean squared
        distance of the first pass, which only measures (``hist`` None).
        """
        if self._edges is None:
            scale = max(inertia / max(total, 1e-300), 1e-300)
            self._edges = np.concatenate(([0.0], scale * 2.0 ** np.arange(-24.0, 8.0, 0.25)))
        over = counts > self._cap(total) * (1 + 1e-12)
        if not over.any():
            return True
        if hist is None:
            return False
        # aim a little below the cap: the last rows of an excess otherwise take many
        # passes of ever smaller steps to leave
        target = self._cap(total) * (1.0 - _CAP_SLACK)
        edges = np.append(self._edges, np.inf)
        for c in np.flatnonzero(over):
            cum = np.cumsum(hist[c])
            excess = counts[c] - target
            b = min(int(np.searchsorted(cum, excess, side="left")), len(cum) - 1)
            lo, hi = edges[b], edges[b + 1]
            if not np.isfinite(hi):  # rows with a single candidate: past the last bin
                step = 2.0 * lo
            else:  # where the excess falls in the bin, the regrets taken as spread evenly
                before = cum[b - 1] if b else 0.0
                frac = (excess - before) / max(hist[c, b], 1e-300)
                step = lo + (hi - lo) * min(max(frac, 0.0), 1.0)
            prices[c] += step * _PRICE_OVERSHOOT
        return False

    def _final_labels(self, Xd, weights, in_mem):
        """Labels of the final centres with ``n_probe``; ``(labels, inertia, sizes, passes)``.

        One pass; with ``balanced``, passes again with raised prices until
        no cluster is above the cap (at most ``_PRICE_PASSES``). If the cap
        still does not hold, one more pass enforces it (:func:`_capped_block`,
        blocks in order). In-memory data gets its labels from the last
        pass; other data gets lazy labels, and its passes return only
        per-cluster sums (bounded by k, not N).
        """
        w = None if weights is None or not in_mem else in_memory(weights)
        n_passes = 0
        labels = None
        k = self.n_clusters
        capped = True
        for _ in range(_PRICE_PASSES):
            hist = None
            if in_mem:
                lab = Xd.map_blocks(_label_dist_block, self._coarse_search(),
                                    self.cluster_centers_, self.cell_offsets_, self.n_probe,
                                    self.cluster_prices_, self.balanced,
                                    self._fitted_neighbors(), dtype=np.float64,
                                    chunks=(Xd.chunks[0], (3,)), token="hkmeans-labels")
                (out,) = compute_passes(lab)
                labels = out[:, 0].astype(np.int64)
                dist = out[:, 1] if w is None else out[:, 1] * w
                sizes = np.bincount(labels, weights=w, minlength=k).astype(float)
                inertia = float(dist.sum())
                if self.balanced and self._edges is not None:
                    hist = _regret_hist(labels, out[:, 2], w, k, self._edges)
            else:
                graph = block_reduce(Xd, weights, _probe_chunk, _probe_combine,
                                     name="hkmeans-final", split_every=self.split_every,
                                     consts={"coarse": self._coarse_search(),
                                             "fine": self.cluster_centers_,
                                             "offsets": self.cell_offsets_,
                                             "n_probe": self.n_probe,
                                             "prices": self.cluster_prices_, "check": False,
                                             "edges": self._edges if self.balanced else None,
                                             "neighbors": self._fitted_neighbors()})
                (res,) = compute_passes(graph)
                sizes, hist = res["counts"], res.get("regret_hist")
                inertia = float(res["inertia"][0])
            n_passes += 1
            self._event(self._levels - 1, phase="labels", inertia=inertia, n_passes=n_passes)
            if not self.balanced or self._raise_prices(self.cluster_prices_, sizes, hist,
                                                       inertia, float(sizes.sum())):
                break
        else:
            capped = False
        if not capped:
            labels, inertia, sizes = self._capped_labels(Xd, weights, in_mem,
                                                         self._cap(float(sizes.sum())))
            n_passes += 1
            self._event(self._levels - 1, phase="labels", inertia=inertia, n_passes=n_passes)
            if sizes.max() > self._cap(float(sizes.sum())) * (1 + 1e-9):
                warnings.warn(
                    f"balanced: the largest cluster ({sizes.max():.6g}) is above "
                    f"max_size_ratio={self.max_size_ratio} times the mean: rows too heavy "
                    "for the room left in every cluster.", RuntimeWarning, stacklevel=3)
        if labels is None:
            labels = self._predict_dask(Xd, check=False)
        return labels, inertia, sizes, n_passes

    def _capped_labels(self, Xd, weights, in_mem, cap):
        """One pass of :func:`_capped_block` over the blocks in order (each
        block starts from the room its predecessors left): ``(labels, inertia,
        sizes)``; lazy labels for data not in memory (the same chain again)."""
        import dask

        k = self.n_clusters
        consts = {"coarse": self._coarse_search(), "fine": self.cluster_centers_,
                  "offsets": self.cell_offsets_, "n_probe": self.n_probe,
                  "prices": self.cluster_prices_, "neighbors": self._fitted_neighbors(),
                  "cap": cap}
        blocks = Xd.to_delayed().ravel()
        wblocks = ([None] * len(blocks) if weights is None
                   else list(weights.to_delayed().ravel()))
        step = dask.delayed(_capped_block, pure=True, nout=3)
        used = np.zeros(k)
        parts, inertias = [], []
        for xb, wb in zip(blocks, wblocks, strict=True):
            lab, used, inert = step(xb, wb, used, **consts)
            parts.append(lab)
            inertias.append(inert)
        lab_arrays = [da.from_delayed(lab, shape=(n,), dtype=np.int64)
                      for lab, n in zip(parts, Xd.chunks[0], strict=True)]
        if in_mem:
            out_labels, sizes, inert = dask.compute(parts, used, inertias)
            labels = np.concatenate(out_labels).astype(np.int64)
        else:
            sizes, inert = dask.compute(used, inertias)
            labels = da.concatenate(lab_arrays)
        return labels, float(np.sum(inert)), np.asarray(sizes, dtype=np.float64)

    # ------------------------------------------------------------------ #
    def _predict_dask(self, Xd: da.Array, *, check: bool) -> da.Array:
        return Xd.map_blocks(
            _predict_block, self._coarse_search(), self.cluster_centers_, self.cell_offsets_,
            self.n_probe, self.cluster_prices_, check, self._fitted_neighbors(),
            dtype=np.int64, drop_axis=1,
            token="hkmeans-predict",
        )

    def _fitted_to_doc(self) -> dict:
        doc = super()._fitted_to_doc()
        # the levels above the fine one, from the top (the last: the coarse centres,
        # grouped by their cells above); the fine level is cluster_centers_ and
        # cell_offsets_ (format 1 wrote coarse_centers_ only: two levels)
        doc.update({
            "levels_": [{"centers": C.astype(np.float64).tolist(),
                         "offsets": [int(v) for v in off]}
                        for C, off in self.levels_[:-1]],
            "cell_offsets_": [int(v) for v in self.cell_offsets_],
            "cluster_prices_": None if self.cluster_prices_ is None
            else [float(v) for v in self.cluster_prices_],
            "inertia_": float(self.inertia_),
            "n_iter_": int(self.n_iter_),
            "inertia_history_": [float(v) for v in self.inertia_history_],
            "cluster_sizes_": [float(v) for v in self.cluster_sizes_],
            "passes_": {k: int(v) for k, v in self.passes_.items()},
            "level_passes_": [{k: int(v) for k, v in p.items()} for p in self.level_passes_],
        })
        return doc

    def _fitted_from_doc(self, fit: dict) -> None:
        super()._fitted_from_doc(fit)
        dtype = self.cluster_centers_.dtype
        self.cell_offsets_ = np.asarray(fit["cell_offsets_"], dtype=np.int64)
        if "levels_" in fit:
            upper = [(np.asarray(lvl["centers"], dtype=np.float64).astype(dtype),
                      np.asarray(lvl["offsets"], dtype=np.int64)) for lvl in fit["levels_"]]
        else:  # format 1: two levels
            coarse = np.asarray(fit["coarse_centers_"], dtype=np.float64).astype(dtype)
            upper = [(coarse, np.array([0, len(coarse)], dtype=np.int64))]
        self.levels_ = upper + [(self.cluster_centers_, self.cell_offsets_)]
        self.n_levels_ = len(self.levels_)
        self.coarse_centers_ = upper[-1][0]
        prices = fit.get("cluster_prices_")
        self.cluster_prices_ = None if prices is None else np.asarray(prices, dtype=np.float64)
        self.inertia_ = float(fit["inertia_"])
        self.n_iter_ = int(fit["n_iter_"])
        self.inertia_history_ = [float(v) for v in fit.get("inertia_history_", [])]
        self.cluster_sizes_ = np.asarray(fit["cluster_sizes_"], dtype=np.float64)
        self.passes_ = dict(fit["passes_"])
        self.n_passes_ = int(sum(self.passes_.values()))
        level_passes = fit.get("level_passes_")
        if level_passes is None:  # format 1: two levels
            level_passes = [{"coarse": self.passes_.get("coarse", 0)},
                            {k: v for k, v in self.passes_.items() if k != "coarse"}]
        self.level_passes_ = [dict(p) for p in level_passes]


def _label_dist_block(X, coarse, fine, offsets, n_probe, prices, with_regret, neighbors):
    if with_regret:
        labels, dist, regret = probe_labels(X, coarse, fine, offsets, n_probe, prices,
                                            with_regret=True, neighbors=neighbors)
    else:
        labels, dist = probe_labels(X, coarse, fine, offsets, n_probe, prices,
                                    neighbors=neighbors)
        regret = np.zeros(len(labels))
    return np.stack([labels.astype(np.float64), dist, regret], axis=1)


def _capped_block(X, w, used, *, coarse, fine, offsets, n_probe, prices, neighbors, cap):
    """Labels of a block that keep every cluster's weight at most ``cap``.

    Every row takes its two-level choice (prices included) while its
    cluster has room (``used`` is the weight of the blocks before, rows in
    order); a row that finds no room goes to the nearest centre, among all
    ``k``, that still has room for it (or the one with the most room when
    none has: a row heavier than every cluster's room). Returns ``(labels,
    used, inertia)``, ``used`` updated and ``inertia`` the block's weighted sum
    of squared distances.
    """
    X = np.asarray(X)
    labels, dist = probe_labels(X, coarse, fine, offsets, n_probe, prices, neighbors=neighbors)
    wt = np.ones(len(labels)) if w is None else np.asarray(w, dtype=np.float64)
    used = used.copy()
    # rows in order: keep a row while the running weight of its cluster fits
    order = np.argsort(labels, kind="stable")
    lab_sorted = labels[order]
    cum = np.cumsum(wt[order])
    starts = np.searchsorted(lab_sorted, lab_sorted, side="left")
    before = np.where(starts > 0, cum[np.maximum(starts - 1, 0)], 0.0)
    run = cum - before + used[lab_sorted]
    fits = run <= cap * (1 + 1e-12)  # counts the rows turned away too: on the safe side
    keep = np.zeros(len(labels), dtype=bool)
    keep[order[fits]] = True
    np.add.at(used, labels[keep], wt[keep])
    out = np.flatnonzero(~keep)
    if len(out):
        F = fine.astype(np.float64)
        Xo = X[out].astype(np.float64)
        D = ((Xo * Xo).sum(axis=1)[:, None] - 2.0 * Xo @ F.T + (F * F).sum(axis=1))
        for r, i in enumerate(out):
            room = cap * (1 + 1e-12) - used
            ok = room >= wt[i]
            j = int(np.argmin(np.where(ok, D[r], np.inf))) if ok.any() else int(np.argmax(room))
            labels[i] = j
            dist[i] = max(float(D[r, j]), 0.0)
            used[j] += wt[i]
    return labels, used, float(dist @ wt)


def _predict_block(X, coarse, fine, offsets, n_probe, prices, check, neighbors=None):
    if check:
        check_block(X, None)
    X = X.astype(fine.dtype, copy=False)
    return probe_labels(X, coarse, fine, offsets, n_probe, prices, neighbors=neighbors)[0]
