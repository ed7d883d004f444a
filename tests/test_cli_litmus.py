"""``pvspin litmus``: per-test output, --expect, --json, refusals and one-line errors for bad input."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from litmus_helpers import LITMUS_DIR, SB_X86, sample, suite
from pvspin.cli import app

SB = SB_X86

MP = r"""AArch64 MP
{ 0:X1=x; 0:X3=y; 1:X1=y; 1:X3=x; }
 P0          | P1          ;
 MOV W0,#1   | LDR W0,[X1] ;
 STR W0,[X1] | LDR W2,[X3] ;
 MOV W2,#1   |             ;
 STLR W2,[X3] |            ;
exists (1:X0=1 /\ 1:X2=0)
"""

EXCLUSIVE = """AArch64 EX
{ 0:X1=x; }
 P0 ;
 LDXR W0,[X1] ;
 STXR W2,W0,[X1] ;
exists (0:X2=0)
"""


def litmus(*args):
    result = CliRunner().invoke(app, ["litmus", *map(str, args)])
    assert "Traceback" not in result.output + result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


@pytest.fixture
def tests(tmp_path):
    """x86/SB.litmus, arm/MP.litmus and arm/more/EX.litmus below tmp_path, and a CSV of verdicts beside them."""
    (tmp_path / "x86").mkdir()
    (tmp_path / "arm" / "more").mkdir(parents=True)
    (tmp_path / "x86" / "SB.litmus").write_text(SB)
    (tmp_path / "arm" / "MP.litmus").write_text(MP)
    (tmp_path / "arm" / "more" / "EX.litmus").write_text(EXCLUSIVE)
    (tmp_path / "expected.csv").write_text("x86/SB.litmus,0\narm/MP.litmus,0\narm/more/EX.litmus,1\n")
    return tmp_path


def test_prints_states_verdict_and_herds_observation_line(tests):
    result = litmus(tests / "x86" / "SB.litmus", "--memory-model", "tso")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[1:7] == ["States 4", "1      *> 0:EAX=0; 1:EAX=0;", "1      :> 0:EAX=0; 1:EAX=1;",
                          "1      :> 0:EAX=1; 1:EAX=0;", "1      :> 0:EAX=1; 1:EAX=1;", "Ok"]
    assert "Condition exists (0:EAX=0 /\\ 1:EAX=0)" in lines
    assert "Observation SB Sometimes 1 3" in lines
    assert lines[-1] == "1 tests under tso: 1 supported, 0 unsupported"


def test_a_directory_is_read_recursively_and_the_output_is_byte_for_byte_stable(tests):
    first = litmus(tests, "--memory-model", "sc")
    assert first.exit_code == 0, first.stderr
    assert first.stdout == litmus(tests, "--memory-model", "sc").stdout
    assert "Observation MP Never 0 3" in first.stdout and "Observation SB Never 0 3" in first.stdout
    assert "3 tests under sc: 2 supported, 1 unsupported" in first.stdout
    assert first.stdout.index("arm/MP.litmus") < first.stdout.index("arm/more/EX.litmus") < first.stdout.index("x86/SB")


@pytest.mark.parametrize("engine", ["interleaving", "graph"])
def test_jobs_give_the_output_of_one_process(tests, engine):
    one = litmus(tests, "--memory-model", "sc", "--engine", engine, "--expect", tests / "expected.csv")
    two = litmus(tests, "--memory-model", "sc", "--engine", engine, "--expect", tests / "expected.csv", "--jobs", "2")
    assert one.exit_code == two.exit_code == 0, two.stderr
    assert two.stdout == one.stdout and " agree, 0 disagree" in one.stdout


def test_jobs_below_one_is_one_line(tests):
    result = litmus(tests, "--jobs", "0")
    assert result.exit_code == 2 and result.stderr == "error: --jobs 0: expected a positive number of processes\n"


def test_expect_counts_agreements_and_lists_disagreements_and_unsupported_tests(tests):
    result = litmus(tests, "--memory-model", "tso", "--expect", tests / "expected.csv")
    assert result.exit_code == 1  # SB: TSO reaches the state the CSV says is never reached
    out = result.stdout
    assert "1 agree, 1 disagree, 1 unsupported, 0 without a recorded verdict" in out
    assert "disagree: x86/SB.litmus: expected 0, got 1" in out
    assert "unsupported: arm/more/EX.litmus: exclusive pair (LDXR/STXR) at line 4" in out
    assert litmus(tests, "--memory-model", "sc", "--expect", tests / "expected.csv").exit_code == 0


def test_json_has_the_agreed_fields(tests):
    result = litmus(tests, "--memory-model", "tso", "--expect", tests / "expected.csv", "--json")
    data = json.loads(result.stdout)
    assert {k: data[k] for k in ("tests", "supported", "agree", "disagree")} == {
        "tests": 3, "supported": 2, "agree": 1, "disagree": 1}
    assert data["disagreements"] == [{"test": "x86/SB.litmus", "expected": 0, "got": 1}]
    assert [u["test"] for u in data["unsupported"]] == ["arm/more/EX.litmus"]
    assert "exclusive pair" in data["unsupported"][0]["reason"]
    sb = [r for r in data["results"] if r["test"] == "x86/SB.litmus"][0]
    assert sb["observation"] == "Observation SB Sometimes 1 3" and len(sb["states"]) == 4


def test_armv8_on_the_interleaving_engine_is_refused_in_one_line_not_run_as_sc(tests):
    result = litmus(tests, "--memory-model", "armv8", "--engine", "interleaving")
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr == ("error: --engine interleaving: there is no interleaving engine for --memory-model armv8 "
                             "(ARMv8 is not a store-buffer machine: only the execution-graph checker runs it)\n")


def test_an_unknown_engine_is_one_line(tests):
    result = litmus(tests, "--engine", "herd")
    assert result.exit_code == 2 and result.stderr == "error: --engine 'herd': expected one of interleaving, graph\n"


@pytest.mark.parametrize("args, message", [
    (["--memory-model", "power"], "error: --memory-model 'power': expected one of sc, tso, armv8, lkmm"),
    (["--expect", "missing.csv"], "error: --expect missing.csv: no such file"),
])
def test_bad_options_are_one_line(tests, args, message):
    result = litmus(tests / "x86", *args)
    assert result.exit_code == 2 and result.stderr == message + "\n"


def test_a_missing_path_is_one_line(tmp_path):
    result = litmus(tmp_path / "nothing-here")
    assert result.exit_code == 2 and result.stderr == f"error: {tmp_path / 'nothing-here'}: no such file or directory\n"


def test_a_directory_without_tests_is_one_line(tmp_path):
    result = litmus(tmp_path)
    assert result.exit_code == 2 and result.stderr.startswith("error: ") and "no .litmus files" in result.stderr


@pytest.mark.parametrize("text, where", [
    (SB.replace("{ x=0; y=0; }", "{ x=0; y=0;"), ":2: initial state '{' is never closed"),
    (SB.replace("exists (0:EAX=0 /\\ 1:EAX=0)", "exists (0:EAX=0 /\\"), ":6: expected a register (0:EAX) or a location, got 'the end'"),
    (SB.replace("MOV [x],$1  |", "MOV [x] |"), ":4: 'MOV [x]': MOV takes two operands"),
])
def test_a_malformed_file_is_one_line_naming_file_and_line(tests, text, where):
    bad = tests / "x86" / "bad.litmus"
    bad.write_text(text)
    result = litmus(tests, "--memory-model", "sc")
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.startswith(f"error: {bad}{where}") and result.stderr.count("\n") == 1


def test_a_malformed_csv_is_one_line_naming_file_and_line(tests):
    (tests / "expected.csv").write_text("x86/SB.litmus,0\nx86/SB.litmus;1\n")
    result = litmus(tests, "--expect", tests / "expected.csv")
    assert result.exit_code == 2 and result.stderr.startswith(f"error: {tests / 'expected.csv'}:2: expected 'path,0'")


def test_an_unsupported_architecture_is_listed_not_an_error(tests):
    (tests / "ppc.litmus").write_text("PPC p\n{ 0:r2=x; }\n P0 ;\n li r1,1 ;\nexists (x=1)\n")
    result = litmus(tests / "ppc.litmus")
    assert result.exit_code == 0 and "unsupported: PPC litmus tests (front ends: X86, AArch64, C)" in result.stdout


def test_the_x86_suite_against_its_csv(tmp_path):
    paths = sample(suite("x86"), 10)
    result = litmus(*paths, "--memory-model", "tso", "--expect", LITMUS_DIR / "tso-expected.csv", "--json")
    data = json.loads(result.stdout)
    assert result.exit_code == 0 and data["tests"] == data["supported"] == data["agree"] == len(paths)
    assert data["results"][0]["test"].startswith("x86/")
