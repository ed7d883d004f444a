"""The checker's machine: guest CPUs, memory (SC or x86-TSO), a hypervisor without time.

A :class:`World` holds one global state and offers the three things every exploration
strategy needs: the *moves* enabled in the current state, :meth:`World.execute` of one
move, and :meth:`World.snapshot` / :meth:`World.restore` to go back.

Moves are small integers, ``cpu * 8 + kind``:

* ``STEP``      perform the CPU's pending operation (a bounded ``smp_cond_load_*`` whose
                condition holds, an ``vcpu_is_preempted`` answering False, a halted vCPU
                that has a latched kick resuming, ...);
* ``ALT``       the other outcome of a nondeterministic operation: a bounded spin timing
                out (offered only while its condition is false), ``vcpu_is_preempted``
                answering True;
* ``FLUSH``     TSO: the oldest entry of the CPU's store buffer reaches memory;
* ``IRQ``       an interrupt arrives: a handler one nesting level up takes its own lock;
* ``SPURIOUS``  a halted vCPU wakes up without a kick (within the run's budget);
* ``CRASH``     the condition of the CPU's pending spin-wait raises (guest code failing as
                Python): performing the move reports it as a ``guest-crash`` violation.

A CPU's guest code is never copied.  Its state is *where its generators stand*: the
frame chain (code position and the local variables still live there) and the pending
operation key the visited-state table, and the list of results sent since its current
acquisition began rebuilds it (a fresh generator fed the same results reaches the same
point, because guest code is deterministic).

Steps that no other CPU can observe are folded into the step before them instead of
being scheduling points: local operations (``smp_processor_id``, critical-section
markers, lock events), ``cpu_relax``, compiler-only barriers and, under TSO, a store
entering the store buffer (its flush is the visible event) and a full barrier whose
buffer is already empty; under SC, the lock holder's read of the critical section's
counter.
"""

from __future__ import annotations

import zlib
from types import FunctionType

from ..machine import ops as o
from ..machine import watchdog
from ..machine.cpu import LEVEL_NAMES, NMI
from ..machine.crash import ARITY, NOTHING, REF_OPS, GuestCrash, guest_crash
from ..machine.memory import MASKS, Memory, Ref, View
from .ample import Ample
from .liveness import live_names
from .symmetry import Symmetry, SymmetryError

STEP, ALT, FLUSH, IRQ, SPURIOUS, CRASH = range(6)
RUNNING, ABOUT_TO_HALT, HALTED = range(3)  # a vCPU in pv_wait: checked *ptr == val, then halts
KIND_NAMES = ("step", "alt", "flush", "irq", "spurious", "crash")

# Store-buffer entries per CPU.  A guest loop of plain stores (a queue head re-arming its
# state while a stealer holds the lock) would otherwise grow the buffer, and the state
# space, without end; a full buffer makes the next store wait for a flush.
STORE_BUFFER_SIZE = 4

ORBIT_MEMO = 1 << 20  # concrete states whose orbit key is remembered (World.state_id)
_NONZERO = bytes([0] + [1] * 255)  # for bytes.translate: each byte set or clear
IMPORT_MEMO = 1 << 16  # contexts whose pending operation and key are remembered (World.import_state)

SC = "sc"
TSO = "tso"
MEMORY_MODELS = (SC, TSO)

# Symmetry reduction: orbits, start order only, none; auto is full from three twin CPUs on and
# start below, where orbits of two CPUs save few states (none for PV) at triple the cost per state.
AUTO, FULL, START, NONE = "auto", "full", "start", "none"
SYMMETRIES = (AUTO, FULL, START, NONE)
FULL_FROM_TWINS = 3

_RMW = o.RMW_OPS
_LOCAL = o.LOCAL_OPS
_INVISIBLE = frozenset({o.CPU_RELAX, o.WORK})
_ACCESSES = _RMW | {o.LOAD, o.STORE, o.COND_LOAD}
# Locked RMWs drain the store buffer; so does the kick hypercall (a VM exit).  pv_wait's
# test of *ptr is a plain guest load (kvm_wait), which may read this CPU's own buffer.
_NEEDS_EMPTY_BUFFER = _RMW | {o.PV_KICK}


class Violation(Exception):
    """A property failed in the current state."""

    def __init__(self, prop: str, detail: str):
        super().__init__(f"{prop}: {detail}")
        self.prop = prop
        self.detail = detail


# --------------------------------------------------------------------------- generator keys
# Types whose values key themselves; objects hashed by identity (the lock, the setup) join
# on first sight, so that a frame holding only such values skips canonicalisation.
_PLAIN = {int, bool, str, float, type(None), Ref, View}


def _canon(v):
    t = type(v)
    if t in _PLAIN:
        return v
    if t is tuple or t is list:
        return tuple(_canon(x) for x in v)
    if t is FunctionType:  # a predicate: its captured values are locals of its maker
        return v.__code__
    if t is dict:
        return tuple(sorted((k, _canon(x)) for k, x in v.items()))
    if hasattr(v, "gi_code"):  # a generator: the yield-from chain covers its state
        return v.gi_code
    if t.__hash__ is None:  # e.g. a dataclass with eq: the same object is the same state
        return ("id", id(v))
    _PLAIN.add(t)
    return v


# Locals that only feed lock-event counters, abstracted to what the code tests of them;
# without this, a loop that counts its iterations would make the state space infinite.
STATISTICS_LOCALS = {
    "pv_wait_head_or_lock": {"waitcnt": bool},  # only lockevent_cond_inc(pv_wait_again, waitcnt)
}


_UNBOUND = "<unbound>"


def generator_key(gen, cache: list) -> tuple:
    """Where a generator stands: code, instruction and live locals of each frame of its yield-from chain.

    Guest code is deterministic, so two generators with equal keys behave alike for equal
    future results.  Locals that are dead at the frame's suspension point are left out
    (:mod:`pvspin.check.liveness`).  (Values held on the expression stack across a
    ``yield`` are not visible here; guest code keeps its state in local variables.)

    ``cache`` holds ``(generator, the generator it delegates to, frame key)`` per depth
    from the previous call: a frame suspended in the same ``yield from`` has not run
    since, so its key is reused.
    """
    parts = []
    plain = _PLAIN
    depth = 0
    while gen is not None:
        inner = gen.gi_yieldfrom
        if inner is not None and depth < len(cache):
            known = cache[depth]
            if known[0] is gen and known[1] is inner:
                parts.append(known[2])
                gen = inner
                depth += 1
                continue
        frame = gen.gi_frame
        if frame is None:
            break
        code = frame.f_code
        lasti = frame.f_lasti
        local = frame.f_locals
        names = live_names(code, lasti)
        if names is None:
            names = tuple(local)
        get = local.get
        values = tuple([get(name, _UNBOUND) for name in names])
        for v in values:
            if type(v) not in plain:
                values = tuple(map(_canon, values))
                break
        abstract = STATISTICS_LOCALS.get(code.co_name)
        if abstract is not None:
            values = tuple(abstract[k](v) if k in abstract else v for k, v in zip(names, values, strict=True))
        part = (code, lasti, names, values)
        parts.append(part)
        if depth < len(cache):
            cache[depth] = (gen, inner, part)
        else:
            cache.append((gen, inner, part))
        gen = inner
        depth += 1
    del cache[depth:]
    return tuple(parts)


def innermost_frame(gen):
    """The frame of the innermost generator of a yield-from chain (for reports)."""
    frame = None
    while gen is not None and gen.gi_frame is not None:
        frame = gen.gi_frame
        gen = gen.gi_yieldfrom
    return frame


# --------------------------------------------------------------------------- the world
class Ctx:
    """One nesting level of one CPU: its generator, pending op and replay history."""

    __slots__ = ("gen", "level", "op", "hist", "program", "key", "frames")

    def __init__(self, level: int, program: tuple):
        self.level = level
        self.program = program  # ("task", cpu, k) or ("irq", cpu, level, n)
        self.gen = None
        self.op = None
        self.hist = None  # cons list (previous, result) of every result sent after the start
        self.key = None
        self.frames = []  # generator_key's cache of frame keys


class World:
    """The global state the checker explores, and its transition function.

    ``setup`` (see :mod:`pvspin.check.harness`) supplies the memory, the per-CPU programs
    and the lock-specific checks.
    """

    def __init__(self, setup, memory_model: str = SC, spurious_wakeups: int = 0, interrupts: int = 0,
                 kick_latch: bool = True, symmetry: str = AUTO):
        if memory_model not in MEMORY_MODELS:
            raise ValueError(f"memory model {memory_model!r} is not one of {', '.join(MEMORY_MODELS)}")
        if symmetry not in SYMMETRIES:
            raise ValueError(f"symmetry {symmetry!r} is not one of {', '.join(SYMMETRIES)}")
        self.setup = setup
        self.mem: Memory = setup.mem
        self.data = setup.mem.data
        self.first_object = min((r.base for r in setup.mem.regions), default=len(self.data))
        self.n = setup.ncpus
        self.tso = memory_model == TSO
        self.kick_latch = kick_latch
        self.spurious_budget = spurious_wakeups
        self.irq_budget = interrupts
        self.irqs_taken = 0
        self.ctxs: list[list[Ctx]] = [[] for _ in range(self.n)]
        self.k = [0] * self.n  # acquisitions completed by the task context
        self.irqs_enabled = [True] * self.n
        self.halted = [RUNNING] * self.n
        self.latched = [False] * self.n
        self.buffers: list[tuple] = [()] * self.n  # TSO: FIFO of (addr, size, value)
        self.holders: dict = {}
        self.cpu_keys: list = [None] * self.n
        self.ctx_snaps: list = [()] * self.n  # per CPU: what a snapshot saves of its contexts
        self.watch = setup.watch  # [(addr, allowed values)] of lock bytes whose domain is checked
        self.warn_ok = getattr(setup, "warn_ok", False)
        self.private = getattr(setup, "private", {})
        self.guarded = getattr(setup, "guarded", {})  # address -> the lock whose holder alone uses it
        self.forever = getattr(setup, "forever", False)  # tasks re-acquire without end (liveness)
        self.tracer = None
        self.steps = 0
        watchdog.watch(lambda: self.steps)  # guest code that stops yielding stops the steps
        # what the last move did, for liveness (check/cycles.py): its CPU made progress
        # (entered a critical section, finished a program), memory changed
        self.progressed = False
        self.wrote = False
        # Start symmetry: CPUs that run the same code from a start that treats them alike
        # (the setup says which) are interchangeable until they first move, so among those
        # that have not moved yet only the lowest may: any execution is, up to renaming the
        # CPUs, one in which they start in CPU order.  ``unmoved`` joins the state key: a
        # CPU that re-acquires without end comes back to its initial key, not to a fresh start.
        self.twins = getattr(setup, "symmetric", 0) if symmetry != NONE else 0
        self.unmoved = (1 << self.n) - 1
        for cpu in range(self.n):
            self._start_task(cpu)
        # Full symmetry: states equal up to renaming the twins share a key (check/symmetry.py).
        full = symmetry == FULL or (symmetry == AUTO and self.twins.bit_count() >= FULL_FROM_TWINS)
        self.symmetry = Symmetry(self, self.twins) if full and self.twins.bit_count() > 1 else None
        self.symmetry_used = FULL if self.symmetry is not None else START if self.twins else NONE
        # per-CPU fields that only ever hold their CPU's number: which ones were written (for the key)
        self.owner_fields = self.symmetry.owner_fields if self.symmetry is not None else {}
        self.owners_set = 0
        self._orbits: dict[int, tuple] = {}  # concrete key hash -> (orbit key hash, renaming, lock bits)
        self._imported: dict[tuple, tuple] = {}  # (level, program, results) -> (pending op, key), see import_state
        self._orbit_bits = b""  # the lock bits of the orbit last given a state_id (under full symmetry)
        self._ample = Ample(self)
        self._locks = [(v.addr, v.addr + v.layout.size) for v in getattr(setup, "views", ())]

    # ----------------------------------------------------------------- programs
    def _start_task(self, cpu: int) -> None:
        if self.k[cpu] >= self.setup.acquisitions:
            self.ctxs[cpu] = []
            return
        ctx = Ctx(0, ("task", cpu, self.k[cpu]))
        self.ctxs[cpu] = [ctx]
        self._boot(cpu, ctx)

    def _boot(self, cpu: int, ctx: Ctx) -> None:
        ctx.gen = self.setup.program(ctx.program)
        ctx.hist = None
        self._advance(cpu, ctx, None, first=True)

    def _rebuild(self, ctx: Ctx) -> None:
        """Bring a fresh generator to the point reached by sending ``ctx.hist``."""
        hist = ctx.hist
        results = []
        while hist is not None:
            results.append(hist[1])
            hist = hist[0]
        gen = self.setup.program(ctx.program)
        gen.send(None)
        for r in reversed(results):
            gen.send(r)
        ctx.gen = gen

    def finished(self, cpu: int) -> bool:
        return not self.ctxs[cpu]

    def all_finished(self) -> bool:
        return not any(self.ctxs)

    # ----------------------------------------------------------------- memory
    def load(self, cpu: int, ref: Ref) -> int:
        addr, size = ref.addr, ref.size
        value = int.from_bytes(self.data[addr:addr + size], "little")
        buf = self.buffers[cpu]
        if buf:  # byte-granular store forwarding, newest entry last
            raw = bytearray(value.to_bytes(size, "little"))
            end = addr + size
            for a, s, v in buf:
                if a < end and a + s > addr:
                    vb = v.to_bytes(s, "little")
                    for i in range(max(a, addr), min(a + s, end)):
                        raw[i - addr] = vb[i - a]
            value = int.from_bytes(raw, "little")
        return value

    def mem_write(self, addr: int, size: int, value: int) -> None:
        if addr < self.first_object:  # kept out of the state key: memory below it is never written
            raise Violation("null-dereference", f"write of {size} byte(s) to {addr:#x}, below every object")
        raw = (value & MASKS[size]).to_bytes(size, "little")
        if self.data[addr:addr + size] != raw:
            self.data[addr:addr + size] = raw
            self.wrote = True
        if self.owner_fields:
            owned = self.owner_fields.get(addr)
            if owned is not None:
                if value != owned[1]:
                    raise SymmetryError(f"{self.mem.name_of(addr, size)} = {value}: full symmetry assumes it only "
                                        f"ever holds its own CPU's number, {owned[1]}")
                self.owners_set |= owned[0]
        for waddr, allowed in self.watch:
            if addr <= waddr < addr + size:
                byte = self.data[waddr]
                if byte not in allowed:
                    raise Violation("lock-byte-domain",
                                    f"{self.mem.name_of(waddr)} became {byte}, allowed {sorted(allowed)}")

    def store(self, cpu: int, ref: Ref, value: int) -> None:
        if self.tso:
            self.buffers[cpu] = self.buffers[cpu] + ((ref.addr, ref.size, value & MASKS[ref.size]),)
        else:
            self.mem_write(ref.addr, ref.size, value)

    # ----------------------------------------------------------------- moves
    def enabled(self) -> list[int]:
        """Moves enabled now, ascending by CPU."""
        moves = []
        tso = self.tso
        fresh_twins = self.unmoved & self.twins
        skip = fresh_twins & (fresh_twins - 1)  # every fresh twin but the lowest
        for cpu in range(self.n):
            if skip >> cpu & 1:
                continue
            base = cpu * 8
            if tso and self.buffers[cpu]:
                moves.append(base + FLUSH)
            ctxs = self.ctxs[cpu]
            if not ctxs:
                continue
            halted = self.halted[cpu]
            if halted:
                if halted == ABOUT_TO_HALT or self.latched[cpu]:
                    moves.append(base + STEP)
                if halted == HALTED and self.spurious_budget > 0:
                    moves.append(base + SPURIOUS)
                continue
            op = ctxs[-1].op
            code = op[0]
            if code == o.COND_LOAD:
                try:
                    holds = op[2](self.load(cpu, op[1]))
                except (Exception, SystemExit):  # the guest's condition fails: the move that says so
                    moves.append(base + CRASH)
                    continue
                if holds:
                    moves.append(base + STEP)
                elif op[4] is not None:
                    moves.append(base + ALT)
            elif code in _NEEDS_EMPTY_BUFFER or (code == o.FENCE and op[1] == o.MB):
                if not (tso and self.buffers[cpu]):
                    moves.append(base + STEP)
            elif code == o.STORE and tso:
                if len(self.buffers[cpu]) < STORE_BUFFER_SIZE:
                    moves.append(base + STEP)
            elif code == o.VCPU_IS_PREEMPTED:
                moves.append(base + STEP)
                moves.append(base + ALT)
            else:
                moves.append(base + STEP)
            if self.irqs_taken < self.irq_budget and self.irqs_enabled[cpu] and ctxs[-1].level < NMI:
                moves.append(base + IRQ)
        return moves

    def ample(self, enabled: list[int]) -> list[int] | None:
        """An ample set smaller than ``enabled`` (this state's :meth:`enabled`), or None.

        See :mod:`pvspin.check.ample`.  For the exhaustive search only: strategies that
        count preemptions keep every move.
        """
        return self._ample.moves(enabled)

    def ample_kept(self, cpu: int, before: tuple) -> bool:
        """The cycle proviso, after a move of ``cpu`` out of a state that explores an ample set only; ``before``:
        :meth:`progress` of ``cpu`` there.  False: that state must explore all its moves (:mod:`pvspin.check.ample`)."""
        return self._ample.may_keep(cpu, before)

    def execute(self, move: int) -> None:
        """Perform one move; raises :class:`Violation` when a property fails during it."""
        cpu, kind = divmod(move, 8)
        try:
            self.steps += 1
            self.progressed = self.wrote = False
            self.unmoved &= ~(1 << cpu)
            ctxs = self.ctxs[cpu]
            if ctxs and ctxs[-1].gen is None:  # restored lazily: rebuild only the context that moves
                self._rebuild(ctxs[-1])
            if self.tracer is not None:
                self.tracer.before(self, cpu, kind)
            if kind == FLUSH:
                buf = self.buffers[cpu]
                self.buffers[cpu] = buf[1:]
                self.mem_write(*buf[0])
                self._refresh_key(cpu)
            elif kind == IRQ:
                self.irqs_taken += 1
                level = self.ctxs[cpu][-1].level + 1
                ctx = Ctx(level, ("irq", cpu, level, self.irqs_taken))
                self.ctxs[cpu].append(ctx)
                self._boot(cpu, ctx)
            elif kind == CRASH:  # the condition raised in enabled(): again, for the report
                op = self.ctxs[cpu][-1].op
                op[2](self.load(cpu, op[1]))
                raise GuestCrash(f"the condition of {o.OPCODE_NAMES[op[0]]} raised once, then not (not deterministic)")
            elif kind == SPURIOUS:
                self.spurious_budget -= 1
                self.halted[cpu] = RUNNING
                self._advance(cpu, self.ctxs[cpu][-1], None)
            elif self.halted[cpu] and (self.halted[cpu] == HALTED or self.latched[cpu]):  # kicked / kick latched
                self.halted[cpu] = RUNNING
                self.latched[cpu] = False
                self._advance(cpu, self.ctxs[cpu][-1], None)
            elif self.halted[cpu] == ABOUT_TO_HALT:  # hlt with no kick latched: sleep
                self.halted[cpu] = HALTED
                self._refresh_key(cpu)
            else:
                ctx = self.ctxs[cpu][-1]
                result = self._perform(cpu, ctx.op, kind)
                if self.halted[cpu]:
                    self._refresh_key(cpu)
                else:
                    self._advance(cpu, ctx, result)
            if self.tracer is not None:
                self.tracer.after(self, cpu, kind)
        except Violation:
            raise
        except (Exception, SystemExit) as exc:  # guest code failing as Python, or this checker's own bug
            ctxs = self.ctxs[cpu]
            crash = guest_crash(exc, ctxs[-1].op, ctxs[-1].gen) if ctxs else guest_crash(exc)
            if crash is None:
                raise
            raise Violation(crash.prop, f"cpu{cpu}: {crash}") from None

    def _perform(self, cpu: int, op: tuple, kind: int):
        code = op[0]
        if code in _ACCESSES and self.private.get(op[1].addr, cpu) != cpu:
            raise Violation("private-access", f"cpu{cpu} accessed {self._name(op[1])}, private to "
                            f"cpu{self.private[op[1].addr]}")
        if code == o.LOAD or code == o.COND_LOAD:
            return self.load(cpu, op[1])
        if code == o.STORE:
            self.store(cpu, op[1], op[2])
            return None
        if code in _RMW:
            ref = op[1]
            old = self.load(cpu, ref)
            new, result = o.rmw_result(code, old, op, MASKS[ref.size])
            if new is not None:
                self.mem_write(ref.addr, ref.size, new)
            return result
        if code == o.PV_WAIT:
            # kvm_wait(): return if *ptr != val, else halt -- two steps, and a kick may land
            # between them: the latch (pv_unhalted) is what keeps it from being lost.
            if self.load(cpu, op[1]) == op[2]:
                self.halted[cpu] = ABOUT_TO_HALT
            return None
        if code == o.PV_KICK:
            target = op[1]
            if not 0 <= target < self.n:
                raise Violation("guest-bug", f"pv_kick({target}): no such vCPU")
            if self.halted[target] == HALTED or self.kick_latch:
                self.latched[target] = True
                self._refresh_key(target)
            return None
        if code == o.VCPU_IS_PREEMPTED:
            return kind == ALT
        return None  # FENCE

    def _advance(self, cpu: int, ctx: Ctx, result, first: bool = False) -> None:
        """Send ``result`` to the context and fold every following invisible step."""
        tso = self.tso
        gen = ctx.gen
        hist = ctx.hist
        op = NOTHING
        try:
            while True:
                if first:
                    op = gen.send(None)
                    first = False
                else:
                    op = gen.send(result)
                    hist = (hist, result)
                code = op[0]
                if code in _LOCAL:
                    result = self._local(cpu, ctx, op)
                elif code in _INVISIBLE or (code == o.FENCE and (op[1] != o.MB or not tso or not self.buffers[cpu])):
                    result = None
                elif tso and code == o.STORE and len(self.buffers[cpu]) < STORE_BUFFER_SIZE:
                    self.store(cpu, op[1], op[2])
                    result = None
                elif (code <= o.STORE and self.private.get(op[1].addr) == cpu
                      and self.irqs_taken >= self.irq_budget):
                    # this CPU's own data (e.g. its node count): no other CPU, and no interrupt
                    # handler any more, can come between
                    result = self.load(cpu, op[1]) if code == o.LOAD else self.store(cpu, op[1], op[2])
                elif code == o.LOAD and not tso and self.holders.get(self.guarded.get(op[1].addr)) == cpu:
                    # the holder reading the critical section's counter: under SC another CPU
                    # reaches it only by entering the critical section, which the mutual-
                    # exclusion check catches.  (Its write stays a step: the critical section
                    # must span a scheduling point for that check to see two CPUs inside.)
                    result = self.load(cpu, op[1])
                else:
                    # a visible operation becomes pending: the rest of the checker may rely on its shape
                    if len(op) != ARITY[code] or (code in REF_OPS and type(op[1]) is not Ref):
                        raise ValueError("malformed operation")  # named by guest_crash() below
                    break
        except StopIteration:
            self._finish_ctx(cpu)
            return
        except o.GuestBug as bug:
            raise Violation("guest-bug", f"cpu{cpu}: BUG: {bug}") from None
        except Violation:
            raise
        except (Exception, SystemExit) as exc:  # see pvspin.machine.crash
            crash = guest_crash(exc, op, gen)
            if crash is None:
                raise
            raise Violation(crash.prop, f"cpu{cpu}: {crash}") from None
        ctx.hist = hist
        self._pending(ctx, op)
        self._refresh_key(cpu)

    def _pending(self, ctx: Ctx, op: tuple) -> None:
        """The context's generator yielded ``op``, a visible operation: it is pending, and keys the context."""
        ctx.op = op
        # the pending operation too: its operands were computed from locals that may be dead
        # once the generator resumes, yet it is still to be performed
        for v in op:
            if type(v) not in _PLAIN:
                op_key = _canon(op)
                break
        else:
            op_key = op
        ctx.key = (ctx.level, ctx.program[0], op_key, generator_key(ctx.gen, ctx.frames))

    def _finish_ctx(self, cpu: int) -> None:
        self.progressed = True
        ctxs = self.ctxs[cpu]
        ctxs.pop()
        if not ctxs:
            if not self.forever:
                self.k[cpu] += 1
            self._start_task(cpu)
            if self.ctxs[cpu]:
                return
        self._refresh_key(cpu)

    def _local(self, cpu: int, ctx: Ctx, op: tuple):
        code = op[0]
        if code == o.SMP_PROCESSOR_ID:
            return cpu
        if code == o.CS:
            lock_id = op[1]
            if op[2] > 0:
                holder = self.holders.get(lock_id)
                if holder is not None:
                    raise Violation("mutual-exclusion",
                                    f"cpu{cpu} entered the critical section of {lock_id} held by cpu{holder}")
                self.holders[lock_id] = cpu
                self.progressed = True
            else:
                self.holders.pop(lock_id, None)
            return None
        if code == o.IN_NMI:
            return ctx.level == NMI
        if code == o.IRQS:
            previous = self.irqs_enabled[cpu]
            self.irqs_enabled[cpu] = op[1]
            return previous
        if code == o.WARNING and not self.warn_ok:
            raise Violation("guest-warning", f"cpu{cpu}: WARN: {op[1]}")
        return None  # LOCKEVENT: counted by the simulator, not the checker

    # ----------------------------------------------------------------- state
    def _refresh_key(self, cpu: int) -> None:
        """Called after every change to the CPU's state: its key and its part of a snapshot."""
        ctxs = self.ctxs[cpu]
        self.ctx_snaps[cpu] = tuple((c.level, c.program, c.hist, c.op, c.key) for c in ctxs)
        self.cpu_keys[cpu] = (
            self.k[cpu],
            tuple(c.key for c in ctxs),
            self.buffers[cpu],
            self.halted[cpu],
            self.latched[cpu],
            self.irqs_enabled[cpu],
        )

    def progress(self, cpu: int) -> tuple:
        """How far the CPU has come, for the cycle proviso of the ample sets (:mod:`pvspin.check.ample`).

        Its acquisitions completed, then where each of its contexts stands (level, and the
        instruction of each frame of its yield-from chain, outermost first), then the fewer
        stores in its buffer the further: compared as tuples.  A function of the state, the
        same in every process (no identities, no hashes), and it changes only when the CPU
        moves: its own step or flush.
        """
        return (self.k[cpu], tuple((c.level, tuple(part[1] for part in c.key[3])) for c in self.ctxs[cpu]),
                -len(self.buffers[cpu]))

    def key(self) -> tuple:
        """Everything that determines the future: hashed into the visited-state table."""
        return (bytes(self.data[self.first_object:]), tuple(self.cpu_keys), self.spurious_budget, self.irqs_taken,
                self.unmoved & self.twins, self.owners_set)

    def state_id(self) -> tuple[int, tuple | None]:
        """The visited-table entry of the state, and the renaming of its CPUs into that entry's numbering.

        Without full symmetry: the hash of :meth:`key`, no renaming.  With it: the hash of
        the orbit's canonical key (:mod:`pvspin.check.symmetry`), remembered by concrete key,
        since the search reaches most states more than once.
        """
        h = hash(self.key())
        if self.symmetry is None:
            return h, None
        known = self._orbits.get(h)
        if known is None:
            key, renaming = self.symmetry.canonical()
            known = (hash(key), renaming, self._lock_bits(key[0], self.first_object))
            if len(self._orbits) >= ORBIT_MEMO:
                self._orbits.clear()
            self._orbits[h] = known
        self._orbit_bits = known[2]
        return known[0], known[1]

    def state_place(self) -> tuple[int, tuple | None, int]:
        """:meth:`state_id`, and the state's *place*, the same in every process and for every state of an orbit.

        The place is a CRC-32 of what changes on few moves: the acquisitions each CPU completed
        (sorted), how many CPUs are halted, have a kick latched, hold a lock, and which bytes
        of the lock objects are set (the lock word's ``(tail, pending, locked)`` each reduced to
        set or clear), read from the orbit's canonical memory under full symmetry.  (The
        state's hash is not the same in every process: it mixes in objects hashed by identity
        and strings hashed with the process's own seed.)  The parallel search partitions
        states by place (:mod:`pvspin.check.partitioned`).
        """
        h, renaming = self.state_id()
        bits = self._lock_bits(self.data, 0) if self.symmetry is None else self._orbit_bits
        counts = (*sorted(self.k), sum(1 for x in self.halted if x), sum(self.latched), len(self.holders))
        coarse = bytes(min(x, 255) for x in counts)  # a coarser place past 255 is still a place
        return h, renaming, zlib.crc32(bits, zlib.crc32(coarse))

    def _lock_bits(self, memory, offset: int) -> bytes:
        """Which bytes of the lock objects in ``memory`` (which starts at address ``offset``) are not zero."""
        view = memoryview(memory)
        return b"".join(view[start - offset:end - offset].tobytes().translate(_NONZERO) for start, end in self._locks)

    def export_state(self) -> tuple:
        """The state as plain values, for a world of the same configuration in another process (:meth:`import_state`).

        A context travels as the results sent to it: the receiving world rebuilds its generator.
        """
        ctxs = []
        for live in self.ctxs:
            saved = []
            for c in live:
                results = []
                hist = c.hist
                while hist is not None:
                    results.append(hist[1])
                    hist = hist[0]
                results.reverse()
                saved.append((c.level, c.program, tuple(results)))
            ctxs.append(tuple(saved))
        return (self.unmoved, self.owners_set, bytes(self.data), tuple(self.buffers), tuple(ctxs), tuple(self.k),
                tuple(self.halted), tuple(self.latched), tuple(self.irqs_enabled), tuple(self.holders.items()),
                self.spurious_budget, self.irqs_taken)

    def import_state(self, state: tuple) -> None:
        """Take the state :meth:`export_state` gave (in this process or another).

        A context's pending operation and key are a function of its program and the results
        sent to it; one seen before is taken as it was (its generator rebuilt when it next
        moves, as after :meth:`restore`), so that a state received from another worker costs
        a replay only for the contexts that moved since.
        """
        (self.unmoved, self.owners_set, data, buffers, ctxs, k, halted, latched, irqs, holders, self.spurious_budget,
         self.irqs_taken) = state
        self.data[:] = data
        self.buffers = list(buffers)
        self.k = list(k)
        self.halted = list(halted)
        self.latched = list(latched)
        self.irqs_enabled = list(irqs)
        self.holders = dict(holders)
        memo = self._imported
        for cpu, saved in enumerate(ctxs):
            live = []
            for entry in saved:
                level, program, results = entry
                ctx = Ctx(level, program)
                for r in results:
                    ctx.hist = (ctx.hist, r)
                known = memo.get(entry)
                if known is None:
                    gen = ctx.gen = self.setup.program(program)
                    op = gen.send(None)
                    for r in results:
                        op = gen.send(r)
                    self._pending(ctx, op)
                    if len(memo) >= IMPORT_MEMO:
                        memo.clear()
                    memo[entry] = (ctx.op, ctx.key)
                else:
                    ctx.op, ctx.key = known
                live.append(ctx)
            self.ctxs[cpu] = live
            self._refresh_key(cpu)

    def snapshot(self) -> tuple:
        return (
            self.unmoved,
            self.owners_set,
            bytes(self.data),
            tuple(self.buffers),
            tuple(self.ctx_snaps),
            tuple(self.k),
            tuple(self.halted),
            tuple(self.latched),
            tuple(self.irqs_enabled),
            tuple(self.cpu_keys),
            tuple(self.holders.items()),
            self.spurious_budget,
            self.irqs_taken,
        )

    def restore(self, snap: tuple) -> None:
        (self.unmoved, self.owners_set, data, buffers, ctxs, k, halted, latched, irqs, keys, holders, spurious, irqs_taken) = snap
        self.data[:] = data
        self.buffers = list(buffers)
        live_snaps = self.ctx_snaps
        for cpu, saved in enumerate(ctxs):
            if live_snaps[cpu] is saved:  # the CPU has not moved since the snapshot
                continue
            live = self.ctxs[cpu]
            # a context's history is a fresh cons cell after every step: identity means same place
            same = len(live) == len(saved) and all(
                c.hist is s[2] and c.program == s[1] for c, s in zip(live, saved, strict=True))
            if same:
                continue
            stale = []
            for level, program, hist, op, key in saved:
                ctx = Ctx(level, program)  # its generator is rebuilt when it next moves
                ctx.hist, ctx.op, ctx.key = hist, op, key
                stale.append(ctx)
            self.ctxs[cpu] = stale
        self.k = list(k)
        self.halted = list(halted)
        self.latched = list(latched)
        self.irqs_enabled = list(irqs)
        self.cpu_keys = list(keys)
        self.ctx_snaps = list(ctxs)
        self.holders = dict(holders)
        self.spurious_budget = spurious
        self.irqs_taken = irqs_taken

    # ----------------------------------------------------------------- properties at rest
    def terminal_violation(self) -> Violation | None:
        """The property a state with no enabled move violates, or None."""
        if self.all_finished():
            problems = self.setup.final_problems(self)
            if problems:
                return Violation("final-state", "; ".join(problems))
            return None
        blocked = []
        lost = False
        for cpu in range(self.n):
            if not self.ctxs[cpu]:
                continue
            ctx = self.ctxs[cpu][-1]
            where = f"cpu{cpu} ({LEVEL_NAMES[ctx.level]})"
            if self.halted[cpu] == HALTED:
                lost = True
                blocked.append(f"{where} halted in {o.describe(ctx.op, self._name)} with no kick pending")
            else:
                blocked.append(f"{where} waits forever in {o.describe(ctx.op, self._name)}")
        return Violation("lost-wakeup" if lost else "deadlock", "; ".join(blocked))

    def _name(self, ref: Ref) -> str:
        return self.mem.name_of(ref.addr, ref.size)
