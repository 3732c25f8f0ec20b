"""The connection file: how clients find the daemon and the key that signs its messages.

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

FILE_NAME = "daemon.json"
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


def pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    if sys.platform == "win32":
        import ctypes

        handle = ctypes.windll.kernel32.OpenProcess(0x1000, False, pid)  # query-limited
        if handle:
            ctypes.windll.kernel32.CloseHandle(handle)
        return bool(handle)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_connection(pid: int, path: Path | None = None) -> None:
    """Remove the file if it still belongs to daemon `pid`."""
    path = path or connection_path()
    info = read_connection(path)
    if info is not None and info.pid == pid:
        path.unlink(missing_ok=True)
