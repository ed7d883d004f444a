"""Helpers of the litmus tests: the peers' suites, hand-written tests, driving guest code by hand.

The suites (``<repo>/../shared/litmus``, or ``$PVSPIN_LITMUS_DIR``) are read where they
are, never copied into the repository; a test that needs one is skipped, saying where it
looked, when the folder is absent.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest

from pvspin.litmus import load, source

SB_X86 = r"""X86 SB
{ x=0; y=0; }
 P0          | P1          ;
 MOV [x],$1  | MOV [y],$1  ;
 MOV EAX,[y] | MOV EAX,[x] ;
exists (0:EAX=0 /\ 1:EAX=0)
"""  # store buffering, hand-written: under TSO both loads may read 0

LITMUS_DIR = Path(os.environ.get("PVSPIN_LITMUS_DIR") or Path(__file__).resolve().parents[1].parent / "shared" / "litmus")


def suite(name: str) -> list[Path]:
    """Every ``*.litmus`` file of ``name`` (``x86``, ``aarch64``), sorted; skips the test if the suite is absent."""
    folder = LITMUS_DIR / name
    if not folder.is_dir():
        pytest.skip(f"litmus suite {folder} not found (set PVSPIN_LITMUS_DIR to the folder holding x86/ and aarch64/)")
    return sorted(folder.rglob("*.litmus"))


def expected(csv_name: str) -> dict[str, int]:
    """Verdicts by path relative to the suites' folder (``x86/SB.litmus``)."""
    path = LITMUS_DIR / csv_name
    if not path.is_file():
        pytest.skip(f"{path} not found")
    with path.open(newline="") as f:
        return {row[0]: int(row[1]) for row in csv.reader(f) if row}


def key(path: Path) -> str:
    return path.relative_to(LITMUS_DIR).as_posix()


def sample(paths: list[Path], size: int) -> list[Path]:
    """A fixed, evenly spread sample of about ``size`` paths (every k-th of the sorted list)."""
    step = max(1, len(paths) // size)
    return paths[::step]


def run_supported(engine, paths: list[Path]) -> int:
    """Run ``engine`` on each test of ``paths`` the front end reads; how many it ran."""
    ran = 0
    for path in paths:
        try:
            engine(load(path))
        except source.Unsupported:
            continue
        ran += 1
    return ran


HAND_WRITTEN = Path(__file__).resolve().parent / "litmus"  # this repository's own tests


def lkmm_observations(names: list[str], version: str) -> str:
    """What ``pvspin litmus`` prints for hand-written C tests (``tests/litmus/NAME.litmus``) under an LKMM version."""
    from typer.testing import CliRunner

    from pvspin.cli import app

    out = CliRunner().invoke(app, ["litmus", *(str(HAND_WRITTEN / f"{name}.litmus") for name in names),
                                   "--memory-model", "lkmm", "--lkmm-version", version])
    assert out.exit_code == 0, out.output
    return out.stdout


def parse(front_end, text: str, name: str = "t.litmus"):
    """A hand-written test compiled by ``front_end`` (the x86 or aarch64 module)."""
    return front_end.parse(source.split(Path(name), text))


def drive(gen, answer=lambda op: 0):
    """Run guest code by hand: send ``answer(op)`` for every operation; the operations and the return value."""
    ops = []
    try:
        op = next(gen)
        while True:
            ops.append(op)
            op = gen.send(answer(op))
    except StopIteration as stop:
        return ops, stop.value
