"""The layout every herd litmus file shares: header, initial state, program table, tail."""

from __future__ import annotations

from pathlib import Path

import pytest

from pvspin.litmus.source import Malformed, number, split

SB = """X86 SB
"Fre PodWR Fre PodWR"
Cycle=Fre PodWR Fre PodWR
{ x=0; (* a comment { *) y=0;
  0:EAX=1 }
 P0          | P1          ;
 MOV [x],$1  | MOV [y],$1  ;
 MOV EAX,[y] | MOV EAX,[x] ;
exists (0:EAX=0 /\\ 1:EAX=0)
"""


def test_split_keeps_lines_and_cells():
    src = split(Path("sb.litmus"), SB)
    assert (src.arch, src.name, src.threads) == ("X86", "SB", [0, 1])
    assert src.init == [("x=0", 4), ("y=0", 4), ("0:EAX=1", 5)]
    assert [(c.text, c.line) for c in src.columns[1]] == [("MOV [y],$1", 7), ("MOV EAX,[x]", 8)]
    assert src.tail.strip() == "exists (0:EAX=0 /\\ 1:EAX=0)" and src.tail_line == 9


def test_comments_spanning_lines_keep_the_line_numbers():
    src = split(Path("t.litmus"), SB.replace("Cycle=Fre PodWR Fre PodWR", "(* one\ntwo *)"))
    assert src.columns[0][0].line == 8 and src.tail_line == 10


def test_directives_and_short_rows():
    text = SB.replace("exists", " MFENCE      |             ;\n\nexists") + "<<\nshow 3\n>>\n"
    src = split(Path("t.litmus"), text)
    assert [c.text for c in src.columns[0]][-1] == "MFENCE" and len(src.columns[1]) == 2
    assert "show" not in src.tail


@pytest.mark.parametrize("edit, line, message", [
    (lambda t: "", 1, "empty file"),
    (lambda t: t.replace("X86 SB", "X86"), 1, "expected 'ARCH NAME'"),
    (lambda t: t.replace("{", "").replace("}", ""), 1, "no initial state"),
    (lambda t: t.replace("0:EAX=1 }", "0:EAX=1"), 4, "never closed"),
    (lambda t: t.replace(" P0          | P1", " P0          | Q1"), 6, "expected thread names"),
    (lambda t: t.replace("MOV EAX,[y] |", "MOV EAX,[y] | NOP |"), 8, "3 cells in a row of a 2-thread program"),
    (lambda t: t.replace("exists (0:EAX=0 /\\ 1:EAX=0)", ""), 8, "no final condition"),
])
def test_malformed_layouts_name_the_line(edit, line, message):
    with pytest.raises(Malformed) as exc:
        split(Path("t.litmus"), edit(SB))
    assert str(exc.value).startswith(f"t.litmus:{line}: ") and message in str(exc.value)


def test_numbers_as_litmus_files_write_them():
    assert [number(t) for t in ("01", "-1", "0x10", "42")] == [1, -1, 16, 42]
