"""qspinlock with the four ordering changes that make it verify under the LKMM of 2021.

Dartagnan's verification of the kernel's qspinlock (huawei-drc/cna-verification,
``lkmm-fixes.patch``) ran the whole-word build (``_Q_PENDING_BITS == 1``, what
NR_CPUS >= 16K compiles: the LKMM has no mixed-size accesses) and found it incorrect
under the Linux-kernel memory model of its day; it verified after four accesses were
given stronger orderings.  Each is a name of ``--bug`` here (``config.LKMM_CHANGES``), and
each overrides one step of :class:`~pvspin.kernel.qspinlock.QSpinlock`:

* ``lkmm-xchg-tail-release`` -- ``xchg_tail()``'s cmpxchg loop with ``_release``;
* ``lkmm-set-locked-release`` -- ``clear_pending_set_locked()`` as ``atomic_fetch_add_release()``;
* ``lkmm-pending-release-mb`` -- the pending ``atomic_fetch_or_acquire()`` as
  ``atomic_fetch_or_release()`` followed by ``smp_mb()``;
* ``lkmm-clear-pending-release`` -- ``clear_pending()`` as ``atomic_fetch_andnot_release()``.

The LKMM's "rmw-sequences" change (v6.3) made the unchanged lock verify; which change
cures which violation under the older model is for the checker to show.

A fifth, ``lkmm-xchg-tail-acquire``, is pvspin's: ``xchg_tail()``'s cmpxchg loop with
``_acquire``.  At 2 CPUs x 2 the lock loses an update under every LKMM version, the four
changes or not (docs/lkmm-qspinlock-16k.md); this one cures it.  With
``lkmm-xchg-tail-release`` as well the loop is the fully ordered ``atomic_try_cmpxchg()``,
the kernel having no acquire-release cmpxchg.
"""

from __future__ import annotations

from ..machine.cpu import GuestCode
from ..machine.memory import View
from ..machine.ops import (
    atomic_fetch_add_release,
    atomic_fetch_andnot_release,
    atomic_fetch_or_release,
    atomic_try_cmpxchg,
    atomic_try_cmpxchg_acquire,
    atomic_try_cmpxchg_release,
    smp_mb,
)
from .config import LKMM_ORDERINGS
from .declarations import WORD
from .qspinlock import _Q_LOCKED_VAL, _Q_PENDING_VAL, QSpinlock


class QSpinlockLkmmOrdered(QSpinlock):
    """The whole-word qspinlock with the ``LKMM_ORDERINGS`` named in ``config.bugs``."""

    BUGS = QSpinlock.BUGS | LKMM_ORDERINGS.keys()
    DECLARED = QSpinlock.DECLARED.extend(locals={"QSpinlockLkmmOrdered.queued_fetch_set_pending_acquire": {"old": WORD}})

    def __init__(self, mem, ncpus, config):
        super().__init__(mem, ncpus, config)
        if not self.q.nr_cpus_16k:
            raise ValueError("the LKMM ordering changes are to the whole-word build: use --lock qspinlock-16k")
        self._changes = frozenset(config.bugs) & LKMM_ORDERINGS.keys()
        acquire, release = ("lkmm-xchg-tail-acquire" in self._changes), ("lkmm-xchg-tail-release" in self._changes)
        if acquire or release:
            self.tail_cmpxchg = {(True, True): atomic_try_cmpxchg, (True, False): atomic_try_cmpxchg_acquire,
                                 (False, True): atomic_try_cmpxchg_release}[acquire, release]

    def clear_pending(self, lock: View) -> GuestCode:
        """clear_pending(): (*,1,*) -> (*,0,*)."""
        if "lkmm-clear-pending-release" not in self._changes:
            return (yield from super().clear_pending(lock))
        yield atomic_fetch_andnot_release(lock.val, _Q_PENDING_VAL)

    def clear_pending_set_locked(self, lock: View) -> GuestCode:
        """clear_pending_set_locked(): (*,1,0) -> (*,0,1)."""
        if "lkmm-set-locked-release" not in self._changes:
            return (yield from super().clear_pending_set_locked(lock))
        yield atomic_fetch_add_release(lock.val, -_Q_PENDING_VAL + _Q_LOCKED_VAL)

    def queued_fetch_set_pending_acquire(self, lock: View) -> GuestCode:
        """queued_fetch_set_pending_acquire(): (*,*,*) -> (*,1,*), the generic form."""
        if "lkmm-pending-release-mb" not in self._changes:
            return (yield from super().queued_fetch_set_pending_acquire(lock))
        old = yield atomic_fetch_or_release(lock.val, _Q_PENDING_VAL)
        yield smp_mb()
        return old
