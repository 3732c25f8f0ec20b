"""What `glaze install` wrote, so that a second run changes nothing, an interrupted run is
completed, and `glaze uninstall` removes exactly that and puts back what it replaced.

The manifest is saved (state "installing", listing every file about to be written) before
anything is written, and saved again (state "installed") when everything is in place.
Files it replaced that were not its own are kept in a backup folder and restored on
uninstall.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from glaze.engine.storage import atomic_path, data_dir, write_json

from . import kritarc

MANIFEST = "install-manifest.json"
BACKUPS = "install-backups"
POSIX_MODES = os.name == "posix"  # elsewhere permission bits say nothing of a file's content


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class FileSpec:
    """One file to be written: its bytes and permission bits, or a symbolic link."""

    path: Path
    data: bytes = b""
    mode: int = 0o644
    link: str | None = None  # a symbolic link to this target instead of a file

    def entry(self) -> dict:
        if self.link is not None:
            return {"link": self.link}
        return {"sha256": sha256(self.data), **({"mode": self.mode} if POSIX_MODES else {})}


@dataclass(frozen=True)
class SettingEdit:
    """enable_NAME=true in a kritarc."""

    path: Path
    name: str


def current_entry(path: Path) -> dict | None:
    """What is at `path` now, described like FileSpec.entry (None: nothing there)."""
    if path.is_symlink():
        return {"link": os.readlink(path)}
    if not path.is_file():
        return None
    entry = {"sha256": sha256(path.read_bytes())}
    if POSIX_MODES:
        entry["mode"] = path.stat().st_mode & 0o777
    return entry


@dataclass
class Manifest:
    state: str = "installed"
    files: dict[str, dict] = field(default_factory=dict)  # as installed by the last run
    pending: dict[str, dict] = field(default_factory=dict)  # being written by this run
    directories: list[str] = field(default_factory=list)  # created by install, in order
    settings: list[dict] = field(default_factory=list)  # {"path", "name", "before"}
    backups: dict[str, str] = field(default_factory=dict)  # replaced file -> its backup
    facts: dict = field(default_factory=dict)  # for `glaze doctor`: hosts, Pythons, model

    @staticmethod
    def path() -> Path:
        return data_dir() / MANIFEST

    @classmethod
    def load(cls) -> Manifest | None:
        try:
            return cls(**json.loads(cls.path().read_text()))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError) as error:
            raise ValueError(f"{cls.path()} is damaged ({error}); delete it to start over "
                             "(files installed before are then left in place)") from error

    def save(self) -> None:
        write_json(self.path(), vars(self))

    def is_ours(self, key: str) -> bool:
        """Whether the file at `key` is as an install (finished or interrupted) wrote it."""
        now = current_entry(Path(key))
        return now is not None and now in (self.files.get(key), self.pending.get(key))

    def setting(self, edit: SettingEdit) -> dict | None:
        return next((item for item in self.settings if item["path"] == str(edit.path)
                     and item["name"] == edit.name), None)


@dataclass
class Changes:
    """What an install would do or did."""

    write: list[FileSpec] = field(default_factory=list)
    remove: list[Path] = field(default_factory=list)  # stale files of an earlier install
    settings: list[SettingEdit] = field(default_factory=list)
    unchanged: int = 0

    def __bool__(self) -> bool:
        return bool(self.write or self.remove or self.settings)


def plan(specs: list[FileSpec], edits: list[SettingEdit], old: Manifest | None,
         keep: Callable[[str], bool] = lambda path: False) -> Changes:
    """Compare what should be installed with what is there. Files of an earlier install
    that are no longer wanted are removed, except those `keep` keeps."""
    changes = Changes()
    for spec in specs:
        if current_entry(spec.path) == spec.entry():
            changes.unchanged += 1
        else:
            changes.write.append(spec)
    wanted = {str(spec.path) for spec in specs}
    if old is not None:
        changes.remove = [Path(path) for path in old.files if path not in wanted
                          and not keep(path) and old.is_ours(path)]
    changes.settings = [edit for edit in edits
                        if kritarc.read_value(kritarc.load(edit.path), edit.name) != "true"]
    return changes


def _make_parents(path: Path, manifest: Manifest) -> None:
    missing = []
    for parent in path.parents:
        if parent.exists():
            break
        missing.append(parent)
    for folder in reversed(missing):
        folder.mkdir()
        manifest.directories.append(str(folder))


def _write(spec: FileSpec, manifest: Manifest) -> None:
    """Write one file; a file there that is not one of ours is moved to the backups first."""
    _make_parents(spec.path, manifest)
    key = str(spec.path)
    backed_up = key in manifest.backups and Path(manifest.backups[key]).exists()
    if (spec.path.exists() or spec.path.is_symlink()) and not manifest.is_ours(key) \
            and not backed_up:
        backup = data_dir() / BACKUPS / sha256(key.encode())
        _make_parents(backup, manifest)
        manifest.backups[key] = str(backup)
        manifest.save()  # recorded before it moves: an interruption cannot lose it
        shutil.move(spec.path, backup)
    if spec.link is not None:
        spec.path.unlink(missing_ok=True)
        spec.path.symlink_to(spec.link)
        return
    with atomic_path(spec.path) as temporary:
        temporary.write_bytes(spec.data)
        temporary.chmod(spec.mode)


def _edit_setting(edit: SettingEdit, manifest: Manifest) -> None:
    _make_parents(edit.path, manifest)
    text = kritarc.load(edit.path)
    if manifest.setting(edit) is None:
        manifest.settings.append({"path": str(edit.path), "name": edit.name,
                                  "before": kritarc.read_value(text, edit.name),
                                  "created": not edit.path.exists()})
        manifest.save()
    kritarc.save(edit.path, kritarc.set_value(text, edit.name, "true"))


def apply(changes: Changes, specs: list[FileSpec], manifest: Manifest,
          report: Callable[[str], None] = print,
          keep: Callable[[str], bool] = lambda path: False) -> None:
    """Carry out `changes`; `manifest` (loaded or new) ends up describing `specs` (and the
    earlier files that `keep` keeps)."""
    _make_parents(Manifest.path(), manifest)
    manifest.state = "installing"
    manifest.pending = {str(spec.path): spec.entry() for spec in specs}
    manifest.save()
    for spec in changes.write:
        _write(spec, manifest)
        report(f"  wrote {spec.path}")
    for edit in changes.settings:
        _edit_setting(edit, manifest)
        report(f"  enabled {edit.name} in {edit.path}")
    for path in changes.remove:
        path.unlink(missing_ok=True)
        report(f"  removed {path} (no longer part of the installation)")
    kept = {path: entry for path, entry in manifest.files.items()
            if path not in manifest.pending and keep(path)}
    manifest.files = {**kept, **manifest.pending}
    manifest.pending = {}
    manifest.state = "installed"
    manifest.save()


def _restore_setting(item: dict) -> bool:
    path = Path(item["path"])
    if not path.exists():
        return False
    text = kritarc.set_value(kritarc.load(path), item["name"], item["before"])
    if item.get("created") and not text.strip():
        path.unlink()
        return True
    kritarc.save(path, text)
    return True


def remove_all(manifest: Manifest, report: Callable[[str], None] = print) -> list[str]:
    """Undo an installation; returns the files left in place because the user changed them."""
    kept = []
    for key in {**manifest.files, **manifest.pending}:
        path = Path(key)
        if current_entry(path) is None:
            continue
        if not manifest.is_ours(key):
            kept.append(key)
            report(f"  kept {path}: changed since it was installed")
            continue
        path.unlink()
        report(f"  removed {path}")
    for key, backup in manifest.backups.items():
        if not Path(backup).exists():
            continue
        if key in kept:
            report(f"  the file it replaced at {key} is kept as {backup}")
            continue
        shutil.move(backup, key)
        report(f"  restored {key} as it was before install")
    for item in manifest.settings:
        if _restore_setting(item):
            report(f"  restored enable_{item['name']} in {item['path']}")
    Manifest.path().unlink(missing_ok=True)
    for folder in reversed(manifest.directories):
        _remove_if_empty(Path(folder))
    return kept


def _remove_if_empty(folder: Path) -> None:
    """Remove a folder the install created once nothing but caches is left in it."""
    for cache in folder.glob("__pycache__"):
        shutil.rmtree(cache, ignore_errors=True)
    with contextlib.suppress(OSError):  # the user (or the program) put something there
        folder.rmdir()
