"""The GIMP 3 plug-ins, installed by `glaze install` into a fresh HOME, inside every real
GIMP 3 found (gimp-console-3.N of this machine and of the Debian roots; tests/hosts.py),
python-fu-eval batch scripts, against a real daemon on this machine serving the demo bundle.
Each test runs once per GIMP version."""

import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from daemon_helpers import DaemonProcess
from host_plugins import glaze_install
from hosts import find_gimps, xvfb_run
from PIL import Image
from timing import scaled

from glaze.cli import main
from glaze.daemon.client import Client

HERE = Path(__file__).resolve().parent
GIMPS = find_gimps()


def prepare(gimp, workspace: Path, daemon: DaemonProcess, home: Path) -> dict:
    """The batch environment for plug-ins in `home`'s profile of this GIMP's version."""
    shutil.copy2(HERE / "gimp" / "checks.py", workspace / "checks.py")
    (workspace / "out").mkdir(exist_ok=True)
    inside = gimp.place.inside
    # No GIMP3_DIRECTORY: GIMP finds the plug-ins in its own version's profile.
    return {"HOME": inside(home), "GLAZE_GIMP_PLUGINS": inside(gimp.profile(home) / "plug-ins"),
            "GLAZE_STATE_DIR": inside(daemon.folder / "state"), "GLAZE_DAEMON_COMMAND": "false",
            "GLAZE_GIMP_OUT": inside(workspace / "out"),
            "GLAZE_GIMP_RESULT": inside(workspace / "results.json")}


@pytest.fixture(scope="module", params=GIMPS, ids=[gimp.id for gimp in GIMPS])
def setup(request, tmp_path_factory):
    gimp = request.param
    workspace = gimp.place.workspace(tmp_path_factory.mktemp(gimp.id))
    home = workspace / "home"
    installed = gimp.install_plugins(home)
    daemon = DaemonProcess(workspace)
    yield gimp, workspace, daemon, prepare(gimp, workspace, daemon, home), installed
    daemon.stop()
    gimp.place.cleanup(workspace)


def run_checks(setup, names, display=False, **overrides):
    gimp, workspace, _, env, _ = setup
    result = workspace / "results.json"
    result.unlink(missing_ok=True)
    done = gimp.batch(workspace / "checks.py", {**env, **overrides,
                                                "GLAZE_GIMP_CHECKS": ",".join(names)},
                      display=display)
    assert result.exists(), f"GIMP exited {done.returncode}:\n{done.stdout[-3000:]}" \
                            f"\n{done.stderr[-3000:]}"
    return {item["name"]: item for item in json.loads(result.read_text())}, done


FLOAT_CHECK = "glaze a float layer against SD and FLUX only"


@pytest.mark.parametrize("name", ["the plug-ins import their own copy of the client and pyzmq",
                                  "the procedures take every declared setting with its "
                                  "default and presets",
                                  "the dialog's checkboxes and target list become the "
                                  "daemon's settings",
                                  "glaze an 8-bit layer", FLOAT_CHECK,
                                  "export glazed writes the chosen files and leaves the image "
                                  "alone",
                                  "show what a model sees opens the daemon's sheet as a new "
                                  "image",
                                  "GIMP's progress bar shows the time the glaze has left and "
                                  "it falls"])
def test_in_gimp(setup, name):
    results, done = run_checks(setup, [name])
    assert results[name]["ok"], results[name]["detail"]
    assert done.returncode == 0, done.stderr[-2000:]
    said = done.stdout + done.stderr
    if name.startswith(("glaze", "export")):  # the daemon's summary reaches the user
        assert "NO protection" in said, done.stderr[-2000:]
        assert "feature shift SD " in said and "FLUX " in said, said[-2000:]
        assert ("SDXL" in said) is (name != FLOAT_CHECK), said[-2000:]  # the defended ones


@pytest.mark.parametrize("name", ["the dialog frames the checkboxes under their setting's label",
                                  "Export Glazed proposes NAME.glazed.png beside the image in "
                                  "GIMP's file chooser"])
def test_the_dialogs(setup, name):
    """The dialogs' rows as the plug-in builds them, with a display (Xvfb) for GTK."""
    results, done = run_checks(setup, [name], display=True)
    assert results[name]["ok"], results[name]["detail"]
    # what GimpUi warns of a row it has no widget for (seen with `fill(["bogus-row"])`)
    unknown = re.findall(r"parameter \S+ does not exist", done.stdout + done.stderr)
    assert not unknown, unknown


@pytest.mark.parametrize("name", ["glazed.png", "glazed.jpg"])
def test_an_exported_file_says_what_made_it(setup, name, capsys):
    """`glaze inspect` reads the record GIMP's export carries: the demo bundle, and that it
    gives NO protection (the export check writes the files)."""
    workspace = setup[1]
    exported = workspace / "out" / name
    if not exported.exists():
        run_checks(setup, ["export glazed writes the chosen files and leaves the image alone"])
    assert main(["inspect", str(exported)]) == 0
    said = capsys.readouterr().out
    assert said.startswith("NOTE: DEMO bundle") and "NO protection" in said, said
    assert "bundle: demo-seed0" in said and "target_style: Baroque painting" in said, said


def test_refused_settings_send_no_job(setup):
    name = "a preset outside the list and a custom number out of range send no job"
    with Client(setup[2].info) as client:
        served = client.status()["served"]
    results, _ = run_checks(setup, [name])
    assert results[name]["ok"], results[name]["detail"]
    with Client(setup[2].info) as client:
        assert client.status()["served"] == served


def test_the_dialog_follows_a_daemon_loading_its_models(setup, tmp_path):
    gimp, workspace, _, _, _ = setup
    (workspace / "loading").mkdir(exist_ok=True)
    loading = DaemonProcess(workspace / "loading", held_in_loading=True)
    name = "the dialog follows a daemon that is loading its models"
    try:
        results, _ = run_checks(setup, [name], display=True, GLAZE_TEST_LOADING_STATE=
                                gimp.place.inside(workspace / "loading/state"))
    finally:
        loading.stop()
    assert results[name]["ok"], results[name]["detail"]


def test_the_installer_found_this_version_and_wrote_its_profile(setup):
    """GIMP's version comes from its program's name (gimp-console-3.N on PATH)."""
    gimp, workspace, _, _, installed = setup
    profiles = workspace / "home/.config/GIMP"
    assert sorted(os.listdir(profiles)) == [gimp.version], installed
    assert (gimp.profile(workspace / "home") / "plug-ins/glaze/glaze.py").is_file(), installed


@pytest.mark.parametrize("gimp", [g for g in GIMPS if g.version != "3.0"],
                         ids=lambda gimp: gimp.id)
def test_a_newer_gimp_s_first_start_copies_a_working_plugin(gimp, tmp_path_factory):
    """Installed when only GIMP 3.0 was known: a newer GIMP's first start copies the 3.0
    profile (only 4 folders deep, checked with 3.2.6), and the copy must work."""
    workspace = gimp.place.workspace(tmp_path_factory.mktemp(f"{gimp.id}-migrated"))
    home = workspace / "home"
    glaze_install(home, "--gimp", "--gimp-python", gimp.python)  # no GIMP on PATH: 3.0's
    assert sorted(os.listdir(home / ".config/GIMP")) == ["3.0"]
    daemon = DaemonProcess(workspace)
    try:
        setup = gimp, workspace, daemon, prepare(gimp, workspace, daemon, home), ""
        names = ["the plug-ins import their own copy of the client and pyzmq",
                 "glaze an 8-bit layer"]
        results, done = run_checks(setup, names)
    finally:
        daemon.stop()
    try:
        assert (gimp.profile(home) / "plug-ins/glaze/glaze.py").is_file(), "not migrated"
        for name in names:
            assert results[name]["ok"], results[name]["detail"]
    finally:
        gimp.place.cleanup(workspace)


def test_unreachable_daemon_in_gimp(setup):
    gimp, workspace, _, _, _ = setup
    empty = workspace / "no-daemon"
    empty.mkdir(exist_ok=True)
    name = "an unreachable daemon is an error and changes nothing"
    results, _ = run_checks(setup, [name], GLAZE_STATE_DIR=gimp.place.inside(empty))
    assert results[name]["ok"], results[name]["detail"]


@pytest.mark.parametrize("procedure", ["plug-in-glaze", "plug-in-glaze-export"])
def test_a_screenshot_of_the_dialog(setup, host_screenshots, procedure):
    """--host-screenshots DIR: GUI GIMP under Xvfb with Glaze's dialog open, as
    DIR/gimp-VERSION.png, and Export Glazed's (GIMP's file chooser proposing a name beside
    the image) as DIR/gimp-VERSION-export.png."""
    if host_screenshots is None:
        pytest.skip("no --host-screenshots folder given")
    gimp, workspace, _, env, _ = setup
    shot = workspace / f"screenshot-{procedure}.png"
    script = gimp.place.inside(workspace / "checks.py")
    argv = [*xvfb_run("-screen 0 1280x1024x24"), f"gimp-{gimp.version}", "-n",
            "--batch-interpreter", "python-fu-eval", "-b", f'exec(open("{script}").read())']
    process = gimp.place.run(argv, {**env, "GLAZE_GIMP_SHOT": gimp.place.inside(shot),
                                    "GLAZE_GIMP_WAIT": str(scaled(15)),
                                    "GLAZE_GIMP_SHOT_PROCEDURE": procedure,
                                    "GLAZE_GIMP_CHECKS": "the Glaze dialog on screen "
                                    "(GUI GIMP; left open)"}, timeout=0, background=True)
    try:
        deadline = time.monotonic() + scaled(240)
        while not shot.exists():
            if process.poll() is not None:
                process.log.seek(0)
                pytest.fail(f"GIMP exited {process.returncode}:\n{process.log.read()[-3000:]}")
            assert time.monotonic() < deadline, "no screenshot within 240 s"
            time.sleep(0.5)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    screen = Image.open(shot).convert("L")
    assert screen.size == (1280, 1024)
    low, high = screen.getextrema()
    assert high - low > 64, "a blank screen"  # GIMP's window and the dialog are on it
    suffix = "-export" if procedure.endswith("export") else ""
    shutil.copy2(shot, host_screenshots / f"{gimp.id}{suffix}.png")


def test_killing_the_plugin_cancels_its_job_within_two_seconds(setup):
    host, workspace, daemon, env, _ = setup
    gimp = host.batch(workspace / "checks.py", {**env, "GLAZE_GIMP_CHECKS":
                                                "a long job (killed from outside)"},
                      background=True)
    try:
        with Client(daemon.info) as client:
            deadline = time.monotonic() + scaled(120)
            while client.status()["running"] != 1:
                assert time.monotonic() < deadline and gimp.poll() is None, "no job started"
                time.sleep(0.1)
            served = client.status()["served"]
            found = subprocess.run(["pgrep", "-f", f"{env['GLAZE_GIMP_PLUGINS']}/glaze/glaze.py"],
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
