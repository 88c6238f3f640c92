"""CPU kernels of the linear family: a packed, cache-blocked GEMM for float32/float64 and a simple kernel for
integers (also the test oracle).

The float GEMM follows the Goto/BLIS structure. The output ``(BATCH, M, N)`` is split into tasks (batch x row
range x column range) that ``prange`` spreads over the threads, so that small matrices in a large batch fill every
core as well as one large matrix does. A task walks K in blocks of KC; for each it packs its rows of A, up to MC at
a time, into panels of MR rows (one pack of A per K block), then walks its columns in blocks of NC, packs that
KC x NC block of B into panels of NR columns (contiguous, zero-padded; sized to stay in L2), and runs the MR x NR
micro-kernel row panel by row panel, each row panel sweeping every column panel of the block. So each operand is
packed once per task and K block, the A panel stays in L1 while it sweeps the B block from L2, and the output is
written along its rows, which the hardware prefetcher follows (the column-panel-outer order measured 20-40 %
slower: its output rows, a power of two apart, thrash the cache sets). Packing reads the operands through element
strides, so transposed, sliced or batch-broadcast (stride 0) operands are read in place, never copied first.

The micro-kernel's k loop is written as LLVM vector IR (``_tile_loop``), not left to LLVM's loop vectoriser:
for CPUs whose LLVM tuning prefers 256-bit vectors (Intel's AVX-512 cores: numba's host CPU here is
'rocketlake'), the vectoriser emits ymm code, half the FMA width, and spilled the 5 x 48 register tile this
kernel used to have (76 GFLOP/s a core, against OpenBLAS's 160). Explicit <16 x float> operations are always
zmm on AVX-512; the k loop alone runs 166-179 GFLOP/s on one core of this machine (its FMA peak: 2 x 16-lane
FMAs a cycle at ~2.8 GHz), a whole packed block 155-167.
"""

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic, overload
from numba.np.arrayobj import make_array
from numpy.lib.stride_tricks import as_strided

from .._dispatch import register
from .activation import _gelu, _relu
from ._util import Compiled, flat_view, run_parallel, stack_array_codegen, thread_count, vector_bytes, wide_vectors


SERIAL_MACS = 1 << 19  # products of fewer multiply-adds run on the calling thread (float32, kernel alone, us,
# two threads / one: 64^3 12.6 / 10.7, 96^3 13.5 / 18.9)
SMALL_MACS = 1 << 12  # products of at most this many multiply-adds in one K block run ``_matmul_small``
PF_STEPS = 24  # the micro-kernel prefetches B's rows this many k steps ahead (3 KiB of a packed panel). 2 threads,
# float32, x torch in one process, two rounds, none / 12 / 16 / 24 / 32 steps: matmul 2048^3 0.84 0.83 / 0.90 0.89 /
# 0.92 0.86 / 0.91 0.88 / 0.92 0.90; linear 4096x3072 -> 768 0.89 0.91 / 0.98 0.95 / 0.95 0.95 / 0.95 0.95 / 0.92 0.94
ROW_VECTORS = 2  # vector registers a micro-tile row: NR = 2 x 16 float32 (2 x 8 float64) with AVX-512
ACT_NONE, ACT_RELU, ACT_GELU = 0, 1, 2  # the activation a product's epilogue applies (``_activate_rows``)
MR = 12 if vector_bytes() == 64 else 6  # rows of the micro-tile: MR x 2 accumulators + 2 B vectors + 1 broadcast
# fill AVX-512's 32 registers (27) and AVX2's 16 (15)
ROW_BYTES = ROW_VECTORS * vector_bytes()  # one micro-tile row: NR = ROW_BYTES / itemsize
KC_BYTES = 2048  # depth of a packed block, KC = 512 float32 or 256 float64: an A micro-panel (KC x MR, 24 KiB)
# stays in L1 while it sweeps B (one core, 2048^3: 153-155 GFLOP/s at KC 512 or 256, 140 at 384, which cuts
# K = 2048 into blocks of 342)
MC = 3072  # rows of A packed at once (6 MiB in float32 at KC): all of a task's rows in most calls, so that B is
# packed once per K block, and A once too


def _l2_bytes(default=2 << 20):
    """The L2 cache of one core as Linux reports it (``default`` where it does not: another OS, a container
    without sysfs)."""
    try:
        with open("/sys/devices/system/cpu/cpu0/cache/index2/size") as f:
            text = f.read().strip().upper()
    except OSError:
        return default
    scale = {"K": 1 << 10, "M": 1 << 20}.get(text[-1:], 1)
    digits = text.rstrip("KM")
    return int(digits) * scale if digits.isdigit() else default


INPLACE_A_PANELS = 4  # a row-major A is read in place, not packed, when a task has at most this many column
# panels (<= 128 float32 columns): packing A once per K block then costs as much as a quarter of the tiles
# (P @ V of attention, 512 x 512 @ 512 x 64; a bmm item, 128^3)
INPLACE_A_WIDE_PANELS = 16  # ... and up to this many (512 float32 columns) when A's rows are not a multiple of
# 4 KiB apart (rows that are share L1 sets). Zen 5, 2 threads, same process, packed / in place, GFLOP/s: 512^3
# 124 / 134 and 172 / 203, 768^3 196 / 211, 1000^3 188 / 204, 4096 x 768 @ 768 x 512 173 / 187; 1024^3 (4 KiB
# rows) 192 / 184 in place, so it stays packed
DIRECT_B_BYTES = 64 << 10  # a row-major B block spanning at most this is read in place, not packed (one core,
# interleaved: a 64 x 128^3 bmm 105 -> 109 GFLOP/s; at 256^3 and 512^3 reading in place lost 4-5 %, its rows
# 1-2 KiB apart crowding L1's sets)
B_BLOCK_BYTES = max(_l2_bytes() // 2, 256 << 10)  # a packed KC x NC block of B, swept once per A micro-panel,
# stays in L2 beside the A panels streaming through: 1 MiB of this machine's 2 MiB
PACK_STRIP = 8  # rows of a row-major B that ``_pack_b`` copies into every panel before the next rows: panel by
# panel, it read 128 bytes of each of 512 rows 8 KiB apart at a time, a pattern no prefetcher follows
# (one thread, 2048^3 in M halves, share of the time, cycle counter: packing B 7.4-8.5 % -> 3.1 %; 1024^3
# 11-12 % -> 5-6 %; strips of 4 / 16 / all rows: 3.6 / 3.1 / 4.3 %)


def _row_width(x):
    """NR, the micro-tile's width in elements of ``x``'s dtype, as a compile-time constant."""
    return ROW_BYTES // x.itemsize


@overload(_row_width)
def _row_width_impl(x):
    width = ROW_BYTES * 8 // x.dtype.bitwidth

    def impl(x):
        return width

    return impl


@intrinsic
def _tile_buffer(typingctx, like):
    """An uninitialised (MR * NR,) array of ``like``'s dtype on the stack of the calling function: the micro-tile
    as the store to the output reads it. It has no meminfo and must not outlive the function that made it."""
    dtype = like.dtype
    size = MR * ROW_BYTES * 8 // dtype.bitwidth

    def codegen(context, builder, signature, args):
        return stack_array_codegen(context, builder, dtype, size, zero=False)

    return types.Array(dtype, 1, "C")(like), codegen


def _tile_loop(context, builder, dtype, a, astep, lda, kc, b, ldb, mr=MR, taps=None):
    """Emit the micro-kernel's k loop: mr x ROW_VECTORS vectors sum over p < kc of A[r, p] * B[p, v * lanes:]
    (mr = MR but for the short tiles of ``_short_tile_into``).

    a: a pointer to the tile's A[0, 0], A[r, p] at a + p * astep + r * lda (a packed panel: astep = MR, lda = 1;
    a row-major A read in place: astep = 1, lda = its row stride); b: a pointer to B's first row of NR elements,
    its rows ``ldb`` elements apart (NR in a packed panel); or, with ``taps`` (a pointer to kc intp offsets), row p
    at b + taps[p] (``_taps_tile_into``: B read in place through a tap table). kc, astep, lda, ldb: intp values.
    One LLVM loop over p whose accumulators are vector phi values (registers): each step loads ROW_VECTORS vectors
    of B, broadcasts the MR values of ap, and issues MR x ROW_VECTORS ``llvm.fma`` on <lanes x dtype> vectors (24
    ``vfmadd231ps zmm``, 12 broadcasts and 2 loads a step on AVX-512, no vector spills; checked with
    ``inspect_asm``; A's rows addressed from the bases of ROW_BASES: an A read in place keeps its 12 row
    pointers, two of them reloaded from the stack a step), and prefetches B's row PF_STEPS steps ahead: B streams
    from L2 (a packed panel is KC x NR, 64 KiB in float32), and the hardware prefetcher alone left the loop
    waiting on it. Returns the final accumulators, row-major (kc == 0 gives zeros), and a function that points a
    vector at an element address.
    """
    lanes = vector_bytes() * 8 // dtype.bitwidth
    tiles = mr * ROW_VECTORS
    intp = kc.type
    vty = ir.VectorType(context.get_data_type(dtype), lanes)
    align = dtype.bitwidth // 8
    fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vty, [vty, vty, vty]),
                                         f"llvm.fma.v{lanes}f{dtype.bitwidth}")
    zero = ir.Constant(vty, None)
    undef = ir.Constant(vty, ir.Undefined)
    splat_mask = ir.Constant(ir.VectorType(ir.IntType(32), lanes), [0] * lanes)

    def vector_at(base, index):
        return builder.bitcast(cgutils.gep(builder, base, index), vty.as_pointer())

    opaque = ir.InlineAsm(ir.FunctionType(a.type, [a.type]), "", "=r,0")  # an empty asm: LLVM cannot see
    # that the bases are one pointer apart by multiples of lda, so it keeps them (ROW_BASES)
    bases = {k: builder.call(opaque, [cgutils.gep(builder, a, builder.mul(lda, intp(k)))])
             for k in sorted({k for k, _ in ROW_BASES[:mr]})}
    entry = builder.block
    loop = builder.append_basic_block("tile.loop")
    done = builder.append_basic_block("tile.done")
    builder.cbranch(builder.icmp_signed(">", kc, intp(0)), loop, done)

    builder.position_at_end(loop)  # one step p: acc[r][v] += ap[p, r] * bp[p, v * lanes: (v + 1) * lanes]
    p = builder.phi(intp)
    accs = [builder.phi(vty) for _ in range(tiles)]
    if taps is None:
        brow = cgutils.gep(builder, b, builder.mul(p, ldb))
    else:
        brow = cgutils.gep(builder, b, builder.load(cgutils.gep(builder, taps, p)))
    bvecs = [builder.load(vector_at(brow, v * lanes), align=align) for v in range(ROW_VECTORS)]
    # B's row PF_STEPS ahead into L1 (read, keep, data); past the panel's end the hint is harmless, never a fault.
    # Through a tap table, the row of step min(p + PF_STEPS, kc - 1): the table itself is never read past its end.
    if taps is None:
        ahead = cgutils.gep(builder, brow, builder.mul(ldb, intp(PF_STEPS)))
    else:
        step = builder.add(p, intp(PF_STEPS))
        last = builder.sub(kc, intp(1))
        step = builder.select(builder.icmp_signed("<", step, kc), step, last)
        ahead = cgutils.gep(builder, b, builder.load(cgutils.gep(builder, taps, step)))
    for v in range(ROW_VECTORS):
        _prefetch(builder, cgutils.gep(builder, ahead, intp(v * lanes)), write=False)
    steps = []
    for r in range(mr):
        k, s = ROW_BASES[r]
        row = cgutils.gep(builder, bases[k], builder.mul(p, astep))
        ar = builder.load(cgutils.gep(builder, row, builder.mul(lda, intp(s))), align=align)
        splat = builder.shuffle_vector(builder.insert_element(undef, ar, ir.IntType(32)(0)), undef, splat_mask)
        steps += [builder.call(fma, [splat, bvec, accs[r * ROW_VECTORS + v]]) for v, bvec in enumerate(bvecs)]
    following = builder.add(p, intp(1))
    latch = builder.block
    builder.cbranch(builder.icmp_signed("<", following, kc), loop, done)
    p.add_incoming(intp(0), entry)
    p.add_incoming(following, latch)
    for phi, step in zip(accs, steps):
        phi.add_incoming(zero, entry)
        phi.add_incoming(step, latch)

    builder.position_at_end(done)
    finals = [builder.phi(vty) for _ in range(tiles)]
    for final, step in zip(finals, steps):
        final.add_incoming(zero, entry)
        final.add_incoming(step, latch)
    return finals, lanes, align, vector_at


ROW_BASES = [(0, 0), (0, 1), (0, 2), (3, 0), (0, 4), (3, 2), (6, 0), (3, 4), (0, 8), (9, 0), (6, 4), (3, 8)]
# (k, s) of micro-tile row r = k + s: ``_tile_loop`` reads A's row r at base k plus s rows, s in 0, 1, 2, 4, 8, so
# that an A read in place (rows lda apart) needs at most four base pointers, each step's address one x86 operand
# (base + lda * s + p). Given the rows' addresses alone, LLVM strength-reduced them into a chain of 13 adds a k
# step, which the FMA ports shared. 1 thread, float32, same process, GFLOP/s before -> after: 256^3 151 -> 157,
# 512^3 152 -> 158, 4096 x 768 @ 768 x 128 151 -> 158, 64 x 128^3 127 -> 130; a packed A (1024^3) 164 -> 165.


def _prefetch(builder, address, write):
    """Emit a prefetch of the cache line holding ``address`` into L1 (for a later store when ``write``): a hint,
    never a fault, wherever it points."""
    fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), [
        ir.IntType(8).as_pointer(), ir.IntType(32), ir.IntType(32), ir.IntType(32)]), "llvm.prefetch.p0i8")
    builder.call(fn, [builder.bitcast(address, ir.IntType(8).as_pointer()), ir.IntType(32)(int(write)),
                      ir.IntType(32)(3), ir.IntType(32)(1)])


def _operands(a, b):
    """Whether a and b are C-contiguous arrays of one float dtype (A's and B's values, packed or not)."""
    return all(isinstance(x, types.Array) and x.layout == "C" and x.dtype == a.dtype for x in (a, b)) and \
        isinstance(a.dtype, types.Float)


def _pointer_and_steps(context, builder, sig, args):
    """From an (array, at, step, ...) argument run: the pointer to array's element ``at`` and the steps as intp."""
    x = make_array(sig[0])(context, builder, args[0])
    at, *steps = (context.cast(builder, v, t, types.intp) for v, t in zip(args[1:], sig[1:]))
    return (cgutils.gep(builder, x.data, at), *steps)


@intrinsic
def _tile_product(typingctx, a, a_at, astep, lda, kc, b, b_at, ldb, acc):
    """acc[r * NR + j] = sum over p < kc of a[a_at + p * astep + r * lda] * b[b_at + p * ldb + j]: the register
    tile of one micro-kernel call, left in ``acc``, a C-contiguous (MR * NR,) buffer (for the ragged edge tiles
    and the general alpha/beta blend). A's tile is a packed panel (astep = MR, lda = 1) or A's rows themselves
    (astep = 1, lda = row stride); B's tile rows are NR elements ``ldb`` apart: a packed panel (ldb = NR) or B
    itself. Accumulates in the input dtype, each product fused (``_tile_loop``)."""
    if not (_operands(a, b) and isinstance(acc, types.Array) and acc.layout == "C" and acc.dtype == a.dtype):
        return None

    def codegen(context, builder, sig, args):
        out = make_array(acc)(context, builder, args[8])
        arows, a_step, a_rows = _pointer_and_steps(context, builder, sig.args[0:4], args[0:4])
        kcv = context.cast(builder, args[4], sig.args[4], types.intp)
        brows, b_rows = _pointer_and_steps(context, builder, sig.args[5:8], args[5:8])
        finals, lanes, align, vector_at = _tile_loop(context, builder, a.dtype, arows, a_step, a_rows, kcv, brows,
                                                     b_rows)
        for i, final in enumerate(finals):
            builder.store(final, vector_at(out.data, i * lanes), align=align)
        return context.get_dummy_value()

    return types.none(a, a_at, astep, lda, kc, b, b_at, ldb, acc), codegen


def _tile_into_codegen(mr, c, biased=False, indirect=False):
    """The codegen of ``_tile_into`` / ``_short_tile_into`` for an mr-row tile and the output array type c; with
    ``biased``, of ``_tile_into_bias`` / ``_short_tile_into_bias``, whose arguments 12 and 13 are the bias array and
    the index in it of the tile's first column (in place of ``accumulate``); with ``indirect``, of
    ``_taps_tile_into``, whose argument 7 is the tap table (in place of ``ldb``)."""

    def codegen(context, builder, sig, args):
        out = make_array(c)(context, builder, args[8])
        arows, a_step, a_rows = _pointer_and_steps(context, builder, sig.args[0:4], args[0:4])
        kcv = context.cast(builder, args[4], sig.args[4], types.intp)
        if indirect:
            (brows,) = _pointer_and_steps(context, builder, sig.args[5:7], args[5:7])
            b_rows = None
            taps = make_array(sig.args[7])(context, builder, args[7]).data
        else:
            brows, b_rows = _pointer_and_steps(context, builder, sig.args[5:8], args[5:8])
            taps = None
        row0, col0, valid = (context.cast(builder, v, t, types.intp) for v, t in zip(args[9:12], sig.args[9:12]))
        ldc = builder.extract_value(out.shape, 1)
        starts = [cgutils.gep(builder, out.data, builder.add(builder.mul(builder.add(row0, ldc.type(r)), ldc), col0))
                  for r in range(mr)]
        # The tile's output rows (first and last element of each) on their way to L1 while the k loop runs: the
        # store (and the load, accumulating) then finds them there. 2 threads, kernel alone, same process, median
        # of 9 rounds: linear 4096 x 768 -> 3072 / 2304 +0.8-2.5 % / +1.2-4.2 %, bmm 64 x 128^3 +3 %, 2048^3
        # +0.2-1.6 %, the rest within +-1 %.
        for start in starts:
            for j in (0, ROW_BYTES * 8 // c.dtype.bitwidth - 1):
                _prefetch(builder, cgutils.gep(builder, start, ldc.type(j)), write=True)
        finals, lanes, align, vector_at = _tile_loop(context, builder, sig.args[0].dtype, arows, a_step, a_rows,
                                                     kcv, brows, b_rows, mr, taps)

        def store_rows(update):
            for r, start in enumerate(starts):
                with builder.if_then(builder.icmp_signed("<", valid.type(r), valid), likely=True):
                    for v in range(ROW_VECTORS):
                        target = vector_at(start, v * lanes)
                        builder.store(update(target, finals[r * ROW_VECTORS + v], v), target, align=align)

        if biased:
            (bias,) = _pointer_and_steps(context, builder, sig.args[12:14], args[12:14])
            bvecs = [builder.load(vector_at(bias, v * lanes), align=align) for v in range(ROW_VECTORS)]
            store_rows(lambda target, final, v: builder.fadd(final, bvecs[v]))
            return context.get_dummy_value()
        add = context.cast(builder, args[12], sig.args[12], types.boolean)
        with builder.if_else(add) as (then, otherwise):
            with then:
                store_rows(lambda target, final, v: builder.fadd(builder.load(target, align=align), final))
            with otherwise:
                store_rows(lambda target, final, v: final)
        return context.get_dummy_value()

    return codegen


def _tile_into_args(a, b, c):
    return _operands(a, b) and isinstance(c, types.Array) and c.layout == "C" and c.ndim == 2 and c.dtype == a.dtype


@intrinsic
def _tile_into(typingctx, a, a_at, astep, lda, kc, b, b_at, ldb, c, i0, j0, rows, accumulate):
    """c[i0:i0+rows, j0:j0+NR] = (or += when ``accumulate``) the first ``rows`` rows of the tile
    ``_tile_product`` computes, straight from the registers: one vector load/add/store per accumulator (through a
    stack buffer and a scalar-indexed row loop, the store took 30 % of a 128-deep tile's time). c: (M, N)
    C-contiguous output; 1 <= rows <= MR, and the tile's rows < ``rows`` and its NR columns must lie inside c (a
    ragged last row panel skips its missing rows; a ragged column panel takes ``_edge_tile``). Accumulates in the
    input dtype (``_tile_loop``); c + tile is one rounding, as ``_store_row``'s."""
    if not _tile_into_args(a, b, c):
        return None
    return types.none(a, a_at, astep, lda, kc, b, b_at, ldb, c, i0, j0, rows, accumulate), _tile_into_codegen(MR, c)


@intrinsic
def _short_tile_into(typingctx, mr, a, a_at, astep, lda, kc, b, b_at, ldb, c, i0, j0, rows, accumulate):
    """``_tile_into`` with an mr-row register tile (mr a literal below MR) that reads only A's first mr rows: for
    the last panel of a matrix whose rows are not a multiple of MR (64 output channels are 5 panels of 12 and 4
    rows), which a full tile would compute at the full tile's price. 1 <= rows <= mr."""
    if not (isinstance(mr, types.IntegerLiteral) and 0 < mr.literal_value < MR and _tile_into_args(a, b, c)):
        return None
    sig = types.none(mr, a, a_at, astep, lda, kc, b, b_at, ldb, c, i0, j0, rows, accumulate)
    inner = _tile_into_codegen(mr.literal_value, c)

    def codegen(context, builder, signature, args):
        return inner(context, builder, signature.replace(args=signature.args[1:]), args[1:])

    return sig, codegen


@intrinsic
def _taps_tile_into(typingctx, mr, a, a_at, astep, lda, kc, b, b_at, taps, c, i0, j0, rows, accumulate):
    """``_short_tile_into`` (mr a literal up to MR) whose B row p is the NR elements from b[b_at + taps[p]]: B read
    in place through a table of offsets (an int64 C array of at least kc entries), not from a packed panel. The
    convolution tiles: row p is tap p's run of NR pixels in the packed input planes, where a copy into a panel per
    tile cost 8-10 % of a 3x3 stride-2 or 7x7 layer. b_at + taps[p] + NR must stay inside b for every p < kc."""
    if not (isinstance(mr, types.IntegerLiteral) and 0 < mr.literal_value <= MR and _tile_into_args(a, b, c)
            and isinstance(taps, types.Array) and taps.layout == "C" and taps.ndim == 1
            and taps.dtype == types.int64):
        return None
    sig = types.none(mr, a, a_at, astep, lda, kc, b, b_at, taps, c, i0, j0, rows, accumulate)
    inner = _tile_into_codegen(mr.literal_value, c, indirect=True)

    def codegen(context, builder, signature, args):
        return inner(context, builder, signature.replace(args=signature.args[1:]), args[1:])

    return sig, codegen


def _bias_args(a, b, c, bias):
    return _tile_into_args(a, b, c) and isinstance(bias, types.Array) and bias.layout == "C" and bias.ndim == 1 and \
        bias.dtype == a.dtype


@intrinsic
def _tile_into_bias(typingctx, a, a_at, astep, lda, kc, b, b_at, ldb, c, i0, j0, rows, bias, bias_at):
    """``_tile_into`` that stores tile + bias[bias_at:bias_at + NR] (one vector add a row): the first K block of a
    product with a bias along its columns (linear's), so that no pass has to fill the output with the bias first
    and the first block need not read it back. bias: C-contiguous 1-D, the operands' dtype; the caller keeps
    bias_at + NR inside it."""
    if not _bias_args(a, b, c, bias):
        return None
    return types.none(a, a_at, astep, lda, kc, b, b_at, ldb, c, i0, j0, rows, bias, bias_at), \
        _tile_into_codegen(MR, c, True)


@intrinsic
def _short_tile_into_bias(typingctx, mr, a, a_at, astep, lda, kc, b, b_at, ldb, c, i0, j0, rows, bias, bias_at):
    """``_tile_into_bias`` on an mr-row register tile (see ``_short_tile_into``)."""
    if not (isinstance(mr, types.IntegerLiteral) and 0 < mr.literal_value < MR and _bias_args(a, b, c, bias)):
        return None
    sig = types.none(mr, a, a_at, astep, lda, kc, b, b_at, ldb, c, i0, j0, rows, bias, bias_at)
    inner = _tile_into_codegen(mr.literal_value, c, True)

    def codegen(context, builder, signature, args):
        return inner(context, builder, signature.replace(args=signature.args[1:]), args[1:])

    return sig, codegen


@njit(inline="always")
def _rows_tile(a, a_at, astep, lda, kc, b, b_at, ldb, c, i0, j0, rows, accumulate):
    """``_tile_into`` for ``rows`` valid rows, on the shortest tile that holds them: 4 rows (6 loads and 8 FMAs a k
    step, about 4 cycles against a full tile's 12), 8 rows where MR is larger (10 and 16, about 8 cycles), else
    MR. For the last panel of 64 output channels (5 x 12 + 4) or 128 (10 x 12 + 8). On this machine, 2 threads,
    x torch before / after: conv_transpose2d 4x4 s2 C128->64 0.78 0.77 / 0.83 0.82."""
    if rows <= 4:
        _short_tile_into(4, a, a_at, astep, lda, kc, b, b_at, ldb, c, i0, j0, rows, accumulate)
    elif rows <= 8 and MR > 8:
        _short_tile_into(8, a, a_at, astep, lda, kc, b, b_at, ldb, c, i0, j0, rows, accumulate)
    else:
        _tile_into(a, a_at, astep, lda, kc, b, b_at, ldb, c, i0, j0, rows, accumulate)


@njit(inline="always")
def _rows_tile_bias(a, a_at, astep, lda, kc, b, b_at, ldb, c, i0, j0, rows, bias):
    """``_tile_into_bias`` (bias from column j0) on the shortest tile that holds ``rows`` rows, as ``_rows_tile``."""
    if rows <= 4:
        _short_tile_into_bias(4, a, a_at, astep, lda, kc, b, b_at, ldb, c, i0, j0, rows, bias, j0)
    elif rows <= 8 and MR > 8:
        _short_tile_into_bias(8, a, a_at, astep, lda, kc, b, b_at, ldb, c, i0, j0, rows, bias, j0)
    else:
        _tile_into_bias(a, a_at, astep, lda, kc, b, b_at, ldb, c, i0, j0, rows, bias, j0)


@intrinsic
def _copy_row(typingctx, dst, d, src, s):
    """dst[d:d + NR] = src[s:s + NR] (NR = ``_row_width``) as ROW_VECTORS unaligned vector loads and stores: a
    micro-tile row of B gathered from anywhere in ``src``. An indexed loop ``dst[d + j] = src[s + j]`` stays
    scalar (numba wraps a possibly negative index per element), and a slice costs two atomic reference-count
    updates. dst, src: C-contiguous 1-D arrays of one float dtype; the caller keeps both ranges in bounds."""
    if not all(isinstance(x, types.Array) and x.layout == "C" and x.ndim == 1 and x.dtype == dst.dtype
               for x in (dst, src)) or not isinstance(dst.dtype, types.Float):
        return None
    lanes = vector_bytes() * 8 // dst.dtype.bitwidth

    def codegen(context, builder, sig, args):
        to, frm = (make_array(t)(context, builder, v) for t, v in ((sig.args[0], args[0]), (sig.args[2], args[2])))
        at_to, at_frm = (context.cast(builder, v, t, types.intp)
                         for v, t in ((args[1], sig.args[1]), (args[3], sig.args[3])))
        vty = ir.VectorType(context.get_data_type(dst.dtype), lanes)
        align = dst.dtype.bitwidth // 8
        for v in range(ROW_VECTORS):
            off = at_to.type(v * lanes)
            value = builder.load(builder.bitcast(cgutils.gep(builder, frm.data, builder.add(at_frm, off)),
                                                 vty.as_pointer()), align=align)
            builder.store(value, builder.bitcast(cgutils.gep(builder, to.data, builder.add(at_to, off)),
                                                 vty.as_pointer()), align=align)
        return context.get_dummy_value()

    return types.none(dst, d, src, s), codegen


@njit(cache=True)
def _span(size, parts, index, unit):
    """[lo, hi) of part ``index`` when ``size`` is cut into ``parts`` nearly equal runs of whole ``unit``s."""
    units = (size + unit - 1) // unit
    lo = index * units // parts * unit
    hi = min((index + 1) * units // parts * unit, size)
    return lo, hi


@njit(cache=True)
def _even_block(size, limit, unit):
    """The block length that cuts ``size`` into the fewest blocks of at most about ``limit``, all nearly equal and
    whole multiples of ``unit`` (no thin last block that would repack a whole operand for little work)."""
    count = max((size + limit - 1) // limit, 1)
    units = (size + unit - 1) // unit
    return max((units + count - 1) // count, 1) * unit


@njit(cache=True)
def _pack_a(ap, a, off, sm, sk, mc, kc):
    """ap[s, p, r] = A[s * MR + r, p] for the mc x kc block of A at flat offset ``off`` (row stride sm, column
    stride sk); rows past mc are zero so that the micro-kernel always runs a full MR x NR tile. A row-major A
    (sk == 1) moves ``lanes`` steps of a panel at a time through registers (``_transpose_panel``): one thread, a
    hot 128 x 128 float32 block, 9.1 -> 2.7 us. The rest, and the steps past the last whole vector, gather MR
    values a step p and write them as one contiguous row (MR a constant in full panels, so the gather unrolls)."""
    zero = ap.dtype.type(0)
    L = _lanes(ap)
    flat = ap.reshape(-1)
    for s in range((mc + MR - 1) // MR):
        panel = ap[s]
        base = off + s * MR * sm
        rows = min(mc - s * MR, MR)
        p0 = kc // L * L if sk == 1 else 0
        for p in range(0, p0, L):
            _transpose_panel(flat, (s * ap.shape[1] + p) * MR, a, base + p, sm, rows)
        if rows == MR:
            for p in range(p0, kc):
                dst = panel[p]
                src = base + p * sk
                for r in range(MR):
                    dst[r] = a[src + r * sm]
        else:
            for p in range(p0, kc):
                dst = panel[p]
                src = base + p * sk
                for r in range(rows):
                    dst[r] = a[src + r * sm]
                for r in range(rows, MR):
                    dst[r] = zero


def _butterfly_transpose(builder, rows, lanes):
    """The lanes x lanes transpose of ``rows`` (lanes vectors of lanes elements): log2(lanes) stages of two-source
    shuffles, stage k swapping index bit k between row and column (64 shuffles for 16 x 16 float32)."""
    rows = list(rows)
    bit = 1
    while bit < lanes:  # rows[i][e] <-> rows[i + bit][e - bit] where bit is clear in i and set in e
        low = ir.Constant(ir.VectorType(ir.IntType(32), lanes), [e if not e & bit else lanes + e - bit
                                                                 for e in range(lanes)])
        high = ir.Constant(ir.VectorType(ir.IntType(32), lanes), [e + bit if not e & bit else lanes + e
                                                                  for e in range(lanes)])
        for i in range(lanes):
            if not i & bit:
                x, y = rows[i], rows[i + bit]
                rows[i] = builder.shuffle_vector(x, y, low)
                rows[i + bit] = builder.shuffle_vector(x, y, high)
        bit *= 2
    return rows


@intrinsic
def _transpose_panel(typingctx, dst, dst_at, src, src_at, src_stride, rows):
    """dst[dst_at + p * MR + r] = src[src_at + r * src_stride + p] for r < rows, and 0 for rows <= r < MR, for p <
    lanes: ``lanes`` steps of an A micro-panel packed from ``rows`` (1 to MR) rows of a row-major A, in registers.

    dst: the packed A panels, src: A's flat buffer, both C-contiguous of one float dtype; the caller keeps the
    rows' ``lanes`` elements and dst[dst_at:dst_at + lanes * MR] in bounds (a missing row loads row rows - 1 and
    sets it to zero). The rows go in groups of ``lanes`` (12 float32 rows: one group, padded; float64: 8 and 4),
    each group's square transposed (``_butterfly_transpose``) into the group's columns of the ``lanes`` packed
    rows. A short group's vectors are stored whole, their padding landing on the next packed row's first
    elements, which the next row's stores (group order, then row order) overwrite; the last row's short group is
    stored cut to its rows, so nothing is written past the block. 16 float32 steps of a full panel: 12 loads,
    64 shuffles, 16 stores, against the scalar gather's 192 loads and 192 stores.
    """
    if not all(isinstance(x, types.Array) and x.layout == "C" and x.dtype == dst.dtype for x in (dst, src)) or \
            not isinstance(dst.dtype, types.Float):
        return None
    dtype = dst.dtype
    lanes = vector_bytes() * 8 // dtype.bitwidth

    def codegen(context, builder, sig, args):
        out, a = make_array(sig.args[0])(context, builder, args[0]), make_array(sig.args[2])(context, builder, args[2])
        out_at, a_at, stride, count = (context.cast(builder, v, t, types.intp) for v, t in zip(
            (args[1], args[3], args[4], args[5]), (sig.args[1], sig.args[3], sig.args[4], sig.args[5])))
        elem = context.get_data_type(dtype)
        vty = ir.VectorType(elem, lanes)
        align = dtype.bitwidth // 8
        undef = ir.Constant(vty, ir.Undefined)
        last = builder.sub(count, count.type(1))

        def at(base, index, ty):
            return builder.bitcast(cgutils.gep(builder, base, index), ty.as_pointer())

        def row(r):
            there = builder.icmp_signed("<", count.type(r), count)
            index = builder.select(there, count.type(r), last)
            value = builder.load(at(a.data, builder.add(a_at, builder.mul(stride, index)), vty), align=align)
            return builder.select(there, value, ir.Constant(vty, None))

        groups = []
        for g0 in range(0, MR, lanes):
            valid = min(lanes, MR - g0)
            loaded = [row(g0 + r) for r in range(valid)] + [undef] * (lanes - valid)
            groups.append((g0, valid, _butterfly_transpose(builder, loaded, lanes)))
        for p in range(lanes):
            for g0, valid, cols in groups:
                place = builder.add(out_at, out_at.type(p * MR + g0))
                value, ty = cols[p], vty
                if valid < lanes and p == lanes - 1:
                    ty = ir.VectorType(elem, valid)
                    value = builder.shuffle_vector(value, undef, ir.Constant(ir.VectorType(ir.IntType(32), valid),
                                                                             list(range(valid))))
                builder.store(value, at(out.data, place, ty), align=align)
        return context.get_dummy_value()

    return types.none(dst, dst_at, src, src_at, src_stride, rows), codegen


@intrinsic
def _transpose_square(typingctx, dst, dst_at, src, src_at, src_stride):
    """dst[dst_at + p * NR + c] = src[src_at + c * src_stride + p] for p, c < lanes: a lanes x lanes square of a
    column-major B (a linear layer's weight) turned into rows of a packed B panel, in registers.

    dst: the packed B panels (row length NR), src: B's flat buffer, both C-contiguous of one float dtype. Loads
    ``lanes`` vectors (one per column, ``lanes`` consecutive k), transposes them (``_butterfly_transpose``) and
    stores ``lanes`` vectors. A scalar copy of the same square stores one element at a time, 1.3 cycles each
    (0.48 ns), which made the weight's packing a quarter of a linear layer's time.
    """
    if not all(isinstance(x, types.Array) and x.layout == "C" and x.dtype == dst.dtype for x in (dst, src)) or \
            not isinstance(dst.dtype, types.Float):
        return None
    dtype = dst.dtype
    lanes = vector_bytes() * 8 // dtype.bitwidth
    NR = ROW_VECTORS * lanes

    def codegen(context, builder, sig, args):
        out, b = make_array(sig.args[0])(context, builder, args[0]), make_array(sig.args[2])(context, builder, args[2])
        out_at, b_at, stride = (context.cast(builder, v, t, types.intp)
                                for v, t in zip((args[1], args[3], args[4]), (sig.args[1], sig.args[3], sig.args[4])))
        vty = ir.VectorType(context.get_data_type(dtype), lanes)
        align = dtype.bitwidth // 8

        def vector_at(base, index):
            return builder.bitcast(cgutils.gep(builder, base, index), vty.as_pointer())

        rows = [builder.load(vector_at(b.data, builder.add(b_at, builder.mul(stride, stride.type(c)))), align=align)
                for c in range(lanes)]
        for p, row in enumerate(_butterfly_transpose(builder, rows, lanes)):
            builder.store(row, vector_at(out.data, builder.add(out_at, out_at.type(p * NR))), align=align)
        return context.get_dummy_value()

    return types.none(dst, dst_at, src, src_at, src_stride), codegen


def _lanes(x):
    """Elements of ``x``'s dtype in one vector register, as a compile-time constant."""
    return vector_bytes() // x.itemsize


@overload(_lanes)
def _lanes_impl(x):
    lanes = vector_bytes() * 8 // x.dtype.bitwidth

    def impl(x):
        return lanes

    return impl


@njit(cache=True)
def _pack_b(bp, b, off, sk, sn, kc, nc):
    """bp[q, p, c] = B[p, q * NR + c] for the kc x nc block of B at flat offset ``off`` (row stride sk, column
    stride sn); columns past nc are zero. A row-major B (sn == 1) is copied in strips of PACK_STRIP rows, each
    strip read along its rows into every panel (``_copy_row``); a column-major one (sk == 1: a linear layer's
    weight) moves lanes x lanes squares through registers (``_transpose_square``), the ragged rest one element
    at a time."""
    NR = _row_width(bp)
    L = _lanes(bp)
    zero = bp.dtype.type(0)
    if sn == 1:
        full = nc // NR
        flat = bp.reshape(-1)
        for p0 in range(0, kc, PACK_STRIP):
            for q in range(full):
                for p in range(p0, min(p0 + PACK_STRIP, kc)):
                    _copy_row(flat, (q * bp.shape[1] + p) * NR, b, off + p * sk + q * NR)
        cols = nc - full * NR
        if cols:
            panel = bp[full]
            for p in range(kc):
                src = b[off + p * sk + full * NR: off + p * sk + nc]
                dst = panel[p]
                for c in range(cols):
                    dst[c] = src[c]
                for c in range(cols, NR):
                    dst[c] = zero
        return
    for q in range((nc + NR - 1) // NR):
        panel = bp[q]
        cols = min(NR, nc - q * NR)
        p0 = 0
        if sk == 1 and cols == NR:
            p0 = kc // L * L
            for p in range(0, p0, L):
                for c in range(0, NR, L):
                    _transpose_square(bp, (q * bp.shape[1] + p) * NR + c, b, off + (q * NR + c) * sn + p, sn)
        for c in range(cols):
            base = off + (q * NR + c) * sn
            for p in range(p0, kc):
                panel[p, c] = b[base + p * sk]
        for p in range(kc):
            dst = panel[p]
            for c in range(cols, NR):
                dst[c] = zero


@njit(cache=True)
def _store_row(crow, acc, alpha, beta, first, brow):
    """crow[j] = beta * crow[j] + (alpha * acc[j] + brow[j]) on the first K block (crow not read when beta == 0;
    brow empty: no bias term), then crow[j] += alpha * acc[j]."""
    if not first:
        for j in range(crow.shape[0]):
            crow[j] += alpha * acc[j]
    elif brow.shape[0] == 0 and beta == 0:
        for j in range(crow.shape[0]):
            crow[j] = alpha * acc[j]
    elif brow.shape[0] == 0:
        for j in range(crow.shape[0]):
            crow[j] = beta * crow[j] + alpha * acc[j]
    elif beta == 0:
        for j in range(crow.shape[0]):
            crow[j] = alpha * acc[j] + brow[j]
    else:
        for j in range(crow.shape[0]):
            crow[j] = beta * crow[j] + (alpha * acc[j] + brow[j])


@njit(cache=True)
def _edge_tile(a, a_at, astep, lda, kc, b, b_at, ldb, c, i0, j0, alpha, beta, first, bias):
    """c[i0:i0+MR, j0:j0+NR] clipped to c gets alpha * the tile of ``_tile_product``, blended with beta, plus
    bias[j0:j0+NR] on the first K block (bias: (N,), or empty for none): the tile through a stack buffer that
    ``_store_row`` blends into c row by row, for ragged column panels and alpha/beta blends."""
    NR = _row_width(a)
    M, N = c.shape
    acc = _tile_buffer(a)
    _tile_product(a, a_at, astep, lda, kc, b, b_at, ldb, acc)
    j1 = min(j0 + NR, N)
    brow = bias[j0:j1] if bias.shape[0] else bias
    for r in range(min(MR, M - i0)):
        _store_row(c[i0 + r, j0:j1], acc[r * NR:(r + 1) * NR], alpha, beta, first, brow)


@njit(fastmath={"contract"}, error_model="numpy", cache=True)
def _activate_rows(c, i0, j0, rows, cols, act):
    """c[i0:i0 + rows, j0:j0 + cols] = relu or gelu of itself (``act``: ACT_RELU, ACT_GELU; c C-contiguous 2-D),
    the activation's own scalar function, so the values are the separate op's, bit for bit. The epilogue of a
    product's last K block: one row panel's strip of an NC block, just stored by its tiles and still in L1, so
    the activation costs its arithmetic and no pass over memory. Each row as two interleaved halves (two
    independent chains, as the activation kernels' ``_halves``), on 512-bit vectors: per 12 x 32 tile, erf's
    chain of 29 operations left a 4096 x 768 -> 3072 linear + gelu 67.1 ms, against 65.6 unfused; by strips and
    halves 64.9 (the linear alone 61.5)."""
    wide_vectors()
    N = c.shape[1]
    h = cols // 2
    for r in range(rows):
        at = (i0 + r) * N + j0
        xa = flat_view(c, at, h)
        xb = flat_view(c, at + h, h)
        if act == ACT_RELU:
            for j in range(h):
                xa[j] = _relu(xa[j])
                xb[j] = _relu(xb[j])
        else:
            for j in range(h):
                xa[j] = _gelu(xa[j])
                xb[j] = _gelu(xb[j])
        if cols % 2:
            t = flat_view(c, at + cols - 1, 1)
            t[0] = _relu(t[0]) if act == ACT_RELU else _gelu(t[0])


@njit(cache=True)
def _block_kernel(ap, a, a_at, lda, b, b_at, ldb, panel, c, ic, jc, mc, nc, kc, alpha, beta, first, bias, act):
    """c[ic:ic+mc, jc:jc+nc] gets alpha * A @ B for one block of A and one block of B, blended with beta.

    A: packed panels ap (mc / MR, KC, MR) when lda == 0; else its whole MR-row panels are read in place,
    a[a_at + r * lda + p] (k contiguous), and only a ragged last panel comes packed, in ap[0]. B's column panel q
    has its rows of NR at b[b_at + q * panel + p * ldb] (packed panels: panel = KC * NR, ldb = NR; B read in
    place: panel = NR, ldb = B's row stride); c: (M, N); first kc rows / k steps used. Each A panel sweeps every
    B panel, one MR x NR register tile each. Tiles with alpha == 1 and beta 0 or 1 (matmul, a preloaded
    bias, every later K block) whose NR columns lie inside c are stored from the registers (``_tile_into``, which
    skips the missing rows of a ragged last row panel); the rest go through ``_edge_tile``. After each row panel's
    tiles, ``act`` (not ACT_NONE on the last K block alone) is applied to the strip they wrote. The tiles run in this
    one function: a call per tile with its array slices (reference counts, a dozen arguments an array) cost 15 %
    of a 128-deep tile. The packed and in-place calls are written apart so that the packed one's steps are
    constants (12 broadcasts at fixed offsets). bias: (N,) added on the first K block (``_tile_into_bias``, or
    ``_edge_tile``), or empty.
    """
    NR = _row_width(ap)
    M, N = c.shape
    biased = first and bias.shape[0] > 0
    fast = alpha == 1 and (beta == 0 if biased else not first or beta == 0 or beta == 1)
    accumulate = not first or beta == 1
    stride = ap.shape[1] * MR  # elements from one packed panel to the next
    for s in range((mc + MR - 1) // MR):
        i0 = ic + s * MR
        rows = min(MR, M - i0)
        inplace = lda != 0 and (s + 1) * MR <= mc
        at = a_at + s * MR * lda if inplace else (s if lda == 0 else 0) * stride
        for q in range((nc + NR - 1) // NR):
            j0 = jc + q * NR
            bq = b_at + q * panel
            full = fast and j0 + NR <= N
            if biased and full and inplace:
                _tile_into_bias(a, at, 1, lda, kc, b, bq, ldb, c, i0, j0, rows, bias, j0)
            elif biased and full:
                _rows_tile_bias(ap, at, MR, 1, kc, b, bq, ldb, c, i0, j0, rows, bias)
            elif inplace and full:
                _tile_into(a, at, 1, lda, kc, b, bq, ldb, c, i0, j0, rows, accumulate)
            elif inplace:
                _edge_tile(a, at, 1, lda, kc, b, bq, ldb, c, i0, j0, alpha, beta, first, bias)
            elif full:
                _rows_tile(ap, at, MR, 1, kc, b, bq, ldb, c, i0, j0, rows, accumulate)
            else:
                _edge_tile(ap, at, MR, 1, kc, b, bq, ldb, c, i0, j0, alpha, beta, first, bias)
        if act != ACT_NONE:
            _activate_rows(c, i0, jc, rows, min(nc, N - jc), act)


@njit(cache=True)
def _reads_a_in_place(cols, row_step, col_step, itemsize):
    """Whether a task of ``cols`` output columns reads A's rows in place instead of packing them (A's element
    strides row_step, col_step; see INPLACE_A_PANELS)."""
    NR = ROW_BYTES // itemsize
    return col_step == 1 and row_step > 0 and (cols <= INPLACE_A_PANELS * NR or (
        cols <= INPLACE_A_WIDE_PANELS * NR and row_step * itemsize % 4096 != 0))


@njit(parallel=True, cache=True)
def _matmul_kernel(out, a, a_strides, b, b_strides, K, alpha, beta, tiles_m, tiles_n, bias, act):
    """out[n] = act(alpha * A[n] @ B[n] + beta * out[n] (+ bias[j] on column j)), blocked and packed; out not read
    when beta == 0; bias: (N,) C-contiguous, or empty for none; act: ACT_NONE, ACT_RELU or ACT_GELU.

    out: (BATCH, M, N) C-contiguous; a, b: flat buffers holding A (BATCH, M, K) and B (BATCH, K, N) at element
    strides ``a_strides`` / ``b_strides`` (batch, row, column; batch stride 0 broadcasts). One prange iteration is
    one task: batch item n, row range tm of ``tiles_m`` and column range tn of ``tiles_n``, computed in full with
    its own packing buffers. A small row-major B (task columns whole NR panels, K block spanning at most
    DIRECT_B_BYTES: a 128^3 bmm item) is read in place rather than packed: its rows are already NR-contiguous
    and stay in cache (packing B was 13 % of a 128^3 item's time).
    K == 0 still makes one pass, which writes beta * out. Accumulates in the input dtype: within a KC block in
    registers, across blocks in out.
    """
    BATCH, M, N = out.shape
    NR = _row_width(out)
    kcb = _even_block(K, KC_BYTES // out.itemsize, 1)
    NC = B_BLOCK_BYTES // (kcb * out.itemsize)  # a shallow K leaves room for more columns in the block
    per_item = tiles_m * tiles_n
    for t in prange(BATCH * per_item):
        n = t // per_item
        m0, m1 = _span(M, tiles_m, (t % per_item) // tiles_n, MR)
        n0, n1 = _span(N, tiles_n, t % tiles_n, NR)
        mcb = _even_block(m1 - m0, MC, MR)
        direct = b_strides[2] == 1 and n1 > n0 and (n1 - n0) % NR == 0 and \
            kcb * b_strides[1] * out.itemsize <= DIRECT_B_BYTES
        direct_a = _reads_a_in_place(n1 - n0, a_strides[1], a_strides[2], out.itemsize)
        ncb = n1 - n0 if direct else _even_block(n1 - n0, NC, NR)
        ap = np.empty((1 if direct_a else mcb // MR, kcb, MR), out.dtype)
        bp = np.empty((0 if direct else ncb // NR, kcb, NR), out.dtype)
        c = out[n]
        for pc in range(0, max(K, 1), kcb):
            kc = min(kcb, K - pc)
            for ic in range(m0, m1, mcb):
                mc = min(mcb, m1 - ic)
                a_at = n * a_strides[0] + ic * a_strides[1] + pc * a_strides[2]
                tail = mc % MR if direct_a else mc  # rows packed: a ragged last panel, or all
                if tail:
                    _pack_a(ap, a, a_at + (mc - tail) * a_strides[1], a_strides[1], a_strides[2], tail, kc)
                lda = a_strides[1] if direct_a else 0
                for jc in range(n0, n1, ncb):
                    nc = min(ncb, n1 - jc)
                    b_at = n * b_strides[0] + pc * b_strides[1] + jc * b_strides[2]
                    if direct:
                        _block_kernel(ap, a, a_at, lda, b, b_at, b_strides[1], NR, c, ic, jc, mc, nc, kc, alpha,
                                      beta, pc == 0, bias, act if pc + kc >= K else ACT_NONE)
                    else:
                        _pack_b(bp, b, b_at, b_strides[1], b_strides[2], kc, nc)
                        _block_kernel(ap, a, a_at, lda, bp, 0, NR, kcb * NR, c, ic, jc, mc, nc, kc, alpha, beta,
                                      pc == 0, bias, act if pc + kc >= K else ACT_NONE)


@njit(parallel=True, cache=True)
def _matmul_naive(out, a, b, alpha, beta):
    """out[n] = alpha * a[n] @ b[n] + beta * out[n] (out not read when beta == 0), the plain triple loop.

    out: (BATCH, M, N); a: (BATCH or 1, M, K); b: (BATCH or 1, K, N); a batch of 1 broadcasts. One prange
    iteration computes one output row into a row accumulator of out's dtype (int64 for integers, where products
    wrap around as in torch). The kernel for integer inputs, and the oracle the blocked kernel is tested against.
    """
    BATCH, M, N = out.shape
    K = a.shape[2]
    for t in prange(BATCH * M):
        n = t // M
        i = t % M
        arow = a[n if a.shape[0] > 1 else 0, i]
        bn = b[n if b.shape[0] > 1 else 0]
        acc = np.zeros(N, out.dtype)
        for k in range(K):
            aik = arow[k]
            brow = bn[k]
            for j in range(N):
                acc[j] += aik * brow[j]
        crow = out[n, i]
        if beta == 0:
            for j in range(N):
                crow[j] = alpha * acc[j]
        else:
            for j in range(N):
                crow[j] = beta * crow[j] + alpha * acc[j]


@intrinsic
def _fma(typingctx, a, b, c):
    """a * b + c rounded once (``llvm.fma``), as each step of the micro-kernel's k loop computes it."""
    if not (a == b == c and isinstance(a, types.Float)):
        return None

    def codegen(context, builder, sig, args):
        lty = context.get_value_type(sig.return_type)
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(lty, [lty] * 3), f"llvm.fma.f{a.bitwidth}")
        return builder.call(fn, args)

    return a(a, b, c), codegen


@njit(cache=True)
def _matmul_small(out, a, a_strides, b, b_strides, K, alpha, beta, bias):
    """``_matmul_kernel``'s result, bit for bit, for products of one K block whose rows hold at most MR * NR values:
    no tasks, no packing, no tiles. Operands as ``_matmul_kernel`` takes them (K >= 1 here).

    Each output row is a (N,) accumulator on the stack (``_tile_buffer``); k outer, j inner, every accumulator a
    chain of fused multiply-adds in k order from zero (the micro-kernel's own chain), then blended into out as
    ``_store_row`` blends a first K block (alpha, beta, bias), which is what the tile kernel's stores compute too.
    The tile kernel spends 1-7 us on a tiny product (two buffer allocations, A and B packed with zero padding to a
    12 x 32 tile, the ragged edge through a stack buffer), float32, us, tile kernel / this: (1, 128) -> 10 4.1 /
    1.0, 8 x (8 x 8) 7.1 / 2.9, 8 x 8 x 8 1.3 / 0.7, 4 x (8 x 8) -> 16 3.7 / 2.3, (1, 128) -> 32 1.8 / 1.8 (the
    end of the range: SMALL_MACS)."""
    BATCH, M, N = out.shape
    acc = _tile_buffer(out)
    flat = out.reshape(-1)  # rows addressed by offset: a view a row cost 0.08 us each (8 x (8 x 8): 5.8 us)
    zero = out.dtype.type(0)
    biased = bias.shape[0] > 0
    for n in range(BATCH):
        for i in range(M):
            for j in range(N):
                acc[j] = zero
            ai = n * a_strides[0] + i * a_strides[1]
            for k in range(K):
                av = a[ai + k * a_strides[2]]
                bk = n * b_strides[0] + k * b_strides[1]
                for j in range(N):
                    acc[j] = _fma(av, b[bk + j * b_strides[2]], acc[j])
            o = (n * M + i) * N
            for j in range(N):  # _store_row's first-block blend, element by element
                if not biased and beta == 0:
                    flat[o + j] = alpha * acc[j]
                elif not biased:
                    flat[o + j] = beta * flat[o + j] + alpha * acc[j]
                elif beta == 0:
                    flat[o + j] = alpha * acc[j] + bias[j]
                else:
                    flat[o + j] = beta * flat[o + j] + (alpha * acc[j] + bias[j])


def _flat(x):
    """A read-only flat view of the memory under the array ``x``, and x's strides in elements."""
    item = x.itemsize
    if x.size == 0:
        return as_strided(np.zeros(1, x.dtype), (1,), (item,), writeable=False), (0, 0, 0)
    st = x.strides
    if x.flags.c_contiguous:  # the common operand, cheaply (1.4 -> 0.6 us): a size-1 dim's stride is never used
        flat = x.reshape(-1)
        flat.flags.writeable = False
        return flat, tuple([s // item for s in st])
    el = [s // item for s in st]  # list comprehensions, not generators: 0.9 against 1.6 us a call on small inputs
    if min(st) < 0 or [e * item for e in el] != list(st):
        x = np.ascontiguousarray(x)
        el = [s // item for s in x.strides]
    strides = tuple(el)
    flags = x.flags
    if flags.c_contiguous or flags.f_contiguous:
        flat = x.ravel(order="K")  # a view, and much cheaper to make than as_strided's
        flat.flags.writeable = False
        return flat, strides
    extent = 1 + sum((d - 1) * s for d, s in zip(x.shape, strides))
    return as_strided(x, (extent,), (item,), writeable=False), strides


_MATMUL_ENTRIES = {}  # dtype -> the ``Compiled`` entries of _matmul_kernel
_SMALL_ENTRIES = {}  # dtype -> the compiled entry of _matmul_small


def _small_entry(dt, K, N, macs):
    """The compiled entry of ``_matmul_small`` for float dtype ``dt`` (its signature: ``_matmul_entry``'s less the
    task split) when a product of ``macs`` multiply-adds, depth K and N columns is small enough for it, else None."""
    itemsize = np.dtype(dt).itemsize
    if not (macs <= SMALL_MACS and 0 < K <= KC_BYTES // itemsize and N <= MR * ROW_BYTES // itemsize):
        return None
    fn = _SMALL_ENTRIES.get(dt)
    if fn is None:
        f = types.float32 if dt == np.float32 else types.float64
        flat = types.Array(f, 1, "C", readonly=True)
        st = types.UniTuple(types.int64, 3)
        fn = _SMALL_ENTRIES[dt] = _matmul_small.compile((types.Array(f, 3, "C"), flat, st, flat, st, types.int64, f,
                                                         f, types.Array(f, 1, "C")))
    return fn


def _matmul_entry(dt):
    """The compiled entries (``Compiled``: parallel and serial) of ``_matmul_kernel`` for float dtype ``dt``: one
    signature (A's and B's flat buffers read-only, as ``_flat`` makes them), called without the dispatcher's typing
    of its eleven arguments (3.0 -> 1.6 us of an 8 x 8 product's 12 us)."""
    fn = _MATMUL_ENTRIES.get(dt)
    if fn is None:
        f = types.float32 if dt == np.float32 else types.float64
        flat = types.Array(f, 1, "C", readonly=True)
        st = types.UniTuple(types.int64, 3)
        fn = _MATMUL_ENTRIES[dt] = Compiled(_matmul_kernel, (types.Array(f, 3, "C"), flat, st, flat, st, types.int64,
                                                             f, f, types.int64, types.int64, types.Array(f, 1, "C"),
                                                             types.int64))
    return fn


def _tiles(batch, M, N, NR, threads, a_steps=(0, 0)):
    """Split each (M, N) output into tiles_m x tiles_n tasks so that the tasks fill ``threads`` evenly: the
    smallest split for which batch x split is a multiple of ``threads`` (or at least 8 tasks a thread). Splitting
    M packs B again per part; splitting N packs A again, unless its parts read A in place (``_reads_a_in_place``
    on A's element steps ``a_steps``, row and column), and leaves each part A's packed rows in full. So the split
    goes along N where its parts read A in place or N is more than twice M, else along M (2 threads, float32,
    GFLOP/s, split M / N / torch, same process: 1024^3 298 / 274 / 300, 2048^3 303 / 294 / 323, 512 x 1024 @ 1024
    x 1024 289 / 282 / 305; 256 x 1024 @ 1024 x 2048 271 / 285 / 281, 128 x 1024 @ 1024 x 4096 235 / 281 / 275)."""
    split = 1
    while (batch * split) % threads and batch * split < 8 * threads:
        split += 1
    if N > 2 * M or _reads_a_in_place(-(-N // split), a_steps[0], a_steps[1], ROW_BYTES // NR):
        tiles_n = min(split, -(-N // NR))
        return min(-(-split // tiles_n), -(-M // MR)), tiles_n
    tiles_m = min(split, -(-M // MR))
    return tiles_m, min(-(-split // tiles_m), -(-N // NR))


@register("matmul", "cpu")
def matmul(out, a, b, alpha=1, beta=0, bias=None):
    """out = alpha * a @ b + beta * out (+ bias), batched (out not read when beta == 0).

    out: (BATCH, M, N) C-contiguous; a: (BATCH, M, K), b: (BATCH, K, N), any strides (stride 0 broadcasts); bias:
    (N,) added as the first K block's tiles are stored (float dtypes only), or None. float32/float64 run the
    blocked kernel on the operands in place; integers run the simple kernel in int64 (wrapping products and sums
    reduce to out's dtype exactly as torch's do).
    """
    if out.dtype.kind == "f":
        (af, a_st), (bf, b_st) = _flat(a), _flat(b)
        macs = out.size * a.shape[2]
        tiles_m, tiles_n = _tiles(out.shape[0], out.shape[1], out.shape[2], ROW_BYTES // out.itemsize,
                                  1 if macs < SERIAL_MACS else thread_count(), a_st[1:])
        bias = np.empty(0, out.dtype) if bias is None else np.ascontiguousarray(bias, out.dtype)
        small = _small_entry(out.dtype, a.shape[2], out.shape[2], macs)
        if small is not None:
            small(out, af, a_st, bf, b_st, a.shape[2], out.dtype.type(alpha), out.dtype.type(beta), bias)
            return
        run_parallel(_matmul_entry(out.dtype), macs, out, af, a_st, bf, b_st, a.shape[2],
                     out.dtype.type(alpha), out.dtype.type(beta), tiles_m, tiles_n, bias, ACT_NONE,
                     below=SERIAL_MACS)
        return
    wide = np.asarray(out, dtype=np.int64) if beta else np.empty(out.shape, np.int64)
    _matmul_naive(wide, _batch_or_one(a).astype(np.int64), _batch_or_one(b).astype(np.int64), np.int64(alpha),
                  np.int64(beta))
    np.copyto(out, wide, casting="unsafe")


_UNITS = {}  # dtype -> (1, 0) of that dtype: matmul_plain's alpha and beta
_ACTS = {None: ACT_NONE, "relu": ACT_RELU, "gelu": ACT_GELU}  # matmul_plain's act -> the kernel's


@register("matmul_plain", "cpu")
def matmul_plain(out, a, b, transposed=False, bias=None, act=None):
    """out (1, M, N) = act(a @ b (+ bias)): the fast paths' product of C-contiguous float operands of out's dtype, a
    (..., K) with its leading dims folded into M, b (K, N), or (N, K) read transposed when ``transposed`` (linear's
    weight); bias (N,) C-contiguous or None; act: None, "relu" or "gelu", the epilogue's activation (``_activate_rows``;
    a product small enough for ``_matmul_small`` takes it as a pass over out). The same kernel, blocking and thread
    split as ``matmul`` on the same operands; the strides come from the shapes instead of ``_flat``, and a serial
    product skips ``_tiles`` (us per call through nbops.linear (8, 64) -> 64: 10.2 -> 6.1; matmul 8 x 8: 8.5 -> 4.8).
    The compiled entry's read-only array types are a typing matter: it takes the writeable 1-D views as they are. It
    picks the serial or parallel entry itself, as ``run_parallel`` would: passing the eleven arguments through that call
    measured 0.4-0.9 us more a call (matmul 8 x 8 4.9-5.0 -> 5.4-5.8)."""
    M, N = out.shape[1], out.shape[2]
    K = a.shape[-1]
    macs = M * N * K
    act = _ACTS[act]
    units = _UNITS.get(out.dtype)
    if units is None:
        units = _UNITS[out.dtype] = (out.dtype.type(1), out.dtype.type(0))
    entries = _matmul_entry(out.dtype)
    b_st = (0, 1, K) if transposed else (0, N, 1)
    bias = _NO_BIAS[out.dtype.itemsize == 8] if bias is None else bias
    small = _small_entry(out.dtype, K, N, macs)
    if small is not None:
        small(out, a.reshape(-1), (0, K, 1), b.reshape(-1), b_st, K, *units, bias)
        if act != ACT_NONE:
            _activate_rows(out[0], 0, 0, M, N, act)
        return
    if macs < SERIAL_MACS:
        entries.serial()(out, a.reshape(-1), (0, K, 1), b.reshape(-1), b_st, K, *units, 1, 1, bias, act)
        return
    tiles_m, tiles_n = _tiles(1, M, N, ROW_BYTES // out.itemsize, thread_count(), (K, 1))
    entries.parallel()(out, a.reshape(-1), (0, K, 1), b.reshape(-1), b_st, K, *units, tiles_m, tiles_n, bias,
                       act)


_NO_BIAS = (np.empty(0, np.float32), np.empty(0, np.float64))


def _batch_or_one(x):
    """``x`` with a broadcast (stride 0) batch cut to one item, C-contiguous."""
    return np.ascontiguousarray(x[:1] if x.shape[0] > 1 and x.strides[0] == 0 else x)
