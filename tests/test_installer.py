"""`glaze install`, `uninstall` and `doctor` for a user whose home is a temporary folder.

Installing into real Krita and GIMP (and using the plug-ins there) is tested by
test_krita.py and test_gimp.py, which install with `glaze install`; this file checks what
the installer writes, that it does it once, and that uninstall puts everything back."""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import plistlib
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from conftest import painting
from host_plugins import glaze, glaze_install, home_env
from hub_cache import cache_default_models
from PIL import Image
from timing import scaled

from glaze.daemon.config import configured, configured_model
from glaze.engine.sources import DEFAULT_HUB_ID, EXTRACTOR_SOURCES
from glaze.installer import kritarc
from glaze.installer.autostart import autostart_files, systemd_unit
from glaze.installer.doctor import client_check
from glaze.installer.hostpython import (
    gimp_interpreter,
    gimp_python,
    krita_python,
    linked_python,
    wheel_platforms,
)
from glaze.installer.locations import Environment, gimp_hosts, krita_hosts
from glaze.installer.manifest import FileSpec, Manifest
from glaze.installer.models import ModelFetchError, fetch, model_choice
from glaze.options import DEFEND

KRITA = shutil.which("krita") is not None
needs_krita = pytest.mark.skipif(not KRITA, reason="needs Krita (.ci/run installs it)")


def listing(home: Path) -> dict[str, str]:
    """Every entry under `home` with its content hash and mode (links: their target)."""
    found = {}
    for path in sorted(home.rglob("*")):
        key = str(path.relative_to(home))
        if path.is_symlink():
            found[key] = "-> " + os.readlink(path)
        elif path.is_file():
            digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
            found[key] = f"{digest} {oct(path.stat().st_mode & 0o777)}"
        else:
            found[key] = "dir"
    return found


def a_users_home(home: Path) -> Path:
    """A home with Krita settings and another plug-in of the user's, and a GIMP profile."""
    pykrita = home / ".local/share/krita/pykrita"
    (pykrita / "their_plugin").mkdir(parents=True)
    (pykrita / "their_plugin/__init__.py").write_text("# someone else's plug-in\n")
    (pykrita / "their_plugin.desktop").write_text("[Desktop Entry]\nName=Theirs\n")
    (home / ".config").mkdir(parents=True)
    (home / ".config/kritarc").write_text(
        "[General]\nshowSplash=false\n\n[python]\nenable_their_plugin=true\n")
    (home / ".config/GIMP/3.0/plug-ins/their-filter").mkdir(parents=True)
    (home / ".config/GIMP/3.0/plug-ins/their-filter/their-filter.py").write_text("#!x\n")
    return home


def gimp_python_args() -> list[str]:
    """GIMP's plug-in Python: here the one this test runs on stands in for it."""
    return ["--gimp", "--gimp-python", sys.executable]


# --- the whole cycle, as a user runs it -------------------------------------------------


@needs_krita
def test_install_twice_then_uninstall_leaves_home_as_it_was(tmp_path):
    home = a_users_home(tmp_path / "home")
    before = listing(home)

    first = glaze_install(home, "--krita", *gimp_python_args())
    installed = listing(home)
    pykrita = home / ".local/share/krita/pykrita"
    plugins = home / ".config/GIMP/3.0/plug-ins"
    for path in (pykrita / "glaze_krita.desktop", pykrita / "glaze_krita/__init__.py",
                 pykrita / "glaze_krita/vendor/glaze_client/client.py",
                 plugins / "glaze/glaze.py", plugins / "glaze-export/glaze-export.py",
                 plugins / "glaze_shared/glaze_gimp.py",
                 plugins / "glaze_vendor/glaze_client/client.py",
                 home / ".local/share/krita/actions/glaze_krita.action",
                 home / ".config/glaze/config.json"):
        assert path.is_file(), f"{path} not installed:\n{first}"
    assert os.access(plugins / "glaze/glaze.py", os.X_OK)  # GIMP runs only executables
    assert not os.access(plugins / "glaze_shared/glaze_gimp.py", os.X_OK)
    assert list((pykrita / "glaze_krita/vendor").glob("zmq/backend/cython/*.so")) \
        or list((pykrita / "glaze_krita/vendor").glob("zmq/**/*.so")), "no compiled pyzmq"
    settings = (home / ".config/kritarc").read_text()
    assert "enable_glaze_krita=true" in settings and "enable_their_plugin=true" in settings
    assert settings.startswith("[General]\nshowSplash=false\n")
    recorded = json.loads(
        (pykrita / "glaze_krita/vendor/glaze_client/installation.json").read_text())
    assert recorded["start_command"][-2:] == ["daemon", "start"]
    assert json.loads((home / ".config/glaze/config.json").read_text()) == {
        "model": "demo", "defend": DEFEND.default}

    second = glaze_install(home, "--krita", *gimp_python_args())
    assert "nothing changed" in second, second
    assert listing(home) == installed

    done = glaze(home, "uninstall")
    assert done.returncode == 0, done.stderr
    assert listing(home) == before


@needs_krita
def test_dry_run_writes_nothing_and_lists_every_file(tmp_path):
    home = a_users_home(tmp_path / "home")
    before = listing(home)
    done = glaze(home, "install", "--krita", *gimp_python_args(), "--dry-run")
    assert done.returncode == 0, done.stderr
    assert listing(home) == before
    listed = {line.split("] ", 1)[1].split(" (")[0].split(" -> ")[0]
              for line in done.stdout.splitlines() if line.startswith("  [new]")}
    glaze_install(home, "--krita", *gimp_python_args())
    manifest = json.loads((home / ".local/share/glaze/install-manifest.json").read_text())
    assert listed == set(manifest["files"]), listed ^ set(manifest["files"])


@needs_krita
def test_an_interrupted_install_is_completed_by_the_next_run(tmp_path):
    home = a_users_home(tmp_path / "home")
    script = ("import sys\n"
              "from glaze.installer.install import InstallOptions, install\n"
              "written = []\n"
              "def report(line):\n"
              "    written.append(line)\n"
              "    if len(written) == 20:\n"
              "        raise KeyboardInterrupt\n"
              "install(InstallOptions(krita=True), report=report)\n")
    interrupted = subprocess.run([sys.executable, "-c", script], env=home_env(home),
                                 capture_output=True, text=True, timeout=scaled(300))
    assert "KeyboardInterrupt" in interrupted.stderr
    manifest = home / ".local/share/glaze/install-manifest.json"
    assert json.loads(manifest.read_text())["state"] == "installing"

    rerun = glaze_install(home, "--krita")
    assert "interrupted" in rerun and "nothing changed" not in rerun
    state = json.loads(manifest.read_text())
    assert state["state"] == "installed"
    assert all(Path(path).exists() for path in state["files"])
    assert "nothing changed" in glaze_install(home, "--krita")


@needs_krita
def test_uninstall_restores_a_file_it_replaced_and_keeps_one_the_user_changed(tmp_path):
    home = a_users_home(tmp_path / "home")
    old = home / ".local/share/krita/pykrita/glaze_krita/__init__.py"
    old.parent.mkdir(parents=True)
    old.write_text("# a copy installed by hand, earlier\n")
    glaze_install(home, "--krita")
    assert old.read_text() != "# a copy installed by hand, earlier\n"
    changed = home / ".local/share/krita/pykrita/glaze_krita/dialog.py"
    changed.write_text(changed.read_text() + "# the user's edit\n")

    done = glaze(home, "uninstall")
    assert "kept" in done.stdout and str(changed) in done.stdout
    assert old.read_text() == "# a copy installed by hand, earlier\n"
    assert changed.exists()
    assert not (home / ".local/share/krita/pykrita/glaze_krita/job.py").exists()


@needs_krita
def test_an_edited_file_keeps_the_one_it_replaced_as_a_backup(tmp_path):
    home = tmp_path / "home"
    old = home / ".local/share/krita/pykrita/glaze_krita/__init__.py"
    old.parent.mkdir(parents=True)
    old.write_text("# a copy installed by hand, earlier\n")
    glaze_install(home, "--krita")
    old.write_text(old.read_text() + "# the user's edit\n")
    done = glaze(home, "uninstall")
    assert f"kept {old}" in done.stdout
    backup = done.stdout.split(f"the file it replaced at {old} is kept as ")[1].split()[0]
    assert Path(backup).read_text() == "# a copy installed by hand, earlier\n"


@needs_krita
def test_autostart_unit_is_valid_and_enabled_then_removed(tmp_path):
    home = tmp_path / "home"
    glaze_install(home, "--krita", "--autostart")
    unit = home / ".config/systemd/user/glaze-daemon.service"
    wants = home / ".config/systemd/user/default.target.wants/glaze-daemon.service"
    assert unit.is_file() and wants.resolve() == unit.resolve()
    assert f"ExecStart={sys.executable} -m glaze daemon start --foreground" in unit.read_text()
    verify = shutil.which("systemd-analyze")
    if verify:
        done = subprocess.run([verify, "verify", "--user", str(unit)], capture_output=True,
                              text=True, env=home_env(home))
        problems = [line for line in done.stderr.splitlines() if str(unit) in line]
        assert not problems, done.stderr
    assert "nothing changed" in glaze_install(home)  # the choice is kept
    glaze(home, "uninstall")
    assert not unit.exists() and not wants.is_symlink()


@needs_krita
def test_doctor_reports_the_installation_and_that_the_client_imports(tmp_path):
    home = tmp_path / "home"
    glaze_install(home, "--krita", *gimp_python_args())
    done = glaze(home, "doctor")
    assert done.returncode == 0, done.stderr
    report = done.stdout
    for expected in ("glaze:", "torch:", "device:", "model: demo (built in, NO protection",
                     "daemon: not running", "installed: installed", "0 missing or changed",
                     "krita native:", "gimp native:"):
        assert expected in report, f"{expected!r} not in:\n{report}"
    imports = [line for line in report.splitlines() if "client imports" in line]
    assert len(imports) == 2 and all(": yes (checked with" in line for line in imports), report


@needs_krita
def test_a_host_that_fails_later_keeps_its_installed_plugin(tmp_path):
    home = tmp_path / "home"
    glaze_install(home, "--krita", *gimp_python_args())
    assert "nothing changed" in glaze_install(home)  # --gimp-python is remembered
    installed = listing(home)
    done = glaze(home, "install", "--gimp-python", "/nonexistent/python3")
    assert done.returncode == 1 and "could not run `/nonexistent/python3`" in done.stdout
    assert listing(home) == installed  # GIMP's plug-ins are still there, and recorded
    assert "nothing changed" in glaze_install(home, "--gimp-python", sys.executable)


def test_doctor_before_any_install(tmp_path):
    done = glaze(tmp_path / "home", "doctor")
    assert done.returncode == 0 and "`glaze install` has not been run" in done.stdout


def test_an_unknown_gimp_python_is_a_clear_problem_and_the_rest_installs(tmp_path):
    home = tmp_path / "home"
    done = glaze(home, "install", "--gimp", "--gimp-python", "/nonexistent/python3")
    assert done.returncode == 1
    assert "could not run `/nonexistent/python3`" in done.stdout
    assert "--gimp-python" in done.stdout
    assert (home / ".config/glaze/config.json").is_file()


# --- the pieces ---------------------------------------------------------------------------


@pytest.mark.parametrize("text", [
    "", "[General]\nx=1\n", "[General]\nx=1", "[python]\nenable_other=true\n",
    "[python]\nenable_glaze_krita=false\n[General]\ny=2\n",
    "[A]\na=1\n\n[python]\nenable_other=false\n\n[B]\nb=2\n",
])
def test_kritarc_edit_touches_one_line_and_is_undone_exactly(text):
    before = kritarc.read_value(text, "glaze_krita")
    edited = kritarc.set_value(text, "glaze_krita", "true")
    assert kritarc.read_value(edited, "glaze_krita") == "true"
    assert kritarc.read_value(edited, "other") == kritarc.read_value(text, "other")
    restored = kritarc.set_value(edited, "glaze_krita", before)
    assert restored.rstrip("\n") == text.rstrip("\n")


def test_profile_locations_per_platform(tmp_path):
    linux = Environment(tmp_path, {"XDG_DATA_HOME": "/d", "XDG_CONFIG_HOME": "/c"}, "linux")
    native, flatpak = krita_hosts(linux)
    assert native.plugins == Path("/d/krita/pykrita") and native.settings == Path("/c/kritarc")
    assert flatpak.plugins == tmp_path / ".var/app/org.kde.krita/data/krita/pykrita"
    assert gimp_hosts(linux)[0].plugins == Path("/c/GIMP/3.0/plug-ins")
    assert gimp_hosts(Environment(tmp_path, {"GIMP3_DIRECTORY": "/g"}, "linux"))[0].plugins \
        == Path("/g/plug-ins")
    windows = Environment(tmp_path, {"APPDATA": "/r", "LOCALAPPDATA": "/l"}, "win32")
    assert krita_hosts(windows)[0].plugins == Path("/r/krita/pykrita")
    assert krita_hosts(windows)[0].settings == Path("/l/kritarc")
    assert gimp_hosts(windows)[0].plugins == Path("/r/GIMP/3.0/plug-ins")
    mac = Environment(tmp_path, {}, "darwin")
    assert gimp_hosts(mac)[0].plugins == \
        tmp_path / "Library/Application Support/GIMP/3.0/plug-ins"
    assert krita_hosts(mac)[0].settings == tmp_path / "Library/Preferences/kritarc"


def test_wheel_platform_tags():
    linux = wheel_platforms("linux-x86_64", ("glibc", "2.36"))
    assert linux[0] == "manylinux_2_36_x86_64" and "manylinux_2_17_x86_64" in linux
    assert linux[-1] == "manylinux2014_x86_64"
    assert wheel_platforms("win-amd64") == ("win_amd64",)
    mac = wheel_platforms("macosx-11.0-arm64")
    assert "macosx_11_0_arm64" in mac and "macosx_11_0_universal2" in mac


def test_krita_python_from_the_linked_library_or_the_table(tmp_path):
    binding = tmp_path / "lib/x86_64-linux-gnu/krita-python-libs/PyKrita/krita.so"
    binding.parent.mkdir(parents=True)
    binding.write_bytes(b"\x7fELF...libpython3.12.so.1.0\x00...")
    assert linked_python(binding) == "3.12"
    assert krita_python(prefixes=[tmp_path]).version == "3.12"
    windows = tmp_path / "w/lib/krita-python-libs/PyKrita/krita.pyd"
    windows.parent.mkdir(parents=True)
    windows.write_bytes(b"MZ...python310.dll\x00")
    assert krita_python(prefixes=[tmp_path / "w"]).version == "3.10"
    assert krita_python(override="3.9", prefixes=[]).version == "3.9"
    with pytest.raises(RuntimeError, match=r"--krita-python 3.X.*Krita 5.2: 3.10"):
        krita_python(prefixes=[])


def test_gimp_python_from_its_interpreter_file(tmp_path):
    interpreters = tmp_path / "lib/gimp/3.0/interpreters"
    interpreters.mkdir(parents=True)
    python = tmp_path / "bin dir/python.exe"
    python.parent.mkdir()
    python.symlink_to(sys.executable)
    (interpreters / "pygimp.interp").write_text(f"python={python}\n:Python:E::py::python:\n")
    assert gimp_interpreter([tmp_path]) == str(python)
    found = gimp_python(prefixes=[tmp_path])
    assert found.version == f"{sys.version_info[0]}.{sys.version_info[1]}"
    assert found.command == (str(python),)  # a path with a space is one word


def test_doctor_reads_extension_tags_of_every_platform(tmp_path):
    vendor = tmp_path / "plug-ins/glaze_vendor"
    (vendor / "glaze_client").mkdir(parents=True)
    (vendor / "glaze_client/client.py").write_text("")
    (vendor / "zmq").mkdir()
    (vendor / "zmq/_zmq.cp313-win_amd64.pyd").write_bytes(b"")
    host = {"program": "gimp", "plugins": str(tmp_path / "plug-ins"), "python": "3.13"}
    assert client_check(host).startswith("likely")
    assert client_check({**host, "python": "3.12"}).startswith("NO")
    gone = client_check({**host, "python_command": [str(tmp_path / "no-python")]})
    assert gone.startswith("unknown: could not run")


def test_a_file_is_ours_as_the_last_or_the_interrupted_install_wrote_it(tmp_path):
    path = tmp_path / "plugin.py"
    old, new = FileSpec(path, b"version 1"), FileSpec(path, b"version 2")
    manifest = Manifest(files={str(path): old.entry()}, pending={str(path): new.entry()})
    for data, ours in ((b"version 1", True), (b"version 2", True), (b"the user's", False)):
        path.write_bytes(data)
        path.chmod(0o644)
        assert manifest.is_ours(str(path)) is ours


def test_kritarc_keeps_utf8_and_windows_line_endings(tmp_path):
    settings = tmp_path / "kritarc"
    settings.write_bytes("[General]\r\nrecent=C:\\Łódź\\art.kra\r\n".encode())
    edited = kritarc.set_value(kritarc.load(settings), "glaze_krita", "true")
    kritarc.save(settings, edited)
    assert settings.read_bytes() == ("[General]\r\nrecent=C:\\Łódź\\art.kra\r\n\r\n"
                                     "[python]\r\nenable_glaze_krita=true\r\n").encode()


def test_autostart_files_for_each_platform(tmp_path):
    command = ["/opt/my python/bin/python", "-m", "glaze", "daemon", "start", "--foreground"]
    unit = systemd_unit(command)
    assert 'ExecStart="/opt/my python/bin/python" -m glaze' in unit
    mac = autostart_files(Environment(tmp_path, {}, "darwin"), command, tmp_path / "log")
    agent = plistlib.loads(mac[0].data)
    assert agent["ProgramArguments"] == command and agent["RunAtLoad"] is True
    windows = autostart_files(Environment(tmp_path, {"APPDATA": str(tmp_path)}, "win32"),
                              command, tmp_path / "log")
    assert windows[0].path.name == "glaze-daemon.cmd"
    assert b'"/opt/my python/bin/python" -m glaze' in windows[0].data


def test_model_choices(tmp_path, bundle, monkeypatch):
    said = []
    assert model_choice("demo") == "demo"
    (tmp_path / "demo").mkdir()  # a folder named like a choice does not shadow it
    monkeypatch.chdir(tmp_path)
    assert model_choice("demo") == "demo"
    assert model_choice("default") == "default"  # follows the default when a release moves it
    assert model_choice("stabilityai/stable-diffusion-2-1-base", said.append) == "default"
    assert "former default" in said[0] and "stable-diffusion-v1-5" in said[0]
    assert model_choice("someone/their-model") == "someone/their-model"
    folder = bundle.save(tmp_path / "saved")
    assert model_choice(str(folder)) == str(folder.resolve())
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelFetchError, match="model_index.json"):
        model_choice(str(tmp_path / "empty"))
    with pytest.raises(ModelFetchError, match="not a hub id"):
        model_choice(str(tmp_path / "missing"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(ModelFetchError, match="cannot load someone/their-model.*HF_HUB_OFFLINE"):
        fetch("someone/their-model", report=lambda line: None)


def test_an_old_settings_file_naming_the_former_default_still_loads(tmp_path, monkeypatch):
    settings = tmp_path / "config"
    settings.mkdir()
    (settings / "config.json").write_text(
        json.dumps({"model": "stabilityai/stable-diffusion-2-1-base"}))
    monkeypatch.setenv("GLAZE_CONFIG_DIR", str(settings))
    assert configured_model() == "default"
    home = tmp_path / "home"
    done = glaze(home, "install", "--dry-run", *gimp_python_args(),
                 GLAZE_CONFIG_DIR=str(settings))
    assert "former default" in done.stdout and "model: default (stable-diffusion-v1-5/" \
        in done.stdout, done.stdout + done.stderr


@needs_krita
def test_install_with_a_local_model_folder_is_what_the_daemon_loads(tmp_path, bundle,
                                                                    monkeypatch):
    home = tmp_path / "home"
    folder = bundle.save(tmp_path / "saved")
    glaze_install(home, "--krita", "--models", str(folder), "--defend", "FLUX, sd")
    settings = json.loads((home / ".config/glaze/config.json").read_text())
    assert settings == {"model": str(folder.resolve()), "defend": "sd,flux"}
    monkeypatch.setenv("GLAZE_CONFIG_DIR", str(home / ".config/glaze"))
    assert configured_model() == str(folder.resolve())
    assert configured(DEFEND) == "sd,flux"  # what the daemon loads and a cloak defends
    glaze_install(home, "--krita")  # a later install keeps the choice
    assert json.loads((home / ".config/glaze/config.json").read_text())["defend"] == "sd,flux"
    done = glaze(home, "install", "--krita", "--defend", "sd,midjourney")
    assert done.returncode == 2 and "unknown 'midjourney'" in done.stdout, done.stdout


def test_a_configured_model_that_does_not_exist_is_a_clear_error(tmp_path, monkeypatch):
    settings = tmp_path / "config"
    settings.mkdir()
    (settings / "config.json").write_text(json.dumps({"model": str(tmp_path / "gone")}))
    Image.fromarray(painting(32, 32)).save(tmp_path / "x.png")
    done = glaze(tmp_path / "home", "cloak", "--in-process", str(tmp_path / "x.png"),
                 GLAZE_CONFIG_DIR=str(settings))
    assert done.returncode != 0 and str(tmp_path / "gone") in done.stdout + done.stderr
    (settings / "config.json").write_text("{not json")
    done = glaze(tmp_path / "home", "daemon", "start", GLAZE_CONFIG_DIR=str(settings))
    assert done.returncode != 0 and "not a valid settings file" in done.stderr


def test_the_package_carries_every_plugin_file_the_installer_copies(tmp_path):
    """A non-editable install (a wheel) has the plug-ins as package data."""
    import zipfile

    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w",
                           str(tmp_path), str(Path(__file__).parent.parent)],
                          capture_output=True, text=True, timeout=scaled(300))
    assert done.returncode == 0, done.stderr
    (wheel,) = tmp_path.glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    root = Path(__file__).parent.parent
    tracked = subprocess.run(["git", "ls-files", "krita_plugin", "gimp_plugin"], cwd=root,
                             capture_output=True, text=True).stdout.split()
    assert tracked, "not a git checkout"
    for path in tracked:
        assert f"glaze/{path}" in names, f"{path} is missing from the wheel"


def test_a_second_install_reuses_the_intact_runtime_without_pip(tmp_path):
    home = tmp_path / "home"
    glaze_install(home, *gimp_python_args())
    no_index = {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": ""}  # pip could fetch nothing now
    again = glaze(home, "install", *gimp_python_args(), **no_index)
    assert again.returncode == 0 and "nothing changed" in again.stdout, again.stderr
    vendored = home / ".config/GIMP/3.0/plug-ins/glaze_vendor"
    (vendored / "msgpack" / "__init__.py").write_text("# changed by hand\n")
    refetch = glaze(home, "install", *gimp_python_args(), **no_index)
    assert refetch.returncode != 0 and "pip could not fetch" in refetch.stdout, refetch.stdout


# --- the models' sources ----------------------------------------------------------------

def _offline_default_without(tmp_path: Path, bundle, family: str) -> dict[str, str]:
    """A Hugging Face cache holding the default bundle and every family's encoder but
    `family`'s (the demo's models in their places), and the environment that uses it."""
    cache_default_models(bundle, tmp_path / "hub")
    missing = EXTRACTOR_SOURCES[family].location
    shutil.rmtree(tmp_path / "hub" / f"models--{missing.replace('/', '--')}")
    return {"HF_HUB_CACHE": str(tmp_path / "hub"), "GLAZE_CONFIG_DIR": str(tmp_path / "cf")}


def _one_line_refusal(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stdout + done.stderr
    refusals = [line for line in done.stdout.splitlines() if line.startswith("glaze install:")]
    assert len(refusals) == 1, done.stdout
    return refusals[0]


def test_the_dry_run_lists_every_family_s_source_and_a_missing_one_is_one_line(tmp_path,
                                                                              bundle):
    env = _offline_default_without(tmp_path, bundle, "flux2") | {"HF_HUB_OFFLINE": "1"}
    home = tmp_path / "home"
    done = glaze(home, "install", "--models", "default", "--dry-run", **env)
    assert done.returncode == 0, done.stdout + done.stderr
    for name, label in DEFEND.choices.items():
        source = EXTRACTOR_SOURCES[name]
        where = (f"{DEFAULT_HUB_ID} (vae/)" if name == "sd" else source.describe())
        state = "to fetch" if name == "flux2" else "in the Hugging Face cache"
        assert f"  defends {name} ({label}): {where}, {state}" in done.stdout, done.stdout
    fewer = glaze(home, "install", "--models", "default", "--dry-run", "--defend", "sd,flux",
                  **env)
    assert "  does not defend sdxl, flux2, qwen (`glaze install --defend " \
        "sd,sdxl,flux,flux2,qwen` adds them)" in fewer.stdout, fewer.stdout
    said = _one_line_refusal(glaze(home, "install", "--models", "default", **env))
    assert f"the {DEFEND.choices['flux2']} feature extractor" in said
    assert "HF_HUB_OFFLINE is set" in said and "--defend sd,sdxl,flux,qwen" in said


class GatedHub(http.server.BaseHTTPRequestHandler):
    """Answers every request as the hub answers one for a gated model without access."""

    def do_GET(self):  # noqa: N802 (http.server's name)
        self.send_response(403)
        self.send_header("X-Error-Code", "GatedRepo")
        self.send_header("X-Error-Message", "Access to this model is restricted.")
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_HEAD = do_GET

    def log_message(self, *args):
        pass


def test_a_gated_source_is_named_in_one_line_with_what_to_do(tmp_path, bundle):
    env = _offline_default_without(tmp_path, bundle, "flux2")
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), GatedHub) as hub:
        threading.Thread(target=hub.serve_forever, daemon=True).start()
        endpoint = f"http://127.0.0.1:{hub.server_address[1]}"
        done = glaze(tmp_path / "home", "install", "--models", "default",
                     HF_ENDPOINT=endpoint, **env)
        hub.shutdown()
    said = _one_line_refusal(done)
    assert f"{EXTRACTOR_SOURCES['flux2'].location} is gated on the hub" in said
    assert "hf auth login" in said and "local folder" in said
