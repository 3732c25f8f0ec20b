"""The test helpers that start daemons clean up after themselves."""

import gc
import json
import os
import shutil
import signal
import sys
import warnings
from pathlib import Path

import daemon_helpers
import pytest
from daemon_helpers import DaemonProcess
from timing import scaled

from glaze.daemon.connection import pid_alive

NEVER_STARTS = [sys.executable, "-c", "import time; time.sleep(600)"]  # writes no file


def test_a_daemon_that_does_not_start_in_time_is_killed_and_reaped(tmp_path):
    before = len(daemon_helpers.LAUNCHED)
    with warnings.catch_warnings(record=True) as caught:
        # An unclosed log is only closed when garbage-collected, with a ResourceWarning.
        warnings.simplefilter("always", ResourceWarning)
        with pytest.raises(RuntimeError, match="did not write"):
            DaemonProcess(tmp_path, command=NEVER_STARTS, start_timeout=0.5)
        gc.collect()
    (process,) = daemon_helpers.LAUNCHED[before:]
    try:
        # returncode is set only once the process has been waited for (no zombie left)
        assert process.returncode is not None, f"pid {process.pid} was left running"
        assert not pid_alive(process.pid)
        unclosed = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)
                    and "daemon.log" in str(w.message)]
        assert not unclosed, unclosed
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


# Stands in for a daemon: writes a connection file naming its own pid, then waits. Its
# command line holds the words "glaze" and "daemon", as a real daemon's does.
FAKE_DAEMON = """
import json, os, sys, time
path = sys.argv[1]
os.makedirs(os.path.dirname(path), exist_ok=True)
with open(path + ".part", "w") as out:
    json.dump({"endpoint": "tcp://127.0.0.1:1", "key": "00" * 32, "pid": os.getpid(),
               "protocol": 1, "version": "0", "bundle": "fake"}, out)
os.replace(path + ".part", path)  # whole, as the daemon writes it
time.sleep(600)
"""

LEAKING_TESTS = f"""
import subprocess, sys, time
from daemon_helpers import DaemonProcess
from timing import scaled
FAKE = {FAKE_DAEMON!r}

def test_leaks_two_daemons(tmp_path):
    (tmp_path / "a").mkdir()
    DaemonProcess(tmp_path / "a", command=[sys.executable, "-c", FAKE,
                         str(tmp_path / "a" / "state" / "daemon.json"), "glaze", "daemon"])
    # detached by a parent that exits, as `glaze daemon start` does once the file is there
    written = tmp_path / "b" / "state" / "daemon.json"
    subprocess.run([sys.executable, "-c", "import subprocess, sys; subprocess.Popen("
                    "sys.argv[1:], start_new_session=True)", sys.executable, "-c", FAKE,
                    str(written), "glaze", "daemon"], check=True)
    deadline = time.monotonic() + scaled(60)
    while not written.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
"""


def test_the_run_fails_and_kills_daemons_left_running(pytester):
    here = Path(__file__).parent
    for name in ("conftest.py", "daemon_helpers.py", "timing.py"):
        shutil.copy2(here / name, pytester.path / name)
    pytester.makepyfile(test_leaks=LEAKING_TESTS)
    basetemp = pytester.path / "temporary"
    done = pytester.runpytest_subprocess("-p", "no:cacheprovider", f"--basetemp={basetemp}",
                                         timeout=scaled(300))
    files = list(basetemp.rglob("daemon.json"))
    pids = [json.loads(path.read_text())["pid"] for path in files]
    try:
        assert len(pids) == 2, (files, done.stdout.str())
        assert done.ret != 0, done.stdout.str()
        done.stdout.fnmatch_lines(["*daemons still running after the tests (now killed)*"])
        for pid in pids:
            assert f"pid {pid}:" in done.stdout.str()
            assert not running(pid), f"pid {pid} was left running"
    finally:
        for pid in pids:
            if running(pid):
                os.kill(pid, signal.SIGKILL)


def running(pid: int) -> bool:
    """Alive and not a zombie (a killed child its parent has not waited for yet)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return pid_alive(pid) if not sys.platform.startswith("linux") else False
    return state != "Z"
