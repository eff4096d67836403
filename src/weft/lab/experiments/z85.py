"""Encoded size: base64 vs Z85 (ZeroMQ's base-85)."""

from __future__ import annotations

import base64
import os

from weft.lab._claim import Claim
from weft.lab._context import Context

CLAIM = Claim(
    name="z85", group="encoding",
    text="Z85 output is smaller than base64 (25% overhead instead of 33%), by at least 5%.",
    source="the ZeroMQ Z85 spec (RFC 32) and the 3.13 base64.z85encode docs",
    baseline="base64", candidate="z85", threshold=1.05, metric="bytes")

_ALPHABET = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#"


def z85encode(data: bytes) -> bytes:
    """Z85 as in ZeroMQ RFC 32; like ``base64.z85encode`` (3.13+), input of any length is
    padded with zero bytes to a multiple of 4 and as many characters are dropped at the end."""
    pad = -len(data) % 4
    padded = data + b"\0" * pad
    out = bytearray()
    for i in range(0, len(padded), 4):
        value = int.from_bytes(padded[i:i + 4], "big")
        chunk = bytearray(5)
        for j in range(4, -1, -1):
            value, digit = divmod(value, 85)
            chunk[j] = _ALPHABET[digit]
        out += chunk
    return bytes(out[:len(out) - pad])


def measure(ctx: Context) -> None:
    n = ctx.pick(full=1 << 20, quick=1 << 18, smoke=1 << 12)
    ctx.param("input_bytes", n)
    encode = getattr(base64, "z85encode", None)
    if encode is None:
        encode = z85encode
        ctx.note("base64.z85encode needs Python 3.13+; Z85 implemented here per RFC 32")
    for _ in range(3):
        data = os.urandom(n)
        ctx.record("base64", [len(base64.b64encode(data))], unit="bytes")
        ctx.record("z85", [len(encode(data))], unit="bytes")
