"""A Ray worker runs the driver's code or nothing: the digest of the pvspin sources it checks first."""

import pytest

from pvspin import parallel


def test_a_task_runs_where_the_digest_is_the_drivers():
    assert parallel._checked_call(parallel.code_fingerprint(), divmod, 7, 2) == (3, 1)


def test_a_task_refuses_to_run_other_code_than_the_drivers():
    with pytest.raises(parallel.CodeMismatch, match="runs other pvspin code than the driver"):
        parallel._checked_call("0" * 64, divmod, 7, 2)


def test_a_one_byte_edit_to_a_source_file_changes_the_digest(monkeypatch, tmp_path):
    real = parallel.code_fingerprint()
    assert len(real) == 64 and parallel.code_fingerprint() == real
    # a package one byte different (a copy of ours, one file edited) has another digest
    import shutil
    from pathlib import Path

    copy = tmp_path / "pvspin"
    shutil.copytree(Path(parallel.__file__).parent, copy, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "parallel.py").write_bytes((copy / "parallel.py").read_bytes() + b"\n")
    monkeypatch.setattr(parallel, "__file__", str(copy / "parallel.py"))
    monkeypatch.setattr(parallel, "_fingerprint", None)
    edited = parallel.code_fingerprint()
    (copy / "parallel.py").write_bytes((copy / "parallel.py").read_bytes()[:-1])
    monkeypatch.setattr(parallel, "_fingerprint", None)
    assert edited != real and parallel.code_fingerprint() == real
