"""`glaze doctor`: what a bug report needs, in plain text (versions, device, models, the
daemon, and each host's plug-in: where it is and whether its client imports)."""

from __future__ import annotations

import platform
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from glaze import __version__

from .hostpython import krita_release, tool_environment
from .install import GIMP_PLUGINS, vendor_folder
from .locations import Environment, gimp_hosts, installed_gimp_versions, is_present
from .manifest import Manifest, current_entry

IMPORT_CHECK = ("import sys; sys.path.insert(0, sys.argv[1]); import glaze_client.client, zmq, "
                "msgpack; print(zmq.__file__, zmq.zmq_version())")
# _zmq.cpython-313-x86_64-linux-gnu.so, _zmq.cp313-win_amd64.pyd, _zmq.abi3.so
EXTENSION_TAG = re.compile(r"\.(?:cpython-|cp)(\d+)-|\.(abi3)\.")


def _line(report: Callable[[str], None], name: str, value: object) -> None:
    report(f"{name:>16}: {value}")


def client_check(host: dict) -> str:
    """Whether the host's Python can import the vendored client: run the host's Python
    where it can be run, else compare the compiled extension's tag with its version."""
    vendor = vendor_folder(host["program"], Path(host["plugins"]))
    if not (vendor / "glaze_client" / "client.py").is_file():
        return "NO: the vendored client is missing (run `glaze install` again)"
    command = host.get("python_command") or []
    if command:
        shown = " ".join(command)
        try:
            done = subprocess.run([*command, "-c", IMPORT_CHECK, str(vendor)],
                                  capture_output=True, text=True, timeout=60,
                                  env=tool_environment())
        except (OSError, subprocess.TimeoutExpired) as error:
            return f"unknown: could not run {shown} ({error})"
        if done.returncode == 0:
            return f"yes (checked with {shown}: zmq {done.stdout.strip()})"
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        return f"NO ({shown}: {last})"
    tags = {match.group(1) or match.group(2) for path in vendor.rglob("*")
            if path.suffix in (".so", ".pyd") for match in [EXTENSION_TAG.search(path.name)]
            if match}
    want = host["python"].replace(".", "")
    fits = any(tag == "abi3" or tag == want for tag in tags)
    return (f"{'likely' if fits else 'NO'}: compiled for {sorted(tags)}, the host runs Python "
            f"{host['python']} (not run: its Python cannot be started outside the program)")


def _hosts(report: Callable[[str], None], manifest: Manifest | None) -> None:
    if manifest is None:
        _line(report, "installed", "no (`glaze install` has not been run for this user)")
        return
    _line(report, "installed", f"{manifest.state}, model {manifest.facts.get('model')}, "
          f"autostart {'on' if manifest.facts.get('autostart') else 'off'}")
    changed = [path for path, entry in manifest.files.items()
               if current_entry(Path(path)) != entry]
    _line(report, "installed files", f"{len(manifest.files)}, {len(changed)} missing or changed"
          + (f" (e.g. {changed[0]})" if changed else ""))
    for host in manifest.facts.get("hosts", []):
        name = f"{host['program']} {host['variant']}"
        _line(report, name, f"{host['plugins']} (Python {host['python']}, "
              f"{host['python_found_by']})")
        _line(report, "  client imports", client_check(host))


def _programs(report: Callable[[str], None]) -> None:
    """The painting programs on this machine: Krita's version and Qt binding; each GIMP 3
    version, installed or with a profile, and whether its profile holds the plug-ins."""
    version, qt = krita_release()
    if version or qt:
        _line(report, "Krita", f"{version or 'version unknown'}, "
              + (f"Qt {qt} (PyQt{qt} plug-ins)" if qt else "Qt version unknown"))
    else:
        _line(report, "Krita", "not found on this machine's usual paths")
    where = Environment.current()
    installed = installed_gimp_versions(where)
    found = [host for host in gimp_hosts(where, installed) if is_present(host, where, installed)]
    if not found:
        _line(report, "GIMP 3", "not found (no gimp-3.N program, no GIMP/3.N profile)")
    for host in found:
        has = all((host.plugins / name / f"{name}.py").is_file() for name in GIMP_PLUGINS)
        state = "installed" if host.version in installed else (
            "profile folder, program not found" if host.version else "GIMP3_DIRECTORY")
        _line(report, host.label, f"{state}; {host.plugins}: "
              + ("Glaze plug-ins present" if has else "NO Glaze plug-ins (run `glaze install`)"))


def _engine(report: Callable[[str], None]) -> None:
    try:
        import torch

        from glaze.engine.models import pick_device
    except ImportError as error:
        _line(report, "engine", f"cannot import ({error})")
        return
    device = pick_device()
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    _line(report, "torch", f"{torch.__version__} (CUDA {torch.version.cuda})")
    _line(report, "device", f"{device} {name}".strip())


def _model(report: Callable[[str], None]) -> None:
    from glaze.daemon.config import config_path, configured, configured_model
    from glaze.options import DEFEND

    try:
        model, defend = configured_model(), configured(DEFEND)
    except ValueError as error:
        _line(report, "model", str(error))
        return
    where = "built in, NO protection" if model == "demo" else (
        "local folder" if Path(model).is_dir() else _hub_state(model))
    _line(report, "model", f"{model} ({where}; settings {config_path()})")
    _line(report, "defends", f"{defend} (`glaze install --defend` changes it)")
    from .models import describe_sources

    try:
        for line in describe_sources(model, defend):
            _line(report, "families", line)
    except (ValueError, RuntimeError) as error:  # a settings file edited by hand
        _line(report, "families", str(error))


def _hub_state(model: str) -> str:
    from huggingface_hub import constants, try_to_load_from_cache

    cached = try_to_load_from_cache(model, "model_index.json")
    return (f"hub id, cached in {constants.HF_HUB_CACHE}" if isinstance(cached, str)
            else "hub id, NOT downloaded yet: run `glaze install --models default`")


def _daemon(report: Callable[[str], None]) -> None:
    from glaze.daemon.client import Client, DaemonError
    from glaze.daemon.control import running

    info = running()
    if info is None:
        _line(report, "daemon", "not running (the plug-ins start it on first use)")
        return
    try:
        with Client(info, timeout=5.0) as client:
            status = client.status()
        _line(report, "daemon", f"running, pid {info.pid}, {info.endpoint}, bundle "
              f"{status.get('bundle')} on {status.get('device')}")
    except DaemonError as error:
        _line(report, "daemon", f"pid {info.pid} does not answer: {error}")


def doctor(report: Callable[[str], None] = print) -> int:
    report("glaze doctor (paste this into a bug report)")
    _line(report, "glaze", __version__)
    _line(report, "python", f"{platform.python_version()} ({sys.executable})")
    _line(report, "platform", platform.platform())
    _programs(report)
    _engine(report)
    _model(report)
    _daemon(report)
    try:
        manifest = Manifest.load()
    except ValueError as error:
        _line(report, "installed", str(error))
        manifest = None
    _hosts(report, manifest)
    return 0


