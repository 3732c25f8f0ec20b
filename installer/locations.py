"""Where Krita and GIMP 3 look for a user's plug-ins and settings, per platform and package.

Checked on Debian (native Krita 5.1, GIMP 3.0): the rest follows each program's own
documentation (Krita: "Resource folder"; GIMP: the user folder, gimp_directory()) and is
written, not run, here.

    Krita  Linux native / AppImage  $XDG_DATA_HOME/krita/pykrita, $XDG_CONFIG_HOME/kritarc
           Linux Flatpak            ~/.var/app/org.kde.krita/{data/krita/pykrita,config/kritarc}
           Windows                  %APPDATA%\\krita\\pykrita, %LOCALAPPDATA%\\kritarc
           macOS                    ~/Library/Application Support/krita/pykrita,
                                    ~/Library/Preferences/kritarc
           Krita's action categories go to krita/actions beside pykrita (the resource folder).
    GIMP 3 Linux native             $GIMP3_DIRECTORY, else $XDG_CONFIG_HOME/GIMP/3.N
           Linux Flatpak            ~/.var/app/org.gimp.GIMP/config/GIMP/3.N
           Windows                  %APPDATA%\\GIMP\\3.N
           macOS                    ~/Library/Application Support/GIMP/3.N

Each minor version of GIMP 3 has a profile folder of its own (3.0, 3.2, ...; checked with
GIMP 3.2.6: it reads GIMP/3.2 only). The plug-ins go into every 3.N folder that exists and
into the one of every GIMP 3.N found installed (its version from the program's name,
gimp-3.2, or from `gimp --version`); with neither, into 3.0's, which GIMP 3.2 copies on its
first start.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from .hostpython import program_says

KRITA_FLATPAK = "org.kde.krita"
GIMP_FLATPAK = "org.gimp.GIMP"
GIMP_FIRST = "3.0"  # the profile to use when no GIMP 3 version is known
GIMP_SERIES = re.compile(r"3\.\d+")
GIMP_PROGRAM = re.compile(r"gimp(?:-console)?-(3\.\d+)(?:\.exe)?")  # gimp-3.2, gimp-console-3.0
GIMP_UNVERSIONED = ("gimp", "gimp-console", "gimp-3", "gimp-console-3")
GIMP_BIN = {"win32": [Path(r"C:\Program Files\GIMP 3\bin")],
            "darwin": [Path("/Applications/GIMP.app/Contents/MacOS")]}


@dataclass(frozen=True)
class Host:
    """A place where one painting program looks for user plug-ins."""

    program: str  # "krita" or "gimp"
    variant: str  # "native", "flatpak", "windows", "macos"
    plugins: Path  # Krita's pykrita folder; GIMP's plug-ins folder
    settings: Path | None = None  # Krita's kritarc (GIMP needs no settings change)
    flatpak_id: str | None = None
    version: str | None = None  # GIMP's minor series ("3.2"), whose profile this is

    @property
    def label(self) -> str:
        name = "Krita" if self.program == "krita" else f"GIMP {self.version or '3'}"
        return f"{name} ({self.variant})"

    @property
    def actions(self) -> Path | None:
        """Krita's folder of action files (categories for the shortcut editor)."""
        return self.plugins.parent / "actions" if self.program == "krita" else None


@dataclass(frozen=True)
class Environment:
    """What the locations depend on; tests pass their own."""

    home: Path
    env: Mapping[str, str]
    platform: str = sys.platform

    @classmethod
    def current(cls) -> Environment:
        return cls(Path.home(), os.environ)

    def xdg(self, variable: str, default: str) -> Path:
        value = self.env.get(variable)
        return Path(value) if value and os.path.isabs(value) else self.home / default

    def windows(self, variable: str, default: str) -> Path:
        return Path(self.env.get(variable) or self.home / default)


def krita_hosts(where: Environment) -> list[Host]:
    """Every Krita profile location on this platform (native first)."""
    if where.platform == "win32":
        return [Host("krita", "windows", where.windows("APPDATA", "AppData/Roaming")
                     / "krita/pykrita",
                     where.windows("LOCALAPPDATA", "AppData/Local") / "kritarc")]
    if where.platform == "darwin":
        library = where.home / "Library"
        return [Host("krita", "macos", library / "Application Support/krita/pykrita",
                     library / "Preferences/kritarc")]
    flatpak = where.home / ".var/app" / KRITA_FLATPAK
    return [
        Host("krita", "native", where.xdg("XDG_DATA_HOME", ".local/share") / "krita/pykrita",
             where.xdg("XDG_CONFIG_HOME", ".config") / "kritarc"),
        Host("krita", "flatpak", flatpak / "data/krita/pykrita", flatpak / "config/kritarc",
             flatpak_id=KRITA_FLATPAK),
    ]


def gimp_hosts(where: Environment, installed: Iterable[str] | None = None) -> list[Host]:
    """Every GIMP 3 profile location on this platform (native first), one per minor
    version: those that exist and those of the GIMP versions `installed` (default: found
    on this machine)."""
    override = where.env.get("GIMP3_DIRECTORY")
    if installed is None:
        installed = installed_gimp_versions(where)
    if where.platform == "win32":
        variants = [("windows", where.windows("APPDATA", "AppData/Roaming") / "GIMP", None)]
    elif where.platform == "darwin":
        variants = [("macos", where.home / "Library/Application Support/GIMP", None)]
    else:
        variants = [("native", where.xdg("XDG_CONFIG_HOME", ".config") / "GIMP", None),
                    ("flatpak", where.home / ".var/app" / GIMP_FLATPAK / "config/GIMP",
                     GIMP_FLATPAK)]
    hosts = []
    for variant, base, flatpak in variants:
        if override and flatpak is None:  # GIMP uses that folder whatever its version
            hosts.append(Host("gimp", variant, Path(override) / "plug-ins"))
            continue
        for version in profile_versions(base, installed if flatpak is None else ()):
            hosts.append(Host("gimp", variant, base / version / "plug-ins",
                              flatpak_id=flatpak, version=version))
    return hosts


def profile_versions(base: Path, installed: Iterable[str]) -> list[str]:
    """The GIMP 3.N profile folders under `base` and those of the versions `installed`,
    oldest first; 3.0 alone if there are none."""
    found = set(installed)
    if base.is_dir():
        found |= {item.name for item in base.iterdir()
                  if item.is_dir() and GIMP_SERIES.fullmatch(item.name)}
    return sorted(found, key=lambda v: int(v.split(".")[1])) or [GIMP_FIRST]


def installed_gimp_versions(where: Environment) -> list[str]:
    """The GIMP 3.N series installed on this machine: from programs named gimp-3.N or
    gimp-console-3.N on PATH (and GIMP's own bin folder on Windows and macOS), else from
    what an unversioned `gimp` says with --version."""
    folders = [Path(p) for p in where.env.get("PATH", "").split(os.pathsep) if p]
    folders += GIMP_BIN.get(where.platform, [])
    versions, unversioned = set(), []
    for folder in folders:
        try:
            names = [item.name for item in folder.iterdir()]
        except OSError:
            continue
        for name in names:
            match = GIMP_PROGRAM.fullmatch(name)
            if match:
                versions.add(match.group(1))
            elif name.removesuffix(".exe") in GIMP_UNVERSIONED:
                unversioned.append(folder / name)
    if not versions:
        versions.update(filter(None, map(gimp_version_of, unversioned[:1])))
    return sorted(versions)


def gimp_version_of(program: Path) -> str | None:
    """The 3.N series `program --version` names ("... version 3.2.6"), if it answers."""
    return program_says([str(program), "--version"], r"version (3\.\d+)\.")


def is_present(host: Host, where: Environment, installed: Iterable[str] = ()) -> bool:
    """Whether this variant (and GIMP version) of the program seems installed for this user;
    `installed`: the GIMP versions found on this machine."""
    if host.flatpak_id:
        return (where.home / ".var/app" / host.flatpak_id).is_dir()
    if host.plugins.parent.is_dir():
        return True
    if host.program == "gimp":
        return host.version in installed if host.version else bool(installed)
    return shutil.which("krita", path=where.env.get("PATH")) is not None


def choose_hosts(program: str, where: Environment, asked: bool) -> list[Host]:
    """The profiles to install into: every variant found; the native one when the user asked
    for this program by name and none was found (the program may be installed later)."""
    installed = installed_gimp_versions(where) if program == "gimp" else []
    candidates = krita_hosts(where) if program == "krita" else gimp_hosts(where, installed)
    found = [host for host in candidates if is_present(host, where, installed)]
    if not found and asked:
        native = candidates[0].variant
        found = [host for host in candidates if host.variant == native]
    return found
