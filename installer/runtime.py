"""The client runtime each plug-in carries in its own `vendor` folder: the shared Glaze
client plus pyzmq, msgpack and platformdirs built for the host program's Python."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from importlib.resources import files
from pathlib import Path

from glaze.daemon.connection import INSTALLATION_FILE

from .hostpython import HostPython

# The client's modules, from glaze.daemon, and the standard-library modules it shares with
# the engine, from glaze (options.STYLES_FILE is the options' data file).
CLIENT_MODULES = ("__init__.py", "protocol.py", "connection.py", "client.py")
SHARED_MODULES = ("options.py", "processes.py", "stamp.py", "target_styles.txt")
CLIENT_PACKAGE = "glaze_client"
REQUIREMENTS = ("pyzmq>=25", "msgpack>=1.0", "platformdirs>=4")


class VendorError(RuntimeError):
    """pip could not fetch the client's dependencies for a host's Python."""


def fetch_dependencies(host: HostPython, into: Path) -> None:
    """pip-install the client's dependencies for `host` (not for this Python) into `into`."""
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
               "--no-cache-dir", "--no-compile", "--target", str(into), "--only-binary=:all:",
               "--implementation", "cp", "--python-version", host.version,
               "--abi", host.abi, "--abi", "abi3", "--abi", "none"]
    for tag in host.platforms:
        command += ["--platform", tag]
    done = subprocess.run([*command, *REQUIREMENTS], capture_output=True, text=True)
    if done.returncode != 0:
        raise VendorError(f"pip could not fetch {', '.join(REQUIREMENTS)} for Python "
                            f"{host.version} ({host.platforms[0]}):\n{done.stderr.strip()}")
    # Console scripts are made for this machine's Python; the plug-ins need none.
    shutil.rmtree(into / "bin", ignore_errors=True)


def runtime_key(host: HostPython) -> str:
    """What a vendored runtime depends on: the host's Python, its wheel tags and our
    requirements. An installed runtime with the same key can be reused as it is."""
    text = json.dumps([host.version, host.abi, list(host.platforms), list(REQUIREMENTS)])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def reuse_dependencies(installed: Path, into: Path, intact: Callable[[Path], bool]) -> bool:
    """Copy an installed runtime's dependencies (not its client, which is rebuilt) into
    `into`, if every file is as the installer wrote it; False (nothing copied) otherwise."""
    def ours(path: Path) -> bool:
        parts = path.relative_to(installed).parts
        return parts[0] != CLIENT_PACKAGE and "__pycache__" not in parts

    found = [path for path in installed.rglob("*") if path.is_file() and ours(path)]
    if not found or not all(intact(path) for path in found):
        return False
    for path in found:
        copy = into / path.relative_to(installed)
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, copy)
    return True


def copy_client(into: Path, installation: dict) -> None:
    """The shared client (stdlib + pyzmq + msgpack + platformdirs) as `glaze_client`, with
    what it needs to know of this installation (how to start the daemon, where it is)."""
    package = into / CLIENT_PACKAGE
    package.mkdir(parents=True, exist_ok=True)
    for source, names in ((files("glaze.daemon"), CLIENT_MODULES),
                          (files("glaze"), SHARED_MODULES)):
        for name in names:
            (package / name).write_bytes((source / name).read_bytes())
    (package / INSTALLATION_FILE).write_text(json.dumps(installation, indent=2) + "\n")


def build_runtime(host: HostPython, into: Path, installation: dict,
                  installed: Path | None = None,
                  intact: Callable[[Path], bool] = lambda path: False) -> bool:
    """A complete vendor folder for one host Python: the dependencies of an `installed`
    runtime of the same key where they are intact (no pip, no network), else fetched.
    Returns whether they were reused."""
    reused = installed is not None and installed.is_dir() and \
        reuse_dependencies(installed, into, intact)
    if not reused:
        fetch_dependencies(host, into)
    copy_client(into, installation)
    return reused
