"""The wire format: signed multipart messages of a msgpack header and raw pixel frames.

    frame 0  signature  HMAC-SHA256 (32 bytes) over the sender's role and frames 1.. with
                        their lengths
    frame 1  nonce      16 bytes: 8-byte big-endian time in ns, 8 random bytes
    frame 2  header     msgpack map; "type" names the message
    frame 3+ buffers    raw pixel bytes, each buffer in chunks of CHUNK_BYTES (the last
                        shorter); the header's "buffer_bytes" lists the buffers' sizes

A Session signs, verifies and guards against replays for one end of the conversation.
See docs/protocol.md. Standard library and msgpack only.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence

import msgpack

PROTOCOL_VERSION = 4  # 2: the sender's role is signed; 3: CURVE transport; 4: chunked buffers
CLIENT, DAEMON = b"client", b"daemon"  # who signs a message: requests and answers differ
SIGNATURE_BYTES = 32
NONCE_BYTES = 16
MAX_HEADER_BYTES = 64 * 1024
MAX_SIDE = 8192
SAMPLE_BYTES = {"u8": 1, "u16": 2, "f16": 2, "f32": 4}
ORDERS = ("RGBA", "BGRA")
LAYOUT_FIELDS = ("width", "height", "order", "sample", "stride")
# The largest pixel buffer: an 8192 x 8192 RGBA float layer, with room for row padding.
MAX_LAYER_BYTES = MAX_SIDE * MAX_SIDE * 4 * 4 + 64 * MAX_SIDE
# Buffers travel in chunks, so that no frame is larger than this: a receiver's frame limit
# (ZMQ_MAXMSGSIZE) is what a peer can make it hold before it has authenticated.
CHUNK_BYTES = 256 * 1024
# ZeroMQ applies the limit to the frame as it is on the wire: CURVE adds its command name,
# nonce and MAC (about 40 bytes) to each frame it encrypts.
MAX_FRAME_BYTES = max(CHUNK_BYTES, MAX_HEADER_BYTES) + 1024
BUFFER_SIZES = "buffer_bytes"  # the header field listing the buffers' sizes
# A message older than this, or seen before within it, is a replay.
REPLAY_WINDOW_S = 60.0


class ProtocolError(Exception):
    """A message that is not acceptable; `code` is machine-readable, str() for people."""

    def __init__(self, code: str, message: str, request: dict | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.request = request or {}  # the header, where it was read: answers echo its ref


def _mac(key: bytes, sender: bytes, frames: Sequence[bytes | memoryview]) -> bytes:
    mac = hmac.new(key, digestmod=hashlib.sha256)
    mac.update(sender)  # a daemon's answer never verifies as a client's request, nor back
    for frame in frames:
        view = memoryview(frame)
        mac.update(view.nbytes.to_bytes(8, "big"))  # frame boundaries are signed too
        mac.update(view.cast("B") if view.ndim != 1 or view.format != "B" else view)
    return mac.digest()


def new_nonce() -> bytes:
    return time.time_ns().to_bytes(8, "big") + os.urandom(NONCE_BYTES - 8)


class ReplayGuard:
    """Remembers recent nonces; refuses old ones and ones seen before. Not thread-safe on
    its own: a Session serializes its use."""

    def __init__(self, window_s: float = REPLAY_WINDOW_S) -> None:
        self.window_ns = int(window_s * 1e9)
        self.seen: OrderedDict[bytes, int] = OrderedDict()

    def admit(self, nonce: bytes) -> bool:
        """Whether a received nonce is fresh; if so, it is remembered."""
        now = self._forget_old()
        stamp = int.from_bytes(nonce[:8], "big")
        if abs(now - stamp) > self.window_ns or nonce in self.seen:
            return False
        self.seen[nonce] = stamp
        return True

    def remember(self, nonce: bytes) -> None:
        """Record a nonce without checking it (one this end has just made)."""
        self._forget_old()
        self.seen[nonce] = int.from_bytes(nonce[:8], "big")

    def _forget_old(self) -> int:
        now = time.time_ns()
        while self.seen and next(iter(self.seen.values())) < now - self.window_ns:
            self.seen.popitem(last=False)
        return now


class Session:
    """One end of a signed conversation, as jupyter_client's Session is: it owns the key,
    signs what this end sends and verifies what it receives, refusing replays. Callers pass
    it headers and buffers, never the key.

    Direction: `role` (CLIENT or DAEMON) is signed into every message this end sends, and
    what it receives must be signed as the other role, so that a message reflected to the
    other clients or back to the daemon never verifies; the nonces of the messages this end
    signs also go into its own replay guard. A client's session also stamps its session id
    (the header's `session`) on everything it sends.
    Thread-safe: a client and its heartbeat thread share one session.
    """

    def __init__(self, key: bytes, role: bytes, session_id: str | None = None,
                 window_s: float = REPLAY_WINDOW_S) -> None:
        if len(key) < 16:
            raise ValueError("a session key must have at least 16 bytes")
        if role not in (CLIENT, DAEMON):
            raise ValueError(f"a session's role is {CLIENT!r} or {DAEMON!r}, not {role!r}")
        self._key = key
        self.role = role
        self._peer = DAEMON if role == CLIENT else CLIENT
        self.session_id = session_id
        self._guard = ReplayGuard(window_s)
        self._lock = threading.Lock()  # the guard, between a client's two threads

    def sign(self, body: Sequence[bytes | memoryview]) -> bytes:
        """This end's signature of frames 1.. of a message (nonce, header, buffers)."""
        return _mac(self._key, self.role, body)

    def pack(self, header: dict, buffers: Sequence[bytes | memoryview] = ()) -> list:
        """The frames of one signed message (buffers are sliced into chunks, not copied)."""
        if self.session_id is not None:
            header = {**header, "session": self.session_id}
        views = [memoryview(buffer).cast("B") for buffer in buffers]
        if views:
            header = {**header, BUFFER_SIZES: [view.nbytes for view in views]}
        chunks = [view[start:start + CHUNK_BYTES] for view in views
                  for start in range(0, view.nbytes, CHUNK_BYTES)]
        nonce = new_nonce()
        body = [nonce, msgpack.packb(header, use_bin_type=True), *chunks]
        signature = self.sign(body)
        with self._lock:
            self._guard.remember(nonce)
        return [signature, *body]

    def verify(self, frames: Sequence[bytes | memoryview]) -> None:
        """Check a message's signature and freshness, reading nothing else of it."""
        if (len(frames) < 3 or len(frames[0]) != SIGNATURE_BYTES
                or len(frames[1]) != NONCE_BYTES):
            raise ProtocolError("unsigned", "message is not signed")
        if not hmac.compare_digest(bytes(frames[0]), _mac(self._key, self._peer, frames[1:])):
            raise ProtocolError("bad-signature", "message signature does not match")
        with self._lock:
            fresh = self._guard.admit(bytes(frames[1]))
        if not fresh:
            raise ProtocolError("replayed", "message was replayed or is too old")

    def unpack(self, frames: Sequence[bytes | memoryview]) -> tuple[dict, list]:
        """Verify, then decode: (header, buffers). Raises ProtocolError."""
        self.verify(frames)
        raw = frames[2]
        if len(raw) > MAX_HEADER_BYTES:
            raise ProtocolError("too-large", f"header over {MAX_HEADER_BYTES} bytes")
        try:
            header = msgpack.unpackb(bytes(raw), raw=False)
        except Exception as error:  # msgpack raises several unrelated types
            raise ProtocolError("malformed", f"header is not msgpack: {error}") from None
        if not isinstance(header, dict) or not isinstance(header.get("type"), str):
            raise ProtocolError("malformed", "header must be a map with a string 'type'")
        try:
            return header, _assemble(header.pop(BUFFER_SIZES, []), frames[3:])
        except ProtocolError as error:
            raise ProtocolError(error.code, str(error), header) from None


def _assemble(sizes: object, chunks: Sequence[bytes | memoryview]) -> list:
    """The buffers of `sizes` bytes that `chunks` carry, CHUNK_BYTES a chunk (the last of
    each buffer shorter): a one-chunk buffer as it came, longer ones joined."""
    if not isinstance(sizes, list) or not all(
            isinstance(size, int) and not isinstance(size, bool) and size >= 0
            for size in sizes):
        raise ProtocolError("malformed", f"'{BUFFER_SIZES}' must be a list of sizes")
    counts = [-(-size // CHUNK_BYTES) for size in sizes]
    if sum(counts) != len(chunks):
        raise ProtocolError("malformed", f"{len(chunks)} buffer frames for buffers of "
                                         f"{sizes} bytes")
    buffers, start = [], 0
    for size, count in zip(sizes, counts, strict=True):
        parts = chunks[start:start + count]
        start += count
        if sum(len(part) for part in parts) != size or any(
                len(part) != CHUNK_BYTES for part in parts[:-1]):
            raise ProtocolError("malformed", f"a buffer of {size} bytes must come in chunks "
                                             f"of {CHUNK_BYTES} bytes")
        buffers.append(parts[0] if count == 1 else b"".join(parts) if count else b"")
    return buffers


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
    if frame_bytes > MAX_LAYER_BYTES:
        raise ProtocolError("too-large", f"pixel buffer of {frame_bytes} bytes is over the "
                                         f"{MAX_LAYER_BYTES}-byte limit")
    return {"width": width, "height": height, "order": order, "sample": sample,
            "stride": stride, "frame_bytes": frame_bytes}


def layout_for(width: int, height: int, order: str = "RGBA", sample: str = "u8",
               stride: int | None = None) -> dict:
    """A pixel descriptor for tightly packed rows unless `stride` says otherwise."""
    row = width * len(order) * SAMPLE_BYTES.get(sample, 1)
    return {"width": width, "height": height, "order": order, "sample": sample,
            "stride": stride or row}
