"""Colour quantisation: the pixels of a photograph clustered into 16 colours.

Every pixel is a point in RGB space; k-means with k = 16 finds a palette of
16 colours and every pixel is replaced by the nearest one. The image is
scikit-learn's bundled sample ``china.jpg`` (427 x 640 pixels).

Run ``python examples/colour_quantisation.py [OUTPUT_DIR]`` (needs scikit-learn).
"""

from __future__ import annotations

import sys
from pathlib import Path

import dask.array as da
import numpy as np

from daskmeans import KMeans


def main(out="colour-output", *, n_colours: int = 16, step: int = 1, seed: int = 0) -> dict:
    """Quantise the image; ``step`` > 1 keeps every step-th row and column (faster)."""
    from sklearn.datasets import load_sample_image

    image = load_sample_image("china.jpg")[::step, ::step]
    h, w, _ = image.shape
    pixels = da.from_array(image.reshape(-1, 3).astype(np.float32) / 255, chunks=(65_536, 3))
    model = KMeans(n_colours, init="k-means++", random_state=seed).fit(pixels)
    labels = np.asarray(model.labels_.compute())
    palette = model.cluster_centers_
    quantised = palette[labels].reshape(h, w, 3)
    before = len(np.unique(image.reshape(-1, 3), axis=0))
    after = len(np.unique(labels))
    mse = float(np.mean((quantised - image / 255.0) ** 2))
    print(f"colours before: {before}; after: {after}; mean squared error {mse:.5f}")
    print(f"{model.n_passes_} passes over {h * w} pixels")

    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.2), layout="constrained")
    a, b = fig.subplots(1, 2)
    a.imshow(image)
    a.set_title(f"original ({before:,} colours)")
    b.imshow(np.clip(quantised, 0, 1))
    b.set_title(f"k-means, {n_colours} colours")
    for ax in (a, b):
        ax.set_axis_off()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    fig.savefig(out / "colour_quantisation.png", dpi=90)
    print(f"figure in {out / 'colour_quantisation.png'}")
    return {"colours_before": before, "colours_after": after, "mse": mse}


if __name__ == "__main__":
    main(*sys.argv[1:2])
