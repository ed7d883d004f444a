"""Real Python time of one spin_unlock per kernel build, side by side in one run.

Each variant boots a kernel, then a minimal loop sets the lock's locked byte and runs
``spin_unlock(lock)``, applying the ops the generator yields to Memory.  The loop is the same for
every variant, so the ratios reflect the code that runs at the unlock site:

* ``!PARAVIRT``: native unlock called directly;
* ``PARAVIRT patched, bare metal``: the site rewritten to ``movb $0,(%rdi)``;
* ``PARAVIRT unpatched, bare metal``: ``noreplace-paravirt``, indirect call + callee-save thunk;
* ``PV on KVM, patched``: direct call to the PV unlock thunk, then ``cmpxchg_release``;
* ``PV on KVM, as in v4.2``: the seed's PV unlock (generic thunk), left an indirect call by
  the 4.2 patcher.

Timeit-style: every repeat times ``--calls`` unlocks of each variant in turn (interleaved, so drift
hits all alike), and the median repeat is reported.  The seed's claim to check: patched ÷ !PARAVIRT
≤ 1.05.

    .venv/bin/python benchmarks/bench_unlock.py [--calls N] [--repeats R]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from time import perf_counter_ns

from pvspin.kernel.build import boot_kernel
from pvspin.machine import ops
from pvspin.machine.memory import Memory

VARIANTS = [
    ("!PARAVIRT", dict(kernel="no-paravirt")),
    ("PARAVIRT patched, bare metal", dict(host="baremetal")),
    ("PARAVIRT unpatched, bare metal", dict(host="baremetal", patching=False)),
    ("PV on KVM, patched", dict(host="kvm")),
    ("PV on KVM, as in v4.2", dict(host="kvm", lock="pvqspinlock-4.2", patch_era="4.2")),
]

STORE, CMPXCHG, WORK = ops.STORE, ops.CMPXCHG, ops.WORK


def unlock_loop(kw: dict):
    """A function timing ``calls`` unlocks of a freshly booted kernel, and the ops one unlock yields."""
    mem = Memory()
    kernel = boot_kernel(mem, 4, **kw)
    lock = kernel.alloc_lock("lock0")
    spin_unlock, read, write = kernel.spin_unlock, mem.read, mem.write
    locked = lock.locked.addr

    def run(calls: int) -> int:
        start = perf_counter_ns()
        for _ in range(calls):
            write(locked, 1, 1)
            gen = spin_unlock(lock)
            send = gen.send
            try:
                op = send(None)
                while True:
                    code = op[0]
                    if code == STORE:
                        ref = op[1]
                        write(ref.addr, ref.size, op[2])
                        op = send(None)
                    elif code == CMPXCHG:
                        ref = op[1]
                        old = read(ref.addr, ref.size)
                        if old == op[2]:
                            write(ref.addr, ref.size, op[3])
                        op = send(old)
                    elif code == WORK:
                        op = send(None)
                    else:
                        raise AssertionError(f"unexpected op in an uncontended unlock: {ops.describe(op)}")
            except StopIteration:
                pass
        return perf_counter_ns() - start

    write(locked, 1, 1)
    yielded = []
    gen = spin_unlock(lock)
    try:
        op = gen.send(None)
        while True:
            yielded.append(ops.describe(op))
            op = gen.send(1 if op[0] == CMPXCHG else None)
    except StopIteration:
        pass
    return run, yielded


class _OneLineParser(argparse.ArgumentParser):
    def error(self, message: str):
        sys.stderr.write(f"error: {message}\n")
        sys.exit(2)


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return int(text)


def main(argv: list[str] | None = None) -> None:
    parser = _OneLineParser(description="Python time per spin_unlock, per kernel build")
    parser.add_argument("--calls", type=_positive, default=100_000, help="unlocks per repeat (default 100000)")
    parser.add_argument("--repeats", type=_positive, default=7, help="repeats; the median is reported (default 7)")
    args = parser.parse_args(argv)

    loops = [(name, *unlock_loop(kw)) for name, kw in VARIANTS]
    for _, run, _ in loops:  # warm-up
        run(min(args.calls, 10_000))
    samples: dict[str, list[float]] = {name: [] for name, _, _ in loops}
    for _ in range(args.repeats):
        for name, run, _ in loops:
            samples[name].append(run(args.calls) / args.calls)
    base = statistics.median(samples["!PARAVIRT"])
    print(
        f"spin_unlock, {args.calls} calls x {args.repeats} repeats, median ns/call (incl. the loop's locked-byte store)"
    )
    print(f"{'variant':32} {'ns/call':>8} {'ratio':>6}  ops yielded per unlock")
    for name, _, yielded in loops:
        ns = statistics.median(samples[name])
        print(f"{name:32} {ns:8.1f} {ns / base:6.2f}  {'; '.join(yielded)}")


if __name__ == "__main__":
    main()
