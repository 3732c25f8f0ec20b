"""Running real GIMP 3 for tests: directly where the system has it (Debian 13), else in the
Debian 13 root that .ci/run builds with mmdebstrap (Debian 12 ships no GIMP 3)."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from pathlib import Path

from host_plugins import glaze_install
from timing import scaled

DEBIAN13_ROOT = Path(os.environ.get("GLAZE_GIMP_ROOT", "/var/cache/glaze-ci/trixie-gimp"))
GIMP = "gimp-console-3.0"


class Gimp:
    def __init__(self, root: Path | None) -> None:
        self.root = root

    @classmethod
    def find(cls) -> Gimp | None:
        if shutil.which(GIMP):
            return cls(None)
        if (DEBIAN13_ROOT / "usr/bin" / GIMP).exists() and os.geteuid() == 0:
            return cls(DEBIAN13_ROOT)
        return None

    def workspace(self, fallback: Path) -> Path:
        """A folder both this process and GIMP can reach."""
        if self.root is None:
            return fallback
        folder = self.root / "tmp" / f"glaze-test-{uuid.uuid4().hex[:8]}"
        folder.mkdir(parents=True)
        return folder

    def seen_by_gimp(self, path: Path) -> str:
        return "/" + str(path.relative_to(self.root)) if self.root else str(path)

    @property
    def python(self) -> str:
        """The command that runs the Python GIMP gives its plug-ins."""
        chroot = f"/usr/sbin/chroot {self.root} " if self.root else ""
        return chroot + "/usr/bin/python3"

    def install_plugins(self, home: Path) -> str:
        """`glaze install --gimp` for a user whose home is `home`."""
        return glaze_install(home, "--gimp", "--gimp-python", self.python)

    def batch(self, script: Path, env: dict, timeout: float = 300,
              background: bool = False):
        command = [GIMP, "-i", "--batch-interpreter", "python-fu-eval", "-b",
                   f'exec(open("{self.seen_by_gimp(script)}").read())', "--quit"]
        base = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}
        if self.root is not None:
            command = ["chroot", str(self.root), "env", "-i",
                       *(f"{k}={v}" for k, v in {**base, **env}.items()), *command]
            environment = None
        else:
            environment = {**os.environ, **base, **env}
        if background:
            return subprocess.Popen(command, env=environment, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, text=True)
        return subprocess.run(command, env=environment, capture_output=True, text=True,
                              timeout=scaled(timeout))

    def cleanup(self, workspace: Path) -> None:
        if self.root is not None:
            shutil.rmtree(workspace, ignore_errors=True)
