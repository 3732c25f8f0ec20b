"""The GIMP 3 plug-ins, installed by `glaze install` into a fresh HOME, inside real GIMP
(gimp-console, python-fu-eval batch scripts), against a real daemon on this machine serving
the demo bundle."""

import json
import shutil
import subprocess
import time

import pytest
from daemon_helpers import DaemonProcess
from gimp_host import Gimp
from timing import scaled

from glaze.daemon.client import Client

HERE = __import__("pathlib").Path(__file__).resolve().parent
GIMP = Gimp.find()
pytestmark = pytest.mark.skipif(GIMP is None, reason="needs GIMP 3 (.ci/run provides it)")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    workspace = GIMP.workspace(tmp_path_factory.mktemp("gimp"))
    shutil.copy2(HERE / "gimp" / "checks.py", workspace / "checks.py")
    GIMP.install_plugins(workspace / "home")
    (workspace / "out").mkdir()
    daemon = DaemonProcess(workspace)
    # No GIMP3_DIRECTORY: GIMP finds the plug-ins where `glaze install` put them.
    env = {"HOME": GIMP.seen_by_gimp(workspace / "home"),
           "GLAZE_GIMP_PLUGINS": GIMP.seen_by_gimp(workspace / "home/.config/GIMP/3.0/plug-ins"),
           "GLAZE_STATE_DIR": GIMP.seen_by_gimp(workspace / "state"),
           "GLAZE_DAEMON_COMMAND": "false",
           "GLAZE_GIMP_OUT": GIMP.seen_by_gimp(workspace / "out"),
           "GLAZE_GIMP_RESULT": GIMP.seen_by_gimp(workspace / "results.json")}
    yield workspace, daemon, env
    daemon.stop()
    GIMP.cleanup(workspace)


def run_checks(setup, names, **overrides):
    workspace, _, env = setup
    result = workspace / "results.json"
    result.unlink(missing_ok=True)
    done = GIMP.batch(workspace / "checks.py", {**env, **overrides,
                                                "GLAZE_GIMP_CHECKS": ",".join(names)})
    assert result.exists(), f"GIMP exited {done.returncode}:\n{done.stdout[-3000:]}" \
                            f"\n{done.stderr[-3000:]}"
    return {item["name"]: item for item in json.loads(result.read_text())}, done


@pytest.mark.parametrize("name", ["the plug-ins import their own copy of the client and pyzmq",
                                  "the procedures take every declared setting with its "
                                  "default and presets",
                                  "glaze an 8-bit layer", "glaze a float layer",
                                  "export glazed writes a file and leaves the image alone"])
def test_in_gimp(setup, name):
    results, done = run_checks(setup, [name])
    assert results[name]["ok"], results[name]["detail"]
    assert done.returncode == 0, done.stderr[-2000:]
    if name.startswith(("glaze", "export")):  # the daemon's summary reaches the user
        assert "NO protection" in done.stdout + done.stderr, done.stderr[-2000:]


def test_unreachable_daemon_in_gimp(setup, tmp_path):
    workspace, _, _ = setup
    empty = workspace / "no-daemon"
    empty.mkdir(exist_ok=True)
    name = "an unreachable daemon is an error and changes nothing"
    results, _ = run_checks(setup, [name], GLAZE_STATE_DIR=GIMP.seen_by_gimp(empty))
    assert results[name]["ok"], results[name]["detail"]


def test_killing_the_plugin_cancels_its_job_within_two_seconds(setup):
    workspace, daemon, env = setup
    gimp = GIMP.batch(workspace / "checks.py", {**env, "GLAZE_GIMP_CHECKS":
                                                "a long job (killed from outside)"},
                      background=True)
    try:
        with Client(daemon.info) as client:
            deadline = time.monotonic() + scaled(120)
            while client.status()["running"] != 1:
                assert time.monotonic() < deadline and gimp.poll() is None, "no job started"
                time.sleep(0.1)
            served = client.status()["served"]
            found = subprocess.run(["pgrep", "-f", "plug-ins/glaze/glaze.py"],
                                   capture_output=True, text=True).stdout.split()
            assert len(found) == 1, found
            subprocess.run(["kill", "-9", found[0]], check=True)
            killed = time.monotonic()
            while client.status()["running"] != 0:
                # the daemon's fixed 1 s heartbeat timeout, then slack for a slow machine
                assert time.monotonic() - killed < 1.0 + scaled(1.0), \
                    "the job outlived its plug-in by 2 s"
                time.sleep(0.05)
            assert client.status()["served"] == served  # cancelled, not finished
    finally:
        gimp.wait(timeout=scaled(120))
