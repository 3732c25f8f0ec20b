"""Where Krita and GIMP 3 look for a user's plug-ins and settings, per platform and package.

Checked on Debian (native Krita 5.1, GIMP 3.0): the rest follows each program's own
documentation (Krita: "Resource folder"; GIMP: the user folder, gimp_directory()) and is
written, not run, here.

    Krita  Linux native / AppImage  $XDG_DATA_HOME/krita/pykrita, $XDG_CONFIG_HOME/kritarc
           Linux Flatpak            ~/.var/app/org.kde.krita/{data/krita/pykrita,config/kritarc}
           Windows                  %APPDATA%\\krita\\pykrita, %LOCALAPPDATA%\\kritarc
           macOS                    ~/Library/Application Support/krita/pykrita,
                                    ~/Library/Preferences/kritarc
    GIMP 3 Linux native             $GIMP3_DIRECTORY, else $XDG_CONFIG_HOME/GIMP/3.0
           Linux Flatpak            ~/.var/app/org.gimp.GIMP/config/GIMP/3.0
           Windows                  %APPDATA%\\GIMP\\3.0
           macOS                    ~/Library/Application Support/GIMP/3.0
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

KRITA_FLATPAK = "org.kde.krita"
GIMP_FLATPAK = "org.gimp.GIMP"


@dataclass(frozen=True)
class Host:
    """A place where one painting program looks for user plug-ins."""

    program: str  # "krita" or "gimp"
    variant: str  # "native", "flatpak", "windows", "macos"
    plugins: Path  # Krita's pykrita folder; GIMP's plug-ins folder
    settings: Path | None = None  # Krita's kritarc (GIMP needs no settings change)
    flatpak_id: str | None = None

    @property
    def label(self) -> str:
        return f"{'Krita' if self.program == 'krita' else 'GIMP 3'} ({self.variant})"


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


def gimp_hosts(where: Environment) -> list[Host]:
    """Every GIMP 3 profile location on this platform (native first)."""
    override = where.env.get("GIMP3_DIRECTORY")
    if where.platform == "win32":
        native = where.windows("APPDATA", "AppData/Roaming") / "GIMP/3.0"
        hosts = [Host("gimp", "windows", Path(override or native) / "plug-ins")]
    elif where.platform == "darwin":
        native = where.home / "Library/Application Support/GIMP/3.0"
        hosts = [Host("gimp", "macos", Path(override or native) / "plug-ins")]
    else:
        native = where.xdg("XDG_CONFIG_HOME", ".config") / "GIMP/3.0"
        flatpak = where.home / ".var/app" / GIMP_FLATPAK / "config/GIMP/3.0"
        hosts = [Host("gimp", "native", Path(override or native) / "plug-ins"),
                 Host("gimp", "flatpak", flatpak / "plug-ins", flatpak_id=GIMP_FLATPAK)]
    return hosts


NATIVE_COMMANDS = {"krita": ("krita",), "gimp": ("gimp-3.0", "gimp", "gimp-console-3.0")}


def is_present(host: Host, where: Environment) -> bool:
    """Whether this variant of the program seems installed for this user."""
    if host.flatpak_id:
        return (where.home / ".var/app" / host.flatpak_id).is_dir()
    if host.plugins.parent.is_dir():
        return True
    return any(shutil.which(name) for name in NATIVE_COMMANDS[host.program])


def choose_hosts(program: str, where: Environment, asked: bool) -> list[Host]:
    """The profiles to install into: every variant found; the native one when the user asked
    for this program by name and none was found (the program may be installed later)."""
    candidates = krita_hosts(where) if program == "krita" else gimp_hosts(where)
    found = [host for host in candidates if is_present(host, where)]
    if not found and asked:
        found = candidates[:1]
    return found
