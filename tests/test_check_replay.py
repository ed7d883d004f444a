"""Replay tokens: a printed token re-runs exactly the interleaving that failed."""

from __future__ import annotations

import pytest

from pvspin.check import token
from pvspin.check.harness import BadInput
from pvspin.check.runner import CheckOptions, run

LOST_WAKEUP = CheckOptions(lock="pvqspinlock", cpus=2, bugs=("pv-wait-no-latch",))


def test_tokens_round_trip_and_reject_another_configuration():
    config = {"lock": "qspinlock", "cpus": 3}
    moves = [0, 8, 17, 1000, 3]
    assert token.decode(config, token.encode(config, moves)) == moves
    with pytest.raises(token.BadToken, match="different configuration"):
        token.decode({"lock": "qspinlock", "cpus": 2}, token.encode(config, moves))
    with pytest.raises(token.BadToken):
        token.decode(config, "@@@")


def test_replaying_a_printed_token_gives_the_same_failure_and_steps():
    found = run(LOST_WAKEUP)
    assert found.result.verdict == "violation"
    replayed = run(CheckOptions(**{**LOST_WAKEUP.__dict__, "replay": found.replay}))
    assert (replayed.result.prop, replayed.result.detail) == (found.result.prop, found.result.detail)
    assert [s.as_dict() for s in replayed.steps] == [s.as_dict() for s in found.steps]


def test_replaying_a_tso_counterexample_reproduces_its_store_buffer_flushes():
    opts = CheckOptions(lock="pvqspinlock", cpus=3, memory_model="tso", bugs=("pv-kick-node-no-barrier",))
    found = run(opts)
    replayed = run(CheckOptions(**{**opts.__dict__, "replay": found.replay}))
    assert replayed.result.prop == "lost-wakeup"
    assert any("store-buffer flush" in s.action for s in replayed.steps)


def test_replay_against_other_options_is_refused_with_one_clear_message():
    found = run(LOST_WAKEUP)
    with pytest.raises(BadInput, match="different configuration"):
        run(CheckOptions(**{**LOST_WAKEUP.__dict__, "cpus": 3, "replay": found.replay}))


def test_a_truncated_token_is_not_a_counterexample():
    found = run(LOST_WAKEUP)
    moves = token.decode(LOST_WAKEUP.fingerprint(), found.replay)
    short = token.encode(LOST_WAKEUP.fingerprint(), moves[:5])
    with pytest.raises(BadInput, match="ends before"):
        run(CheckOptions(**{**LOST_WAKEUP.__dict__, "replay": short}))
