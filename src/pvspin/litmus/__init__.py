"""Litmus-test front ends: herd's X86 and AArch64 assembly tests and C tests as pvspin guest code.

A litmus file is read in two steps: :mod:`.source` cuts it into the parts every herd
test has (header, initial state, program table, final condition), and the front end of
its architecture (:mod:`.x86`, :mod:`.aarch64`; :mod:`.c` for C tests, which cuts the file itself) compiles each column into a thread whose
``program()`` yields the operations of :mod:`pvspin.machine.ops`.  :mod:`.cond` is the
final-condition language, :mod:`.run` the engines that run a test under a memory model
and herd's verdict, :mod:`.command` the ``pvspin litmus`` command.

Nothing here is part of the checker: a test reaches it as guest code, like any lock.
"""

from __future__ import annotations

from pathlib import Path

from .source import Malformed, Unsupported, header, read_text, split
from .test import LitmusTest


def _front_ends():
    from . import aarch64, x86

    return {"X86": x86.parse, "AArch64": aarch64.parse}


def load(path: Path) -> LitmusTest:
    """Read a litmus file; :class:`Malformed` (file and line) or :class:`Unsupported` (construct and line)."""
    path = Path(path)
    text = read_text(path)
    arch, line = header(text)
    if arch == "C":  # the C front end cuts the file itself: its threads are functions, not columns
        from . import c

        return c.parse_text(path, text)
    parse = _front_ends().get(arch)
    if parse is None and arch:
        raise Unsupported(f"unsupported: {arch} litmus tests (front ends: X86, AArch64, C) at line {line}")
    src = split(path, text)  # an empty file is malformed
    return parse(src)


__all__ = ["LitmusTest", "Malformed", "Unsupported", "load"]
