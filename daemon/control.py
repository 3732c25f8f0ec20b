"""Starting, stopping and finding the daemon process (used by `glaze daemon ...`)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence

from .client import Client, DaemonError, DaemonUnavailable
from .connection import (
    ConnectionInfo,
    connection_path,
    pid_alive,
    private_folder,
    read_connection,
    state_dir,
)


def running() -> ConnectionInfo | None:
    """The live daemon's connection info; a stale file (dead pid) is removed."""
    info = read_connection()
    if info is None:
        return None
    if pid_alive(info.pid):
        return info
    connection_path().unlink(missing_ok=True)
    return None


def log_path():
    return state_dir() / "daemon.log"


def start_background(options: Sequence[str], timeout: float = 300.0) -> ConnectionInfo:
    """Start `glaze daemon start --foreground OPTIONS` detached; return once it answers."""
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
            raise DaemonUnavailable(f"the daemon exited at start (code {child.returncode}); "
                                    f"see {log}")
        info = read_connection()
        if info is not None and info.pid == child.pid:
            with Client(info):
                return info
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
