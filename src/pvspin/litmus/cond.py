"""herd's final-condition language: ``exists``, ``~exists``, ``forall`` over a final state.

The tail of a litmus test (herd7's ``locations``, ``filter`` and constraint clauses)::

    locations [x; 0:EAX;]                  more locations to show in each final state
    filter (0:X0=1)                        keep only executions whose final state satisfies it
    exists (0:EAX=1 /\\ 1:EAX=0 /\\ x=2)    the condition, one of exists / ~exists / forall

A proposition is built from atoms ``0:EAX=1``, ``P1:X2=0`` (a register of thread 1),
``x=2`` or ``[x]=2`` (a memory location), ``1:X4=z`` (a register holding the address of
``z``) and ``!=``; with ``~`` (not), ``/\\`` (and, binding tighter), ``\\/`` (or),
parentheses, ``true`` and ``false``; ``not`` is ``~``.  Old x86 files write ``final P; with tso: ~exists;``:
the condition is ``P``, read as ``exists P`` (that is how the verdicts recorded for them
read it: 0 when TSO never reaches ``P``); the ``with`` section names per-model
expectations and is ignored.

The verdict (:func:`verdict`) is herd's: 1 when the condition *as written* holds over
the set of reachable final states -- ``exists``: some state satisfies the proposition;
``~exists``: none does; ``forall``: every one does.

Values are compared as 64-bit two's complement (``-1`` equals ``0xffffffffffffffff``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from .source import Malformed, number

MASK64 = (1 << 64) - 1

EXISTS = "exists"
NOT_EXISTS = "~exists"
FORALL = "forall"
QUANTIFIERS = (EXISTS, NOT_EXISTS, FORALL)


@dataclass(frozen=True, order=True)
class Var:
    """A register of a thread (``thread >= 0``: ``0:EAX``) or a memory location (``thread == -1``: ``x``).

    Ordered as herd prints a state: registers by thread and (naturally sorted) name, then memory.
    """

    kind: int  # 0 register, 1 memory: registers sort first
    thread: int
    key: tuple  # natural sort key of the name (X2 before X10)
    name: str

    @staticmethod
    def register(thread: int, name: str) -> Var:
        return Var(0, thread, _natural(name), name)

    @staticmethod
    def memory(name: str) -> Var:
        return Var(1, -1, _natural(name), name)

    @property
    def is_register(self) -> bool:
        return self.kind == 0

    def __str__(self) -> str:
        return f"{self.thread}:{self.name}" if self.kind == 0 else self.name


def _natural(name: str) -> tuple:
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name) if p)


# --------------------------------------------------------------------------- propositions
@dataclass(frozen=True)
class Atom:
    """``var = value`` (or ``!=``); ``value`` an int, a location name standing for its address, or a register (a Var)."""

    var: Var
    value: int | str
    equal: bool = True

    def __str__(self) -> str:
        return f"{self.var}{'=' if self.equal else '!='}{self.value}"


@dataclass(frozen=True)
class Not:
    prop: object

    def __str__(self) -> str:
        return f"~{_wrap(self.prop, Not)}"


@dataclass(frozen=True)
class And:
    props: tuple

    def __str__(self) -> str:
        return " /\\ ".join(_wrap(p, And) for p in self.props)


@dataclass(frozen=True)
class Or:
    props: tuple

    def __str__(self) -> str:
        return " \\/ ".join(_wrap(p, Or) for p in self.props)


@dataclass(frozen=True)
class Const:
    value: bool

    def __str__(self) -> str:
        return "true" if self.value else "false"


def _wrap(prop, parent) -> str:
    """A sub-proposition, parenthesised where herd's precedence (~ over /\\ over \\/) needs it."""
    tight = {Not: (Atom, Const, Not), And: (Atom, Const, Not, And), Or: (Atom, Const, Not, And, Or)}[parent]
    return str(prop) if isinstance(prop, tight) else f"({prop})"


@dataclass(frozen=True)
class Condition:
    """A test's tail: the quantified proposition, the filter, and the extra locations shown."""

    quantifier: str  # EXISTS, NOT_EXISTS or FORALL
    prop: object
    filter: object | None = None
    locations: tuple[Var, ...] = ()

    def __str__(self) -> str:
        return f"{self.quantifier} ({self.prop})"

    def variables(self) -> tuple[Var, ...]:
        """Every location a final state shows (herd's observed locations), in printing order."""
        found = set(self.locations)
        for prop in (self.prop, self.filter):
            if prop is not None:
                found.update(_vars(prop))
        return tuple(sorted(found))

    def address_names(self) -> set[str]:
        """Location names used as values (``1:X4=z``): the test must have those locations."""
        names = set()
        for prop in (self.prop, self.filter):
            if prop is not None:
                names.update(a.value for a in _atoms(prop) if isinstance(a.value, str))
        return names


def _atoms(prop):
    if isinstance(prop, Atom):
        yield prop
    elif isinstance(prop, Not):
        yield from _atoms(prop.prop)
    elif isinstance(prop, (And, Or)):
        for p in prop.props:
            yield from _atoms(p)


def _vars(prop):
    out = set()
    for a in _atoms(prop):
        out.add(a.var)
        if isinstance(a.value, Var):  # 0:r1=1:r2 (C tests compare registers)
            out.add(a.value)
    return out


# --------------------------------------------------------------------------- evaluation
def holds(prop, state: Mapping[Var, int], address: Callable[[str], int]) -> bool:
    """Whether ``prop`` holds in a final state (``address(name)``: where location ``name`` lives)."""
    if isinstance(prop, Atom):
        value = prop.value
        want = address(value) if isinstance(value, str) else state[value] if isinstance(value, Var) else value
        same = (state[prop.var] & MASK64) == (want & MASK64)
        return same if prop.equal else not same
    if isinstance(prop, Not):
        return not holds(prop.prop, state, address)
    if isinstance(prop, And):
        return all(holds(p, state, address) for p in prop.props)
    if isinstance(prop, Or):
        return any(holds(p, state, address) for p in prop.props)
    return prop.value


def verdict(quantifier: str, positive: int, negative: int) -> int:
    """herd's verdict from the numbers of final states that satisfy the proposition and that do not."""
    if quantifier == EXISTS:
        return int(positive > 0)
    if quantifier == NOT_EXISTS:
        return int(positive == 0)
    return int(negative == 0)


def observation(positive: int, negative: int) -> str:
    """herd's ``Observation`` word: Never, Sometimes or Always (the proposition, not the quantifier)."""
    if positive == 0:
        return "Never"
    return "Always" if negative == 0 else "Sometimes"


# --------------------------------------------------------------------------- parsing
_TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<reg>(?:P?\d+):[A-Za-z_][A-Za-z0-9_]*)
  | (?P<num>-?(?:0x[0-9a-fA-F]+|\d+)(?![A-Za-z0-9_]))
  | (?P<name>[A-Za-z_][A-Za-z0-9_.]*)
  | (?P<op>/\\|\\/|!=|==|=|~|\(|\)|\[|\]|;|:)
""", re.X)


_WITH = re.compile(r"^\s*with\b", re.M)  # old x86 files: per-model expectations follow, not semantics


class _Tokens:
    def __init__(self, path, text: str, first_line: int):
        self.path = path
        self.items: list[tuple[str, str, int]] = []  # (kind, text, line)
        line = first_line
        pos = 0
        while pos < len(text):
            m = _TOKEN.match(text, pos)
            if m is None:
                raise Malformed(path, line, f"unexpected {text[pos:pos + 12].split()[0]!r} in the condition")
            kind = m.lastgroup
            if kind != "space":
                self.items.append((kind, m.group(0), line))
            line += m.group(0).count("\n")
            pos = m.end()
        self.at = 0
        self.end_line = self.items[-1][2] if self.items else first_line  # "the end" is where the text stops

    def peek(self, offset: int = 0) -> tuple[str, str, int]:
        i = self.at + offset
        return self.items[i] if i < len(self.items) else ("end", "", self.end_line)

    def take(self) -> tuple[str, str, int]:
        tok = self.peek()
        self.at += 1
        return tok

    def expect(self, text: str) -> None:
        kind, got, line = self.take()
        if got != text:
            raise Malformed(self.path, line, f"expected {text!r} in the condition, got {got or 'the end'!r}")

    def fail(self, what: str):
        kind, got, line = self.peek()
        raise Malformed(self.path, line, f"expected {what} in the condition, got {got or 'the end'!r}")


def parse(path, text: str, first_line: int = 1) -> Condition:
    """Parse a test's tail (``locations``, ``filter``, the quantified condition); :class:`Malformed` on error."""
    cut = _WITH.search(text)
    toks = _Tokens(path, text[:cut.start()] if cut else text, first_line)
    locations: list[Var] = []
    flt = None
    quantifier = None
    while quantifier is None:
        kind, word, line = toks.take()
        if word == "locations":
            toks.expect("[")
            while toks.peek()[1] != "]":
                if toks.peek()[1] == ";":
                    toks.take()
                    continue
                locations.append(_var(toks))
            toks.expect("]")
        elif word == "filter":
            flt = _disjunction(toks)
        elif word in ("exists", "final"):
            quantifier = EXISTS
        elif word == "forall":
            quantifier = FORALL
        elif word == "~" or (word == "not" and toks.peek()[1] == "exists"):
            toks.expect("exists")
            quantifier = NOT_EXISTS
        else:
            raise Malformed(path, line, f"expected exists, ~exists or forall, got {word or 'the end'!r}")
    prop = _disjunction(toks)
    if toks.peek()[1] == ";":
        toks.take()
    kind, word, line = toks.peek()
    if kind != "end" and word != "with":
        raise Malformed(path, line, f"unexpected {word!r} after the condition")
    return Condition(quantifier, prop, flt, tuple(locations))


def _chain(toks: _Tokens, operator: str, operand, node):
    """``operand (operator operand)*`` as one ``node`` (And, Or), or the single operand."""
    props = [operand(toks)]
    while toks.peek()[1] == operator:
        toks.take()
        props.append(operand(toks))
    return props[0] if len(props) == 1 else node(tuple(props))


def _disjunction(toks: _Tokens):
    return _chain(toks, "\\/", _conjunction, Or)


def _conjunction(toks: _Tokens):
    return _chain(toks, "/\\", _unary, And)


def _unary(toks: _Tokens):
    kind, word, line = toks.peek()
    if word == "~" or (word == "not" and toks.peek(1)[1] in ("(", "~", "not")):
        toks.take()
        return Not(_unary(toks))
    if word == "(":
        toks.take()
        prop = _disjunction(toks)
        toks.expect(")")
        return prop
    if word in ("true", "false"):
        toks.take()
        return Const(word == "true")
    var = _var(toks)
    kind, op, line = toks.take()
    if op not in ("=", "==", "!="):
        raise Malformed(toks.path, line, f"expected '=' after {var} in the condition, got {op or 'the end'!r}")
    kind, value, line = toks.take()
    if kind == "num":
        return Atom(var, number(value), op != "!=")
    if kind == "reg":
        thread, name = value.split(":")
        return Atom(var, Var.register(int(thread.lstrip("P")), name), op != "!=")
    if kind == "name":
        return Atom(var, value, op != "!=")
    raise Malformed(toks.path, line, f"expected a value after {var}{op} in the condition, got {value or 'the end'!r}")


def _var(toks: _Tokens) -> Var:
    kind, word, line = toks.take()
    if kind == "reg":
        thread, name = word.split(":")
        return Var.register(int(thread.lstrip("P")), name)
    if word == "[":
        kind, name, line = toks.take()
        if kind != "name":
            raise Malformed(toks.path, line, f"expected a location name inside '[ ]', got {name or 'the end'!r}")
        toks.expect("]")
        return Var.memory(name)
    if kind == "name":
        return Var.memory(word)
    raise Malformed(toks.path, line, f"expected a register (0:EAX) or a location, got {word or 'the end'!r}")
