"""x86-64 machine code of the paravirt lock call sites, encoded and decoded by hand.

Only the forms that the 2015 call patching (f233f7f1581e) puts at a lock call site exist here:

==============================  ===========================  ==========================================
bytes                           instruction (AT&T)           written by
==============================  ===========================  ==========================================
``ff 14 25 <abs32>``            ``call *pv_lock_ops+8``      the compiler: ``PVOP_VCALL*`` (7 bytes)
``e8 <rel32>``                  ``call target``              ``paravirt_patch_call``
``c6 07 00``                    ``movb $0,(%rdi)``           ``native_patch``: native unlock
``31 c0``                       ``xor %eax,%eax``            ``native_patch``: native vcpu_is_preempted
``90``, ``66 90``, ``0f 1f ..`` P6 NOPs                      ``add_nops`` (``ideal_nops`` = ``p6_nops``)
==============================  ===========================  ==========================================

The decoder reads back exactly these forms; ``apply_paravirt`` uses it to turn the bytes left at a
site into the code that runs there.  Capstone (:mod:`pvspin.x86.disasm`) is the independent check.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

CALL_INDIRECT_LEN = 7  # ff 14 25 disp32: absolute (SIB, no base) indirect call on x86-64
CALL_REL32_LEN = 5  # e8 rel32
MOVB_0_RDI = b"\xc6\x07\x00"  # movb $0x0,(%rdi)
XOR_EAX_EAX = b"\x31\xc0"  # xor %eax,%eax

# The P6 NOPs of arch/x86/include/asm/nops.h, indexed by length; ASM_NOP_MAX bytes per chunk.
ASM_NOP_MAX = 8
P6_NOPS = (
    b"",
    b"\x90",
    b"\x66\x90",
    b"\x0f\x1f\x00",
    b"\x0f\x1f\x40\x00",
    b"\x0f\x1f\x44\x00\x00",
    b"\x66\x0f\x1f\x44\x00\x00",
    b"\x0f\x1f\x80\x00\x00\x00\x00",
    b"\x0f\x1f\x84\x00\x00\x00\x00\x00",
)

# Decoded instruction kinds.
CALL_INDIRECT = "call_indirect"
CALL = "call"
MOVB_STORE = "movb_0_rdi"
XOR_EAX = "xor_eax_eax"
NOP = "nop"

_U64 = 1 << 64
_I32 = struct.Struct("<i")


class Insn(NamedTuple):
    """One decoded instruction: its kind, address, length and, for calls, the address it uses
    (the memory slot for an indirect call, the destination for a direct one)."""

    kind: str
    addr: int
    length: int
    operand: int | None = None


def _signed64(addr: int) -> int:
    return addr - _U64 if addr >= 1 << 63 else addr


def _disp32(value: int, what: str) -> bytes:
    if not -(1 << 31) <= value < 1 << 31:
        raise ValueError(f"{what} does not fit a signed 32-bit displacement")
    return _I32.pack(value)


def call_indirect_abs32(slot_addr: int) -> bytes:
    """``call *slot_addr``: ``ff 14 25`` + the slot address as a sign-extended disp32.

    Kernel data lives in the top 2 GiB (0xffffffff8...), which is exactly what a sign-extended
    32-bit absolute address can reach, hence the compiler's choice of this form in 2015.
    """
    return b"\xff\x14\x25" + _disp32(_signed64(slot_addr), f"pv_ops slot address {slot_addr:#x}")


def call_rel32(site_addr: int, target: int) -> bytes:
    """``call target`` at ``site_addr``: ``e8`` + rel32, rel = target - (site + 5)."""
    return b"\xe8" + _disp32(
        target - (site_addr + CALL_REL32_LEN), f"call displacement from {site_addr:#x} to {target:#x}"
    )


def add_nops(length: int) -> bytes:
    """``add_nops``: ``length`` bytes of padding, the longest P6 NOPs first (ASM_NOP_MAX each)."""
    out = bytearray()
    while length > 0:
        chunk = min(length, ASM_NOP_MAX)
        out += P6_NOPS[chunk]
        length -= chunk
    return bytes(out)


_NOP_BY_BYTES = {nop: len(nop) for nop in P6_NOPS[1:]}


def decode(code: bytes, addr: int) -> list[Insn]:
    """Decode the site forms above; anything else is a ValueError naming the offending bytes."""
    insns: list[Insn] = []
    pos = 0
    while pos < len(code):
        here = addr + pos
        rest = code[pos:]
        if rest[:3] == b"\xff\x14\x25" and len(rest) >= CALL_INDIRECT_LEN:
            slot = _I32.unpack_from(rest, 3)[0] % _U64
            insns.append(Insn(CALL_INDIRECT, here, CALL_INDIRECT_LEN, slot))
        elif rest[0] == 0xE8 and len(rest) >= CALL_REL32_LEN:
            target = (here + CALL_REL32_LEN + _I32.unpack_from(rest, 1)[0]) % _U64
            insns.append(Insn(CALL, here, CALL_REL32_LEN, target))
        elif rest[:3] == MOVB_0_RDI:
            insns.append(Insn(MOVB_STORE, here, 3))
        elif rest[:2] == XOR_EAX_EAX:
            insns.append(Insn(XOR_EAX, here, 2))
        else:
            length = next((n for n in range(ASM_NOP_MAX, 0, -1) if _NOP_BY_BYTES.get(rest[:n]) == n), 0)
            if not length:
                raise ValueError(f"undecodable bytes at {here:#x}: {rest.hex(' ')}")
            insns.append(Insn(NOP, here, length))
        pos += insns[-1].length
    return insns
