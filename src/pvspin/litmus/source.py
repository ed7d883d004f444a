"""The layout every herd litmus file shares, whatever its architecture.

herd7's assembly litmus files (and the generated suites in ``../shared/litmus``) read::

    AArch64 MP+dmb.sy                      <- architecture, test name
    "DMB.SYdWW Rfe PodRR Fre"              <- optional quoted description
    Cycle=Rfe PodRR Fre DMB.SYdWW          <- optional KEY=VALUE lines
    { 0:X1=x; 0:X3=y; 1:X1=y; 1:X3=x; }    <- the initial state
     P0          | P1          ;           <- one column per thread
     MOV W0,#1   | LDR W0,[X1] ;
     ...
    locations [x;]                         <- optional: more observed locations
    filter (...)                           <- optional: only executions that satisfy it
    exists (1:X0=1 /\\ 1:X2=0)              <- the final condition

plus ``(* comments *)`` anywhere, and, in old x86 files, a trailing ``with tso: ~exists;``
section and ``<< ... >>`` blocks of drawing directives, which carry no semantics.

:func:`split` cuts a file into those parts, each with the line it started on, and
raises :class:`Malformed` (file and line) when the shape is not there.  What an
instruction or an initial value means is the front ends' business.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path


class Malformed(Exception):
    """A file that is not a litmus test: the message names the file and the line."""

    def __init__(self, path, line: int, message: str):
        super().__init__(f"{path}:{line}: {message}")
        self.path = path
        self.line = line
        self.message = message


class Unsupported(Exception):
    """A well-formed test outside what a front end or an engine handles; the reason names the construct and line."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def number(text: str) -> int:
    """An integer as litmus files write it: decimal (leading zeros allowed, ``#01``) or ``0x`` hex, signed."""
    sign, digits = (-1, text[1:]) if text.startswith("-") else (1, text)
    return sign * int(digits, 16 if digits[:2].lower() == "0x" else 10)


@dataclass(frozen=True)
class Cell:
    """One instruction cell of the program table: its text (stripped) and its line in the file."""

    text: str
    line: int


@dataclass(frozen=True)
class Source:
    """A litmus file cut into its parts."""

    path: Path
    arch: str  # the first word: "X86", "AArch64", "C", ...
    name: str
    init: list[tuple[str, int]]  # the initial state's items ("0:X1=x", "x = 0"), with their lines
    threads: list[int]  # thread numbers from the header row, P0 | P1 | ...
    columns: list[list[Cell]]  # per thread, its non-empty cells top to bottom
    tail: str  # locations / filter / condition text, comments and with/<< >> sections removed
    tail_line: int  # the line the tail starts on


_COMMENT = re.compile(r"\(\*.*?\*\)", re.S)
_DIRECTIVES = re.compile(r"<<.*?>>", re.S)
_TAIL_WORDS = ("exists", "~", "forall", "final", "locations", "filter", "not exists")
_HEADER_CELL = re.compile(r"P(\d+)$")


def _blank(match: re.Match) -> str:
    """A removed span, replaced by as many newlines as it held, so that line numbers stay right."""
    return "\n" * match.group(0).count("\n") + " "


def read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise Malformed(path, 0, f"cannot read: {exc.strerror}") from None


def read(path: Path) -> Source:
    """Read and split a litmus file; :class:`Malformed` if it cannot be read as one."""
    return split(path, read_text(path))


def header(text: str) -> tuple[str, int]:
    """The architecture a litmus text declares on its first line, and that line ("" if none)."""
    for number, line in enumerate(text.split("\n"), 1):
        if line.strip():
            return line.split()[0], number
    return "", 1


def split(path: Path, text: str) -> Source:
    """Cut the text of a litmus file into header, initial state, program table and tail."""
    text = _COMMENT.sub(_blank, text)
    lines = text.split("\n")
    n = 0
    while n < len(lines) and not lines[n].strip():
        n += 1
    if n == len(lines):
        raise Malformed(path, 1, "empty file")
    words = lines[n].split()
    if len(words) < 2:
        raise Malformed(path, n + 1, "expected 'ARCH NAME' on the first line")
    arch, name = words[0], words[1]
    # the initial state: the first '{' after the header (a quoted description may come first)
    start = None
    for i in range(n + 1, len(lines)):
        body = re.sub(r'"[^"]*"', "", lines[i]) if '"' in lines[i] else lines[i]
        if "{" in body:
            start = i
            break
    if start is None:
        raise Malformed(path, n + 1, "no initial state '{ ... }'")
    init, end = _init_block(path, lines, start)
    # the program table: the header row first, then rows up to the tail
    i = end + 1
    while i < len(lines) and not lines[i].strip().strip(";").strip():
        i += 1
    if i == len(lines):
        raise Malformed(path, end + 1, "no program after the initial state")
    header = lines[i].strip()
    cells = [c.strip() for c in header.rstrip(";").rstrip().split("|")]
    threads = []
    for c in cells:
        m = _HEADER_CELL.match(c)
        if not m:
            raise Malformed(path, i + 1, f"expected thread names 'P0 | P1 ...;', got {header!r}")
        threads.append(int(m.group(1)))
    if threads != list(range(len(threads))):
        raise Malformed(path, i + 1, f"threads must be P0, P1, ... in order, got {header!r}")
    columns: list[list[Cell]] = [[] for _ in threads]
    i += 1
    while i < len(lines):
        row = lines[i].strip()
        if not row:
            i += 1
            continue
        if row.startswith(_TAIL_WORDS):
            break
        parts = row[:-1].split("|") if row.endswith(";") else row.split("|")
        if len(parts) > len(threads):
            raise Malformed(path, i + 1, f"{len(parts)} cells in a row of a {len(threads)}-thread program")
        for tid, part in enumerate(parts):
            part = part.strip()
            if part:
                columns[tid].append(Cell(part, i + 1))
        i += 1
    if i == len(lines):
        last = max(k for k, text in enumerate(lines) if text.strip())
        raise Malformed(path, last + 1, "no final condition (exists, ~exists or forall) after the program")
    tail = "\n".join(lines[i:])
    tail = _DIRECTIVES.sub(_blank, tail)
    return Source(path, arch, name, init, threads, columns, tail, i + 1)


def _init_block(path: Path, lines: list[str], start: int) -> tuple[list[tuple[str, int]], int]:
    """Items of ``{ a; b; ... }`` with their lines, and the index of the line holding the '}'."""
    items = []
    i = start
    first = lines[i].index("{") + 1
    while i < len(lines):
        segment = lines[i][first:] if i == start else lines[i]
        close = segment.find("}")
        body = segment if close < 0 else segment[:close]
        for item in body.split(";"):
            if item.strip():
                items.append((item.strip(), i + 1))
        if close >= 0:
            rest = segment[close + 1:].strip().lstrip(";").strip()
            if rest:
                raise Malformed(path, i + 1, f"unexpected {rest!r} after the initial state")
            return items, i
        i += 1
    raise Malformed(path, start + 1, "initial state '{' is never closed")
