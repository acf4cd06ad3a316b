"""Randomness that does not depend on the scheduler.

Every random draw in daskmeans comes from a :class:`numpy.random.SeedSequence`
derived from the user's ``random_state``. Per-block generators are keyed by
what they are for (a purpose string's code, the candidate, the round, the block
index), never by which worker or thread runs them, so a fixed ``random_state``
and chunking give the same result on any scheduler and any number of workers.
"""

from __future__ import annotations

import zlib
from numbers import Integral

import numpy as np

__all__ = ["as_seed_sequence", "block_rng", "purpose_key"]


def as_seed_sequence(random_state) -> np.random.SeedSequence:
    """Turn a scikit-learn style ``random_state`` into a SeedSequence.

    Parameters
    ----------
    random_state : None, int, numpy.random.RandomState, numpy.random.Generator or SeedSequence
        None draws fresh entropy from the operating system.

    Returns
    -------
    numpy.random.SeedSequence
    """
    if random_state is None:
        return np.random.SeedSequence()
    if isinstance(random_state, np.random.SeedSequence):
        return random_state
    if isinstance(random_state, Integral) and not isinstance(random_state, bool):
        if random_state < 0:
            raise ValueError(
                f"random_state must be a non-negative integer, got {random_state!r}."
            )
        return np.random.SeedSequence(int(random_state))
    if isinstance(random_state, np.random.RandomState):
        return np.random.SeedSequence(int(random_state.randint(0, 2**31 - 1)))
    if isinstance(random_state, np.random.Generator):
        return np.random.SeedSequence(int(random_state.integers(0, 2**63 - 1)))
    raise TypeError(
        "random_state must be None, a non-negative int, a numpy RandomState, Generator "
        f"or SeedSequence; got {type(random_state).__name__}: {random_state!r}."
    )


def purpose_key(purpose: str) -> int:
    """A stable integer code for a purpose string (e.g. ``"kmeans||"``)."""
    return zlib.crc32(purpose.encode())


def block_rng(seq: np.random.SeedSequence, *key: int) -> np.random.Generator:
    """A generator for one (purpose, candidate, round, block, ...) key.

    Parameters
    ----------
    seq : numpy.random.SeedSequence
        The fit's root sequence.
    *key : int
        Non-negative integers naming the use; equal keys give equal streams.
    """
    spawn_key = tuple(seq.spawn_key) + tuple(int(k) for k in key)
    child = np.random.SeedSequence(seq.entropy, spawn_key=spawn_key)
    return np.random.default_rng(child)
