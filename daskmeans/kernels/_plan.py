"""The kernel plan: which code path the per-block kernels run.

A :class:`KernelPlan` is a small immutable object chosen once per fit (or
predict) by :func:`choose_plan` from the data's dtype, the number of centres,
features and rows, what is installed (numba, SciPy's BLAS), what this numba and
LLVM can build (the LLVM-IR intrinsics of :mod:`daskmeans.kernels._llvm`) and
the ``DASKMEANS_KERNELS`` environment variable. It is passed down to the
kernels, which read no mutable module state; ``plan.describe()`` says what
runs, and ``verbose`` fits print it.

``DASKMEANS_KERNELS`` (default ``auto``):

``auto``
    The compiled kernels (as ``numba``) for arrays of at least
    :data:`~daskmeans.kernels._thresholds.NUMBA_MIN_ELEMENTS` elements when numba
    is installed, else NumPy and BLAS.
``numpy``
    NumPy and BLAS only; numba is never imported.
``numba``
    The compiled kernels whatever the size: whole blocks in one compiled call
    when SciPy's BLAS is there, the SIMD argmin, fused product-and-argmin
    tiles and column tiles (LLVM IR) when this LLVM builds them, screened
    float64 products.
``numba-plain``
    The compiled kernels without the hand-written LLVM-IR argmin and tiles
    (cache prefetch hints stay: they never change a result).
``numba-subblock``
    ``numba-plain`` with every sub-block driven from Python (no compiled
    whole-block call, no SciPy needed).

A mode may be followed by ``,field=value`` pairs that set fields of the plan
(``numba,rowmajor_max_k=16,step=4096``), which is how the benchmarks try a
threshold. ``DASKMEANS_NUMBA=0`` (older spelling) means ``numpy``.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import os
import platform
from dataclasses import dataclass

import numpy as np

from . import _thresholds

__all__ = ["KERNELS_ENV", "MODES", "KernelPlan", "choose_plan", "host_isa", "numba_target"]

#: Environment variable that forces a kernel mode (see the module docstring).
KERNELS_ENV = "DASKMEANS_KERNELS"
#: The modes of :data:`KERNELS_ENV`.
MODES = ("auto", "numpy", "numba", "numba-plain", "numba-subblock")

_BACKENDS = ("numpy", "numba")


@dataclass(frozen=True)
class KernelPlan:
    """Which path the per-block kernels run, and every number they run with.

    Build one with :func:`choose_plan` (or :meth:`numpy` / :meth:`numba`) and
    change fields with :func:`dataclasses.replace`; plans are immutable,
    hashable and cheap to pickle, so a Dask graph carries them to its tasks.

    Attributes
    ----------
    backend : {"numpy", "numba"}
        NumPy and BLAS, or the compiled numba loops.
    whole_block : bool
        Compiled: sweep a whole block in one call that holds no GIL (needs
        SciPy's BLAS, which numba's ``np.dot`` calls); else a Python loop over
        the sub-blocks calls the compiled loops.
    vector_argmin : bool
        Compiled: the argmin of a row of 5 to 64 centres on SIMD vectors
        (an LLVM-IR intrinsic); else a scalar loop.
    fused : bool
        Compiled, whole blocks: label rows of up to 64 centres (one group, not
        screened) with fused product-and-argmin tiles (LLVM IR), forming no
        distance matrix.
    columns : bool
        Compiled, whole blocks: label the rows of each group (at least
        ``column_min_k`` centres a group on average) with column tiles (LLVM
        IR, vectorised over rows, any number of centres), forming no distance
        matrix; float64
        only up to ``column_max_features_f64`` features (above it the
        screened products are faster).
    column_min_k, column_max_features_f64 : int
        See ``columns``.
    quantized : bool
        Compiled, column tiles, float32 with at most ``quantized_max_features``
        features: label the rows with the centres and rows rounded to int16
        first (exact int32 sums of products), proving each label against a
        bound on the rounding or labelling the row again by the float32 tiles
        (:mod:`daskmeans.kernels._quantized`): the same labels, sums and counts;
        distances from the differences to the centres. On by default where the
        processor has an int16 multiply-add and no AVX-512 (x86 AVX2; see
        :func:`daskmeans.kernels._thresholds.column_defaults`); no effect
        without ``columns``.
    quantized_max_features : int
        See ``quantized``.
    fused_prefetch_row_bytes : int
        Compiled, fused tiles: the sweep prefetches the next sub-block for
        rows of more bytes than this (narrower rows: the processor's own
        prefetch).
    fused_first_max_k, fused_first_min_features, fused_first_max_pad : int
        Compiled, whole blocks, with ``fused``: float32 groups of at most
        ``fused_first_max_k`` centres (0: none) with at least
        ``fused_first_min_features`` features (when known), padded with at
        most ``fused_first_max_pad`` centres to the fused tiles' width, take
        the fused tiles even where ``column_min_k`` gives them to the column
        tiles.
    column_block_bytes : int
        Compiled, column tiles: target bytes of a sub-block's rows and of a
        chunk of centres.
    seeding_tile_bytes : int
        Compiled, with ``columns``: largest k-means++ sample (bytes of its
        rows) whose trials are computed by the column tiles (0: never).
    rowmajor_max_k : int
        Compiled: largest number of centres with row-major products
        ``X @ C.T``; above it ``C @ X.T``.
    screen_min_k : int or None
        Compiled, float64: smallest number of centres for which the products
        are screened in float32 (labels proven or redone in float64); None:
        never.
    screen_rowmajor_max_k : int
        Compiled, screened: largest number of centres with row-major products.
    dist_block_bytes : int
        NumPy: target bytes of a sub-block's distance matrix.
    onehot_max_k : int
        NumPy: largest k whose sums are a one-hot matrix product.
    native_max_k : int
        NumPy: largest group of centres swept by the C kernels built at
        install (:mod:`daskmeans.kernels._native`, when they were built);
        0: never.
    dist_block_bytes_compiled, row_block_bytes : int
        Compiled: target bytes of a sub-block's distance matrix and rows.
    step : int or None
        Rows per sub-block; None: from the byte targets above.
    target : str
        The instruction set the plan was chosen for (for ``describe``).
    reason : str
        Why this backend was chosen.
    """

    backend: str = "numpy"
    whole_block: bool = False
    vector_argmin: bool = False
    fused: bool = False
    columns: bool = False
    column_min_k: int = _thresholds.COLUMN_MIN_K
    column_max_features_f64: int = _thresholds.COLUMN_MAX_FEATURES_F64
    quantized: bool = False
    quantized_max_features: int = _thresholds.QUANTIZED_MAX_FEATURES
    fused_first_max_k: int = 0
    fused_first_max_pad: int = _thresholds.FUSED_FIRST_MAX_PAD
    fused_prefetch_row_bytes: int = _thresholds.FUSED_PREFETCH_ROW_BYTES
    fused_first_min_features: int = _thresholds.FUSED_FIRST_MIN_FEATURES
    column_block_bytes: int = _thresholds.COLUMN_BLOCK_BYTES
    seeding_tile_bytes: int = _thresholds.SEEDING_TILE_BYTES
    rowmajor_max_k: int = 64
    screen_min_k: int | None = None
    screen_rowmajor_max_k: int = _thresholds.SCREEN_ROWMAJOR_MAX_K
    dist_block_bytes: int = _thresholds.DIST_BLOCK_BYTES
    onehot_max_k: int = _thresholds.ONEHOT_MAX_K
    native_max_k: int = _thresholds.NATIVE_MAX_K
    dist_block_bytes_compiled: int = _thresholds.NUMBA_DIST_BLOCK_BYTES
    row_block_bytes: int = _thresholds.NUMBA_ROW_BLOCK_BYTES
    step: int | None = None
    target: str = ""
    reason: str = ""

    def __post_init__(self) -> None:
        if self.backend not in _BACKENDS:
            raise ValueError(
                f"KernelPlan backend must be one of {_BACKENDS}; got {self.backend!r}.")
        if self.backend == "numpy" and (self.whole_block or self.vector_argmin or self.fused
                                        or self.columns):
            raise ValueError("A NumPy KernelPlan has no compiled options; got "
                             f"whole_block={self.whole_block}, "
                             f"vector_argmin={self.vector_argmin}, fused={self.fused}, "
                             f"columns={self.columns}.")
        for name in ("fused", "columns"):
            if getattr(self, name) and not self.whole_block:
                raise ValueError(f"KernelPlan {name}=True needs whole_block=True.")

    @property
    def compiled(self) -> bool:
        """True when the numba loops run."""
        return self.backend == "numba"

    @classmethod
    def numpy(cls, reason: str = "") -> KernelPlan:
        """The NumPy and BLAS plan (never imports numba)."""
        return cls(backend="numpy", target=host_isa(), reason=reason)

    @classmethod
    def numba(cls, *, plain: bool = False, whole_block: bool | None = None,
              reason: str = "", **fields) -> KernelPlan:
        """The compiled plan with what this machine offers.

        Parameters
        ----------
        plain : bool
            No LLVM-IR argmin or fused tiles.
        whole_block : bool, optional
            Default: when SciPy's BLAS is there.
        reason : str
        **fields
            Other fields, overriding the resolved thresholds.

        Raises
        ------
        ImportError
            When numba is not installed or switched off.
        """
        caps = _capabilities()
        if caps is None:
            raise ImportError("numba is not installed (or DASKMEANS_NUMBA=0 is set).")
        blas, vector, fused, columns, int16 = caps
        whole = blas if whole_block is None else bool(whole_block and blas)
        vector = vector and not plain
        kw = {
            "backend": "numba",
            "whole_block": whole,
            "vector_argmin": vector,
            "fused": fused and whole and not plain,
            "rowmajor_max_k": _thresholds.rowmajor_max_k(vector, whole),
            "screen_min_k": _thresholds.screen_min_k(vector, whole),
            "target": numba_target(),
            "reason": reason,
        }
        cols = _thresholds.column_defaults()
        kw.update(cols, columns=cols["columns"] and columns and whole and not plain)
        kw.update(fields)
        if "quantized" not in fields:  # with the column tiles, where int16 is fast
            kw["quantized"] = cols["quantized"] and kw["columns"] and int16
        return cls(**kw)

    def path(self, dtype, n_centers: int, n_groups: int = 1,
             n_features: int | None = None) -> str:
        """Name of the path a sweep of ``n_centers`` centres (``n_groups``
        groups, ``n_features`` features if known) in ``dtype`` takes:
        ``"numpy"``, ``"columns"``, ``"fused-<width>"``, ``"rowmajor"``,
        ``"transposed"``, ``"screened-rowmajor"`` or ``"screened-transposed"``
        (compiled ones with ``"subblock-"`` in front when blocks are driven
        from Python)."""
        dtype = np.dtype(dtype)
        if not self.compiled or dtype not in (np.float32, np.float64):
            return "numpy"
        if self.uses_columns(dtype, n_centers, n_groups, n_features):
            return "columns-int16" if self.quantized_columns(
                dtype, n_centers, n_groups, n_features) else "columns"
        if self.screened(dtype, n_centers, n_groups, n_features):
            lay = "rowmajor" if n_centers <= self.screen_rowmajor_max_k else "transposed"
            name = f"screened-{lay}"
        else:
            rowmajor = n_centers <= self.rowmajor_max_k
            width = self.fused_width(n_centers) if rowmajor and n_groups == 1 else 0
            name = f"fused-{width}" if width else ("rowmajor" if rowmajor else "transposed")
        return name if self.whole_block else f"subblock-{name}"

    def uses_columns(self, dtype, n_centers: int, n_groups: int = 1,
                     n_features: int | None = None) -> bool:
        """Whether sweeps of ``n_centers`` centres in ``n_groups`` groups of
        ``n_features`` features (unknown: float32 only) run the column tiles,
        one group after the other, each on the whole block."""
        dtype = np.dtype(dtype)
        if not (self.columns and n_centers >= self.column_min_k * max(1, n_groups)):
            return False
        if dtype == np.float32:
            return not (self.fused and n_groups == 1 and n_centers <= self.fused_first_max_k
                        and n_features is not None
                        and n_features >= self.fused_first_min_features
                        and self.fused_width(n_centers) - n_centers <= self.fused_first_max_pad)
        return (dtype == np.float64 and n_features is not None
                and n_features <= self.column_max_features_f64)

    def quantized_columns(self, dtype, n_centers: int, n_groups: int = 1,
                          n_features: int | None = None) -> bool:
        """Whether the column tiles of such a sweep (see :meth:`uses_columns`)
        are screened in int16 (``quantized``; float32, features known)."""
        return (self.quantized and np.dtype(dtype) == np.float32 and n_features is not None
                and n_features <= self.quantized_max_features
                and self.uses_columns(dtype, n_centers, n_groups, n_features))

    def screened(self, dtype, n_centers: int, n_groups: int = 1,
                 n_features: int | None = None) -> bool:
        """Whether float64 sweeps of ``n_centers`` centres screen in float32."""
        return (self.compiled and np.dtype(dtype) == np.float64
                and self.screen_min_k is not None and n_centers >= self.screen_min_k
                and not self.uses_columns(dtype, n_centers, n_groups, n_features))

    def fused_width(self, n_centers: int) -> int:
        """Padded centres of the fused tiles for ``n_centers`` row-major,
        unscreened centres of one group, or 0 when the tiles are not used."""
        if not (self.fused and n_centers <= self.rowmajor_max_k):
            return 0
        from ._llvm import FUSED_CENTERS

        return next((c for c in FUSED_CENTERS if c >= n_centers), 0)

    def describe(self, dtype=None, n_centers: int | None = None) -> str:
        """One line saying what runs (for ``dtype`` and ``n_centers`` if given)."""
        if not self.compiled:
            text = "NumPy and BLAS kernels"
            if self.native_max_k > 0:
                from . import _native

                if _native.available():
                    text += f", C kernels up to {self.native_max_k} centres a group"
        else:
            parts = ["numba kernels", "whole blocks in one compiled call" if self.whole_block
                     else "sub-blocks driven from Python"]
            parts.append("SIMD argmin (LLVM IR)" if self.vector_argmin else "scalar argmin")
            if self.fused:
                parts.append("fused product-and-argmin tiles up to 64 centres (LLVM IR)")
            if self.columns:
                only = " (float32)" if self.column_max_features_f64 <= 0 else ""
                parts.append(f"column tiles from {self.column_min_k} centres{only} (LLVM IR)")
            if self.quantized:
                parts.append("float32 column tiles screened in int16 up to "
                             f"{self.quantized_max_features} features")
            parts.append(f"row-major products up to {self.rowmajor_max_k} centres")
            if self.screen_min_k is not None:
                parts.append(f"float64 screened in float32 from {self.screen_min_k} centres")
            text = ", ".join(parts)
        if dtype is not None and n_centers is not None:
            text += f"; {np.dtype(dtype).name} with {n_centers} centres: path " \
                    f"{self.path(dtype, n_centers)}"
        if self.step is not None:
            text += f"; {self.step} rows per sub-block"
        if self.target:
            text += f" [{self.target}]"
        if self.reason:
            text += f" ({self.reason})"
        return text


def _numba_switched_off() -> bool:
    return os.environ.get("DASKMEANS_NUMBA", "1").strip().lower() in ("0", "false", "no", "off")


def numba_installed() -> bool:
    """Whether numba can be imported (without importing it)."""
    return not _numba_switched_off() and importlib.util.find_spec("numba") is not None


@functools.cache
def _capabilities() -> tuple[bool, bool, bool, bool, bool] | None:
    """``(blas, vector_argmin, fused, columns, int16)`` of this numba and LLVM
    (``int16``: int16 column tiles with the processor's own multiply-add), or
    None without numba. Imports numba (only plans that pick it call this)."""
    if not numba_installed():
        return None
    try:
        from . import _numba_loops as nb
    except ImportError:  # pragma: no cover - a broken numba install
        return None
    from . import _llvm, _quantized

    int16 = _quantized.INT_TILES and _llvm.int16_madd_native()
    return nb.BLAS_AVAILABLE, nb.VECTOR_ARGMIN, nb.FUSED_ARGMIN, nb.COLUMN_TILES, int16


def _parse(text: str) -> tuple[str, dict]:
    """``"numba,step=512"`` -> ``("numba", {"step": 512})``."""
    mode, *pairs = [p.strip() for p in text.split(",") if p.strip()] or ["auto"]
    mode = mode.lower()
    if mode not in MODES:
        raise ValueError(f"{KERNELS_ENV} must be one of {MODES} (optionally followed by "
                         f"',field=value'); got {text!r}.")
    names = {f.name: f.type for f in dataclasses.fields(KernelPlan)}
    fields = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or key not in names or key in ("backend", "target", "reason"):
            raise ValueError(f"{KERNELS_ENV}: {pair!r} is not 'field=value' with a field of "
                             f"KernelPlan; got {text!r}.")
        value = value.strip()
        if value.lower() in ("none", ""):
            fields[key] = None
        elif value.lower() in ("true", "false"):
            fields[key] = value.lower() == "true"
        else:
            try:
                fields[key] = int(value)
            except ValueError:
                raise ValueError(f"{KERNELS_ENV}: {key} must be an integer, true, false or "
                                 f"none; got {value!r} in {text!r}.") from None
    return mode, fields


def choose_plan(dtype=np.float64, n_centers: int = 8, n_features: int = 1,
                n_rows: int = 0, *, mode: str | None = None) -> KernelPlan:
    """The plan for sweeps of an ``n_rows`` x ``n_features`` array of ``dtype``
    against ``n_centers`` centres.

    Parameters
    ----------
    dtype : dtype
    n_centers, n_features, n_rows : int
        Of the whole array (a fit's plan is chosen once, not per block); an
        unknown (NaN) number of rows counts as large.
    mode : str, optional
        As :data:`KERNELS_ENV`; default: its value, else ``"auto"``.

    Returns
    -------
    KernelPlan
    """
    text = mode if mode is not None else os.environ.get(KERNELS_ENV, "auto")
    mode_name, fields = _parse(text)
    if mode_name == "auto" and _numba_switched_off():
        mode_name = "numpy"
    try:
        elements = int(n_features) * int(n_rows)
    except (TypeError, ValueError):  # unknown row count (NaN): not small
        elements = _thresholds.NUMBA_MIN_ELEMENTS
    return _choose(mode_name, tuple(sorted(fields.items())), np.dtype(dtype).str, elements)


@functools.lru_cache(maxsize=256)
def _choose(mode: str, fields: tuple, dtype: str, elements: int) -> KernelPlan:
    fields = dict(fields)
    if mode == "numpy":
        return dataclasses.replace(KernelPlan.numpy(f"{KERNELS_ENV}=numpy"), **fields)
    if mode == "auto":
        if np.dtype(dtype) not in (np.float32, np.float64):
            reason = f"auto: {np.dtype(dtype).name} data"
            return dataclasses.replace(KernelPlan.numpy(reason), **fields)
        if elements < _thresholds.NUMBA_MIN_ELEMENTS:
            reason = (f"auto: {elements:,} elements, below "
                      f"{_thresholds.NUMBA_MIN_ELEMENTS:,} for the compiled kernels")
            return dataclasses.replace(KernelPlan.numpy(reason), **fields)
        if _capabilities() is None:
            return dataclasses.replace(KernelPlan.numpy("auto: numba is not installed"),
                                       **fields)
        return KernelPlan.numba(reason=f"auto: {elements:,} elements", **fields)
    reason = f"{KERNELS_ENV}={mode}"
    if mode == "numba":
        return KernelPlan.numba(reason=reason, **fields)
    if mode == "numba-plain":
        return KernelPlan.numba(plain=True, reason=reason, **fields)
    return KernelPlan.numba(plain=True, whole_block=False, reason=reason, **fields)


@functools.cache
def host_isa() -> str:
    """``"<machine>: <vector extensions>"`` of this processor, without numba.

    From ``/proc/cpuinfo`` on Linux (the widest of AVX-512, AVX2, AVX, SSE4.2
    on x86; NEON/ASIMD and SVE on ARM), else the machine name alone.
    """
    machine = platform.machine() or "unknown"
    flags = _cpu_flags()
    found = [name for name, keys in _VECTOR_EXTENSIONS if flags & keys]
    return f"{machine}: {', '.join(found) or 'no vector extensions listed'}"


#: (name reported, /proc/cpuinfo flags that mean it), widest first.
_VECTOR_EXTENSIONS = (
    ("AVX-512", {"avx512f"}),
    ("AVX2", {"avx2"}),
    ("FMA", {"fma"}),
    ("AVX", {"avx"}),
    ("SSE4.2", {"sse4_2"}),
    ("SVE", {"sve"}),
    ("NEON", {"asimd", "neon"}),
)


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("flags", "Features"):
                    return set(value.split())
    except OSError:
        pass
    return set()


def numba_target() -> str:
    """The CPU numba compiles for and its vector features (imports llvmlite).

    ``NUMBA_CPU_NAME`` and ``NUMBA_CPU_FEATURES`` change them as in numba itself:
    a name alone keeps the host's features (see
    :func:`daskmeans.kernels._llvm.target_features`).
    """
    try:
        import llvmlite.binding as llvm
    except ImportError:  # pragma: no cover
        return host_isa()
    from ._llvm import X86_MACHINES, target_features

    if platform.machine().lower() in X86_MACHINES:
        name, feats = target_features()
    else:
        name = os.environ.get("NUMBA_CPU_NAME") or llvm.get_host_cpu_name()
        feats = {k for k, v in llvm.get_host_cpu_features().items() if v}
    wanted = ("avx512f", "avx2", "fma", "avx", "sse4.2", "neon", "sve")
    shown = [f for f in wanted if f in feats]
    return f"{platform.machine()} {name}" + (f" ({', '.join(shown)})" if shown else "")
