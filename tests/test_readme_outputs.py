"""The printed outputs in README.md and examples/README.md are snapshots: each ``console`` block's
``$ pvspin ...`` commands are run from the repository's root and must print what the block shows.

Timings (``0.05 s``) vary from machine to machine and are masked on both sides; a line ``...``
stands for any lines.  After a change that alters an output on purpose, run the command and paste
its output into the block.
"""

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ("README.md", "examples/README.md")
TIMING = re.compile(r"\b\d+(\.\d+)? s\b")


def snapshots():
    """(file, command, expected output lines) for each ``$ `` command of each console block."""
    out = []
    for doc in DOCS:
        for block in re.findall(r"```console\n(.*?)```", (ROOT / doc).read_text(), re.S):
            command, lines = None, []
            for line in block.splitlines():
                if line.startswith("$ "):
                    if command:
                        out.append((doc, command, lines))
                    command, lines = line[2:], []
                else:
                    lines.append(line)
            if command:
                out.append((doc, command, lines))
    return out


def matches(expected: list[str], actual: list[str]) -> bool:
    pattern = "\n".join(".*?" if line == "..." else re.escape(TIMING.sub("<t> s", line.rstrip())) for line in expected)
    return re.fullmatch(pattern, "\n".join(TIMING.sub("<t> s", line.rstrip()) for line in actual), re.S) is not None


def test_the_docs_have_snapshots():
    docs = {doc for doc, _, _ in snapshots()}
    assert docs == set(DOCS)


@pytest.mark.parametrize(("doc", "command", "expected"), snapshots(), ids=lambda x: x if isinstance(x, str) else "")
def test_printed_output_is_what_the_command_prints(doc, command, expected):
    args = shlex.split(command)
    assert args[0] == "pvspin", f"{doc}: a console block runs pvspin, not {args[0]}"
    shared = [a for a in args if a.startswith("../shared/") and not (ROOT / a).exists()]
    if shared:  # the peers' litmus suites are read where they are, never copied here
        pytest.skip(f"{shared[0]} not found")
    run = subprocess.run([sys.executable, "-m", "pvspin", *args[1:]], capture_output=True, text=True, cwd=ROOT,
                         timeout=300)  # fmt: skip
    actual = (run.stdout + run.stderr).splitlines()
    assert matches(expected, actual), f"{doc}: `{command}` now prints:\n" + "\n".join(actual)


def test_the_matcher():
    assert matches(["a", "...", "in 0.01 s"], ["a", "b", "c", "in 9.30 s"])
    assert not matches(["a", "b"], ["a", "c"])
