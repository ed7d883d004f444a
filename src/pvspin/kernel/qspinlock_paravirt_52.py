"""pvqspinlock of v5.2-v5.3: the modern code whose wait-early test also asks vcpu_is_preempted()
(see :class:`PvQSpinlock52`)."""

from __future__ import annotations

from ..machine.cpu import GuestCode
from ..machine.memory import View
from ..machine.ops import READ_ONCE
from .declarations import CPU
from .qspinlock_paravirt import PvQSpinlock, vcpu_running


class PvQSpinlock52(PvQSpinlock):
    """pvqspinlock as in v5.2 and v5.3: :class:`PvQSpinlock` but for :meth:`pv_wait_early`.

    From 75437bb304b2 ("locking/pvqspinlock: Don't wait if vCPU is preempted", around v4.11)
    until its revert 89340d0935c9 (v5.4; backported to 5.3.y and 4.19.y stable), a queue node
    also halted early when the previous node's vCPU was preempted, as the host's steal-time
    area says.  The rest of the lock is the code :class:`PvQSpinlock` follows, which is v5.2's
    at the earliest (lockevent_*() counters, v5.2; the MAX_NODES fallback, v5.1): kernels from
    4.11 to 5.1 had this pv_wait_early() but not those, so no lock name here models them.
    """

    name = "pvqspinlock-5.2"
    DECLARED = PvQSpinlock.DECLARED.extend(locals={"PvQSpinlock52.pv_wait_early": {"cpu": CPU}})

    def pv_wait_early(self, prev: View) -> GuestCode:
        """pv_wait_early() of v4.11-v5.3: ``prev->state != vcpu_running || vcpu_is_preempted(prev->cpu)``.

        The state is read first and the || short-circuits: ``prev->cpu`` is read, and
        vcpu_is_preempted() called through its call site, only for a running predecessor.
        """
        if (yield READ_ONCE(prev.state)) != vcpu_running:
            return True
        cpu = yield READ_ONCE(prev.cpu)
        return bool((yield from self.vcpu_is_preempted(cpu)))
