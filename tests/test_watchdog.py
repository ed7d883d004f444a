"""The watchdog's judgement of whose code a tick interrupted (pvspin.machine.watchdog).

A tick that lands in generated code (a namedtuple's ``__new__``, file ``<string>``) while a
driver waits -- the graph checker's ``--jobs`` driver polls a multiprocessing queue, which
builds a ``SelectorKey`` namedtuple on every poll -- once raised GuestHang in the driver, a
traceback after 736 s of a 4-CPU check.  Generated code is its caller's.
"""

from __future__ import annotations

import sys
import time
from collections import namedtuple

import pytest

from pvspin.machine import crash, watchdog

DRIVER_FILE = str(crash._PACKAGE / "check" / "driver_under_test.py")  # any file of the drivers' dirs
GENERATED = eval("lambda judge: judge(sys._getframe())", {"sys": sys})  # code whose file is "<string>"


def _called_from(filename: str, body: str, **names):
    """Run ``body`` as if it were written in ``filename``: the frame's file is what the watchdog reads."""
    scope = dict(names)
    exec(compile(f"def under_test():\n    {body}\n", filename, "exec"), scope)
    return scope["under_test"]()


def test_generated_code_called_by_a_driver_is_the_driver_s():
    assert GENERATED.__code__.co_filename == "<string>"
    assert _called_from(DRIVER_FILE, "return generated(judge)", generated=GENERATED, judge=watchdog._in_guest) is False


def test_generated_code_called_by_guest_code_is_the_guest_s():
    # this test file lies outside the drivers' directories: it is guest code as a user's lock is
    assert GENERATED(watchdog._in_guest) is True


def test_a_driver_frame_is_not_guest_code_and_a_guest_frame_is():
    assert _called_from(DRIVER_FILE, "return judge(sys._getframe())", judge=watchdog._in_guest, sys=sys) is False
    assert watchdog._in_guest(sys._getframe()) is True


@pytest.mark.parametrize("module", ["parallel.py", "cli.py", "output.py", "check/partitioned.py", "sim/engine.py"])
def test_every_module_of_the_package_but_the_kernel_and_the_workloads_is_driver_code(module):
    # pvspin/parallel.py once counted as guest code: a --jobs 2 check's driver, its probe never
    # moving (its own world does not step), was stopped as a hung guest while submitting a batch
    # to a worker (qspinlock 3 x 3, about one run in three)
    assert _called_from(str(crash._PACKAGE / module), "return judge(sys._getframe())",
                        judge=watchdog._in_guest, sys=sys) is False


@pytest.mark.parametrize("module", ["kernel/qspinlock.py", "kernel/qspinlock_paravirt.py", "check/harness.py",
                                    "sim/workload.py"])
def test_the_kernel_and_the_drivers_own_guest_code_are_guest_code(module):
    assert _called_from(str(crash._PACKAGE / module), "return judge(sys._getframe())",
                        judge=watchdog._in_guest, sys=sys) is True


def test_a_driver_that_submits_to_its_workers_for_long_is_never_taken_for_a_hung_guest(monkeypatch):
    monkeypatch.setenv("PVSPIN_GUEST_SECONDS", "0.2")
    monkeypatch.setattr(watchdog, "_probe", lambda: 0)
    wait = "until = clock() + 1.5\n    while clock() < until:\n        pass"
    with watchdog.guard():
        _called_from(str(crash._PACKAGE / "parallel.py"), wait, clock=time.monotonic)


def test_a_driver_that_waits_building_namedtuples_is_never_taken_for_a_hung_guest(monkeypatch):
    monkeypatch.setenv("PVSPIN_GUEST_SECONDS", "0.2")  # ticks every 0.1 s; the probe never moves
    monkeypatch.setattr(watchdog, "_probe", lambda: 0)
    key = namedtuple("SelectorKey", "fileobj fd events data")
    wait = "until = clock() + 1.5\n    while clock() < until:\n        key(1, 2, 3, 4)"
    with watchdog.guard():
        _called_from(DRIVER_FILE, wait, clock=time.monotonic, key=key)  # about 15 ticks, most in __new__


def test_guest_code_that_stops_yielding_is_still_caught(monkeypatch):
    monkeypatch.setenv("PVSPIN_GUEST_SECONDS", "0.2")
    monkeypatch.setattr(watchdog, "_probe", lambda: 0)
    key = namedtuple("Node", "locked next")
    with pytest.raises(watchdog.GuestHang), watchdog.guard():
        until = time.monotonic() + 5
        while time.monotonic() < until:  # this file is guest code; the loop's namedtuples are its own
            key(0, 0)


def test_the_deadline_is_raised_once_so_the_driver_can_report():
    with watchdog.guard(0.05):
        with pytest.raises(watchdog.Deadline):
            time.sleep(5)
        time.sleep(0.3)  # ticks past the deadline: the report being written is not interrupted again
