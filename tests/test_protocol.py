import hashlib
import hmac
import time

import msgpack
import pytest

from glaze.daemon import protocol
from glaze.daemon.protocol import ProtocolError, Session, check_layout, layout_for

KEY = b"k" * 32


def test_signed_message_round_trips_with_zero_copy_buffers():
    pixels = memoryview(bytearray(range(256)) * 4)
    frames = Session(KEY).pack({"type": "submit", "n": 1}, [pixels])
    assert frames[3] is pixels  # passed through, not copied
    header, buffers = Session(KEY).unpack([bytes(f) for f in frames])
    assert header == {"type": "submit", "n": 1} and bytes(buffers[0]) == bytes(pixels)


def documented_signature(key: bytes, body: list) -> bytes:
    """docs/protocol.md's signing, written out apart from the implementation."""
    mac = hmac.new(key, digestmod=hashlib.sha256)
    for frame in body:
        mac.update(len(frame).to_bytes(8, "big") + bytes(frame))
    return mac.digest()


def test_the_wire_format_is_the_documented_one():
    frames = Session(KEY, session_id="s1").pack({"type": "ping"}, [b"abc", b""])
    signature, nonce, header, *buffers = frames
    assert signature == documented_signature(KEY, frames[1:]) and len(signature) == 32
    assert len(nonce) == 16 and abs(int.from_bytes(nonce[:8], "big") - time.time_ns()) < 1e10
    assert msgpack.unpackb(header) == {"type": "ping", "session": "s1"}
    assert buffers == [b"abc", b""]
    body = [time.time_ns().to_bytes(8, "big") + b"12345678", msgpack.packb({"type": "x"}),
            b"pixels"]  # made by hand, as another implementation would
    header, buffers = Session(KEY).unpack([documented_signature(KEY, body), *body])
    assert header == {"type": "x"} and bytes(buffers[0]) == b"pixels"


@pytest.mark.parametrize("tamper", ["signature", "nonce", "header", "pixels", "drop-frame",
                                    "split-frame"])
def test_any_change_to_any_frame_breaks_the_signature(tamper):
    frames = [bytearray(f) for f in Session(KEY).pack({"type": "x"}, [b"abcdef"])]
    if tamper == "drop-frame":
        frames.pop()
    elif tamper == "split-frame":  # same bytes, other frame boundaries
        frames[3:] = [frames[3][:3], frames[3][3:]]
    else:
        index = ["signature", "nonce", "header", "pixels"].index(tamper)
        frames[index][-1] ^= 1
    with pytest.raises(ProtocolError) as raised:
        Session(KEY).unpack(frames)
    assert raised.value.code == "bad-signature"


def test_wrong_key_unsigned_and_replayed_messages():
    receiver = Session(KEY)
    frames = Session(KEY).pack({"type": "x"})
    with pytest.raises(ProtocolError, match="does not match"):
        Session(b"other" * 7).unpack(frames)
    with pytest.raises(ProtocolError, match="not signed"):
        receiver.unpack([msgpack.packb({"type": "x"})])
    receiver.unpack(frames)
    with pytest.raises(ProtocolError, match="replayed"):
        receiver.unpack(frames)


def test_a_message_reflected_to_its_sender_is_refused():
    sender = Session(KEY)
    frames = sender.pack({"type": "status", "ref": "r"})
    with pytest.raises(ProtocolError) as raised:
        sender.unpack(frames)  # our own request, sent back to us as if it were an answer
    assert raised.value.code == "replayed"
    assert Session(KEY).unpack(frames)[0]["ref"] == "r"  # the other end takes it


def test_a_client_session_stamps_its_id_and_a_short_key_is_refused():
    frames = Session(KEY, session_id="abc").pack({"type": "ping", "session": "forged"})
    assert Session(KEY).unpack(frames)[0] == {"type": "ping", "session": "abc"}
    assert "session" not in Session(KEY).unpack(Session(KEY).pack({"type": "ping"}))[0]
    with pytest.raises(ValueError, match="16 bytes"):
        Session(b"short")


def test_old_messages_are_refused(monkeypatch):
    frames = Session(KEY).pack({"type": "x"})
    later = time.time_ns() + int(2 * protocol.REPLAY_WINDOW_S * 1e9)
    monkeypatch.setattr(protocol.time, "time_ns", lambda: later)
    with pytest.raises(ProtocolError, match="replayed or is too old"):
        Session(KEY).unpack(frames)


def test_malformed_headers():
    sender = Session(KEY)
    for header in (b"\xc1", msgpack.packb([1, 2]), msgpack.packb({"type": 3}),
                   b"\x00" * (protocol.MAX_HEADER_BYTES + 1)):
        frames = sender.pack({})
        frames[2] = header
        frames[0] = sender.sign(frames[1:])
        with pytest.raises(ProtocolError) as raised:
            Session(KEY).unpack(frames)
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
