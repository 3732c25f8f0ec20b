"""The client of the Glaze daemon, shared by the Krita and GIMP plug-ins and the CLI.

Standard library, pyzmq, msgpack and platformdirs only (no numpy, no torch), Python 3.10+:

    client = Client.connect(autostart=True)
    job = client.submit(pixels, layout_for(width, height, "BGRA", "u8"), {"intensity": "low"})
    data, result = job.result(on_progress=lambda fraction, message: ...)
    client.close()
"""

from __future__ import annotations

import importlib.util
import os
import secrets
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import zmq

from . import protocol

try:  # the plug-ins' vendored client carries it beside this module
    from . import options
except ImportError:
    from glaze import options
from .connection import (
    ConnectionInfo,
    StartLock,
    installation,
    live_connection,
    pid_alive,
    read_loading,
)
from .protocol import ProtocolError, layout_for

__all__ = ["Client", "DaemonError", "DaemonState", "DaemonUnavailable", "JobCancelled",
           "JobFailed", "ProtocolMismatch", "RequestRejected", "daemon_state", "layout_for"]

HEARTBEAT_S = 0.25
DEFAULT_TIMEOUT_S = 10.0  # daemon silence tolerated before giving up
START_TIMEOUT_S = 300.0  # first start loads the models: it may take minutes


class DaemonError(Exception):
    """Talking to the daemon failed; the message is meant for the user."""


class DaemonUnavailable(DaemonError):
    """The daemon is not running, could not be started, or stopped answering."""


class ProtocolMismatch(DaemonError):
    """The daemon speaks another protocol version: update Glaze and its plug-ins together."""


class RequestRejected(DaemonError):
    """The daemon refused a request; `code` says why in a word."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class JobFailed(DaemonError):
    """The daemon could not cloak the image."""


class JobCancelled(DaemonError):
    """The job was cancelled (by the user, or because the daemon stopped)."""


def shifts_text(report: dict) -> str:
    """Each defended extractor's feature shift, then the same after a typical upload (the
    figure `incomplete` is judged by): "SD 41%, SDXL 38%; after a typical upload SD 30%,
    SDXL 12% (short)". A report from an older daemon gives what it has."""
    shifts = report.get("extractors")
    if not isinstance(shifts, dict) or not shifts:
        return f"{report.get('relative_shift', 0):.0%}"
    text = ", ".join(f"{name.upper()} {shift.get('relative_shift', 0):.0%}"
                     for name, shift in shifts.items())
    if all("after_upload" in shift for shift in shifts.values()):
        text += "; after a typical upload " + ", ".join(
            f"{name.upper()} {shift['after_upload']:.0%}"
            + (" (short)" if shift.get("incomplete") else "") for name, shift in shifts.items())
    return text


# Past these a change may show where a painter looks (engine/visibility.py's figures).
VISIBLE_OVER_JND, FLAT_SSIM_CLEAN = 0.01, 0.98


def visibility_text(report: dict, with_psnr: bool = True) -> str:
    """How visible the cloak is: "0.0% of pixels over their just-noticeable difference, flat
    areas SSIM 0.985, PSNR 39.8 dB", with a warning where it may show. A report without the
    figures (an older daemon) gives ""."""
    figures = report.get("visibility")
    if not figures:
        return ""
    flat_ssim = figures.get("flat_ssim")
    text = f"{figures['over_jnd']:.1%} of pixels over their just-noticeable difference"
    if flat_ssim is not None:
        text += f", flat areas SSIM {flat_ssim:.3f}"
    if with_psnr and report.get("psnr") is not None:
        text += f", PSNR {report['psnr']:.1f} dB"
    if figures["over_jnd"] > VISIBLE_OVER_JND or (flat_ssim is not None
                                                   and flat_ssim < FLAT_SSIM_CLEAN):
        text += " (may be visible)"
    return text


# Why a cloak stopped (engine/stopping.py's reasons), as the user is told.
STOPPED = {"goal": "reached its goal", "plateau": "stopped where the shift stopped growing",
           "cap": "ran its most steps", "cancelled": "was finished early on request"}


def stopping_text(report: dict) -> str:
    """Why the run ended and what it took: "reached its goal (40%) in 84 steps, 260 encoder
    passes", and the step whose cloak it kept where that is not the last. A report from an
    older daemon gives ""."""
    reason = STOPPED.get(report.get("stopped"))
    if reason is None:
        return ""
    text = reason
    if report.get("goal") is not None:
        text += f" ({report['goal']:.0%})" if report["stopped"] == "goal" else (
            f", short of its goal ({report['goal']:.0%})")
    steps = report.get("steps_run", 0)
    text += f" in {steps} steps"
    if report.get("kept_step", steps) < steps:
        text += f", keeping step {report['kept_step']}'s cloak, the best of its last checks"
    return f"{text}, {report.get('encoder_passes', 0)} encoder passes"


def describe(result: dict) -> str:
    """What the user is told about a finished job: its target, how far the style moved for
    each defended model family, and any warning (a shift that fell short; models that give
    no protection)."""
    report = result.get("report", {})
    lines = [f"Glazed toward \u201c{result.get('target_style', report.get('target_style'))}"
             f"\u201d (feature shift {shifts_text(report)})."]
    if visible := visibility_text(report):
        lines.append(f"Visibility: {visible}.")
    if stopped := stopping_text(report):
        lines.append(f"The cloak {stopped}.")
    if report.get("incomplete"):
        lines.append("The style shift fell short for a defended model family: this image "
                     "is only partly protected.")
    if report.get("protection_note"):
        lines.append(report["protection_note"] + ".")
    return "\n".join(lines)


def keep_sheet(sheet: bytes, stem: str) -> str:
    """A `preview` job's sheet (a PNG) written to a fresh temporary folder as
    STEM.preview.png, where a painting program opens it from; its path."""
    path = os.path.join(tempfile.mkdtemp(prefix="glaze-"), options.preview_name(stem))
    with open(path, "wb") as out:
        out.write(sheet)
    return path


def left_out_lines(left_out: dict) -> list[str]:
    """A preview's families without a row, a line each, saying why."""
    return [f"No {family.upper()} row: {why}." for family, why in left_out.items()]


def default_start_command() -> list[str]:
    """How to start the daemon: $GLAZE_DAEMON_COMMAND, else the command the installer
    recorded, else this Python's `glaze` when it has one, else `glaze` on the PATH (inside a
    painting program, sys.executable is the program itself, not a Python)."""
    command = os.environ.get("GLAZE_DAEMON_COMMAND")
    if command:
        return shlex.split(command)
    recorded = installation().get("start_command")
    if recorded:
        return list(recorded)
    is_python = os.path.basename(sys.executable).lower().startswith("python")
    if is_python and importlib.util.find_spec("glaze.engine") is not None:
        return [sys.executable, "-m", "glaze", "daemon", "start"]
    installed = shutil.which("glaze")
    if installed:
        return [installed, "daemon", "start"]
    raise DaemonUnavailable("the Glaze daemon is not running and this program does not know "
                            "how to start it: run `glaze daemon start`, or set "
                            "GLAZE_DAEMON_COMMAND to the command that starts it")


def start_daemon(command: list[str] | None = None,
                 timeout: float = START_TIMEOUT_S) -> ConnectionInfo:
    """Run the start command (which returns once the daemon answers) and read its file."""
    command = command or default_start_command()
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise DaemonUnavailable(f"could not start the Glaze daemon ({error})") from None
    info = live_connection()
    if done.returncode != 0 or info is None:
        said = (done.stderr or done.stdout).strip().splitlines()[-1:]
        detail = said[0] if said else f"`{shlex.join(command)}` exited with code " \
                                      f"{done.returncode}"
        raise DaemonUnavailable(f"could not start the Glaze daemon: {detail}")
    return info


@dataclass(frozen=True)
class DaemonState:
    """What a dialog says of the daemon as it opens: one line for the user, and the presets
    to list (the running daemon's, {} for the declared ones)."""

    text: str
    options: dict
    loading: bool = False  # still loading its models: ask again for its progress


BUILT_IN = "the lists show the built-in presets"


def daemon_state(timeout: float = 1.0) -> DaemonState:
    """The daemon's state for a dialog: ready (with the presets it advertises), loading its
    models (how far), or not running; never starts one. A daemon that does not answer
    within `timeout` is said to be busy, never passed over in silence."""
    info = live_connection()
    if info is None:
        loading = read_loading()
        if loading is not None:
            return DaemonState(f"Glaze daemon: loading models, {loading['fraction']:.0%} "
                               f"({loading.get('message', '')}); {BUILT_IN} until it is "
                               "ready", {}, loading=True)
        if StartLock().holder() is not None:
            return DaemonState(f"Glaze daemon: starting; {BUILT_IN} until it is ready", {},
                               loading=True)
        return DaemonState("Glaze daemon: not running; it starts when you glaze (the first "
                           f"start loads the models, which takes a while); {BUILT_IN}", {})
    try:
        with Client(info, timeout=timeout) as client:
            welcome = client.welcome
    except DaemonError as error:
        return DaemonState(f"Glaze daemon: not answering ({error}); {BUILT_IN}", {})
    offered = welcome.get("options")
    models = welcome.get("bundle", info.bundle)
    note = " \u2014 demo models: NO protection" if welcome.get("demo") else ""
    return DaemonState(f"Glaze daemon: ready, serving {models}{note}",
                       offered if isinstance(offered, dict) else {})


def offered_options(timeout: float = 1.0) -> dict:
    """The presets the running daemon advertises in its welcome ({} when none is running,
    it does not answer within `timeout`, or it does not say): dialogs show these, so that an
    older plug-in lists what a newer daemon understands. Never starts a daemon."""
    return daemon_state(timeout).options


def connected_socket(context: zmq.Context, info: ConnectionInfo) -> zmq.Socket:
    """A DEALER connected to the daemon over CURVE: encrypted to the daemon's public key
    from the connection file (a peer without it cannot complete the handshake), with a
    throwaway key pair of this socket's own."""
    if not zmq.has("curve"):
        raise DaemonUnavailable("this pyzmq was built without CURVE encryption, which the "
                                "Glaze daemon requires: install pyzmq from PyPI")
    socket = context.socket(zmq.DEALER)
    socket.setsockopt(zmq.LINGER, 0)
    socket.curve_serverkey = info.server_key.encode("ascii")
    socket.curve_publickey, socket.curve_secretkey = zmq.curve_keypair()
    socket.connect(info.endpoint)
    return socket


def _mismatch(spoken: object) -> str:
    return (f"the daemon speaks protocol {spoken}, this client {protocol.PROTOCOL_VERSION}: "
            "update Glaze and its plug-ins together")


class _Heartbeat(threading.Thread):
    """Pings the daemon from its own socket so that a vanished client is noticed, and
    records when the daemon last answered so that a vanished daemon is noticed too."""

    def __init__(self, context: zmq.Context, info: ConnectionInfo,
                 session: protocol.Session) -> None:
        super().__init__(name="glaze-heartbeat", daemon=True)
        self.context, self.info, self.session = context, info, session
        self.last_answer = time.monotonic()
        self.halt = threading.Event()

    def run(self) -> None:
        socket = connected_socket(self.context, self.info)
        try:
            while not self.halt.is_set():
                socket.send_multipart(self.session.pack({"type": "ping"}))
                deadline = time.monotonic() + HEARTBEAT_S
                while (wait := deadline - time.monotonic()) > 0 and not self.halt.is_set():
                    if socket.poll(int(wait * 1000)):
                        try:
                            self.session.unpack(socket.recv_multipart())
                            self.last_answer = time.monotonic()
                        except ProtocolError:
                            pass
        finally:
            socket.close()


class Client:
    """One connection to the daemon. Use it from one thread."""

    def __init__(self, info: ConnectionInfo, timeout: float = DEFAULT_TIMEOUT_S) -> None:
        self.info, self.timeout = info, timeout
        if info.protocol != protocol.PROTOCOL_VERSION:
            raise ProtocolMismatch(_mismatch(info.protocol))
        # Signs, verifies and stamps our session id on every message, from both sockets.
        self.session = protocol.Session(info.key_bytes, protocol.CLIENT,
                                        session_id=secrets.token_hex(8))
        self.inbox: dict[tuple, deque] = {}
        self.context = zmq.Context.instance()
        self.socket = connected_socket(self.context, info)
        self.heartbeat = _Heartbeat(self.context, info, self.session)
        self.heartbeat.start()
        try:
            self.welcome = self.request({"type": "hello"})
        except DaemonError:
            self.close()
            raise
        if self.welcome.get("protocol") != protocol.PROTOCOL_VERSION:
            self.close()
            raise ProtocolMismatch(_mismatch(self.welcome.get("protocol")))

    @classmethod
    def connect(cls, autostart: bool = False, start_command: list[str] | None = None,
                timeout: float = DEFAULT_TIMEOUT_S) -> Client:
        """Connect to the running daemon; with `autostart`, start one if there is none."""
        info = live_connection()
        if info is not None:
            try:
                return cls(info, timeout)
            except DaemonUnavailable:
                if not autostart:
                    raise
        elif not autostart:
            raise DaemonUnavailable("the Glaze daemon is not running: start it with "
                                    "`glaze daemon start`")
        return cls(start_daemon(start_command), timeout)

    def close(self) -> None:
        self.heartbeat.halt.set()
        self.socket.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- requests ------------------------------------------------------------------------

    def request(self, header: dict, buffers: tuple = ()) -> dict:
        """Send a request and return its answer; raises RequestRejected for an error."""
        return self._request(header, buffers)[0]

    def _request(self, header: dict, buffers: tuple = ()) -> tuple[dict, list]:
        ref = secrets.token_hex(6)
        self._send({**header, "ref": ref}, buffers)
        answer, returned = self._wait(("ref", ref), deadline=time.monotonic() + self.timeout)
        if answer["type"] == "error":
            raise RequestRejected(answer.get("code", "error"), answer.get("message", ""))
        return answer, returned

    def echo(self, buffer) -> bytes | memoryview:
        """Send `buffer` to the daemon and back (signed both ways): a transport check."""
        return self._request({"type": "echo"}, (buffer,))[1][0]

    def status(self) -> dict:
        return self.request({"type": "status"})

    def stop_daemon(self) -> None:
        self.request({"type": "stop"})

    def submit(self, pixels, layout: dict, settings: dict | None = None) -> Job:
        """Queue a cloak job for `pixels` (a bytes-like buffer in `layout`).

        `settings`: intensity, quality, seed, work_size, profile, target (all optional).
        """
        try:
            checked = protocol.check_layout(layout)
        except ProtocolError as error:
            raise RequestRejected(error.code, str(error)) from None
        size = memoryview(pixels).nbytes
        if size != checked["frame_bytes"]:
            raise RequestRejected("malformed", f"the pixel buffer has {size} bytes, its layout "
                                               f"needs {checked['frame_bytes']}")
        answer = self.request({"type": "submit", "pixels": layout, "settings": settings or {}},
                              (pixels,))
        return Job(self, answer["job"])

    def preview(self, job_id: str) -> Job:
        """Queue a preview of a cloak job this daemon finished lately: its result's data is
        a PNG sheet of what each defended family's decoder makes of the original, the
        glazed picture and the target, after a typical upload."""
        return Job(self, self.request({"type": "preview", "job": job_id})["job"])

    # -- the socket ----------------------------------------------------------------------

    def _send(self, header: dict, buffers: tuple = ()) -> None:
        self.socket.send_multipart(self.session.pack(header, buffers), copy=False)

    def _wait(self, key: tuple, deadline: float | None = None) -> tuple[dict, list]:
        """The next message for `key`, keeping others for whoever waits for them."""
        while True:
            box = self.inbox.get(key)
            if box:
                return box.popleft()
            self._check_alive()
            if deadline is not None and time.monotonic() > deadline:
                raise DaemonUnavailable("the Glaze daemon did not answer the request in "
                                        f"{self.timeout:.0f} s")
            if self.socket.poll(int(HEARTBEAT_S * 1000)):
                self._receive()

    def _receive(self) -> None:
        frames = self.socket.recv_multipart(copy=False)
        try:
            header, buffers = self.session.unpack([frame.buffer for frame in frames])
        except ProtocolError:
            return  # not from our daemon: ignore it
        if header.get("ref") is not None:
            key = ("ref", header["ref"])
        elif isinstance(header.get("job"), str):
            key = ("job", header["job"])
        else:
            return
        self.inbox.setdefault(key, deque()).append((header, buffers))

    def _check_alive(self) -> None:
        if not pid_alive(self.info.pid):
            raise DaemonUnavailable("the Glaze daemon exited (see its log for why)")
        silent = time.monotonic() - self.heartbeat.last_answer
        if silent > self.timeout:
            raise DaemonUnavailable(f"the Glaze daemon has not answered for {silent:.0f} s")


class Job:
    """A submitted job: iterate its events, wait for its result, or cancel it."""

    def __init__(self, client: Client, job_id: str) -> None:
        self.client, self.id = client, job_id

    def events(self) -> Iterator[dict]:
        """Progress events, then the final one: result (with "data"), failed or cancelled."""
        while True:
            header, buffers = self.client._wait(("job", self.id))
            if header["type"] == "result":
                header = {**header, "data": buffers[0] if buffers else b""}
            yield header
            if header["type"] in ("result", "failed", "cancelled"):
                return

    def result(self, on_progress: Callable[[float, str], None] | None = None,
               finish: Callable[[], bool] | None = None) -> tuple[bytes | memoryview, dict]:
        """Wait for the cloaked pixels (same layout as sent) and the result message. Once
        `finish()` turns true (it is asked at each event) the cloak is asked, once, to
        finish now."""
        asked = False
        for event in self.events():
            kind = event["type"]
            if finish is not None and not asked and finish():
                asked = True
                self.finish()
            if kind == "progress" and on_progress is not None:
                on_progress(event["fraction"], event["message"])
            elif kind == "result":
                return event["data"], event
            elif kind == "failed":
                raise JobFailed(event.get("error", "the job failed"))
            elif kind == "cancelled":
                raise JobCancelled(event.get("reason", "cancelled"))
        raise DaemonError("the job ended without a result")

    def cancel(self) -> None:
        self.client.request({"type": "cancel", "job": self.id})

    def finish(self) -> bool:
        """End the cloak at its next step with what it has made (its result still comes).
        False where the daemon does not know the job or the request (an older daemon):
        the job then ends as it would have."""
        try:
            self.client.request({"type": "finish", "job": self.id})
        except RequestRejected as error:
            if error.code in ("unknown-job", "unknown-type"):
                return False
            raise
        return True

    def state(self) -> str:
        return self.client.request({"type": "job-state", "job": self.id})["state"]
