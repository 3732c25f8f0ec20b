import json
import os
import re
import signal
import sys
from pathlib import Path

import daemon_helpers
import numpy as np
import pytest

from glaze.daemon.client import Client
from glaze.daemon.connection import FILE_NAME, pid_alive
from glaze.engine import taef2
from glaze.engine.models import demo_bundle

pytest_plugins = ["pytester"]  # test_daemon_helpers.py runs a leaking test session
SCREENSHOTS = "GLAZE_HOST_SCREENSHOTS"


def pytest_addoption(parser):
    parser.addoption("--host-screenshots", metavar="DIR", default=os.environ.get(SCREENSHOTS),
                     help="save a screenshot of the Glaze dialog in each Krita and GIMP "
                          f"version into DIR (default: ${SCREENSHOTS})")


@pytest.fixture(scope="session")
def host_screenshots(pytestconfig) -> Path | None:
    """Where to save the host programs' screenshots (--host-screenshots), or None."""
    folder = pytestconfig.getoption("host_screenshots")
    if not folder:
        return None
    path = Path(folder).resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def taef2_weights() -> Path:
    """TAEF2's folder (shared/weights beside the repository or a parent of it, or
    $GLAZE_TAEF2_WEIGHTS); in CI a missing one fails, elsewhere the test is skipped."""
    folder = taef2.find_weights(Path(__file__))
    if folder is None or not (folder / taef2.ENCODER_FILE).is_file():
        message = (f"TAEF2's weights are not in shared/weights beside {Path(__file__).parent}"
                   f" or its parents, nor at $GLAZE_TAEF2_WEIGHTS ({folder})")
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return folder


@pytest.fixture(scope="session")
def bundle():
    """The demo bundle (tiny random models, no protection), built once per test run."""
    return demo_bundle()


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    """A real demo daemon process, shared by a module's tests."""
    process = daemon_helpers.DaemonProcess(tmp_path_factory.mktemp("daemon"))
    yield process
    process.stop()


@pytest.fixture
def client(daemon):
    """A client connected to the module's daemon."""
    with Client(daemon.info) as connected:
        yield connected


@pytest.fixture(autouse=True)
def user_folders(tmp_path, monkeypatch):
    """Profiles and caches in a fresh folder per test, never the user's own."""
    monkeypatch.setenv("GLAZE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("GLAZE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("GLAZE_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("GLAZE_CONFIG_DIR", str(tmp_path / "config"))


@pytest.fixture(scope="session", autouse=True)
def no_daemon_left_behind(tmp_path_factory):
    """Fail the run if a daemon a test started outlives the tests (after killing it).

    Torn down last, after every module's fixtures have stopped their daemons. Finds the
    processes DaemonProcess launched, and the daemons `glaze daemon start` detached, by the
    connection files they write into the tests' temporary state folders."""
    yield
    leftovers = {}
    for process in daemon_helpers.LAUNCHED:
        if process.poll() is None:
            leftovers[process.pid] = " ".join(map(str, process.args))
            process.kill()
            process.wait()
    for path in tmp_path_factory.getbasetemp().rglob(FILE_NAME):
        pid = _connection_pid(path)
        command = _daemon_command(pid) if pid and pid not in leftovers else None
        if command is not None:
            leftovers[pid] = command
            os.kill(pid, getattr(signal, "SIGKILL", signal.SIGTERM))
    if leftovers:
        pytest.fail("daemons still running after the tests (now killed): " + "; ".join(
            f"pid {pid}: {command}" for pid, command in sorted(leftovers.items())),
            pytrace=False)


def _connection_pid(path: Path) -> int | None:
    try:
        pid = json.loads(path.read_text())["pid"]
    except (OSError, ValueError, TypeError, KeyError):
        return None
    return pid if isinstance(pid, int) else None


def _daemon_command(pid: int) -> str | None:
    """The command line of live process `pid` if it is a Glaze daemon, else None. Where
    there is no /proc, a live pid in a connection file written during this run is taken
    as the daemon's."""
    if not pid_alive(pid):
        return None
    if not sys.platform.startswith("linux"):
        return f"(the daemon of a connection file; command line not read on {sys.platform})"
    try:
        words = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return None
    # A pid reused since by another program is not ours to kill.
    return " ".join(words).strip() if "glaze" in words and "daemon" in words else None


def painting(height: int, width: int, channels: int = 3, dtype=np.uint8,
             seed: int = 0) -> np.ndarray:
    """A smooth, colourful test image (gradients plus blobs) in the given format."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    rgb = np.stack([x / width, y / height, 0.5 + 0.3 * np.sin(x / 17 + y / 23)], axis=-1)
    for _ in range(6):
        cy, cx, r = rng.uniform(0, height), rng.uniform(0, width), rng.uniform(10, 60)
        blob = np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * r * r))[..., None]
        rgb = rgb * (1 - blob) + blob * rng.uniform(0, 1, 3)
    image = np.clip(rgb, 0, 1)
    if channels == 4:
        alpha = np.clip(x / width * 1.5, 0, 1)[..., None]  # a ramp, 0 on the left edge
        image = np.concatenate([image, alpha], axis=-1)
    if np.dtype(dtype).kind == "u":
        return np.rint(image * np.iinfo(dtype).max).astype(dtype)
    return image.astype(dtype)


def times_left(text: str) -> list[int]:
    """The times left, in seconds, that a cloak's step messages in `text` give in turn."""
    return [int(found[1]) * (60 if found[2] == "min" else 1) for found in
            re.finditer(r"cloak step \d+ [^\n]*?about (\d+) (s|min) left", text)]
