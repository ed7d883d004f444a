"""Live local variables at a generator's suspension points, from its bytecode.

Two CPUs stopped at the same ``yield`` behave alike when their *live* locals are equal: a
local that every path from there assigns before reading (or never reads) cannot affect
the future.  Keying states by live locals only (as Spin does with dead-variable
reduction) merges states that differ in values already used up: the lock word the fast
path read, a predecessor pointer after linking, the counter value written back.

Classic backward dataflow over the bytecode's control-flow graph.  Cell and free
variables (captured by a predicate) count as always live, and so does every local of a
code object with bytecode this analysis does not know (it then keys all of them).
"""

from __future__ import annotations

import dis
from functools import cache

_JUMPS = frozenset(dis.hasjrel) | frozenset(dis.hasjabs)
_NO_FALLTHROUGH = frozenset({"JUMP_FORWARD", "JUMP_BACKWARD", "JUMP_BACKWARD_NO_INTERRUPT", "JUMP_ABSOLUTE",
                             "RETURN_VALUE", "RETURN_CONST", "RAISE_VARARGS", "RERAISE"})
_UNDERSTOOD_FAST = frozenset({"LOAD_FAST", "STORE_FAST", "DELETE_FAST"})


@cache
def live_after(code) -> dict[int, frozenset[str]] | None:
    """Offset of each instruction -> locals live right after it; None: key every local."""
    instrs = list(dis.get_instructions(code))
    if any("FAST" in i.opname and i.opname not in _UNDERSTOOD_FAST for i in instrs) or {"locals", "vars"} & set(
            code.co_names):
        return None
    index = {ins.offset: n for n, ins in enumerate(instrs)}
    succs: list[list[int]] = []
    for n, ins in enumerate(instrs):
        out = []
        if ins.opname not in _NO_FALLTHROUGH and n + 1 < len(instrs):
            out.append(n + 1)
        if ins.opcode in _JUMPS:
            out.append(index[ins.argval])
        succs.append(out)
    handlers = _handlers(code)
    if handlers is None:
        return None
    for start, end, target, _ in handlers:  # a handler may follow any covered instruction
        for n, ins in enumerate(instrs):
            if start <= ins.offset < end:
                succs[n].append(index[target])
    always = frozenset(code.co_cellvars) | frozenset(code.co_freevars)
    live_in = [frozenset()] * len(instrs)
    out_sets = [frozenset()] * len(instrs)
    changed = True
    while changed:
        changed = False
        for n in range(len(instrs) - 1, -1, -1):
            out = always.union(*(live_in[s] for s in succs[n]))
            ins = instrs[n]
            if ins.opname == "LOAD_FAST":
                new_in = out | {ins.argval}
            elif ins.opname in ("STORE_FAST", "DELETE_FAST"):
                new_in = out - {ins.argval}
            else:
                new_in = out
            out_sets[n] = out
            if new_in != live_in[n]:
                live_in[n] = new_in
                changed = True
    return {ins.offset: out_sets[n] for n, ins in enumerate(instrs)}


def _handlers(code) -> list[tuple[int, int, int, int]] | None:
    """(start, end, handler, stack depth at the handler) of the code's exception table;
    None when it cannot be read."""
    parse = getattr(dis, "_parse_exception_table", None)  # CPython 3.11+, no public equivalent
    if parse is None:
        return None if getattr(code, "co_exceptiontable", b"") else []
    return [(e.start, e.end, e.target, e.depth + int(e.lasti) + 1) for e in parse(code)]


@cache
def live_names(code, lasti: int) -> tuple[str, ...] | None:
    """The locals live when a frame of ``code`` resumes after offset ``lasti``, in a fixed order.

    None (key every local) where the frame also keeps values on its expression stack
    across the yield, such as a ``for`` loop's iterator: those may come from locals that
    are dead by now, and the key would lose what the loop has left to do.
    """
    live = live_after(code)
    if live is None or lasti not in live or _stack_extra(code).get(lasti, 1):
        return None
    return tuple(sorted(live[lasti]))


@cache
def _stack_extra(code) -> dict[int, int]:
    """Offset of each ``YIELD_VALUE`` -> stack entries beyond the yielded value (and a
    ``yield from``'s sub-iterator), by simulating the stack depth along the control flow."""
    instrs = list(dis.get_instructions(code))
    index = {ins.offset: n for n, ins in enumerate(instrs)}
    # a generator's frame starts with the value of its first send() on the stack, which
    # RETURN_GENERATOR's nominal stack effect leaves out
    depth: dict[int, int] = {0: int(instrs[0].opname == "RETURN_GENERATOR")}
    for _, _, target, handler_depth in _handlers(code) or ():
        depth.setdefault(index[target], handler_depth)
    work = list(depth)
    while work:
        n = work.pop()
        ins = instrs[n]
        arg = ins.arg if ins.opcode >= dis.HAVE_ARGUMENT else None
        nexts = []
        if ins.opname not in _NO_FALLTHROUGH and n + 1 < len(instrs):
            nexts.append((n + 1, dis.stack_effect(ins.opcode, arg, jump=False)))
        if ins.opcode in _JUMPS:
            nexts.append((index[ins.argval], dis.stack_effect(ins.opcode, arg, jump=True)))
        for m, effect in nexts:
            if m not in depth:
                depth[m] = depth[n] + effect
                work.append(m)
    extra = {}
    for n, ins in enumerate(instrs):
        if ins.opname == "YIELD_VALUE" and n in depth:
            carried = 2 if n and instrs[n - 1].opname == "SEND" else 1
            extra[ins.offset] = depth[n] - carried
    return extra
