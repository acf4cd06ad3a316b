"""Sparse INPUT: a ``scipy.sparse.save_npz`` file, or a CSR matrix in a Zarr group.

The Zarr group is the layout AnnData writes (attribute ``encoding-type:
csr_matrix``, arrays ``data``, ``indices``, ``indptr``); it is read by row
blocks through ``indptr`` (:mod:`daskmeans.io._sparse`). A ``.npz`` file is
loaded into memory as SciPy stores it (one compressed archive). Either way
the matrix stays sparse; labels are written as a Zarr array.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ._common import UsageError, one_line, require_exists
from ._sources import ArraySource

__all__ = ["SparseSource", "is_sparse_input", "open_sparse"]


def _is_csr_group(path: Path) -> bool:
    """A Zarr group (v2 or v3 metadata) whose attributes say ``csr_matrix``."""
    attrs = {}
    try:
        if (path / "zarr.json").exists():
            meta = json.loads((path / "zarr.json").read_text())
            if meta.get("node_type") != "group":
                return False
            attrs = meta.get("attributes", {})
        elif (path / ".zattrs").exists() and (path / ".zgroup").exists():
            attrs = json.loads((path / ".zattrs").read_text())
    except (OSError, ValueError):
        return False
    return attrs.get("encoding-type") in ("csr_matrix", "csc_matrix")


def is_sparse_input(text: str) -> bool:
    """True for a ``.npz`` path or a local Zarr group holding a sparse matrix."""
    path = Path(text)
    if path.suffix.lower() == ".npz":
        return True
    return path.is_dir() and _is_csr_group(path)


class SparseSource(ArraySource):
    """A sparse matrix; labels are written as a Zarr array in row blocks of its own."""

    kind = "sparse"

    def __init__(self, text: str, X, stored: str):
        super().__init__(text, X)
        self.like = None  # no stored dense array to chunk the labels like
        self.stored = stored

    def summary(self) -> dict:
        out = super().summary()
        out["format"] = self.stored
        return out


def open_sparse(args: argparse.Namespace) -> SparseSource:
    """Open INPUT as a sparse matrix (checked), with one-line usage errors."""
    text = args.input
    require_exists(text, "INPUT")
    if Path(text).suffix.lower() == ".npz":
        try:
            import scipy.sparse as sp
        except ImportError:  # pragma: no cover - scipy is what wrote the file
            raise UsageError("INPUT is a .npz file: reading it needs SciPy") from None
        try:
            X = sp.load_npz(text)
        except (OSError, ValueError, KeyError) as exc:
            raise UsageError(
                f"INPUT {text!r} is not a sparse matrix saved by scipy.sparse.save_npz "
                f"({one_line(exc)})"
            ) from None
        from .._sparse import check_sparse_input

        Xd, _ = check_sparse_input(X.tocsr(), name="INPUT")
        return SparseSource(text, Xd, "npz (scipy.sparse.save_npz)")
    from daskmeans.io import open_zarr

    try:
        Xd = open_zarr(text)
    except (ValueError, TypeError, KeyError) as exc:
        raise UsageError(f"INPUT {text!r}: {one_line(exc)}") from None
    return SparseSource(text, Xd, "zarr csr_matrix group (AnnData layout)")
