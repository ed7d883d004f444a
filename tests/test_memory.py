"""Guest memory: little-endian mixed-size aliasing, symbolic names, allocation."""

import pytest

from pvspin.machine.memory import CACHE_LINE, Layout, Memory

QSPINLOCK = Layout(
    "qspinlock",
    4,
    [("val", 0, 4), ("locked", 0, 1), ("pending", 1, 1), ("locked_pending", 0, 2), ("tail", 2, 2)],
    align=4,
)
NODE = Layout("qnode", 16, [("next", 0, 8), ("locked", 8, 4), ("count", 12, 4)])


def test_sixteen_bit_write_to_upper_half_is_seen_by_word_read():
    mem = Memory()
    lock = mem.alloc(QSPINLOCK, "lock0")
    mem.write(lock.tail.addr, 2, 0x0004)
    mem.write(lock.locked.addr, 1, 1)
    assert mem.read(lock.val.addr, 4) == 0x0004_0001
    mem.write(lock.pending.addr, 1, 1)
    assert mem.read(lock.val.addr, 4) == 0x0004_0101
    assert mem.read(lock.locked_pending.addr, 2) == 0x0101


def test_word_write_is_seen_by_byte_and_halfword_reads_little_endian():
    mem = Memory()
    lock = mem.alloc(QSPINLOCK, "lock0")
    mem.write(lock.val.addr, 4, 0xAABB_CCDD)
    assert mem.read(lock.locked.addr, 1) == 0xDD
    assert mem.read(lock.pending.addr, 1) == 0xCC
    assert mem.read(lock.tail.addr, 2) == 0xAABB


def test_writes_are_truncated_to_their_size():
    mem = Memory()
    lock = mem.alloc(QSPINLOCK, "lock0")
    mem.write(lock.locked.addr, 1, 0x1FF)
    assert mem.read(lock.val.addr, 4) == 0xFF


def test_symbolic_names_for_fields_and_arrays():
    mem = Memory()
    lock = mem.alloc(QSPINLOCK, "lock0", align=CACHE_LINE)
    qnodes = mem.alloc_percpu(NODE, "qnodes", ncpus=4, count=4)
    assert mem.name_of(lock.locked.addr, 1) == "lock0.locked"
    assert mem.name_of(lock.val.addr, 4) == "lock0.val"
    assert mem.name_of(lock.tail.addr, 2) == "lock0.tail"
    assert mem.name_of(qnodes[2][1].next.addr, 8) == "qnodes[2][1].next"
    assert repr(qnodes[3][0].count) == "qnodes[3][0].count"
    assert mem.name_of(0) == "NULL"


def test_percpu_copies_start_on_their_own_cache_line():
    mem = Memory()
    qnodes = mem.alloc_percpu(NODE, "qnodes", ncpus=3, count=1)
    lines = [cpu[0].addr // CACHE_LINE for cpu in qnodes]
    assert len(set(lines)) == 3
    assert all(cpu[0].addr % CACHE_LINE == 0 for cpu in qnodes)


def test_object_at_returns_the_view_for_a_stored_pointer():
    mem = Memory()
    qnodes = mem.alloc_percpu(NODE, "qnodes", ncpus=2, count=4)
    node = qnodes[1][2]
    assert mem.object_at(node.addr) is node
    assert mem.describe_value(node.addr) == "&qnodes[1][2]"
    with pytest.raises(KeyError):
        mem.object_at(node.addr + 1)


def test_misaligned_field_is_refused():
    bad = Layout("bad", 8, [("x", 1, 4)])
    with pytest.raises(ValueError, match="not aligned"):
        Memory().alloc(bad, "b")


def test_snapshot_and_restore_round_trip():
    mem = Memory()
    lock = mem.alloc(QSPINLOCK, "lock0")
    snap = mem.snapshot()
    mem.write(lock.val.addr, 4, 7)
    mem.restore(snap)
    assert mem.read(lock.val.addr, 4) == 0
