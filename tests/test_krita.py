"""The Krita plug-in, installed by `glaze install` into a fresh HOME, inside every real Krita
found (this machine's, and Krita 5.3 and 6 from Debian roots; tests/hosts.py), full Krita
under Xvfb, against a real daemon on this machine serving the demo bundle. Each check runs
in Krita; this file reports them, one test per check and Krita version."""

import json
import os
import shutil
import sys
from pathlib import Path

import pytest
from daemon_helpers import DaemonProcess
from host_plugins import add_krita_plugin
from hosts import find_kritas, xvfb_run
from timing import VARIABLE

from glaze.cli import main

HERE = Path(__file__).resolve().parent
KRITAS = find_kritas()
CHECKS = [
    "the plug-in imports its own copy of the client and pyzmq",
    "glaze an 8-bit layer",
    "glaze a 16-bit layer",
    "glaze a 16-bit float layer",
    "glaze a 32-bit float layer",
    "export glazed leaves the document untouched and the files carry their record",
    "an unreachable daemon is reported and changes nothing",
    "cancel mid-job leaves the document as it was",
    "a CMYK document gets a clear message and nothing changes",
    "the dialog is built from the declared settings and lists the daemon's presets",
    "Filter > Glaze through the real action, dialog and progress, after a script's "
    "extensions() call",
    "Show what a model sees shows the daemon's sheet and adds it as a document",
    "Export Glazed proposes the document's folder and name with .glazed",
    "the actions are in the Filter and File menus",
    "Krita read the actions' categories file (its tooltips are on the actions)",
    "the dialog follows a daemon that is loading its models",
]
# Starting the daemon needs Glaze's own Python, which a Krita in a root cannot run.
AUTOSTART = "a daemon that is not running is started on first use"


def expected_checks(krita) -> list[str]:
    return CHECKS + ([AUTOSTART] if krita.place.root is None else [])


@pytest.fixture(scope="module", params=KRITAS, ids=[krita.id for krita in KRITAS])
def krita_run(request, tmp_path_factory, host_screenshots):
    """Krita started once per version with the scenario: (krita, results, exit code, log,
    the folder of the files it exported)."""
    krita = request.param
    place = krita.place
    workspace = place.workspace(tmp_path_factory.mktemp(krita.id))
    shutil.copytree(HERE / "krita", workspace / "krita")
    shutil.copy2(HERE / "timing.py", workspace / "timing.py")
    home = workspace / "home"
    krita.install_plugin(home)
    add_krita_plugin(home, workspace / "krita/glaze_test_driver")
    shots = workspace / "screenshots"
    shots.mkdir()
    (workspace / "out").mkdir()
    (workspace / "loading").mkdir()
    exported = tmp_path_factory.mktemp(f"{krita.id}-exported")
    daemon = DaemonProcess(workspace)
    loading = DaemonProcess(workspace / "loading", held_in_loading=True)
    result = workspace / "results.json"
    env = {"HOME": place.inside(home), "GLAZE_STATE_DIR": place.inside(workspace / "state"),
           "GLAZE_KRITA_SCENARIO": place.inside(workspace / "krita/scenario.py"),
           "GLAZE_KRITA_RESULT": place.inside(result), "GLAZE_DAEMON_COMMAND": "false",
           "GLAZE_KRITA_OUT": place.inside(workspace / "out"),
           "GLAZE_TEST_LOADING_STATE": place.inside(workspace / "loading/state"),
           "QT_QPA_PLATFORM": "xcb", "PYTHONDONTWRITEBYTECODE": "1",
           VARIABLE: os.environ.get(VARIABLE, "1")}
    if host_screenshots:
        env["GLAZE_HOST_SCREENSHOTS"] = place.inside(shots)
    if place.root is None:  # the autostart check: this machine's Glaze starts a daemon
        env.update(GLAZE_TEST_START_COMMAND=f"{sys.executable} -m glaze daemon start "
                   "--model demo", GLAZE_DATA_DIR=daemon.env["GLAZE_DATA_DIR"],
                   GLAZE_CACHE_DIR=daemon.env["GLAZE_CACHE_DIR"])
    try:
        done = place.run([*xvfb_run("-screen 0 1280x1024x24"), "krita", "--nosplash"], env,
                         timeout=900)
    finally:
        daemon.stop()
        loading.stop()
    shutil.copytree(workspace / "out", exported, dirs_exist_ok=True)
    if host_screenshots:
        for shot in shots.glob("*.png"):
            shutil.copy2(shot, host_screenshots / shot.name)
    log = done.stdout + done.stderr
    crash = result.with_name(result.name + ".crash")
    try:
        if crash.exists():
            pytest.fail(f"the scenario crashed inside {krita.id}:\n{crash.read_text()}")
        if not result.exists():
            partial = result.with_name(result.name + ".partial")
            so_far = partial.read_text() if partial.exists() else "(no check ran)"
            pytest.fail(f"{krita.id} exited {done.returncode} without results; so far: "
                        f"{so_far}\n{log[-3000:]}")
        results = {item["name"]: item for item in json.loads(result.read_text())}
    finally:
        place.cleanup(workspace)
    return krita, results, done.returncode, log, exported


@pytest.mark.parametrize("name", CHECKS + [AUTOSTART])
def test_in_krita(krita_run, name):
    krita, results, _, _, _ = krita_run
    if name not in expected_checks(krita):
        pytest.skip(f"{krita.id} runs in a Debian root, without Glaze's own Python")
    assert name in results, f"check not run; ran: {sorted(results)}"
    assert results[name]["ok"], results[name]["detail"]


@pytest.mark.parametrize("name", ["glazed.png", "glazed.jpg"])
def test_an_exported_file_says_what_made_it(krita_run, name, capsys):
    """`glaze inspect` reads the record Krita's export carries: the demo bundle, and that
    it gives NO protection."""
    exported = krita_run[4] / name
    assert exported.is_file(), sorted(path.name for path in krita_run[4].iterdir())
    assert main(["inspect", str(exported)]) == 0
    said = capsys.readouterr().out
    assert said.startswith("NOTE: DEMO bundle") and "NO protection" in said, said
    assert "bundle: demo-seed0" in said and "target_style: Baroque painting" in said, said


def test_krita_exit_code_reflects_the_checks(krita_run):
    krita, results, code, log, _ = krita_run
    assert code == (0 if all(item["ok"] for item in results.values()) else 1), log[-2000:]
    assert set(results) == set(expected_checks(krita))

