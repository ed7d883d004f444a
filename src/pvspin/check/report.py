"""Counterexamples that read like a kernel bug report.

A counterexample is re-executed move by move in a fresh world with a :class:`Tracer`
attached, which records for each step the CPU and nesting level, the kernel function and
source line about to run (the innermost frame of the context's yield-from chain), the
operation with symbolic addresses, the value read or written, and the lock word decoded
as (tail, pending, locked) whenever the step changed it.  Store-buffer flushes are steps
of their own.  The violated property comes last.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from ..kernel.qspinlock import _Q_LOCKED_MASK, _Q_PENDING_OFFSET, QspinlockTypes
from ..machine import ops as o
from ..machine.cpu import LEVEL_NAMES
from .world import ALT, CRASH, FLUSH, HALTED, IRQ, KIND_NAMES, SPURIOUS, Violation, World, innermost_frame


@dataclass
class Step:
    n: int
    cpu: int
    level: str
    function: str
    line: str
    action: str
    lock_word: str  # decoded lock word(s) after the step, when it changed them

    def as_dict(self) -> dict:
        return asdict(self)


def decode_word(val: int, q: QspinlockTypes) -> str:
    """``(tail, pending, locked)`` of a qspinlock word laid out as ``q`` (QspinlockTypes); the tail as cpu/idx when set."""
    tail = val & q._Q_TAIL_MASK
    pending = (val & q._Q_PENDING_MASK) >> _Q_PENDING_OFFSET
    tail_s = "cpu{}/idx{}".format(*q.decode_tail(tail)) if tail else "0"
    return f"({tail_s},{pending},{val & _Q_LOCKED_MASK})"


class Tracer:
    """Collects :class:`Step` records while a world executes a counterexample."""

    def __init__(self, words: list[tuple[str, int, QspinlockTypes | None]]):
        self.words = words  # (name, address, QspinlockTypes or None: hex) of each lock word
        self.steps: list[Step] = []
        self._pending: Step | None = None
        self._before: list[int] = []

    def _word_values(self, world: World) -> list[int]:
        return [int.from_bytes(world.data[a:a + 4], "little") for _, a, _ in self.words]

    def before(self, world: World, cpu: int, kind: int) -> None:
        self._before = self._word_values(world)
        ctxs = world.ctxs[cpu]
        ctx = ctxs[-1] if ctxs else None
        level = LEVEL_NAMES[ctx.level] if ctx else "-"
        function, line = "-", ""
        if ctx is not None:
            frame = innermost_frame(ctx.gen)
            if frame is not None:
                function = frame.f_code.co_name
                line = f"{Path(frame.f_code.co_filename).name}:{frame.f_lineno}"
        name = world.mem.name_of
        if kind == FLUSH:
            addr, size, value = world.buffers[cpu][0]
            action = f"store-buffer flush: {name(addr, size)} := {world.mem.describe_value(value)}"
            function, line = "(store buffer)", ""
        elif kind == IRQ:
            action = f"interrupt: {LEVEL_NAMES[ctx.level + 1]} handler starts, takes lock{ctx.level + 1}"
        elif kind == SPURIOUS:
            action = "spurious wake-up from pv_wait"
        elif world.halted[cpu] == HALTED:
            action = "kicked: pv_wait returns"
        elif world.halted[cpu]:
            action = "halt: a kick is latched, pv_wait returns" if world.latched[cpu] else "halt: the vCPU sleeps"
        else:
            action = self._describe_op(world, cpu, ctx.op, kind)
        self._pending = Step(len(self.steps) + 1, cpu, level, function, line, action, "")

    def _show(self, world: World, ref, value: int) -> str | None:
        """A value at ``ref`` spelled as what it is: a lock word decoded, a pointer ``&name``; else None."""
        for _, addr, layout in self.words:
            if ref.addr == addr and ref.size == 4 and layout:
                return decode_word(value, layout)
        shown = world.mem.describe_value(value)
        return shown if shown.startswith("&") else None

    def _describe_op(self, world: World, cpu: int, op: tuple, kind: int) -> str:
        mem = world.mem
        text = o.describe(op, lambda ref: mem.name_of(ref.addr, ref.size), lambda ref, v: self._show(world, ref, v))
        code = op[0]
        if code in (o.LOAD, o.COND_LOAD) or code in o.RMW_OPS:
            seen = world.load(cpu, op[1])

            def value(v: int) -> str:  # what was read or written there: decoded, else decimal as before
                return self._show(world, op[1], v) or str(v)

            if code == o.COND_LOAD and kind == ALT:
                return f"{text}: gives up (bound), last read {value(seen)}"
            if code == o.COND_LOAD and kind == CRASH:
                return f"{text}: read {value(seen)}, and its condition raises"
            if code in o.RMW_OPS:
                new, _ = o.rmw_result(code, seen, op, (1 << (8 * op[1].size)) - 1)
                wrote = "no store" if new is None else f"wrote {value(new)}"
                return f"{text}: read {value(seen)}, {wrote}"
            return f"{text}: read {value(seen)}"
        if code == o.STORE:
            where = " (into the store buffer)" if world.tso else ""
            return f"{text}{where}"
        if code == o.PV_WAIT:
            seen = world.load(cpu, op[1])
            return f"{text}: read {seen}, " + ("about to halt" if seen == op[2] else "returns at once")
        if code == o.VCPU_IS_PREEMPTED:
            return f"{text} -> {kind == ALT}"
        return text

    def after(self, world: World, cpu: int, kind: int) -> None:
        step = self._pending
        now = self._word_values(world)
        changed = [
            f"{name} = {decode_word(v, layout) if layout else hex(v)}"
            for (name, _, layout), v, was in zip(self.words, now, self._before, strict=True)
            if v != was
        ]
        step.lock_word = "; ".join(changed)
        self.steps.append(step)


class NotEnabled(Exception):
    """A replayed move that the state does not offer."""


def trace(world: World, moves: list[int], words) -> tuple[list[Step], Exception | None]:
    """Re-execute ``moves`` from the world's initial state, recording every step.

    Returns the steps and the exception that stopped the execution: the violation the
    counterexample leads to, or :class:`NotEnabled` when a move does not fit.
    """
    tracer = Tracer(words)
    world.tracer = tracer
    error = None
    try:
        for i, move in enumerate(moves):
            if move not in world.enabled():
                raise NotEnabled(f"move {i + 1} (cpu{move >> 3} {KIND_NAMES[move & 7]}) is not possible there")
            world.execute(move)
    except (Violation, NotEnabled) as exc:
        error = exc
        pending = tracer._pending
        if isinstance(exc, Violation) and pending is not None and (not tracer.steps or tracer.steps[-1] is not pending):
            tracer.steps.append(pending)  # the step during which the property failed
    finally:
        world.tracer = None
    return tracer.steps, error


def format_steps(steps: list[Step]) -> list[str]:
    lines = []
    for s in steps:
        where = f"{s.function} {s.line}".strip()
        word = f"   [{s.lock_word}]" if s.lock_word else ""
        lines.append(f"{s.n:4d}  cpu{s.cpu}/{s.level:<7} {where:<44} {s.action}{word}")
    return lines
