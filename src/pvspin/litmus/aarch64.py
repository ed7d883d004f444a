"""AArch64 litmus tests (herd's ``AArch64`` format) into guest code that keeps dependencies.

The instructions, and the operation each becomes (the kernel's arm64 compilation read
backwards: ``arch/arm64/include/asm/{barrier.h,cmpxchg.h,atomic_lse.h}``):

=================================  ===========================================================
instruction                        guest code
=================================  ===========================================================
``LDR`` / ``LDAR`` / ``LDAPR``     LOAD RELAXED / ACQUIRE (``smp_load_acquire``) / ACQUIRE_PC
``STR`` / ``STLR``                 STORE RELAXED (``WRITE_ONCE``) / RELEASE (``smp_store_release``)
``LDXR`` / ``LDAXR``               ``load_exclusive`` RELAXED / ACQUIRE
``STXR`` / ``STLXR Ws,Rt,[Xn]``    ``store_exclusive`` RELAXED / RELEASE; Ws gets 0 (stored) or 1
``SWP{,A,L,AL} Rs,Rt,[Xn]``        XCHG of Rs, old value to Rt (``xchg_relaxed`` = SWP, ..., ``xchg`` = SWPAL)
``CAS{,A,L,AL} Rs,Rt,[Xn]``        CMPXCHG expecting Rs, storing Rt, old value to Rs
``LDADD`` / ``LDSET`` / ``LDCLR``  FETCH_ADD / FETCH_OR / FETCH_ANDNOT of Rs, old value to Rt;
``{,A,L,AL}``, ``ST*`` forms       ``STADD`` etc. discard it.  Suffixes: none RELAXED, A ACQUIRE,
                                   L RELEASE, AL FULL
``DMB``/``DSB`` SY ISH OSH NSH     ``smp_mb()``
``DMB``/``DSB`` \\*LD               ``smp_rmb()`` (``DMB ISHLD``)
``DMB``/``DSB`` \\*ST               ``smp_wmb()`` (``DMB ISHST``)
``ISB``                            ``isb()``
``MOV``, ``ADD``, ``SUB``,         register arithmetic, no operation: Python arithmetic on the
``EOR``, ``AND``, ``ORR``          values the thread holds
``CMP``; ``B.EQ`` ``B.NE``         flags = the (signed) difference; a conditional branch tests it
``B.GE`` ``B.LT`` ``B.GT`` ``B.LE``
``CBZ`` / ``CBNZ``, ``B``, labels  forward branches
=================================  ===========================================================

Addressing: ``[Xn]``, ``[Xn,Xm]``, ``[Xn,Wm,SXTW]``, ``[Xn,Wm,UXTW]``, ``[Xn,Xm,LSL #k]``
and ``[Xn,#0]``; the address is computed from the registers and goes through
:meth:`Memory.ref_at`, so an access whose address came from a read carries an address
dependency on it.  A computed address that is no location is a run-time fault
(:class:`~.run.LitmusFault`), never a silent access.

**Dependencies.**  Under the execution-graph checker, loads return
:class:`~pvspin.machine.deps.Dep` values.  The interpreter computes every register value
with plain Python arithmetic on the values it holds -- W registers by ``& 0xFFFFFFFF``,
SXTW as ``((v & 0xFFFFFFFF) ^ 0x80000000) - 0x80000000`` -- and never converts or tests a
register value except where a conditional branch instruction does (``B.cond``, ``CBZ``,
``CBNZ``): there, testing it records the control dependency.  So ``EOR W3,W2,W2`` gives
a zero that still depends on the read of W2, the stored value of ``STR W0`` carries the
data dependencies of W0, and ``LDR W4,[X5,W3,SXTW]`` has an address dependency.

Every location is one 8-byte value (herd's non-mixed model): an access through a W
register reads the whole location and keeps its low 32 bits, or stores its 32-bit value
zero-extended.  Byte and halfword accesses (``LDRB``, ``STRH``, ...), offsets into a
location (``[X1,#4]``) and typed declarations -- the ``mixed/`` suite -- are unsupported,
as are backward branches (loops), pre/post-indexed addressing and any other instruction,
each with the construct and its line.
"""

from __future__ import annotations

import re

from ..machine import ops as o
from .cond import MASK64
from .source import Malformed, Source, Unsupported, number
from .test import LitmusTest, complete_locations, parse_init

M32 = 0xFFFF_FFFF

# compiled instructions: tuples whose first item is one of these
MOVI, MOVR, ALU, CMP, LD, ST, LDX, STX, RMW, CAS, FENCE, B, BCOND, CB = range(14)

_ORDERS = {"": o.RELAXED, "A": o.ACQUIRE, "L": o.RELEASE, "AL": o.FULL}
_LOADS = {"LDR": o.RELAXED, "LDAR": o.ACQUIRE, "LDAPR": o.ACQUIRE_PC}
_STORES = {"STR": o.RELAXED, "STLR": o.RELEASE}
_ATOMICS = re.compile(r"^(SWP|CAS|LDADD|LDSET|LDCLR|STADD|STSET|STCLR)(AL|A|L)?(B|H)?$")
_RMW_OPCODES = {"SWP": o.XCHG, "LDADD": o.FETCH_ADD, "LDSET": o.FETCH_OR, "LDCLR": o.FETCH_ANDNOT,
                "STADD": o.FETCH_ADD, "STSET": o.FETCH_OR, "STCLR": o.FETCH_ANDNOT}
_ARITH = {"ADD": "add", "SUB": "sub", "EOR": "eor", "AND": "and", "ORR": "orr"}
_CONDITIONS = ("EQ", "NE", "GE", "LT", "GT", "LE")
_BARRIER_KINDS = {"SY": o.MB, "ISH": o.MB, "OSH": o.MB, "NSH": o.MB,
                  "LD": o.RMB, "ISHLD": o.RMB, "OSHLD": o.RMB, "NSHLD": o.RMB,
                  "ST": o.WMB, "ISHST": o.WMB, "OSHST": o.WMB, "NSHST": o.WMB}
_NARROW = re.compile(r"^(LDR|STR|LDAR|STLR|LDAPR|LDXR|STXR|LDAXR|STLXR|LDUR|STUR|LDRS)(B|H)$|^LDRS(B|H|W)$")
_REGISTER = re.compile(r"^(W|X)(\d+|ZR)$")
_LABEL = re.compile(r"^([A-Za-z_][\w.]*):\s*(.*)$")


def _sext(value, bits: int):
    """``value``'s low ``bits`` bits read as a signed number, by arithmetic (dependencies survive)."""
    sign = 1 << (bits - 1)
    return ((value & ((1 << bits) - 1)) ^ sign) - sign


def _get(regs: dict, reg: int | None, mask: int):
    """A register's value at its width (``None`` is WZR/XZR)."""
    return 0 if reg is None else regs.get(reg, 0) & mask


def _operand(regs: dict, operand: tuple):
    """The value of an arithmetic operand: ``("imm", v)`` or ``("reg", r, mask, extend, shift)``."""
    if operand[0] == "imm":
        return operand[1]
    _, reg, mask, extend, shift = operand
    value = _get(regs, reg, mask)
    if extend == "SXTW":
        value = _sext(value, 32)
    return value << shift if shift else value


def _alu(fn: str, a, b):
    if fn == "add":
        return a + b
    if fn == "sub":
        return a - b
    if fn == "eor":
        return a ^ b
    if fn == "and":
        return a & b
    return a | b


def _taken(cond: str, flags) -> object:
    """Whether B.cond branches, given the flags value CMP left (a Dep when it came from a read)."""
    if cond == "EQ":
        return flags == 0
    if cond == "NE":
        return flags != 0
    if cond == "GE":
        return flags >= 0
    if cond == "LT":
        return flags < 0
    if cond == "GT":
        return flags > 0
    return flags <= 0


class AArch64Thread:
    """One AArch64 thread's compiled instructions and its guest code."""

    def __init__(self, code: list[tuple], registers: dict[int, int | str], lines: list[int]):
        self.code = code
        self.registers = registers
        self.lines = lines  # source line of each compiled instruction
        self.stores = sum(1 for ins in code if ins[0] == ST)

    def _ref(self, inst, regs: dict, addr: tuple, pc: int):
        """The location an addressing mode names, with the dependencies of the registers it used."""
        base, index = addr
        value = _get(regs, base, MASK64)
        if index is not None:
            value = value + _operand(regs, index)
        ref = inst.mem.ref_at(value & MASK64, 8)
        name = inst.names.get(ref.addr)
        if name is None:
            from .run import LitmusFault

            raise LitmusFault(f"the address computed at line {self.lines[pc]} ({ref.addr:#x}) is no location")
        # the location's own Ref (the checker keys states by it), reached through the registers' reads
        return inst.refs[name].depending(ref.deps)

    def program(self, inst, tid: int):
        """Interpret the instructions; return the final registers as ``{"X0": value, ...}``."""
        regs = {r: inst.value(v) for r, v in self.registers.items()}
        code = self.code
        flags = 0
        pc = 0
        while pc < len(code):
            ins = code[pc]
            kind = ins[0]
            if kind == MOVI:  # (MOVI, d, mask, imm)
                if ins[1] is not None:
                    regs[ins[1]] = ins[3] & ins[2]
            elif kind == MOVR:  # (MOVR, d, mask, n)
                if ins[1] is not None:
                    regs[ins[1]] = _get(regs, ins[3], ins[2])
            elif kind == ALU:  # (ALU, fn, d, mask, n, operand)
                value = _alu(ins[1], _get(regs, ins[4], ins[3]), _operand(regs, ins[5])) & ins[3]
                if ins[2] is not None:
                    regs[ins[2]] = value
            elif kind == CMP:  # (CMP, n, mask, operand, bits)
                bits = ins[4]
                flags = _sext(_get(regs, ins[1], ins[2]), bits) - _sext(_operand(regs, ins[3]), bits)
            elif kind == LD:  # (LD, t, mask, addr, order)
                value = yield (o.LOAD, self._ref(inst, regs, ins[3], pc), ins[4])
                if ins[1] is not None:
                    regs[ins[1]] = value & ins[2]
            elif kind == ST:  # (ST, t, mask, addr, order)
                yield (o.STORE, self._ref(inst, regs, ins[3], pc), _get(regs, ins[1], ins[2]), ins[4])
            elif kind == LDX:  # (LDX, t, mask, addr, order)
                value = yield o.load_exclusive(self._ref(inst, regs, ins[3], pc), ins[4])
                if ins[1] is not None:
                    regs[ins[1]] = value & ins[2]
            elif kind == STX:  # (STX, s, t, mask, addr, order)
                status = yield o.store_exclusive(self._ref(inst, regs, ins[4], pc), _get(regs, ins[2], ins[3]), ins[5])
                if ins[1] is not None:
                    regs[ins[1]] = status & M32
            elif kind == RMW:  # (RMW, opcode, s, t, mask, addr, order)
                ref = self._ref(inst, regs, ins[5], pc)
                old = yield (ins[1], ref, _get(regs, ins[2], ins[4]), ins[6])
                if ins[3] is not None:
                    regs[ins[3]] = old & ins[4]
            elif kind == CAS:  # (CAS, s, t, mask, addr, order)
                ref = self._ref(inst, regs, ins[4], pc)
                old = yield (o.CMPXCHG, ref, _get(regs, ins[1], ins[3]), _get(regs, ins[2], ins[3]), ins[5])
                if ins[1] is not None:
                    regs[ins[1]] = old & ins[3]
            elif kind == FENCE:  # (FENCE, kind)
                yield (o.FENCE, ins[1])
            elif kind == B:  # (B, target)
                pc = ins[1]
                continue
            elif kind == BCOND:  # (BCOND, cond, target): the branch tests the flags
                if _taken(ins[1], flags):
                    pc = ins[2]
                    continue
            else:  # (CB, n, mask, nonzero, target): CBZ / CBNZ test the register
                value = _get(regs, ins[1], ins[2])
                if (value != 0) if ins[3] else (value == 0):
                    pc = ins[4]
                    continue
            pc += 1
        return {f"X{r}": v for r, v in regs.items()}

    def observe(self, registers: dict, name: str) -> int:
        value = registers.get(f"X{name[1:]}", 0)
        return value & M32 if name[0] == "W" else value


# --------------------------------------------------------------------------- parsing
def parse(src: Source) -> LitmusTest:
    """Compile an ``AArch64`` test; :class:`Unsupported` or :class:`Malformed` when it cannot be."""
    from .cond import parse as parse_condition

    locations, raw_registers = parse_init(src)
    condition = parse_condition(src.path, src.tail, src.tail_line)
    used: set[str] = set()
    features: dict[str, int] = {}
    threads = []
    for tid, cells in enumerate(src.columns):
        regs: dict[int, int | str] = {}
        for name, (value, line) in raw_registers[tid].items():
            reg, mask = _register(src, name, line)
            if reg is None:
                raise Malformed(src.path, line, f"cannot initialise the zero register {name}")
            regs[reg] = value if isinstance(value, str) else value & mask
            if isinstance(value, str):
                used.add(value)
        threads.append(_thread(src, cells, regs, features))
    for var in condition.variables():
        if var.is_register:
            if var.thread >= len(threads):
                raise Malformed(src.path, src.tail_line, f"the condition names {var}, but the test has no thread {var.thread}")
            if not re.match(r"^[WX]\d+$", var.name):
                raise Unsupported(f"unsupported: register {var.name} in the condition at line {src.tail_line}")
    registers = [{f"X{r}": v for r, v in sorted(t.registers.items())} for t in threads]
    return LitmusTest(src.path, "AArch64", src.name, complete_locations(locations, used, condition), registers,
                      threads, condition, features)


def _thread(src: Source, cells, regs: dict, features: dict) -> AArch64Thread:
    """Compile one column: a label names the index of the next compiled instruction; forward branches only."""
    labels: dict[str, int] = {}
    code: list[tuple] = []
    lines: list[int] = []
    for cell in cells:
        text = cell.text
        m = _LABEL.match(text)
        while m:
            if m.group(1) in labels:
                raise Malformed(src.path, cell.line, f"label {m.group(1)} defined twice")
            labels[m.group(1)] = len(code)
            text = m.group(2).strip()
            m = _LABEL.match(text)
        if text:
            ins = _instruction(src, text, cell.line, features)
            if ins is not None:
                code.append(ins)
                lines.append(cell.line)
    for index, ins in enumerate(code):
        if ins[0] in (B, BCOND, CB):
            target = ins[-1]
            if target not in labels:
                raise Malformed(src.path, lines[index], f"branch to an undefined label {target}")
            if labels[target] <= index:
                raise Unsupported(f"unsupported: backward branch to {target} (a loop) at line {lines[index]}")
            code[index] = (*ins[:-1], labels[target])
    return AArch64Thread(code, regs, lines)


def _register(src: Source, text: str, line: int) -> tuple[int | None, int]:
    """``W3`` -> (3, 0xFFFFFFFF), ``X3`` -> (3, 2**64-1), ``WZR``/``XZR`` -> (None, mask)."""
    m = _REGISTER.match(text.upper())
    if m is None:
        if text.upper() in ("SP", "WSP"):
            raise Unsupported(f"unsupported: the stack pointer {text} at line {line}")
        raise Malformed(src.path, line, f"expected a W or X register, got {text!r}")
    mask = M32 if m.group(1) == "W" else MASK64
    if m.group(2) == "ZR":
        return None, mask
    n = int(m.group(2))
    if n > 30:
        raise Malformed(src.path, line, f"no register {text}")
    return n, mask


def _split_operands(text: str) -> list[str]:
    """Operands split on commas outside brackets: ``W4,[X5,W3,SXTW]`` -> ``["W4", "[X5,W3,SXTW]"]``."""
    out, depth, cur = [], 0, ""
    for ch in text:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        if ch == "," and depth == 0:
            out.append(cur.strip())
            cur = ""
        else:
            cur += ch
    if cur.strip():
        out.append(cur.strip())
    return out


def _immediate(src: Source, text: str, line: int) -> int:
    if not re.match(r"^#-?(0x[0-9a-fA-F]+|\d+)$", text):
        raise Malformed(src.path, line, f"expected an immediate #n, got {text!r}")
    return number(text[1:])


def _arith_operand(src: Source, parts: list[str], line: int) -> tuple:
    """``#imm``, ``Rm``, ``Rm,SXTW``/``UXTW`` or ``Rm,LSL #k`` as an operand of :func:`_operand`."""
    if parts[0].startswith("#"):
        if len(parts) > 1:
            raise Unsupported(f"unsupported: shifted immediate {','.join(parts)} at line {line}")
        return ("imm", _immediate(src, parts[0], line) & MASK64)
    reg, mask = _register(src, parts[0], line)
    extend, shift = None, 0
    for extra in parts[1:]:
        word = extra.upper().split()
        if word[0] in ("SXTW", "UXTW") and len(word) == 1:
            extend = word[0]
        elif word[0] == "LSL" and len(word) == 2:
            shift = _immediate(src, word[1], line)
        else:
            raise Unsupported(f"unsupported: operand modifier {extra} at line {line}")
    return ("reg", reg, mask, extend, shift)


def _address(src: Source, text: str, line: int) -> tuple:
    """``[Xn]``, ``[Xn,#0]``, ``[Xn,Xm]``, ``[Xn,Wm,SXTW]``, ... as ``(base, index operand or None)``."""
    if not (text.startswith("[") and text.endswith("]")):
        if text.startswith("[") and (text.endswith("!") or "]" in text):
            raise Unsupported(f"unsupported: pre/post-indexed address {text} at line {line}")
        raise Malformed(src.path, line, f"expected an address [Xn...], got {text!r}")
    parts = [p.strip() for p in text[1:-1].split(",")]
    base, mask = _register(src, parts[0], line)
    if mask != MASK64:
        raise Malformed(src.path, line, f"the base of an address must be an X register, got {parts[0]}")
    if len(parts) == 1:
        return (base, None)
    if parts[1].startswith("#"):
        offset = _immediate(src, parts[1], line)
        if len(parts) > 2:
            raise Malformed(src.path, line, f"cannot read the address {text!r}")
        if offset:
            raise Unsupported(f"unsupported: offset #{offset} into a location (mixed-size access) at line {line}")
        return (base, None)
    return (base, _arith_operand(src, parts[1:], line))


def _instruction(src: Source, text: str, line: int, features: dict):
    """One instruction as a compiled tuple (branch targets still label names), or None for a NOP."""
    words = text.split(None, 1)
    mnemonic = words[0].upper()
    args = _split_operands(words[1]) if len(words) > 1 else []

    def need(n: int) -> None:
        if len(args) != n:
            raise Malformed(src.path, line, f"{mnemonic} takes {n} operand(s), got {text!r}")

    if len(args) > 1 and args[-2].startswith("[") and args[-1].startswith("#"):
        raise Unsupported(f"unsupported: pre/post-indexed address {args[-2]},{args[-1]} at line {line}")
    if _NARROW.match(mnemonic) or (_ATOMICS.match(mnemonic) and _ATOMICS.match(mnemonic).group(3)):
        raise Unsupported(f"unsupported: {mnemonic} (mixed-size access) at line {line}")
    if mnemonic == "NOP":
        return None
    if mnemonic == "MOV":
        need(2)
        d, mask = _register(src, args[0], line)
        if args[1].startswith("#"):
            return (MOVI, d, mask, _immediate(src, args[1], line) & MASK64)
        return (MOVR, d, mask, _register(src, args[1], line)[0])
    if mnemonic in _ARITH:
        if len(args) < 3:
            raise Malformed(src.path, line, f"{mnemonic} takes 3 operands, got {text!r}")
        d, mask = _register(src, args[0], line)
        n, _ = _register(src, args[1], line)
        return (ALU, _ARITH[mnemonic], d, mask, n, _arith_operand(src, args[2:], line))
    if mnemonic == "CMP":
        if len(args) < 2:
            raise Malformed(src.path, line, f"CMP takes 2 operands, got {text!r}")
        n, mask = _register(src, args[0], line)
        return (CMP, n, mask, _arith_operand(src, args[1:], line), 32 if mask == M32 else 64)
    if mnemonic in _LOADS or mnemonic in _STORES:
        need(2)
        t, mask = _register(src, args[0], line)
        kind, order = (LD, _LOADS[mnemonic]) if mnemonic in _LOADS else (ST, _STORES[mnemonic])
        return (kind, t, mask, _address(src, args[1], line), order)
    if mnemonic in ("LDXR", "LDAXR"):
        need(2)
        features.setdefault("exclusive", line)
        t, mask = _register(src, args[0], line)
        return (LDX, t, mask, _address(src, args[1], line), o.ACQUIRE if mnemonic == "LDAXR" else o.RELAXED)
    if mnemonic in ("STXR", "STLXR"):
        need(3)
        features.setdefault("exclusive", line)
        s, _ = _register(src, args[0], line)
        t, mask = _register(src, args[1], line)
        return (STX, s, t, mask, _address(src, args[2], line), o.RELEASE if mnemonic == "STLXR" else o.RELAXED)
    m = _ATOMICS.match(mnemonic)
    if m:
        base, order = m.group(1), _ORDERS[m.group(2) or ""]
        if base.startswith("ST"):  # STADD Rs,[Xn]: LDADD with the old value discarded
            if m.group(2) in ("A", "AL"):
                raise Malformed(src.path, line, f"no instruction {mnemonic}")
            need(2)
            s, mask = _register(src, args[0], line)
            return (RMW, _RMW_OPCODES[base], s, None, mask, _address(src, args[1], line), order)
        need(3)
        s, mask = _register(src, args[0], line)
        t, tmask = _register(src, args[1], line)
        if tmask != mask:
            raise Malformed(src.path, line, f"{mnemonic}: registers of different widths")
        if base == "CAS":
            return (CAS, s, t, mask, _address(src, args[2], line), order)
        return (RMW, _RMW_OPCODES[base], s, t, mask, _address(src, args[2], line), order)
    if mnemonic in ("DMB", "DSB"):
        need(1)
        kind = _BARRIER_KINDS.get(args[0].upper())
        if kind is None:
            raise Unsupported(f"unsupported: {mnemonic} {args[0]} at line {line}")
        return (FENCE, kind)
    if mnemonic == "ISB":
        return (FENCE, o.ISB)
    if mnemonic == "B":
        need(1)
        return (B, args[0])
    if mnemonic.startswith("B."):
        need(1)
        cond = mnemonic[2:]
        if cond not in _CONDITIONS:
            raise Unsupported(f"unsupported: {mnemonic} (condition {cond}) at line {line}")
        return (BCOND, cond, args[0])
    if mnemonic in ("CBZ", "CBNZ"):
        need(2)
        n, mask = _register(src, args[0], line)
        return (CB, n, mask, mnemonic == "CBNZ", args[1])
    raise Unsupported(f"unsupported: {mnemonic} at line {line}")
