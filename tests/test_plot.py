"""Tests of daskmeans.plot: every figure renders to a non-trivial image."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("matplotlib")
PIL = pytest.importorskip("PIL.Image")

from daskmeans import KMeans, plot  # noqa: E402
from daskmeans.datasets import make_blobs  # noqa: E402
from daskmeans.select_k import select_k  # noqa: E402


def check_png(path, *, min_bytes=8_000, min_colours=5):
    """The file is an image of reasonable size with several distinct colours."""
    assert path.stat().st_size > min_bytes
    with PIL.open(path) as im:
        im = im.convert("RGB")
        assert im.width > 200 and im.height > 200
        colours = im.getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) >= min_colours


@pytest.fixture(scope="module")
def blobs():
    X, _ = make_blobs(6000, 5, 4, cluster_std=0.15, chunk_rows=1500, random_state=0)
    return X


@pytest.fixture(scope="module")
def model(blobs):
    return KMeans(4, random_state=0).fit(blobs)


def test_clusters_pca_projection(model, blobs, tmp_path):
    fig = plot.clusters(model, blobs, sample=2000)
    ax = fig.axes[0]
    assert ax.get_xlabel().startswith("PC1") and ax.get_ylabel().startswith("PC2")
    out = tmp_path / "clusters.png"
    fig.savefig(out)
    check_png(out)


def test_clusters_2d_on_given_axes(tmp_path):
    from matplotlib.figure import Figure

    rng = np.random.default_rng(1)
    X = np.concatenate([rng.normal(c, 0.2, (300, 2)) for c in ([0, 0], [3, 3], [0, 3])])
    km = KMeans(3, random_state=0).fit(X)
    fig = Figure()
    ax = fig.add_subplot()
    assert plot.clusters(km, X, ax=ax) is fig
    assert ax.get_xlabel() == "feature 0"
    # three clusters' colours plus stars
    out = tmp_path / "c2.png"
    fig.savefig(out)
    check_png(out)
    with pytest.raises(ValueError, match="features"):
        plot.clusters(km, np.zeros((10, 3)))


def test_convergence(model, tmp_path):
    fig = plot.convergence(model)
    line = fig.axes[0].lines[0]
    np.testing.assert_allclose(line.get_ydata(), model.inertia_history_)
    out = tmp_path / "conv.png"
    fig.savefig(out)
    check_png(out, min_bytes=5_000, min_colours=3)


def test_k_selection(blobs, tmp_path):
    res = select_k(blobs, range(2, 7), n_refs=2, ref_size=2000, random_state=0)
    fig = plot.k_selection(res)
    assert len(fig.axes) == 4
    out = tmp_path / "k.png"
    fig.savefig(out)
    check_png(out)
    from matplotlib.figure import Figure

    single = Figure()
    ax = single.add_subplot()
    assert plot.k_selection(res, ax=ax) is single
    assert len(ax.lines) >= 8


def test_animate_writes_a_gif(tmp_path):
    rng = np.random.default_rng(2)
    X = np.concatenate([rng.normal(c, 0.3, (200, 2)) for c in ([0, 0], [4, 0], [2, 3])])
    frames = plot.lloyd_frames(X, 3, random_state=0)
    assert len(frames) >= 2
    np.testing.assert_array_equal(frames[-1][0], frames[-2][0])  # converged
    out = tmp_path / "lloyd.gif"
    fig = plot.animate(X, 3, out, sample=600, fps=4)
    assert fig.axes[0].get_title().startswith("Lloyd iteration")
    with PIL.open(out) as im:
        assert im.format == "GIF"
        # pillow merges identical consecutive frames (the converged ones)
        assert len(frames) - 1 <= im.n_frames <= len(frames) + 2
    png = tmp_path / "last.png"
    fig.savefig(png)
    check_png(png)


def test_cli_plot(model, tmp_path):
    import subprocess
    import sys

    import zarr

    rng = np.random.default_rng(3)
    X = np.concatenate([rng.normal(c, 0.2, (500, 5)) for c in np.eye(5)[:4] * 3])
    zarr.create_array(store=str(tmp_path / "X.zarr"), data=X, chunks=(500, 5))
    km = KMeans(4, random_state=0).fit(X)
    km.save(tmp_path / "model.json")
    out = tmp_path / "plot.png"
    proc = subprocess.run(
        [sys.executable, "-m", "daskmeans", "plot", str(tmp_path / "model.json"),
         str(tmp_path / "X.zarr"), "--out", str(out), "--sample", "1000", "-q"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    check_png(out)
    wrong = tmp_path / "W.zarr"
    zarr.create_array(store=str(wrong), data=X[:, :3], chunks=(500, 3))
    proc = subprocess.run(
        [sys.executable, "-m", "daskmeans", "plot", str(tmp_path / "model.json"), str(wrong),
         "--out", str(out)],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 2 and "features" in proc.stderr
