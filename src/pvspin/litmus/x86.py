"""X86 litmus tests (herd's ``X86`` format, Intel operand order) into guest code.

The instructions of ``../shared/litmus/x86`` and the locked read-modify-writes herd knows,
in upper or lower case, immediates with or without ``$``:

==========================  ======================================================
instruction                 guest code (kernel spelling, ``arch/x86``)
==========================  ======================================================
``MOV [x],$1`` / ``,EAX``   ``WRITE_ONCE(x, v)``: STORE, RELAXED (a plain x86 store)
``MOV EAX,[x]``             ``READ_ONCE(x)``: LOAD, RELAXED
``MOV EAX,$1`` / ``,EBX``   register move, no operation
``MFENCE``                  ``smp_mb()``
``LFENCE`` / ``SFENCE``     ``smp_rmb()`` / ``smp_wmb()`` (no effect on ordinary memory under TSO)
``XCHG [x],EAX`` (either    ``xchg(x, EAX)``: XCHG, FULL (implicitly locked); EAX gets the old value
order), ``LOCK XCHG``
``LOCK XADD [x],EAX``       ``atomic_fetch_add``: FETCH_ADD, FULL; EAX gets the old value
``LOCK ADD/SUB/OR/AND``     FETCH_ADD / FETCH_ADD of the negation / FETCH_OR / FETCH_ANDNOT of the
``[x],$i`` or ``,EAX``      complement, FULL, result discarded
``LOCK INC/DEC [x]``        FETCH_ADD of 1 / -1, FULL
``LOCK CMPXCHG [x],EBX``    ``cmpxchg(x, EAX, EBX)``: CMPXCHG, FULL; EAX gets the old value
==========================  ======================================================

Registers are the 32-bit general registers (EAX ... EDI, EBP); they hold the test's
values unchanged (herd compares them as integers, so they are not truncated to 32 bits).
Anything else -- an unlocked read-modify-write of memory, register-indirect addressing,
other instructions -- is :class:`~.source.Unsupported`, with the instruction and its line.
"""

from __future__ import annotations

import re

from ..machine import ops as o
from .cond import MASK64
from .source import Malformed, Source, Unsupported, number
from .test import LitmusTest, complete_locations, parse_init

REGISTERS = ("EAX", "EBX", "ECX", "EDX", "ESI", "EDI", "EBP")

_MEM = re.compile(r"^\[\s*([A-Za-z_]\w*)\s*\]$")
_IMM = re.compile(r"^\$?(-?(?:0x[0-9a-fA-F]+|\d+))$")
_LOCKED = {"XCHG": o.XCHG, "XADD": o.FETCH_ADD, "ADD": o.FETCH_ADD, "SUB": o.FETCH_ADD, "OR": o.FETCH_OR,
           "AND": o.FETCH_ANDNOT, "INC": o.FETCH_ADD, "DEC": o.FETCH_ADD, "CMPXCHG": o.CMPXCHG}
_FENCES = {"MFENCE": o.MB, "LFENCE": o.RMB, "SFENCE": o.WMB}

# compiled instructions: tuples whose first item is one of these
ST, LD, MOV, FENCE, RMW = range(5)


class X86Thread:
    """One X86 thread's compiled instructions and its guest code."""

    def __init__(self, code: list[tuple], registers: dict[str, int | str]):
        self.code = code
        self.registers = registers
        self.stores = sum(1 for ins in code if ins[0] == ST)

    def program(self, inst, tid: int):
        """Run the instructions in order (X86 litmus tests have no branches); return the registers."""
        regs = {name: inst.value(v) for name, v in self.registers.items()}
        code = self.code
        refs = inst.refs
        pc = 0
        while pc < len(code):
            ins = code[pc]
            pc += 1
            kind = ins[0]
            if kind == ST:
                src = ins[2]
                yield o.WRITE_ONCE(refs[ins[1]], src if type(src) is int else regs.get(src, 0))
            elif kind == LD:
                regs[ins[1]] = yield o.READ_ONCE(refs[ins[2]])
            elif kind == MOV:
                src = ins[2]
                regs[ins[1]] = src if type(src) is int else regs.get(src, 0)
            elif kind == FENCE:
                yield (o.FENCE, ins[1])
            else:  # RMW: (RMW, opcode, location, operand, register receiving the old value or None, negate)
                _, opcode, loc, src, dest, transform = ins
                operand = src if type(src) is int else regs.get(src, 0)
                if transform == "neg":
                    operand = -operand & MASK64
                elif transform == "not":
                    operand = ~operand & MASK64
                if opcode == o.CMPXCHG:
                    old = yield (o.CMPXCHG, refs[loc], regs.get("EAX", 0), operand, o.FULL)
                else:
                    old = yield (opcode, refs[loc], operand, o.FULL)
                if dest is not None:
                    regs[dest] = old
        return regs

    def observe(self, registers: dict, name: str) -> int:
        return registers.get(name, 0)


def parse(src: Source) -> LitmusTest:
    """Compile an ``X86`` test; :class:`Unsupported` or :class:`Malformed` when it cannot be."""
    from .cond import parse as parse_condition

    condition = parse_condition(src.path, src.tail, src.tail_line)
    locations, raw_registers = parse_init(src)
    used: set[str] = set()
    threads = []
    for tid, cells in enumerate(src.columns):
        regs = {}
        for name, (value, line) in raw_registers[tid].items():
            regs[_register(src, name.upper(), line)] = value
            if isinstance(value, str):
                used.add(value)
        code = [_instruction(src, cell.text, cell.line, used) for cell in cells]
        threads.append(X86Thread([c for c in code if c is not None], regs))
    for var in condition.variables():
        if var.is_register:
            if var.thread >= len(threads):
                raise Malformed(src.path, src.tail_line, f"the condition names {var}, but the test has no thread {var.thread}")
            if var.name.upper() not in REGISTERS:
                raise Unsupported(f"unsupported: register {var.name} in the condition at line {src.tail_line}")
    condition = _upper_registers(condition)
    return LitmusTest(src.path, "X86", src.name, complete_locations(locations, used, condition),
                      [t.registers for t in threads], threads, condition)


def _upper_registers(condition):
    """The condition with register names in upper case (``eax`` is ``EAX``)."""
    from dataclasses import replace

    from .cond import And, Atom, Not, Or, Var

    def fix(p):
        if isinstance(p, Atom):
            v = p.var
            return replace(p, var=Var.register(v.thread, v.name.upper())) if v.is_register else p
        if isinstance(p, Not):
            return Not(fix(p.prop))
        if isinstance(p, (And, Or)):
            return type(p)(tuple(fix(q) for q in p.props))
        return p

    locations = tuple(Var.register(v.thread, v.name.upper()) if v.is_register else v for v in condition.locations)
    flt = fix(condition.filter) if condition.filter is not None else None
    return replace(condition, prop=fix(condition.prop), filter=flt, locations=locations)


def _register(src: Source, name: str, line: int) -> str:
    if name not in REGISTERS:
        raise Unsupported(f"unsupported: register {name} at line {line}")
    return name


def _operand(src: Source, text: str, line: int):
    """``("mem", x)``, ``("imm", v)`` or ``("reg", EAX)``."""
    m = _MEM.match(text)
    if m and not re.match(r"^[ER]?[A-D]X$|^[ER]?(SI|DI|BP|SP)$|^R\d+D?$", m.group(1).upper()):
        return "mem", m.group(1)
    if text.startswith("[") and text.endswith("]"):
        raise Unsupported(f"unsupported: memory operand {text} (only [location]) at line {line}")
    m = _IMM.match(text)
    if m:
        return "imm", number(m.group(1)) & MASK64
    if re.match(r"^[A-Za-z]\w*$", text):
        return "reg", _register(src, text.upper(), line)
    raise Malformed(src.path, line, f"cannot read the operand {text!r}")


def _instruction(src: Source, text: str, line: int, used: set[str]):
    words = text.split(None, 1)
    mnemonic = words[0].upper()
    locked = mnemonic == "LOCK"
    if locked:
        if len(words) < 2:
            raise Malformed(src.path, line, "LOCK without an instruction")
        words = words[1].split(None, 1)
        mnemonic = words[0].upper()
    args = [a.strip() for a in words[1].split(",")] if len(words) > 1 else []
    ops = [_operand(src, a, line) for a in args]
    for kind, value in ops:
        if kind == "mem":
            used.add(value)
    shape = "".join(k[0] for k, _ in ops)  # "mi": memory, immediate
    if mnemonic in _FENCES and not ops:
        return (FENCE, _FENCES[mnemonic])
    if mnemonic == "NOP" and not ops:
        return None
    if mnemonic == "MOV" and not locked:
        if len(ops) != 2:
            raise Malformed(src.path, line, f"{text!r}: MOV takes two operands")
        (_, v0), (_, v1) = ops
        if shape in ("mi", "mr"):
            return (ST, v0, v1)
        if shape == "rm":
            return (LD, v0, v1)
        if shape in ("ri", "rr"):
            return (MOV, v0, v1)
        raise Unsupported(f"unsupported: {text} at line {line}")
    if mnemonic == "XCHG" and shape in ("mr", "rm"):
        (_, loc), (_, reg) = ops if shape == "mr" else ops[::-1]
        return (RMW, o.XCHG, loc, reg, reg, None)
    if mnemonic in _LOCKED and not locked:
        raise Unsupported(f"unsupported: {mnemonic} on memory without LOCK (not atomic) at line {line}")
    if locked and mnemonic in ("INC", "DEC") and shape == "m":
        return (RMW, o.FETCH_ADD, ops[0][1], 1 if mnemonic == "INC" else MASK64, None, None)
    if locked and mnemonic in _LOCKED and shape in ("mr", "mi"):
        loc, (_, operand) = ops[0][1], ops[1]
        if mnemonic in ("XADD", "CMPXCHG", "XCHG") and shape != "mr":
            raise Unsupported(f"unsupported: {text} at line {line}")
        dest = {"XCHG": operand, "XADD": operand, "CMPXCHG": "EAX"}.get(mnemonic)
        transform = {"SUB": "neg", "AND": "not"}.get(mnemonic)
        return (RMW, _LOCKED[mnemonic], loc, operand, dest, transform)
    raise Unsupported(f"unsupported: {text} at line {line}")
