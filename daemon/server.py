"""The daemon: loads a model bundle once and serves cloak jobs over signed ZeroMQ messages.

One thread owns the ROUTER socket (receives, verifies, answers, streams events) and all the
daemon's bookkeeping; one worker thread runs jobs one at a time on the resident models. They
meet at three queues: jobs to run (`waiting`), messages to send (`outbox`) and jobs the
worker has finished (`ended`).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import queue
import secrets
import signal
import threading
import time
import traceback
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

import zmq

from glaze import __version__, options
from glaze.engine import Cancelled, CloakSettings, ModelBundle, resolve_target
from glaze.engine.cloak import cloak
from glaze.engine.pixels import from_buffer, to_buffer
from glaze.engine.preview import preview_posted, preview_sheet
from glaze.engine.progress import Progress
from glaze.engine.provenance import record, request

from . import protocol
from .connection import (
    ConnectionInfo,
    new_key,
    remove_connection,
    remove_loading,
    write_connection,
)
from .protocol import ProtocolError

log = logging.getLogger("glaze.daemon")

HEARTBEAT_TIMEOUT_S = 1.0  # a session silent this long has vanished: its jobs are cancelled
MAX_QUEUE = 16
PREVIEWABLE = 4  # the last cloak jobs whose preview can still be asked for
POLL_MS = 20
# Messages read per round of the socket loop before replies are flushed and sessions
# checked: a peer that sends without pause cannot starve the answers. The ROUTER takes
# its input from the peers in turn, so each round is shared fairly between them.
MESSAGES_PER_ROUND = 32
# A connection that has not completed the CURVE handshake within this is closed: idle or
# keyless connections do not hold file descriptors for long.
HANDSHAKE_MS = 5000
# The daemon sets its descriptor limit to this (or the hard limit, if lower): the cap on
# its connections in total. With the frame limit it bounds what peers that have not
# authenticated can make it hold: 4,096 x 256 KiB = 1 GiB, each for at most HANDSHAKE_MS.
MAX_DESCRIPTORS = 4096
REJECTION_LOG_PERIOD_S = 60.0
REJECTIONS_LOGGED_PER_PERIOD = 5
SECURITY_CODES = ("unsigned", "bad-signature", "replayed")
# The fields a job's settings map may carry and their types, from the one declaration.
SETTING_FIELDS = {setting.name: setting.wire_types for setting in options.SETTINGS}


@dataclass
class Job:
    id: str
    identity: bytes  # the ROUTER identity that submitted it: where its events go
    session: str
    layout: dict
    pixels: bytes | memoryview  # the received pixel buffer, in the layout
    settings: CloakSettings
    profile: str
    target: str | None
    # queued, running, done, failed, cancelled; changed only under Daemon.lock, by the
    # worker (taking the job, ending it) or by a cancel that ends it while it waits.
    state: str = "queued"
    cancel: threading.Event = field(default_factory=threading.Event)
    finish: threading.Event = field(default_factory=threading.Event)  # end with what it has
    reason: str = "cancelled"
    concluded: bool = False  # its final event (result, failed, cancelled) has been sent
    of: str | None = None  # a preview job: the cloak job whose pictures it shows


class Daemon:
    """The daemon's state and its two threads.

    The socket thread alone reads and writes the job table (`jobs`), `finished`,
    `sessions`, the counters and `last_activity`. The worker sees only the job it has taken
    and reports the job's end through `ended`; the socket thread concludes it. One owner
    rather than a lock around every use: a lock holds only while every later change
    remembers to take it, and a table the worker never sees cannot race (a dict iterated in
    one thread while another pops from it fails: "dictionary changed size during iteration").
    """

    def __init__(self, bundle: ModelBundle, *, idle_exit_s: float | None = None,
                 max_layer_bytes: int = protocol.MAX_LAYER_BYTES) -> None:
        self.bundle = bundle
        self.key = new_key()  # hex, for the connection file
        self.public_key, self._secret_key = zmq.curve_keypair()  # the transport's
        self.session = protocol.Session(bytes.fromhex(self.key), protocol.DAEMON)
        self.idle_exit_s = idle_exit_s
        self.max_layer_bytes = max_layer_bytes
        self.jobs: dict[str, Job] = {}  # jobs not yet concluded
        self.finished: OrderedDict[str, str] = OrderedDict()  # recent final states
        self.lock = threading.Lock()  # held for every change of a job's state
        self.waiting: queue.Queue[Job] = queue.Queue()
        self.outbox: queue.SimpleQueue = queue.SimpleQueue()  # (identity, header, buffers)
        self.ended: queue.SimpleQueue = queue.SimpleQueue()  # (job, its outcome)
        # The worker's alone: what a preview of each recent cloak job shows (posted pictures,
        # families, shifts), newest last.
        self.previewable: OrderedDict[str, tuple] = OrderedDict()
        self.sessions: dict[str, float] = {}  # session -> last time heard from
        self.stopping = threading.Event()
        self.started = time.monotonic()
        self.last_activity = time.monotonic()
        self.served = self.rejected = self.invalid = 0
        self.rejections_log = ThrottledLog(REJECTIONS_LOGGED_PER_PERIOD,
                                           REJECTION_LOG_PERIOD_S)
        self.endpoint = ""

    # -- lifetime ------------------------------------------------------------------------

    def run(self, write_file: bool = True) -> None:
        """Bind, publish the connection file, serve until stopped, then clean up."""
        _limit_descriptors()
        socket = zmq.Context.instance().socket(zmq.ROUTER)
        socket.setsockopt(zmq.LINGER, 1000)
        # A larger frame is refused from its size, before allocation; buffers come chunked.
        socket.setsockopt(zmq.MAXMSGSIZE, protocol.MAX_FRAME_BYTES)
        socket.setsockopt(zmq.ROUTER_MANDATORY, 0)
        # Only a peer holding the connection file's server key completes a handshake:
        # others never get a message read, buffered or verified.
        socket.curve_server = True
        socket.curve_secretkey = self._secret_key
        socket.setsockopt(zmq.HANDSHAKE_IVL, HANDSHAKE_MS)
        port = socket.bind_to_random_port("tcp://127.0.0.1")
        self.endpoint = f"tcp://127.0.0.1:{port}"
        info = ConnectionInfo(self.endpoint, self.key, _pid(), protocol.PROTOCOL_VERSION,
                              __version__, self.bundle.name, self.public_key.decode("ascii"))
        worker = threading.Thread(target=self._work, name="glaze-worker", daemon=True)
        worker.start()
        if write_file:
            write_connection(info)
            remove_loading()  # the dialogs read the connection file from now on
        log.info("serving %s on %s", self.bundle.name, self.endpoint)
        try:
            self._serve(socket)
        finally:
            self.stopping.set()  # the worker stops too, even when serving failed
            self._cancel_all("the daemon is stopping")
            worker.join(timeout=30)
            self._settle()
            self._flush(socket)
            if write_file:
                remove_connection(info.pid)
            socket.close()
            log.info("stopped")

    def stop(self) -> None:
        self.stopping.set()

    # -- the socket thread ---------------------------------------------------------------

    def _serve(self, socket: zmq.Socket) -> None:
        poller = zmq.Poller()
        poller.register(socket, zmq.POLLIN)
        while not self.stopping.is_set():
            if poller.poll(POLL_MS):
                for _ in range(MESSAGES_PER_ROUND):
                    try:
                        frames = socket.recv_multipart(zmq.NOBLOCK, copy=False)
                    except zmq.Again:
                        break
                    self._receive(frames)
            self._settle()
            self._flush(socket)
            self._drop_vanished_sessions()
            self.rejections_log.roll()
            if self._idle_too_long():
                log.info("idle for %.0f s: exiting", self.idle_exit_s)
                self.stopping.set()

    def _flush(self, socket: zmq.Socket) -> None:
        while True:
            try:
                identity, header, buffers = self.outbox.get_nowait()
            except queue.Empty:
                return
            frames = self.session.pack(header, buffers)
            socket.send_multipart([identity, *frames], copy=False)

    def _receive(self, frames: list) -> None:
        self._settle()  # so that the answer counts every job the worker has finished
        identity, body = frames[0].bytes, [frame.buffer for frame in frames[1:]]
        try:
            header, buffers = self.session.unpack(body)
        except ProtocolError as error:
            if error.code in SECURITY_CODES:
                self.rejected += 1  # dropped unread: no answer to an unauthenticated peer
                self.rejections_log.warning("dropped a message: %s", error)
            else:
                self.invalid += 1
                self._reply(identity, error.request, error)
            return
        self.last_activity = time.monotonic()
        session = header.get("session")
        if isinstance(session, str):
            self.sessions[session] = time.monotonic()
        handler = self.HANDLERS.get(header["type"])
        try:
            if handler is None:
                raise ProtocolError("unknown-type", f"unknown message type {header['type']!r}")
            answer = handler(self, identity, header, buffers)
        except ProtocolError as error:
            self.invalid += 1
            self._reply(identity, header, error)
            return
        if answer is not None:
            answer, buffers = answer if isinstance(answer, tuple) else (answer, ())
            self._send(identity, {**answer, "ref": _ref(header)}, buffers)

    def _send(self, identity: bytes, header: dict, buffers: tuple = ()) -> None:
        self.outbox.put((identity, header, buffers))

    def _reply(self, identity: bytes, request: dict, error: ProtocolError) -> None:
        self._send(identity, {"type": "error", "code": error.code, "message": str(error),
                              "ref": _ref(request)})

    # -- message handlers: return the answer's header (and buffers), or None -------------

    def _hello(self, identity: bytes, header: dict, buffers: list) -> dict:
        return {"type": "welcome", **self._identity()}

    def _identity(self) -> dict:
        return {"protocol": protocol.PROTOCOL_VERSION, "version": __version__,
                "bundle": self.bundle.name, "model": self.bundle.source,
                "demo": self.bundle.demo, "protection_note": self.bundle.protection_note,
                "device": str(self.bundle.device),
                "options": options.advertised(list(self.bundle.extractors))}

    def _status(self, identity: bytes, header: dict, buffers: list) -> dict:
        states = [job.state for job in self.jobs.values()]
        return {"type": "status", **self._identity(), "pid": _pid(), "endpoint": self.endpoint,
                "queued": states.count("queued"), "running": states.count("running"),
                "served": self.served, "rejected": self.rejected, "invalid": self.invalid,
                "uptime_s": round(time.monotonic() - self.started, 1)}

    def _submit(self, identity: bytes, header: dict, buffers: list) -> dict:
        layout = protocol.check_layout(header.get("pixels"))
        if len(buffers) != 1:
            raise ProtocolError("malformed", "a job carries exactly one pixel buffer")
        size = len(buffers[0])
        if size != layout["frame_bytes"]:
            raise ProtocolError("malformed", f"pixel buffer has {size} bytes, the layout "
                                             f"needs {layout['frame_bytes']}")
        if size > self.max_layer_bytes:
            raise ProtocolError("too-large", f"a layer of {size} bytes is over this daemon's "
                                             f"{self.max_layer_bytes}-byte limit")
        session = header.get("session")
        if not isinstance(session, str):
            raise ProtocolError("malformed", "'session' must be a string")
        settings, profile, target = _job_settings(header.get("settings", {}),
                                                  ",".join(self.bundle.extractors))
        try:
            for name in settings.extractors:
                self.bundle.extractor(name)
        except ValueError as error:
            raise ProtocolError("bad-settings", str(error)) from None
        return self._queue(Job(secrets.token_hex(8), identity, session, layout, buffers[0],
                               settings, profile, target))

    def _preview(self, identity: bytes, header: dict, buffers: list) -> dict:
        """What each defended family's decoder makes of a recent cloak job's original,
        glazed picture and target: a job whose result is the sheet as a PNG."""
        of, session = header.get("job"), header.get("session")
        if not isinstance(of, str) or not isinstance(session, str):
            raise ProtocolError("malformed", "a preview names its cloak 'job' and 'session'")
        return self._queue(Job(secrets.token_hex(8), identity, session, {}, b"",
                               CloakSettings(), "", None, of=of))

    def _queue(self, job: Job) -> dict:
        queued = sum(each.state == "queued" for each in self.jobs.values())
        if queued >= MAX_QUEUE:
            raise ProtocolError("busy", f"{queued} jobs are waiting already; try again later")
        self.jobs[job.id] = job
        self.waiting.put(job)
        return {"type": "accepted", "job": job.id, "position": queued}

    def _cancel(self, identity: bytes, header: dict, buffers: list) -> dict:
        job = self._job(header)
        self._cancel_job(job, "cancelled by the client")
        return {"type": "cancelling", "job": job.id}

    def _finish(self, identity: bytes, header: dict, buffers: list) -> dict:
        """End a cloak at its next step (after one at least) with what it has made: its
        result comes as any other's, its report saying `stopped` "cancelled". A job that
        has ended, or a preview, ends as it would have."""
        job_id = header.get("job")
        if isinstance(job_id, str) and job_id in self.finished:
            return {"type": "finishing", "job": job_id}
        job = self._job(header)
        job.finish.set()
        return {"type": "finishing", "job": job.id}

    def _job_state(self, identity: bytes, header: dict, buffers: list) -> dict:
        job_id = header.get("job")
        if isinstance(job_id, str) and job_id in self.finished:
            return {"type": "job-state", "job": job_id, "state": self.finished[job_id]}
        job = self._job(header)
        return {"type": "job-state", "job": job.id, "state": job.state}

    def _ping(self, identity: bytes, header: dict, buffers: list) -> dict:
        return {"type": "pong"}

    def _echo(self, identity: bytes, header: dict, buffers: list) -> tuple[dict, tuple]:
        """Send the buffers back: a transport check for plug-ins and benchmarks."""
        return {"type": "echo"}, tuple(buffers)

    def _stop(self, identity: bytes, header: dict, buffers: list) -> dict:
        self.stopping.set()
        return {"type": "stopping"}

    HANDLERS: dict[str, Callable] = {
        "hello": _hello, "status": _status, "submit": _submit, "preview": _preview,
        "cancel": _cancel, "finish": _finish,
        "job-state": _job_state, "ping": _ping, "echo": _echo, "stop": _stop,
    }

    def _job(self, header: dict) -> Job:
        job = self.jobs.get(header.get("job")) if isinstance(header.get("job"), str) else None
        if job is None:
            raise ProtocolError("unknown-job", f"no job {header.get('job')!r}")
        return job

    # -- cancellation --------------------------------------------------------------------

    def _cancel_job(self, job: Job, reason: str) -> None:
        """Queued jobs end now; a running one stops at its next step and ends then."""
        job.reason = reason
        job.cancel.set()
        with self.lock:  # else the worker could take it while it is being ended
            ends_now = job.state == "queued"
            if ends_now:
                job.state = "cancelled"
        if ends_now:
            self._conclude(job)

    def _cancel_all(self, reason: str) -> None:
        for job in list(self.jobs.values()):
            self._cancel_job(job, reason)

    def _drop_vanished_sessions(self) -> None:
        now = time.monotonic()
        for job in list(self.jobs.values()):
            heard = self.sessions.get(job.session, 0.0)
            if not job.cancel.is_set() and now - heard > HEARTBEAT_TIMEOUT_S:
                log.info("the client of job %s vanished: cancelling it", job.id)
                self._cancel_job(job, "the client vanished")
        for session, heard in list(self.sessions.items()):
            if now - heard > 60 * HEARTBEAT_TIMEOUT_S:
                del self.sessions[session]

    def _settle(self) -> None:
        """Conclude the jobs the worker has reported ended."""
        while True:
            try:
                job, outcome = self.ended.get_nowait()
            except queue.Empty:
                return
            if job.state == "failed":
                job.reason = outcome
            self._conclude(job, outcome if job.state == "done" else None)
            self.last_activity = time.monotonic()

    def _conclude(self, job: Job, result: tuple | None = None) -> None:
        """Send the job's one final event and forget its pixels."""
        if job.concluded:
            return
        job.concluded = True
        if job.state == "done":
            header, buffers = result
            self._send(job.identity, header, buffers)
            self.served += 1
        elif job.state == "failed":
            self._send(job.identity, {"type": "failed", "job": job.id, "error": job.reason})
        else:
            self._send(job.identity, {"type": "cancelled", "job": job.id, "reason": job.reason})
        job.pixels = b""
        self.jobs.pop(job.id, None)
        self.finished[job.id] = job.state
        while len(self.finished) > 1000:
            self.finished.popitem(last=False)

    def _idle_too_long(self) -> bool:
        busy = bool(self.jobs)  # queued, running, or ended with its final event not yet sent
        return (self.idle_exit_s is not None and not busy
                and time.monotonic() - self.last_activity > self.idle_exit_s)

    # -- the worker thread ---------------------------------------------------------------

    def _work(self) -> None:
        while not self.stopping.is_set():
            try:
                job = self.waiting.get(timeout=0.1)
            except queue.Empty:
                continue
            with self.lock:  # a job cancelled while it waited is not taken
                if job.state != "queued":
                    continue
                job.state = "running"
            state, outcome = self._run(job)
            with self.lock:
                job.state = state  # so that a status no longer counts it as running
            self.ended.put((job, outcome))

    def _run(self, job: Job) -> tuple[str, object]:
        """Run one job: its final state and the outcome, the result message (header and
        buffers) when done, the error when failed. Reads the job, sets nothing on it."""
        def progress(fraction: float, message: str) -> None:
            self._send(job.identity, {"type": "progress", "job": job.id,
                                      "fraction": round(fraction, 4), "message": message})

        try:
            if job.cancel.is_set():
                raise Cancelled(0)
            return "done", (self._show(job, progress) if job.of is not None
                            else self._cloak(job, progress))
        except Cancelled:
            return "cancelled", None
        except Exception as error:  # an engine failure fails this job, not the daemon
            log.error("job %s failed:\n%s", job.id, traceback.format_exc())
            return "failed", str(error) or type(error).__name__

    def _cloak(self, job: Job, progress: Callable[[float, str], None]) -> tuple:
        pixels = from_buffer(job.pixels, job.layout)
        profile = resolve_target(  # a new profile computes its candidates' centroids
            self.bundle, job.profile, [pixels], override=job.target,
            seed=job.settings.seed, progress=Progress(progress, job.cancel.is_set))
        result = cloak(pixels, self.bundle, profile.target_style, job.settings,
                       progress=progress, cancel=job.cancel.is_set, finish=job.finish.is_set)
        out = to_buffer(result.image, job.layout, job.pixels)
        self._keep_for_preview(job.id, result)
        layout = {name: job.layout[name] for name in protocol.LAYOUT_FIELDS}
        report = result.report.to_dict()
        header = {"type": "result", "job": job.id, "report": report,
                  "target_style": profile.target_style, "pixels": layout,
                  "record": self._record(job, report)}
        return header, (out,)

    def _keep_for_preview(self, job_id: str, result) -> None:
        """What the cloak delivered after a typical upload (a few MB), for its preview."""
        shifts = {name: shift.after_upload for name, shift in result.report.extractors.items()}
        self.previewable[job_id] = (result.posted, list(result.report.defended), shifts)
        while len(self.previewable) > PREVIEWABLE:
            self.previewable.popitem(last=False)

    def _show(self, job: Job, progress: Callable[[float, str], None]) -> tuple:
        """The preview sheet of cloak job `job.of`, as PNG bytes."""
        kept = self.previewable.get(job.of)
        if kept is None:
            raise ValueError(f"job {job.of} is not among the last {PREVIEWABLE} this daemon "
                             "cloaked: glaze the picture again to see what a model makes of it")
        posted, families, shifts = kept
        progress(0.0, "decoding what each model family sees")
        found = preview_posted(self.bundle, posted, families, shifts)
        sheet = io.BytesIO()
        preview_sheet(found).save(sheet, format="PNG")
        header = {"type": "result", "job": job.id, "kind": "preview", "of": job.of,
                  "left_out": found.left_out, "protection_note": found.stamp}
        return header, (sheet.getvalue(),)

    def _record(self, job: Job, report: dict) -> dict:
        """What an output of this job carries (engine/provenance.py), as `glaze cloak`'s
        outputs do; its source is the layer's pixels as sent."""
        asked = request(self.bundle.source, self.bundle.demo, report["target_style"],
                        job.settings, hashlib.sha256(job.pixels).hexdigest())
        return record(asked, report, job.profile, __version__)


class ThrottledLog:
    """Logs at most `burst` warnings per `period_s`, then, once the period is over, one
    line saying how many were left out: a flood of bad messages cannot flood the log."""

    def __init__(self, burst: int, period_s: float) -> None:
        self.burst, self.period_s = burst, period_s
        self.period_start = time.monotonic()
        self.logged = self.left_out = 0

    def roll(self) -> None:
        """Start a new period if this one is over, saying first how many were left out."""
        now = time.monotonic()
        if now - self.period_start >= self.period_s:
            if self.left_out:
                log.warning("%d more like it in the last %.0f s, not logged",
                            self.left_out, now - self.period_start)
            self.period_start, self.logged, self.left_out = now, 0, 0

    def warning(self, message: str, *args: object) -> None:
        self.roll()
        if self.logged < self.burst:
            self.logged += 1
            log.warning(message, *args)
        else:
            self.left_out += 1


def _limit_descriptors() -> None:
    """Set the soft descriptor limit to MAX_DESCRIPTORS (or the hard limit, if lower):
    raised, so that idle connections run out of descriptors late; lowered, so that the
    connections in total stay capped."""
    try:
        import resource
    except ImportError:  # Windows
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = MAX_DESCRIPTORS if hard == resource.RLIM_INFINITY else min(hard, MAX_DESCRIPTORS)
    if soft != wanted:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def _ref(request: object) -> str | int | None:
    """The request's `ref`, echoed in the answer when it is a plain id."""
    ref = request.get("ref") if isinstance(request, dict) else None
    return ref if isinstance(ref, (str, int)) else None


def _pid() -> int:
    return os.getpid()


def _job_settings(raw: object, defend: str) -> tuple[CloakSettings, str, str | None]:
    """A job's cloak settings, profile and target from its settings map; `defend`: the
    extractors to defend against when the job does not say (the daemon's own)."""
    if not isinstance(raw, dict):
        raise ProtocolError("malformed", "'settings' must be a map")
    values = {}
    for name, types in SETTING_FIELDS.items():  # unknown fields are ignored (newer clients)
        if name in raw:
            if not isinstance(raw[name], types) or isinstance(raw[name], bool):
                raise ProtocolError("malformed", f"setting '{name}' has the wrong type")
            values[name] = raw[name]
    profile = values.pop(options.PROFILE.name, options.PROFILE.default)
    target = values.pop(options.TARGET.name, options.TARGET.default)
    cloaking = {options.DEFEND.name: defend,
                **{name: value for name, value in values.items()
                   if options.BY_NAME[name].cloak}}
    try:
        return CloakSettings(**cloaking), profile, target
    except ValueError as error:
        raise ProtocolError("bad-settings", str(error)) from None


def serve(bundle: ModelBundle, idle_exit_s: float | None = None,
          max_layer_bytes: int = protocol.MAX_LAYER_BYTES) -> None:
    """Run a daemon in this process until SIGTERM, SIGINT, a stop message or idle exit."""
    daemon = Daemon(bundle, idle_exit_s=idle_exit_s, max_layer_bytes=max_layer_bytes)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: daemon.stop())
    daemon.run()
