"""Disassembly of patch-site bytes with capstone, annotated with kernel symbol names.

Independent of :mod:`pvspin.x86.encoding`: tests use it to check our encoder, and ``pvspin patch``
shows its output.  Intel syntax, as capstone prints by default (``mov byte ptr [rdi], 0``).
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Mapping
from functools import cache

import capstone


@cache
def _engine() -> capstone.Cs:
    return capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)


def instructions(code: bytes, addr: int) -> list[tuple[int, str, str]]:
    """``(address, mnemonic, operands)`` of each instruction, as capstone decodes them."""
    return [(i.address, i.mnemonic, i.op_str) for i in _engine().disasm(code, addr)]


_RIP_RELATIVE = re.compile(r"\[rip ([+-]) (0x[0-9a-f]+|\d+)\]")


def _rip_targets(code: bytes, addr: int) -> list[int | None]:
    """Per instruction, the address a ``[rip +/- disp]`` operand names (next instruction + disp), or None."""
    out = []
    for i in _engine().disasm(code, addr):
        m = _RIP_RELATIVE.search(i.op_str)
        disp = 0 if m is None else int(m.group(2), 0) * (1 if m.group(1) == "+" else -1)
        out.append(None if m is None else (i.address + i.size + disp) % (1 << 64))
    return out


def symbolize(value: int, symbols: Mapping[int, str]) -> str:
    """``name`` or ``name+0x8`` for an address inside the symbol table, else ''."""
    starts = sorted(symbols)
    i = bisect_right(starts, value) - 1
    if i < 0:
        return ""
    base = starts[i]
    offset = value - base
    if offset > 0x1000:  # far past the last symbol: not ours
        return ""
    return symbols[base] + (f"+{offset:#x}" if offset else "")


def asm_text(code: bytes, addr: int, symbols: Mapping[int, str] | None = None) -> str:
    """One line: instructions separated by '; ', call/memory targets followed by ``<symbol>``."""
    parts = []
    for (_, mnemonic, op_str), rip_target in zip(instructions(code, addr), _rip_targets(code, addr), strict=True):
        text = f"{mnemonic} {op_str}".strip()
        if symbols and rip_target is not None:
            name = symbolize(rip_target, symbols)
            if name:
                text += f" <{name}>"
        elif symbols:
            for token in op_str.replace("[", " ").replace("]", " ").split():
                if token.startswith("0x"):
                    name = symbolize(int(token, 16), symbols)
                    if name:
                        text += f" <{name}>"
        parts.append(text)
    return "; ".join(parts)
