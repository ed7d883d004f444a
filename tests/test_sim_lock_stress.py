"""Every lock on the timed simulator: random seeds, 2-16 vCPUs, 1-3x overcommit, interrupts.

Each writer takes its locks a fixed number of times, so the run ends quiescent: then no
mutual-exclusion failure may have happened, every vCPU must have finished (no hang), and
the kernel's final state must be clean (lock words 0, hash entries free, node counts 0).
"""

import random

import pytest

from pvspin.kernel.build import boot_kernel
from pvspin.machine.memory import Memory
from pvspin.sim.config import HostConfig, Scheduling
from pvspin.sim.engine import Simulator
from pvspin.sim.vcpu import DONE
from pvspin.sim.workload import Distribution, LockTorture, WorkloadConfig

BUILDS = {  # lock -> (kernel, host)
    "qspinlock": ("paravirt", "kvm"),
    "pvqspinlock": ("paravirt", "kvm"),
    "pvqspinlock-4.2": ("paravirt", "kvm"),
    "virt-tas": ("paravirt", "kvm-nopv"),
    "ticket": ("no-paravirt", "kvm"),
}


def stress(lock: str, seed: int, rounds: int = 25):
    rng = random.Random(f"{lock}:{seed}")
    vcpus = rng.randint(2, 16)
    overcommit = rng.choice((1.0, 1.5, 2.0, 3.0))
    pcpus = max(1, round(vcpus / overcommit))
    kernel, host = BUILDS[lock]
    mem = Memory()
    guest_kernel = boot_kernel(mem, vcpus, kernel=kernel, host=host, lock=lock)
    workload = WorkloadConfig(
        locks=rng.randint(1, 3),
        hold=Distribution(mean_ns=rng.choice((100, 1_000, 20_000))),
        delay=Distribution(mean_ns=rng.choice((200, 5_000))),
        long_hold_every=50,
        long_hold_us=300,
    )
    host_config = HostConfig(
        pcpus=pcpus, hypervisor=host, spurious_wakeup_hz=rng.choice((0.0, 2_000.0)),
        scheduling=Scheduling(ple=rng.random() < 0.5, sched_latency_us=3000, min_granularity_us=500),
    )  # fmt: skip
    sim = Simulator(host_config, seed=seed)
    torture = LockTorture(guest_kernel, mem, vcpus, workload, seed, host_config.costs.freq_mhz)
    guest = sim.add_guest(
        "g0", mem, [torture.writer(cpu, rounds) for cpu in range(vcpus)],
        irq_handler=torture.irq_handler, irq_rate_hz=rng.choice((0.0, 20_000.0)),
        irq_level=rng.choice(("softirq", "hardirq")),
    )  # fmt: skip
    sim.run(host_config.costs.freq_mhz * 1_000_000 * 5)  # 5 simulated seconds: ample
    label = f"{lock} seed={seed} vcpus={vcpus} pcpus={pcpus}"
    assert guest.mutex_failures == 0, label
    stuck = [f"{v}: {v.state}" for v in guest.vcpus if v.state != DONE]
    assert not stuck, f"{label}: hung {stuck}"
    assert sum(torture.acquisitions) == vcpus * rounds, label
    assert guest_kernel.final_state_problems() == [], label
    assert guest.warnings == [], label
    return guest


@pytest.mark.parametrize("lock", sorted(BUILDS))
@pytest.mark.parametrize("seed", range(4))
def test_lock_survives_random_overcommitted_hosts(lock, seed):
    stress(lock, seed)


@pytest.mark.slow
@pytest.mark.parametrize("lock", sorted(BUILDS))
def test_lock_survives_many_more_seeds(lock):
    for seed in range(4, 40):
        stress(lock, seed, rounds=40)


def test_pv_lock_under_overcommit_halts_and_kicks():
    """The PV slow path is really exercised: vCPUs halt and are kicked, lock events count it."""
    guest = None
    for seed in range(8):
        guest = stress("pvqspinlock", seed)
        if guest.lock_events.get("pv_wait_node", 0):
            break
    events = guest.lock_events
    assert events.get("pv_wait_node", 0) > 0 and events.get("pv_kick_unlock", 0) > 0
