import time

import msgpack
import pytest

from glaze.daemon import protocol
from glaze.daemon.protocol import ProtocolError, ReplayGuard, check_layout, layout_for

KEY = b"k" * 32


def test_signed_message_round_trips_with_zero_copy_buffers():
    pixels = memoryview(bytearray(range(256)) * 4)
    frames = protocol.pack(KEY, {"type": "submit", "n": 1}, [pixels])
    assert frames[3] is pixels  # passed through, not copied
    header, buffers = protocol.unpack(KEY, [bytes(f) for f in frames], ReplayGuard())
    assert header == {"type": "submit", "n": 1} and bytes(buffers[0]) == bytes(pixels)


@pytest.mark.parametrize("tamper", ["signature", "nonce", "header", "pixels", "drop-frame",
                                    "split-frame"])
def test_any_change_to_any_frame_breaks_the_signature(tamper):
    frames = [bytearray(f) for f in protocol.pack(KEY, {"type": "x"}, [b"abcdef"])]
    if tamper == "drop-frame":
        frames.pop()
    elif tamper == "split-frame":  # same bytes, other frame boundaries
        frames[3:] = [frames[3][:3], frames[3][3:]]
    else:
        index = ["signature", "nonce", "header", "pixels"].index(tamper)
        frames[index][-1] ^= 1
    with pytest.raises(ProtocolError) as raised:
        protocol.unpack(KEY, frames, ReplayGuard())
    assert raised.value.code == "bad-signature"


def test_wrong_key_unsigned_and_replayed_messages():
    guard = ReplayGuard()
    frames = protocol.pack(KEY, {"type": "x"})
    with pytest.raises(ProtocolError, match="does not match"):
        protocol.unpack(b"other" * 7, frames, guard)
    with pytest.raises(ProtocolError, match="not signed"):
        protocol.unpack(KEY, [msgpack.packb({"type": "x"})], guard)
    protocol.unpack(KEY, frames, guard)
    with pytest.raises(ProtocolError, match="replayed"):
        protocol.unpack(KEY, frames, guard)


def test_old_messages_are_refused(monkeypatch):
    frames = protocol.pack(KEY, {"type": "x"})
    later = time.time_ns() + int(2 * protocol.REPLAY_WINDOW_S * 1e9)
    monkeypatch.setattr(protocol.time, "time_ns", lambda: later)
    with pytest.raises(ProtocolError, match="replayed or is too old"):
        protocol.unpack(KEY, frames, ReplayGuard())


def test_malformed_headers():
    for header in (b"\xc1", msgpack.packb([1, 2]), msgpack.packb({"type": 3}),
                   b"\x00" * (protocol.MAX_HEADER_BYTES + 1)):
        frames = protocol.pack(KEY, {})
        frames[2] = header
        frames[0] = protocol._mac(KEY, frames[1:])
        with pytest.raises(ProtocolError) as raised:
            protocol.unpack(KEY, frames, ReplayGuard())
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
