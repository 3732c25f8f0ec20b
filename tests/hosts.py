"""The real painting programs the tests run: this machine's own, and those in the Debian
roots that `.ci/roots` builds under /var/cache/glaze-ci (run under chroot, with /proc,
/sys and /dev mounted in a private mount namespace). The daemon always runs on this machine;
a program in a root reaches it over the loopback network they share.

In CI (CI=true) every version series the README claims must be found: a missing one fails
the run (tests/test_hosts.py) instead of being skipped.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from host_plugins import glaze_install
from timing import scaled

from glaze.installer.hostpython import krita_python
from glaze.installer.locations import Environment, installed_gimp_versions

ROOTS = Path(os.environ.get("GLAZE_CI_CACHE", "/var/cache/glaze-ci"))
KRITA_ROOTS = ("sid-hosts", "sid-krita6")  # Krita 5.3 (Qt5), Krita 6 (Qt6)
GIMP_ROOTS = ("trixie-gimp", "sid-hosts")  # GIMP 3.0, GIMP 3.2
# What the README claims, as version series; CI fails when one is not found.
KRITA_SERIES = (("5.1", "5.2"), ("5.3",), ("6.0",))
GIMP_SERIES = (("3.0",), ("3.2",))
IN_CI = os.environ.get("CI") == "true"
MOUNTS = ('mount -t proc proc "$0/proc" && mount --rbind /sys "$0/sys" && '
          'mount --rbind /dev "$0/dev" && exec chroot "$0" "$@"')
PATH = "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"

# X displays handed out by xvfb_run, never twice in one test run: an Xvfb that has just
# been told to stop can still hold its number for a moment.
_displays = iter(range(100 + os.getpid() % 400, 10**4))


def xvfb_run(*server_args: str) -> list[str]:
    """The start of an argv that runs a program under its own Xvfb, on a display number
    no X server listens on. xvfb-run's own choice (-a) looks only for lock files in the /tmp
    it sees, and a Debian root's /tmp is not the machine's, while the servers' abstract
    sockets are shared: a Krita in one root was sent to the display of an Xvfb that was
    still stopping in another."""
    listening = set(re.findall(r"/tmp/\.X11-unix/X(\d+)",
                               Path("/proc/net/unix").read_text(errors="replace")))
    number = next(n for n in _displays if str(n) not in listening)
    return ["xvfb-run", "-a", "-n", str(number),
            *(["-s", " ".join(server_args)] if server_args else [])]


@dataclass(frozen=True)
class Place:
    """Where a program is installed: this machine (root None) or a Debian root."""

    root: Path | None = None

    @property
    def name(self) -> str:
        return self.root.name if self.root else "this machine"

    def has(self, program: str) -> bool:
        if self.root is None:
            return shutil.which(program) is not None
        return (self.root / "usr/bin" / program).exists() and os.geteuid() == 0

    def workspace(self, fallback: Path) -> Path:
        """A fresh folder both the tests and the program can reach."""
        if self.root is None:
            fallback.mkdir(parents=True, exist_ok=True)
            return fallback
        folder = self.root / "tmp" / f"glaze-test-{uuid.uuid4().hex[:8]}"
        folder.mkdir(parents=True)
        return folder

    def inside(self, path: Path) -> str:
        """`path` as the program sees it."""
        return "/" + str(path.relative_to(self.root)) if self.root else str(path)

    def cleanup(self, workspace: Path) -> None:
        if self.root is not None:
            shutil.rmtree(workspace, ignore_errors=True)

    def command(self, argv: list[str], env: dict[str, str]) -> tuple[list[str], dict | None]:
        """(command, environment) that run `argv` in this place with exactly `env` (plus
        PATH and LANG) as its environment, in a process group of its own."""
        base = {"PATH": PATH, "LANG": "C.UTF-8", **env}
        if self.root is None:
            return argv, base
        inner = ["env", "-i", *(f"{key}={value}" for key, value in base.items()), *argv]
        return ["unshare", "-m", "--propagation", "private", "sh", "-c", MOUNTS,
                str(self.root), *inner], {"PATH": PATH}

    def run(self, argv: list[str], env: dict[str, str], timeout: float,
            background: bool = False):
        """Run `argv` here; the whole process group is killed when `timeout` passes. In the
        `background`, the process's output goes to a file, `process.log` (no pipe to fill)."""
        command, environment = self.command(argv, env)
        if background:
            log = tempfile.TemporaryFile("w+")  # noqa: SIM115 (closed with the process)
            process = subprocess.Popen(command, env=environment, stdout=log,
                                       stderr=subprocess.STDOUT, text=True,
                                       start_new_session=True)
            process.log = log
            return process
        process = subprocess.Popen(command, env=environment, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True, start_new_session=True)
        try:
            out, err = process.communicate(timeout=scaled(timeout))
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            out, err = process.communicate()
            err += f"\n(killed after {scaled(timeout):.0f} s)"
        return subprocess.CompletedProcess(command, process.returncode, out, err)


def places(roots: tuple[str, ...]) -> list[Place]:
    """This machine, then the named roots."""
    return [Place(), *(Place(ROOTS / name) for name in roots)]


@dataclass(frozen=True)
class Program:
    """One version of a painting program and where it is; `id` names it in test ids."""

    version: str
    place: Place
    NAME: ClassVar[str] = ""

    @property
    def id(self) -> str:
        return f"{self.NAME}-{self.version}"


@dataclass(frozen=True)
class Krita(Program):
    """One Krita: its version (Krita's own `krita_version`) and where it is."""

    NAME: ClassVar[str] = "krita"

    def python(self) -> str:
        """The Python it embeds, read from its binding module as the installer does."""
        usr = (self.place.root or Path("/")) / "usr"
        return krita_python(prefixes=[usr]).version

    def install_plugin(self, home: Path) -> str:
        """`glaze install --krita` for a user whose home is `home`; a Krita in a root gets
        the runtime for its Python (the installer looks for Krita on this machine)."""
        extra = ("--krita-python", self.python()) if self.place.root else ()
        return glaze_install(home, "--krita", *extra)


@dataclass(frozen=True)
class Gimp(Program):
    """One GIMP 3: its version (from gimp-console-3.X's name) and where it is."""

    NAME: ClassVar[str] = "gimp"

    @property
    def console(self) -> str:
        return f"gimp-console-{self.version}"

    @property
    def python(self) -> str:
        """The command that runs the Python GIMP gives its plug-ins."""
        chroot = f"chroot {self.place.root} " if self.place.root else ""
        return chroot + "/usr/bin/python3"

    def install_plugins(self, home: Path) -> str:
        """`glaze install --gimp` for `home`, with this GIMP's programs on PATH, where the
        installer learns its version from their names."""
        bin_folder = (self.place.root or Path("/")) / "usr/bin"
        return glaze_install(home, "--gimp", "--gimp-python", self.python,
                             PATH=f"/usr/local/bin:/usr/bin:/bin:{bin_folder}")

    def profile(self, home: Path) -> Path:
        return home / ".config/GIMP" / self.version

    def batch(self, script: Path, env: dict, timeout: float = 300, background: bool = False,
              display: bool = False):
        """Run the Python file `script` in GIMP's batch interpreter, then quit; `display`:
        under Xvfb, so that the script can build GTK widgets."""
        argv = [self.console, "-i", "--batch-interpreter", "python-fu-eval", "-b",
                f'exec(open("{self.place.inside(script)}").read())', "--quit"]
        if display:
            argv = [*xvfb_run(), *argv]
        return self.place.run(argv, env, timeout, background)


def _krita_versions(place: Place) -> list[str]:
    """The version Krita's own `krita_version` prints, run where that Krita is."""
    if not place.has("krita") or not place.has("krita_version"):
        return []
    done = place.run(["krita_version"], {}, timeout=60)
    found = re.search(r"\d+\.\d+\.\d+", done.stdout)
    return [found.group(0)] if done.returncode == 0 and found else []


def _gimp_versions(place: Place) -> list[str]:
    """The GIMP 3.N the installer finds there (by the programs' names), with a console."""
    path = str(place.root / "usr/bin") if place.root else os.environ.get("PATH", "")
    found = installed_gimp_versions(Environment(Path.home(), {"PATH": path}, "linux"))
    return [version for version in found if place.has(f"gimp-console-{version}")]


def _find(host: type, roots: tuple[str, ...], versions_at) -> list:
    """One `host` per version found on this machine and in `roots` (the first place wins)."""
    found = {}
    for place in places(roots):
        for version in versions_at(place):
            found.setdefault(version, host(version, place))
    return sorted(found.values(), key=lambda each: [int(n) for n in each.version.split(".")])


def find_kritas() -> list[Krita]:
    return _find(Krita, KRITA_ROOTS, _krita_versions)


def find_gimps() -> list[Gimp]:
    return _find(Gimp, GIMP_ROOTS, _gimp_versions)


def series(version: str) -> str:
    return ".".join(version.split(".")[:2])


def missing(found: list, wanted: tuple[tuple[str, ...], ...]) -> list[str]:
    """The claimed version series none of `found` belongs to."""
    have = {series(host.version) for host in found}
    return [" or ".join(choices) for choices in wanted if not have & set(choices)]
