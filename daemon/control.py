"""Starting, stopping and finding the daemon process (used by `glaze daemon ...`)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

from .client import START_TIMEOUT_S, Client, DaemonError, DaemonUnavailable
from .connection import (
    ConnectionInfo,
    StartLock,
    connection_path,
    pid_alive,
    private_folder,
    read_connection,
    read_loading,
    state_dir,
)

# `glaze daemon start --foreground` exits with this when another daemon holds the lock.
LOCK_HELD_EXIT = 3


@dataclass(frozen=True)
class Found:
    """What the state folder says about the daemon."""

    running: ConnectionInfo | None = None  # its file, written by the lock's holder
    starting: int | None = None  # the pid holding the lock that has not written its file
    loading: dict | None = None  # how far that one is in loading its models
    stale: ConnectionInfo | None = None  # a file no live daemon holds, now removed

    def describe(self) -> str:
        if self.running is not None:
            info = self.running
            return (f"the Glaze daemon is running: pid {info.pid}, {info.endpoint}, "
                    f"bundle {info.bundle}")
        if self.starting is not None:
            said = f"the Glaze daemon is starting (pid {self.starting}, loading its models"
            if self.loading is not None:
                said += f": {self.loading['fraction']:.0%} ({self.loading.get('message')})"
            return said + ")"
        said = "the Glaze daemon is not running"
        if self.stale is not None:
            said += (f" (removed a stale connection file: pid {self.stale.pid} no longer "
                     "runs a Glaze daemon)")
        return said


def find() -> Found:
    """Look for the daemon. Its file is trusted only while its pid holds the start lock:
    a daemon that died, even one whose pid now names another process, holds no lock."""
    holder = StartLock().holder()
    info = read_connection()
    if holder is not None:
        if info is not None and info.pid == holder:
            return Found(running=info)
        return Found(starting=holder, loading=read_loading())
    connection_path().unlink(missing_ok=True)
    return Found(stale=info)


def running() -> ConnectionInfo | None:
    """The live daemon's connection info (a stale file is removed)."""
    return find().running


def wait_until_running(timeout: float = START_TIMEOUT_S) -> ConnectionInfo:
    """The connection file of the daemon another start is starting, once it answers."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = find()
        if found.running is not None:
            with Client(found.running):
                return found.running
        if found.starting is None:  # the lock is free: that start failed
            raise DaemonUnavailable(f"the daemon exited at start; see {log_path()}")
        time.sleep(0.1)
    raise DaemonUnavailable(f"the daemon did not start within {timeout:.0f} s; "
                            f"see {log_path()}")


def log_path():
    return state_dir() / "daemon.log"


def start_background(options: Sequence[str], timeout: float = START_TIMEOUT_S
                     ) -> tuple[ConnectionInfo, bool]:
    """Start `glaze daemon start --foreground OPTIONS` detached; return once it answers,
    with whether it is the one started here (False: a concurrent start won the lock)."""
    private_folder(state_dir())
    log = log_path()
    command = [sys.executable, "-m", "glaze", "daemon", "start", "--foreground", *options]
    detach = ({"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP
               | subprocess.DETACHED_PROCESS} if sys.platform == "win32"
              else {"start_new_session": True})
    # Owner-only from creation (0600): the log names the endpoint and the jobs.
    descriptor = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    if sys.platform != "win32":
        os.fchmod(descriptor, 0o600)  # a log an older version made readable by others
    with os.fdopen(descriptor, "ab") as output:
        child = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=output,
                                 stderr=output, **detach)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child.poll() is not None:
            if child.returncode != LOCK_HELD_EXIT:
                raise DaemonUnavailable(f"the daemon exited at start (code "
                                        f"{child.returncode}); see {log}")
            return wait_until_running(deadline - time.monotonic()), False
        info = read_connection()
        if info is not None and info.pid == child.pid:
            with Client(info):
                return info, True
        time.sleep(0.1)
    child.terminate()
    raise DaemonUnavailable(f"the daemon did not start within {timeout:.0f} s; see {log}")


def stop(timeout: float = 30.0) -> ConnectionInfo | None:
    """Ask the running daemon to stop; terminate it if it does not. None if none ran."""
    info = running()
    if info is None:
        return None
    try:
        with Client(info, timeout=5.0) as client:
            client.stop_daemon()
    except DaemonError:
        os.kill(info.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while pid_alive(info.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if pid_alive(info.pid):
        os.kill(info.pid, signal.SIGKILL if hasattr(signal, "SIGKILL") else signal.SIGTERM)
    return info
