"""The connection file: how clients find the daemon, the key that signs its messages and
the public key its transport is encrypted to; and the start lock, which says whether that
file's daemon still runs.

Written readable by its owner only from the moment it exists (never chmod-ed afterwards).
Standard library and platformdirs only.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import platformdirs

try:  # the plug-ins' vendored client carries it beside this module
    from .processes import pid_alive
except ImportError:
    from glaze.processes import pid_alive  # noqa: F401  (the client and control use it)

FILE_NAME = "daemon.json"
LOCK_NAME = "daemon.lock"
LOADING_NAME = "daemon.loading.json"  # a starting daemon's progress in loading its models
# Written beside this module by `glaze install` into each plug-in's copy of the client: how
# to start this installation's daemon and where it keeps its connection file (a sandboxed
# host, e.g. a Flatpak, has per-application folders of its own).
INSTALLATION_FILE = "installation.json"


@dataclass(frozen=True)
class ConnectionInfo:
    endpoint: str  # tcp://127.0.0.1:PORT
    key: str  # hex; signs every message both ways
    pid: int
    protocol: int
    version: str
    bundle: str
    # Z85: the daemon's CURVE public key, without which no handshake succeeds (protocol 3;
    # empty in an older daemon's file, which the client then refuses by its protocol).
    server_key: str = ""

    @property
    def key_bytes(self) -> bytes:
        return bytes.fromhex(self.key)


def installation() -> dict:
    """What `glaze install` recorded for this copy of the client ({} when run in place)."""
    try:
        with open(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                               INSTALLATION_FILE)) as file:
            found = json.load(file)
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def state_dir() -> Path:
    """Where the connection file lives: $GLAZE_STATE_DIR, else the folder the installer
    recorded, else the per-user default."""
    return Path(os.environ.get("GLAZE_STATE_DIR") or installation().get("state_dir")
                or platformdirs.user_state_dir("glaze", False))


def private_folder(folder: Path) -> Path:
    """`folder`, created owner-only (0700), or tightened to it if an older version made it
    readable by others: the connection file's key and the log's endpoints are the user's."""
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    if sys.platform != "win32" and folder.stat().st_mode & 0o077:
        folder.chmod(0o700)
    return folder


def connection_path() -> Path:
    return state_dir() / FILE_NAME


def new_key() -> str:
    return secrets.token_hex(32)


def write_connection(info: ConnectionInfo, path: Path | None = None) -> Path:
    """Write the file atomically, owner-only (0600) from creation."""
    path = path or connection_path()
    private_folder(path.parent)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.part")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    handle = os.open(temporary, flags, 0o600)
    try:
        with os.fdopen(handle, "w") as stream:
            json.dump(asdict(info), stream)
        if sys.platform == "win32":
            _restrict_to_owner_on_windows(temporary)
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()
    return path


def _restrict_to_owner_on_windows(path: Path) -> None:
    """Best effort: drop inherited permissions and grant only the current user."""
    import subprocess

    user = os.environ.get("USERNAME", "")
    if user:
        subprocess.run(["icacls", str(path), "/inheritance:r", "/grant:r", f"{user}:F"],
                       capture_output=True, check=False)


def read_connection(path: Path | None = None) -> ConnectionInfo | None:
    """The connection file's contents, or None if there is none or it is unreadable."""
    path = path or connection_path()
    try:
        return ConnectionInfo(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None


def write_loading(fraction: float, message: str) -> None:
    """This process's progress in loading its models, for the dialogs to show (it holds
    the start lock and has not written its connection file yet)."""
    path = private_folder(state_dir()) / LOADING_NAME
    temporary = path.with_name(f".{path.name}.{os.getpid()}.part")
    temporary.write_text(json.dumps({"pid": os.getpid(), "fraction": round(fraction, 3),
                                     "message": message}))
    os.replace(temporary, path)


def read_loading() -> dict | None:
    """The starting daemon's progress ({"pid", "fraction", "message"}) while the process
    that wrote it holds the start lock; None otherwise."""
    try:
        found = json.loads((state_dir() / LOADING_NAME).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(found, dict) or not isinstance(found.get("fraction"), (int, float)):
        return None
    return found if StartLock().holder() == found.get("pid") else None


def remove_loading() -> None:
    (state_dir() / LOADING_NAME).unlink(missing_ok=True)


class StartLock:
    """An exclusive lock on `daemon.lock`, taken before a daemon loads its models and held
    until it exits: of two concurrent starts one gets it and the other reports that one.
    The operating system releases it when its holder dies, however it dies, so a free lock
    means the connection file is stale even when its pid now names another process."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or state_dir() / LOCK_NAME
        self._handle: int | None = None  # open while held: the process's exit releases it

    def acquire(self) -> bool:
        """Take the lock for this process; False if another holds it."""
        private_folder(self.path.parent)
        handle = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        if not _try_lock(handle):
            os.close(handle)
            return False
        os.lseek(handle, _PID_OFFSET, os.SEEK_SET)
        os.write(handle, f"{os.getpid():<20}".encode())
        self._handle = handle
        return True

    def holder(self) -> int | None:
        """The pid of the process holding the lock, or None if it is free."""
        try:
            handle = os.open(self.path, os.O_RDWR)
        except OSError:
            return None
        try:
            if _try_lock(handle):
                return None  # closing the handle below releases it again
            os.lseek(handle, _PID_OFFSET, os.SEEK_SET)
            written = os.read(handle, 20).strip()
            return int(written) if written.isdigit() else 0
        finally:
            os.close(handle)


_PID_OFFSET = 16  # the holder's pid is written past the locked byte (Windows locks bytes)


def _try_lock(handle: int) -> bool:
    if sys.platform == "win32":
        import msvcrt

        os.lseek(handle, 0, os.SEEK_SET)
        try:
            msvcrt.locking(handle, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    import fcntl

    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


def live_connection() -> ConnectionInfo | None:
    """The connection file, if the daemon it names still holds the start lock."""
    info = read_connection()
    if info is None or StartLock().holder() != info.pid:
        return None
    return info


def remove_connection(pid: int, path: Path | None = None) -> None:
    """Remove the file if it still belongs to daemon `pid`."""
    path = path or connection_path()
    info = read_connection(path)
    if info is not None and info.pid == pid:
        path.unlink(missing_ok=True)
