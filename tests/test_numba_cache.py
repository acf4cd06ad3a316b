"""numba's on-disk cache shared by several processes (daskmeans.kernels._numba_cache)."""

import threading
import types

import pytest

from daskmeans.kernels import _plan

if not _plan.numba_installed():  # pragma: no cover
    pytest.skip("numba not installed", allow_module_level=True)

from numba.core.caching import IndexDataCacheFile  # noqa: E402
from numba.core.dispatcher import Dispatcher  # noqa: E402

from daskmeans.kernels import _bounds, _numba_cache, _numba_loops, _sparse  # noqa: E402


def _cache_file(tmp_path):
    cf = IndexDataCacheFile(str(tmp_path), "kernel-1.py311", (1.0, 2))
    _numba_cache.guard(types.SimpleNamespace(_cache=types.SimpleNamespace(_cache_file=cf)))
    return cf


def test_every_cached_loop_is_guarded():
    dispatchers = [v for v in vars(_numba_loops).values() if isinstance(v, Dispatcher)]
    dispatchers += [v for v in vars(_bounds._nb()).values() if isinstance(v, Dispatcher)]
    dispatchers.append(_sparse._loops())
    cached = [d for d in dispatchers if getattr(d, "_cache", None) is not None
              and hasattr(d._cache, "_cache_file")]
    assert len(cached) >= 30
    assert all(d._cache._cache_file._daskmeans_guarded for d in cached)


def test_concurrent_saves_of_two_signatures_keep_their_own_data(tmp_path):
    """Two writers (two processes in real life, each with its own cache object)
    save different signatures of one function at the same moment: without the
    lock both take data file 1 and one signature's index entry points at the
    other's code."""
    first, second = _cache_file(tmp_path), _cache_file(tmp_path)
    save_index = first._save_index
    other = threading.Thread(target=second.save, args=("float64 sig", b"float64 code"))

    def interleaved(overloads):
        # the other writer starts while this one has chosen its data file
        other.start()
        other.join(timeout=0.5)  # blocked on the lock (without it: done by now)
        save_index(overloads)

    first._save_index = interleaved
    first.save("float32 sig", b"float32 code")
    other.join()
    reader = _cache_file(tmp_path)
    assert reader.load("float32 sig") == b"float32 code"
    assert reader.load("float64 sig") == b"float64 code"
    assert (tmp_path / _numba_cache.LOCK_NAME).exists()


def test_guard_is_idempotent_and_skips_dispatchers_without_cache(tmp_path):
    cf = _cache_file(tmp_path)
    save = cf.save
    _numba_cache.guard(types.SimpleNamespace(_cache=types.SimpleNamespace(_cache_file=cf)))
    assert cf.save is save  # not wrapped twice
    plain = types.SimpleNamespace(_cache=None)
    assert _numba_cache.guard(plain) is plain


def test_an_edit_of_any_kernel_module_makes_cached_entries_stale(tmp_path, monkeypatch):
    """numba's own stamp covers the function's file only; the guard adds the stamps
    of every kernel module, so an entry saved before an edit of one of them (the
    LLVM IR of _llvm, say) is not loaded after it."""
    saved = _cache_file(tmp_path)
    assert saved._source_stamp == ((1.0, 2), _numba_cache.sources_stamp())
    assert any(name == "_llvm.py" for name, _, _ in _numba_cache.sources_stamp())
    saved.save("float32 sig", b"float32 code")
    assert _cache_file(tmp_path).load("float32 sig") == b"float32 code"  # same sources
    edited = _numba_cache.sources_stamp() + (("_llvm.py", 1, 1),)
    monkeypatch.setattr(_numba_cache, "sources_stamp", lambda: edited)
    assert _cache_file(tmp_path).load("float32 sig") is None  # stale: compiled again


def test_sources_stamp_follows_the_modules(tmp_path):
    (tmp_path / "a.py").write_text("x = 1\n")
    (tmp_path / "notes.txt").write_text("not a module")
    first = _numba_cache.sources_stamp.__wrapped__(str(tmp_path))
    assert [name for name, _, _ in first] == ["a.py"]
    (tmp_path / "a.py").write_text("x = 10\n")
    assert _numba_cache.sources_stamp.__wrapped__(str(tmp_path)) != first
