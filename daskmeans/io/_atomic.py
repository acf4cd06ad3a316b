"""Outputs written atomically: a temporary sibling, renamed into place when complete.

A writer first removes the temporaries that earlier writers of the same name
left when they were killed outright (:func:`remove_leftovers`).
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import tempfile
import uuid
from pathlib import Path

# the process umask, read once (os.umask can only be read by setting it)
_UMASK = os.umask(0)
os.umask(_UMASK)

__all__ = ["atomic_dir", "atomic_write_text", "is_local_path", "remove_leftovers", "write_json"]


def atomic_write_text(path, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file in the same directory and a rename
    (after :func:`remove_leftovers` for ``path``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers(path.parent, (path.name,))
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; give the usual mode
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_json(path, obj) -> None:
    """Atomically write ``obj`` as indented JSON."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


@contextlib.contextmanager
def atomic_dir(path):
    """Yield a temporary sibling directory that is renamed to ``path`` on success.

    On error the temporary directory is removed and ``path`` is untouched. An
    existing ``path`` is replaced only after the new one is complete. Leftovers of
    killed writers of ``path`` are removed first (:func:`remove_leftovers`).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers(path.parent, (path.name,))
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if path.exists():
        old = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.old")
        os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, path)


def remove_leftovers(directory, names) -> list[str]:
    """Remove the temporaries a writer of ``names`` in ``directory`` left behind.

    :func:`atomic_write_text` and :func:`atomic_dir` clean up after an error, but
    a process killed outright (``kill -9``, the out-of-memory killer) leaves its
    ``.NAME.*.tmp`` (or a replaced ``.NAME.*.old``) in place. Those writers call
    this before they write NAME, and readers that may not write again (a
    checkpoint's) call it too; it assumes no other process writes NAME at the same
    time (two writers would race for the output anyway).

    Parameters
    ----------
    directory : str or path-like
        Where the outputs live; nothing happens when it does not exist.
    names : iterable of str
        Output names (``"model.json"``, ``"labels.zarr"``) whose temporaries to remove.

    Returns
    -------
    list of str
        The names removed, sorted.
    """
    directory = Path(directory)
    removed = []
    for name in names:
        for suffix in (".tmp", ".old"):
            for path in directory.glob(f".{glob.escape(name)}.*{suffix}"):
                # the writers' random part has no dot: ".a.b.x1.tmp" is output "a.b"'s, not "a"'s
                tag = path.name[len(name) + 2 : -len(suffix)]
                if not tag or "." in tag:
                    continue
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    with contextlib.suppress(FileNotFoundError):
                        path.unlink()
                removed.append(path.name)
    return sorted(removed)


def is_local_path(url) -> bool:
    """True for a plain path or a ``file://`` URL (where a rename is atomic)."""
    url = os.fspath(url)
    return "://" not in url or url.startswith("file://")


def _local(url) -> Path:
    url = os.fspath(url)
    return Path(url[len("file://"):] if url.startswith("file://") else url)


def _remove_late(path: Path, quiet: float = 0.3, limit: float = 10.0) -> None:
    """Remove a temporary directory that tasks still in flight after a failure may
    recreate: remove it until it has stayed absent for ``quiet`` seconds."""
    import time

    start = time.monotonic()
    absent_since = None
    while time.monotonic() - start < limit:
        if path.exists():
            shutil.rmtree(path, ignore_errors=True)
            absent_since = None
        elif absent_since is None:
            absent_since = time.monotonic()
        elif time.monotonic() - absent_since >= quiet:
            return
        time.sleep(0.05)
