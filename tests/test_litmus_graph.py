"""The execution-graph checker on the peers' litmus suites: ARMv8 against herd's verdicts, SC and TSO against
the interleaving checker, outcome set by outcome set.

The fast tier runs a fixed sample of each suite, the slow tier all of it.
"""

from __future__ import annotations

import pytest

from litmus_helpers import expected, key, sample, suite
from pvspin.litmus import load
from pvspin.litmus.run import judge, outcomes
from pvspin.litmus.source import Unsupported


def _plain_aarch64():
    return [p for p in suite("aarch64") if "/mixed/" not in p.as_posix()]


def _armv8(paths):
    verdicts = expected("arm8-expected.csv")
    ran, disagreements, unsupported = 0, [], []
    for path in paths:
        try:
            test = load(path)
            got = judge(test, outcomes(test, "armv8")).verdict
        except Unsupported as exc:
            unsupported.append((key(path), exc.reason))
            continue
        ran += 1
        if got != verdicts[key(path)]:
            disagreements.append((key(path), verdicts[key(path)], got))
    return ran, disagreements, unsupported


def test_aarch64_sample_agrees_with_herd_under_armv8():
    paths = sample(_plain_aarch64(), 250)
    ran, disagreements, unsupported = _armv8(paths)
    assert disagreements == [] and unsupported == [] and ran == len(paths) >= 240


@pytest.mark.slow
def test_aarch64_suite_agrees_with_herd_under_armv8():
    ran, disagreements, unsupported = _armv8(_plain_aarch64())
    assert disagreements == [] and unsupported == [] and ran >= 3000


def _same_outcomes(paths, model):
    compared, different = 0, []
    for path in paths:
        try:
            test = load(path)
            interleaving = set(outcomes(test, model, "interleaving"))
        except Unsupported:
            continue  # exclusives, or more stores than the interleaving checker's buffer holds
        graph = set(outcomes(test, model, "graph"))
        compared += 1
        if graph != interleaving:
            different.append((key(path), sorted(interleaving ^ graph)[:3]))
    return compared, different


@pytest.mark.parametrize("model", ["sc", "tso"])
def test_x86_sample_graph_and_interleaving_reach_the_same_final_states(model):
    compared, different = _same_outcomes(sample(suite("x86"), 60), model)
    assert different == [] and compared >= 55


def test_aarch64_sample_graph_and_interleaving_reach_the_same_final_states_under_sc():
    compared, different = _same_outcomes(sample(_plain_aarch64(), 120), "sc")
    assert different == [] and compared >= 110


@pytest.mark.slow
@pytest.mark.parametrize("model", ["sc", "tso"])
def test_x86_suite_graph_and_interleaving_reach_the_same_final_states(model):
    compared, different = _same_outcomes(suite("x86"), model)
    assert different == [] and compared == 356


@pytest.mark.slow
def test_aarch64_suite_graph_and_interleaving_reach_the_same_final_states_under_sc():
    compared, different = _same_outcomes(_plain_aarch64(), "sc")
    assert different == [] and compared >= 3700


def test_x86_tso_on_the_graph_checker_agrees_with_herd():
    verdicts = expected("tso-expected.csv")
    for path in sample(suite("x86"), 60):
        test = load(path)
        assert judge(test, outcomes(test, "tso", "graph")).verdict == verdicts[key(path)], key(path)
