"""Durable, atomic checkpoints of the Lloyd state of a fit.

A checkpoint is one JSON file, ``checkpoint.json``, in the checkpoint
directory. It holds a format version, the *fingerprint* of the run (what
identifies the data and the parameters) and every field of
:class:`daskmeans.engine._lloyd.LloydState`. Arrays are stored as base64 of their
little-endian bytes together with dtype and shape, so that float32 and float64
values round trip bit for bit and nothing is ever unpickled.

The file is written under a temporary name in its directory, flushed to disk
with ``fsync`` and renamed over the previous one with :func:`os.replace`
(:func:`daskmeans.io._atomic.atomic_write_text`), so a run resumed after ``SIGKILL``
sees the previous checkpoint or the new one, never a mixture; :meth:`Checkpoint.load`
removes the temporary file such a run may have left.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from daskmeans.io._atomic import atomic_write_text, remove_leftovers

__all__ = ["CHECKPOINT_FORMAT", "Checkpoint", "CheckpointMismatchError", "decode", "encode"]

#: Version of the checkpoint file layout; bumped on incompatible changes.
CHECKPOINT_FORMAT = 1
#: Name of the checkpoint file inside the checkpoint directory.
CHECKPOINT_FILE = "checkpoint.json"


class CheckpointMismatchError(ValueError):
    """The saved checkpoint belongs to other data or other parameters."""


# --------------------------------------------------------------------------- encoding


def encode(value: Any) -> Any:
    """Encode a value for exact JSON storage (arrays as base64 bytes, no pickle).

    Supports ``None``, bool, int, float (``nan`` and infinities included), str,
    NumPy scalars and arrays of numeric or bool dtype, lists, tuples and dicts
    with string keys.
    """
    if value is None or isinstance(value, (bool, str, int)):
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return {"__float__": repr(value)}
    if isinstance(value, (np.ndarray, np.generic)):
        arr = np.asarray(value)
        if arr.dtype.kind not in "biuf":
            raise TypeError(f"cannot store arrays of dtype {arr.dtype} in a checkpoint")
        little = arr.astype(arr.dtype.newbyteorder("<"), copy=False)
        return {
            "__ndarray__": base64.b64encode(np.ascontiguousarray(little).tobytes()).decode(),
            "dtype": little.dtype.str,
            "shape": list(arr.shape),
            "scalar": isinstance(value, np.generic),
        }
    if isinstance(value, (list, tuple)):
        return [encode(v) for v in value]
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise TypeError("only dicts with string keys can be stored in a checkpoint")
        return {"__dict__": {k: encode(v) for k, v in value.items()}}
    raise TypeError(f"cannot store a value of type {type(value).__name__} in a checkpoint")


def decode(value: Any) -> Any:
    """Inverse of :func:`encode`."""
    if isinstance(value, list):
        return [decode(v) for v in value]
    if not isinstance(value, dict):
        return value
    if "__float__" in value:
        return float(value["__float__"])
    if "__dict__" in value:
        return {k: decode(v) for k, v in value["__dict__"].items()}
    if "__ndarray__" in value:
        dtype = np.dtype(value["dtype"])
        if dtype.kind not in "biuf":
            raise ValueError(f"unexpected dtype {dtype} in checkpoint")
        raw = base64.b64decode(value["__ndarray__"], validate=True)
        arr = np.frombuffer(raw, dtype=dtype).reshape(value["shape"])
        arr = arr.astype(dtype.newbyteorder("="), copy=True)
        return arr[()] if value.get("scalar") else arr
    raise ValueError("unexpected object in checkpoint")


def _canonical(obj: Any) -> Any:
    """Plain JSON form of a fingerprint, for storage and comparison.

    NumPy scalars and arrays become Python numbers and lists, tuples become
    lists and non-finite floats become strings, so equal fingerprints compare
    equal however they were spelled.
    """
    if isinstance(obj, np.generic):
        obj = obj.item()
    elif isinstance(obj, np.ndarray):
        obj = obj.tolist()
    if isinstance(obj, float) and not math.isfinite(obj):
        return repr(obj)
    if isinstance(obj, (list, tuple)):
        return [_canonical(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): _canonical(v) for k, v in obj.items()}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot use a value of type {type(obj).__name__} in a fingerprint")


def _describe(value: Any, limit: int = 60) -> str:
    text = "(absent)" if value is _ABSENT else json.dumps(value, sort_keys=True)
    return text if len(text) <= limit else text[: limit - 3] + "..."


_ABSENT = object()


def _differences(saved: Any, given: Any, prefix: str = "") -> list[str]:
    """Human-readable list of the leaves that differ between two canonical fingerprints."""
    if isinstance(saved, dict) and isinstance(given, dict):
        out: list[str] = []
        for key in sorted(set(saved) | set(given)):
            a, b = saved.get(key, _ABSENT), given.get(key, _ABSENT)
            if a != b:
                out += _differences(a, b, f"{prefix}{key}.")
        return out
    return [f"{prefix.rstrip('.') or 'fingerprint'}: saved {_describe(saved)}, "
            f"now {_describe(given)}"]


# --------------------------------------------------------------------------- checkpoint


def _library_version() -> str:
    try:
        from importlib.metadata import version

        return version("daskmeans")
    except Exception:  # pragma: no cover - not installed
        return "unknown"


def _state_class() -> type:
    from daskmeans.engine._lloyd import LloydState

    return LloydState


class Checkpoint:
    """Save and restore the Lloyd state of one fit in a directory.

    Parameters
    ----------
    directory : str or path-like
        Where ``checkpoint.json`` lives; created on the first :meth:`save`.
    fingerprint : dict
        Identifies the data and the parameters of the run (JSON-able values,
        NumPy scalars and arrays allowed). :meth:`load` refuses a checkpoint
        saved under a different fingerprint.

    Examples
    --------
    >>> ckpt = Checkpoint("ckpt", {"n_clusters": 8, "data": "token"})  # doctest: +SKIP
    >>> state = ckpt.load()            # None the first time  # doctest: +SKIP
    >>> ckpt.save(state)               # atomic  # doctest: +SKIP
    """

    def __init__(self, directory: str | os.PathLike, fingerprint: dict) -> None:
        if not isinstance(fingerprint, dict):
            raise TypeError(f"fingerprint must be a dict, got {type(fingerprint).__name__}")
        self.directory = Path(directory)
        self.fingerprint = fingerprint
        self._fingerprint_json = _canonical(fingerprint)

    @property
    def path(self) -> Path:
        """Path of the checkpoint file."""
        return self.directory / CHECKPOINT_FILE

    def read(self) -> dict | None:
        """Return the raw saved document, or ``None`` when nothing was saved.

        Raises
        ------
        ValueError
            If the file is not a checkpoint of a known format.
        """
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{self.path} is not a valid checkpoint file: {exc}") from None
        if not isinstance(doc, dict) or doc.get("kind") != "daskmeans-checkpoint":
            raise ValueError(f"{self.path} is not a daskmeans checkpoint")
        if doc.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(
                f"{self.path} has checkpoint format {doc.get('format')!r}; this version of "
                f"daskmeans reads format {CHECKPOINT_FORMAT}"
            )
        return doc

    def _check_fingerprint(self, saved: Any) -> None:
        if saved == self._fingerprint_json:
            return
        diffs = _differences(saved, self._fingerprint_json)
        detail = "; ".join(diffs[:4]) + ("; ..." if len(diffs) > 4 else "")
        raise CheckpointMismatchError(
            f"checkpoint in {self.directory} was made with different data or parameters "
            f"({detail}); remove it or use another checkpoint directory"
        )

    def load(self) -> Any:
        """Return the saved :class:`~daskmeans.engine._lloyd.LloydState`, or ``None``.

        Raises
        ------
        CheckpointMismatchError
            (a :class:`ValueError`) if the checkpoint was saved with another
            fingerprint: different data or parameters.
        ValueError
            If the file is damaged or of an unknown format.
        """
        # a save killed between its temporary file and the rename leaves the former
        remove_leftovers(self.directory, (CHECKPOINT_FILE,))
        doc = self.read()
        if doc is None:
            return None
        self._check_fingerprint(doc.get("fingerprint"))
        cls = _state_class()
        names = {f.name for f in dataclasses.fields(cls)}
        fields = decode(doc["state"])
        if set(fields) != names:
            raise ValueError(
                f"{self.path} holds a state with fields {sorted(fields)}, expected "
                f"{sorted(names)}; it was written by an incompatible version"
            )
        return cls(**fields)

    def save(self, state: Any) -> None:
        """Write ``state`` atomically (temporary file, ``fsync``, :func:`os.replace`).

        Parameters
        ----------
        state : daskmeans.engine._lloyd.LloydState
            The dataclass to store; every field is saved.
        """
        self.directory.mkdir(parents=True, exist_ok=True)
        fields = {f.name: getattr(state, f.name) for f in dataclasses.fields(state)}
        doc = {
            "kind": "daskmeans-checkpoint",
            "format": CHECKPOINT_FORMAT,
            "daskmeans_version": _library_version(),
            "fingerprint": self._fingerprint_json,
            "state": encode(fields),
        }
        atomic_write_text(self.path, json.dumps(doc) + "\n")

    def clear(self) -> None:
        """Remove the checkpoint file if there is one."""
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def __repr__(self) -> str:
        return f"Checkpoint({str(self.directory)!r})"
