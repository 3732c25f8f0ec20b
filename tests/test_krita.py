"""The Krita plug-in, installed by `glaze install` into a fresh HOME, inside real Krita
(full Krita under Xvfb), against a real daemon serving the demo bundle. Each check runs in
Krita; this file reports them."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from daemon_helpers import DaemonProcess
from host_plugins import add_krita_plugin, glaze_install
from timing import scaled

HERE = Path(__file__).resolve().parent
CHECKS = [
    "the plug-in imports its own copy of the client and pyzmq",
    "glaze an 8-bit layer",
    "glaze a 16-bit layer",
    "glaze a 16-bit float layer",
    "glaze a 32-bit float layer",
    "export glazed leaves the document untouched",
    "an unreachable daemon is reported and changes nothing",
    "a daemon that is not running is started on first use",
    "cancel mid-job leaves the document as it was",
    "a CMYK document gets a clear message and nothing changes",
    "the dialog is built from the declared settings and lists the daemon's presets",
    "Filter > Glaze through the real action, dialog and progress",
    "the actions are in the Filter and File menus",
]

pytestmark = pytest.mark.skipif(
    shutil.which("krita") is None or shutil.which("xvfb-run") is None,
    reason="needs Krita and Xvfb (.ci/run installs them: apt krita python3-pyqt5 xvfb ...)")


@pytest.fixture(scope="module")
def krita_results(tmp_path_factory):
    folder = tmp_path_factory.mktemp("krita")
    home = folder / "home"
    glaze_install(home, "--krita")
    add_krita_plugin(home, HERE / "krita/glaze_test_driver")
    daemon = DaemonProcess(folder)
    result = folder / "results.json"
    env = dict(daemon.env, HOME=str(home), GLAZE_KRITA_SCENARIO=str(HERE / "krita/scenario.py"),
               GLAZE_KRITA_RESULT=str(result), GLAZE_DAEMON_COMMAND="false",
               GLAZE_TEST_START_COMMAND=f"{sys.executable} -m glaze daemon start --model demo",
               QT_QPA_PLATFORM="xcb", PYTHONDONTWRITEBYTECODE="1")
    for key in ("XDG_DATA_HOME", "XDG_CONFIG_HOME", "DISPLAY"):
        env.pop(key, None)
    try:
        done = subprocess.run(["xvfb-run", "-a", "-s", "-screen 0 1280x1024x24", "krita",
                               "--nosplash"], env=env, capture_output=True, text=True,
                              timeout=scaled(600))
    finally:
        daemon.stop()
    crash = result.with_name(result.name + ".crash")
    if crash.exists():
        pytest.fail(f"the scenario crashed inside Krita:\n{crash.read_text()}")
    if not result.exists():
        pytest.fail(f"Krita exited {done.returncode} without results:\n{done.stderr[-3000:]}")
    return {item["name"]: item for item in json.loads(result.read_text())}, done.returncode


@pytest.mark.parametrize("name", CHECKS)
def test_in_krita(krita_results, name):
    results, _ = krita_results
    assert name in results, f"check not run; ran: {sorted(results)}"
    assert results[name]["ok"], results[name]["detail"]


def test_krita_exit_code_reflects_the_checks(krita_results):
    results, code = krita_results
    assert code == (0 if all(item["ok"] for item in results.values()) else 1)
    assert set(results) == set(CHECKS)
