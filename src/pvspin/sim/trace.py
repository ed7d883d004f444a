"""Timeline export: a Chrome trace-event JSON file that Perfetto's UI (ui.perfetto.dev) opens.

Tracks (Perfetto draws each as a row):

* process "host pCPUs": a thread per pCPU, a slice per stay of a vCPU on it (named as the vCPU);
* a process per guest ("guest NAME"), with per vCPU

  - its state track ("guest0/vcpu2"): ``running``, ``runnable``, ``halted`` slices; inside the
    running ones, one slice per spin wait, named after the wait and the lock it is for
    (``pv_wait_node lock0``, ``MCS spin lock0``, ``pending spin lock0``...; args: ``lock``, ``wait``,
    the kernel function spinning and the variable spun on), and an instant per halt;
  - its VM-exit track ("guest0/vcpu2 VM exits"): a slice per exit, named with ``perf kvm stat``'s
    reason (``HLT``, ``PAUSE_INSTRUCTION``, ``VMCALL``, ``EXTERNAL_INTERRUPT``), from the exit to
    the VM entry (an exit handled in place lasts its cost).  A ``VMCALL`` is a ``pv_kick``
    hypercall: a flow arrow goes from it to the wake-up of the vCPU it kicks (its ``runnable``
    slice), or, for a kick latched on a vCPU not halted yet, to the ``HLT`` that returns at once;

  and per lock a holder track ("lock0 holder": a slice per critical section, named as the vCPU)
  and counter tracks, from every write to the lock word: ``lock0 locked``, ``lock0 pending``,
  ``lock0 tail cpu`` (-1: no queue) and ``lock0 queue`` (the MCS queue's length, its head
  included) for the qspinlock family; ``head``, ``tail`` and ``queue`` (waiters) for tickets.

A vCPU is named ``GUEST/vcpuN`` everywhere: its tracks, the pCPU slices, the holder slices, a
kick's target.  Thread ids are unique in the file and never 0 (Perfetto's importer reads tid 0 as
the pid): process P's tracks have tids ``P * 100000 + n``.

Only built when asked for (``--trace``): the engine calls these hooks only when a tracer is
installed, and none of them changes what the simulation does.  Events are written to the file as
they are produced (a slice when it ends), so memory does not grow with simulated time: the tracer
keeps only the slices still open, one per track.  The file is the JSON object format,
``{"traceEvents": [...], "displayTimeUnit": "ns"}``; the track names (``M`` events) come last,
when every track is known.  A ``window`` of cycles keeps only what happens within it, slices
crossing its edges clipped to them; a counter's value at the window's start is written there.
"""

from __future__ import annotations

import json
from typing import TextIO

from .vcpu import EXIT_HLT, EXIT_REASONS, EXIT_VMCALL, KICK_LATCHED, KICK_POLLED, KICK_WOKE

HOST_PID = 1
TIDS = 100_000  # thread ids per process: P * TIDS + n
EXIT_TIDS = 20_000  # a vCPU's VM-exit track: P * TIDS + EXIT_TIDS + cpu
LOCK_TIDS = 50_000  # a lock's holder track: P * TIDS + LOCK_TIDS + n

_dumps = json.JSONEncoder(separators=(",", ":")).encode
_quoted: dict[str, str] = {}  # a name as a JSON string: few distinct ones, many events


def _quote(name: str) -> str:
    text = _quoted.get(name)
    if text is None:
        text = _quoted[name] = json.dumps(name)
    return text


_encoded: dict[tuple, str] = {}  # args as JSON: few distinct ones too (waits, lock-word values, targets)


def _encode(args: dict) -> str:
    key = tuple(args.items())
    text = _encoded.get(key)
    if text is None:
        text = _encoded[key] = _dumps(args)
    return text


def guest_pid(v) -> int:
    return 2 + v.guest.index


def vcpu_tid(v) -> int:
    return guest_pid(v) * TIDS + v.cpu


def lock_name(lock_id) -> str:
    """The workload's name of a lock a critical section is for: ``lock0``, ``irq_lock0``."""
    if isinstance(lock_id, tuple) and len(lock_id) == 2 and lock_id[0] == "irq":
        return f"irq_lock{lock_id[1]}"
    return f"lock{lock_id}"


# ------------------------------------------------------------------ which wait a spin is
# The kernel function a wait belongs to, from the innermost frame outwards: helpers (not listed)
# are passed over to their caller (trylock_clear_pending() spins for pv_wait_head_or_lock()).
WAITS = {
    "pv_wait_node": "pv_wait_node",
    "pv_wait_head_or_lock": "pv_wait_head_or_lock",
    "pv_wait_head": "pv_wait_head",  # v4.2
    "pv_hybrid_queued_unfair_trylock": "pv_hybrid_queued_unfair_trylock",  # lock stealing
    "virt_spin_lock": "virt_spin_lock",
    "ticket_spin_lock": "__ticket_spin_lock",
    "arch_spin_lock": "arch_spin_lock",  # the pv ticket lock's SPIN_THRESHOLD loop
    "kvm_lock_spinning": "kvm_lock_spinning",
}
# The waits written inline in queued_spin_lock_slowpath(), by the variable spun on
SLOWPATH_WAITS = {
    ("queue", "locked"): "MCS spin",  # arch_mcs_spin_lock_contended(&node->locked)
    ("queue", "next"): "MCS next wait",  # smp_cond_load_relaxed(&node->next, (VAL)): the successor links
    ("queue", "val"): "queue head spin",  # atomic_cond_read_acquire(&lock->val, !(VAL & _Q_LOCKED_PENDING_MASK))
    ("native_queued_spin_lock_slowpath", "locked"): "pending spin",  # smp_cond_load_acquire(&lock->locked, !VAL)
    ("native_queued_spin_lock_slowpath", "val"): "pending hand-over wait",  # _Q_PENDING_LOOPS
}


def _frames(gen) -> list:
    """The frames of a suspended guest generator, outermost first (through ``yield from`` and the
    ``gen`` a wrapper keeps, as :func:`pvspin.machine.crash.where` walks them)."""
    frames = []
    while gen is not None and getattr(gen, "gi_frame", None) is not None:
        frames.append(gen.gi_frame)
        inner = gen.gi_yieldfrom
        gen = inner if inner is not None else gen.gi_frame.f_locals.get("gen")
    return frames


def where(v) -> dict:
    """What ``v``'s pending operation waits for: ``lock`` (its name), ``wait`` (which wait, in the
    kernel's words), ``in`` (the guest function it stands in) and ``on`` (the variable)."""
    contexts = v.gcpu.contexts
    op = v.op
    ref = op[1] if op is not None and len(op) > 1 else None
    on = getattr(ref, "name", None)
    frames = _frames(contexts[-1].gen) if contexts else []
    inner = frames[-1].f_code.co_name if frames else "-"
    wait = None
    lock = None
    for frame in reversed(frames):
        name = frame.f_code.co_name
        local = frame.f_locals
        if lock is None:
            view = local.get("lock")
            lock = getattr(view, "name", None)
        if wait is None:
            if name in WAITS:
                wait = WAITS[name]
            elif on is not None and (name, on.rsplit(".", 1)[-1]) in SLOWPATH_WAITS:
                wait = SLOWPATH_WAITS[(name, on.rsplit(".", 1)[-1])]
                if wait == "queue head spin" and "node" not in local:
                    wait = "no-node trylock spin"  # more nesting than MCS nodes: spin on trylock
        if wait is not None and lock is not None:
            break
    if lock is None and on is not None:
        lock = on.split(".", 1)[0]
    return {"lock": lock or "-", "wait": wait or inner, "in": inner, "on": on or "-"}


class NullTracer:
    """The hooks the engine calls, doing nothing: the interface a tracer implements."""

    def vcpu_state(self, t: int, v, state: str) -> None: ...
    def pcpu(self, t: int, pcpu: int, v) -> None: ...
    def spin(self, t: int, v, begin: bool) -> None: ...
    def critical_section(self, t: int, v, lock_id, begin: bool) -> None: ...
    def instant(self, t: int, v, name: str, args: dict | None = None) -> None: ...
    def halt(self, t: int, v) -> None: ...
    def kick(self, start: int, t: int, v, target, kicked: int, yielded: bool = False) -> None: ...
    def exit_begin(self, t: int, v, reason: int, args: dict | None = None) -> None: ...
    def exit_end(self, t: int, v) -> None: ...
    def exit_in_place(self, start: int, end: int, v, reason: int, args: dict | None = None) -> None: ...
    def wrote(self, t: int, v, ref) -> None: ...
    def watch_locks(self, guest, kernel) -> None: ...


class _Word:
    """A lock word the tracer follows: its counters, and (qspinlock) its MCS queue."""

    __slots__ = ("name", "addr", "kind", "q", "inc", "queue", "last", "shown")

    def __init__(self, name: str, addr: int, kind: str, q=None, inc: int = 1):
        self.name = name
        self.addr = addr
        self.kind = kind  # "qspinlock" or "ticket"
        self.q = q  # QspinlockTypes
        self.inc = inc  # ticket increment (2 for the pv ticket lock, whose head's bit 0 is a flag)
        self.queue: list[tuple[int, int]] = []  # (cpu, idx) of the nodes queued, head first
        self.last: dict | None = None  # the counters' values, as last computed
        self.shown = False  # a value written inside the window yet


class Tracer(NullTracer):
    def __init__(self, freq_mhz: int, window: tuple[int, int] | None = None):
        """A tracer of what happens within ``window`` (cycles [lo, hi]; None: all of it)."""
        self.freq = freq_mhz
        self.out: TextIO | None = None
        self.early: list[str] = []  # what the guests' boot traced before the file was started
        self.lo, self.hi = window if window is not None else (0, float("inf"))
        self.open_state: dict[object, tuple] = {}  # vcpu -> (name, start, pid, tid, flow id or None)
        self.open_spin: dict[object, tuple[int, str, dict]] = {}  # vcpu -> (start, name, args)
        self.open_pcpu: dict[int, tuple[str, int]] = {}
        self.open_cs: dict[tuple, int] = {}
        self.open_exit: dict[object, tuple[int, int, dict | None, str]] = {}  # vcpu -> (reason, start, args, flow)
        self.exit_end_at: dict[object, int] = {}  # vcpu -> end of its last exit slice
        # vcpu -> (flow id, whether its start was written): a kick's arrow, ending at the halted
        # vCPU's wake-up, at the end of the HLT exit it was polling in, or at the next HLT of one
        # the kick was latched for
        self.wake_flow: dict[object, tuple[int, bool]] = {}
        self.latch_flow: dict[object, tuple[int, bool]] = {}
        self.poll_flow: dict[object, tuple[int, bool, int]] = {}  # ... and when the kick ended
        self.flows = 0
        self.names: dict[tuple[int, int], tuple[str, int]] = {}  # (pid, tid) -> (name, sort index)
        self.lock_tids: dict[tuple[int, str], int] = {}
        self.words: dict[tuple[int, int], _Word] = {}  # (guest, word address) -> lock word
        self.nodes: dict[tuple[int, int], tuple[int, int]] = {}  # (guest, &node->locked) -> (cpu, idx)
        self.queued: dict[tuple[int, tuple[int, int]], _Word] = {}  # (guest, node) -> the lock it queues on
        self.first = True

    def start(self, out: TextIO) -> None:
        """Write the trace to ``out`` (the caller closes it) from now on, and what came before."""
        self.out = out
        out.write('{"traceEvents":[')
        out.write("".join(self.early))
        self.early.clear()

    def _us(self, t: int) -> float:
        return t / self.freq

    def _put(self, text: str) -> None:
        text = text if self.first else "," + text
        self.first = False
        if self.out is None:
            self.early.append(text)
        else:
            self.out.write(text)

    def _emit(self, event: dict) -> None:
        self._put(_dumps(event))

    def _span(self, name: str, start: int, end: int, pid: int, tid: int, cat: str, args: dict | None = None,
              flow: str = "") -> bool:  # fmt: skip
        """Write a slice (``flow``: its flow fields); False if it has nothing inside the window."""
        if start < self.lo or end > self.hi:  # clipped to the window; left out if nothing is inside
            start, end = max(start, self.lo), min(end, self.hi)
            if start >= end:
                return False
        # what json.dumps(event) writes, by hand: a slice is most of the file (floats are repr()'d
        # by json too), and the encoder's per-call set-up cost more than the simulation
        freq = self.freq
        extra = ',"args":' + _encode(args) if args else ""
        self._put(f'{{"name":{_quote(name)},"ph":"X","ts":{start / freq!r},"dur":{(end - start) / freq!r},'
                  f'"pid":{pid},"tid":{tid},"cat":"{cat}"{flow}{extra}}}')  # fmt: skip
        return True

    def _vcpu_track(self, v) -> tuple[int, int]:
        pid, tid = guest_pid(v), vcpu_tid(v)
        if (pid, tid) not in self.names:
            self.names[(pid, tid)] = (f"{v}", 2 * v.cpu)
        return pid, tid

    def _lock_tid(self, pid: int, name: str) -> int:
        key = (pid, name)
        tid = self.lock_tids.get(key)
        if tid is None:
            n = len([k for k in self.lock_tids if k[0] == pid])
            tid = self.lock_tids[key] = pid * TIDS + LOCK_TIDS + n
            self.names[(pid, tid)] = (f"{name} holder", 2 * LOCK_TIDS + n)
        return tid

    # ------------------------------------------------------------- hooks called by the engine
    def vcpu_state(self, t: int, v, state: str) -> None:
        pid, tid = self._vcpu_track(v)
        previous = self.open_state.pop(v, None)
        if previous is not None:
            self._state_span(previous, t)
        flow = None
        if state == "runnable" and previous is not None and previous[0] == "halted":  # a wake-up
            fid, shown = self.wake_flow.pop(v, (None, False))
            flow = fid if shown else None
            self.latch_flow.pop(v, None)  # kvm_vcpu_kick() clears a latched kick too
        if state != "done":
            self.open_state[v] = (state, t, pid, tid, flow)

    def _state_span(self, state: tuple, t: int) -> None:
        name, start, pid, tid, flow = state
        self._span(name, start, t, pid, tid, "vcpu", None, "" if flow is None else f',"bind_id":{flow},"flow_in":true')

    def pcpu(self, t: int, pcpu: int, v) -> None:
        previous = self.open_pcpu.pop(pcpu, None)
        if previous is not None:
            self._span(previous[0], previous[1], t, HOST_PID, HOST_PID * TIDS + pcpu, "pcpu")
        if v is not None:
            self.open_pcpu[pcpu] = (f"{v}", t)

    def spin(self, t: int, v, begin: bool) -> None:
        if begin:
            at = where(v)
            self.open_spin[v] = (t, f"{at['wait']} {at['lock']}", at)
            return
        opened = self.open_spin.pop(v, None)
        if opened is not None:
            pid, tid = self._vcpu_track(v)
            self._span(opened[1], opened[0], t, pid, tid, "spin", opened[2])

    def critical_section(self, t: int, v, lock_id, begin: bool) -> None:
        key = (v.guest.index, lock_id)
        if begin:
            self.open_cs[key] = t
            return
        start = self.open_cs.pop(key, None)
        if start is None:
            return
        pid = guest_pid(v)
        name = lock_name(lock_id)
        self._span(f"{v}", start, t, pid, self._lock_tid(pid, name), "lock", {"lock": name})

    def instant(self, t: int, v, name: str, args: dict | None = None) -> None:
        if t < self.lo or t > self.hi:
            return
        pid, tid = self._vcpu_track(v)
        event = {"name": name, "ph": "i", "s": "t", "ts": self._us(t), "pid": pid, "tid": tid, "cat": "event"}
        if args:
            event["args"] = args
        self._emit(event)

    def halt(self, t: int, v) -> None:
        """``v`` halts in pv_wait(): which wait, on which lock."""
        at = where(v)
        self.instant(t, v, "pv_wait: halt", {"lock": at["lock"], "wait": at["wait"], "on": at["on"]})

    # ------------------------------------------------------------- VM exits and kicks
    def _exit_span(self, v, reason: int, start: int, end: int, args: dict | None, flow: str = "") -> bool:
        start = max(start, self.exit_end_at.get(v, start))  # rows never overlap: an exit taken
        if end < start:  # during another's in-place cost (a preemption in a PAUSE exit) starts after it
            return False
        self.exit_end_at[v] = end
        pid, tid = self._vcpu_track(v)
        tid += EXIT_TIDS
        if (pid, tid) not in self.names:
            self.names[(pid, tid)] = (f"{v} VM exits", 2 * v.cpu + 1)
        return self._span(EXIT_REASONS[reason], start, end, pid, tid, "exit", args, flow)

    def exit_begin(self, t: int, v, reason: int, args: dict | None = None) -> None:
        """``v`` exits at ``t`` and leaves its pCPU (or may: a PAUSE exit's directed yield)."""
        if reason == EXIT_HLT and args is None:
            at = where(v)
            args = {"lock": at["lock"], "wait": at["wait"]}
        self.open_exit[v] = (reason, t, args, "")

    def exit_end(self, t: int, v) -> None:
        """VM entry of ``v`` at ``t``: the exit it took is over."""
        opened = self.open_exit.pop(v, None)
        if opened is not None:
            self._exit_span(v, opened[0], opened[1], t, opened[2], opened[3])
            polled = self.poll_flow.pop(v, None) if opened[0] == EXIT_HLT else None
            if polled is not None:  # a kick ended the halt poll: a slice from the kick to the VM entry, the arrow's end
                fid, shown, kicked_at = polled
                pid, tid = self._vcpu_track(v)
                flow = f',"bind_id":{fid},"flow_in":true' if shown else ""
                self._span("pv_wait: poll woken", kicked_at, t, pid, tid, "poll", None, flow)

    def exit_in_place(self, start: int, end: int, v, reason: int, args: dict | None = None) -> None:
        """An exit handled without leaving the pCPU, [start, end]; a HLT consumes a latched kick."""
        flow = ""
        if reason == EXIT_HLT:
            fid, shown = self.latch_flow.pop(v, (None, False))
            if shown:
                flow = f',"bind_id":{fid},"flow_in":true'
        self.open_exit.pop(v, None)
        self._exit_span(v, reason, start, end, args, flow)

    def kick(self, start: int, t: int, v, target, kicked: int, yielded: bool = False) -> None:
        """``v``'s pv_kick() hypercall to ``target``, [start, t]: a VMCALL exit, the start of a flow
        to what the kick did (``kicked``): the target's wake-up from its halt, the end of the HLT
        exit it was polling in, or the HLT its latched kick makes return at once.

        ``yielded``: the kick's boost took ``v`` off its pCPU, and the exit lasts until its VM entry.
        A boosted kick is traced after the wake-up it made, in the same cycle: the flow then ends
        on the runnable slice that wake-up opened.
        """
        pending = (self.wake_flow, self.poll_flow, self.latch_flow)[kicked]  # an earlier kick's arrow there
        args = {"hypercall": "KVM_HC_KICK_CPU", "target": f"{target}", "latched": kicked == KICK_LATCHED}
        if kicked == KICK_POLLED:
            args["polling"] = True
        if yielded:
            args["yield_to"] = f"{target}"
        flow = ""
        if target not in pending:  # else a wake-up already scheduled (or a kick latched): the arrow is the first kick's
            # numbered and followed whether or not the window shows it, so that a window is the whole
            # trace clipped: an arrow's end gets its flow fields only if its start was written
            self.flows += 1
            flow = f',"bind_id":{self.flows},"flow_out":true'
        if yielded:  # written at the VM entry; shown if it starts in the window and reaches into it
            self.open_exit[v] = (EXIT_VMCALL, start, args, flow)
            shown = start < self.hi and t > self.lo
        else:
            shown = self._exit_span(v, EXIT_VMCALL, start, t, args, flow)
        if flow:
            opened = self.open_state.get(target) if kicked == KICK_WOKE else None
            if opened is not None and opened[0] == "runnable" and opened[1] == t and opened[4] is None:
                self.open_state[target] = (*opened[:4], self.flows if shown else None)
            elif kicked == KICK_POLLED:
                self.poll_flow[target] = (self.flows, shown, t)
            else:
                pending[target] = (self.flows, shown)

    # ------------------------------------------------------------- lock words
    def watch_locks(self, guest, kernel) -> None:
        """Follow the lock words of ``kernel`` (a booted guest kernel) in ``guest``'s memory."""
        impl = getattr(kernel, "impl", kernel)
        g = guest.index
        q = getattr(impl, "q", None)
        for lock in getattr(impl, "locks", None) or []:  # a user's lock may keep no such list: no counters
            layout = getattr(getattr(lock, "layout", None), "name", None)
            if layout == "qspinlock" and q is not None:
                self.words[(g, lock.addr)] = _Word(lock.name, lock.addr, "qspinlock", q)
            elif layout == "arch_spinlock":
                inc = 2 if getattr(impl, "name", "") == "pvticket" else 1
                self.words[(g, lock.addr)] = _Word(lock.name, lock.addr, "ticket", inc=inc)
        if q is not None:
            for cpu, nodes in enumerate(getattr(impl, "qnodes", [])):
                for idx, node in enumerate(nodes):
                    self.nodes[(g, node.locked.addr)] = (cpu, idx)

    def wrote(self, t: int, v, ref) -> None:
        """A store or read-modify-write by ``v`` to ``ref`` completed at ``t``."""
        g = v.guest.index
        key = (g, ref.addr & ~3)
        word = self.words.get(key)
        if word is not None:
            self._word_changed(t, v, word)
            return
        node = self.nodes.get(key)
        if node is not None and v.guest.mem.read(key[1], 4):  # node->locked = 1: the queue head is handed on
            word = self.queued.get((g, node))
            if word is not None and node in word.queue:
                while word.queue[0] != node:
                    self.queued.pop((g, word.queue.pop(0)), None)
                self._counters(t, v, word, word.last["locked"], word.last["pending"], word.last["tail cpu"])

    def _word_changed(self, t: int, v, word: _Word) -> None:
        val = v.guest.mem.read(word.addr, 4)
        if word.kind == "ticket":
            head, tail = val & 0xFFFF, val >> 16
            waiting = ((tail - (head & ~(word.inc - 1))) & 0xFFFF) // word.inc
            self._show(t, v, word, {"head": head, "tail": tail, "queue": max(0, waiting - 1)})
            return
        q = word.q
        g = v.guest.index
        tail = val & q._Q_TAIL_MASK
        previous = word.queue[-1] if word.queue else None
        if not tail:  # claimed by the last in the queue (or none was there)
            for node in word.queue:
                self.queued.pop((g, node), None)
            word.queue.clear()
        else:
            node = q.decode_tail(tail)
            if node != previous:  # xchg_tail(): a new tail
                word.queue.append(node)
                self.queued[(g, node)] = word
        cpu = q.decode_tail(tail)[0] if tail else -1
        self._counters(t, v, word, val & 0xFF, (val & q._Q_PENDING_MASK) >> 8, cpu)

    def _counters(self, t: int, v, word: _Word, locked: int, pending: int, tail_cpu: int) -> None:
        self._show(t, v, word, {"locked": locked, "pending": pending, "tail cpu": tail_cpu, "queue": len(word.queue)})

    def _show(self, t: int, v, word: _Word, values: dict) -> None:
        if values == word.last:
            return
        before, word.last = word.last, values
        if t < self.lo or t > self.hi:
            return
        pid = guest_pid(v)
        if not word.shown and before is not None and t > self.lo:  # the value the window starts with
            self._put(f'{{"name":{_quote(word.name)},"ph":"C","ts":{self.lo / self.freq!r},"pid":{pid},'
                      f'"args":{_dumps(before)}}}')  # fmt: skip
        word.shown = True
        self._put(f'{{"name":{_quote(word.name)},"ph":"C","ts":{t / self.freq!r},"pid":{pid},"args":{_encode(values)}}}')

    # ------------------------------------------------------------- output
    def finish(self, t: int, sim) -> None:
        """Close every open span at ``t``, name the tracks and end the file's JSON."""
        for state in list(self.open_state.values()):
            self._state_span(state, t)
        for v, (start, name, args) in list(self.open_spin.items()):
            if start > t:  # resumed after a switch-in that ends after the trace does
                continue
            pid, tid = self._vcpu_track(v)
            self._span(name, start, t, pid, tid, "spin", args)
        for v, (reason, start, args, flow) in list(self.open_exit.items()):
            if start <= t:
                self._exit_span(v, reason, start, t, args, flow)
        for pcpu, (name, start) in list(self.open_pcpu.items()):
            self._span(name, start, t, HOST_PID, HOST_PID * TIDS + pcpu, "pcpu")
        self.open_state.clear()
        self.open_spin.clear()
        self.open_exit.clear()
        self.open_pcpu.clear()
        if self.lo > 0:  # a lock word that did not change within the window: its value there
            for (g, _addr), word in self.words.items():
                if not word.shown and word.last is not None and self.lo <= t:
                    self._put(f'{{"name":{_quote(word.name)},"ph":"C","ts":{self.lo / self.freq!r},"pid":{2 + g},'
                              f'"args":{_dumps(word.last)}}}')  # fmt: skip
        self._emit({"name": "process_name", "ph": "M", "pid": HOST_PID, "args": {"name": "host pCPUs"}})
        for p in sim.pcpus:
            tid = HOST_PID * TIDS + p.id
            self._emit({"name": "thread_name", "ph": "M", "pid": HOST_PID, "tid": tid, "args": {"name": f"pCPU {p.id}"}})
            self._emit({"name": "thread_sort_index", "ph": "M", "pid": HOST_PID, "tid": tid, "args": {"sort_index": p.id}})
        for g in sim.guests:
            self._emit({"name": "process_name", "ph": "M", "pid": 2 + g.index, "args": {"name": f"guest {g.name}"}})
        for (pid, tid), (name, index) in sorted(self.names.items()):
            self._emit({"name": "thread_name", "ph": "M", "pid": pid, "tid": tid, "args": {"name": name}})
            self._emit({"name": "thread_sort_index", "ph": "M", "pid": pid, "tid": tid, "args": {"sort_index": index}})
        if self.out is not None:
            self.out.write('],"displayTimeUnit":"ns"}')
