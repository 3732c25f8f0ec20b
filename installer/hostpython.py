"""Which Python runs inside each painting program, so that pyzmq and msgpack (compiled
extensions) can be fetched for it.

GIMP 3 runs Python plug-ins with a separate interpreter, so the installer asks that
interpreter: the one GIMP's interpreters/*.interp file names (Windows and macOS builds ship
one for their bundled Python), else /usr/bin/python3 on Linux (what GIMP's Python plug-ins'
`#!/usr/bin/env python3` finds when GIMP is started from the desktop).

Krita embeds Python: the installer reads the Python library its binding module links
(libpython3.X.so, python3X.dll, Python.framework/Versions/3.X). Distribution packages
(Debian's krita) link the system Python. Where no binding module is found (an AppImage is
not unpacked), the user is asked for the version, which Krita's own builds fix:

    Krita (official Windows, macOS, AppImage builds)   Python
    5.0, 5.1                                           3.8
    5.2                                                3.10
    5.3 (PyQt5), 6.0 (PyQt6)                           3.13
"""

from __future__ import annotations

import functools
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

KRITA_PYTHON = {"5.0": "3.8", "5.1": "3.8", "5.2": "3.10", "5.3": "3.13", "6.0": "3.13"}
KRITA_BINDINGS = ("lib/*/krita-python-libs/PyKrita/krita.so",
                  "lib64/krita-python-libs/PyKrita/krita.so",
                  "lib/krita-python-libs/PyKrita/krita.so",
                  "lib/krita-python-libs/PyKrita/krita.pyd")
LINKED_PYTHON = re.compile(
    rb"libpython3\.(\d+)|python3(\d+)\.dll|Python\.framework/Versions/3\.(\d+)")
LINKED_QT = re.compile(rb"libQt(\d)Core\.so|Qt(\d)Core\.dll|QtCore\.framework/Versions/(\d)")
PROBE = ("import json, platform, sys, sysconfig; print(json.dumps({'version': '%d.%d' % "
         "sys.version_info[:2], 'platform': sysconfig.get_platform(), "
         "'libc': platform.libc_ver()}))")
OLDEST_MANYLINUX = 17  # glibc 2.17: the oldest manylinux tag wheels are still built for
# Searched after PATH for the programs of a host's Python command (chroot lives in /usr/sbin,
# which a user's PATH often lacks).
ADMIN_FOLDERS = ("/usr/local/sbin", "/usr/sbin", "/sbin")


class HostPythonError(RuntimeError):
    """The Python inside a painting program could not be determined; says how to fix it."""


@dataclass(frozen=True)
class HostPython:
    version: str  # "3.13"
    platforms: tuple[str, ...]  # wheel platform tags it accepts, best first
    found_by: str  # how the version was learned, for the user
    command: tuple[str, ...] = ()  # how to run it, where it can be run outside its program

    @property
    def abi(self) -> str:
        return "cp" + self.version.replace(".", "")


def wheel_platforms(platform_name: str, libc: tuple[str, str] = ("", "")) -> tuple[str, ...]:
    """Wheel platform tags for sysconfig.get_platform() (and glibc version, on Linux)."""
    name = platform_name.replace("-", "_").replace(".", "_")
    if name.startswith("linux_"):
        arch = name.removeprefix("linux_")
        kind, version = libc
        minor = int(version.split(".")[1]) if kind == "glibc" and "." in version else 17
        return tuple(f"manylinux_2_{m}_{arch}" for m in range(minor, OLDEST_MANYLINUX - 1, -1)) \
            + (f"manylinux2014_{arch}",)
    if name.startswith("macosx_"):
        _, major, _, arch = (name.split("_") + ["", "", "", ""])[:4]
        arches = (arch, "universal2") if arch in ("arm64", "x86_64") else (arch,)
        return tuple(f"macosx_{m}_0_{a}" for m in range(max(int(major or 11), 11), 10, -1)
                     for a in arches) + tuple(f"macosx_10_9_{a}" for a in arches)
    return (name,)  # win_amd64, win_arm64


def this_machine(version: str, found_by: str, command: tuple[str, ...] = ()) -> HostPython:
    """A Python of `version` on this machine's platform (an embedded Python shares it)."""
    return HostPython(version, wheel_platforms(sysconfig.get_platform(), platform.libc_ver()),
                      found_by, command)


def command_words(command: str) -> list[str]:
    """A command line as words: a path to an existing file is one word, even with spaces
    and backslashes (Windows); anything else is split as a shell would."""
    if Path(command).is_file():
        return [command]
    return shlex.split(command, posix=os.name != "nt")


def tool_environment() -> dict[str, str]:
    """This process's environment with the system's admin folders at the end of PATH, for
    running a host's Python command."""
    path = os.environ.get("PATH", os.defpath).split(os.pathsep)
    if os.name == "posix":
        path += [folder for folder in ADMIN_FOLDERS if folder not in path]
    return {**os.environ, "PATH": os.pathsep.join(path)}


@functools.cache  # one install asks a GIMP's Python once, for all its profiles
def ask(command: str) -> HostPython:
    """Run `command` (a Python, e.g. /usr/bin/python3 or `flatpak run --command=python3
    APP`) and ask it for its version and platform."""
    words = command_words(command)
    try:
        done = subprocess.run([*words, "-c", PROBE], capture_output=True, text=True,
                              timeout=60, env=tool_environment())
        facts = json.loads(done.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.TimeoutExpired, ValueError, IndexError) as error:
        raise HostPythonError(f"could not run `{command}` to ask its Python version "
                              f"({error})") from error
    return HostPython(facts["version"], wheel_platforms(facts["platform"], tuple(facts["libc"])),
                      f"asked `{command}`", tuple(words))


def _linked(pattern: re.Pattern, binary: Path) -> int | None:
    """The number a library name `pattern` finds in `binary` names (its one matched group)."""
    match = pattern.search(binary.read_bytes())
    return int(next(group for group in match.groups() if group)) if match else None


def linked_python(binary: Path) -> str | None:
    """The Python version a compiled module links, read from its bytes."""
    minor = _linked(LINKED_PYTHON, binary)
    return None if minor is None else f"3.{minor}"


def program_says(command: list[str], pattern: str) -> str | None:
    """The first group of `pattern` in what `command` prints, or None if it cannot run."""
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(pattern, done.stdout)
    return match.group(1) if match else None


def krita_bindings(prefixes: list[Path]) -> list[Path]:
    """Krita's Python binding module under the given install prefixes."""
    return [path for prefix in prefixes for pattern in KRITA_BINDINGS
            for path in sorted(prefix.glob(pattern))]


def krita_release(prefixes: list[Path] | None = None) -> tuple[str | None, int | None]:
    """(version, Qt major) of the first Krita found: the version from its `krita_version`
    program, Qt from what its binding module links (5: PyQt5, 6: PyQt6); None where unknown."""
    for prefix in prefixes if prefixes is not None else default_prefixes():
        for binding in krita_bindings([prefix]):
            version = program_says([str(prefix / "bin/krita_version")], r"(\d+\.\d+\.\d+)")
            return version, _linked(LINKED_QT, binding)
    return None, None


def krita_python(override: str | None = None,
                 prefixes: list[Path] | None = None) -> HostPython:
    """Krita's Python: `override` (a version), else the binding module's linked library."""
    if override:
        return this_machine(override, "given with --krita-python")
    for binding in krita_bindings(prefixes if prefixes is not None else default_prefixes()):
        version = linked_python(binding)
        if version:
            system = Path(f"/usr/bin/python{version}")  # the same Python, runnable
            return this_machine(version, f"linked by {binding}",
                                (str(system),) if system.is_file() else ())
    builds = ", ".join(f"Krita {series}: {python}" for series, python in KRITA_PYTHON.items())
    raise HostPythonError(
        "could not tell which Python Krita runs (no Krita binding module found): pass "
        f"--krita-python 3.X. Krita's own builds (AppImage, Windows, macOS) use: {builds}")


def default_prefixes() -> list[Path]:
    """Install prefixes where a Krita binding module may be."""
    found = [Path(sys.base_prefix), Path("/usr"), Path("/usr/local")]
    if sys.platform == "win32":
        found += [Path(r"C:\Program Files\Krita (x64)")]
    elif sys.platform == "darwin":
        found += [Path("/Applications/krita.app/Contents")]
    return list(dict.fromkeys(found))


GIMP_PREFIXES = {"win32": [Path(r"C:\Program Files\GIMP 3")],
                 "darwin": [Path("/Applications/GIMP.app/Contents/Resources")]}
GIMP_INTERPRETERS = ("lib/gimp/3.0/interpreters", "lib/*/gimp/3.0/interpreters",
                     "lib64/gimp/3.0/interpreters")


def gimp_interpreter(prefixes: list[Path]) -> str | None:
    """The Python an interpreters/*.interp file of GIMP 3 names (`python3=PATH`)."""
    for prefix in prefixes:
        for folder in (found for pattern in GIMP_INTERPRETERS for found in prefix.glob(pattern)):
            for interp in sorted(folder.glob("*.interp")):
                for line in interp.read_text(errors="replace").splitlines():
                    key, _, value = line.partition("=")
                    if key.strip() in ("python3", "python") and value.strip():
                        return value.strip()
    return None


def gimp_python(command: str | None = None, prefixes: list[Path] | None = None) -> HostPython:
    """GIMP 3's plug-in Python: `command` when given, else the one GIMP's interpreter files
    name, else /usr/bin/python3 (Linux)."""
    if prefixes is None:
        prefixes = GIMP_PREFIXES.get(sys.platform, [Path("/usr")])
    command = command or gimp_interpreter(prefixes) or (
        "/usr/bin/python3" if Path("/usr/bin/python3").is_file() else None)
    try:
        if command is None:
            raise HostPythonError("GIMP's Python was not found")
        return ask(command)
    except HostPythonError as error:
        raise HostPythonError(
            f"{error}; pass --gimp-python with the command that runs GIMP's Python (Flatpak: "
            "'flatpak run --command=python3 org.gimp.GIMP'; Windows: the python.exe in GIMP's "
            "bin folder)") from error
