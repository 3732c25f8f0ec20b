"""Installing the plug-ins into a test HOME with `glaze install`, as an artist would."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from timing import scaled

from glaze.installer import kritarc

ROOT = Path(__file__).resolve().parent.parent


def home_env(home: Path, **extra: str) -> dict[str, str]:
    """An environment where every per-user folder is under `home`. PATH leaves out
    ~/.cargo/bin: pip asks rustc its version, and rustup then writes into HOME."""
    keep = {key: value for key, value in os.environ.items()
            if not key.startswith(("XDG_", "GLAZE_", "GIMP")) and key != "HOME"}
    return {**keep, "HOME": str(home), "PATH": "/usr/local/bin:/usr/bin:/bin", **extra}


def glaze(home: Path, *arguments: str, **extra: str) -> subprocess.CompletedProcess:
    """Run `glaze ARGUMENTS` for a user whose home is `home`."""
    return subprocess.run([sys.executable, "-m", "glaze", *arguments], env=home_env(home, **extra),
                          capture_output=True, text=True, timeout=scaled(600))


def glaze_install(home: Path, *arguments: str, **extra: str) -> str:
    """`glaze install ARGUMENTS` for `home`; `extra`: environment variables (PATH...)."""
    done = glaze(home, "install", *arguments, **extra)
    assert done.returncode == 0, f"glaze install failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def add_krita_plugin(home: Path, folder: Path) -> None:
    """Copy a further (test) plug-in beside the installed one and switch it on."""
    pykrita = home / ".local/share/krita/pykrita"
    shutil.copytree(folder, pykrita / folder.name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(folder.with_suffix(".desktop"), pykrita / f"{folder.name}.desktop")
    settings = home / ".config/kritarc"
    settings.write_text(kritarc.set_value(settings.read_text(), folder.name, "true"))
