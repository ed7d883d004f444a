"""Our hand encoder of the patch-site forms, checked against capstone, and our decoder against both."""

import pytest

from pvspin.x86 import disasm, encoding

KERNEL = 0xFFFFFFFF81000000


def one_insn(code: bytes, addr: int = KERNEL) -> tuple[str, str]:
    insns = disasm.instructions(code, addr)
    assert len(insns) == 1, insns
    return insns[0][1], insns[0][2]


def test_indirect_call_matches_a_real_pv_op_site():
    # A pv-op call site from a 2015-era x86-64 kernel: ff 14 25 e8 52 c1 81 callq *0xffffffff81c152e8
    code = encoding.call_indirect_abs32(0xFFFFFFFF81C152E8)
    assert code.hex(" ") == "ff 14 25 e8 52 c1 81"
    assert len(code) == encoding.CALL_INDIRECT_LEN == 7
    assert one_insn(code) == ("call", "qword ptr [0xffffffff81c152e8]")


@pytest.mark.parametrize("slot", [0xFFFFFFFF81C152E0, 0xFFFFFFFF80000000, 0x1000])
def test_indirect_call_slot_round_trips_through_capstone(slot):
    mnemonic, op_str = one_insn(encoding.call_indirect_abs32(slot))
    assert (mnemonic, op_str) == ("call", f"qword ptr [{slot:#x}]")


def test_indirect_call_refuses_an_address_outside_the_sign_extended_range():
    with pytest.raises(ValueError, match="0xffffffff7fffffff"):
        encoding.call_indirect_abs32(0xFFFFFFFF7FFFFFFF)


@pytest.mark.parametrize(
    "site,target",
    [
        (0xFFFFFFFF81A0C50B, 0xFFFFFFFF810F3A40),  # backwards
        (0xFFFFFFFF81000000, 0xFFFFFFFF81A0C4F0),  # forwards
        (0xFFFFFFFF81000000, 0xFFFFFFFF81000005),  # rel 0: the next instruction
    ],
)
def test_direct_call_encodes_rel32_from_the_end_of_the_call(site, target):
    code = encoding.call_rel32(site, target)
    rel = int.from_bytes(code[1:], "little", signed=True)
    assert code[0] == 0xE8 and rel == target - (site + 5)
    assert one_insn(code, site) == ("call", hex(target))


def test_direct_call_refuses_a_target_beyond_2GiB():
    with pytest.raises(ValueError, match="call displacement"):
        encoding.call_rel32(0xFFFFFFFF81000000, 0xFFFFFFFF01000000)


def test_inline_templates_are_the_kernels_instructions():
    assert one_insn(encoding.MOVB_0_RDI) == ("mov", "byte ptr [rdi], 0")
    assert one_insn(encoding.XOR_EAX_EAX) == ("xor", "eax, eax")


def test_p6_nops_are_single_nop_instructions_of_each_length():
    for length in range(1, encoding.ASM_NOP_MAX + 1):
        nop = encoding.P6_NOPS[length]
        assert len(nop) == length
        mnemonic, _ = one_insn(nop)
        assert mnemonic == "nop", (length, nop.hex())
    # Two entries spelled out as in arch/x86/include/asm/nops.h.
    assert encoding.P6_NOPS[2] == b"\x66\x90"
    assert encoding.P6_NOPS[5] == b"\x0f\x1f\x44\x00\x00"


@pytest.mark.parametrize("length", range(0, 20))
def test_add_nops_pads_exactly_with_the_fewest_instructions(length):
    pad = encoding.add_nops(length)
    assert len(pad) == length
    insns = disasm.instructions(pad, KERNEL)
    assert [m for _, m, _ in insns] == ["nop"] * (-(-length // encoding.ASM_NOP_MAX))


@pytest.mark.parametrize(
    "code,kinds",
    [
        (encoding.call_indirect_abs32(0xFFFFFFFF81C152E8), ["call_indirect"]),
        (encoding.call_rel32(KERNEL, KERNEL + 0x100) + encoding.add_nops(2), ["call", "nop"]),
        (encoding.MOVB_0_RDI + encoding.add_nops(4), ["movb_0_rdi", "nop"]),
        (encoding.XOR_EAX_EAX + encoding.add_nops(5), ["xor_eax_eax", "nop"]),
        (encoding.add_nops(7), ["nop"]),
        (encoding.add_nops(11), ["nop", "nop"]),
    ],
)
def test_decoder_agrees_with_capstone(code, kinds):
    ours = encoding.decode(code, KERNEL)
    theirs = disasm.instructions(code, KERNEL)
    assert [i.kind for i in ours] == kinds
    assert [i.addr for i in ours] == [a for a, _, _ in theirs]


def test_decoder_reads_call_operands():
    site, target, slot = KERNEL + 0x40, KERNEL + 0x10, 0xFFFFFFFF81C152F0
    assert encoding.decode(encoding.call_rel32(site, target), site)[0].operand == target
    assert encoding.decode(encoding.call_indirect_abs32(slot), site)[0].operand == slot


def test_decoder_rejects_other_instructions():
    with pytest.raises(ValueError, match="0f 0b"):  # ud2
        encoding.decode(b"\x0f\x0b", KERNEL)


def test_asm_text_names_symbols():
    text = disasm.asm_text(encoding.call_rel32(KERNEL, KERNEL + 0x20), KERNEL, {KERNEL + 0x10: "f"})
    assert text == f"call {KERNEL + 0x20:#x} <f+0x10>"



def test_rip_relative_indirect_call_round_trips_through_capstone():
    site, slot = 0xFFFFFFFF81A0C50B, 0xFFFFFFFF81C152E0
    code = encoding.call_indirect_rip(site, slot)
    assert code[:2] == b"\xff\x15" and len(code) == encoding.CALL_INDIRECT_RIP_LEN == 6
    disp = slot - (site + 6)
    assert disasm.instructions(code, site)[0][1:] == ("call", f"qword ptr [rip + {disp:#x}]")
    assert encoding.decode(code, site) == [encoding.Insn(encoding.CALL_INDIRECT, site, 6, slot)]


def test_xor_rax_rax_is_the_kernels_alternative():
    """``"xor %%" _ASM_AX ", %%" _ASM_AX`` on x86-64: REX.W 31 /r, 48 31 c0."""
    assert encoding.XOR_RAX_RAX == bytes.fromhex("48 31 c0")
    assert disasm.instructions(encoding.XOR_RAX_RAX, 0)[0][1:] == ("xor", "rax, rax")
    assert [i.kind for i in encoding.decode(encoding.XOR_RAX_RAX, 0)] == [encoding.XOR_EAX]


@pytest.mark.parametrize(
    ("code", "optimized"),
    [
        ("90 90 90 90 90 90", "66 0f 1f 44 00 00"),  # nop_func: one NOP of the site's length
        ("e8 00 00 00 00 90", "e8 00 00 00 00 90"),  # a single NOP that ends the buffer stays
        ("c6 07 00 90 90 90", "c6 07 00 0f 1f 00"),
        ("48 31 c0 90 90 90", "48 31 c0 0f 1f 00"),
        ("e8 00 00 00 00", "e8 00 00 00 00"),
    ],
)
def test_optimize_nops_makes_each_run_one_nop(code, optimized):
    assert encoding.optimize_nops(bytes.fromhex(code)).hex(" ") == optimized
    assert encoding.pad_0x90(b"\xc6\x07\x00", 6).hex(" ") == "c6 07 00 90 90 90"


def test_asm_text_names_the_slot_of_a_rip_relative_call():
    site, slot = 0xFFFFFFFF81A0C50B, 0xFFFFFFFF81C152E8
    text = disasm.asm_text(encoding.call_indirect_rip(site, slot), site, {0xFFFFFFFF81C152E0: "pv_ops_lock"})
    assert text == f"call qword ptr [rip + {slot - site - 6:#x}] <pv_ops_lock+0x8>"
