"""Cluster a satellite-like data cube with a land mask, and map the clusters.

A synthetic (time, y, x, band) reflectance cube is written with xarray to Zarr,
with NaN over land (the mask). ``daskmeans.xarray.fit_predict`` clusters every
(time, y, x) pixel by its spectrum, skipping the masked pixels
(``nan_policy="omit"``), and returns a lazy label map with the cube's
coordinates, -1 on land. The map is written chunk by chunk to Zarr and
plotted with the land left blank.

Run::

    python examples/cube_xarray.py OUT_DIR
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import xarray as xr

import daskmeans.xarray as dkx
from daskmeans import KMeans

BANDS = ["blue", "green", "red", "nir"]
#: Mean reflectance of four surface classes (water, forest, crop, bare soil).
SPECTRA = np.array(
    [[0.08, 0.06, 0.04, 0.02], [0.03, 0.06, 0.03, 0.35], [0.05, 0.09, 0.07, 0.25],
     [0.12, 0.16, 0.20, 0.28]]
)


def make_cube(size=(4, 120, 160), seed=0) -> xr.DataArray:
    """A (time, y, x, band) cube: four surface classes in patches, NaN over a land mask."""
    n_time, ny, nx = size
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:ny, 0:nx]
    # surface classes in smooth patches
    field = np.sin(xx / nx * 6 + rng.uniform(0, 6)) + np.cos(yy / ny * 5 + rng.uniform(0, 6))
    cls = np.digitize(field, np.quantile(field, [0.25, 0.5, 0.75]))
    values = SPECTRA[cls][None] + rng.normal(scale=0.01, size=(n_time, ny, nx, len(BANDS)))
    land = (yy - 0.3 * ny) ** 2 + (xx - 0.7 * nx) ** 2 < (0.25 * min(ny, nx)) ** 2
    values[:, land, :] = np.nan
    return xr.DataArray(
        values.astype(np.float32), dims=("time", "y", "x", "band"), name="reflectance",
        coords={
            "time": np.datetime64("2024-01-01") + np.arange(n_time) * np.timedelta64(16, "D"),
            "y": 5_000_000.0 - 30.0 * np.arange(ny), "x": 400_000.0 + 30.0 * np.arange(nx),
            "band": BANDS,
        },
        attrs={"units": "1", "long_name": "surface reflectance"},
    )


def main(out_dir="cube_example", size=(4, 120, 160), k=4, seed=0) -> Path:
    """Write the cube, cluster it, write and plot the label map; return ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    chunks = {"time": 1, "y": max(1, size[1] // 2), "x": max(1, size[2] // 2), "band": -1}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zarr's note on consolidated metadata (Zarr v3)
        make_cube(size, seed).chunk(chunks).to_dataset().to_zarr(out / "cube.zarr", mode="w")
        cube = xr.open_zarr(out / "cube.zarr")["reflectance"]  # lazy, chunked as stored

    model = KMeans(n_clusters=k, nan_policy="omit", random_state=seed)
    labels = dkx.fit_predict(model, cube, feature_dim="band")  # lazy (time, y, x) map
    centres = dkx.centers(model, cube, feature_dim="band")  # (cluster, band), band names kept
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        labels.to_dataset().to_zarr(out / "labels.zarr", mode="w")  # chunk by chunk
    print(f"{model.n_omitted_} masked pixels omitted, {model.n_passes_} passes")
    print(centres.to_pandas().round(3))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    first = xr.open_zarr(out / "labels.zarr")["label"].isel(time=0).load()
    shown = first.where(first >= 0)  # land (-1) becomes NaN: left blank
    fig, ax = plt.subplots(figsize=(6, 4.5))
    shown.plot.imshow(ax=ax, cmap=plt.get_cmap("tab10", k), vmin=-0.5, vmax=k - 0.5,
                      cbar_kwargs={"ticks": range(k), "label": "cluster"})
    ax.set_title(f"k-means clusters, {str(first.time.values)[:10]} (land blank)")
    fig.savefig(out / "label_map.png", dpi=80, bbox_inches="tight")
    plt.close(fig)
    return out


if __name__ == "__main__":
    main(*(sys.argv[1:2] or []))
