"""One vCPU pinned to each pCPU, for good: what bare metal is (every CPU runs its own code).

The k-th vCPU to start runs on pCPU k and nothing else ever runs there: no run queues, no
slices, no context switches, no migration.  A vCPU that halts leaves its pCPU idle until it
wakes; there is nobody to yield to.  With a nonzero ``exit_cost`` it is also the policy of a
hypervisor host whose vCPUs are pinned one-to-one (``isolcpus`` + ``taskset``).
"""

from __future__ import annotations

from .events import EventLoop
from .hostsched import HostScheduler, PCpu
from .vcpu import VCpu


class PinnedScheduler(HostScheduler):
    """No scheduling decisions: vCPU k on pCPU k."""

    def __init__(self, loop: EventLoop, pcpus: list[PCpu], exit_cost: int = 0, tracer=None):
        super().__init__(loop, pcpus, context_switch=0, exit_cost=exit_cost, tracer=tracer)

    def start(self, vcpus: list[VCpu]) -> None:
        if len(vcpus) > len(self.pcpus):
            raise ValueError(f"one vCPU per pCPU: {len(vcpus)} vCPUs on {len(self.pcpus)} pCPUs")
        pinned = list(zip(self.pcpus[: len(vcpus)], vcpus, strict=True))
        for pcpu, v in pinned:
            v.home = pcpu.id
            if self.tracer is not None:
                self.tracer.vcpu_state(0, v, "runnable")
        for pcpu, v in pinned:
            self.switch_in(pcpu, v, 0)

    def enqueue(self, v: VCpu, t: int) -> None:
        self.make_runnable(v, t)
        self.switch_in(self.pcpus[v.home], v, t)

    def pick_next(self, pcpu: PCpu, t: int) -> None:
        """The pCPU's own vCPU just left it: it idles until that vCPU wakes."""

    def tick(self, pcpu: PCpu, t: int) -> None:
        """Never armed: a pinned vCPU keeps its pCPU."""

    def timeslice(self, pcpu: PCpu) -> None:
        return None

    def yield_to(self, v: VCpu, target: VCpu | None, t: int) -> bool:
        return False  # nothing else may run on v's pCPU
