"""Every size threshold of the kernels, in one place.

Each value is set by the benchmark command named next to it; the timings
behind the current values are in ``benchmarks/RESULTS.md``. A threshold that
depends on what the machine offers (the SIMD argmin, SciPy's BLAS) is a
function of those capabilities here, and :func:`daskmeans.kernels.choose_plan`
copies the resolved value into the :class:`~daskmeans.kernels.KernelPlan`, so
a plan states every number it runs with and a test can set any of them.

``python benchmarks/bench_thresholds.py NAME`` times one block's Lloyd sweep
on either side of the threshold ``NAME`` (the names below, lower case), with
the plans that differ only in it.
"""

from __future__ import annotations

__all__ = [
    "COLUMN_BLOCK_BYTES",
    "COLUMN_MAX_FEATURES_F64",
    "COLUMN_MIN_K",
    "COLUMN_MIN_K_WIDE",
    "DIST_BLOCK_BYTES",
    "NATIVE_MAX_K",
    "NUMBA_DIST_BLOCK_BYTES",
    "NUMBA_MIN_ELEMENTS",
    "NUMBA_ROW_BLOCK_BYTES",
    "ONEHOT_MAX_K",
    "SCREEN_ROWMAJOR_MAX_K",
    "SEEDING_TILE_BYTES",
    "column_defaults",
    "rowmajor_max_k",
    "screen_min_k",
]

#: NumPy plan: largest group of centres labelled (and summed) by the C kernels
#: built at install (``_native.c``) instead of BLAS products, argmin and
#: one-hot sums; 0 turns them off. Faster than the NumPy code up to 128 centres
#: at every width up to 64 features, slower from 256 at 64 features or 512 at
#: 32 in float64 (one thread; benchmarks/RESULTS.md).
NATIVE_MAX_K = 128

#: NumPy path: target bytes of one sub-block's distance matrix (rows x centres).
#: Set by ``bench_thresholds.py dist_block_bytes``.
DIST_BLOCK_BYTES = 1 << 21

#: NumPy path: largest k for which per-cluster sums are a one-hot matrix
#: product (above it: sort and ``np.add.reduceat``).
#: Set by ``bench_thresholds.py onehot_max_k``.
ONEHOT_MAX_K = 64

#: Compiled path: target bytes of one sub-block's transposed distance matrix.
#: Set by ``bench_thresholds.py numba_dist_block_bytes``.
NUMBA_DIST_BLOCK_BYTES = 1 << 20

#: Compiled path: target bytes of the rows of one sub-block. The whole-block
#: sweep prefetches the next sub-block while it computes the current one, so
#: two of them share the per-core cache.
#: Set by ``bench_thresholds.py numba_row_block_bytes``.
NUMBA_ROW_BLOCK_BYTES = 1 << 18

#: Automatic plans use the compiled (numba) kernels only for arrays of at least
#: this many elements (rows x features); smaller work runs on NumPy and BLAS,
#: where a fit never waits for numba's import, cache or compiler. The value
#: keeps a first fit of 100,000 x 8 rows in a fresh environment free of any
#: compile step, and sits where the compiled sweeps' saving over a short fit
#: pays for importing numba and loading its cache.
#: Set by ``python benchmarks/bench_startup.py --crossover``.
NUMBA_MIN_ELEMENTS = 1 << 21

#: Compiled path, screened float64: largest number of centres for which the
#: screened products are row-major. The screened row-major sweep lost
#: wherever it was measured, so it is off (0); tests set it in a plan.
#: Set by ``bench_thresholds.py screen_rowmajor_max_k``.
SCREEN_ROWMAJOR_MAX_K = 0


def rowmajor_max_k(vector_argmin: bool, whole_block: bool) -> int:
    """Largest number of centres (all groups together) with row-major products.

    The compiled path computes ``X @ C.T`` (row-major) up to this many centres
    and the transposed ``C @ X.T`` above it, whose argmin vectorises over
    rows. With the SIMD argmin of row-major rows (up to 64 centres) row-major
    wins up to 64; without it, the whole-block call is faster transposed from
    32 centres, while the sub-block loop driven from Python keeps row-major up
    to 64 (NumPy's product with a transposed operand is slower).
    Set by ``bench_thresholds.py rowmajor_max_k``.
    """
    return 64 if vector_argmin or not whole_block else 16


def screen_min_k(vector_argmin: bool, whole_block: bool) -> int:
    """Smallest number of centres for which float64 data is *screened*.

    Screened: float32 distance products, every label proven or decided again
    in float64 (see :class:`daskmeans.kernels._compiled.Distances`).
    Set by ``bench_thresholds.py screen_min_k`` (float64).
    """
    if not whole_block:
        return 128
    return 32 if vector_argmin else 17


#: Compiled path, column tiles: target bytes of a sub-block's rows (held
#: transposed) and of a chunk of centres, both kept in the per-core cache.
#: Set by ``bench_thresholds.py column_block_bytes``.
COLUMN_BLOCK_BYTES = 1 << 18

#: Compiled path, k-means++ trials: largest sample (bytes of its rows) whose
#: candidates' products are computed by the column tiles over the sample held
#: transposed; larger samples take the BLAS product (the transposed sample is
#: read feature by feature, which pays while it stays in the shared cache, and
#: the tiles run on one thread where BLAS may use several).
#: Set by ``bench_seeding.py`` (benchmarks/RESULTS.md).
SEEDING_TILE_BYTES = 4 << 20

#: Compiled path, column tiles: smallest number of centres they label (the
#: fused tiles take fewer). Set by ``bench_thresholds.py column_min_k``.
COLUMN_MIN_K = 1

#: Compiled path with AVX-512, column tiles: smallest number of centres a group they
#: label in float32 (the fused tiles take up to 64, and were as fast or faster there).
COLUMN_MIN_K_WIDE = 65

#: Compiled path with 16 vector registers of 32 bytes (AVX2): float32 groups of at most
#: this many centres, with at least :data:`FUSED_FIRST_MIN_FEATURES` features and at most
#: :data:`FUSED_FIRST_MAX_PAD` padded centres in the fused tile (10 to 16 or 26 to 32
#: centres), are labelled by the fused tiles although the column tiles take every other
#: group. A fused tile costs the same whatever part of its width is padding, a column
#: tile grows with the centres: with AVX2 code the fused tiles were faster there, and
#: slower on narrower rows, where a row's argmin outweighs its products, and with more
#: padding (``DASKMEANS_KERNELS=auto,fused_first_max_k=0`` against the
#: default, AVX2 target forced; benchmarks/RESULTS.md).
FUSED_FIRST_MAX_K = 32

#: See :data:`FUSED_FIRST_MAX_K`.
FUSED_FIRST_MIN_FEATURES = 32

#: See :data:`FUSED_FIRST_MAX_K`.
FUSED_FIRST_MAX_PAD = 6

#: Compiled path, fused tiles: the sweep prefetches the next sub-block only for rows
#: of more bytes than this. Narrower rows are read in order by the tiles and the
#: processor's own prefetch serves them better; from 384 bytes a row the hints won
#: (benchmarks/RESULTS.md). Set by ``bench_thresholds.py fused_prefetch_row_bytes --d D``.
FUSED_PREFETCH_ROW_BYTES = 256

#: Compiled path, column tiles: float32 data with at most this many features is
#: screened in int16 (:mod:`daskmeans.kernels._quantized`) where the processor has
#: an int16 multiply-add (x86 AVX2, AVX-512BW). Wider rows get coarser levels (the
#: sums of products must stay in int32) and more rows to label again.
#: Set by ``bench_thresholds.py quantized --d D`` (benchmarks/RESULTS.md).
QUANTIZED_MAX_FEATURES = 128

#: Compiled path, column tiles: float64 data with more features than this is
#: screened in float32 instead (its products are half the cost, and above this
#: width they outweigh the column tiles' saving on the distance matrix).
#: Set by ``bench_thresholds.py column_max_features_f64``.
COLUMN_MAX_FEATURES_F64 = 64


def column_defaults(registers: tuple[int, int] | None = None) -> dict:
    """The column tiles' plan fields by default, from the vector registers of the CPU
    numba compiles for: ``columns``, ``column_min_k``, ``column_max_features_f64``,
    ``fused_first_max_k``, ``fused_first_min_features`` and ``quantized``.

    With at most 16 vector registers of 32 bytes or 32 of 16 (AVX2, AVX, NEON,
    SSE) a fused row tile of 48 or 64 centres holds one row, and the column tiles
    label every group (float64 up to ``COLUMN_MAX_FEATURES_F64`` features), except,
    with AVX2's 16 registers of 32 bytes, float32 groups of up to
    ``FUSED_FIRST_MAX_K`` centres, ``FUSED_FIRST_MIN_FEATURES`` features or more and
    at most ``FUSED_FIRST_MAX_PAD`` centres of padding, where the fused tiles hold two
    to six rows and were faster (other targets unmeasured: the column tiles
    throughout). With AVX-512 (32 registers of 64 bytes) they label float32 from
    ``COLUMN_MIN_K_WIDE`` centres a group, beyond the fused tiles' range, and
    float64 keeps the screened products (``bench_thresholds.py`` and
    ``bench_lloyd.py``, benchmarks/RESULTS.md).

    ``quantized`` (the float32 column tiles screened in int16, where the
    processor has an int16 multiply-add) is on below AVX-512: with AVX2 code it
    shortened the mini-batch fold's steps; with AVX-512 it gained nothing on
    ``bench_lloyd.py``'s blobs and is left off (``quantized=true`` turns it on).
    """
    from ._llvm import vector_registers

    count, size = vector_registers() if registers is None else registers
    if count * size < 32 * 64:
        avx2 = (count, size) == (16, 32)
        return {"columns": True, "column_min_k": COLUMN_MIN_K,
                "column_max_features_f64": COLUMN_MAX_FEATURES_F64,
                "fused_first_max_k": FUSED_FIRST_MAX_K if avx2 else 0,
                "fused_first_min_features": FUSED_FIRST_MIN_FEATURES, "quantized": True}
    return {"columns": True, "column_min_k": COLUMN_MIN_K_WIDE, "column_max_features_f64": 0,
            "fused_first_max_k": 0, "fused_first_min_features": FUSED_FIRST_MIN_FEATURES,
            "quantized": False}
