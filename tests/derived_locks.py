"""User locks derived from the kernel's classes, loaded as ``tests/derived_locks.py:NAME``.

Each overrides one kernel function with the kernel's own code (the NR_CPUS < 16K branch),
so that it must be checked exactly as the named lock is, declarations inherited.
"""

from pvspin.kernel.declarations import PLAIN, LockDeclarations
from pvspin.kernel.qspinlock import QSpinlock
from pvspin.kernel.qspinlock_paravirt import PvQSpinlock, _zero
from pvspin.machine.ops import READ_ONCE, WRITE_ONCE, smp_cond_load_relaxed, try_cmpxchg_acquire, xchg_relaxed


class NativeXchgTail(QSpinlock):
    """xchg_tail() rewritten: its integer locals take the kinds of the method it overrides."""

    def xchg_tail(self, lock, tail):
        q = self.q
        old = yield xchg_relaxed(lock.tail, tail >> q._Q_TAIL_OFFSET)
        return old << q._Q_TAIL_OFFSET


class NativeNewLocal(QSpinlock):
    """xchg_tail() with a local the overridden method has not: full symmetry must refuse to guess."""

    def xchg_tail(self, lock, tail):
        shift = self.q._Q_TAIL_OFFSET
        old = yield xchg_relaxed(lock.tail, tail >> shift)
        return old << shift


class NativeNewLocalDeclared(NativeNewLocal):
    """The same, with the new local declared."""

    DECLARED = QSpinlock.DECLARED.extend(locals={"NativeNewLocal.xchg_tail": {"shift": PLAIN}})


class PvTrylock(PvQSpinlock):
    """trylock_clear_pending() rewritten (locals loops, locked, _)."""

    def trylock_clear_pending(self, lock, loops):
        while loops > 0:
            locked = yield smp_cond_load_relaxed(lock.locked, _zero, loops)
            if locked:
                return False
            ok, _ = yield try_cmpxchg_acquire(lock.locked_pending, 1 << 8, 1)
            if ok:
                return True
            loops -= 1
        return False


class PendingAfterTail(QSpinlock):
    """No method overridden: the corpus bugs QSpinlock reads can be injected with --bug."""


def native_by_function(mem, ncpus):
    """A factory function declares nothing, whatever it returns: checked with no reduction."""
    return QSpinlock(mem, ncpus)


class Undeclared:
    """A test-and-set lock that reads ``spin_threshold`` but declares nothing (no knobs)."""

    def __init__(self, mem, ncpus):
        from pvspin.machine.memory import CACHE_LINE, Layout

        self.mem, self.layout, self.cache_line = mem, Layout("tas", 4, [("locked", 0, 1)]), CACHE_LINE

    def alloc_lock(self, name):
        return self.mem.alloc(self.layout, name, align=self.cache_line)

    def spin_lock(self, lock):
        while (yield READ_ONCE(lock.locked)) or (yield xchg_relaxed(lock.locked, 1)):
            pass

    def spin_unlock(self, lock):
        yield WRITE_ONCE(lock.locked, 0)


class BadDeclaration(Undeclared):
    DECLARED = {"symmetric": True}


class SymmetricTas(Undeclared):
    """Declares itself symmetric and its knob: start symmetry, a LockConfig, ``--knob spin_threshold``."""

    DECLARED = LockDeclarations(symmetric=True, knobs={"spin_threshold"})

    def __init__(self, mem, ncpus, config):
        super().__init__(mem, ncpus)
        self.spin_threshold = config.spin_threshold


class WordWithoutLayout(Undeclared):
    """Declares a qspinlock word but has no q to decode it with."""

    DECLARED = LockDeclarations(word="qspinlock")


class PvInitNodeSpins(PvQSpinlock):
    """pv_init_node(), then a spin for good on the node's own field, before the node is published.

    Only its CPU can reach the node, so each of those reads is an ample set alone, and it
    leads back to the state it left: only the cycle proviso lets the other CPUs move there,
    after which the liveness check sees the spinning CPU starve.
    """

    def pv_init_node(self, node):
        yield from super().pv_init_node(node)
        while True:
            yield READ_ONCE(node.locked)
