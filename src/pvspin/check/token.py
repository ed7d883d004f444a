"""Replay tokens: a counterexample's moves as base64 of varints, tied to a configuration.

The token starts with a CRC-32 fingerprint of the configuration that produced it (lock,
CPUs, acquisitions, memory model, bugs, budgets), so replaying it against another
configuration fails with a clear message instead of running a different interleaving.
"""

from __future__ import annotations

import base64
import binascii
import zlib


class BadToken(ValueError):
    pass


def fingerprint(config: dict) -> int:
    text = ";".join(f"{k}={config[k]}" for k in sorted(config))
    return zlib.crc32(text.encode())


def _varint(n: int, out: bytearray) -> None:
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return


def encode(config: dict, moves: list[int], packed: bool = False) -> str:
    """``packed`` deflates the moves: a graph search's path is long and mostly zeros."""
    out = bytearray()
    _varint(fingerprint(config), out)
    body = bytearray()
    for m in moves:
        _varint(m, body)
    out += zlib.compress(bytes(body), 9) if packed else body
    return base64.urlsafe_b64encode(bytes(out)).decode().rstrip("=")


def decode(config: dict, token: str, packed: bool = False) -> list[int]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        raise BadToken(f"--replay {token!r}: not a replay token") from None
    if packed:
        head = next((i for i, byte in enumerate(raw) if not byte & 0x80), len(raw)) + 1
        try:
            raw = raw[:head] + zlib.decompress(raw[head:])
        except zlib.error:
            raise BadToken(f"--replay {token!r}: not a replay token of the execution-graph checker") from None
    values = []
    n = shift = 0
    for byte in raw:
        n |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            values.append(n)
            n = shift = 0
    if shift or not values:
        raise BadToken(f"--replay {token!r}: truncated token")
    if values[0] != fingerprint(config):
        raise BadToken(f"--replay {token!r}: recorded for a different configuration "
                       "(use the same --lock, --cpus, --acquisitions, --memory-model, --bug and budgets)")
    return values[1:]
