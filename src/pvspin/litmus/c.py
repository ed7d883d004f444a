"""C litmus tests (herd's ``C`` format, the Linux-kernel memory model's) into guest code.

A test reads::

    C MP+pooncerelease+poacquireonce          <- "C", the name
    { x=0; int *p=y; 0:r1=1; }                <- locations (an int, a location's address) and registers
    P0(int *x, int *y) { WRITE_ONCE(*x, 1); smp_store_release(y, 1); }
    P1(int *x, int *y) { int r0 = smp_load_acquire(y); int r1 = READ_ONCE(*x); }
    exists (1:r0=1 /\\ 1:r1=0)                 <- locations / filter / exists / ~exists, as :mod:`.cond`

Each ``Pn`` is a small C function whose parameters name the locations it uses (a
parameter ``x`` holds the address of location ``x``).  The subset: declarations of
locals (``int r0;``, ``intptr_t r1 = ...;``, ``int *r2 = READ_ONCE(*x);``, undeclared
registers too), assignments (``=``, ``+=``, ...), ``if``/``else``, blocks, C arithmetic,
comparisons and logic, casts (no-ops), and the kernel's primitives as
``tools/memory-model/linux-kernel.def`` defines them:

=======================================================  =====================================
C                                                        guest operation (:mod:`pvspin.machine.ops`)
=======================================================  =====================================
``READ_ONCE(*p)``, ``atomic_read(p)``, ``rcu_dereference(*p)``  LOAD RELAXED
``smp_load_acquire(p)``, ``atomic_read_acquire(p)``        LOAD ACQUIRE
``WRITE_ONCE(*p, v)``, ``atomic_set(p, v)``                STORE RELAXED
``smp_store_release(p, v)``, ``atomic_set_release``,       STORE RELEASE
``rcu_assign_pointer(*p, v)``
``smp_store_mb(*p, v)``                                    ``smp_store_mb`` (W[once]; F[mb])
``smp_mb()``, ``smp_rmb()``, ``smp_wmb()``,                FENCE of that kind
``smp_mb__{before,after}_atomic()``,
``smp_mb__after_spinlock()``, ``smp_mb__after_unlock_lock()``
``barrier()``                                              nothing (a compiler barrier)
``xchg*``, ``atomic_xchg*``, ``cmpxchg*``,                 XCHG / CMPXCHG (``_relaxed`` RELAXED,
``atomic_cmpxchg*``                                        ``_acquire``, ``_release``, none FULL)
``atomic_{add,sub,inc,dec}_return*``,                      FETCH_ADD (the new value computed
``atomic_fetch_{add,sub,inc,dec}*``,                       locally), FETCH_OR, FETCH_ANDNOT
``atomic_fetch_{or,and,andnot}*``                          (``and v`` is ``andnot ~v``)
``atomic_{add,sub,inc,dec,or,and,andnot}``                 the same with order NORETURN (LKMM's
                                                           Noreturn: no value returned)
``atomic_{sub,dec,inc}_and_test``, ``atomic_add_negative``  FETCH_ADD FULL, then the test
``spin_lock(s)``                                           a wait for 0 (LKR) and a write of 1 (LKW)
``spin_unlock(s)``                                         a store of 0 (UL)
``spin_trylock(s)``                                        a lock read; reading 0, the write of 1
``spin_is_locked(s)``                                      a lock read (RL / RU)
=======================================================  =====================================

The spinlock is LKMM's abstract lock of ``lock.cat`` (see :mod:`pvspin.check.graph.models.lkmm`):
these tests run under ``--memory-model lkmm`` only.  With ``--spinlock LOCK`` the ``spin_*()``
calls are the kernel's lock code instead (:mod:`.spinlock`), and the tests run under any model.

**Dependencies** are carried as the AArch64 front end carries them: a value read is a
:class:`~pvspin.machine.deps.Dep`, C arithmetic on it keeps its reads, an access through a
pointer computed from it has an address dependency, a stored value computed from it a data
dependency, and testing it in ``if`` (or ``?:``) a control dependency for everything after.
``&&``, ``||`` and ``!`` are computed without branching.  Values are 64-bit signed.

**Unsupported** (with the construct and its line; such a test gets no verdict): RCU and
SRCU (``rcu_read_lock``, ``synchronize_rcu``, ``srcu_*``, ...), plain accesses (``*p = v``,
``r = *p``, ``p->f``, arrays), loops and ``goto``, ``atomic_add_unless`` and any other
function, a ``spin_unlock`` of a lock the thread has not locked before it.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..machine import ops as o
from .cond import MASK64
from .cond import parse as parse_condition
from .source import Malformed, Unsupported, number
from .test import LitmusTest, complete_locations

SIGN = 1 << 63

_RCU = re.compile(r"^(s?rcu_|synchronize_|call_s?rcu|kfree_rcu|smp_mb__after_srcu|srcu_)")
_TYPE_WORDS = frozenset(
    "int intptr_t uintptr_t long unsigned signed char short bool u8 u16 u32 u64 s8 s16 s32 s64 "
    "atomic_t atomic_long_t spinlock_t volatile const size_t".split())
_SUFFIXES = {"": o.FULL, "_relaxed": o.RELAXED, "_acquire": o.ACQUIRE, "_release": o.RELEASE}
_FENCES = {"smp_mb": o.MB, "smp_rmb": o.RMB, "smp_wmb": o.WMB, "smp_mb__before_atomic": o.MB_BEFORE_ATOMIC,
           "smp_mb__after_atomic": o.MB_AFTER_ATOMIC, "smp_mb__after_spinlock": o.MB_AFTER_SPINLOCK,
           "smp_mb__after_unlock_lock": o.MB_AFTER_UNLOCK_LOCK}

# (name) -> (kind, opcode, order, arity); kinds say where the pointer is and what comes back
_CALLS: dict[str, tuple] = {}


def _calls() -> None:
    for sfx, order in _SUFFIXES.items():
        _CALLS[f"xchg{sfx}"] = ("xchg", o.XCHG, order, 2)
        _CALLS[f"atomic_xchg{sfx}"] = ("xchg", o.XCHG, order, 2)
        _CALLS[f"cmpxchg{sfx}"] = ("cmpxchg", o.CMPXCHG, order, 3)
        _CALLS[f"atomic_cmpxchg{sfx}"] = ("cmpxchg", o.CMPXCHG, order, 3)
        for op, sign in (("add", 1), ("sub", -1)):
            _CALLS[f"atomic_{op}_return{sfx}"] = ("op_return", sign, order, 2)
            _CALLS[f"atomic_fetch_{op}{sfx}"] = ("fetch", sign, order, 2)
        for op, delta in (("inc", 1), ("dec", -1)):
            _CALLS[f"atomic_{op}_return{sfx}"] = ("op_return1", delta, order, 1)
            _CALLS[f"atomic_fetch_{op}{sfx}"] = ("fetch1", delta, order, 1)
        _CALLS[f"atomic_fetch_or{sfx}"] = ("fetch_bits", o.FETCH_OR, order, 2)
        _CALLS[f"atomic_fetch_andnot{sfx}"] = ("fetch_bits", o.FETCH_ANDNOT, order, 2)
        _CALLS[f"atomic_fetch_and{sfx}"] = ("fetch_and", o.FETCH_ANDNOT, order, 2)
    for name, sign in (("atomic_add", 1), ("atomic_sub", -1)):
        _CALLS[name] = ("noreturn", sign, o.NORETURN, 2)
    for name, delta in (("atomic_inc", 1), ("atomic_dec", -1)):
        _CALLS[name] = ("noreturn1", delta, o.NORETURN, 1)
    _CALLS["atomic_or"] = ("noreturn_bits", o.FETCH_OR, o.NORETURN, 2)
    _CALLS["atomic_andnot"] = ("noreturn_bits", o.FETCH_ANDNOT, o.NORETURN, 2)
    _CALLS["atomic_and"] = ("noreturn_and", o.FETCH_ANDNOT, o.NORETURN, 2)
    _CALLS["atomic_sub_and_test"] = ("test", -1, o.FULL, 2)
    _CALLS["atomic_dec_and_test"] = ("test1", -1, o.FULL, 1)
    _CALLS["atomic_inc_and_test"] = ("test1", 1, o.FULL, 1)
    _CALLS["atomic_add_negative"] = ("negative", 1, o.FULL, 2)
    for name, order in (("READ_ONCE", o.RELAXED), ("rcu_dereference", o.RELAXED)):
        _CALLS[name] = ("load*", None, order, 1)
    for name, order in (("atomic_read", o.RELAXED), ("smp_load_acquire", o.ACQUIRE),
                        ("atomic_read_acquire", o.ACQUIRE)):
        _CALLS[name] = ("load", None, order, 1)
    for name, order in (("WRITE_ONCE", o.RELAXED), ("rcu_assign_pointer", o.RELEASE)):
        _CALLS[name] = ("store*", None, order, 2)
    for name, order in (("atomic_set", o.RELAXED), ("smp_store_release", o.RELEASE),
                        ("atomic_set_release", o.RELEASE)):
        _CALLS[name] = ("store", None, order, 2)
    _CALLS["smp_store_mb"] = ("store_mb", None, None, 2)
    for name, kind in _FENCES.items():
        _CALLS[name] = ("fence", kind, None, 0)
    _CALLS["barrier"] = ("nothing", None, None, 0)
    for name in ("spin_lock", "spin_unlock", "spin_trylock", "spin_is_locked"):
        _CALLS[name] = (name, None, None, 1)


_calls()


_SPIN = frozenset({"spin_lock", "spin_unlock", "spin_trylock", "spin_is_locked"})

# atomic_add(v, p) and the like: the pointer is the second argument
_OPERAND_FIRST = frozenset({"op_return", "fetch", "fetch_bits", "fetch_and", "noreturn", "noreturn_bits", "noreturn_and",
                            "test", "negative"})


def _signed(v):
    """A 64-bit value as a signed number, by arithmetic (so a Dep keeps its reads)."""
    return ((v & MASK64) ^ SIGN) - SIGN


def _lock_free(v) -> bool:
    return int(v) == 0


# --------------------------------------------------------------------------- tokens
_TOKEN = re.compile(r"""
    (?P<space>[ \t\r]+) | (?P<nl>\n)
  | (?P<num>0[xX][0-9a-fA-F]+|\d+)[uUlL]*
  | (?P<name>[A-Za-z_]\w*)
  | (?P<op><<=|>>=|->|\+\+|--|&&|\|\||==|!=|<=|>=|<<|>>|\+=|-=|\*=|/=|%=|&=|\|=|\^=|[-+*/%&|^!~<>=(){}\[\];,?:.])
""", re.X)


class _Toks:
    def __init__(self, path, text: str, line: int):
        self.path = path
        self.items: list[tuple[str, str, int]] = []
        pos = 0
        while pos < len(text):
            m = _TOKEN.match(text, pos)
            if m is None:
                raise Malformed(path, line, f"unexpected {text[pos:pos + 10]!r}")
            kind = m.lastgroup
            if kind == "nl":
                line += 1
            elif kind != "space":
                self.items.append((kind, m.group(kind), line))
            pos = m.end()
        self.at = 0
        self.last_line = line

    def peek(self, k: int = 0) -> tuple[str, str, int]:
        i = self.at + k
        return self.items[i] if i < len(self.items) else ("end", "", self.last_line)

    def take(self) -> tuple[str, str, int]:
        tok = self.peek()
        self.at += 1
        return tok

    def expect(self, text: str) -> int:
        kind, got, line = self.take()
        if got != text:
            raise Malformed(self.path, line, f"expected {text!r}, got {got or 'the end'!r}")
        return line

    def line(self) -> int:
        return self.peek()[2]


def _unsupported(what: str, line: int):
    raise Unsupported(f"unsupported: {what} at line {line}")


# --------------------------------------------------------------------------- parsing: statements
def _is_type(toks: _Toks, k: int = 0) -> bool:
    kind, word, _ = toks.peek(k)
    return kind == "name" and (word in _TYPE_WORDS or word == "struct")


def _block(toks: _Toks) -> list:
    toks.expect("{")
    out = []
    while toks.peek()[1] != "}":
        if toks.peek()[0] == "end":
            raise Malformed(toks.path, toks.line(), "'{' never closed")
        out.append(_statement(toks))
    toks.take()
    return out


def _skip_type(toks: _Toks) -> None:
    while _is_type(toks):
        kind, word, line = toks.take()
        if word == "struct":
            _unsupported("a struct", line)


def _statement(toks: _Toks):
    kind, word, line = toks.peek()
    if word == "{":
        return ("block", _block(toks))
    if word == ";":
        toks.take()
        return ("block", [])
    if word == "if":
        toks.take()
        toks.expect("(")
        cond = _expr(toks)
        toks.expect(")")
        then = _statement(toks)
        other = None
        if toks.peek()[1] == "else":
            toks.take()
            other = _statement(toks)
        return ("if", cond, then, other, line)
    if word in ("while", "for", "do", "goto", "switch"):
        _unsupported(f"'{word}' (a loop or jump)", line)
    if word == "return":
        _unsupported("'return'", line)
    if _is_type(toks):
        _skip_type(toks)
        decls = []
        while True:
            while toks.peek()[1] == "*":
                toks.take()
            kind, name, nline = toks.take()
            if kind != "name":
                raise Malformed(toks.path, nline, f"expected a variable name, got {name!r}")
            if toks.peek()[1] == "[":
                _unsupported(f"the array {name}", nline)
            init = None
            if toks.peek()[1] == "=":
                toks.take()
                init = _expr(toks)
            decls.append((name, init))
            if toks.peek()[1] == ",":
                toks.take()
                continue
            break
        toks.expect(";")
        return ("decl", decls, line)
    e = _expr(toks)
    toks.expect(";")
    return ("expr", e, line)


# --------------------------------------------------------------------------- parsing: expressions
_BINARY = [("||",), ("&&",), ("|",), ("^",), ("&",), ("==", "!="), ("<", "<=", ">", ">="), ("<<", ">>"),
           ("+", "-"), ("*", "/", "%")]
_ASSIGN = ("=", "+=", "-=", "*=", "/=", "%=", "&=", "|=", "^=", "<<=", ">>=")


def _expr(toks: _Toks):
    left = _conditional(toks)
    kind, op, line = toks.peek()
    if op in _ASSIGN:
        toks.take()
        right = _expr(toks)
        if left[0] == "var":
            return ("assign", left[1], op, right, line)
        if left[0] == "deref":
            _unsupported("a plain store through a pointer", line)
        raise Malformed(toks.path, line, f"cannot assign to {left[0]}")
    return left


def _conditional(toks: _Toks):
    cond = _binary(toks, 0)
    if toks.peek()[1] == "?":
        line = toks.take()[2]
        a = _expr(toks)
        toks.expect(":")
        b = _conditional(toks)
        return ("cond", cond, a, b, line)
    return cond


def _binary(toks: _Toks, level: int):
    if level == len(_BINARY):
        return _unary(toks)
    left = _binary(toks, level + 1)
    while toks.peek()[1] in _BINARY[level] and toks.peek()[0] == "op":
        op = toks.take()[1]
        right = _binary(toks, level + 1)
        left = ("bin", op, left, right)
    return left


def _unary(toks: _Toks):
    kind, word, line = toks.peek()
    if word in ("-", "!", "~", "+"):
        toks.take()
        return ("un", word, _unary(toks))
    if word == "*":
        toks.take()
        return ("deref", _unary(toks), line)
    if word == "&":
        toks.take()
        inner = _unary(toks)
        if inner[0] != "var":
            _unsupported("'&' of an expression", line)
        return ("addr", inner[1], line)
    if word in ("++", "--"):
        _unsupported(f"'{word}'", line)
    if word == "(" and _is_type(toks, 1):  # a cast: (int *), (intptr_t **) ...
        toks.take()
        _skip_type(toks)
        while toks.peek()[1] == "*":
            toks.take()
        toks.expect(")")
        return _unary(toks)
    return _postfix(toks)


def _postfix(toks: _Toks):
    e = _primary(toks)
    while True:
        kind, word, line = toks.peek()
        if word in ("->", ".", "["):
            _unsupported(f"'{word}' (a plain access to a structure or array)", line)
        if word in ("++", "--"):
            if e[0] != "var":
                raise Malformed(toks.path, line, f"{word} of an expression")
            toks.take()
            return ("assign", e[1], "+=" if word == "++" else "-=", ("num", 1), line)
        return e


def _primary(toks: _Toks):
    kind, word, line = toks.take()
    if kind == "num":
        return ("num", number(word))
    if kind == "name":
        if toks.peek()[1] == "(":
            toks.take()
            args = []
            while toks.peek()[1] != ")":
                args.append(_expr(toks))
                if toks.peek()[1] == ",":
                    toks.take()
                elif toks.peek()[1] != ")":
                    raise Malformed(toks.path, toks.line(), f"expected ',' or ')' in the call of {word}")
            toks.take()
            return _call(word, args, line)
        if word in ("true", "false"):
            return ("num", int(word == "true"))
        if word in ("NULL", "null"):
            return ("num", 0)
        return ("var", word, line)
    if word == "(":
        e = _expr(toks)
        toks.expect(")")
        return e
    raise Malformed(toks.path, line, f"unexpected {word or 'end of the function'!r}")


def _call(name: str, args: list, line: int):
    spec = _CALLS.get(name)
    if spec is None and _RCU.match(name):
        _unsupported(f"{name}() (RCU/SRCU)", line)
    if spec is None:
        _unsupported(f"{name}()", line)
    if len(args) != spec[3]:
        raise Unsupported(f"unsupported: {name}() with {len(args)} arguments at line {line}")
    if spec[0] in ("load*", "store*", "store_mb"):  # READ_ONCE(*p): the pointer is inside the '*'
        first = args[0]
        args = [first[1] if first[0] == "deref" else first, *args[1:]]
    return ("call", name, spec, args, line)


# --------------------------------------------------------------------------- evaluation
def _pure(e) -> bool:
    """Whether evaluating ``e`` performs no operation (no call, no assignment)."""
    tag = e[0]
    if tag in ("num", "var", "addr"):
        return True
    if tag == "un":
        return _pure(e[2])
    if tag == "bin":
        return _pure(e[2]) and _pure(e[3])
    if tag == "cond":
        return _pure(e[1]) and _pure(e[2]) and _pure(e[3])
    return False


def _truth(v) -> int:
    return int(v) != 0


def _apply(op: str, a, b):
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    if op == "/":
        return int(int(a) / int(b)) + 0 * (a + b) if int(b) else _fault("division by zero")
    if op == "%":
        return a - b * (int(int(a) / int(b))) if int(b) else _fault("division by zero")
    if op == "&":
        return a & b
    if op == "|":
        return a | b
    if op == "^":
        return a ^ b
    if op == "<<":
        return a << (int(b) & 63)
    if op == ">>":
        return a >> (int(b) & 63)
    if op in ("==", "!=", "<", "<=", ">", ">="):
        result = {"==": a == b, "!=": a != b, "<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]
        return result + 0  # a Dep comparison is a Dep of a bool: as 0/1
    if op in ("&&", "||"):  # no branch: the value of both sides, depending on both
        value = (_truth(a) and _truth(b)) if op == "&&" else (_truth(a) or _truth(b))
        return (a & 0) + (b & 0) + int(value)
    raise ValueError(op)


def _fault(message: str):
    from .run import LitmusFault

    raise LitmusFault(message)


class CThread:
    """One ``Pn`` function: its parameters and statements, and the interpreter that is its guest code."""

    stores = 0  # no store buffer limit applies: C tests run on the execution-graph checker only

    def __init__(self, params: list[str], body: list, registers: dict[str, int | str]):
        self.params = params
        self.body = body
        self.registers = registers

    # pure expressions evaluate with a plain function, the rest with generators
    def _value(self, e, env: dict, inst):
        tag = e[0]
        if tag == "num":
            return e[1]
        if tag == "var":
            value = env.get(e[1])
            if value is None:
                if e[1] in inst.refs:
                    return inst.refs[e[1]].addr
                return 0
            return value
        if tag == "addr":
            if e[1] in inst.refs and e[1] not in env:
                return inst.refs[e[1]].addr
            _unsupported(f"'&{e[1]}' of a register", e[2])
        if tag == "un":
            v = self._value(e[2], env, inst)
            op = e[1]
            return -v if op == "-" else ~v if op == "~" else (v == 0) + 0 if op == "!" else v
        if tag == "bin":
            return _apply(e[1], self._value(e[2], env, inst), self._value(e[3], env, inst))
        if tag == "cond":
            return self._value(e[2] if self._value(e[1], env, inst) else e[3], env, inst)
        raise AssertionError(tag)

    def _eval(self, e, env: dict, inst):
        if _pure(e):
            return self._value(e, env, inst)
        tag = e[0]
        if tag == "call":
            return (yield from self._do_call(e, env, inst))
        if tag == "assign":
            _, name, op, right, line = e
            value = yield from self._eval(right, env, inst)
            if op != "=":
                value = _apply(op[:-1], env.get(name, 0), value)
            env[name] = value
            return value
        if tag == "un":
            v = yield from self._eval(e[2], env, inst)
            op = e[1]
            return -v if op == "-" else ~v if op == "~" else (v == 0) + 0 if op == "!" else v
        if tag == "bin":
            a = yield from self._eval(e[2], env, inst)
            b = yield from self._eval(e[3], env, inst)
            return _apply(e[1], a, b)
        if tag == "cond":
            c = yield from self._eval(e[1], env, inst)
            return (yield from self._eval(e[2] if c else e[3], env, inst))
        if tag == "deref":
            _unsupported("a plain read through a pointer", e[2])
        raise AssertionError(tag)

    def _lock(self, inst, value, line: int):
        name = inst.names.get(int(value) & MASK64)
        if name not in inst.locks:
            _fault(f"the lock pointer at line {line} ({int(value) & MASK64:#x}) is no lock")
        return inst.locks[name]

    def _ref(self, inst, value, line: int):
        name = inst.names.get(int(value) & MASK64)
        if name is None:
            _fault(f"the address computed at line {line} ({int(value) & MASK64:#x}) is no location")
        if name in inst.locks:
            _fault(f"line {line} accesses the lock {name} other than through spin_*(): its word is the "
                   f"{inst.spinlock.name} lock's")
        ref = inst.mem.ref_at(value & MASK64, 8)
        return inst.refs[name].depending(ref.deps)

    def _do_call(self, e, env: dict, inst):
        _, name, spec, args, line = e
        kind, what, order, _ = spec
        vals = []
        for a in args:
            vals.append((yield from self._eval(a, env, inst)))
        if kind == "fence":
            if inst.spinlock is not None:  # the lock's own barriers, as the lock's architecture defines them
                what = inst.spinlock.fence(what)
                if what is None:
                    return 0
            yield (o.FENCE, what)
            return 0
        if kind == "nothing":
            return 0
        if inst.spinlock is not None and kind in _SPIN:  # the kernel's lock code on the lock's word
            return (yield from inst.spinlock.call(kind, inst.lock, self._lock(inst, vals[0], line)))
        ref = self._ref(inst, vals[1 if kind in _OPERAND_FIRST else 0], line)
        if kind in ("load", "load*"):
            return _signed((yield (o.LOAD, ref, order)))
        if kind in ("store", "store*"):
            yield (o.STORE, ref, vals[1], order)
            return 0
        if kind == "store_mb":
            yield o.smp_store_mb(ref, vals[1])
            return 0
        if kind == "xchg":
            return _signed((yield (o.XCHG, ref, vals[1], order)))
        if kind == "cmpxchg":
            return _signed((yield (o.CMPXCHG, ref, vals[1] & MASK64, vals[2], order)))
        if kind == "spin_lock":
            yield (o.COND_LOAD, ref, _lock_free, o.LOCK, None)
            yield (o.STORE_EX, ref, 1, o.LOCK)
            return 0
        if kind == "spin_unlock":
            yield (o.STORE, ref, 0, o.UNLOCK)
            return 0
        if kind == "spin_trylock":
            v = yield (o.LOAD_EX, ref, o.LOCK)
            if int(v) == 0:  # the lock write depends on the read (a data dependency; the read is an Acquire)
                yield (o.STORE_EX, ref, 1 + (v & 0), o.LOCK)
            return (v == 0) + 0
        if kind == "spin_is_locked":
            v = yield (o.LOAD, ref, o.LOCK)
            return (v != 0) + 0
        if kind.endswith("1"):  # atomic_inc(p) and friends: the pointer first, a constant operand
            delta = what
            kind = kind[:-1]
        else:  # atomic_add(v, p): the operand first
            delta = vals[0] * what if isinstance(what, int) and what in (1, -1) else vals[0]
        if kind in ("fetch", "op_return", "noreturn", "test", "negative"):
            old = _signed((yield (o.FETCH_ADD, ref, delta, order)))
            if kind == "fetch":
                return old
            new = _signed(old + delta)
            if kind == "op_return":
                return new
            if kind == "test":
                return (new == 0) + 0
            if kind == "negative":
                return (new < 0) + 0
            return 0
        if kind in ("fetch_bits", "noreturn_bits"):
            old = _signed((yield (what, ref, vals[0], order)))
            return old if kind == "fetch_bits" else 0
        if kind in ("fetch_and", "noreturn_and"):
            old = _signed((yield (what, ref, ~vals[0] & MASK64, order)))
            return old if kind == "fetch_and" else 0
        raise AssertionError(kind)

    def _run(self, stmts: list, env: dict, inst):
        for s in stmts:
            tag = s[0]
            if tag == "expr":
                yield from self._eval(s[1], env, inst)
            elif tag == "decl":
                for name, init in s[1]:
                    env[name] = 0 if init is None else (yield from self._eval(init, env, inst))
            elif tag == "if":
                c = yield from self._eval(s[1], env, inst)
                if c:  # a branch: a Dep records the control dependency
                    yield from self._run([s[2]], env, inst)
                elif s[3] is not None:
                    yield from self._run([s[3]], env, inst)
            else:
                yield from self._run(s[1], env, inst)

    def program(self, inst, tid: int):
        env = {p: inst.address(p) for p in self.params}
        for name, value in self.registers.items():
            env[name] = inst.value(value) if isinstance(value, str) else value
        yield from self._run(self.body, env, inst)
        return {k: v for k, v in env.items() if k not in self.params}

    def observe(self, registers: dict, name: str) -> int:
        return int(registers.get(name, 0)) & MASK64


# --------------------------------------------------------------------------- the file
# herd's (* comments *), which open with a blank (READ_ONCE(*x) is no comment), and C's /* */ and //
_COMMENTS = re.compile(r"\(\*(?=\s).*?\*\)|/\*.*?\*/|//[^\n]*", re.S)
_ALL_HERD_COMMENTS = re.compile(r"\(\*.*?\*\)", re.S)
_FUNCTION = re.compile(r"P(\d+)\s*\(")
_INIT_REG = re.compile(r"^(?:[A-Za-z_][\w\s\*]*\s)?(P?\d+)\s*:\s*([A-Za-z_]\w*)\s*(?:=\s*(.+))?$")
_INIT_LOC = re.compile(r"^(?P<decl>(?:[A-Za-z_]\w*\s+)*)(?P<stars>[\s\*]*)(?P<name>[A-Za-z_]\w*)\s*(?:=\s*(?P<value>.+))?$")
_TAIL = re.compile(r"^\s*(exists|~\s*exists|forall|locations|filter|not\s+exists)\b", re.M)


def _blank(m: re.Match) -> str:
    return "\n" * m.group(0).count("\n") + " "


def _init_value(path, text: str, line: int) -> int | str:
    text = text.strip()
    m = re.match(r"^ATOMIC_INIT\((.+)\)$", text)
    if m:
        text = m.group(1).strip()
    if text.startswith("&"):
        text = text[1:].strip()
    if text in ("NULL", "null"):
        return 0
    if re.match(r"^-?(0x[0-9a-fA-F]+|\d+)$", text):
        return number(text)
    if re.match(r"^[A-Za-z_]\w*$", text):
        return text
    _unsupported(f"the initial value {text!r}", line)


def _init(path, body: str, line: int, nthreads: int):
    locations: dict[str, int | str] = {}
    registers: list[dict[str, int | str]] = [{} for _ in range(nthreads)]
    for chunk in body.split(";"):
        item = chunk.strip()
        item_line = line + chunk[:len(chunk) - len(chunk.lstrip())].count("\n")
        line += chunk.count("\n")
        if not item:
            continue
        m = _INIT_REG.match(item)
        if m:
            tid = int(m.group(1).lstrip("P"))
            if tid >= nthreads:
                raise Malformed(path, item_line, f"{item!r}: the test has no thread {tid}")
            if m.group(3) is not None:
                registers[tid][m.group(2)] = _init_value(path, m.group(3), item_line)
            continue
        m = _INIT_LOC.match(item)
        if m is None:
            raise Malformed(path, item_line, f"cannot read the initial state item {item!r}")
        words = m.group("decl").split()
        if any(w == "struct" for w in words) or m.group("name") in _TYPE_WORDS:
            _unsupported(f"the initial state item {item!r}", item_line)
        value = m.group("value")
        locations[m.group("name")] = 0 if value is None else _init_value(path, value, item_line)
    return locations, registers


def parse_text(path: Path, text: str) -> LitmusTest:
    """Compile a C litmus test; :class:`Unsupported` or :class:`Malformed` when it cannot be."""
    text = _COMMENTS.sub(_blank, text)
    # before the first function and after the last one, every (* comment *) goes, (*like this*) too
    first_p = re.search(r"^\s*P0\s*\(", text, re.M)
    if first_p:
        text = _ALL_HERD_COMMENTS.sub(_blank, text[:first_p.start()]) + text[first_p.start():]
    lines = text.split("\n")
    first = next((i for i, t in enumerate(lines) if t.strip()), None)
    if first is None:
        raise Malformed(path, 1, "empty file")
    words = lines[first].split()
    if words[0] != "C" or len(words) < 2:
        raise Malformed(path, first + 1, "expected 'C NAME' on the first line")
    name = words[1]
    offsets = [0]
    for t in lines:
        offsets.append(offsets[-1] + len(t) + 1)

    def line_of(pos: int) -> int:
        lo, hi = 0, len(offsets) - 1
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if offsets[mid] <= pos:
                lo = mid
            else:
                hi = mid - 1
        return lo + 1

    # the initial state: the first '{' after the header outside quotes
    pos = offsets[first + 1]
    stripped = re.sub(r'"[^"\n]*"', lambda m: " " * len(m.group(0)), text)
    start = stripped.find("{", pos)
    if start < 0:
        raise Malformed(path, first + 1, "no initial state '{ ... }'")
    end = stripped.find("}", start)
    if end < 0:
        raise Malformed(path, line_of(start), "initial state '{' is never closed")
    init_text = text[start + 1:end]
    init_line = line_of(start)
    # the functions, then the tail
    pos = end + 1
    functions: list[tuple[int, str, int, str, int]] = []  # (thread, params, line, body, body line)
    while True:
        m = re.compile(r"\S").search(text, pos)
        if m is None:
            raise Malformed(path, line_of(pos), "no final condition (exists, ~exists or forall)")
        if text[m.start()] == ";":  # a stray ';' after a function
            pos = m.start() + 1
            continue
        if _TAIL.match(text, m.start()) or text.startswith(("exists", "~exists", "forall", "locations", "filter"),
                                                           m.start()):
            tail_at = m.start()
            break
        fm = _FUNCTION.match(text, m.start())
        if fm is None:
            word = text[m.start():m.start() + 20].split()[0]
            _unsupported(f"{word!r} (only P0, P1, ... functions here)", line_of(m.start()))
        close = text.find(")", fm.end())
        brace = text.find("{", close)
        if close < 0 or brace < 0:
            raise Malformed(path, line_of(m.start()), f"cannot read the function P{fm.group(1)}")
        depth, i = 0, brace
        while i < len(text):
            if text[i] == "{":
                depth += 1
            elif text[i] == "}":
                depth -= 1
                if depth == 0:
                    break
            i += 1
        if depth:
            raise Malformed(path, line_of(brace), f"the body of P{fm.group(1)} is never closed")
        functions.append((int(fm.group(1)), text[fm.end():close], line_of(fm.start()), text[brace:i + 1],
                          line_of(brace)))
        pos = i + 1
    if [f[0] for f in functions] != list(range(len(functions))) or not functions:
        raise Malformed(path, init_line, "threads must be P0, P1, ... in order")
    locations, registers = _init(path, init_text, init_line, len(functions))
    condition = parse_condition(path, _ALL_HERD_COMMENTS.sub(_blank, text[tail_at:]), line_of(tail_at))
    threads = []
    used: set[str] = set()
    locks: dict[str, int] = {}  # what spin_*() take, by the parameter naming it ("" : a computed pointer)
    for (tid, params_text, fline, body_text, bline), regs in zip(functions, registers, strict=True):
        params = []
        for part in params_text.split(","):
            if not part.strip():
                continue
            pm = re.match(r"^[\w\s\*]*?([A-Za-z_]\w*)\s*$", part.strip())
            if pm is None:
                raise Malformed(path, fline, f"cannot read the parameter {part.strip()!r} of P{tid}")
            params.append(pm.group(1))
        used.update(params)
        toks = _Toks(path, body_text, bline)
        body = _block(toks)
        for lock, at in _check_locks(body, fline, params).items():
            locks.setdefault(lock, at)
        threads.append(CThread(params, body, regs))
        used.update(v for v in regs.values() if isinstance(v, str))
    for var in condition.variables():
        if var.is_register and var.thread >= len(threads):
            raise Malformed(path, condition_line(text, tail_at, line_of), f"the condition names {var}, "
                            f"but the test has no thread {var.thread}")
    registers_out = [dict(t.registers) for t in threads]
    return LitmusTest(path, "C", name, complete_locations(locations, used, condition), registers_out, threads,
                      condition, {}, dict(sorted(locks.items())))


def condition_line(text: str, at: int, line_of) -> int:
    return line_of(at)


def _check_locks(body: list, line: int, params: list[str]) -> dict[str, int]:
    """A spin_unlock() needs a spin_lock()/spin_trylock() of the same lock before it in the thread (textually).

    Returns the locations the thread passes to any ``spin_*()``, each with its first line;
    a lock pointer that is not one of the thread's parameters is ``""`` (computed).
    """
    locked: set = set()
    taken: dict[str, int] = {}

    def walk(stmts):
        for s in stmts:
            if s[0] == "block":
                walk(s[1])
            elif s[0] == "if":
                visit(s[1])
                walk([s[2]] + ([s[3]] if s[3] is not None else []))
            elif s[0] == "decl":
                for _, init in s[1]:
                    if init is not None:
                        visit(init)
            else:
                visit(s[1])

    def visit(e):
        if not isinstance(e, tuple) or not e:
            return
        if e[0] == "call":
            for a in e[3]:
                visit(a)
            if e[1] not in ("spin_lock", "spin_trylock", "spin_unlock", "spin_is_locked"):
                return
            lock = e[3][0][1] if e[3][0][0] == "var" else repr(e[3][0])
            taken.setdefault(lock if lock in params else "", e[4])
            if e[1] in ("spin_lock", "spin_trylock"):
                locked.add(lock)
            elif e[1] == "spin_unlock" and lock not in locked:
                _unsupported("spin_unlock() of a lock the thread did not take before (lock.cat's "
                             "unmatched-unlock)", e[4])
            return
        for part in e[1:]:
            if isinstance(part, tuple):
                visit(part)

    walk(body)
    return taken


def parse(src) -> LitmusTest:
    """The front end's entry point as :func:`pvspin.litmus.load` calls it: ``src`` is the file's path."""
    from .source import read_text

    return parse_text(Path(src), read_text(Path(src)))
