"""Which painting-program versions the installer and the Krita plug-in recognize: GIMP 3's
one profile per minor version, Krita's Qt and Python, the action categories file, the
plug-in's refusal of a Krita it does not support. (Installing into and running in the real
programs: test_krita.py, test_gimp.py.)"""

from __future__ import annotations

import ast
import os
import sys
import types
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest

from glaze.installer.hostpython import ask, krita_release, tool_environment
from glaze.installer.install import GIMP_COPY_DEPTH, VendorError, plugin_files
from glaze.installer.locations import (
    Environment,
    choose_hosts,
    gimp_hosts,
    installed_gimp_versions,
)

ROOT = Path(__file__).resolve().parent.parent
PLUGIN = ROOT / "krita_plugin/glaze_krita"


def program(folder: Path, name: str, says: str = "") -> Path:
    """An executable `name` in `folder` that prints `says`."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(f"#!/bin/sh\necho '{says}'\n")
    path.chmod(0o755)
    return path


def test_one_gimp_profile_per_minor_version_found(tmp_path):
    home, bin_folder = tmp_path / "home", tmp_path / "bin"
    (home / ".config/GIMP/3.0").mkdir(parents=True)  # a profile GIMP 3.0 made
    (home / ".config/GIMP/2.10").mkdir()  # GIMP 2's: not ours
    program(bin_folder, "gimp-console-3.2")  # GIMP 3.2 installed, never started
    where = Environment(home, {"PATH": str(bin_folder)}, "linux")
    assert installed_gimp_versions(where) == ["3.2"]
    native = [host for host in choose_hosts("gimp", where, asked=False)
              if host.variant == "native"]
    assert [(host.version, host.plugins) for host in native] == [
        ("3.0", home / ".config/GIMP/3.0/plug-ins"), ("3.2", home / ".config/GIMP/3.2/plug-ins")]
    assert native[1].label == "GIMP 3.2 (native)"


def test_an_unversioned_gimp_is_asked_its_version(tmp_path):
    bin_folder = tmp_path / "bin"
    program(bin_folder, "gimp", "GNU Image Manipulation Program version 3.4.1")
    where = Environment(tmp_path, {"PATH": str(bin_folder)}, "linux")
    assert installed_gimp_versions(where) == ["3.4"]
    assert [host.version for host in gimp_hosts(where) if host.variant == "native"] == ["3.4"]
    assert gimp_hosts(where)[0].plugins == tmp_path / ".config/GIMP/3.4/plug-ins"


def test_nothing_found_but_asked_for_gimp_means_3_0_s_profile(tmp_path):
    where = Environment(tmp_path, {"PATH": str(tmp_path / "none")}, "linux")
    assert [host.plugins for host in choose_hosts("gimp", where, asked=True)] == [
        tmp_path / ".config/GIMP/3.0/plug-ins"]
    assert choose_hosts("gimp", where, asked=False) == []
    override = Environment(tmp_path, {"GIMP3_DIRECTORY": "/g"}, "linux")
    assert [host.plugins for host in choose_hosts("gimp", override, asked=True)] == [
        Path("/g/plug-ins")]


def test_gimp_s_runtime_fits_in_what_a_newer_gimp_copies(tmp_path):
    """GIMP 3.2 copies the 3.0 profile only GIMP_COPY_DEPTH folders deep."""
    runtime = tmp_path / "runtime"
    (runtime / "zmq/backend/cython").mkdir(parents=True)
    (runtime / "zmq/backend/cython/_zmq.abi3.so").write_bytes(b"")
    host = gimp_hosts(Environment(tmp_path, {}, "linux"), installed=[])[0]
    specs = plugin_files(host, runtime)
    depth = max(len(spec.path.relative_to(host.plugins).parts) - 1 for spec in specs)
    assert depth <= GIMP_COPY_DEPTH
    (runtime / "zmq/backend/cython/deeper").mkdir()
    (runtime / "zmq/backend/cython/deeper/x.py").write_text("")
    with pytest.raises(VendorError, match="deeper than GIMP copies"):
        plugin_files(host, runtime)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() != 0 or not Path("/usr/sbin/chroot")
                    .exists(), reason="chroot needs root and /usr/sbin/chroot")
def test_a_host_python_command_finds_chroot_without_sbin_on_path(monkeypatch):
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    assert "/usr/sbin" in tool_environment()["PATH"].split(os.pathsep)
    found = ask(f"chroot / {sys.executable}")
    assert found.version == f"{sys.version_info[0]}.{sys.version_info[1]}"


def test_krita_s_qt_and_version_are_read_from_its_files(tmp_path):
    for qt, linked in ((5, b"libQt5Core.so.5"), (6, b"libQt6Core.so.6")):
        prefix = tmp_path / f"qt{qt}"
        binding = prefix / "lib/x86_64-linux-gnu/krita-python-libs/PyKrita/krita.so"
        binding.parent.mkdir(parents=True)
        binding.write_bytes(b"\x7fELF..." + linked + b"\x00libpython3.14.so\x00")
        program(prefix / "bin", "krita_version", f"{qt}.0.4")
        assert krita_release([prefix]) == (f"{qt}.0.4", qt)
    assert krita_release([tmp_path / "none"]) == (None, None)


def test_the_action_file_names_every_action_with_its_text():
    """Krita files actions by the ids a .action file names (the shortcut editor lists them);
    the texts must be the ones createAction gives."""
    tree = ast.parse((PLUGIN / "extension.py").read_text())
    declared = next(ast.literal_eval(node.value) for node in tree.body
                    if isinstance(node, ast.Assign) and node.targets[0].id == "ACTIONS")
    collection = ElementTree.parse(PLUGIN.parent / "glaze_krita.action").getroot()
    assert collection.get("version") == "2"
    category = collection.find("Actions")
    assert category[0].tag == "text" and category[0].text == "Glaze"  # the category's name
    filed = {action.get("name"): action.findtext("text")
             for action in category.findall("Action")}
    assert filed == {action_id: text for action_id, (text, _, _) in declared.items()}


@pytest.fixture
def krita_stand_in(monkeypatch):
    """The `krita` module's Extension, for the parts of the plug-in that need no Qt."""
    krita = types.ModuleType("krita")
    krita.Extension = type("Extension", (), {"__init__": lambda self, parent: None})
    monkeypatch.setitem(sys.modules, "krita", krita)


def load(name: str, package: str = "glaze_krita_under_test"):
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"{package}.{name}", PLUGIN / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_plugin_refuses_a_krita_it_does_not_support(krita_stand_in):
    support = load("support")
    for version in ("5.1.5", "5.2.9", "5.3.4", "6.0.4", "6.1.0-beta1", "git-1a2b3c"):
        assert support.refusal(version, (3, 13)) == "", version
    assert "Update Krita" in support.refusal("4.4.8", (3, 10))
    assert "newer Glaze" in support.refusal("7.0.0", (3, 14))
    assert "Python 3.10" in support.refusal("5.1.5", (3, 8))  # Krita 5.1's own builds


def test_the_qt_binding_is_chosen_by_what_krita_says(monkeypatch):
    """Never by trying an import: a Krita of an unknown Qt gets a message, no import."""
    pykrita = types.ModuleType("pykrita")
    pykrita.qt_major_version = lambda: 7
    monkeypatch.setitem(sys.modules, "pykrita", pykrita)
    imported = []
    real_import = __builtins__["__import__"] if isinstance(__builtins__, dict) \
        else __builtins__.__import__

    def watching(name, *args, **kwargs):
        if name.startswith("PyQt"):
            imported.append(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr("builtins.__import__", watching)
    with pytest.raises(ImportError, match="runs Qt 7"):
        load("qt")
    assert imported == []
