"""The daemon as a real process, over real ZeroMQ sockets."""

import dataclasses
import hashlib
import io
import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import threading
import time

import msgpack
import numpy as np
import pytest
import zmq
from daemon_helpers import FAST, DaemonProcess, decode, layer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from timing import scaled

from glaze.daemon import protocol
from glaze.daemon.client import (
    Client,
    DaemonUnavailable,
    Job,
    JobCancelled,
    JobFailed,
    ProtocolMismatch,
    RequestRejected,
    connected_socket,
    describe,
)
from glaze.daemon.connection import ConnectionInfo
from glaze.daemon.protocol import layout_for
from glaze.engine.preview import CELL
from glaze.engine.provenance import FORMAT


def raw_socket(daemon) -> zmq.Socket:
    """A socket that holds the connection file (it completes the CURVE handshake) and
    sends whatever a test makes it send."""
    return connected_socket(zmq.Context.instance(), daemon.info)


@pytest.mark.parametrize("order", ["RGBA", "BGRA"])
@pytest.mark.parametrize("sample", ["u8", "u16", "f16", "f32"])
def test_every_pixel_format_round_trips(client, sample, order):
    width, height, padding = 40, 24, 8 if sample == "u16" else 0
    data, rgba = layer(width, height, sample, order, seed=1, padding=padding)
    stride = len(data) // height
    job = client.submit(data, layout_for(width, height, order, sample, stride), FAST)
    fractions = []
    result, message = job.result(on_progress=lambda fraction, _: fractions.append(fraction))
    assert message["pixels"] == layout_for(width, height, order, sample, stride)
    assert len(result) == len(data)
    out = decode(result, width, height, sample, order, padding)
    assert out.dtype == rgba.dtype and out.shape == rgba.shape
    assert out[..., 3].tobytes() == rgba[..., 3].tobytes()
    assert not np.array_equal(out[..., :3], rgba[..., :3])
    rows = np.frombuffer(result, np.uint8).reshape(height, -1)
    assert (rows[:, stride - padding:] == 0xAB).all()  # row padding comes back as sent
    assert fractions and fractions == sorted(fractions)
    assert message["report"]["protection_note"]  # the demo bundle says what it is
    # What an exported file carries: the record `glaze cloak` writes, naming these pixels.
    record = message["record"]
    assert record["demo"] is True and record["model"] == "demo" and record["steps"] == 2
    assert record["bundle"] == "demo-seed0" and "NO protection" in record["protection_note"]
    assert record["source_sha256"] == hashlib.sha256(data).hexdigest()
    assert record["target_style"] == FAST["target"] and record["format"] == FORMAT


def test_a_preview_of_a_finished_job_is_a_labelled_sheet(client):
    """What "Show what a model sees" asks for: the daemon's decoders on the last job's
    pictures, as a PNG (the demo's stamped), never decoded in the host."""
    data, _ = layer(80, 48, "f32", "RGBA", seed=4)
    job = client.submit(data, layout_for(80, 48, "RGBA", "f32"), {**FAST, "defend": "sd,flux"})
    job.result()
    png, message = client.preview(job.id).result()
    assert message["kind"] == "preview" and message["of"] == job.id
    assert not message["left_out"] and "NO protection" in message["protection_note"]
    sheet = Image.open(io.BytesIO(png))
    assert sheet.format == "PNG" and sheet.width == 12 + 3 * (CELL + 12)
    assert sheet.height > 2 * CELL * 48 / 80  # a row each for SD and FLUX
    with pytest.raises(JobFailed, match="is not among the last"):
        client.preview("not-a-job").result()


def test_status_and_connection_file(daemon, client):
    status = client.status()
    assert status["pid"] == daemon.process.pid and status["bundle"] == "demo-seed0"
    assert status["endpoint"].startswith("tcp://127.0.0.1:")
    assert {"queued", "running", "served", "uptime_s", "rejected", "device"} <= set(status)
    assert stat.S_IMODE(daemon.connection_file.stat().st_mode) == 0o600
    saved = json.loads(daemon.connection_file.read_text())
    assert saved["pid"] == daemon.process.pid and len(bytes.fromhex(saved["key"])) == 32


def test_unsigned_wrong_key_and_replayed_messages_are_dropped_and_counted(daemon, client):
    before = client.status()["rejected"]
    socket = raw_socket(daemon)
    socket.send_multipart([msgpack.packb({"type": "status"})])  # unsigned
    stranger = protocol.Session(b"x" * 32, protocol.CLIENT)  # the wrong key
    socket.send_multipart(stranger.pack({"type": "status", "ref": "w"}))
    peer = protocol.Session(daemon.info.key_bytes, protocol.CLIENT)
    signed = peer.pack({"type": "status", "ref": "r"})
    socket.send_multipart(signed)
    assert socket.poll(int(scaled(5000)))  # the genuine one is answered
    header, _ = peer.unpack(socket.recv_multipart())
    assert header["type"] == "status"
    socket.send_multipart(signed)  # the same frames again
    time.sleep(scaled(0.3))
    assert not socket.poll(int(scaled(200)))  # dropped ones get no answer at all
    assert client.status()["rejected"] == before + 3
    socket.close()


ints = st.integers(-(2**63), 2**63 - 1)  # what msgpack can carry
signed_headers = st.one_of(
    st.binary(max_size=64),  # not msgpack
    st.builds(msgpack.packb, st.one_of(ints, st.text(), st.lists(ints),
                                       st.dictionaries(st.text(max_size=8), ints))),
    st.builds(lambda body: msgpack.packb({"type": "submit", **body}), st.fixed_dictionaries({
        "pixels": st.one_of(st.none(), ints, st.fixed_dictionaries({
            "width": st.one_of(st.integers(-5, 2**62), st.text(max_size=3)),
            "height": st.integers(-5, 2**62),
            "order": st.sampled_from(["RGBA", "BGRA", "xyz", ""]),
            "sample": st.sampled_from(["u8", "u16", "f16", "f32", "f64"]),
            "stride": st.integers(-1, 2**62)})),
        "settings": st.one_of(ints, st.dictionaries(
            st.sampled_from(["intensity", "quality", "seed", "profile", "target"]),
            st.one_of(ints, st.text(max_size=4), st.none()))),
        "session": st.one_of(st.text(max_size=4), ints),
    })),
    st.builds(lambda kind: msgpack.packb({"type": kind, "job": 5}),
              st.sampled_from(["cancel", "job-state", "nope", ""])),
)


@settings(max_examples=10_000, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(header=signed_headers, buffers=st.lists(st.binary(max_size=48), max_size=3),
       signed=st.booleans(), truncate=st.booleans())
def send_fuzzed(daemon, header, buffers, signed, truncate):
    """One fuzzed message (10,000 in all), signed or not, maybe truncated; answers unread."""
    socket = fuzz_socket(daemon)
    key = daemon.info.key_bytes if signed else b"z" * 32
    frames = [protocol.new_nonce(), header, *buffers]
    frames = [protocol.Session(key, protocol.CLIENT).sign(frames), *frames]
    if truncate:
        frames = frames[: max(1, len(frames) - 1)]
    socket.send_multipart(frames)


_sockets = {}


def fuzz_socket(daemon) -> zmq.Socket:
    if daemon not in _sockets:
        _sockets[daemon] = raw_socket(daemon)
        _sockets[daemon].setsockopt(zmq.RCVHWM, 10)  # answers are not read
    return _sockets[daemon]


def test_fuzzed_messages_leave_the_daemon_serving(daemon, client):
    invalid = client.status()["invalid"]
    send_fuzzed(daemon)
    data, rgba = layer(16, 16, "u8", "RGBA")
    out, _ = client.submit(data, layout_for(16, 16), FAST).result()
    assert decode(out, 16, 16, "u8", "RGBA")[..., 3].tobytes() == rgba[..., 3].tobytes()
    assert daemon.process.poll() is None
    assert client.status()["invalid"] > invalid + 100  # the fuzz arrived and was refused


def test_bad_requests_get_clear_errors(client):
    data, _ = layer(16, 16, "u8", "RGBA")
    cases = [
        (layout_for(9000, 16), b"x", "too-large"),
        (layout_for(8192, 8192, "RGBA", "f32"), data, "malformed"),  # declared, not sent
    ]
    for layout, buffer, code in cases:
        with pytest.raises(RequestRejected) as raised:
            client.request({"type": "submit", "pixels": layout, "settings": {}}, (buffer,))
        assert raised.value.code == code and str(raised.value)
    with pytest.raises(RequestRejected) as raised:
        client.submit(data, layout_for(16, 16), {"intensity": "extreme"})
    assert raised.value.code == "bad-settings" and "unknown intensity" in str(raised.value)
    with pytest.raises(RequestRejected, match="has 1024 bytes"):
        client.submit(data, layout_for(16, 17))  # refused by the client before sending


def running_cloak(client):
    """A long cloak job of a 64 x 64 layer, once its steps have begun; and its pixels."""
    data, _ = layer(64, 64, "u8", "RGBA")
    job = client.submit(data, layout_for(64, 64), {**FAST, "quality": 100000})
    for event in job.events():
        if event["type"] == "progress" and event["message"].startswith("cloak step"):
            return job, data
    raise AssertionError("the job ended before its steps")


def test_cancel_a_running_job(client):
    job, _ = running_cloak(client)
    job.cancel()
    with pytest.raises(JobCancelled, match="cancelled by the client"):
        job.result()
    assert job.state() == "cancelled"


def test_finish_a_running_job_keeps_what_it_made(client):
    job, data = running_cloak(client)
    pixels, result = job.result(finish=lambda: True)  # asks the daemon to finish, once
    report = result["report"]
    assert report["stopped"] == "cancelled" and 0 < report["steps_run"] < 100000
    assert result["record"]["stopped"] == "cancelled"  # a file made from it says so
    assert bytes(pixels) != data and job.state() == "done"
    assert "was finished early on request" in describe(result)
    assert job.finish()  # asked again after its end (a late click): harmless
    assert not Job(client, "no-such-job").finish()  # refused, and said so without raising


def test_an_engine_failure_fails_only_that_job(client):
    data, _ = layer(200, 10, "u8", "RGBA")  # the engine refuses a 20:1 aspect ratio
    with pytest.raises(JobFailed, match="aspect ratios beyond 8:1"):
        client.submit(data, layout_for(200, 10), FAST).result()
    data, _ = layer(16, 16, "u8", "RGBA")
    client.submit(data, layout_for(16, 16), FAST).result()


CLIENT_SCRIPT = textwrap.dedent("""
    import json, sys
    from glaze.daemon.client import Client
    from glaze.daemon.connection import ConnectionInfo
    from glaze.daemon.protocol import layout_for
    info = ConnectionInfo(**json.loads(sys.argv[1]))
    client = Client(info)
    job = client.submit(bytes(64 * 64 * 4), layout_for(64, 64),
                        {"quality": 100000, "work_size": 64, "target": "x"})
    print(job.id, flush=True)
    for event in job.events():
        pass
""")


def test_a_killed_client_has_its_job_cancelled_within_two_seconds(daemon, client):
    info = json.dumps(dataclasses.asdict(daemon.info))
    child = subprocess.Popen([sys.executable, "-c", CLIENT_SCRIPT, info],
                             stdout=subprocess.PIPE, text=True)
    job_id = child.stdout.readline().strip()
    deadline = time.monotonic() + scaled(60)
    while client.request({"type": "job-state", "job": job_id})["state"] != "running":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    child.kill()
    child.wait()
    killed = time.monotonic()
    while client.request({"type": "job-state", "job": job_id})["state"] != "cancelled":
        assert time.monotonic() - killed < 1.0 + scaled(1.0), "the job outlived its client by 2 s"
        time.sleep(0.05)
    data, rgba = layer(16, 16, "u8", "RGBA", seed=3)  # and the next client is served
    out, _ = client.submit(data, layout_for(16, 16), FAST).result()
    assert decode(out, 16, 16, "u8", "RGBA")[..., 3].tobytes() == rgba[..., 3].tobytes()


def test_a_killed_daemon_gives_the_client_a_clear_error(tmp_path):
    victim = DaemonProcess(tmp_path)
    try:
        with Client(victim.info, timeout=scaled(3.0)) as client:
            data, _ = layer(64, 64, "u8", "RGBA")
            job = client.submit(data, layout_for(64, 64), {**FAST, "quality": 100000})
            next(job.events())
            victim.process.send_signal(signal.SIGKILL)
            started = time.monotonic()
            with pytest.raises(DaemonUnavailable, match="exited|not answered"):
                job.result()
            assert time.monotonic() - started < scaled(3.0 + 1.0)
    finally:
        victim.stop()


MANY_SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    from glaze.daemon.client import Client
    from glaze.daemon.connection import ConnectionInfo
    from glaze.daemon.protocol import layout_for
    info, worker = ConnectionInfo(**json.loads(sys.argv[1])), int(sys.argv[2])
    good = 0
    with Client(info) as client:
        for index in range(25):
            pixels = np.full((12, 20, 4), 100, np.uint8)
            pixels[..., 3] = worker * 25 + index  # who it belongs to, carried in alpha
            pixels[..., 0] = np.arange(20, dtype=np.uint8) * 10
            job = client.submit(pixels.tobytes(), layout_for(20, 12),
                                {"quality": 1, "work_size": 64, "target": "x"})
            data, message = job.result()
            out = np.frombuffer(data, np.uint8).reshape(12, 20, 4)
            good += bool((out[..., 3] == worker * 25 + index).all()
                         and message["job"] == job.id)
    print("good", good)
""")


def test_four_clients_with_25_jobs_each_get_their_own_results(daemon):
    info = json.dumps(dataclasses.asdict(daemon.info))
    children = [subprocess.Popen([sys.executable, "-c", MANY_SCRIPT, info, str(worker)],
                                 stdout=subprocess.PIPE, text=True) for worker in range(4)]
    outputs = [child.communicate(timeout=scaled(600))[0] for child in children]
    assert [child.returncode for child in children] == [0, 0, 0, 0]
    assert [line.strip() for line in outputs] == ["good 25"] * 4


def test_an_unchunked_frame_is_refused_before_allocation(daemon):
    """A frame over the chunk limit (a layer sent whole, as protocol 3 did) is dropped by
    ZeroMQ from the size in its frame header, before it is allocated."""
    with Client(daemon.info) as client:
        client.status()
        before = daemon.peak_rss_kib()
        socket = raw_socket(daemon)
        huge = bytes(256 * 2**20)  # 256 MiB in one frame, a thousand times the limit
        peer = protocol.Session(daemon.info.key_bytes, protocol.CLIENT)
        header = {"type": "submit", "pixels": layout_for(8192, 8192), "settings": {},
                  "session": "s", "buffer_bytes": [len(huge)]}
        for _ in range(3):
            nonce = protocol.new_nonce()
            body = [nonce, msgpack.packb(header), huge]
            socket.send_multipart([peer.sign(body), *body], copy=False)
        time.sleep(scaled(2.0))
        assert client.status()["pid"] == daemon.process.pid  # alive and answering
        grown_mib = (daemon.peak_rss_kib() - before) / 1024
        assert grown_mib < 64, f"peak RSS grew by {grown_mib:.0f} MiB"
        socket.close(linger=0)


def test_a_layer_over_the_daemon_s_limit_is_refused(tmp_path):
    small = DaemonProcess(tmp_path, "--max-layer-mb", "1")
    try:
        with Client(small.info) as client:
            data, _ = layer(1024, 512, "u8", "RGBA")  # 2 MiB
            with pytest.raises(RequestRejected, match="over this daemon's") as raised:
                client.submit(data, layout_for(1024, 512), FAST)
            assert raised.value.code == "too-large"
            data, _ = layer(256, 256, "u8", "RGBA")
            client.submit(data, layout_for(256, 256), FAST).result()
    finally:
        small.stop()


def test_protocol_version_mismatch_is_reported(tmp_path):
    context = zmq.Context.instance()
    server = context.socket(zmq.ROUTER)
    public, server.curve_secretkey = zmq.curve_keypair()
    server.curve_server = True
    port = server.bind_to_random_port("tcp://127.0.0.1")
    info = ConnectionInfo(f"tcp://127.0.0.1:{port}", "ab" * 32, os.getpid(),
                          protocol.PROTOCOL_VERSION, "0", "fake", public.decode())
    older = dataclasses.replace(info, protocol=2, server_key="")  # a file without the key
    with pytest.raises(ProtocolMismatch, match="protocol 2"):
        Client(older)

    def answer():  # a daemon of another protocol version: answer the hello, ignore pings
        session = protocol.Session(info.key_bytes, protocol.DAEMON)
        deadline = time.monotonic() + scaled(10)
        while time.monotonic() < deadline:
            if not server.poll(100):
                continue
            identity, *frames = server.recv_multipart()
            header, _ = session.unpack(frames)
            if header["type"] == "hello":
                reply = {"type": "welcome", "protocol": 99, "ref": header["ref"]}
                server.send_multipart([identity, *session.pack(reply)])
                return

    thread = threading.Thread(target=answer)
    thread.start()
    with pytest.raises(ProtocolMismatch, match="protocol 99"):
        Client(info)
    thread.join()
    server.close()



def test_graceful_stop_cancels_running_work_and_removes_the_file(tmp_path):
    stopping = DaemonProcess(tmp_path)
    try:
        with Client(stopping.info) as client:
            data, _ = layer(64, 64, "u8", "RGBA")
            job = client.submit(data, layout_for(64, 64), {**FAST, "quality": 100000})
            next(job.events())
            stopping.process.send_signal(signal.SIGTERM)
            with pytest.raises(JobCancelled, match="the daemon is stopping"):
                job.result()
        assert stopping.process.wait(timeout=scaled(30)) == 0
        assert not stopping.connection_file.exists()
    finally:
        stopping.stop()
