"""herd's final-condition language: parsing, precedence, evaluation and verdicts."""

from __future__ import annotations

import pytest

from pvspin.litmus.cond import (
    EXISTS,
    FORALL,
    MASK64,
    NOT_EXISTS,
    And,
    Atom,
    Const,
    Not,
    Or,
    Var,
    holds,
    observation,
    parse,
    verdict,
)
from pvspin.litmus.source import Malformed

EAX0 = Var.register(0, "EAX")
X = Var.memory("x")


def cond(text: str, line: int = 1):
    return parse("t.litmus", text, line)


def test_and_binds_tighter_than_or():
    c = cond(r"exists (0:EAX=1 /\ x=2 \/ 1:X2=0)")
    assert c.quantifier == EXISTS
    assert c.prop == Or((And((Atom(EAX0, 1), Atom(X, 2))), Atom(Var.register(1, "X2"), 0)))


def test_parentheses_and_negation():
    c = cond(r"forall ~(0:EAX=1 /\ (x=2 \/ x=3))")
    assert c.quantifier == FORALL
    assert c.prop == Not(And((Atom(EAX0, 1), Or((Atom(X, 2), Atom(X, 3))))))
    assert cond("exists (not (x=1))").prop == Not(Atom(X, 1))


@pytest.mark.parametrize("text", ["~exists (x=1)", "~ exists (x=1)", "~exists\n(x=1);"])
def test_not_exists_spellings(text):
    c = cond(text)
    assert (c.quantifier, c.prop) == (NOT_EXISTS, Atom(X, 1))


def test_old_final_with_section_reads_as_exists():
    c = cond("final (P0:EBX = 0 /\\ P1:EDX = 0);\nwith\ntso: ~exists;\ncc: exists;\n")
    assert c.quantifier == EXISTS
    assert c.prop == And((Atom(Var.register(0, "EBX"), 0), Atom(Var.register(1, "EDX"), 0)))


def test_forall_without_parentheses_and_hex_and_negative_values():
    c = cond(r"forall 0:EAX=0x10 /\ [x]=-1 /\ 1:X4!=z")
    assert c.prop == And((Atom(EAX0, 16), Atom(X, -1), Atom(Var.register(1, "X4"), "z", equal=False)))
    assert c.address_names() == {"z"}


def test_locations_and_filter_join_the_observed_variables_in_herds_order():
    c = cond("locations [x; 1:X10; 1:X2;]\nfilter (0:EAX=1)\nexists (y=1 /\\ 0:EBX=0)")
    assert c.filter == Atom(EAX0, 1)
    assert [str(v) for v in c.variables()] == ["0:EAX", "0:EBX", "1:X2", "1:X10", "x", "y"]


def test_printing_reparses_to_the_same_condition():
    for text in (r"exists (0:EAX=1 /\ (x=2 \/ ~y=1))", r"forall (~(x=1 \/ y=1) /\ true)", "~exists (x!=0)"):
        c = cond(text)
        assert cond(str(c)) == c


def test_holds_compares_as_64_bit_and_resolves_addresses():
    state = {EAX0: MASK64, X: 0x1040}
    address = {"z": 0x1040}.__getitem__
    assert holds(Atom(EAX0, -1), state, address)
    assert holds(Atom(X, "z"), state, address)
    assert not holds(Atom(X, "z", equal=False), state, address)
    assert holds(Or((Atom(X, 1), Not(Atom(EAX0, 0)))), state, address)
    assert holds(Const(True), state, address) and not holds(And((Const(True), Const(False))), state, address)


@pytest.mark.parametrize("quantifier, positive, negative, expected", [
    (EXISTS, 1, 3, 1), (EXISTS, 0, 4, 0),
    (NOT_EXISTS, 0, 4, 1), (NOT_EXISTS, 2, 2, 0),
    (FORALL, 3, 0, 1), (FORALL, 3, 1, 0),
])
def test_verdict_is_the_condition_as_written(quantifier, positive, negative, expected):
    assert verdict(quantifier, positive, negative) == expected


def test_observation_words():
    assert [observation(0, 3), observation(1, 3), observation(3, 0)] == ["Never", "Sometimes", "Always"]


@pytest.mark.parametrize("text, line, message", [
    ("exists (x=1", 5, "expected ')'"),
    ("exists (x 1)", 5, "expected '='"),
    ("\n\nexists (x=)", 7, "expected a value"),
    ("maybe (x=1)", 5, "expected exists, ~exists or forall"),
    ("exists (x=1) junk", 5, "unexpected 'junk'"),
    ("exists (x=1 @ y)", 5, "unexpected '@'"),
])
def test_malformed_conditions_name_file_and_line(text, line, message):
    with pytest.raises(Malformed) as exc:
        cond(text, 5)
    assert str(exc.value).startswith(f"t.litmus:{line}: ") and message in str(exc.value)
