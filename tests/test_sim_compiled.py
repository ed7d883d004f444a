"""The optional compiled engine (``make compile``): a compiled module never outlives its source."""

import hashlib

import pytest

from pvspin.sim import _compiled


def fake_package(tmp_path, monkeypatch, source: str, recorded: str | None):
    """A package directory with ``guestcpu.py``, a compiled ``guestcpu`` beside it and a stamp."""
    (tmp_path / "guestcpu.py").write_text(source)
    (tmp_path / "guestcpu.cpython-311-x86_64-linux-gnu.so").write_bytes(b"")
    if recorded is not None:
        digest = hashlib.sha256(recorded.encode()).hexdigest()
        (tmp_path / ".compiled").write_text(f"{digest}  guestcpu.py\n")
    monkeypatch.setattr(_compiled, "HERE", tmp_path)
    monkeypatch.setattr(_compiled, "STAMP", tmp_path / ".compiled")


def test_a_compiled_module_of_the_current_source_is_accepted(tmp_path, monkeypatch):
    fake_package(tmp_path, monkeypatch, "x = 1\n", recorded="x = 1\n")
    assert _compiled.compiled() == ["guestcpu"]
    _compiled.check()


@pytest.mark.parametrize("recorded", ["x = 1\n", None])
def test_a_compiled_module_of_another_source_is_refused(tmp_path, monkeypatch, recorded):
    fake_package(tmp_path, monkeypatch, "x = 2\n", recorded=recorded)
    with pytest.raises(ImportError, match="make compile"):
        _compiled.check()


def test_without_compiled_modules_there_is_nothing_to_check(tmp_path, monkeypatch):
    monkeypatch.setattr(_compiled, "HERE", tmp_path)
    assert _compiled.compiled() == []
    _compiled.check()
