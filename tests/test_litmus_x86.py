"""X86 litmus tests as guest code: the front end, the interleaving engine, and the x86 suite under TSO and SC."""

from __future__ import annotations

import pytest

from litmus_helpers import SB_X86, drive, expected, key, parse, sample, suite
from pvspin.litmus import load, x86
from pvspin.litmus.cond import MASK64
from pvspin.litmus.run import judge, outcomes
from pvspin.litmus.source import Malformed, Unsupported
from pvspin.machine import ops as o

SB = SB_X86


def eax_pairs(test, model):
    return {tuple(v for _, v in state) for state in outcomes(test, model)}


def test_sb_compiles_to_write_once_then_read_once():
    test = parse(x86, SB)
    inst = test.instance()
    ops, regs = drive(inst.threads[0].program(), lambda op: 7)
    assert ops == [o.WRITE_ONCE(inst.refs["x"], 1), o.READ_ONCE(inst.refs["y"])]
    assert regs == {"EAX": 7} and inst.threads[0].register(regs, "EAX") == 7
    assert [str(v) for v in test.observed] == ["0:EAX", "1:EAX"]


def test_sb_outcomes_sc_and_tso():
    test = parse(x86, SB)
    assert eax_pairs(test, "sc") == {(0, 1), (1, 0), (1, 1)}
    assert eax_pairs(test, "tso") == {(0, 0), (0, 1), (1, 0), (1, 1)}
    assert judge(test, outcomes(test, "sc")).verdict == 0
    result = judge(test, outcomes(test, "tso"))
    assert result.verdict == 1 and result.observation == "Observation SB Sometimes 1 3"


def test_mfence_and_xchg_restore_sc_under_tso():
    fenced = parse(x86, SB.replace(" MOV EAX,[y] | MOV EAX,[x] ;", " MFENCE | mfence ;\n MOV EAX,[y] | MOV EAX,[x] ;"))
    assert eax_pairs(fenced, "tso") == {(0, 1), (1, 0), (1, 1)}
    xchg = parse(x86, SB.replace("{ x=0; y=0; }", "{ 0:EBX=1; 1:EBX=1; }")
                 .replace("MOV [x],$1  | MOV [y],$1", "XCHG [x],EBX | xchg EBX,[y]"))
    assert eax_pairs(xchg, "tso") == {(0, 1), (1, 0), (1, 1)}


MAP = r"""X86 map
{ x=7; 0:EBX=5; }
 P0 ;
 mfence ;
 xchg EAX,[x] ;
 LOCK XADD [x],EBX ;
 lock add [x], 2 ;
 LOCK SUB [x],$1 ;
 LOCK AND [x],$6 ;
 LOCK INC [x] ;
 LOCK CMPXCHG [x],EBX ;
 LFENCE ;
 SFENCE ;
 MOV ECX,EBX ;
 MOV EDX,$-1 ;
exists (x=0 /\ 0:EAX=7 /\ 0:EBX=0 /\ 0:ECX=0 /\ 0:EDX=-1)
"""


def test_instruction_mapping():
    test = parse(x86, MAP)
    inst = test.instance()
    x = inst.refs["x"]
    ops, regs = drive(inst.threads[0].program(), lambda op: 7 if op[0] == o.XCHG else 0)
    assert ops == [
        o.smp_mb(), o.xchg(x, 0), o.atomic_fetch_add(x, 5), o.atomic_fetch_add(x, 2),
        o.atomic_fetch_add(x, MASK64), o.atomic_fetch_andnot(x, ~6 & MASK64), o.atomic_fetch_add(x, 1),
        o.cmpxchg(x, 7, 0), o.smp_rmb(), o.smp_wmb(),
    ]
    assert regs == {"EBX": 0, "EAX": 0, "ECX": 0, "EDX": MASK64}


def test_instruction_mapping_computes_herds_final_state():
    test = parse(x86, MAP)
    states = outcomes(test, "sc")
    assert len(states) == 1 and judge(test, states).verdict == 1


@pytest.mark.parametrize("instruction, reason", [
    ("ADD [x],$1", "unsupported: ADD on memory without LOCK (not atomic) at line 4"),
    ("MOV EAX,[EBX]", "unsupported: memory operand [EBX] (only [location]) at line 4"),
    ("MOV RAX,[x]", "unsupported: register RAX at line 4"),
    ("PAUSE", "unsupported: PAUSE at line 4"),
    ("LOCK XADD [x],$1", "unsupported: LOCK XADD [x],$1 at line 4"),
])
def test_unsupported_instructions_name_the_construct_and_line(instruction, reason):
    with pytest.raises(Unsupported) as exc:
        parse(x86, SB.replace("MOV [x],$1  |", f"{instruction} |"))
    assert exc.value.reason == reason


@pytest.mark.parametrize("instruction, message", [("MOV [x]", "MOV takes two operands"),
                                                   ("MOV EAX,[x]+", "cannot read the operand")])
def test_malformed_instructions_name_file_and_line(instruction, message):
    with pytest.raises(Malformed) as exc:
        parse(x86, SB.replace("MOV [x],$1  |", f"{instruction} |"))
    assert str(exc.value).startswith("t.litmus:4: ") and message in str(exc.value)


def test_filter_drops_states_before_the_verdict():
    test = parse(x86, SB.replace("exists (0:EAX=0 /\\ 1:EAX=0)", "filter (0:EAX=1)\nforall (1:EAX=1 \\/ 1:EAX=0)"))
    result = judge(test, outcomes(test, "tso"))
    assert len(result.states) == 2 and result.verdict == 1


def test_more_stores_than_the_store_buffer_is_unsupported_under_tso_only():
    rows = "".join(f" MOV [x],${i} | MOV EAX,[x] ;\n" for i in range(1, 6))
    test = parse(x86, "X86 five\n{ }\n P0 | P1 ;\n" + rows + "exists (1:EAX=5)\n")
    assert judge(test, outcomes(test, "sc")).verdict == 1
    with pytest.raises(Unsupported, match="unsupported: thread 0 has 5 stores, more than the interleaving checker's TSO store buffer holds"):
        outcomes(test, "tso")


# --------------------------------------------------------------------------- the x86 suite
def _run_suite(paths):
    """Each test under tso against tso-expected.csv, and under sc: SC's final states must be among TSO's."""
    verdicts = expected("tso-expected.csv")
    supported = agree = 0
    disagreements, sc_outside = [], []
    for path in paths:
        test = load(path)  # raises on anything unsupported or malformed
        supported += 1
        tso = outcomes(test, "tso")
        got = judge(test, tso).verdict
        if got == verdicts[key(path)]:
            agree += 1
        else:
            disagreements.append((key(path), verdicts[key(path)], got))
        sc = outcomes(test, "sc")
        if not sc or not set(sc) <= set(tso):
            sc_outside.append(key(path))
    return supported, agree, disagreements, sc_outside


def test_x86_sample_agrees_under_tso_and_sc_stays_within_tso():
    paths = sample(suite("x86"), 100)
    supported, agree, disagreements, sc_outside = _run_suite(paths)
    assert len(paths) >= 95 and disagreements == [] and agree == supported == len(paths)
    assert sc_outside == []


@pytest.mark.slow
def test_x86_suite_agrees_under_tso_and_sc_stays_within_tso():
    paths = suite("x86")
    supported, agree, disagreements, sc_outside = _run_suite(paths)
    assert supported >= 0.95 * len(paths) and disagreements == [] and agree == supported
    assert sc_outside == []


def test_every_x86_test_has_a_front_end_reading():
    paths = suite("x86")
    assert len(paths) == 356
    for path in paths:
        load(path)  # raises on anything unsupported or malformed
