"""`glaze install` and `glaze uninstall`: the plug-ins, each with a client runtime built for
its host's Python, the daemon's settings, optional autostart, and the model weights."""

from __future__ import annotations

import json
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path

from glaze.daemon.config import DEFAULT_MODEL, config_path, read_config
from glaze.daemon.connection import state_dir
from glaze.daemon.control import log_path, stop
from glaze.engine.sources import DEFAULT, DEMO, model_source
from glaze.options import DEFEND

from . import autostart, models
from .hostpython import HostPython, HostPythonError, ask, gimp_python, krita_python
from .locations import Environment, Host, choose_hosts
from .manifest import FileSpec, Manifest, SettingEdit, apply, plan, remove_all
from .runtime import VendorError, build_runtime, runtime_key

KRITA_PLUGIN = "glaze_krita"
GIMP_PLUGINS = ("glaze", "glaze-export")  # each folder holds one executable NAME.py
GIMP_SHARED = "glaze_shared"
# GIMP's client runtime sits right in plug-ins/: GIMP 3.2's first start copies the 3.0
# profile only 4 folders deep (zmq/backend/cython is 3 below the runtime's own folder).
GIMP_VENDOR = "glaze_vendor"
GIMP_COPY_DEPTH = 4
Report = Callable[[str], None]


@dataclass
class InstallOptions:
    krita: bool = False
    gimp: bool = False
    models: str | None = None  # None: keep the current choice (demo on a first install)
    defend: str | None = None  # None: keep the current choice (every extractor at first)
    autostart: bool | None = None  # None: keep the current choice (off on a first install)
    dry_run: bool = False
    krita_python: str | None = None  # a version, when it cannot be found out
    gimp_python: str | None = None  # a command that runs GIMP's Python


def daemon_command() -> list[str]:
    """How this installation's daemon is started (the Python that has Glaze installed)."""
    return [sys.executable, "-m", "glaze", "daemon", "start"]


def _tree(source: Traversable, into: Path,
          executable: Callable[[str], bool] = lambda name: False) -> list[FileSpec]:
    """Every file under `source` (package data or a folder built here) as one under `into`."""
    specs = []
    for item in sorted(source.iterdir(), key=lambda entry: entry.name):
        if item.name == "__pycache__":
            continue
        if item.is_dir():
            specs += _tree(item, into / item.name, executable)
        else:
            specs.append(FileSpec(into / item.name, item.read_bytes(),
                                  0o755 if executable(item.name) else 0o644))
    return specs


def vendor_folder(program: str, plugins: Path) -> Path:
    """Where a host's plug-in keeps its client runtime."""
    return plugins / KRITA_PLUGIN / "vendor" if program == "krita" else plugins / GIMP_VENDOR


def too_deep_for_migration(specs: list[FileSpec], plugins: Path) -> list[Path]:
    """Files in folders deeper under plug-ins/ than GIMP's profile migration copies."""
    return [spec.path for spec in specs
            if len(spec.path.relative_to(plugins).parts) - 1 > GIMP_COPY_DEPTH]


def plugin_files(host: Host, runtime: Path) -> list[FileSpec]:
    """The plug-in's files and its vendored client runtime, where `host` looks for them."""
    vendor = _tree(runtime, vendor_folder(host.program, host.plugins))
    if host.program == "krita":
        source = files("glaze.krita_plugin")
        desktop = source / f"{KRITA_PLUGIN}.desktop"
        actions = source / f"{KRITA_PLUGIN}.action"
        return [FileSpec(host.plugins / desktop.name, desktop.read_bytes()),
                FileSpec(host.actions / actions.name, actions.read_bytes()),
                *_tree(source / KRITA_PLUGIN, host.plugins / KRITA_PLUGIN), *vendor]
    source = files("glaze.gimp_plugin")
    specs = []
    for name in (*GIMP_PLUGINS, GIMP_SHARED):
        specs += _tree(source / name, host.plugins / name,
                       lambda file: file.removesuffix(".py") in GIMP_PLUGINS)
    specs += vendor
    deep = too_deep_for_migration(specs, host.plugins)
    if deep:  # GIMP's next version would copy a broken plug-in
        raise VendorError(f"{deep[0]} is deeper than GIMP copies a profile "
                          f"({GIMP_COPY_DEPTH} folders): this client runtime cannot be used")
    return specs


def host_python(host: Host, overrides: dict) -> HostPython:
    if host.flatpak_id:
        return ask(f"flatpak run --command=python3 {host.flatpak_id}")
    if host.program == "krita":
        return krita_python(override=overrides.get("krita_python"))
    return gimp_python(overrides.get("gimp_python"))


def _overrides(options: InstallOptions, previous: dict) -> dict:
    """--krita-python / --gimp-python given now, else as given to an earlier run."""
    remembered = previous.get("overrides", {})
    return {name: getattr(options, name) or remembered.get(name)
            for name in ("krita_python", "gimp_python")
            if getattr(options, name) or remembered.get(name)}


@dataclass
class Plan:
    specs: list[FileSpec]
    edits: list[SettingEdit]
    facts: dict
    problems: list[str]
    unplanned: list[Path] = field(default_factory=list)  # hosts that failed: keep their files

    def keeps(self, path: str) -> bool:
        """Whether an earlier install's file belongs to a host this run could not plan."""
        return any(Path(path).is_relative_to(folder) for folder in self.unplanned)


def _settings_file(current: dict, model: str, defend: str) -> FileSpec:
    settings = {**current, "model": model, DEFEND.name: defend}
    return FileSpec(config_path(), (json.dumps(settings, indent=2, sort_keys=True) + "\n")
                    .encode())


def _current_settings() -> dict:
    try:
        return read_config()
    except ValueError:
        return {}  # replaced by a valid file


def _program_names(options: InstallOptions, previous: dict) -> list[str]:
    """The programs asked for now or installed before; none named: all that are found."""
    named = {name for name in ("krita", "gimp") if getattr(options, name)}
    named |= set(previous.get("programs", []))
    return [name for name in ("krita", "gimp") if name in named or not named]


def _host_facts(host: Host, python: HostPython) -> dict:
    return {"program": host.program, "variant": host.variant, "version": host.version,
            "plugins": str(host.plugins),
            "python": python.version, "python_found_by": python.found_by,
            "python_command": list(python.command), "runtime": runtime_key(python),
            "settings": str(host.settings) if host.settings else None}


def _installed_runtime(previous: dict, key: str) -> Path | None:
    """The vendor folder an earlier install built with runtime `key`, if any."""
    for host in previous.get("hosts", []):
        if host.get("runtime") == key:
            return vendor_folder(host["program"], Path(host["plugins"]))
    return None


def make_plan(options: InstallOptions, manifest: Manifest, staging: Path,
              where: Environment, report: Report) -> Plan:
    """Everything to install, with the client runtimes built into `staging` (an earlier
    install's runtime is reused where it is intact)."""
    previous = manifest.facts
    wanted = Plan([], [], {}, [])
    hosts, runtimes = [], {}
    overrides = _overrides(options, previous)
    installation = {"start_command": daemon_command(), "state_dir": str(state_dir())}
    for program in _program_names(options, previous):
        named = getattr(options, program) or program in previous.get("programs", [])
        found = choose_hosts(program, where, asked=named)
        if not found:
            report(f"{'Krita' if program == 'krita' else 'GIMP 3'} not found: skipped "
                   f"(--{program} installs its plug-in anyway)")
        for host in found:
            try:
                python = host_python(host, overrides)
                wheels = (python.version, python.platforms)  # what the runtime depends on
                if wheels not in runtimes:
                    runtimes[wheels] = staging / f"runtime-{len(runtimes)}"
                    build_runtime(python, runtimes[wheels], installation,
                                  _installed_runtime(previous, runtime_key(python)),
                                  lambda path: manifest.is_ours(str(path)))
                files_here = plugin_files(host, runtimes[wheels])
            except (HostPythonError, VendorError) as error:
                wanted.problems.append(f"{host.label}: {error}")
                wanted.unplanned += [folder for folder in (host.plugins, host.actions) if folder]
                continue
            wanted.specs += files_here
            if host.settings is not None:
                wanted.edits.append(SettingEdit(host.settings, KRITA_PLUGIN))
            hosts.append(_host_facts(host, python))
    current = _current_settings()
    model = models.model_choice(options.models or previous.get("model")
                                or current.get("model") or DEFAULT_MODEL, report)
    try:
        defend = ",".join(DEFEND.selection(options.defend or current.get(DEFEND.name)
                                           or DEFEND.default))
    except ValueError as error:
        raise models.ModelFetchError(str(error)) from None
    wanted.specs.append(_settings_file(current, model, defend))
    autostarts = previous.get("autostart", False) if options.autostart is None \
        else options.autostart
    if autostarts:
        wanted.specs += autostart.autostart_files(where, [*daemon_command(), "--foreground"],
                                                  log_path())
    failed = [h for h in previous.get("hosts", []) if Path(h["plugins"]) in wanted.unplanned]
    worked = {h["program"] for h in hosts}
    remembered = {**previous.get("overrides", {}),  # an override that failed is not kept
                  **{name: value for name, value in overrides.items()
                     if name.removesuffix("_python") in worked}}
    wanted.facts = {"programs": sorted({h["program"] for h in hosts + failed}),
                    "hosts": hosts + failed, "model": model, "defend": defend,
                    "autostart": autostarts,
                    "overrides": remembered}
    return wanted


def install(options: InstallOptions, where: Environment | None = None,
            report: Report = print) -> int:
    """Install (or complete, or update) everything; returns the exit status."""
    where = where or Environment.current()
    try:
        manifest = Manifest.load() or Manifest(state="new")
    except ValueError as error:
        report(f"glaze install: {error}")
        return 2
    if manifest.state == "installing":
        report("an earlier `glaze install` was interrupted: completing it")
    with tempfile.TemporaryDirectory(prefix="glaze-install-") as staging:
        try:
            wanted = make_plan(options, manifest, Path(staging), where, report)
            if not options.dry_run:  # first: a failed download leaves everything as it was
                models.fetch(wanted.facts["model"], wanted.facts["defend"], report)
        except models.ModelFetchError as error:
            report(f"glaze install: {error}")
            return 2
        changes = plan(wanted.specs, wanted.edits,
                       manifest if manifest.state != "new" else None, keep=wanted.keeps)
        if options.dry_run:
            _describe(wanted, changes, report)
        elif changes or manifest.state != "installed" or manifest.facts != wanted.facts:
            manifest.facts = wanted.facts
            apply(changes, wanted.specs, manifest, report, keep=wanted.keeps)
            report(f"installed: {len(changes.write)} files written, {changes.unchanged} "
                   "already in place")
        else:
            report(f"Glaze is already installed: nothing changed ({changes.unchanged} files "
                   "checked)")
    _summary(wanted, options.dry_run, report)
    return 1 if wanted.problems else 0


def _describe(wanted: Plan, changes, report: Report) -> None:
    writing = {spec.path for spec in changes.write}
    report("dry run: nothing is written. Would write:")
    for spec in wanted.specs:
        state = "unchanged" if spec.path not in writing else (
            "replace" if spec.path.exists() else "new")
        target = f" -> {spec.link}" if spec.link else f" ({oct(spec.mode)})"
        report(f"  [{state}] {spec.path}{target}")
    for edit in changes.settings:
        report(f"  [setting] enable_{edit.name}=true in {edit.path}")
    for path in changes.remove:
        report(f"  [remove] {path}")
    report("  [record] " + str(Manifest.path()))


def _summary(wanted: Plan, dry_run: bool, report: Report) -> None:
    for host in wanted.facts["hosts"]:
        report(f"{host['program']} ({host['variant']}): {host['plugins']} with a client for "
               f"Python {host['python']} ({host['python_found_by']})")
    model = wanted.facts["model"]
    if model == DEMO:
        model += (" (tiny demo models: NO protection; `glaze install --models default` "
                  "fetches the real ones)")
    elif model == DEFAULT:
        model += f" ({model_source(DEFAULT)})"
    report(f"model: {model}")
    for line in models.describe_sources(wanted.facts["model"], wanted.facts["defend"]):
        report(f"  {line}")
    report("the daemon starts at login" if wanted.facts["autostart"]
           else "the plug-ins start the daemon on first use")
    for problem in wanted.problems:
        report(f"problem: {problem}")
    if not dry_run and wanted.facts["hosts"]:
        report("restart Krita / GIMP, then use Filter > Glaze (Krita) or Filters > Glaze "
               "(GIMP)")


def uninstall(report: Report = print) -> int:
    """Remove what `glaze install` wrote and put back what it replaced."""
    try:
        manifest = Manifest.load()
    except ValueError as error:
        report(f"glaze uninstall: {error}")
        return 2
    if manifest is None:
        report("nothing to uninstall: `glaze install` has not been run (for this user)")
        return 0
    if stop() is not None:
        report("stopped the running Glaze daemon")
    kept = remove_all(manifest, report)
    report("uninstalled" + (f"; {len(kept)} files you changed were kept" if kept else ""))
    return 0
