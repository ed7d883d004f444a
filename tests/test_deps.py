"""Dependency-carrying values: arithmetic and comparisons keep the reads they came from."""

from __future__ import annotations

import pytest

from pvspin.machine import deps
from pvspin.machine.deps import Dep, deps_of, with_deps
from pvspin.machine.memory import Layout, Memory

NODE = Layout("node", 16, [("next", 0, 8), ("locked", 8, 4)])


@pytest.fixture
def branches(monkeypatch):
    seen = []

    class Observer:
        def branch(self, mask):
            seen.append(mask)

    monkeypatch.setattr(deps, "observer", Observer())
    return seen


def test_arithmetic_unions_the_sources():
    a, b = Dep(6, 0b01), Dep(3, 0b10)
    assert (a + b, deps_of(a + b)) == (9, 0b11)
    assert (a ^ a, deps_of(a ^ a)) == (0, 0b01)  # a false dependency is still a dependency
    assert deps_of((a >> 1) & 0xFF) == 0b01
    assert deps_of(7 - a) == 0b01 and 7 - a == 1
    assert deps_of(-a) == 0b01 and deps_of(~b) == 0b10


def test_plain_values_have_none():
    assert deps_of(5) == 0 and with_deps(5, 0) == 5 and type(with_deps(5, 0)) is int
    assert deps_of(with_deps(5, 0b100)) == 0b100


def test_testing_a_value_is_a_branch_on_its_reads(branches):
    v = Dep(0, 0b101)
    if v == 0:
        pass
    while v:
        pass
    assert branches == [0b101, 0b101]


def test_plain_branches_are_not_reported(branches):
    if Dep(1, 0):
        pass
    assert branches == []


def test_a_loaded_pointer_gives_its_object_an_address_dependency():
    mem = Memory()
    node = mem.alloc(NODE, "node")
    view = mem.object_at(Dep(node.addr, 0b1000))
    assert view.name == "node" and view.locked.deps == 0b1000
    assert mem.object_at(node.addr) is node  # without dependencies, the allocated view itself
    ref = mem.ref_at(Dep(node.addr + 8, 0b10), 4)
    assert ref.name == "node.locked" and ref.deps == 0b10
