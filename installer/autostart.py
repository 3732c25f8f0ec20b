"""Starting the daemon at login: a systemd user unit (Linux), a launchd agent (macOS) or a
Startup-folder script (Windows). Without one, the plug-ins start the daemon on first use.

The systemd unit is enabled the way `systemctl --user enable` does it (a link in
default.target.wants), so it needs no running user manager to install; macOS and Windows
files are written from the platforms' documentation, not run here.
"""

from __future__ import annotations

import plistlib
import subprocess
from pathlib import Path

from .locations import Environment
from .manifest import FileSpec

UNIT = "glaze-daemon.service"
AGENT = "org.glaze-for-painters.daemon"


def _quote(argument: str) -> str:
    """systemd's quoting for one ExecStart word."""
    if argument and not any(c in argument for c in ' \t"\'\\;$%'):
        return argument
    return '"' + argument.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%") + '"'


def systemd_unit(command: list[str]) -> str:
    return "\n".join([
        "[Unit]",
        "Description=Glaze daemon (keeps the style-cloak models loaded for Krita and GIMP)",
        "",
        "[Service]",
        "Type=simple",
        "ExecStart=" + " ".join(_quote(word) for word in command),
        "Restart=on-failure",
        "RestartSec=5",
        "",
        "[Install]",
        "WantedBy=default.target",
        "",
    ])


def launchd_agent(command: list[str], log: Path) -> bytes:
    return plistlib.dumps({"Label": AGENT, "ProgramArguments": command, "RunAtLoad": True,
                           "KeepAlive": {"SuccessfulExit": False},
                           "StandardErrorPath": str(log)})


def windows_startup(command: list[str]) -> str:
    return "@echo off\r\nstart \"\" /min " + subprocess.list2cmdline(command) + "\r\n"


def autostart_files(where: Environment, command: list[str], log: Path) -> list[FileSpec]:
    """The files that make the daemon (`command`, serving in the foreground) start at login."""
    if where.platform == "win32":
        startup = where.windows("APPDATA", "AppData/Roaming") / \
            "Microsoft/Windows/Start Menu/Programs/Startup/glaze-daemon.cmd"
        return [FileSpec(startup, windows_startup(command).encode())]
    if where.platform == "darwin":
        agent = where.home / "Library/LaunchAgents" / f"{AGENT}.plist"
        return [FileSpec(agent, launchd_agent(command, log))]
    units = where.xdg("XDG_CONFIG_HOME", ".config") / "systemd/user"
    return [FileSpec(units / UNIT, systemd_unit(command).encode()),
            FileSpec(units / "default.target.wants" / UNIT, link=f"../{UNIT}")]
