"""`pvspin patch`: the table and JSON of patch sites, checked by decoding the bytes with capstone."""

import json

import pytest
from typer.testing import CliRunner

from pvspin.cli import app
from pvspin.kernel.paravirt import SYMBOLS
from pvspin.x86 import disasm


def patch(*args):
    return CliRunner().invoke(app, ["patch", *args], env={"COLUMNS": "200"})  # rich: no folding


def sites(*args) -> dict[str, dict]:
    result = patch(*args, "--json")
    assert result.exit_code == 0, result.stderr
    return {row["site"]: row for row in json.loads(result.stdout)}


def decoded(row, key="after"):
    return [(m, o) for _, m, o in disasm.instructions(bytes.fromhex(row[key]), int(row["address"], 16))]


def test_bare_metal_unlock_is_the_inline_store_then_nops():
    unlock = sites("--host", "baremetal")["queued_spin_unlock"]
    insns = decoded(unlock)
    assert insns[0] == ("mov", "byte ptr [rdi], 0")
    assert {m for m, _ in insns[1:]} == {"nop"} and len(bytes.fromhex(unlock["after"])) == 7
    assert decoded(unlock, "before") == [("call", f"qword ptr [{SYMBOLS['pv_lock_ops'] + 8:#x}]")]


def test_bare_metal_other_sites():
    rows = sites("--host", "baremetal")
    assert [m for m, _ in decoded(rows["pv_wait"])] == ["nop"]
    assert decoded(rows["vcpu_is_preempted"])[0] == ("xor", "eax, eax")
    assert decoded(rows["queued_spin_lock_slowpath"])[0] == ("call", hex(SYMBOLS["native_queued_spin_lock_slowpath"]))


def test_kvm_unlock_calls_the_pv_unlock_thunk():
    rows = sites("--host", "kvm")
    assert decoded(rows["queued_spin_unlock"])[0] == ("call", hex(SYMBOLS["__raw_callee_save___pv_queued_spin_unlock"]))
    assert rows["queued_spin_unlock"]["after_asm"].endswith("<__raw_callee_save___pv_queued_spin_unlock>; nop")
    assert decoded(rows["pv_kick"])[0] == ("call", hex(SYMBOLS["kvm_kick_cpu"]))


def test_no_patching_keeps_every_indirect_call():
    rows = sites("--host", "kvm", "--no-patching")
    assert len(rows) == 5
    assert all(
        r["after"] == r["before"] and decoded(r)[0][0] == "call" and "ptr [" in decoded(r)[0][1] for r in rows.values()
    )


def test_no_paravirt_kernel_has_no_sites():
    assert sites("--kernel", "no-paravirt") == {}
    assert "no patch sites" in patch("--kernel", "no-paravirt").stdout


def test_table_shows_the_instructions():
    result = patch("--host", "baremetal")
    assert result.exit_code == 0
    assert "runs qspinlock" in result.stdout and "mov byte ptr [rdi], 0" in result.stdout


@pytest.mark.parametrize(
    "args,named",
    [
        (["--host", "xen"], "'xen'"),
        (["--kernel", "paravirtual"], "'paravirtual'"),
        (["--lock", "pvqspinlock"], "'pvqspinlock'"),
        (["--patch-era", "2015"], "'2015'"),
        (["--cpus", "many"], "'many'"),
        (["--cpus", "0"], "0"),
    ],
)
def test_bad_values_get_one_line_and_exit_2(args, named):
    result = patch(*args)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and named in lines[0]
    assert "Traceback" not in result.stderr + result.stdout



def test_compare_eras_shows_each_site_in_every_era():
    result = patch("--host", "kvm", "--compare-eras", "--json")
    assert result.exit_code == 0, result.stderr
    tables = json.loads(result.stdout)
    assert list(tables) == ["4.2", "fixed", "6.8", "newest"]
    unlock = {era: next(r for r in rows if r["site"] == "queued_spin_unlock") for era, rows in tables.items()}
    assert unlock["4.2"]["after"] == unlock["4.2"]["before"]  # callee-save: refused by the clobber check
    assert unlock["4.2"]["op"] == "pv_lock_ops.queued_spin_unlock"
    assert [m for m, _ in decoded(unlock["fixed"])] == ["call", "nop"] and len(unlock["fixed"]["after"].split()) == 7
    assert unlock["6.8"]["before"].startswith("ff 15") and unlock["6.8"]["after"].endswith(" 90")
    assert len(unlock["newest"]["before"].split()) == 5 and unlock["newest"]["op"] == "static_call(queued_spin_unlock)"
    for era in ("fixed", "6.8", "newest"):
        assert "__raw_callee_save___pv_queued_spin_unlock" in unlock[era]["after_asm"]


def test_compare_eras_table_names_the_eras():
    result = patch("--compare-eras")
    assert result.exit_code == 0, result.stderr
    assert "each call site in each era" in result.stdout
    for era in ("4.2", "fixed", "6.8", "newest"):
        assert f" {era} " in result.stdout
    assert "xor rax, rax" in result.stdout and "xor eax, eax" in result.stdout


def test_compare_eras_refuses_an_era_or_no_patching():
    for extra in (["--patch-era", "6.8"], ["--no-patching"]):
        result = patch("--compare-eras", *extra)
        assert result.exit_code == 2 and "--compare-eras boots every era" in result.stderr
