"""A user lock built from the kernel's classes: qspinlock with its own xchg_tail().

It inherits QSpinlock's declarations (lock-word layout, CPU-valued fields, knobs), so
``pvspin check`` reduces it as it reduces the named lock; see examples/README.md.
"""

from pvspin.kernel.qspinlock import QSpinlock
from pvspin.machine.ops import xchg_relaxed


class MyQSpinlock(QSpinlock):
    def xchg_tail(self, lock, tail):
        """xchg_tail() for _Q_PENDING_BITS == 8: swap the 16-bit tail half-word, relaxed."""
        old = yield xchg_relaxed(lock.tail, tail >> self.q._Q_TAIL_OFFSET)
        return old << self.q._Q_TAIL_OFFSET
