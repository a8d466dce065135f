"""``prefetch(arr, i)`` for numba kernels: ask the CPU to load ``arr[i]``'s cache line now.

The record walks read one header per record, each a cache miss whose address depends on the last
one; streaming the next few KiB in ahead of them makes the walk bandwidth-bound instead of
latency-bound. The decode walk uses it for each packet's first lines.
"""

from __future__ import annotations

from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic

AHEAD_BYTES = 8192
"""How far ahead of its position a record walk streams the file into the cache."""


@intrinsic
def prefetch(typingctx, arr, idx):
    """Ask the CPU to load ``arr[idx]``'s cache line now (llvm.prefetch; no fault on any address)."""
    sig = types.void(arr, types.int64)

    def codegen(context, builder, signature, args):
        ary = context.make_array(signature.args[0])(context, builder, args[0])
        i8p, i32 = ir.IntType(8).as_pointer(), ir.IntType(32)
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]),
                                            "llvm.prefetch.p0")  # fmt: skip
        builder.call(fn, [builder.bitcast(builder.gep(ary.data, [args[1]]), i8p), i32(0), i32(3), i32(1)])
        return context.get_dummy_value()

    return sig, codegen
