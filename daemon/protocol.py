"""The wire format: signed multipart messages of a msgpack header and raw pixel frames.

    frame 0  signature  HMAC-SHA256 (32 bytes) over frames 1.. with their lengths
    frame 1  nonce      16 bytes: 8-byte big-endian time in ns, 8 random bytes
    frame 2  header     msgpack map; "type" names the message
    frame 3+ buffers    raw pixel bytes, described by the header

See docs/protocol.md. Standard library and msgpack only.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from collections import OrderedDict
from collections.abc import Sequence

import msgpack

PROTOCOL_VERSION = 1
SIGNATURE_BYTES = 32
NONCE_BYTES = 16
MAX_HEADER_BYTES = 64 * 1024
MAX_SIDE = 8192
SAMPLE_BYTES = {"u8": 1, "u16": 2, "f16": 2, "f32": 4}
ORDERS = ("RGBA", "BGRA")
LAYOUT_FIELDS = ("width", "height", "order", "sample", "stride")
# The largest pixel frame: an 8192 x 8192 RGBA float layer, with room for row padding.
MAX_FRAME_BYTES = MAX_SIDE * MAX_SIDE * 4 * 4 + 64 * MAX_SIDE
# A message older than this, or seen before within it, is a replay.
REPLAY_WINDOW_S = 60.0


class ProtocolError(Exception):
    """A message that is not acceptable; `code` is machine-readable, str() for people."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def _mac(key: bytes, frames: Sequence[bytes | memoryview]) -> bytes:
    mac = hmac.new(key, digestmod=hashlib.sha256)
    for frame in frames:
        view = memoryview(frame)
        mac.update(view.nbytes.to_bytes(8, "big"))  # frame boundaries are signed too
        mac.update(view.cast("B") if view.ndim != 1 or view.format != "B" else view)
    return mac.digest()


def new_nonce() -> bytes:
    return time.time_ns().to_bytes(8, "big") + os.urandom(NONCE_BYTES - 8)


def pack(key: bytes, header: dict, buffers: Sequence[bytes | memoryview] = ()) -> list:
    """The frames of one signed message (buffers are passed through, not copied)."""
    body = [new_nonce(), msgpack.packb(header, use_bin_type=True), *buffers]
    return [_mac(key, body), *body]


class ReplayGuard:
    """Remembers recent nonces; refuses old ones and ones seen before."""

    def __init__(self, window_s: float = REPLAY_WINDOW_S) -> None:
        self.window_ns = int(window_s * 1e9)
        self.seen: OrderedDict[bytes, int] = OrderedDict()

    def admit(self, nonce: bytes) -> bool:
        now = time.time_ns()
        while self.seen and next(iter(self.seen.values())) < now - self.window_ns:
            self.seen.popitem(last=False)
        stamp = int.from_bytes(nonce[:8], "big")
        if abs(now - stamp) > self.window_ns or nonce in self.seen:
            return False
        self.seen[nonce] = stamp
        return True


def verify(key: bytes, frames: Sequence[bytes | memoryview], guard: ReplayGuard) -> None:
    """Check a message's signature and freshness, reading nothing else of it."""
    if len(frames) < 3 or len(frames[0]) != SIGNATURE_BYTES or len(frames[1]) != NONCE_BYTES:
        raise ProtocolError("unsigned", "message is not signed")
    if not hmac.compare_digest(bytes(frames[0]), _mac(key, frames[1:])):
        raise ProtocolError("bad-signature", "message signature does not match")
    if not guard.admit(bytes(frames[1])):
        raise ProtocolError("replayed", "message was replayed or is too old")


def unpack(key: bytes, frames: Sequence[bytes | memoryview],
           guard: ReplayGuard) -> tuple[dict, list]:
    """Verify, then decode: (header, buffers). Raises ProtocolError."""
    verify(key, frames, guard)
    raw = frames[2]
    if len(raw) > MAX_HEADER_BYTES:
        raise ProtocolError("too-large", f"header over {MAX_HEADER_BYTES} bytes")
    try:
        header = msgpack.unpackb(bytes(raw), raw=False)
    except Exception as error:  # msgpack raises several unrelated types
        raise ProtocolError("malformed", f"header is not msgpack: {error}") from None
    if not isinstance(header, dict) or not isinstance(header.get("type"), str):
        raise ProtocolError("malformed", "header must be a map with a string 'type'")
    return header, list(frames[3:])


def check_layout(layout: object) -> dict:
    """Validate a pixel descriptor; returns it with the frame size it implies."""
    if not isinstance(layout, dict):
        raise ProtocolError("malformed", "'pixels' must be a map")
    width, height = layout.get("width"), layout.get("height")
    order, sample = layout.get("order"), layout.get("sample")
    stride = layout.get("stride")
    for name, value in (("width", width), ("height", height), ("stride", stride)):
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ProtocolError("malformed", f"'{name}' must be a positive integer")
    if order not in ORDERS:
        raise ProtocolError("malformed", f"'order' must be one of {', '.join(ORDERS)}")
    if sample not in SAMPLE_BYTES:
        raise ProtocolError("malformed", f"'sample' must be one of {', '.join(SAMPLE_BYTES)}")
    if width > MAX_SIDE or height > MAX_SIDE:
        raise ProtocolError("too-large", f"{width}x{height} pixels: the limit is "
                                         f"{MAX_SIDE} on each side")
    row = width * len(order) * SAMPLE_BYTES[sample]
    if stride < row:
        raise ProtocolError("malformed", f"'stride' {stride} is shorter than a row ({row} bytes)")
    frame_bytes = stride * height
    if frame_bytes > MAX_FRAME_BYTES:
        raise ProtocolError("too-large", f"pixel frame of {frame_bytes} bytes is over the "
                                         f"{MAX_FRAME_BYTES}-byte limit")
    return {"width": width, "height": height, "order": order, "sample": sample,
            "stride": stride, "frame_bytes": frame_bytes}


def layout_for(width: int, height: int, order: str = "RGBA", sample: str = "u8",
               stride: int | None = None) -> dict:
    """A pixel descriptor for tightly packed rows unless `stride` says otherwise."""
    row = width * len(order) * SAMPLE_BYTES.get(sample, 1)
    return {"width": width, "height": height, "order": order, "sample": sample,
            "stride": stride or row}
