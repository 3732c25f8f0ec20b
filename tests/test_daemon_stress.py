"""The daemon's request handling under load, while its worker ends many tiny jobs.

The test plays the daemon's socket thread: it hands real signed messages to the real
Daemon's `_receive`, as the serve loop does with what its ROUTER socket receives, calls the
status handler and the loop's own checks, and reads the answers from the daemon's outbox,
while the daemon's real worker thread takes jobs and ends them. In-process, this thread
stays in Python between requests (a socket's calls release the interpreter lock, and the
worker then runs only there), so state both threads touch without care breaks within a few
rounds, where over a socket it breaks once in thousands of jobs.
"""

from __future__ import annotations

import hashlib
import hmac
import queue
import random
import sys
import threading
import time

import msgpack
import zmq
from daemon_helpers import FAST
from timing import scaled

from glaze.daemon import protocol
from glaze.daemon.protocol import layout_for
from glaze.daemon.server import Daemon

TINY = {**FAST, "quality": 1}
ROUNDS, BATCH = 25, 12  # 300 jobs; the last of each batch is cancelled while it waits
CLOAKED = 4  # every fourth job is cloaked (8x8, one step); the others fail at once
STATUS_CALLS = 100  # status handler calls between two signed requests
FINAL = {"result": "done", "failed": "failed", "cancelled": "cancelled"}
IDENTITY, SESSION = b"stress-client", "stress-session"
# The engine refuses an 80x8 layer (aspect ratio 10:1) before any model work: such a job
# ends in the worker a moment after it is taken, so jobs end all the time.
LAYERS = {"cloaked": (bytes(8 * 8 * 4), layout_for(8, 8)),
          "failing": (bytes(80 * 8 * 4), layout_for(80, 8))}


def signed(key: bytes, header: dict, buffers: tuple = ()) -> list[zmq.Frame]:
    """A message as the ROUTER socket hands it over (identity first), signed as
    docs/protocol.md says (the buffers are small: one chunk each)."""
    if buffers:
        header = {**header, "buffer_bytes": [len(buffer) for buffer in buffers]}
    body = [protocol.new_nonce(), msgpack.packb(header), *buffers]
    mac = hmac.new(key, digestmod=hashlib.sha256)
    mac.update(protocol.CLIENT)  # the sender's role
    for frame in body:
        mac.update(len(frame).to_bytes(8, "big") + frame)
    return [zmq.Frame(frame) for frame in (IDENTITY, mac.digest(), *body)]


class SocketThread:
    """What the daemon's socket thread does for one client, done from the test."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon, self.key = daemon, bytes.fromhex(daemon.key)
        self.refs = 0
        self.answers: dict[str, dict] = {}
        self.events: dict[str, list[str]] = {}  # job id -> its events' types, in order

    def ask(self, header: dict, buffers: tuple = ()) -> dict:
        self.refs += 1
        ref = f"r{self.refs}"
        self.daemon._receive(signed(self.key, {**header, "ref": ref, "session": SESSION},
                                    buffers))
        self.turn()
        return self.answers.pop(ref)

    def turn(self) -> None:
        """The rest of a turn of the serve loop: what it would send, and its checks."""
        while True:
            try:
                identity, header, _ = self.daemon.outbox.get_nowait()
            except queue.Empty:
                break
            assert identity == IDENTITY
            if header.get("ref") is not None:
                self.answers[header["ref"]] = header
            else:
                self.events.setdefault(header["job"], []).append(header["type"])
        self.daemon._drop_vanished_sessions()
        self.daemon._idle_too_long()

    def finals(self, job: str) -> list[str]:
        return [kind for kind in self.events.get(job, []) if kind in FINAL]


def test_requests_while_many_tiny_jobs_end(bundle):
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as the interpreter can
    daemon = Daemon(bundle)
    worker = threading.Thread(target=daemon._work, name="glaze-worker", daemon=True)
    worker.start()
    try:
        _stress(SocketThread(daemon))
    finally:
        daemon.stop()
        worker.join(timeout=scaled(60))
        sys.setswitchinterval(previous)
    assert not worker.is_alive(), "the worker did not stop"


def _stress(loop: SocketThread) -> None:
    daemon, chance = loop.daemon, random.Random(0)
    deadline = time.monotonic() + scaled(600)  # a loaded 2-core machine needs ~30 s
    kinds: dict[str, str] = {}
    for _ in range(ROUNDS):
        batch = []
        for n in range(BATCH):
            kind = "cloaked" if n % CLOAKED == 0 else "failing"
            pixels, layout = LAYERS[kind]
            answer = loop.ask({"type": "submit", "pixels": layout, "settings": TINY},
                              (pixels,))
            assert answer["type"] == "accepted", answer
            kinds[answer["job"]] = kind
            batch.append(answer["job"])
        assert loop.ask({"type": "cancel", "job": batch[-1]})["type"] == "cancelling"
        known = list(kinds)
        while not all(loop.finals(job) for job in batch):
            assert time.monotonic() < deadline, "jobs stopped ending"
            status = loop.ask({"type": "status"})
            assert status["queued"] >= 0 and status["running"] in (0, 1), status
            for _ in range(STATUS_CALLS):
                daemon._status(IDENTITY, {"type": "status"}, [])
            job = chance.choice(known)
            state = loop.ask({"type": "job-state", "job": job})
            assert state.get("state") in ("queued", "running", *FINAL.values()), state
            if chance.random() < 0.05:  # cancel running, waiting and ended jobs alike
                answer = loop.ask({"type": "cancel", "job": job})
                assert answer["type"] == "cancelling" or answer["code"] == "unknown-job"
    assert len(kinds) == ROUNDS * BATCH
    for job, kind in kinds.items():
        finals = loop.finals(job)
        assert len(finals) == 1, (job, loop.events[job])  # exactly one final event
        expected = ("result", "cancelled") if kind == "cloaked" else ("failed", "cancelled")
        assert finals[0] in expected, (job, kind, finals)
        assert loop.ask({"type": "job-state", "job": job})["state"] == FINAL[finals[0]]
    results = sum(loop.finals(job) == ["result"] for job in kinds)
    status = loop.ask({"type": "status"})
    assert results > 0 and status["served"] == results
    assert status["queued"] == status["running"] == 0
