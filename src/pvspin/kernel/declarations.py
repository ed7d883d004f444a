"""What a lock declares about its own code, so that the model checker may reduce and decode it.

A lock class says it in one class attribute, ``DECLARED = LockDeclarations(...)``; a
subclass inherits it (and extends it with :meth:`LockDeclarations.extend`), so a user's
``class MyLock(QSpinlock)`` that overrides one method is checked as ``qspinlock`` is.  The
named locks declare theirs beside their code (``QSpinlock.DECLARED``, ...), and the checker
reads nothing else: no lock gets a reduction by its name.

What is declared, and what the checker does with it:

* ``knobs``: the :class:`~pvspin.kernel.config.LockConfig` knobs the code reads.  A lock
  that declares any is built as ``NAME(mem, ncpus, config)``, the checker shrinks them
  (``SPIN_THRESHOLD`` 2, ...) and ``--knob`` sets them; ``--knob`` of any other is refused.
* ``word="qspinlock"``: the lock's 32-bit ``val`` is a qspinlock word laid out as the lock's
  ``q`` (:class:`~pvspin.kernel.qspinlock.QspinlockTypes`), whose tail names
  ``qnodes[cpu][idx]``: counterexamples print it as ``(tail, pending, locked)``, and the
  kinds ``WORD``/``TAIL16`` below rename its tail.
* ``locked``: the values the lock's ``locked`` byte may hold; any other is a violation.
* ``symmetric``: every CPU starts alike and runs the same code, which never singles a CPU
  out by number -- renaming CPUs maps executions to executions.  With it the search starts
  CPUs in CPU order, and with the kinds below it keys states up to renaming (full symmetry).
* ``fields`` and ``locals``: which values name a CPU, by ``(layout name, field name)`` and by
  the guest function's ``co_qualname`` then local name (arguments count; locals holding
  views, booleans or None need no entry).  An integer local with no kind stops full
  symmetry with an error naming it, never a guess.  A method that overrides a declared one
  takes the overridden method's kinds, unless it has its own.
* ``per_cpu_by_reference``: another CPU reaches a CPU's per-CPU objects only through a
  pointer or a tail it holds or reads from memory (never by indexing with a number), which
  lets the search explore steps on unreachable ones alone (ample sets, check/ample.py).

Undeclared (no ``DECLARED``), a lock gets none of these: no symmetry, no ample sets, no
knobs, its lock word in hex.  That is always sound, only slower.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType

# Kinds of values, for renaming CPUs (check/symmetry.py):
# PLAIN names no CPU; CPU is a CPU number; WORD a qspinlock word, whose tail holds cpu + 1;
# TAIL16 its 16-bit tail alone; PTR a pointer, maybe into per-CPU memory; OWNER a per-CPU field
# that only ever holds its own CPU's number (``pv_node.cpu``).
PLAIN, CPU, WORD, TAIL16, PTR, OWNER = range(6)
KIND_NAMES = ("PLAIN", "CPU", "WORD", "TAIL16", "PTR", "OWNER")

WORDS = ("qspinlock",)


@dataclass(frozen=True)
class LockDeclarations:
    """A lock's declarations (see the module docstring); every default is the safe one."""

    knobs: frozenset[str] = frozenset()
    word: str | None = None
    locked: frozenset[int] | None = None
    symmetric: bool = False
    fields: Mapping[tuple[str, str], int] = field(default_factory=dict)
    locals: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    per_cpu_by_reference: bool = False

    def __post_init__(self) -> None:
        from .config import KNOBS

        unknown = sorted(set(self.knobs) - set(KNOBS))
        if unknown:
            raise ValueError(f"knob {unknown[0]!r} is not a LockConfig knob ({', '.join(KNOBS)})")
        if self.word is not None and self.word not in WORDS:
            raise ValueError(f"word {self.word!r}: the checker knows {', '.join(WORDS)}")
        kinds = [*self.fields.values(), *(k for names in self.locals.values() for k in names.values())]
        if any(k not in range(len(KIND_NAMES)) for k in kinds):
            raise ValueError(f"a kind is not one of {', '.join(KIND_NAMES)} (from pvspin.kernel.declarations)")
        if self.word is None and any(k in (WORD, TAIL16) for k in kinds):
            raise ValueError("WORD and TAIL16 values need word='qspinlock'")
        object.__setattr__(self, "knobs", frozenset(self.knobs))
        object.__setattr__(self, "fields", MappingProxyType(dict(self.fields)))
        object.__setattr__(self, "locals", MappingProxyType({q: MappingProxyType(dict(k))
                                                             for q, k in self.locals.items()}))

    def extend(self, *, knobs=frozenset(), fields=None, locals=None, **changes) -> LockDeclarations:  # noqa: A002
        """A subclass's declarations: these plus more knobs, fields and locals, other values replaced."""
        return replace(self, knobs=self.knobs | frozenset(knobs), fields={**self.fields, **(fields or {})},
                       locals={**self.locals, **(locals or {})}, **changes)

    def for_class(self, cls: type) -> LockDeclarations:
        """These declarations with ``locals`` completed for the methods ``cls`` runs.

        A method of ``cls`` or of a base with no entry of its own takes the entry of the
        nearest method it overrides: a subclass that rewrites one kernel function keeps its
        local names, and a new integer local is still an error, not a guess.
        """
        table = dict(self.locals)
        mro = cls.__mro__
        for at, klass in enumerate(mro):
            for name, attr in vars(klass).items():
                code = getattr(getattr(attr, "__func__", attr), "__code__", None)
                if code is None or code.co_qualname in table:
                    continue
                for base in mro[at + 1:]:
                    inherited = self.locals.get(f"{base.__qualname__}.{name}")
                    if inherited is not None and name in vars(base):
                        table[code.co_qualname] = inherited
                        break
        return replace(self, locals=table)


UNDECLARED = LockDeclarations()


def declared_by(factory) -> LockDeclarations:
    """What ``factory`` (a lock class, or a function building one) declares: its ``DECLARED``, or nothing."""
    declared = getattr(factory, "DECLARED", UNDECLARED)
    if not isinstance(declared, LockDeclarations):
        raise TypeError(f"DECLARED is {declared!r:.60}, not a pvspin.kernel.declarations.LockDeclarations")
    return declared
