"""AArch64 litmus tests as guest code: instructions, dependencies, unsupported constructs, the suite under SC."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from litmus_helpers import drive, expected, key, parse, sample, suite
from pvspin.litmus import aarch64, load
from pvspin.litmus.cond import EXISTS, FORALL, MASK64, NOT_EXISTS
from pvspin.litmus.run import judge, outcomes
from pvspin.litmus.source import Malformed, Unsupported
from pvspin.litmus.test import format_state
from pvspin.machine import deps
from pvspin.machine import ops as o
from pvspin.machine.deps import Dep, deps_of

MP = r"""AArch64 MP+dmb.sy+addr
{
0:X1=x; 0:X3=y;
1:X1=y; 1:X5=x;
}
 P0          | P1                  ;
 MOV W0,#1   | LDR W0,[X1]         ;
 STR W0,[X1] | EOR W2,W0,W0        ;
 DMB SY      | LDR W3,[X5,W2,SXTW] ;
 MOV W2,#1   |                     ;
 STR W2,[X3] |                     ;
exists (1:X0=1 /\ 1:X3=0)
"""


def one_thread(body: str, init: str = "0:X1=x;", cond: str = "exists (x=0)") -> str:
    rows = "".join(f" {line} ;\n" for line in body.strip().splitlines())
    return f"AArch64 t\n{{ {init} }}\n P0 ;\n{rows}{cond}\n"


@pytest.fixture
def branches(monkeypatch):
    """The masks of the reads each recorded branch tested."""
    seen = []
    monkeypatch.setattr(deps, "observer", SimpleNamespace(branch=seen.append))
    return seen


def test_mp_compiles_to_guest_code():
    test = parse(aarch64, MP)
    inst = test.instance()
    x, y = inst.refs["x"], inst.refs["y"]
    ops, regs = drive(inst.threads[0].program())
    assert ops == [o.WRITE_ONCE(x, 1), o.smp_mb(), o.WRITE_ONCE(y, 1)]
    assert [(op[1].addr, op[2]) for op in ops if op[0] == o.STORE] == [(x.addr, 1), (y.addr, 1)]
    assert regs == {"X0": 1, "X1": x.addr, "X2": 1, "X3": y.addr}


def test_mp_under_sc_forbids_flag_without_data():
    test = parse(aarch64, MP)
    states = {tuple(v for _, v in s) for s in outcomes(test, "sc")}
    assert states == {(0, 0), (0, 1), (1, 1)}
    assert judge(test, outcomes(test, "sc")).verdict == 0


DEPENDENT = """
LDR W2,[X1]
EOR W3,W2,W2
LDR W4,[X5,W3,SXTW]
ADD X6,X5,W3,SXTW
STR W2,[X6]
CBNZ W4,L0
MOV W7,#1
L0:
STR W7,[X8]
"""


def test_dependencies_survive_the_interpreter(branches):
    """Loads answered with Dep values: address, data and control dependencies reach the operations."""
    test = parse(aarch64, one_thread(DEPENDENT, "0:X1=y; 0:X5=x; 0:X8=z;"))
    inst = test.instance()
    answers = iter([Dep(5, 0b01), Dep(3, 0b10)])
    ops, regs = drive(inst.threads[0].program(), lambda op: next(answers) if op[0] == o.LOAD else None)
    first, second, data_store, ctrl_store = ops
    assert first[1].addr == inst.refs["y"].addr and first[1].deps == 0
    assert second[0] == o.LOAD and second[1].addr == inst.refs["x"].addr
    assert second[1].deps == 0b01  # EOR W3,W2,W2 is zero, and still depends on the read of W2
    assert data_store[1].deps == 0b01 and deps_of(data_store[2]) == 0b01 and int(data_store[2]) == 5
    assert branches == [0b10]  # CBNZ W4 tested the second read
    assert ctrl_store[1].addr == inst.refs["z"].addr and ctrl_store[2] == 0  # the branch was taken: W7 never set
    assert int(regs["X4"]) == 3 and deps_of(regs["X4"]) == 0b10


def test_a_branch_not_taken_is_recorded_too(branches):
    test = parse(aarch64, one_thread(DEPENDENT, "0:X1=y; 0:X5=x; 0:X8=z;"))
    inst = test.instance()
    answers = iter([Dep(5, 0b01), Dep(0, 0b10)])
    ops, regs = drive(inst.threads[0].program(), lambda op: next(answers) if op[0] == o.LOAD else None)
    assert branches == [0b10] and ops[-1][2] == 1


def test_register_arithmetic_widths_sign_extension_and_flags():
    body = """
MOV W0,#-1
ADD X1,X2,W0,SXTW
MOV X3,#-1
ADD W4,W3,#2
SUB W5,WZR,#1
ORR X6,X2,#3
AND W7,W6,#2
EOR X8,X6,X7,LSL #4
CMP W0,#-1
B.NE L0
MOV W9,#1
L0:
CMP W4,#2
B.GE L1
MOV W10,#1
L1:
CBZ XZR,L2
MOV W11,#1
L2:
"""
    test = parse(aarch64, one_thread(body, "0:X2=8;"))
    ops, regs = drive(test.instance().threads[0].program())
    assert ops == []
    assert regs == {"X0": 0xFFFF_FFFF, "X1": 7, "X2": 8, "X3": MASK64, "X4": 1, "X5": 0xFFFF_FFFF, "X6": 11,
                    "X7": 2, "X8": 11 ^ 32, "X9": 1, "X10": 1}
    thread = test.threads[0]
    assert thread.observe(regs, "W3") == 0xFFFF_FFFF and thread.observe(regs, "X3") == MASK64


MAPPING = """
LDR W0,[X1]
LDAR W0,[X1]
LDAPR W0,[X1]
STR W0,[X1]
STLR X0,[X1]
DMB ISH
DMB ISHLD
DSB ST
DMB OSHST
DSB SY
ISB
SWP W2,W3,[X1]
SWPAL W2,W3,[X1]
CASA W2,W3,[X1]
LDADDL W2,W3,[X1]
LDSETAL W2,W3,[X1]
LDCLRA W2,W3,[X1]
STADD W2,[X1]
LDXR W4,[X1]
LDAXR W4,[X1]
STXR W5,W4,[X1]
STLXR W5,W4,[X1,#0]
"""


def test_instruction_mapping():
    test = parse(aarch64, one_thread(MAPPING, "0:X1=x; 0:X2=2; 0:X3=3;"))
    inst = test.instance()
    x = inst.refs["x"]
    ops, regs = drive(inst.threads[0].program(), lambda op: 9 if op[0] != o.STORE_EX else 1)
    assert [tuple(x if v is x else v for v in op) for op in ops] == [
        (o.LOAD, x, o.RELAXED), (o.LOAD, x, o.ACQUIRE), (o.LOAD, x, o.ACQUIRE_PC),
        o.WRITE_ONCE(x, 9), o.smp_store_release(x, 9),
        o.smp_mb(), o.smp_rmb(), o.smp_wmb(), o.smp_wmb(), o.smp_mb(), o.isb(),
        o.xchg_relaxed(x, 2), o.xchg(x, 2), o.cmpxchg_acquire(x, 2, 9),
        o.atomic_fetch_add_release(x, 9), o.atomic_fetch_or(x, 9), o.atomic_fetch_andnot_acquire(x, 9),
        o.atomic_fetch_add_relaxed(x, 9),
        o.load_exclusive(x), o.load_exclusive(x, o.ACQUIRE), o.store_exclusive(x, 9), o.store_exclusive(x, 9, o.RELEASE),
    ]
    assert regs["X2"] == 9 and regs["X3"] == 9 and regs["X5"] == 1
    assert test.features == {"exclusive": 22}


def test_exclusives_are_unsupported_by_the_interleaving_engine():
    test = parse(aarch64, one_thread("LDXR W0,[X1]\nSTXR W2,W0,[X1]"))
    with pytest.raises(Unsupported) as exc:
        outcomes(test, "sc")
    assert exc.value.reason == ("unsupported: exclusive pair (LDXR/STXR) at line 4: the interleaving "
                                "checker (sc) has no exclusive monitor")


def test_pointers_in_memory_and_addresses_in_the_condition():
    text = one_thread("LDR X2,[X1]\nMOV W0,#1\nSTR W0,[X2]", "x=y; y=0; 0:X1=x;", "exists (y=1 /\\ 0:X2=y)")
    test = parse(aarch64, text)
    states = outcomes(test, "sc")
    assert judge(test, states).verdict == 1
    (state,) = states
    assert format_state(state, test.instance()) == "0:X2=y; y=1;"


def test_an_address_that_is_no_location_is_a_fault_not_an_access():
    test = parse(aarch64, one_thread("LDR W0,[X9]"))
    with pytest.raises(Unsupported, match=r"the address computed at line 4 \(0x0\) is no location"):
        outcomes(test, "sc")


@pytest.mark.parametrize("body, init, reason", [
    ("LDRB W0,[X1]", "0:X1=x;", "unsupported: LDRB (mixed-size access) at line 4"),
    ("STRH W0,[X1]", "0:X1=x;", "unsupported: STRH (mixed-size access) at line 4"),
    ("SWPALB W0,W1,[X1]", "0:X1=x;", "unsupported: SWPALB (mixed-size access) at line 4"),
    ("LDR W0,[X1,#4]", "0:X1=x;", "unsupported: offset #4 into a location (mixed-size access) at line 4"),
    ("LDR W0,[X1]", "uint64_t x; 0:X1=x;", "unsupported: typed declaration 'uint64_t x' (a mixed-size test) at line 2"),
    ("L0:\nLDR W0,[X1]\nCBNZ W0,L0", "0:X1=x;", "unsupported: backward branch to L0 (a loop) at line 6"),
    ("LDEOR W0,W1,[X1]", "0:X1=x;", "unsupported: LDEOR at line 4"),
    ("CMP W0,#1\nB.HS L0\nL0:", "0:X1=x;", "unsupported: B.HS (condition HS) at line 5"),
    ("LDR W0,[X1],#8", "0:X1=x;", "unsupported: pre/post-indexed address [X1],#8 at line 4"),
    ("DMB XYZ", "0:X1=x;", "unsupported: DMB XYZ at line 4"),
    ("LDR W0,[SP]", "0:X1=x;", "unsupported: the stack pointer SP at line 4"),
    ("LDR W0,[X1,#8]!", "0:X1=x;", "unsupported: pre/post-indexed address [X1,#8]! at line 4"),
])
def test_unsupported_constructs_name_the_construct_and_line(body, init, reason):
    with pytest.raises(Unsupported) as exc:
        parse(aarch64, one_thread(body, init))
    assert exc.value.reason == reason


@pytest.mark.parametrize("body, message", [
    ("CBNZ W0,NOWHERE", "t.litmus:4: branch to an undefined label NOWHERE"),
    ("LDR W0", "t.litmus:4: LDR takes 2 operand(s)"),
    ("MOV Q1,#1", "t.litmus:4: expected a W or X register, got 'Q1'"),
    ("LDR W0,[W1]", "t.litmus:4: the base of an address must be an X register"),
    ("MOV W0,#one", "t.litmus:4: expected an immediate #n"),
])
def test_malformed_instructions_name_file_and_line(body, message):
    with pytest.raises(Malformed) as exc:
        parse(aarch64, one_thread(body))
    assert str(exc.value).startswith(message)


# --------------------------------------------------------------------------- the AArch64 suite
def test_aarch64_suite_support():
    """At least 3,000 of the tests outside mixed/ have a front-end reading; mixed-size tests never do."""
    paths = suite("aarch64")
    supported, reasons = [], {}
    for path in paths:
        try:
            load(path)
            supported.append(path)
        except Unsupported as exc:
            reasons[key(path)] = exc.reason
    plain = [p for p in supported if not key(p).startswith("aarch64/mixed/")]
    assert len(plain) >= 3000 and len(paths) == 5824
    assert all("mixed-size" in reason for reason in reasons.values()), sorted(set(reasons.values()))[:5]
    assert sum(1 for k in reasons if k.startswith("aarch64/mixed/")) >= 1990


def _sc_smoke(paths):
    """Each test under sc: final states exist, and SC never reaches a state that ARMv8 forbids (SC is stronger)."""
    verdicts = expected("arm8-expected.csv")
    ran, contradictions, exclusive = 0, [], 0
    for path in paths:
        try:
            test = load(path)
        except Unsupported:
            continue
        try:
            result = judge(test, outcomes(test, "sc"))
        except Unsupported as exc:
            assert "exclusive pair" in exc.reason and "exclusive" in test.features, exc.reason
            exclusive += 1
            continue
        ran += 1
        assert result.states, key(path)
        arm = verdicts.get(key(path))
        q = test.condition.quantifier
        forbidden_by_arm = (q == EXISTS and arm == 0) or (q == NOT_EXISTS and arm == 1)
        if (forbidden_by_arm and result.positive) or (q == FORALL and arm == 1 and result.negative):
            contradictions.append(key(path))
    return ran, exclusive, contradictions


def test_aarch64_sample_under_sc_stays_within_armv8():
    paths = [p for p in suite("aarch64") if "/mixed/" not in p.as_posix()]
    ran, exclusive, contradictions = _sc_smoke(sample(paths, 100))
    assert ran >= 95 and contradictions == []


@pytest.mark.slow
def test_aarch64_suite_under_sc_stays_within_armv8():
    paths = [p for p in suite("aarch64") if "/mixed/" not in p.as_posix()]
    ran, exclusive, contradictions = _sc_smoke(paths)
    assert ran + exclusive >= 3000 and contradictions == []
