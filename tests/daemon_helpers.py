"""Starting real daemon processes for tests, each with its own state folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from timing import scaled

from glaze.daemon.connection import LOADING_NAME, ConnectionInfo, read_connection
from glaze.engine.pixels import SAMPLE_TYPES

TARGET = "Baroque painting by Caravaggio"
FAST = {"quality": 2, "work_size": 64, "target": TARGET}


# A daemon whose models never finish loading: it stays at its feature extractors (1/3).
HELD_IN_LOADING = ("import sys, time, glaze.engine.models as models; "
                   "models.demo_extractors = lambda *args, **kwargs: time.sleep(3600); "
                   "from glaze.cli import main; sys.exit(main(sys.argv[1:]))")

# Every process a DaemonProcess launched, for the end-of-session check in conftest.py.
LAUNCHED: list[subprocess.Popen] = []


class DaemonProcess:
    """`glaze daemon start --foreground --model demo OPTIONS` in its own folders (its
    settings file holds `settings`, none by default); returns once the daemon has written
    its connection file. `command` replaces the whole command line (a test of the helper
    itself); `start_timeout` defaults to 120 s, scaled. `held_in_loading`: a daemon that
    never finishes loading its models; returns once it says how far it is (`loading`)."""

    def __init__(self, folder: Path, *options: str, command: Sequence[str] | None = None,
                 start_timeout: float | None = None, settings: dict | None = None,
                 held_in_loading: bool = False) -> None:
        self.folder = folder
        self.env = dict(os.environ, GLAZE_STATE_DIR=str(folder / "state"),
                        GLAZE_DATA_DIR=str(folder / "data"),
                        GLAZE_CACHE_DIR=str(folder / "cache"),
                        GLAZE_CONFIG_DIR=str(folder / "config"))
        if settings is not None:
            (folder / "config").mkdir(parents=True, exist_ok=True)
            (folder / "config" / "config.json").write_text(json.dumps(settings))
        self.log = open(folder / "daemon.log", "wb")  # noqa: SIM115 (closed in stop)
        start = ["-c", HELD_IN_LOADING] if held_in_loading else ["-m", "glaze"]
        self.process = subprocess.Popen(
            list(command) if command is not None else
            [sys.executable, *start, "daemon", "start", "--foreground", "--model", "demo",
             *options], env=self.env, stdout=self.log, stderr=subprocess.STDOUT)
        LAUNCHED.append(self.process)
        timeout = scaled(120.0) if start_timeout is None else start_timeout
        try:
            if held_in_loading:
                self.loading = self._wait_for(self._loading, "report its loading", timeout)
            else:
                self.info = self._wait_for(self._connection,
                                           f"write {self.connection_file}", timeout)
        except BaseException:
            self.stop()  # nobody else holds this object to stop it
            raise

    @property
    def connection_file(self) -> Path:
        return self.folder / "state" / "daemon.json"

    def _connection(self) -> ConnectionInfo | None:
        info = read_connection(self.connection_file)
        return info if info is not None and info.pid == self.process.pid else None

    def _loading(self) -> dict | None:
        try:
            found = json.loads((self.folder / "state" / LOADING_NAME).read_text())
        except (OSError, ValueError):
            return None
        return found if found.get("fraction", 0) > 0 else None

    def _wait_for(self, ready, what: str, timeout: float):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = ready()
            if found is not None:
                return found
            if self.process.poll() is not None:
                raise RuntimeError(f"daemon exited: {(self.folder / 'daemon.log').read_text()}")
            time.sleep(0.05)
        raise RuntimeError(f"daemon (pid {self.process.pid}) did not {what} within "
                           f"{timeout:.1f} s; killed it")

    def peak_rss_kib(self) -> int:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
        raise RuntimeError("no VmHWM")

    def stop(self) -> None:
        """Terminate the daemon (kill it if it does not exit), wait for it, close its log."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=scaled(30))
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


def layer(width: int, height: int, sample: str, order: str, seed: int = 0,
          padding: int = 0) -> tuple[bytes, np.ndarray]:
    """A test layer as a host would send it, and its RGBA samples (for checking)."""
    rng = np.random.default_rng(seed)
    dtype = SAMPLE_TYPES[sample]
    if dtype.kind == "u":
        rgba = rng.integers(0, np.iinfo(dtype).max, (height, width, 4), endpoint=True)
    else:
        rgba = rng.random((height, width, 4))
    rgba = rgba.astype(dtype)
    channels = rgba[..., [2, 1, 0, 3]] if order == "BGRA" else rgba
    rows = np.ascontiguousarray(channels).view(np.uint8).reshape(height, -1)
    padded = np.concatenate([rows, np.full((height, padding), 0xAB, np.uint8)], axis=1)
    return padded.tobytes(), rgba


def decode(data, width: int, height: int, sample: str, order: str,
           padding: int = 0) -> np.ndarray:
    """The RGBA samples of a buffer sent back by the daemon."""
    dtype = SAMPLE_TYPES[sample]
    rows = np.frombuffer(data, np.uint8).reshape(height, -1)[:, :rows_bytes(width, dtype)]
    pixels = rows.copy().view(dtype).reshape(height, width, 4)
    return pixels[..., [2, 1, 0, 3]] if order == "BGRA" else pixels


def rows_bytes(width: int, dtype: np.dtype) -> int:
    return width * 4 * dtype.itemsize
