"""The Lloyd iteration on Dask arrays: one pass over the data per iteration.

Each iteration computes one :func:`daskmeans.engine._graph.block_reduce` graph (built
once per fit by a :class:`daskmeans.engine._graph.PassRunner` under dask's local
schedulers, with only the centres swapped between iterations): every row
block goes through :func:`daskmeans.kernels.lloyd_partial` (the
``kmeans-partial`` tasks), the partial sums, weights and inertia are combined
by a tree (``kmeans-combine``), and the client receives only k x d numbers per
group of centres. Several groups of centres (``n_init`` candidates, or
different values of k) iterate in the same passes; a group that has converged
leaves the stack.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import dask.array as da
import numpy as np

from .. import kernels as _kernels
from .._errors import InvalidInputError
from ._graph import PassRunner, block_reduce, compute_passes, map_reduce_row_blocks
from ._prep import apply_prep, normalize_rows

__all__ = [
    "LloydState", "apply_final", "check_block", "final_pass", "lloyd", "lloyd_numpy",
    "pass_consts", "pass_runner", "stats_pass", "update_centers",
]


@dataclass
class LloydState:
    """Everything needed to continue (or resume) a Lloyd run.

    Attributes
    ----------
    centers : list of ndarray of shape (k_g, d)
        Current centres of every group, in the working dtype of X.
    n_iter : ndarray of shape (n_groups,), int64
        Iterations done by every group.
    active : ndarray of shape (n_groups,), bool
        Groups still iterating.
    strict : ndarray of shape (n_groups,), bool
        Groups whose centres stopped moving exactly (their last inertia is final).
    inertia : ndarray of shape (n_groups,), float64
        Inertia of the centres used in the last pass of every group.
    history : list of list of float
        Per group, the inertia of every iteration's centres.
    tol_abs : float or None
        Absolute tolerance on the squared centre shift, once known.
    n_passes : int
        Passes over the data made so far (initialisation included).
    sizes : list of ndarray of shape (k_g,)
        Total weight per cluster in the last pass of every group.
    n_omitted : int
        Rows skipped for holding NaN (``nan_policy="omit"``) in the last pass.
    prep_stats : dict or None
        ``{"mean": (d,), "scale": (d,)}`` of ``standardize=True``, so that a
        resumed fit works in the same units.
    """

    centers: list
    n_iter: np.ndarray
    active: np.ndarray
    strict: np.ndarray
    inertia: np.ndarray
    history: list
    tol_abs: float | None = None
    n_passes: int = 0
    sizes: list = field(default_factory=list)
    n_omitted: int = 0
    prep_stats: dict | None = None

    @classmethod
    def start(cls, centers: list, *, tol_abs: float | None = None, n_passes: int = 0):
        """A fresh state at iteration 0 from initial centres."""
        g = len(centers)
        return cls(
            centers=[np.array(c, copy=True) for c in centers],
            n_iter=np.zeros(g, dtype=np.int64),
            active=np.ones(g, dtype=bool),
            strict=np.zeros(g, dtype=bool),
            inertia=np.full(g, np.nan),
            history=[[] for _ in range(g)],
            tol_abs=tol_abs,
            n_passes=n_passes,
            sizes=[np.zeros(len(c)) for c in centers],
        )

    def advance(self, g: int, new: np.ndarray, inertia, sizes, max_iter: int) -> float:
        """Record an iteration of group ``g`` (its new centres, inertia and sizes)
        and stop the group once converged; return the squared shift of its centres."""
        shift = float(((new.astype(np.float64) - self.centers[g]) ** 2).sum())
        self.inertia[g] = inertia
        self.history[g].append(float(inertia))
        self.sizes[g] = sizes
        self.n_iter[g] += 1
        self.centers[g] = new
        self.stop_if_done(g, shift, max_iter)
        return shift

    def stop_if_done(self, g: int, shift: float, max_iter: int) -> None:
        """Stop group ``g`` after an iteration whose squared shift was ``shift``:
        strictly converged at zero, else at ``tol_abs`` or ``max_iter``."""
        if shift == 0.0:
            self.strict[g] = True
            self.active[g] = False
        elif shift <= self.tol_abs or self.n_iter[g] >= max_iter:
            self.active[g] = False


_NOT_FINITE = "X contains NaN or infinity; expected finite values in every row."


def check_block(X: np.ndarray, w: np.ndarray | None, *, allow_nan: bool = False,
                data: bool = True) -> None:
    """Raise ValueError if a block has non-finite data or invalid weights.

    With ``allow_nan`` (``nan_policy="omit"``) NaN passes but infinity does not.
    With ``data=False`` only the weights are checked.
    """
    if data and getattr(X, "format", None) is not None and hasattr(X, "tocsr"):
        X = X.data  # scipy.sparse block: its stored values (implicit zeros are finite)
    if data and allow_nan:
        if np.isinf(X).any():
            raise InvalidInputError(
                "X contains infinity; expected finite values or NaN (nan_policy='omit')."
            )
    elif data and not np.isfinite(X).all():
        raise InvalidInputError(_NOT_FINITE)
    if w is not None:
        if not np.isfinite(w).all():
            raise InvalidInputError(
                "sample_weight contains NaN or infinity; expected finite values."
            )
        if (w < 0).any():
            raise InvalidInputError("sample_weight must be >= 0; found negative values.")


def prepare_block(X, w, prep, check):
    """Check a block (first pass of lazy input) and apply the row preprocessing.

    Returns ``(X, w, valid)`` as :func:`daskmeans.engine._prep.apply_prep`.
    """
    if check:
        check_block(X, w, allow_nan=prep is not None and prep.mask_nan)
    return apply_prep(prep, X, w)


def _lloyd_chunk(X, w, index, *, centers, bounds, n_far, check, with_moments, prep=None,
                 check_sums=False, plan=None):
    deferred = check and check_sums and prep is None
    if deferred:
        # X is checked on the pass's sums (see check_pass): no second read of the block
        check_block(X, w, data=False)
        check = False
    X, w, valid = prepare_block(X, w, prep, check)
    # non-finite data is reported by check_pass, not by NumPy's warnings on the way
    with np.errstate(all="ignore") if deferred else contextlib.nullcontext():
        out = _kernels.lloyd_partial(
            X, centers, w, bounds=bounds, n_far=n_far,
            with_moments=with_moments and valid is None, plan=plan,
        )
    if prep is not None:
        if with_moments and valid is not None:
            out["moments"] = _kernels.moments(X[valid], plan=plan)
        if prep.normalize:
            # unit rows and centres: ||x - c||^2 / 2 = 1 - cos(x, c)
            out["inertia"] = out["inertia"] * 0.5
        out["n_omitted"] = 0 if valid is None else int(np.count_nonzero(~valid))
    return out


def _combine_partials(parts):
    out = _kernels.combine_partials(parts)
    if "n_omitted" in parts[0]:
        out["n_omitted"] = sum(p["n_omitted"] for p in parts)
    return out


def _stats_chunk(X, w, index, *, check, prep=None):
    X, w, valid = prepare_block(X, w, prep, check)
    wsum = 0.0 if w is None else float(w.sum())
    mom = _kernels.moments(X if valid is None else X[valid])
    n_omitted = 0 if valid is None else int(np.count_nonzero(~valid))
    return {"moments": mom, "wsum": wsum, "n_omitted": n_omitted}


def _stats_combine(parts):
    return {
        "moments": _kernels.combine_moments([p["moments"] for p in parts]),
        "wsum": sum(p["wsum"] for p in parts),
        "n_omitted": sum(p.get("n_omitted", 0) for p in parts),
    }


def stats_pass(X: da.Array, weights, *, check: bool, split_every=None, prep=None):
    """A pass computing the per-feature variance (and total weight) only.

    With ``prep``, the moments are those of the preprocessed rows that are
    not omitted.
    """
    consts = {"check": check}
    if prep is not None:
        consts["prep"] = prep
    return block_reduce(
        X, weights, _stats_chunk, _stats_combine, name="kmeans-stats",
        split_every=split_every, consts=consts,
    )


def partial_pass(
    X: da.Array,
    weights,
    centers: list,
    *,
    n_far: int = 0,
    check: bool = False,
    with_moments: bool = False,
    split_every=None,
    name: str = "kmeans",
    prep=None,
    plan=None,
):
    """The graph of one Lloyd pass for a list of groups of centres.

    With ``prep`` (a :class:`daskmeans.engine._prep.Prep`), every block is
    preprocessed before the kernel and ``centers`` live in the preprocessed
    space; the result also holds ``n_omitted``, and for cosine the inertia is
    the sum of ``1 - cos``.
    """
    return block_reduce(
        X, weights, _lloyd_chunk, _combine_for(prep), name=name, split_every=split_every,
        consts=pass_consts(centers, n_far=n_far, check=check, with_moments=with_moments,
                           prep=prep, plan=plan),
    )


def _combine_for(prep):
    return _kernels.combine_partials if prep is None else _combine_partials


def check_pass(res: dict) -> None:
    """Raise ValueError if a pass made with ``check_sums`` met NaN or infinity in X.

    Every value of X is added into the float64 per-cluster sums (weights of 0
    included: ``0 * nan`` is NaN), so they are finite exactly when the block
    values are (for float64 data short of overflowing 1e308). Checking them
    replaces a second read of every block in the first pass of lazy input:
    ``np.isfinite(X).all()`` per block cost 9 to 13 ms of a 26 to 55 ms pass
    (2,000,000 x 32 rows, two threads).
    """
    if not np.isfinite(res["sums"]).all():
        raise InvalidInputError(_NOT_FINITE)


def pass_consts(centers: list, *, n_far: int = 0, check: bool = False,
                with_moments: bool = False, prep=None, check_sums: bool = False,
                plan=None) -> dict:
    """The constants of a Lloyd pass (see :func:`partial_pass`).

    With ``check_sums`` (and no ``prep``), ``check`` validates only the
    weights in the blocks; the caller must call :func:`check_pass` on the result.
    ``plan`` (a :class:`daskmeans.kernels.KernelPlan`) is the kernel path of
    every block; None: each block chooses (see :func:`fit_plan`).
    """
    stacked = np.concatenate(centers, axis=0) if len(centers) > 1 else centers[0]
    bounds = np.concatenate(([0], np.cumsum([len(c) for c in centers]))).astype(np.intp)
    consts = {
        "centers": np.ascontiguousarray(stacked),
        "bounds": bounds,
        "n_far": n_far,
        "check": check,
        "with_moments": with_moments,
    }
    if prep is not None:
        consts["prep"] = prep
    if check_sums:
        consts["check_sums"] = True
    if plan is not None:
        consts["plan"] = plan
    return consts


def fit_plan(X, centers: list, verbose: int = 0):
    """The kernel plan of a fit's passes, chosen once from the whole array
    (:func:`daskmeans.kernels.choose_plan`), printed when ``verbose``."""
    n_centers = sum(len(c) for c in centers)
    plan = _kernels.choose_plan(X.dtype, n_centers, X.shape[1], X.shape[0])
    if verbose:
        print(f"[daskmeans] kernels: {plan.describe(X.dtype, n_centers)}")
    return plan


def pass_runner(X: da.Array, weights, *, split_every=None, name: str = "kmeans",
                prep=None) -> PassRunner:
    """Lloyd passes over ``X`` built once: call it with :func:`pass_consts`."""
    return PassRunner(X, weights, _lloyd_chunk, _combine_for(prep), name=name,
                      split_every=split_every)


def update_centers(
    old: np.ndarray, sums: np.ndarray, counts: np.ndarray, far: dict | None, group: int,
    offset: int,
) -> tuple[np.ndarray, np.ndarray, int]:
    """New centres from partial sums, relocating empty clusters.

    Empty clusters move to the rows farthest from their centres (as in
    scikit-learn), taking those rows out of their previous clusters.

    Parameters
    ----------
    old : ndarray of shape (k, d)
        Centres used in the pass.
    sums : ndarray of shape (k, d), float64
    counts : ndarray of shape (k,), float64
    far : dict or None
        The ``far`` entry of the combined pass (rows sorted by decreasing
        distance, labels as global indices).
    group : int
        Index of this group in ``far``.
    offset : int
        Global index of this group's first centre.

    Returns
    -------
    centers : ndarray of shape (k, d), dtype of ``old``
    counts : ndarray of shape (k,), weights after relocation
    n_empty : int
        Clusters that stayed empty (fewer distinct points than clusters).
    """
    sums = sums.copy()
    counts = counts.copy()
    empty = np.flatnonzero(counts == 0)
    if len(empty) and far is not None:
        dist = far["dist"][group]
        usable = int(np.count_nonzero(dist > 0))
        for j, new_id in enumerate(empty[:usable]):
            row = far["rows"][group, j].astype(np.float64)
            wt = far["weights"][group, j]
            old_id = far["labels"][group, j] - offset
            sums[old_id] -= row * wt
            counts[old_id] -= wt
            sums[new_id] = row * wt
            counts[new_id] = wt
    nonempty = counts > 0
    new = old.astype(np.float64, copy=True)
    new[nonempty] = sums[nonempty] / counts[nonempty, None]
    return new.astype(old.dtype), counts, int(np.count_nonzero(~nonempty))


def _tol_from_moments(mom, tol: float) -> float:
    n, _, m2 = mom
    if tol == 0 or n == 0:
        return 0.0
    return float(np.mean(m2 / n) * tol)


#: Whether :func:`lloyd` and :func:`lloyd_numpy` hand the iterations over one
#: in-memory block to :func:`daskmeans.kernels.lloyd_block` where it applies.
BLOCK_LOOP = True


def _block_iterations(run_pass: PassRunner, state: LloydState, g: int, plan,
                      max_iter: int) -> str | None:
    """Group ``g``'s remaining iterations in one compiled call, when the passes read
    a single in-memory block that the C kernels take; recorded in ``state`` as
    :meth:`LloydState.advance` records them. Returns the loop's status (``"empty"``:
    stopped before a pass that empties a cluster), or None when it did not run."""
    block = run_pass.single_block()
    if block is None:
        return None
    Xb, wb = block
    out = _kernels.lloyd_block(Xb, state.centers[g], wb, plan=plan, tol=state.tol_abs,
                               max_iter=max_iter - int(state.n_iter[g]))
    if out is None:
        return None
    m = out["n_iter"]
    if m == 0:
        return out["status"]
    state.n_passes += m
    state.history[g].extend(float(v) for v in out["inertia"])
    state.inertia[g] = out["inertia"][-1]
    state.sizes[g] = out["counts"]
    state.n_iter[g] += m
    state.centers[g] = out["centers"]
    state.stop_if_done(g, float(out["shift"][-1]), max_iter)
    return out["status"]


def lloyd(
    X: da.Array,
    weights,
    state: LloydState,
    *,
    max_iter: int,
    tol: float,
    split_every=None,
    check_first: bool = False,
    callback: Callable[[dict], None] | None = None,
    on_iteration: Callable[[LloydState], None] | None = None,
    verbose: int = 0,
    prep=None,
    plan=None,
) -> LloydState:
    """Run Lloyd iterations from ``state`` until every group has converged.

    Convergence follows scikit-learn: a group stops when the total squared
    shift of its centres is at most ``tol`` times the mean per-feature
    variance of X, or after ``max_iter`` iterations. The variance comes from
    the first pass (shared with its Lloyd work) unless ``state.tol_abs`` is
    already known. A group whose centres did not move at all has converged
    strictly: its last inertia is final. Other groups get one more pass at
    the end to compute the inertia of their final centres.

    The passes skip the search for the farthest rows (a tenth of a pass's
    time at k=16) until a cluster comes out empty; that pass is then done
    again with them, to relocate the cluster as scikit-learn does, and they
    stay on for the rest of the run.

    Parameters
    ----------
    X : dask.array.Array of shape (n, d)
    weights : dask.array.Array of shape (n,) or None
    state : LloydState
        Modified in place and returned.
    max_iter, tol : int, float
    split_every : int, optional
    check_first : bool
        Validate data and weights in the first pass (for lazy inputs).
    callback : callable, optional
        Called with an event dict after every iteration.
    on_iteration : callable, optional
        Called with the state after every iteration (checkpoints).
    verbose : int
    prep : daskmeans.engine._prep.Prep, optional
        Row preprocessing applied to every block; with ``prep.normalize``
        (cosine) the centres are renormalised after every update.
    plan : daskmeans.kernels.KernelPlan, optional
        The kernel path of every pass (default: :func:`fit_plan`).

    Returns
    -------
    LloydState
    """
    if plan is None:
        plan = fit_plan(X, state.centers, verbose)
    check = check_first
    if state.tol_abs is None and tol == 0:
        state.tol_abs = 0.0  # no variance needed: keep the first pass as light as the others
    with_far = False
    run_pass = pass_runner(X, weights, split_every=split_every, prep=prep)
    # one in-memory block, nothing to report between iterations: the C loop may
    # run the iterations (bitwise the same), until a cluster comes out empty
    block_loop = (BLOCK_LOOP and prep is None and callback is None and on_iteration is None
                  and not verbose)
    while state.active.any():
        idx = np.flatnonzero(state.active)
        if block_loop and not check and state.tol_abs is not None and len(idx) == 1:
            status = _block_iterations(run_pass, state, int(idx[0]), plan, max_iter)
            block_loop = status not in (None, "empty")
            if status is not None:
                continue
        centers = [state.centers[g] for g in idx]
        need_moments = state.tol_abs is None
        n_far = max(len(c) for c in centers)
        redo = True
        while redo:
            res = run_pass(pass_consts(centers, n_far=n_far if with_far else 0, check=check,
                                       with_moments=need_moments, prep=prep, check_sums=True,
                                       plan=plan))
            if check and prep is None:
                check_pass(res)
            check = False
            state.n_passes += 1
            # an empty cluster needs the farthest rows to relocate it: redo the
            # pass with them, and keep them from now on (this data empties clusters)
            redo = not with_far and bool((res["counts"] == 0).any())
            with_far = with_far or redo
        if need_moments:
            state.tol_abs = _tol_from_moments(res["moments"], tol)
        state.n_omitted = int(res.get("n_omitted", 0))
        offset = 0
        shifts = []
        for j, g in enumerate(idx):
            k = len(state.centers[g])
            sl = slice(offset, offset + k)
            new, sizes, _ = update_centers(
                state.centers[g], res["sums"][sl], res["counts"][sl], res.get("far"), j, offset
            )
            if prep is not None and prep.normalize:
                new = normalize_rows(new, old=state.centers[g])
            shifts.append(state.advance(g, new, res["inertia"][j], sizes, max_iter))
            offset += k
        it = int(state.n_iter[idx].max())
        best = int(idx[np.argmin(state.inertia[idx])])
        if verbose:
            print(
                f"[daskmeans] iteration {it}: inertia {state.inertia[best]:.6g}, "
                f"shift {max(shifts):.3g} (tol {state.tol_abs:.3g}), "
                f"{int(state.active.sum())} of {len(state.active)} candidate(s) active"
            )
        if on_iteration is not None:
            on_iteration(state)
        if callback is not None:
            callback(
                {
                    "phase": "lloyd",
                    "iteration": it,
                    "max_iter": max_iter,
                    "inertia": float(state.inertia[best]),
                    "shift": float(max(shifts)),
                    "n_passes": state.n_passes,
                }
            )
    return state


def finalize(X: da.Array, weights, state: LloydState, *, split_every=None,
             prep=None, plan=None) -> LloydState:
    """One more pass for the groups whose last inertia is not that of their final centres."""
    todo = np.flatnonzero(~state.strict)
    if len(todo) == 0:
        return state
    if plan is None:
        plan = fit_plan(X, state.centers)
    graph = partial_pass(X, weights, [state.centers[g] for g in todo], split_every=split_every,
                         name="kmeans-inertia", prep=prep, plan=plan)
    (res,) = compute_passes(graph)
    return apply_final(state, todo, res)


def apply_final(state: LloydState, todo, res: dict) -> LloydState:
    """Set the inertia and sizes of the groups ``todo`` from the pass result ``res``
    (of :func:`finalize` or :func:`final_pass`) and count the pass."""
    state.n_passes += 1
    state.n_omitted = int(res.get("n_omitted", state.n_omitted))
    offset = 0
    for j, g in enumerate(todo):
        k = len(state.centers[g])
        state.inertia[g] = res["inertia"][j]
        state.sizes[g] = res["counts"][offset : offset + k]
        offset += k
    return state


def _labelled_chunk(X, w, index, *, label, **consts):
    """``(labels, partial)`` of one block: ``label = (func, args, kwargs)`` gives
    ``func(X, *args, **kwargs)``, the partial is :func:`_lloyd_chunk`'s."""
    func, args, kwargs = label
    return func(X, *args, **kwargs), _lloyd_chunk(X, w, index, **consts)


def final_pass(X: da.Array, weights, centers: np.ndarray, label: tuple, *,
               split_every=None, prep=None, plan=None, name: str = "kmeans-final"):
    """The labels of every row and :func:`finalize`'s pass for one group, in one read.

    ``label`` is ``(func, args, kwargs)``: the labels of a block are
    ``func(block, *args, **kwargs)`` (the estimators' prediction function, so
    that they are those of ``predict``). The pass result is bitwise that of
    :func:`partial_pass` on ``[centers]`` (same kernel, same tree).

    Returns
    -------
    labels : dask.array.Array of int64, shape (n,)
    partial : dask.delayed.Delayed
        The combined pass result, for :func:`apply_final`. Computed together
        with ``labels`` (written by a store computed with it), every block is
        read once.
    """
    consts = pass_consts([centers], prep=prep, plan=plan)
    consts["label"] = label
    return map_reduce_row_blocks(X, weights, _labelled_chunk, _combine_for(prep), name=name,
                                 dtype=np.int64, split_every=split_every, consts=consts)


def lloyd_numpy(
    X: np.ndarray,
    weights: np.ndarray | None,
    centers: np.ndarray,
    *,
    max_iter: int = 300,
    tol_abs: float = 0.0,
    normalize: bool = False,
    plan=None,
) -> tuple[np.ndarray, float, int]:
    """Weighted Lloyd on an in-memory array (used on k-means|| candidates).

    With ``normalize`` (cosine), centres are renormalised after every update
    (rows of ``X`` must already have unit norm); the inertia stays the
    squared Euclidean one. ``plan``: the kernel plan (default: chosen for ``X``).

    Returns
    -------
    centers : ndarray of shape (k, d)
    inertia : float
    n_iter : int
    """
    C = centers
    strict = False
    n_iter = 0
    compiled = BLOCK_LOOP and not normalize
    while n_iter < max_iter:
        if compiled:  # the C loop, until a pass empties a cluster
            out = _kernels.lloyd_block(X, C, weights, max_iter=max_iter - n_iter,
                                       tol=tol_abs, plan=plan)
            compiled = out is not None
            if out is not None and out["n_iter"]:
                n_iter += out["n_iter"]
                C = out["centers"]
                if out["status"] == "strict":
                    return C, float(out["inertia"][-1]), n_iter
                if out["status"] != "empty":
                    break
            if n_iter >= max_iter:
                break
        n_iter += 1
        res = _kernels.lloyd_partial(X, C, weights, n_far=len(C), plan=plan)
        new, _, _ = update_centers(C, res["sums"], res["counts"], res["far"], 0, 0)
        if normalize:
            new = normalize_rows(new, old=C)
        shift = float(((new.astype(np.float64) - C) ** 2).sum())
        C = new
        if shift == 0.0:
            strict = True
            break
        if shift <= tol_abs:
            break
    if strict:
        inertia = float(res["inertia"][0])
    else:
        inertia = float(_kernels.lloyd_partial(X, C, weights, plan=plan)["inertia"][0])
    return C, inertia, n_iter


def warn_if_degenerate(sizes: np.ndarray, n_clusters: int) -> None:
    """Warn like scikit-learn when fewer than k clusters are non-empty."""
    distinct = int(np.count_nonzero(sizes > 0))
    if distinct < n_clusters:
        from .._compat import convergence_warning

        warnings.warn(
            f"Number of distinct clusters ({distinct}) found smaller than n_clusters "
            f"({n_clusters}). Possibly due to duplicate points in X.",
            convergence_warning(),
            stacklevel=3,
        )
