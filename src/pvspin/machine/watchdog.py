"""A watchdog for guest code that never yields, and a deadline for a whole command.

Guest code runs in the driver's thread between two yields; a Python loop there that never
yields (or a lock file whose import never returns) would hang every command.  Checking the
time around each guest step would cost on every step, so the watchdog samples instead: a
``SIGALRM`` interval timer ticks once a second, and its handler (run by Python in the main
thread, between two bytecodes of whatever is running) compares the driver's progress counter
with the last tick's.  When the counter has not moved for :func:`guest_seconds` and the
interrupted code is guest code, the handler raises :class:`GuestHang` right there, inside
the guest, so the drivers report it as they report any guest crash (pvspin.machine.crash).

The counter is one the drivers keep anyway (the checker's steps, the simulator's events,
the graph checker's graphs): a driver names it with :func:`watch` once per run, nothing is
added to its loop.  The same tick enforces a command's deadline (``check --max-seconds``)
by raising :class:`Deadline`, a KeyboardInterrupt: the searches already stop on Ctrl-C with
what they explored.

POSIX only, and only in the main thread (signals are delivered there); elsewhere
:func:`guard` does nothing.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager

from .crash import LIBRARY_DIRS, is_guest

DEFAULT_GUEST_SECONDS = 10.0
TICK = 1.0


class GuestHang(Exception):
    """Guest code ran for :func:`guest_seconds` without yielding an operation."""


class Deadline(KeyboardInterrupt):
    """The command's time limit passed: stop as Ctrl-C stops, with what was done."""


def guest_seconds() -> float:
    """How long guest code may run without yielding: ``$PVSPIN_GUEST_SECONDS``, default 10."""
    try:
        value = float(os.environ.get("PVSPIN_GUEST_SECONDS", DEFAULT_GUEST_SECONDS))
    except ValueError:
        return DEFAULT_GUEST_SECONDS
    return value if value > 0 else DEFAULT_GUEST_SECONDS


_probe: Callable[[], int] = lambda: 0  # noqa: E731 -- the running driver's progress counter


def watch(probe: Callable[[], int]) -> None:
    """The running driver's progress: a number that changes whenever guest code yields."""
    global _probe
    _probe = probe


def _in_guest(frame) -> bool:
    """Whether the interrupted code is guest code.

    Library frames and generated code (``<string>``: a namedtuple's ``__new__``, a dataclass's
    ``__init__``) count as their caller's: a driver waiting in ``multiprocessing`` builds
    namedtuples too.
    """
    while frame is not None and frame.f_code.co_filename.startswith(LIBRARY_DIRS + ("<",)):
        frame = frame.f_back
    return frame is not None and is_guest(frame.f_code)


@contextmanager
def guard(deadline_seconds: float | None = None):
    """Run the body with the watchdog (and, given, a deadline in seconds); restores what was there."""
    if not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
        yield
        return
    limit = guest_seconds()
    started = time.monotonic()
    state = {"seen": None, "since": started, "deadline": deadline_seconds}

    def tick(_signum, frame):
        now = time.monotonic()
        if state["deadline"] is not None and now - started >= state["deadline"]:
            state["deadline"] = None  # once: the driver that stops on it then gathers and prints what was done
            raise Deadline(f"stopped at the time limit ({deadline_seconds:g} s)")
        seen = _probe()
        if seen != state["seen"]:
            state["seen"], state["since"] = seen, now
        elif now - state["since"] >= limit and _in_guest(frame):
            state["since"] = now  # once: the drivers may re-run the guest to report it
            raise GuestHang(f"stuck in guest code for {limit:g} s without yielding an operation: an endless "
                            "loop? ($PVSPIN_GUEST_SECONDS sets the limit)")

    previous = signal.signal(signal.SIGALRM, tick)
    tick_seconds = min(TICK, limit / 2, deadline_seconds or TICK)
    signal.setitimer(signal.ITIMER_REAL, tick_seconds, tick_seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def stopped(stop: KeyboardInterrupt) -> str:
    """Why a search stopped early, for its report: the deadline, SIGTERM or Ctrl-C."""
    if isinstance(stop, Deadline):
        return str(stop)
    return f"interrupted ({stop})" if str(stop) else "interrupted"


def _terminated(_signum, _frame):
    raise KeyboardInterrupt("SIGTERM")


def sigterm_as_interrupt() -> None:
    """SIGTERM (what ``timeout`` and service managers send) stops the command as Ctrl-C does."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminated)
