"""What the ``fit`` pipeline and ``predict`` see of an opened INPUT: a :class:`Source`.

Each kind of input (:mod:`daskmeans.cli._inputs`) opens INPUT as a Source:
fit a model on it, give its labels lazily, describe it in the report.
:class:`ArraySource`, a 2-D Dask array, is the base of the array-like kinds.
It imports nothing of :mod:`daskmeans.cli`, so that every kind (the sparse
one in :mod:`daskmeans.cli._sparse` too) builds on it without an import cycle.
"""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["ArraySource", "Source"]


class Source:
    """An opened INPUT, as the ``fit`` pipeline and ``predict`` see it."""

    #: Kind of input, as in the report's ``data.kind``.
    kind = ""
    #: File written under ``fit --out`` for the labels.
    label_file = "labels.zarr"
    #: Whether :meth:`fit_labels` are the model's ``labels_``: the fit's last pass is
    #: then made by the labels' pass (see :func:`daskmeans._base.deferred_final_pass`).
    labels_of_fit = False
    #: What the labels are written as (in messages).
    label_format = "a Zarr array"
    #: Rows (samples), when known without reading the data.
    n_rows: int | None = None
    #: Features per row.
    n_features = 0
    #: Path of the stored array the labels should be chunked like, if any.
    like: str | None = None

    def fit(self, model, **fit_kwargs) -> None:
        """Fit ``model`` on the data."""
        raise NotImplementedError

    def fit_labels(self, model):
        """The labels of the data after :meth:`fit`, lazy."""
        raise NotImplementedError

    def predict_labels(self, model):
        """The labels of the data under a fitted ``model``, lazy."""
        raise NotImplementedError

    def summary(self) -> dict:
        """The report's ``data`` section."""
        raise NotImplementedError

    def check_written(self, args: argparse.Namespace, path: Path) -> list[str]:
        """Checks of the written labels; warning lines (may add to :meth:`summary`)."""
        return []


class ArraySource(Source):
    """A 2-D Dask array; ``like``: the Zarr array it was read from, to chunk labels like."""

    kind = "array"
    labels_of_fit = True

    def __init__(self, text: str, X, *, like: str | None = None):
        self.text = text
        self.like = like
        self.X = X
        self.n_rows, self.n_features = (int(s) for s in X.shape)

    def fit(self, model, **fit_kwargs) -> None:
        model.fit(self.X, **fit_kwargs)

    def fit_labels(self, model):
        return model.labels_

    def predict_labels(self, model):
        return model.predict(self.X)

    def summary(self) -> dict:
        X = self.X
        return {
            "input": self.text,
            "kind": self.kind,
            "shape": list(X.shape),
            "dtype": str(X.dtype),
            "chunks": [int(X.chunks[0][0]), int(X.shape[1])],
            "n_chunks": int(X.numblocks[0]),
        }
