"""A guest CPU as the drivers see it: a stack of contexts, one per interrupt nesting level.

Each context runs one guest generator.  When an interrupt arrives, the handler's
generator is pushed on top and runs to completion before the interrupted context
resumes, with the operation it was about to perform still pending: exactly the
nesting of task → softirq → hardirq → NMI that qspinlock's four MCS nodes exist for.
"""

from __future__ import annotations

from collections.abc import Generator

TASK, SOFTIRQ, HARDIRQ, NMI = 0, 1, 2, 3
LEVEL_NAMES = ("task", "softirq", "hardirq", "nmi")

GuestCode = Generator[tuple, object, object]


class Context:
    """One nesting level on a CPU: its generator and the operation it has yielded."""

    __slots__ = ("gen", "level", "op")

    def __init__(self, gen: GuestCode, level: int):
        self.gen = gen
        self.level = level
        self.op: tuple | None = None


class GuestCpu:
    """The guest-visible part of a CPU: identity, contexts, IRQ flag.

    Drivers call :meth:`start` / :meth:`interrupt` to install code, then alternate
    :meth:`resume` (send the result of the pending operation, get the next one).
    """

    __slots__ = ("id", "contexts", "irqs_enabled", "finished")

    def __init__(self, cpu_id: int):
        self.id = cpu_id
        self.contexts: list[Context] = []
        self.irqs_enabled = True
        self.finished = False

    @property
    def level(self) -> int:
        return self.contexts[-1].level if self.contexts else TASK

    @property
    def op(self) -> tuple | None:
        return self.contexts[-1].op if self.contexts else None

    def start(self, gen: GuestCode) -> tuple | None:
        """Install the task-level program and run it to its first operation."""
        self.contexts = [Context(gen, TASK)]
        self.finished = False
        return self.resume(None)

    def interrupt(self, gen: GuestCode, level: int) -> tuple | None:
        """Run ``gen`` as a handler one or more levels above the current context."""
        if level <= self.level and self.contexts:
            raise ValueError(f"cpu{self.id}: {LEVEL_NAMES[level]} cannot interrupt {LEVEL_NAMES[self.level]}")
        self.contexts.append(Context(gen, level))
        return self.resume(None)

    def context_returned(self) -> tuple | None:
        """The innermost context's code returned: pop it; the next pending operation.

        Returns the interrupted context's pending operation, or None when the task-level
        program has finished.  (Drivers that inline :meth:`resume`'s ``send`` call this on
        ``StopIteration``.)
        """
        self.contexts.pop()
        if not self.contexts:
            self.finished = True
            return None
        return self.contexts[-1].op

    def resume(self, result) -> tuple | None:
        """Send ``result`` to the innermost context; return the next pending operation.

        When a handler finishes, the interrupted context's pending operation becomes
        current again.  Returns None when the task-level program has finished.
        """
        contexts = self.contexts
        while contexts:
            ctx = contexts[-1]
            try:
                op = ctx.gen.send(result)
            except StopIteration:
                return self.context_returned()
            ctx.op = op
            return op
        return None
