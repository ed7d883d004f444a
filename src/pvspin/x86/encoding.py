"""x86-64 machine code of the paravirt lock call sites, encoded and decoded by hand.

Only the forms that the kernel's patching puts at a lock call site exist here, first those of the
2015 call patching (f233f7f1581e) and of the ``.parainstructions`` era that followed it:

==============================  ===========================  ==========================================
bytes                           instruction (AT&T)           written by
==============================  ===========================  ==========================================
``ff 14 25 <abs32>``            ``call *pv_lock_ops+8``      the compiler: ``PVOP_VCALL*`` (7 bytes)
``e8 <rel32>``                  ``call target``              ``paravirt_patch_call``
``c6 07 00``                    ``movb $0,(%rdi)``           ``native_patch``: native unlock
``31 c0``                       ``xor %eax,%eax``            ``native_patch``: native vcpu_is_preempted
``90``, ``66 90``, ``0f 1f ..`` P6 NOPs                      ``add_nops`` (``ideal_nops`` = ``p6_nops``)
==============================  ===========================  ==========================================

and those of v6.8 on, where the sites are alternatives (``ALT_FLAG_DIRECT_CALL``) and, in the
newest tree, static calls:

==============================  ===========================  ==========================================
bytes                           instruction (AT&T)           written by
==============================  ===========================  ==========================================
``ff 15 <rel32>``               ``call *pv_ops+X(%rip)``     the compiler: ``PARAVIRT_CALL`` (6 bytes)
``e8 <rel32>`` ``90``           ``call target; nop``         ``alt_replace_call`` + the 0x90 padding
``e8 <rel32>``                  ``call __SCT__name``         the compiler: ``static_call()`` (5 bytes);
                                                             ``static_call_init`` retargets it
``48 31 c0``                    ``xor %rax,%rax``            ``ALT_NOT(X86_FEATURE_VCPUPREEMPT)``
``0f 1f 00``, ``66 0f 1f ..``   one NOP per run              ``optimize_nops`` (``x86_nops`` = P6 NOPs)
==============================  ===========================  ==========================================

The decoder reads back exactly these forms; ``apply_paravirt`` uses it to turn the bytes left at a
site into the code that runs there.  Capstone (:mod:`pvspin.x86.disasm`) is the independent check.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

CALL_INDIRECT_LEN = 7  # ff 14 25 disp32: absolute (SIB, no base) indirect call on x86-64
CALL_INDIRECT_RIP_LEN = 6  # ff 15 rel32: RIP-relative indirect call (v6.8's PARAVIRT_CALL)
CALL_REL32_LEN = 5  # e8 rel32
MOVB_0_RDI = b"\xc6\x07\x00"  # movb $0x0,(%rdi)
XOR_EAX_EAX = b"\x31\xc0"  # xor %eax,%eax (paravirt_patch_64.c / paravirt_patch.c, to 5.12)
XOR_RAX_RAX = b"\x48\x31\xc0"  # xor %rax,%rax ("xor %%" _ASM_AX ", %%" _ASM_AX, v5.13 on)

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
CALL_INDIRECT = "call_indirect"  # either form, absolute or RIP-relative: the operand is the slot's address
CALL = "call"
MOVB_STORE = "movb_0_rdi"
XOR_EAX = "xor_eax_eax"  # either width: both leave %rax 0 (false)
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


def call_indirect_rip(site_addr: int, slot_addr: int) -> bytes:
    """``call *slot(%rip)`` at ``site_addr``: ``ff 15`` + rel32, rel = slot - (site + 6)."""
    return b"\xff\x15" + _disp32(
        slot_addr - (site_addr + CALL_INDIRECT_RIP_LEN), f"slot displacement from {site_addr:#x} to {slot_addr:#x}"
    )


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


def pad_0x90(code: bytes, length: int) -> bytes:
    """apply_alternatives(): the replacement, then single-byte NOPs (0x90) up to the site length."""
    return code + b"\x90" * (length - len(code))


def optimize_nops(code: bytes) -> bytes:
    """optimize_nops() (arch/x86/kernel/alternative.c, v6.x): each run of NOP instructions becomes
    one NOP of the run's length (``add_nop``, ``x86_nops``: the P6 forms); a single NOP that ends
    the buffer is left as it is."""
    out = bytearray(code)
    insns = decode(code, 0)
    i = 0
    while i < len(insns):
        if insns[i].kind != NOP:
            i += 1
            continue
        j = i
        while j < len(insns) and insns[j].kind == NOP:
            j += 1
        start = insns[i].addr
        end = insns[j - 1].addr + insns[j - 1].length
        if not (j - i == 1 and end == len(code)):
            out[start:end] = add_nops(end - start)
        i = j
    return bytes(out)


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
        elif rest[:2] == b"\xff\x15" and len(rest) >= CALL_INDIRECT_RIP_LEN:
            slot = (here + CALL_INDIRECT_RIP_LEN + _I32.unpack_from(rest, 2)[0]) % _U64
            insns.append(Insn(CALL_INDIRECT, here, CALL_INDIRECT_RIP_LEN, slot))
        elif rest[0] == 0xE8 and len(rest) >= CALL_REL32_LEN:
            target = (here + CALL_REL32_LEN + _I32.unpack_from(rest, 1)[0]) % _U64
            insns.append(Insn(CALL, here, CALL_REL32_LEN, target))
        elif rest[:3] == MOVB_0_RDI:
            insns.append(Insn(MOVB_STORE, here, 3))
        elif rest[:2] == XOR_EAX_EAX:
            insns.append(Insn(XOR_EAX, here, 2))
        elif rest[:3] == XOR_RAX_RAX:
            insns.append(Insn(XOR_EAX, here, 3))
        else:
            length = next((n for n in range(ASM_NOP_MAX, 0, -1) if _NOP_BY_BYTES.get(rest[:n]) == n), 0)
            if not length:
                raise ValueError(f"undecodable bytes at {here:#x}: {rest.hex(' ')}")
            insns.append(Insn(NOP, here, length))
        pos += insns[-1].length
    return insns
