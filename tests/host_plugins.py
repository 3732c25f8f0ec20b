"""Installing the plug-ins by hand into a test profile, as the README describes."""

from __future__ import annotations

import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLIENT_FILES = ("__init__.py", "protocol.py", "connection.py", "client.py")


def vendor_client(folder: Path) -> None:
    """Copy the shared client into `folder`/glaze_client (its dependencies come from the
    host's Python here: Debian's python3-zmq, python3-msgpack, python3-platformdirs)."""
    target = folder / "glaze_client"
    target.mkdir(parents=True, exist_ok=True)
    for name in CLIENT_FILES:
        shutil.copy2(ROOT / "daemon" / name, target / name)


def install_krita_plugin(pykrita: Path, *extra: Path) -> None:
    """Copy the Glaze plug-in (and `extra` plug-in folders with their .desktop files)."""
    pykrita.mkdir(parents=True, exist_ok=True)
    for folder in (ROOT / "krita_plugin" / "glaze_krita", *extra):
        shutil.copytree(folder, pykrita / folder.name,
                        ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copy2(folder.with_suffix(".desktop"), pykrita / f"{folder.name}.desktop")
    vendor_client(pykrita / "glaze_krita" / "vendor")


def enable_krita_plugins(config: Path, *names: str) -> None:
    """Switch the plug-ins on in kritarc, as Settings > Python Plugin Manager would."""
    config.mkdir(parents=True, exist_ok=True)
    lines = ["[python]", *(f"enable_{name}=true" for name in names)]
    (config / "kritarc").write_text("\n".join(lines) + "\n")
