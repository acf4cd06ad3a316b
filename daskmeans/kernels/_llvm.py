"""LLVM-IR intrinsics of the compiled kernels (numba ``@intrinsic``).

Everything that writes LLVM IR by hand lives here, apart from the plain numba
loops of :mod:`daskmeans.kernels._numba_loops`, which wrap these intrinsics in
loops and fall back to scalar code when they are missing:

- :func:`prefetch_kernel`: ``llvm.prefetch``, a cache hint that never faults
  and never changes a result;
- :func:`vector_argmin_kernels`: the argmin of one row of up to 64 centres
  on SIMD vectors (masked loads, a tree of lane shuffles);
- :func:`fused_tile_kernels`: fused product-and-argmin tiles that label a few
  rows of up to 64 centres without forming a distance matrix;
- :func:`column_tile_kernels`: product-and-argmin tiles vectorised over rows
  for any number of centres, with a running minimum per row and no
  horizontal reduction;
- :func:`column_top2_kernel`: the same tile keeping the second-best score
  of every row too (pruned Lloyd's lower bounds);
- :func:`transpose_kernel`: an 8 x 8 block of rows transposed in registers
  (the column tiles' rows are held transposed).

Each factory returns None when this numba or LLVM cannot build it (LLVM
before 17 has typed pointers and other intrinsic names); the kernel plan
(:mod:`daskmeans.kernels._plan`) then picks the scalar loops. Which of them
runs is stated by :meth:`daskmeans.kernels.KernelPlan.describe`.

Vector widths: the tiles use 16 float32 or 8 float64 lanes (512 bits). On a
processor with narrower registers (AVX2, NEON) LLVM splits every vector
operation into two or four native ones, and the tiles hold fewer rows (or,
for the column tiles, fewer centres) so that their accumulators stay in
registers (:func:`tile_rows` and :func:`column_tile_shape`, from the registers
of the CPU numba compiles for); results are the same.
"""

from __future__ import annotations

import functools

__all__ = [
    "FUSED_CENTERS",
    "VECTOR_SHAPES",
    "X86_MACHINES",
    "fused_tile_kernels",
    "ir_argmin",
    "column_tile_kernels",
    "column_tile_shape",
    "column_products_kernel",
    "column_top2_kernel",
    "column_int_tile_kernel",
    "int16_madd_native",
    "prefetch_kernel",
    "target_features",
    "tile_rows",
    "transpose_kernel",
    "transpose_rounds",
    "vector_argmin_kernels",
    "vector_registers",
]

#: (lanes, vectors) of the SIMD argmin loops, for up to 8, 16, 32, 48 and 64 centres.
VECTOR_SHAPES = ((8, 1), (16, 1), (16, 2), (16, 3), (16, 4))

#: ``platform.machine()`` names of x86 processors (whose features :func:`target_features` reads).
X86_MACHINES = ("x86_64", "amd64", "i386", "i686", "x86")

#: Centres (padded) of the fused product-and-argmin tiles, by shape 1 to 4.
FUSED_CENTERS = (16, 32, 48, 64)


def prefetch_kernel():
    """A compiled ``prefetch(A, i, j)``: hint that ``A[i, j]`` will be read soon.

    LLVM's ``llvm.prefetch`` intrinsic (a read, kept in all cache levels); it
    never faults and does not change results. Falls back to a no-op when the
    intrinsic cannot be declared with this numba.
    """
    try:
        from llvmlite import ir
        from numba import types
        from numba.core import cgutils
        from numba.extending import intrinsic
    except ImportError:  # pragma: no cover - depends on numba's internals
        return None

    @intrinsic
    def prefetch(typingctx, arr, i, j):
        if not (isinstance(arr, types.Array) and arr.ndim == 2):
            return None
        sig = types.void(arr, i, j)

        def codegen(context, builder, signature, args):
            aryty = signature.args[0]
            ary = context.make_array(aryty)(context, builder, args[0])
            ptr = cgutils.get_item_pointer(context, builder, aryty, ary, [args[1], args[2]],
                                           wraparound=False)
            i8p = builder.bitcast(ptr, ir.PointerType(ir.IntType(8)))
            i32 = ir.IntType(32)
            fnty = ir.FunctionType(ir.VoidType(), [i8p.type, i32, i32, i32])
            fn = builder.module.declare_intrinsic("llvm.prefetch", [i8p.type], fnty)
            # read (0), keep in all cache levels (3), data cache (1)
            builder.call(fn, [i8p, ir.Constant(i32, 0), ir.Constant(i32, 3), ir.Constant(i32, 1)])
            return context.get_dummy_value()

        return sig, codegen

    return prefetch



def ir_argmin(builder, vectors, n):
    """LLVM IR: the minimum over the lanes of ``vectors`` and its first index.

    ``vectors`` is a list of at most ``64 / width`` float vectors of equal
    ``width``; lane ``l`` of vector ``v`` holds the value of index
    ``v * width + l``. The minimum is a running per-lane minimum across the
    vectors (``select(a < b, a, b)``), then a tree of lane rotations; the label
    is the smallest index whose value equals it (first index on ties): one
    bit per index set by an equality test, and a count of trailing zeros,
    instead of carrying an index vector through the tree. Returns
    ``(index, minimum)`` as i64 and float values; the index is 0 when it is
    not below ``n`` (an i64 value: no value equal to the minimum, i.e. a NaN
    minimum).
    """
    from llvmlite import ir

    i32, i64 = ir.IntType(32), ir.IntType(64)
    width = vectors[0].type.count
    if width * len(vectors) > 64:
        raise ValueError(f"ir_argmin: {len(vectors)} vectors of {width} lanes exceed 64 bits")
    best = vectors[0]
    for values in vectors[1:]:
        best = builder.select(builder.fcmp_ordered("<", values, best), values, best)

    def rotated(vec, half):
        mask = ir.Constant(ir.VectorType(i32, width), [(j + half) % width for j in range(width)])
        return builder.shuffle_vector(vec, vec, mask)

    cur, half = best, width // 2
    while half >= 1:
        sh = rotated(cur, half)
        cur = builder.select(builder.fcmp_ordered("<", cur, sh), cur, sh)
        half //= 2
    first = builder.shuffle_vector(cur, cur, ir.Constant(ir.VectorType(i32, width), [0] * width))
    bits = None
    for v, values in enumerate(vectors):
        eq = builder.bitcast(builder.fcmp_ordered("==", values, first), ir.IntType(width))
        part = builder.zext(eq, i64)
        if v:
            part = builder.shl(part, ir.Constant(i64, v * width))
        bits = part if bits is None else builder.or_(bits, part)
    from numba.core import cgutils

    cttz = cgutils.get_or_insert_function(
        builder.module, ir.FunctionType(i64, [i64, ir.IntType(1)]), "llvm.cttz.i64")
    j = builder.call(cttz, [bits, ir.Constant(ir.IntType(1), 0)])  # 64 when no bit is set
    j = builder.select(builder.icmp_signed("<", j, n), j, ir.Constant(i64, 0))
    return j, builder.extract_element(cur, ir.Constant(i32, 0))


def vector_argmin_kernels():
    """SIMD argmin intrinsics, one per shape of :data:`VECTOR_SHAPES`, or None.

    ``kernel(D, i, c_sq, lo, n)`` returns ``(j, minimum)``: the first ``j`` in
    ``[0, n)`` minimising ``D[i, lo + j] + c_sq[lo + j]`` (``n`` at most the
    shape's lanes times vectors). Each row of ``D[:, lo:hi]`` is loaded as one
    to four vectors of 8 or 16 lanes (masked loads: lanes past ``hi`` read
    nothing and hold infinity),
    ``c_sq`` is added, and a running minimum and its index are kept per lane
    across the vectors (strict ``<``: a lane keeps its first index on ties).
    The minimum is then found by a tree of lane shuffles and
    ``select(a < b, a, b)`` (one ``vminps``/``vminpd`` per level), and the
    label is the smallest index among the lanes holding it (first index on
    ties, as :func:`numpy.argmin`). The sums are the same float additions as
    the scalar loop's, so labels and minima are equal for finite values.
    ``D`` and ``c_sq`` must be C-contiguous. Needs LLVM 17+ (opaque pointers; the
    intrinsic names differ before); older ones get None and the scalar loop.
    """
    try:
        import llvmlite.binding as llvm
        from llvmlite import ir
        from numba import types
        from numba.core import cgutils
        from numba.extending import intrinsic
    except ImportError:  # pragma: no cover - depends on numba's internals
        return None
    if llvm.llvm_version_info[0] < 17:  # pragma: no cover - typed pointers
        return None

    def splat(builder, vec, lane, width):
        i32 = ir.IntType(32)
        mask = ir.Constant(ir.VectorType(i32, width), [lane] * width)
        return builder.shuffle_vector(vec, vec, mask)

    def build(width, chunks):
        @intrinsic
        def vector_argmin(typingctx, D, i, c_sq, lo, n):
            if not (isinstance(D, types.Array) and isinstance(c_sq, types.Array)
                    and D.ndim == 2 and c_sq.ndim == 1 and D.layout == "C"
                    and c_sq.layout == "C" and D.dtype == c_sq.dtype
                    and D.dtype in (types.float32, types.float64)):
                return None
            sig = types.Tuple((types.intp, D.dtype))(D, i, c_sq, lo, n)

            def codegen(context, builder, signature, args):
                Dty, _, cty, _, _ = signature.args
                i1, i32, i64 = ir.IntType(1), ir.IntType(32), ir.IntType(64)
                elty = context.get_value_type(Dty.dtype)
                vty = ir.VectorType(elty, width)
                ity = ir.VectorType(i64, width)
                Da = context.make_array(Dty)(context, builder, args[0])
                ca = context.make_array(cty)(context, builder, args[2])
                lo = builder.sext(args[3], i64) if args[3].type.width < 64 else args[3]
                n = builder.sext(args[4], i64) if args[4].type.width < 64 else args[4]
                pd = cgutils.get_item_pointer(context, builder, Dty, Da, [args[1], lo],
                                              wraparound=False)
                pc = cgutils.get_item_pointer(context, builder, cty, ca, [lo], wraparound=False)
                suffix = "f32" if Dty.dtype == types.float32 else "f64"
                fnty = ir.FunctionType(vty, [pd.type, i32, ir.VectorType(i1, width), vty])
                load = cgutils.get_or_insert_function(
                    builder.module, fnty, f"llvm.masked.load.v{width}{suffix}.p0")
                align = ir.Constant(i32, Dty.dtype.bitwidth // 8)
                inf = ir.Constant(vty, [float("inf")] * width)
                lanes = ir.Constant(ity, list(range(width)))
                n_v = splat(builder, builder.insert_element(ir.Constant(ity, None), n,
                                                            ir.Constant(i32, 0)), 0, width)
                # one to four vectors of `width` centres; lanes past n hold infinity
                vectors = []
                for c in range(chunks):
                    idx = builder.add(lanes, ir.Constant(ity, [c * width] * width))
                    mask = builder.icmp_signed("<", idx, n_v)
                    off = ir.Constant(i64, c * width)
                    v = builder.fadd(
                        builder.call(load, [builder.gep(pd, [off]), align, mask, inf]),
                        builder.call(load, [builder.gep(pc, [off]), align, mask, inf]))
                    vectors.append(v)
                j, mn = ir_argmin(builder, vectors, n)
                return context.make_tuple(builder, signature.return_type, [j, mn])

            return sig, codegen

        return vector_argmin

    return tuple(build(w, c) for w, c in VECTOR_SHAPES)


#: Names of CPUs with AVX-512, for ``NUMBA_CPU_NAME`` without ``NUMBA_CPU_FEATURES``.
_AVX512_CPUS = ("avx512", "cascadelake", "cooperlake", "icelake", "tigerlake", "cannonlake",
                "sapphirerapids", "graniterapids", "emeraldrapids", "znver4", "znver5",
                "x86-64-v4", "rocketlake", "knl", "knm")


def target_features() -> tuple[str, set[str]]:
    """``(cpu name, features)`` of the x86 CPU numba compiles for, as numba decides them.

    numba takes the CPU name from ``NUMBA_CPU_NAME`` and the features from
    ``NUMBA_CPU_FEATURES``; without the latter it uses **the host's features**
    whatever the name (no features for the name ``generic``). So
    ``NUMBA_CPU_NAME=haswell`` alone on an AVX-512 host still emits AVX-512
    code; ``NUMBA_CPU_FEATURES=+avx2`` with it gives AVX2 code. Given
    features are changes (``+f``/``-f``) to the named CPU's own (approximated
    from its name), or to the host's without a name; turning off ``avx``
    turns off ``avx2`` and AVX-512, turning off ``avx2`` turns off AVX-512.
    """
    import os

    import llvmlite.binding as llvm

    name = os.environ.get("NUMBA_CPU_NAME") or "host"
    text = os.environ.get("NUMBA_CPU_FEATURES")
    if text is None and name.lower() == "generic":
        text = ""
    host_name = llvm.get_host_cpu_name() if name == "host" else name
    if text is None or name == "host":
        feats = {k for k, v in llvm.get_host_cpu_features().items() if v}
    else:
        feats = _named_cpu_features(name.lower())
    for flag in (text or "").split(","):
        flag = flag.strip()
        if flag[:1] == "+":
            feats.add(flag[1:])
        elif flag[:1] == "-":
            off = flag[1:]
            feats = {f for f in feats if not (
                f == off or (off == "avx" and f.startswith(("avx2", "avx512", "fma")))
                or (off == "avx2" and f.startswith("avx512")))}
    return host_name, feats


def _named_cpu_features(name: str) -> set[str]:
    """Vector features of an x86 CPU by its LLVM name (the ones the kernels look at)."""
    if any(key in name for key in _AVX512_CPUS):
        return {"avx512f", "avx2", "fma", "avx", "sse4.2"}
    if name.startswith(("generic", "x86-64", "core2", "nehalem", "westmere", "k8")) \
            and name != "x86-64-v3":
        return set()
    return {"avx2", "fma", "avx", "sse4.2"}


@functools.cache
def vector_registers() -> tuple[int, int]:
    """``(count, bytes)`` of the SIMD registers of the CPU numba compiles for.

    AVX-512: 32 of 64 bytes; AVX/AVX2: 16 of 32; AArch64 (NEON): 32 of 16; other
    targets: 16 of 16. x86 features as numba uses them (:func:`target_features`).
    """
    import platform

    machine = platform.machine().lower()
    if machine in ("arm64", "aarch64"):
        return 32, 16
    if machine not in X86_MACHINES:
        return 16, 16
    feats = target_features()[1]
    if "avx512f" in feats:
        return 32, 64
    if "avx" in feats or "avx2" in feats:
        return 16, 32
    return 16, 16


def tile_rows(vectors: int, registers: tuple[int, int] | None = None,
              vector_bytes: int = 64) -> int:
    """Rows per fused tile for ``vectors`` SIMD vectors of centres per row.

    The accumulators (rows x vectors), the centre vectors and the broadcast row
    value must fit in the CPU's vector registers (:func:`vector_registers`); a
    vector of ``vector_bytes`` (16 float32 or 8 float64 lanes) takes
    ``vector_bytes / register bytes`` of them. With 32 registers of 64 bytes
    (AVX-512) this is the tuned table ``{1: 6, 2: 4, 3: 4, 4: 4, 6: 3, 8: 2}``; with
    16 of 32 bytes (AVX2) 6, 2, 1, 1, 1, 1: more rows spill the accumulators to
    memory (timings in benchmarks/RESULTS.md). The rows of a tile do not
    change any row's arithmetic: labels and minima are the same for any height.
    """
    count, size = vector_registers() if registers is None else registers
    per_vector = max(1, vector_bytes // size)
    fits = (count - 1 - vectors * per_vector) // (vectors * per_vector)
    return max(1, min({1: 6, 2: 4, 3: 4, 4: 4, 6: 3, 8: 2}[vectors], fits))



def _vector_fma(builder, vty):
    """The ``llvm.fma`` intrinsic of the float vectors ``vty`` (float32 or float64 lanes)."""
    from llvmlite import ir
    from numba.core import cgutils

    suffix = "f32" if isinstance(vty.element, ir.FloatType) else "f64"
    return cgutils.get_or_insert_function(
        builder.module, ir.FunctionType(vty, [vty, vty, vty]),
        f"llvm.fma.v{vty.count}{suffix}")


def _fma_mac(builder, vty):
    """``mac(a, b, acc)``: ``fma(a, b, acc)`` on the float vectors ``vty``."""
    fma = _vector_fma(builder, vty)
    return lambda a, b, acc: builder.call(fma, [a, b, acc])


#: The running minimum a quantized column tile starts its second best from
#: (above any score, see :func:`column_int_tile_kernel`).
_INT_TOP = 2**31 - 1


def _int16_madd(builder, vty):
    """``mac(a, b, acc)`` on vectors ``vty`` of int32 lanes, each holding two
    int16 (the low half first): ``acc + a.lo * b.lo + a.hi * b.hi`` per lane, in
    int32 arithmetic. On x86 with AVX2 (or AVX-512BW) one ``vpmaddwd`` per
    register's worth of lanes (``llvm.x86.avx2.pmadd.wd``,
    ``llvm.x86.avx512.pmaddw.d.512``; LLVM does not find it in the portable
    form), elsewhere the even and odd halves widened, multiplied and added."""
    from llvmlite import ir
    from numba.core import cgutils

    i16, i32 = ir.IntType(16), ir.IntType(32)
    n = vty.count
    wide = ir.VectorType(i16, 2 * n)
    intrinsic = _x86_madd_intrinsic()
    if intrinsic is not None:
        name, lanes = intrinsic  # int32 lanes per call
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VectorType(i32, lanes),
                                            [ir.VectorType(i16, 2 * lanes)] * 2), name)

        def piece(v, k):
            return builder.shuffle_vector(v, v, ir.Constant(
                ir.VectorType(i32, 2 * lanes), list(range(2 * lanes * k, 2 * lanes * (k + 1)))))

        def mac(a, b, acc):
            a16, b16 = builder.bitcast(a, wide), builder.bitcast(b, wide)
            parts = [builder.call(fn, [piece(a16, k), piece(b16, k)]) for k in range(n // lanes)]
            while len(parts) > 1:  # concatenate the halves back into n lanes
                parts = [builder.shuffle_vector(parts[k], parts[k + 1], ir.Constant(
                    ir.VectorType(i32, 2 * parts[k].type.count),
                    list(range(2 * parts[k].type.count)))) for k in range(0, len(parts), 2)]
            return builder.add(acc, parts[0])

        return mac

    even = ir.Constant(ir.VectorType(i32, n), list(range(0, 2 * n, 2)))
    odd = ir.Constant(ir.VectorType(i32, n), list(range(1, 2 * n, 2)))

    def mac(a, b, acc):
        a16, b16 = builder.bitcast(a, wide), builder.bitcast(b, wide)
        parts = []
        for sel in (even, odd):
            x = builder.sext(builder.shuffle_vector(a16, a16, sel), vty)
            y = builder.sext(builder.shuffle_vector(b16, b16, sel), vty)
            parts.append(builder.mul(x, y))
        return builder.add(acc, builder.add(parts[0], parts[1]))

    return mac


def int16_madd_native() -> bool:
    """Whether the int16 column tiles (:func:`column_int_tile_kernel`) get the
    processor's own multiply-add of int16 pairs (x86 ``vpmaddwd`` with AVX2 or
    AVX-512BW) from the CPU numba compiles for; elsewhere they are correct but
    slower than the float32 tiles."""
    return _x86_madd_intrinsic() is not None


def _x86_madd_intrinsic() -> tuple[str, int] | None:
    """``(name, int32 lanes)`` of the x86 ``vpmaddwd`` intrinsic numba's target
    has (AVX-512BW: 16 lanes, AVX2: 8), or None."""
    import platform

    if platform.machine().lower() not in X86_MACHINES:
        return None
    feats = target_features()[1]
    if "avx512bw" in feats:
        return "llvm.x86.avx512.pmaddw.d.512", 16
    if "avx2" in feats:
        return "llvm.x86.avx2.pmadd.wd", 8
    return None


def _emit_feature_loop(builder, d, rows, cols, vty, name, step, init=None):
    """LLVM IR of a loop over ``d`` features (``d >= 1``) carrying ``rows x cols``
    vector accumulators that start at zero (or at ``init[row][col]``):
    ``step(j, acc)`` emits feature ``j``'s body and returns the new accumulators.
    Returns them after the loop."""
    from llvmlite import ir

    i64 = ir.IntType(64)
    zero = ir.Constant(vty, [0 if isinstance(vty.element, ir.IntType) else 0.0] * vty.count)
    entry = builder.block
    loop = builder.append_basic_block(f"{name}.loop")
    done = builder.append_basic_block(f"{name}.done")
    builder.branch(loop)
    builder.position_at_end(loop)
    j = builder.phi(i64)
    j.add_incoming(ir.Constant(i64, 0), entry)
    acc = [[builder.phi(vty) for _ in range(cols)] for _ in range(rows)]
    for r, row in enumerate(acc):
        for c, a in enumerate(row):
            a.add_incoming(zero if init is None else init[r][c], entry)
    new = step(j, acc)
    nxt = builder.add(j, ir.Constant(i64, 1))
    tail = builder.block
    j.add_incoming(nxt, tail)
    for row, new_row in zip(acc, new, strict=True):
        for a, b in zip(row, new_row, strict=True):
            a.add_incoming(b, tail)
    builder.cbranch(builder.icmp_signed("<", nxt, d), loop, done)
    builder.position_at_end(done)
    return new


def _emit_products(context, builder, Xty, Xa, cdata, row0, d, n_centers, lanes, R, vty, fma,
                   vload):
    """LLVM IR of a tile's products: a loop over the ``d`` features keeping, for
    each of ``R`` rows from ``row0``, its products with ``n_centers`` centres in
    ``n_centers / lanes`` vectors (fused multiply-adds; the centres' values of
    feature ``j`` are ``n_centers`` consecutive elements from ``cdata + j *
    n_centers``). Returns the R x V accumulators after the loop."""
    from llvmlite import ir
    from numba.core import cgutils

    i32, i64 = ir.IntType(32), ir.IntType(64)
    V = n_centers // lanes

    def step(j, acc):
        base = builder.mul(j, ir.Constant(i64, n_centers))
        cv = [vload(cdata, builder.add(base, ir.Constant(i64, v * lanes))) for v in range(V)]
        new = []
        for r in range(R):
            # any layout: the strides of X (a multiply-add for C order)
            xs = builder.load(cgutils.get_item_pointer(
                context, builder, Xty, Xa, [builder.add(row0, ir.Constant(i64, r)), j],
                wraparound=False))
            xv = builder.insert_element(ir.Constant(vty, None), xs, ir.Constant(i32, 0))
            xv = builder.shuffle_vector(xv, xv, ir.Constant(ir.VectorType(i32, lanes),
                                                            [0] * lanes))
            new.append([builder.call(fma, [xv, cv[v], acc[r][v]]) for v in range(V)])
        return new

    return _emit_feature_loop(builder, d, R, V, vty, "fused", step)

def fused_tile_kernels():
    """Fused product-and-argmin tiles, one ``(tile, height)`` pair of intrinsics
    per width of :data:`FUSED_CENTERS`, or None.

    ``tile(X, i, CT, c_sq, labels, best)`` labels rows ``i`` to
    ``i + height(X) - 1`` of ``X`` (n, d): for every row ``x``, the first
    ``j`` minimising ``x . CT[:, j] + c_sq[j]`` and that minimum, where
    ``CT`` is ``(-2 C).T`` padded with zero columns to ``N``
    centres and ``c_sq`` the centres' squared norms padded with infinity (a
    padded centre never wins). A tile of a few rows is computed at once (a
    numba intrinsic in LLVM IR): per feature, the ``N`` centre values are
    loaded as vectors of 16 (float32) or 8 (float64) lanes, each row's value
    is broadcast, and fused multiply-adds keep every row's ``N`` products in
    registers; then the argmin of each row is the tree of
    :func:`vector_argmin_kernels`. BLAS instead writes the products of a
    sub-block to memory and the argmin reads them back, and its kernels are
    made for long inner dimensions (the comparison is in benchmarks/RESULTS.md,
    ``bench_lloyd.py`` with ``DASKMEANS_KERNELS=numba`` and ``numba-plain``).
    ``height(X)`` is the rows of a tile, a compile-time constant of the dtype.
    The products are sums over the features in order, so a
    label can differ from the BLAS path's only where two centres tie to the
    last bits. NaN rows get label 0, as in :func:`vector_argmin_kernels`.
    """
    try:
        import llvmlite.binding as llvm
        from llvmlite import ir
        from numba import types
        from numba.core import cgutils
        from numba.extending import intrinsic
    except ImportError:  # pragma: no cover - depends on numba's internals
        return None
    if llvm.llvm_version_info[0] < 17:  # pragma: no cover - typed pointers
        return None

    def build(n_centers):
        @intrinsic
        def tile(typingctx, X, i, CT, c_sq, labels, best):
            if not (isinstance(X, types.Array) and isinstance(CT, types.Array)
                    and isinstance(c_sq, types.Array) and X.ndim == 2 and CT.ndim == 2
                    and c_sq.ndim == 1 and CT.layout == "C"
                    and c_sq.layout == "C" and X.dtype == CT.dtype == c_sq.dtype
                    and X.dtype in (types.float32, types.float64)):
                return None
            sig = types.void(X, i, CT, c_sq, labels, best)

            def codegen(context, builder, signature, args):
                Xty, _, Cty, sty, lty, bty = signature.args
                i64 = ir.IntType(64)
                lanes = 16 if Xty.dtype == types.float32 else 8
                V = n_centers // lanes
                R = tile_rows(V)
                elty = context.get_value_type(Xty.dtype)
                vty = ir.VectorType(elty, lanes)
                Xa = context.make_array(Xty)(context, builder, args[0])
                Ca = context.make_array(Cty)(context, builder, args[2])
                sa = context.make_array(sty)(context, builder, args[3])
                la = context.make_array(lty)(context, builder, args[4])
                ba = context.make_array(bty)(context, builder, args[5])
                row0 = args[1]
                d = builder.extract_value(Xa.shape, 1)
                fma = _vector_fma(builder, vty)
                align = Xty.dtype.bitwidth // 8

                def vload(ptr, offset):
                    p = builder.gep(ptr, [offset])
                    return builder.load(builder.bitcast(p, vty.as_pointer()), align=align)

                new = _emit_products(context, builder, Xty, Xa, Ca.data, row0, d, n_centers,
                                     lanes, R, vty, fma, vload)
                # the argmin of every row (as in vector_argmin_kernels)
                csq = [vload(sa.data, ir.Constant(i64, v * lanes)) for v in range(V)]
                for r in range(R):
                    vectors = [builder.fadd(new[r][v], csq[v]) for v in range(V)]
                    lab, mn = ir_argmin(builder, vectors, ir.Constant(i64, n_centers))
                    row = builder.add(row0, ir.Constant(i64, r))
                    builder.store(lab, cgutils.get_item_pointer(context, builder, lty, la, [row],
                                                                wraparound=False))
                    builder.store(mn, cgutils.get_item_pointer(context, builder, bty, ba, [row],
                                                               wraparound=False))
                return context.get_dummy_value()

            return sig, codegen

        @intrinsic
        def height(typingctx, X):
            """Rows of one tile for this dtype (a compile-time constant)."""
            if not (isinstance(X, types.Array) and X.dtype in (types.float32, types.float64)):
                return None
            lanes = 16 if X.dtype == types.float32 else 8

            def codegen(context, builder, signature, args):
                return context.get_constant(types.intp, tile_rows(n_centers // lanes))

            return types.intp(X), codegen

        return tile, height

    return tuple(build(k) for k in FUSED_CENTERS)


def column_tile_shape(registers: tuple[int, int] | None = None) -> tuple[int, int]:
    """``(row_vectors, centres)`` of a column tile (:func:`column_tile_kernels`).

    A tile keeps ``row_vectors`` vectors of rows (16 float32 or 8 float64
    lanes, 64 bytes) times ``centres`` accumulators, the rows' vectors, a
    broadcast centre value and the running minima and indices in the CPU's
    vector registers (:func:`vector_registers`): 4 centres of 16 rows with the
    16 registers of 32 bytes of AVX2, 8 centres of 32 rows with the 32 of 64
    bytes of AVX-512, 4 of 16 on NEON's 32 of 16 bytes.
    """
    count, size = vector_registers() if registers is None else registers
    per = max(1, 64 // size)
    rv = 2 if count * size >= 32 * 64 else 1
    cg = max(1, ((count - 1) // per - 3 * rv) // rv)
    return rv, min(cg, 8)


def column_tile_kernels():
    """Product-and-argmin tiles vectorised over rows, as ``(tile, height)``
    intrinsics, or None.

    ``tile(XT, i, C, c_sq, g0, g1, runv, runi)`` runs over rows ``i`` to ``i +
    height(XT) - 1`` of a sub-block given transposed, ``XT`` of shape (d, m)
    (C order, ``m`` a multiple of the height, zero columns as padding), and
    over the groups ``g0`` to ``g1 - 1`` of ``G`` centres (``G`` from
    :func:`column_tile_shape`) of ``C`` (K, d), ``-2`` times the centres padded
    with zero rows to a multiple of ``G``, with ``c_sq`` (K,) their squared
    norms padded with infinity. Per feature, each vector of rows is multiplied
    by the broadcast value of every centre of the group into its own
    accumulator; then, centre by centre in increasing order, ``x . c + |c|^2``
    replaces the running minimum of each row when strictly smaller, with the
    centre's index: the first argmin, with no horizontal reduction. The running
    minima and indices (``runv`` (m,) and ``runi`` (m,) int32) are read at the
    start and written at the end, so that the centres can be taken in chunks
    that stay in cache; the group 0 sets them (centre 0 unconditionally, so a
    NaN row keeps label 0 and a NaN minimum, as on the other paths).
    """
    tile = _column_tile(top2=False)
    if tile is None:  # pragma: no cover - LLVM before 17
        return None
    from numba import types
    from numba.extending import intrinsic

    @intrinsic
    def height(typingctx, XT):
        """Rows of one column tile for this dtype (a compile-time constant)."""
        if not (isinstance(XT, types.Array) and XT.dtype in (types.float32, types.float64)):
            return None
        lanes = 16 if XT.dtype == types.float32 else 8

        def codegen(context, builder, signature, args):
            return context.get_constant(types.intp, lanes * column_tile_shape()[0])

        return types.intp(XT), codegen

    @intrinsic
    def group_size(typingctx, XT):
        """Centres per group of the column tiles (a compile-time constant)."""
        if not isinstance(XT, types.Array):
            return None

        def codegen(context, builder, signature, args):
            return context.get_constant(types.intp, column_tile_shape()[1])

        return types.intp(XT), codegen

    return tile, height, group_size


def column_top2_kernel():
    """The column tile of :func:`column_tile_kernels` that also keeps the
    second-best score of every row, or None.

    ``tile(XT, i, C, c_sq, g0, g1, runv, runi, run2)``: as ``tile`` of
    :func:`column_tile_kernels` (same products, same comparisons, so the same
    labels and minima, bitwise), and ``run2`` (m,) gets the smallest score
    of every row over the centres other than its label: before a score
    replaces the running minimum, the larger of the two is compared with
    ``run2`` (strict ``<``). A score equal to the minimum (a tie) becomes the
    second; padded centres (infinite norms) never enter. The group 0 sets
    ``run2`` to infinity. It costs one comparison and two selects more per
    row and centre than the argmin tile, against the ``d`` multiply-adds of
    both (pruned Lloyd's lower bounds, :mod:`daskmeans.kernels._bounds`).
    """
    return _column_tile(top2=True)


def column_int_tile_kernel():
    """The column tile of :func:`column_top2_kernel` on rows and centres
    quantized to int16, or None.

    ``tile(XT, i, Cq, n_sq, g0, g1, runv, runi, run2)``: ``XT`` (p, m) int32
    holds the rows transposed by pairs of features (each int32 two int16, the
    even feature in the low half), ``Cq`` (K, p) int32 the centres' pairs the
    same way (negated: ``-q(c)``) and ``n_sq`` (K,) int32 their scaled squared
    norms; the products are exact int32 sums of int16 products (``vpmaddwd`` on
    x86) and the score of a row and centre is ``n_sq + x . Cq``. Labels (the
    first strict minimum), minima and second-best scores follow the same
    comparisons as the float tiles, with padded centres given a norm of
    ``2**31 - 1`` (which the group 0 also starts ``run2`` from). The caller
    keeps every sum inside int32 (:mod:`daskmeans.kernels._quantize`).
    """
    return _column_tile(top2=True, quantized=True)


def _column_tile(top2: bool, quantized: bool = False):
    """The ``tile`` intrinsic of :func:`column_tile_kernels` (``top2=False``)
    or of :func:`column_top2_kernel`, or None; with ``quantized`` the int16
    tile of :func:`column_int_tile_kernel`."""
    try:
        import llvmlite.binding as llvm
        from llvmlite import ir
        from numba import types
        from numba.extending import intrinsic
    except ImportError:  # pragma: no cover - depends on numba's internals
        return None
    if llvm.llvm_version_info[0] < 17:  # pragma: no cover - typed pointers
        return None

    dtypes = (types.int32,) if quantized else (types.float32, types.float64)

    def typed(XT, C, c_sq, runv, runi, run2):
        arrays = (XT, C, c_sq, runv, runi) + ((run2,) if top2 else ())
        return (all(isinstance(a, types.Array) and a.layout == "C" for a in arrays)
                and XT.ndim == 2 and C.ndim == 2 and c_sq.ndim == 1 and runv.ndim == 1
                and runi.ndim == 1 and runi.dtype == types.int32
                and XT.dtype == C.dtype == c_sq.dtype == runv.dtype
                and (not top2 or (run2.ndim == 1 and run2.dtype == XT.dtype))
                and XT.dtype in dtypes)

    def codegen(context, builder, signature, args):
        XTty, _, Cty, sty, _, _, vty_a, ity_a = signature.args[:8]
        i32, i64 = ir.IntType(32), ir.IntType(64)
        lanes = 8 if XTty.dtype == types.float64 else 16
        RV, CG = column_tile_shape()
        elty = context.get_value_type(XTty.dtype)
        vty = ir.VectorType(elty, lanes)
        ity = ir.VectorType(i32, lanes)
        XTa = context.make_array(XTty)(context, builder, args[0])
        Ca = context.make_array(Cty)(context, builder, args[2])
        sa = context.make_array(sty)(context, builder, args[3])
        va = context.make_array(vty_a)(context, builder, args[6])
        ia = context.make_array(ity_a)(context, builder, args[7])
        sa2 = context.make_array(signature.args[8])(context, builder, args[8]) if top2 else None

        def as64(v):
            return builder.sext(v, i64) if v.type.width < 64 else v

        i0, g0v, g1v = as64(args[1]), as64(args[4]), as64(args[5])
        d = builder.extract_value(XTa.shape, 0)
        mp = builder.extract_value(XTa.shape, 1)
        mac = _int16_madd(builder, vty) if quantized else _fma_mac(builder, vty)
        align = XTty.dtype.bitwidth // 8

        def ptr(base, offset, ty):
            return builder.bitcast(builder.gep(base, [offset]), ty.as_pointer())

        def splat(scalar, ty):
            v = builder.insert_element(ir.Constant(ty, None), scalar, ir.Constant(i32, 0))
            return builder.shuffle_vector(v, v, ir.Constant(ir.VectorType(i32, lanes),
                                                            [0] * lanes))

        def c64(x):
            return ir.Constant(i64, x)

        row_off = [builder.add(i0, c64(r * lanes)) for r in range(RV)]
        inf = ir.Constant(vty, [_INT_TOP if quantized else float("inf")] * lanes)
        # the running state of a row vector: [minimum, index] (+ [second] with top2)
        width = 3 if top2 else 2
        types_ = [vty, ity, vty][:width]

        def less(a, b):
            if quantized:
                return builder.icmp_signed("<", a, b)
            return builder.fcmp_ordered("<", a, b)

        def group(g, run, first):
            """One group's products and running minima, from the current block."""
            js = [builder.add(builder.mul(g, c64(CG)), c64(c)) for c in range(CG)]
            norms = [splat(builder.load(builder.gep(sa.data, [j])), vty) for j in js]
            # int32 sums are exact in any order: they start from the norms
            init = [[norms[c]] * RV for c in range(CG)] if quantized else None
            new = _emit_column_products(builder, XTa.data, Ca.data, g, d, mp, row_off, RV, CG,
                                        vty, mac, align, init)
            run = [list(s) for s in run]
            for c in range(CG):
                jv = splat(builder.trunc(js[c], i32), ity)
                for r in range(RV):
                    val = new[c][r] if quantized else builder.fadd(new[c][r], norms[c])
                    if first and c == 0:
                        run[r] = [val, jv, inf][:width]
                        continue
                    mn, ix = run[r][0], run[r][1]
                    lt = less(val, mn)
                    if top2:
                        cand = builder.select(lt, mn, val)
                        lt2 = less(cand, run[r][2])
                        run[r][2] = builder.select(lt2, cand, run[r][2])
                    run[r][0] = builder.select(lt, val, mn)
                    run[r][1] = builder.select(lt, jv, ix)
            return run

        def load_state(r):
            out = [builder.load(ptr(va.data, row_off[r], vty), align=align),
                   builder.load(ptr(ia.data, row_off[r], ity), align=4)]
            if top2:
                out.append(builder.load(ptr(sa2.data, row_off[r], vty), align=align))
            return out

        run0 = [load_state(r) for r in range(RV)]
        start = builder.block
        is_first = builder.icmp_signed("==", g0v, c64(0))
        first_blk = builder.append_basic_block("col.first")
        pre = builder.append_basic_block("col.pre")
        builder.cbranch(is_first, first_blk, pre)
        builder.position_at_end(first_blk)
        fr = group(c64(0), run0, True)
        first_end = builder.block
        builder.branch(pre)
        builder.position_at_end(pre)
        gs = builder.phi(i64)
        gs.add_incoming(g0v, start)
        gs.add_incoming(c64(1), first_end)
        pr = [[builder.phi(t) for t in types_] for _ in range(RV)]
        for r in range(RV):
            for s in range(width):
                pr[r][s].add_incoming(run0[r][s], start)
                pr[r][s].add_incoming(fr[r][s], first_end)
        head = builder.append_basic_block("col.head")
        body = builder.append_basic_block("col.body")
        out = builder.append_basic_block("col.out")
        builder.branch(head)
        builder.position_at_end(head)
        g = builder.phi(i64)
        hr = [[builder.phi(t) for t in types_] for _ in range(RV)]
        g.add_incoming(gs, pre)
        for r in range(RV):
            for s in range(width):
                hr[r][s].add_incoming(pr[r][s], pre)
        builder.cbranch(builder.icmp_signed("<", g, g1v), body, out)
        builder.position_at_end(body)
        nr = group(g, hr, False)
        body_end = builder.block
        g.add_incoming(builder.add(g, c64(1)), body_end)
        for r in range(RV):
            for s in range(width):
                hr[r][s].add_incoming(nr[r][s], body_end)
        builder.branch(head)
        builder.position_at_end(out)
        for r in range(RV):
            builder.store(hr[r][0], ptr(va.data, row_off[r], vty), align=align)
            builder.store(hr[r][1], ptr(ia.data, row_off[r], ity), align=4)
            if top2:
                builder.store(hr[r][2], ptr(sa2.data, row_off[r], vty), align=align)
        return context.get_dummy_value()

    if top2:
        @intrinsic
        def column_top2_tile(typingctx, XT, i, C, c_sq, g0, g1, runv, runi, run2):
            if not typed(XT, C, c_sq, runv, runi, run2):
                return None
            return types.void(XT, i, C, c_sq, g0, g1, runv, runi, run2), codegen

        return column_top2_tile

    @intrinsic
    def column_tile(typingctx, XT, i, C, c_sq, g0, g1, runv, runi):
        if not typed(XT, C, c_sq, runv, runi, None):
            return None
        return types.void(XT, i, C, c_sq, g0, g1, runv, runi), codegen

    return column_tile


def _emit_column_products(builder, xt, cdata, g, d, mp, row_off, RV, CG, vty, mac, align,
                          init=None):
    """LLVM IR of a column tile's products: a loop over the ``d`` features of
    the transposed rows ``xt`` (rows of ``mp`` values) keeping, for each of the
    ``RV`` vectors of rows at ``row_off`` and each centre of group ``g`` (``CG``
    consecutive rows of ``cdata``, ``d`` values each), the multiply-adds of the
    rows' values with the centre's broadcast value, from zero and in feature
    order (from ``init[c][r]`` instead of zero when given). Returns the ``CG x
    RV`` accumulators after the loop."""
    from llvmlite import ir

    i32, i64 = ir.IntType(32), ir.IntType(64)
    lanes = vty.count

    def c64(x):
        return ir.Constant(i64, x)

    def step(f, acc):
        xrow = builder.mul(f, mp)
        xv = [builder.load(builder.bitcast(builder.gep(xt, [builder.add(xrow, row_off[r])]),
                                           vty.as_pointer()), align=align) for r in range(RV)]
        cbase = builder.add(builder.mul(builder.mul(g, c64(CG)), d), f)
        new = []
        for c in range(CG):
            cval = builder.load(builder.gep(cdata, [builder.add(cbase, builder.mul(c64(c), d))]))
            cv = builder.insert_element(ir.Constant(vty, None), cval, ir.Constant(i32, 0))
            cb = builder.shuffle_vector(cv, cv, ir.Constant(ir.VectorType(i32, lanes),
                                                            [0] * lanes))
            new.append([mac(xv[r], cb, acc[c][r]) for r in range(RV)])
        return new

    return _emit_feature_loop(builder, d, CG, RV, vty, "col", step, init)

def column_products_kernel():
    """A compiled ``products(XT, i, C, g, P)``: the column tile's products, stored, or None.

    ``P[g * G + c, i + r] = sum_f XT[f, i + r] * C[g * G + c, f]`` for the
    ``c < G`` centres of group ``g`` (``G`` from :func:`column_tile_shape`) and
    the ``height`` rows from ``i`` of the column tiles (see
    :func:`column_tile_kernels`, whose products these are, with the same
    multiply-adds in the same order). ``XT`` (d, m) holds rows transposed, ``C``
    (K, d) the centres (K a multiple of ``G``), ``P`` (K, m) receives the
    products: all C-contiguous, of one dtype (float32 or float64); the caller
    keeps the tile inside them. The greedy k-means++ trials
    (:func:`daskmeans.kernels._numba_loops.seeding_step`) use it.
    """
    try:
        import llvmlite.binding as llvm
        from llvmlite import ir
        from numba import types
        from numba.extending import intrinsic
    except ImportError:  # pragma: no cover - depends on numba's internals
        return None
    if llvm.llvm_version_info[0] < 17:  # pragma: no cover - typed pointers
        return None

    @intrinsic
    def products(typingctx, XT, i, C, g, P):
        if not (all(isinstance(a, types.Array) and a.ndim == 2 and a.layout == "C"
                    for a in (XT, C, P))
                and XT.dtype == C.dtype == P.dtype
                and XT.dtype in (types.float32, types.float64)):
            return None
        sig = types.void(XT, i, C, g, P)

        def codegen(context, builder, signature, args):
            XTty, _, Cty, _, Pty = signature.args
            i64 = ir.IntType(64)
            lanes = 16 if XTty.dtype == types.float32 else 8
            RV, CG = column_tile_shape()
            vty = ir.VectorType(context.get_value_type(XTty.dtype), lanes)
            align = XTty.dtype.bitwidth // 8
            XTa = context.make_array(XTty)(context, builder, args[0])
            Ca = context.make_array(Cty)(context, builder, args[2])
            Pa = context.make_array(Pty)(context, builder, args[4])

            def as64(v):
                return builder.sext(v, i64) if v.type.width < 64 else v

            i0, g = as64(args[1]), as64(args[3])
            d = builder.extract_value(XTa.shape, 0)
            mp = builder.extract_value(XTa.shape, 1)
            pm = builder.extract_value(Pa.shape, 1)
            row_off = [builder.add(i0, ir.Constant(i64, r * lanes)) for r in range(RV)]
            new = _emit_column_products(builder, XTa.data, Ca.data, g, d, mp, row_off, RV, CG,
                                        vty, _fma_mac(builder, vty), align)
            for c in range(CG):
                prow = builder.mul(builder.add(builder.mul(g, ir.Constant(i64, CG)),
                                               ir.Constant(i64, c)), pm)
                for r in range(RV):
                    p = builder.gep(Pa.data, [builder.add(prow, row_off[r])])
                    builder.store(new[c][r], builder.bitcast(p, vty.as_pointer()), align=align)
            return context.get_dummy_value()

        return sig, codegen

    return products


#: Rows and columns of the block that :func:`transpose_kernel` transposes.
TRANSPOSE_LANES = 8


@functools.cache
def transpose_rounds(bits: int) -> tuple[tuple, tuple]:
    """The shuffles of :func:`transpose_kernel` for elements of ``bits`` bits.

    Returns ``(rounds, order)``: three rounds, each eight ``(a, b, mask)``
    (new vector ``i`` takes the lanes ``mask`` of vectors ``a`` and ``b``, the
    lanes of ``b`` numbered from 8), and ``order``, which vector holds column
    ``j`` at the end. Each shuffle either keeps every lane inside its vector's
    128-bit half or moves whole 128-bit halves: on x86 one ``vunpck``,
    ``vshufps``, ``vperm2f128`` or ``vinsertf128`` (AVX2) instead of the
    several that a lane-crossing interleave costs there (the transposes'
    timings are in benchmarks/RESULTS.md). The first round interleaves pairs
    of rows by single lanes (float32: the low and high lane pairs of each
    128-bit half; float64: the even and odd lanes), the second by pairs of
    lanes, the third by halves of the vector. The result is checked here to
    be the transpose (the rounds only move values).
    """
    import numpy as np

    W = TRANSPOSE_LANES
    if bits == 32:
        first = ((0, 8, 1, 9, 4, 12, 5, 13), (2, 10, 3, 11, 6, 14, 7, 15))
    else:
        first = ((0, 8, 2, 10, 4, 12, 6, 14), (1, 9, 3, 11, 5, 13, 7, 15))
    pairs = ((0, 1, 8, 9, 4, 5, 12, 13), (2, 3, 10, 11, 6, 7, 14, 15))
    halves = ((0, 1, 2, 3, 8, 9, 10, 11), (4, 5, 6, 7, 12, 13, 14, 15))
    rounds = (
        tuple((2 * i, 2 * i + 1, first[j])
              for i in range(W // 2) for j in range(2)),
        tuple((a, a + 2, pairs[j]) for a in (0, 1, 4, 5) for j in range(2)),
        tuple((a, a + 4, halves[j]) for j in range(2) for a in range(4)),
    )
    # where every value ends up: lanes hold (row, column) labels
    vecs = [np.array([(r, c) for c in range(W)]) for r in range(W)]
    for rnd in rounds:
        vecs = [np.concatenate([vecs[a], vecs[b]])[list(mask)] for a, b, mask in rnd]
    order = []
    for j in range(W):
        hit = [v for v, lanes in enumerate(vecs)
               if (lanes[:, 1] == j).all() and (lanes[:, 0] == np.arange(W)).all()]
        if len(hit) != 1:  # pragma: no cover - a wrong table above
            raise AssertionError("transpose_rounds: the shuffles do not transpose")
        order.append(hit[0])
    return rounds, tuple(order)


def transpose_kernel():
    """A compiled ``transpose(X, r0, q0, XT, c0)``, or None.

    ``XT[q0 + j, c0 + i] = X[r0 + i, q0 + j]`` for ``i, j`` below
    :data:`TRANSPOSE_LANES` (8): eight rows of eight values are loaded as
    vectors, transposed by three rounds of two-vector shuffles
    (:func:`transpose_rounds`), and stored as eight rows of ``XT``. ``X`` and
    ``XT`` are C-contiguous arrays of one dtype (float32, float64 or int32: the
    shuffles only move values); the caller keeps the block inside both. A scalar
    loop stores one value at a time with the stride of ``XT``'s rows; the
    shuffles stay in registers.
    """
    try:
        import llvmlite.binding as llvm
        from llvmlite import ir
        from numba import types
        from numba.core import cgutils
        from numba.extending import intrinsic
    except ImportError:  # pragma: no cover - depends on numba's internals
        return None
    if llvm.llvm_version_info[0] < 17:  # pragma: no cover - typed pointers
        return None
    W = TRANSPOSE_LANES

    @intrinsic
    def transpose(typingctx, X, r0, q0, XT, c0):
        if not (isinstance(X, types.Array) and isinstance(XT, types.Array)
                and X.ndim == 2 and XT.ndim == 2 and X.layout == "C" and XT.layout == "C"
                and X.dtype == XT.dtype
                and X.dtype in (types.float32, types.float64, types.int32)):
            return None
        sig = types.void(X, r0, q0, XT, c0)

        def codegen(context, builder, signature, args):
            Xty, _, _, Tty, _ = signature.args
            i32, i64 = ir.IntType(32), ir.IntType(64)
            vty = ir.VectorType(context.get_value_type(Xty.dtype), W)
            align = Xty.dtype.bitwidth // 8
            Xa = context.make_array(Xty)(context, builder, args[0])
            Ta = context.make_array(Tty)(context, builder, args[3])

            def as64(v):
                return builder.sext(v, i64) if v.type.width < 64 else v

            r0v, q0v, c0v = as64(args[1]), as64(args[2]), as64(args[4])
            rows = []
            for i in range(W):
                p = cgutils.get_item_pointer(context, builder, Xty, Xa,
                                             [builder.add(r0v, ir.Constant(i64, i)), q0v],
                                             wraparound=False)
                rows.append(builder.load(builder.bitcast(p, vty.as_pointer()), align=align))
            rounds, order = transpose_rounds(Xty.dtype.bitwidth)
            for pairs in rounds:
                rows = [builder.shuffle_vector(rows[a], rows[b],
                                               ir.Constant(ir.VectorType(i32, W), mask))
                        for a, b, mask in pairs]
            rows = [rows[v] for v in order]
            for j in range(W):
                p = cgutils.get_item_pointer(context, builder, Tty, Ta,
                                             [builder.add(q0v, ir.Constant(i64, j)), c0v],
                                             wraparound=False)
                builder.store(rows[j], builder.bitcast(p, vty.as_pointer()), align=align)
            return context.get_dummy_value()

        return sig, codegen

    return transpose
