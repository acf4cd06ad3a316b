"""Figures for k-means: clusters, convergence, the choice of k, and an animation.

Needs matplotlib (and pillow for :func:`animate`): ``pip install daskmeans[plot]``.
Every function returns a :class:`matplotlib.figure.Figure` and draws on ``ax``
when one is given. Figures are built without pyplot, so nothing here needs a
display or changes matplotlib's global state.

Large data are never gathered: :func:`clusters` and :func:`animate` draw a
uniform sample of the rows in one pass, and for more than two features project
it on its first two principal axes (PCA of the sample, in memory).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

__all__ = ["animate", "clusters", "convergence", "k_selection"]

_MARKER_SIZE = 6


def _mpl():
    """Import matplotlib lazily, with an actionable message when it is missing."""
    try:
        import matplotlib
        from matplotlib.figure import Figure
    except ImportError as exc:  # pragma: no cover - exercised without matplotlib only
        raise ImportError(
            "daskmeans.plot needs matplotlib; install it with "
            "'pip install daskmeans[plot]' (or 'pip install matplotlib pillow')."
        ) from exc
    return matplotlib, Figure


def _figure_and_axes(ax, figsize=(6.0, 5.0)):
    _, Figure = _mpl()
    if ax is not None:
        return ax.figure, ax
    fig = Figure(figsize=figsize, layout="constrained")
    return fig, fig.add_subplot()


def _colours(k: int) -> np.ndarray:
    """k distinct RGBA colours (tab10, tab20, then a hue wheel)."""
    matplotlib, _ = _mpl()
    if k <= 10:
        cmap, idx = matplotlib.colormaps["tab10"], np.arange(k)
        return cmap(idx)
    if k <= 20:
        return matplotlib.colormaps["tab20"](np.arange(k))
    return matplotlib.colormaps["hsv"](np.linspace(0, 1, k, endpoint=False))


# --------------------------------------------------------------------------- sampling
def sample_rows(X, size: int, random_state=0) -> np.ndarray:
    """A uniform sample of about ``size`` rows of ``X``, drawn in one pass.

    NumPy input with at most ``size`` rows is returned whole.

    Returns
    -------
    ndarray of shape (m, n_features)
    """
    from ._rng import as_seed_sequence
    from ._validation import check_array_input
    from .engine._init import sample_rows as _core_sample

    Xd, _ = check_array_input(X)
    if Xd.shape[0] <= size:
        return np.asarray(Xd.compute())
    rows, _ = _core_sample(Xd, None, size, as_seed_sequence(random_state))
    return np.asarray(rows)


def _project(S: np.ndarray, C: np.ndarray | None = None):
    """2-D coordinates of the sample (and centres), and the axis labels.

    For more than two features: PCA of the sample (centred, by SVD); the
    labels give the share of the sample's variance of every axis.
    """
    d = S.shape[1]
    if d == 1:
        rng = np.random.default_rng(0)
        jitter = rng.uniform(-0.5, 0.5, len(S))
        P = np.column_stack([S[:, 0], jitter])
        PC = None if C is None else np.column_stack([C[:, 0], np.zeros(len(C))])
        return P, PC, ("feature 0", "(jitter)")
    if d == 2:
        return S, C, ("feature 0", "feature 1")
    mean = S.mean(axis=0)
    _, sv, Vt = np.linalg.svd(S - mean, full_matrices=False)
    share = sv**2 / max(float((sv**2).sum()), np.finfo(float).tiny)
    W = Vt[:2].T
    P = (S - mean) @ W
    PC = None if C is None else (C - mean) @ W
    labels = tuple(f"PC{i + 1} ({100 * share[i]:.0f}% of variance)" for i in range(2))
    return P, PC, labels


# --------------------------------------------------------------------------- figures
def clusters(model, X, sample: int = 20_000, ax=None, *, random_state=0):
    """Scatter plot of a uniform sample of ``X`` coloured by cluster, centres as stars.

    Parameters
    ----------
    model : KMeans
        A fitted model (``cluster_centers_``).
    X : array-like, dask.array.Array, zarr.Array or path
        Data, of the model's number of features.
    sample : int, default=20_000
        About this many rows are drawn uniformly, in one pass over ``X``.
    ax : matplotlib.axes.Axes, optional
    random_state : int, default=0
        Seed of the sample.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> from daskmeans import KMeans, plot
    >>> import numpy as np
    >>> X = np.random.default_rng(0).normal(size=(500, 3))
    >>> fig = plot.clusters(KMeans(3, random_state=0).fit(X), X)
    >>> fig.savefig("clusters.png")  # doctest: +SKIP
    """
    from . import kernels as _kernels

    C = np.asarray(model.cluster_centers_)
    S = sample_rows(X, sample, random_state).astype(C.dtype, copy=False)
    if S.shape[1] != C.shape[1]:
        raise ValueError(
            f"X has {S.shape[1]} features, but the model was fitted with {C.shape[1]}."
        )
    labels = _kernels.assign(np.ascontiguousarray(S), np.ascontiguousarray(C))
    P, PC, (xlabel, ylabel) = _project(S.astype(np.float64), C.astype(np.float64))
    k = len(C)
    colours = _colours(k)
    fig, ax = _figure_and_axes(ax)
    size = max(1.0, min(20.0, 4000.0 / max(1, len(P))))
    ax.scatter(P[:, 0], P[:, 1], c=colours[labels], s=size, linewidths=0, alpha=0.6,
               rasterized=True)
    ax.scatter(PC[:, 0], PC[:, 1], marker="*", s=400, c=colours, edgecolors="black",
               linewidths=1.2, zorder=3, label="centres")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(f"k = {k} clusters ({len(P):,} sampled points)")
    ax.legend(loc="best", fontsize="small")
    return fig


def convergence(model, ax=None):
    """Inertia per Lloyd iteration (``inertia_history_``) of a fitted model.

    Returns
    -------
    matplotlib.figure.Figure
    """
    history = np.asarray(getattr(model, "inertia_history_", []), dtype=np.float64)
    if history.size == 0:
        raise ValueError("model has no inertia_history_; fit it first.")
    fig, ax = _figure_and_axes(ax, figsize=(6.0, 4.0))
    it = np.arange(1, len(history) + 1)
    ax.plot(it, history, marker="o", ms=_MARKER_SIZE, color="tab:blue",
            label="inertia of the iteration's centres")
    final = getattr(model, "inertia_", None)
    if final is not None:
        ax.axhline(final, color="tab:red", ls="--", lw=1, label=f"final inertia {final:.4g}")
    if history.min() > 0 and history.max() / history.min() > 20:
        ax.set_yscale("log")
    ax.set_xlabel("Lloyd iteration")
    ax.set_ylabel("inertia (sum of squared distances)")
    ax.set_title(f"Convergence: {len(history)} iterations")
    ax.legend(fontsize="small")
    return fig


_TITLES = {
    "elbow": "Elbow (inertia; max distance below the chord)",
    "gap": "Gap statistic (smallest k with Gap(k) >= Gap(k+1) - s(k+1))",
    "fk": "f(K) (Pham et al. 2005; minimum)",
    "silhouette": "Simplified silhouette (maximum)",
}


def k_selection(result, ax=None):
    """Every method's curve over k, with the chosen k marked.

    Parameters
    ----------
    result : SelectKResult
        From :func:`daskmeans.select_k`.
    ax : matplotlib.axes.Axes or sequence of Axes, optional
        One Axes per method (in ``result.scores_`` order), or a single Axes on
        which every curve is drawn scaled to [0, 1].

    Returns
    -------
    matplotlib.figure.Figure
    """
    _, Figure = _mpl()
    methods = list(result.scores_)
    ks = np.asarray(result.ks_)
    if ax is not None and not isinstance(ax, Sequence | np.ndarray):
        return _k_selection_single(result, ax)
    if ax is None:
        n = len(methods)
        fig = Figure(figsize=(4.2 * n, 3.8), layout="constrained")
        axes = [fig.add_subplot(1, n, i + 1) for i in range(n)]
    else:
        axes = list(np.ravel(ax))
        if len(axes) != len(methods):
            raise ValueError(f"ax: expected {len(methods)} Axes (one per method), got {len(axes)}.")
        fig = axes[0].figure
    for a, m in zip(axes, methods, strict=True):
        best = result.best_k_[m]
        i = int(np.flatnonzero(ks == best)[0])
        if m == "elbow":
            y = np.asarray(result.inertia_)
            a.plot(ks, y, marker="o", ms=_MARKER_SIZE, color="tab:blue")
            a.plot([ks[0], ks[-1]], [y[0], y[-1]], ls="--", color="gray", lw=1, label="chord")
            a.set_ylabel("inertia")
        elif m == "gap":
            y = np.asarray(result.scores_[m])
            a.errorbar(ks, y, yerr=result.gap_sd_, marker="o", ms=_MARKER_SIZE, capsize=3,
                       color="tab:blue", label="Gap(k) ± s(k)")
            a.set_ylabel("Gap(k)")
        elif m == "fk":
            y = np.asarray(result.scores_[m])
            a.plot(ks, y, marker="o", ms=_MARKER_SIZE, color="tab:blue")
            a.axhline(0.85, ls="--", color="gray", lw=1, label="0.85")
            a.set_ylabel("f(K)")
        else:
            y = np.asarray(result.scores_[m])
            a.plot(ks, y, marker="o", ms=_MARKER_SIZE, color="tab:blue")
            a.set_ylabel("mean simplified silhouette")
        a.plot([ks[i]], [y[i]], marker="*", ms=20, color="tab:red", mec="black", zorder=3,
               label=f"chosen k = {best}")
        a.axvline(best, color="tab:red", lw=1, alpha=0.4)
        a.set_xlabel("k (number of clusters)")
        a.set_xticks(ks)
        a.set_title(_TITLES[m], fontsize="small")
        a.legend(fontsize="small")
    return fig


def _k_selection_single(result, ax):
    ks = np.asarray(result.ks_)
    fig = ax.figure
    for j, (m, y) in enumerate(result.scores_.items()):
        y = np.asarray(result.inertia_ if m == "elbow" else y, dtype=np.float64)
        lo, hi = np.nanmin(y), np.nanmax(y)
        ys = (y - lo) / (hi - lo) if hi > lo else np.zeros_like(y)
        colour = f"C{j}"
        ax.plot(ks, ys, marker="o", ms=_MARKER_SIZE, color=colour,
                label=f"{m} (chosen k = {result.best_k_[m]})")
        i = int(np.flatnonzero(ks == result.best_k_[m])[0])
        ax.plot([ks[i]], [ys[i]], marker="*", ms=18, color=colour, mec="black", zorder=3)
    ax.set_xlabel("k (number of clusters)")
    ax.set_ylabel("score, scaled to [0, 1]")
    ax.set_xticks(ks)
    ax.set_title("Choosing k")
    ax.legend(fontsize="small")
    return fig


# --------------------------------------------------------------------------- animation
def lloyd_frames(S: np.ndarray, n_clusters: int, *, init: str = "random", max_iter: int = 20,
                 random_state=0) -> list[tuple[np.ndarray, np.ndarray]]:
    """The centres and labels of every Lloyd iteration on an in-memory sample.

    Uses the library's kernels (:func:`daskmeans.kernels.lloyd_partial` and
    the empty-cluster handling of :func:`daskmeans.engine._lloyd.update_centers`).

    Returns
    -------
    list of (centers (k, d), labels (m,))
        The initial centres first, then one entry per iteration, until the
        centres stop moving or ``max_iter``.
    """
    from . import kernels as _kernels
    from ._rng import as_seed_sequence, block_rng, purpose_key
    from .engine._init import kmeans_plusplus
    from .engine._lloyd import update_centers

    rng = block_rng(as_seed_sequence(random_state), purpose_key("animate"))
    S = np.ascontiguousarray(S)
    if init == "random":
        C = S[rng.choice(len(S), n_clusters, replace=False)].copy()
    elif init == "k-means++":
        C = kmeans_plusplus(S, None, n_clusters, rng)
    else:
        raise ValueError(f"init must be 'random' or 'k-means++', got {init!r}.")
    frames = [(C.copy(), _kernels.assign(S, C))]
    for _ in range(max_iter):
        res = _kernels.lloyd_partial(S, C, n_far=n_clusters)
        new, _, _ = update_centers(C, res["sums"], res["counts"], res["far"], 0, 0)
        moved = not np.array_equal(new, C)
        C = new
        frames.append((C.copy(), _kernels.assign(S, C)))
        if not moved:
            break
    return frames


def animate(X, n_clusters: int, path, *, sample: int = 2_000, max_iter: int = 20,
            init: str = "random", fps: float = 2.0, random_state=0, figsize=(5.0, 5.0)):
    """A GIF of the Lloyd iterations on a 2-D sample: coloured dots, moving stars.

    Parameters
    ----------
    X : array-like, dask.array.Array, zarr.Array or path
        Data; more than two features are projected on the sample's first two
        principal axes (the iterations run in the original space).
    n_clusters : int
    path : str or os.PathLike
        Where to write the GIF (pillow writer).
    sample : int, default=2_000
        About this many rows, drawn uniformly in one pass.
    max_iter : int, default=20
    init : {"random", "k-means++"}, default="random"
        Random rows make the classic picture of centres travelling far.
    fps : float, default=2.0
    random_state : int, default=0

    Returns
    -------
    matplotlib.figure.Figure
        The figure of the last frame.
    """
    _mpl()
    from matplotlib.animation import FuncAnimation, PillowWriter

    S = sample_rows(X, sample, random_state)
    S = S.astype(np.float64 if S.dtype != np.float32 else np.float32)
    frames = lloyd_frames(S, n_clusters, init=init, max_iter=max_iter,
                          random_state=random_state)
    centres_all = np.stack([c for c, _ in frames])  # (n_frames, k, d)
    P, _, (xlabel, ylabel) = _project(S.astype(np.float64))
    flat = centres_all.reshape(-1, S.shape[1]).astype(np.float64)
    if S.shape[1] > 2:
        mean = S.mean(axis=0)
        _, _, Vt = np.linalg.svd(S - mean, full_matrices=False)
        path_xy = ((flat - mean) @ Vt[:2].T).reshape(len(frames), n_clusters, 2)
    elif S.shape[1] == 2:
        path_xy = flat.reshape(len(frames), n_clusters, 2)
    else:
        path_xy = np.stack([flat[:, 0], np.zeros(len(flat))], 1).reshape(
            len(frames), n_clusters, 2)
    colours = _colours(n_clusters)
    fig, ax = _figure_and_axes(None, figsize=figsize)
    dots = ax.scatter(P[:, 0], P[:, 1], c=colours[frames[0][1]], s=8, linewidths=0, alpha=0.7)
    stars = ax.scatter(path_xy[0, :, 0], path_xy[0, :, 1], marker="*", s=400, c=colours,
                       edgecolors="black", linewidths=1.2, zorder=3)
    trails = [ax.plot([], [], color=colours[j], lw=1.5, zorder=2)[0] for j in range(n_clusters)]
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    title = ax.set_title("")

    def draw(t):
        C_xy = path_xy[t]
        dots.set_color(colours[frames[t][1]])
        stars.set_offsets(C_xy)
        for j, line in enumerate(trails):
            line.set_data(path_xy[: t + 1, j, 0], path_xy[: t + 1, j, 1])
        title.set_text("initial centres" if t == 0 else f"Lloyd iteration {t}")
        return [dots, stars, title, *trails]

    # hold the last frame a little longer
    order = list(range(len(frames))) + [len(frames) - 1] * 2
    anim = FuncAnimation(fig, draw, frames=order, blit=False)
    anim.save(os.fspath(path), writer=PillowWriter(fps=fps))
    draw(len(frames) - 1)
    return fig
