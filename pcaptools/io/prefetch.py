"""``prefetch(arr, i)`` for numba kernels: ask the CPU to load ``arr[i]``'s cache line now.

The record walks read one header per record, each a cache miss whose address depends on the last
one; streaming the next few KiB in ahead of them makes the walk bandwidth-bound instead of
latency-bound. The decode walk uses it for each packet's first lines.

numba is imported only when a compiled kernel first types the call (see :mod:`pcaptools.jit`): a
kernel run as plain Python (``pcaptools info`` on a small file) calls a no-op instead.
"""

from __future__ import annotations

import functools
from typing import Any

AHEAD_BYTES = 8192
"""How far ahead of its position a record walk streams the file into the cache."""


@functools.cache
def _intrinsic():
    """The llvm.prefetch intrinsic (numba and llvmlite imported here, on first compiled use)."""
    from llvmlite import ir
    from numba.core import cgutils, types
    from numba.extending import intrinsic

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

    return prefetch


class _Prefetch:
    """In a compiled kernel, the intrinsic (numba types this object through ``_numba_type_``); in Python, a no-op."""

    def __call__(self, arr: Any, idx: int) -> None:
        return None

    @property
    def _numba_type_(self):
        from numba.core.registry import cpu_target

        fn = _intrinsic()
        ctx = cpu_target.typing_context
        ctx.refresh()  # take in the intrinsic's typing registration, made when it was defined
        return ctx.resolve_value_type(fn)


prefetch = _Prefetch()
