import hashlib
import hmac
import time

import msgpack
import pytest

from glaze.daemon import protocol
from glaze.daemon.protocol import (
    CHUNK_BYTES,
    CLIENT,
    DAEMON,
    MAX_FRAME_BYTES,
    ProtocolError,
    Session,
    check_layout,
    layout_for,
)

KEY = b"k" * 32


def client(**options) -> Session:
    return Session(KEY, CLIENT, **options)


def daemon(**options) -> Session:
    return Session(KEY, DAEMON, **options)


def test_signed_message_round_trips_with_zero_copy_buffers():
    pixels = bytearray(range(256)) * 4
    frames = client().pack({"type": "submit", "n": 1}, [pixels])
    assert frames[3].obj is pixels  # a view of the caller's buffer, not a copy
    header, buffers = daemon().unpack([bytes(f) for f in frames])
    assert header == {"type": "submit", "n": 1} and bytes(buffers[0]) == bytes(pixels)


@pytest.mark.parametrize("sizes", [[0], [1], [CHUNK_BYTES], [CHUNK_BYTES + 1, 3],
                                   [2 * CHUNK_BYTES + 5, 0, CHUNK_BYTES - 1]])
def test_buffers_travel_in_chunks_no_frame_over_the_limit(sizes):
    buffers = [bytes([index]) * size for index, size in enumerate(sizes, 1)]
    frames = client().pack({"type": "echo"}, buffers)
    assert msgpack.unpackb(frames[2])["buffer_bytes"] == sizes
    assert len(frames) == 3 + sum(-(-size // CHUNK_BYTES) for size in sizes)
    assert max(len(frame) for frame in frames) <= MAX_FRAME_BYTES
    header, received = daemon().unpack(frames)
    assert header == {"type": "echo"} and [bytes(b) for b in received] == buffers


def signed(header: dict, chunks: list) -> list:
    """A message signed as a client would sign it, with the chunks given."""
    body = [time.time_ns().to_bytes(8, "big") + b"12345678", msgpack.packb(header), *chunks]
    return [documented_signature(KEY, body), *body]


@pytest.mark.parametrize("sizes, chunks", [
    ([10], [b"x" * 4, b"x" * 6]),  # the same bytes in chunks other than CHUNK_BYTES
    ([10], [b"x" * 10, b""]),  # a frame more than the sizes need
    ([CHUNK_BYTES + 1], [b"x" * (CHUNK_BYTES + 1)]),  # a frame fewer
    ([5], [b"x" * 4]),  # a short buffer
    ("5", [b"x" * 5]), ([-1], []), ([True], [b"x"]),  # sizes that are not sizes
])
def test_buffers_not_chunked_as_declared_are_refused(sizes, chunks):
    with pytest.raises(ProtocolError) as raised:
        daemon().unpack(signed({"type": "echo", "buffer_bytes": sizes, "ref": 7}, chunks))
    assert raised.value.code == "malformed"
    assert raised.value.request["ref"] == 7  # so that the error answer names the request


def documented_signature(key: bytes, body: list, sender: bytes = CLIENT) -> bytes:
    """docs/protocol.md's signing, written out apart from the implementation."""
    mac = hmac.new(key, digestmod=hashlib.sha256)
    mac.update(sender)
    for frame in body:
        mac.update(len(frame).to_bytes(8, "big") + bytes(frame))
    return mac.digest()


def test_the_wire_format_is_the_documented_one():
    frames = client(session_id="s1").pack({"type": "ping"}, [b"abc", b""])
    signature, nonce, header, *buffers = frames
    assert signature == documented_signature(KEY, frames[1:]) and len(signature) == 32
    assert len(nonce) == 16 and abs(int.from_bytes(nonce[:8], "big") - time.time_ns()) < 1e10
    assert msgpack.unpackb(header) == {"type": "ping", "session": "s1",
                                       "buffer_bytes": [3, 0]}
    assert buffers == [b"abc"]  # an empty buffer takes no frame
    body = [time.time_ns().to_bytes(8, "big") + b"12345678",
            msgpack.packb({"type": "x", "buffer_bytes": [6]}),
            b"pixels"]  # made by hand, as another implementation would
    header, buffers = client().unpack([documented_signature(KEY, body, DAEMON), *body])
    assert header == {"type": "x"} and bytes(buffers[0]) == b"pixels"


@pytest.mark.parametrize("tamper", ["signature", "nonce", "header", "pixels", "drop-frame",
                                    "split-frame"])
def test_any_change_to_any_frame_breaks_the_signature(tamper):
    frames = [bytearray(f) for f in client().pack({"type": "x"}, [b"abcdef"])]
    if tamper == "drop-frame":
        frames.pop()
    elif tamper == "split-frame":  # same bytes, other frame boundaries
        frames[3:] = [frames[3][:3], frames[3][3:]]
    else:
        index = ["signature", "nonce", "header", "pixels"].index(tamper)
        frames[index][-1] ^= 1
    with pytest.raises(ProtocolError) as raised:
        daemon().unpack(frames)
    assert raised.value.code == "bad-signature"


def test_wrong_key_unsigned_and_replayed_messages():
    receiver = daemon()
    frames = client().pack({"type": "x"})
    with pytest.raises(ProtocolError, match="does not match"):
        Session(b"other" * 7, DAEMON).unpack(frames)
    with pytest.raises(ProtocolError, match="not signed"):
        receiver.unpack([msgpack.packb({"type": "x"})])
    receiver.unpack(frames)
    with pytest.raises(ProtocolError, match="replayed"):
        receiver.unpack(frames)


def test_a_reflected_message_is_refused():
    sender, other_client, the_daemon = client(), client(), daemon()
    request = sender.pack({"type": "status", "ref": "r"})
    for wrong_end in (sender, other_client):  # a request sent back, or on to another client
        with pytest.raises(ProtocolError) as raised:
            wrong_end.unpack(request)
        assert raised.value.code == "bad-signature"
    assert the_daemon.unpack(request)[0]["ref"] == "r"  # the daemon takes it
    answer = the_daemon.pack({"type": "status", "ref": "r"})
    for wrong_end in (the_daemon, daemon()):  # an answer sent back to a daemon
        with pytest.raises(ProtocolError) as raised:
            wrong_end.unpack(answer)
        assert raised.value.code == "bad-signature"
    assert other_client.unpack(answer)[0]["ref"] == "r"


def test_a_client_session_stamps_its_id_and_a_short_key_is_refused():
    frames = client(session_id="abc").pack({"type": "ping", "session": "forged"})
    assert daemon().unpack(frames)[0] == {"type": "ping", "session": "abc"}
    assert "session" not in daemon().unpack(client().pack({"type": "ping"}))[0]
    with pytest.raises(ValueError, match="16 bytes"):
        Session(b"short", CLIENT)
    with pytest.raises(ValueError, match="role"):
        Session(KEY, b"peer")


def test_old_messages_are_refused(monkeypatch):
    frames = client().pack({"type": "x"})
    later = time.time_ns() + int(2 * protocol.REPLAY_WINDOW_S * 1e9)
    monkeypatch.setattr(protocol.time, "time_ns", lambda: later)
    with pytest.raises(ProtocolError, match="replayed or is too old"):
        daemon().unpack(frames)


def test_malformed_headers():
    sender = client()
    for header in (b"\xc1", msgpack.packb([1, 2]), msgpack.packb({"type": 3}),
                   b"\x00" * (protocol.MAX_HEADER_BYTES + 1)):
        frames = sender.pack({})
        frames[2] = header
        frames[0] = sender.sign(frames[1:])
        with pytest.raises(ProtocolError) as raised:
            daemon().unpack(frames)
        assert raised.value.code in ("malformed", "too-large")


def test_layout_checks():
    assert check_layout(layout_for(4, 3, "BGRA", "u16"))["frame_bytes"] == 4 * 3 * 8
    assert check_layout(layout_for(4, 3, stride=20))["frame_bytes"] == 60
    bad = [
        ({**layout_for(4, 3), "width": 0}, "malformed"),
        ({**layout_for(4, 3), "width": True}, "malformed"),
        ({**layout_for(4, 3), "order": "ARGB"}, "malformed"),
        ({**layout_for(4, 3), "sample": "f64"}, "malformed"),
        (layout_for(4, 3, stride=15), "malformed"),
        (layout_for(9000, 3), "too-large"),
        (layout_for(8192, 8192, sample="f32", stride=8192 * 16 * 3), "too-large"),
        ("not a map", "malformed"),
    ]
    for layout, code in bad:
        with pytest.raises(ProtocolError) as raised:
            check_layout(layout)
        assert raised.value.code == code, layout
