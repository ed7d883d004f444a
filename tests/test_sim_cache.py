"""The cache-coherence cost model: hits, transfers within and across sockets, serialization."""

import random

from pvspin.sim.cache import CacheModel
from pvspin.sim.config import Costs

COSTS = Costs(transfer_jitter=0)


def model(sockets=(0, 0, 1, 1)):
    return CacheModel(COSTS, random.Random(0), list(sockets))


def test_first_touch_comes_from_memory_then_hits():
    c = model()
    assert c.read(0, 7, 0) == COSTS.memory_fetch
    assert c.read(0, 7, 1000) == 1000 + COSTS.l1_hit


def test_store_to_an_exclusive_line_is_a_hit_and_a_locked_rmw_costs_extra():
    c = model()
    c.write(0, 7, 0, locked=False)
    assert c.write(0, 7, 1000, locked=False) == 1000 + COSTS.store_hit
    assert c.write(0, 7, 2000, locked=True) == 2000 + COSTS.l1_hit + COSTS.locked_rmw


def test_transfer_cost_depends_on_the_socket_of_the_copy():
    c = model()
    c.write(0, 7, 0, locked=False)  # cpu0 (socket 0) owns the line
    assert c.read(1, 7, 1000) == 1000 + COSTS.remote_transfer  # same socket
    c = model()
    c.write(0, 7, 0, locked=False)
    assert c.read(2, 7, 1000) == 1000 + COSTS.cross_socket_transfer  # other socket


def test_write_invalidating_a_far_sharer_pays_the_far_cost():
    c = model()
    c.read(1, 7, 0)
    c.read(3, 7, 1000)  # copies on both sockets
    assert c.write(0, 7, 5000, locked=False) == 5000 + COSTS.cross_socket_transfer
    assert c.read(3, 7, 9000) == 9000 + COSTS.cross_socket_transfer  # its copy was invalidated


def test_transfers_of_one_line_serialize():
    c = model(sockets=(0, 0, 0, 0))
    c.write(0, 7, 0, locked=False)
    first = c.read(1, 7, 1000)
    second = c.read(2, 7, 1000)  # same instant: waits for the first transfer to free the line
    assert first == 1000 + COSTS.remote_transfer
    assert second == 1000 + COSTS.line_occupancy + COSTS.remote_transfer
    other_line = c.read(3, 8, 1000)  # another line does not wait
    assert other_line == 1000 + COSTS.memory_fetch
