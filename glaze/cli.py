"""The `glaze` command line."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from glaze import __version__

MODEL_HELP = ("demo (tiny, NO protection), default, a local folder or a hub id (default: what "
              "`glaze install --models` chose, else demo)")


def run_cloak(args: argparse.Namespace) -> int:
    from glaze.batch import run_cloak as run

    return run(args)


def run_daemon_start(args: argparse.Namespace) -> int:
    from glaze.daemon.client import DaemonError
    from glaze.daemon.control import running, start_background

    info = running()
    if info is not None:
        print(f"the Glaze daemon is already running: pid {info.pid}, {info.endpoint}, "
              f"bundle {info.bundle}")
        return 0
    if args.foreground:
        return _serve_here(args)
    options = ["--model", args.model]
    for flag, value in (("--device", args.device), ("--precision", args.precision),
                        ("--idle-exit", args.idle_exit), ("--max-frame-mb", args.max_frame_mb)):
        if value is not None:
            options += [flag, str(value)]
    try:
        info = start_background(options)
    except DaemonError as error:
        print(f"glaze: {error}", file=sys.stderr)
        return 1
    print(f"the Glaze daemon is running: pid {info.pid}, {info.endpoint}, bundle {info.bundle}")
    return 0


def _serve_here(args: argparse.Namespace) -> int:
    import logging

    from glaze.daemon.protocol import MAX_FRAME_BYTES
    from glaze.daemon.server import serve
    from glaze.engine import ModelLoadError, load_bundle

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    try:
        bundle = load_bundle(args.model, device=args.device, precision=args.precision)
    except ModelLoadError as error:
        print(f"glaze: {error}", file=sys.stderr)
        return 1
    if bundle.protection_note:
        logging.getLogger("glaze.daemon").warning("%s", bundle.protection_note)
    limit = int(args.max_frame_mb * 2**20) if args.max_frame_mb else MAX_FRAME_BYTES
    serve(bundle, idle_exit_s=args.idle_exit * 60 if args.idle_exit else None,
          max_frame_bytes=limit)
    return 0


def run_daemon_stop(args: argparse.Namespace) -> int:
    from glaze.daemon.control import stop

    info = stop()
    print("the Glaze daemon is not running" if info is None
          else f"stopped the Glaze daemon (pid {info.pid})")
    return 0


def run_daemon_status(args: argparse.Namespace) -> int:
    from glaze.daemon.client import Client, DaemonError
    from glaze.daemon.control import running

    info = running()
    if info is None:
        print("the Glaze daemon is not running")
        return 1
    try:
        with Client(info, timeout=5.0) as client:
            status = client.status()
    except DaemonError as error:
        print(f"the Glaze daemon (pid {info.pid}) does not answer: {error}")
        return 1
    for name in ("pid", "endpoint", "bundle", "device", "queued", "running", "served",
                 "uptime_s", "rejected", "invalid", "protocol", "version"):
        print(f"{name:>10}: {status.get(name)}")
    if status.get("protection_note"):
        print(f"{'note':>10}: {status['protection_note']}")
    return 0


def run_styles(args: argparse.Namespace) -> int:
    from glaze.engine.styles import candidate_styles

    print("\n".join(candidate_styles()))
    return 0


def run_profile(args: argparse.Namespace) -> int:
    from glaze.engine.profiles import ArtistProfile, ProfileStore

    store = ProfileStore()
    if args.name is None:
        return _list_profiles(store, args.json)
    try:
        if args.target:
            store.save(ArtistProfile.new(args.name, args.target, "user"))
        profile = store.load(args.name)
    except ValueError as error:
        print(f"glaze: {error}", file=sys.stderr)
        return 2
    if profile is None:
        print(f"no profile {args.name!r} yet: the first `glaze cloak --profile {args.name!r}` "
              "chooses its target style from the artworks it is given")
        return 1
    if args.json:
        print(json.dumps(vars(profile), indent=2))
        return 0
    how = ("chosen by you" if profile.chosen_by == "user"
           else f"chosen automatically with {profile.bundle or 'the models of the time'}")
    print(f"profile {profile.name!r}\n  target style: {profile.target_style}\n  {how}, "
          f"{profile.created}\n  stored in {store.path(profile.name)}")
    return 0


def _list_profiles(store, as_json: bool) -> int:
    profiles = [store.load(name) for name in store.names()]
    if as_json:
        print(json.dumps([vars(profile) for profile in profiles], indent=2))
    elif not profiles:
        print(f"no artist profiles yet (they are kept in {store.folder})")
    for profile in [] if as_json else profiles:
        print(f"{profile.name}: {profile.target_style}")
    return 0


def run_install(args: argparse.Namespace) -> int:
    from glaze.installer.install import InstallOptions, install

    return install(InstallOptions(
        krita=args.krita, gimp=args.gimp, models=args.models, autostart=args.autostart,
        dry_run=args.dry_run, krita_python=args.krita_python, gimp_python=args.gimp_python))


def run_uninstall(args: argparse.Namespace) -> int:
    from glaze.installer.install import uninstall

    return uninstall()


def run_doctor(args: argparse.Namespace) -> int:
    from glaze.installer.doctor import doctor

    return doctor()


def _configured_model() -> str:
    from glaze.daemon.config import configured_model

    try:
        return configured_model()
    except ValueError as error:
        raise SystemExit(f"glaze: {error}") from error


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="glaze", description=__doc__)
    parser.add_argument("--version", action="version", version=f"glaze {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    cloak = commands.add_parser("cloak", help="cloak image files or folders of them")
    cloak.add_argument("inputs", nargs="+", metavar="INPUT",
                       help="PNG, JPEG, WebP or TIFF files, or folders (searched recursively)")
    cloak.add_argument("-o", "--outdir", help="write outputs here (default: beside each input)")
    cloak.add_argument("--model", help=MODEL_HELP)
    cloak.add_argument("--intensity", default="default",
                       help="low, default, high, or the LPIPS budget p itself (e.g. 0.05)")
    cloak.add_argument("--quality", default="default",
                       help="faster, default, slower, or a number of optimizer steps")
    cloak.add_argument("--profile", default="default", help="artist profile (default: default)")
    cloak.add_argument("--target", help="set the profile's target style instead of choosing one")
    cloak.add_argument("--seed", type=int, default=0)
    cloak.add_argument("--work-size", type=int, default=512,
                       help="long side the encoder sees, in pixels (default 512)")
    cloak.add_argument("--device", help="cuda, mps or cpu (default: the best available)")
    cloak.add_argument("--precision", choices=("fp32", "bf16", "fp16"),
                       help="encoder precision (default: the fastest the device handles well)")
    cloak.add_argument("--report", metavar="FILE.json", help="write every figure to this file")
    where = cloak.add_mutually_exclusive_group()
    where.add_argument("--daemon", action="store_true", default=None,
                       help="cloak through the daemon, starting it if needed (default: use "
                            "it when it is running)")
    where.add_argument("--in-process", dest="daemon", action="store_false",
                       help="cloak in this process even if a daemon is running")
    cloak.set_defaults(run=run_cloak)

    daemon = commands.add_parser("daemon", help="the warm daemon that keeps models loaded")
    actions = daemon.add_subparsers(dest="action", required=True)
    start = actions.add_parser("start", help="start the daemon (or report the running one)")
    start.add_argument("--model", help=MODEL_HELP)
    start.add_argument("--device", help="cuda, mps or cpu (default: the best available)")
    start.add_argument("--precision", choices=("fp32", "bf16", "fp16"))
    start.add_argument("--foreground", action="store_true", help="serve in this process")
    start.add_argument("--idle-exit", type=float, metavar="MINUTES",
                       help="exit after this many minutes without work")
    start.add_argument("--max-frame-mb", type=float, metavar="MB",
                       help="refuse pixel frames larger than this (default: an 8192 px "
                            "square RGBA float layer, 1 GiB)")
    start.set_defaults(run=run_daemon_start)
    actions.add_parser("stop", help="stop the daemon").set_defaults(run=run_daemon_stop)
    actions.add_parser("status", help="show what the daemon is doing").set_defaults(
        run=run_daemon_status)

    styles = commands.add_parser("styles", help="list the candidate target styles")
    styles.set_defaults(run=run_styles)

    from glaze.evaluate import add_parser as add_eval

    add_eval(commands)

    profile = commands.add_parser("profile", help="show an artist profile or set its target")
    profile.add_argument("name", nargs="?",
                         help="the profile to show or change (default: list every profile)")
    profile.add_argument("--json", action="store_true",
                         help="print the stored record as JSON instead of text")
    profile.add_argument("--target", help="set this profile's target style")
    profile.set_defaults(run=run_profile)

    install = commands.add_parser(
        "install", help="put Filter > Glaze into Krita and GIMP 3 (run again to update)")
    install.add_argument("--krita", action="store_true",
                         help="install the Krita plug-in even if Krita is not found")
    install.add_argument("--gimp", action="store_true",
                         help="install the GIMP 3 plug-ins even if GIMP 3 is not found")
    install.add_argument("--models", metavar="demo|default|PATH|HUB_ID",
                         help="the models the daemon loads: demo (tiny, NO protection), "
                              "default (fetches Stable Diffusion 2.1 base, ~5 GB), a local "
                              "diffusers folder or a hub id (default: keep the current choice)")
    install.add_argument("--autostart", action=argparse.BooleanOptionalAction, default=None,
                         help="start the daemon at login (systemd user unit, launchd agent or "
                              "Windows startup entry); without it the plug-ins start it")
    install.add_argument("--dry-run", action="store_true",
                         help="list every file it would write, write nothing")
    install.add_argument("--krita-python", metavar="3.X",
                         help="Krita's Python version, when it cannot be found out")
    install.add_argument("--gimp-python", metavar="COMMAND",
                         help="the command that runs GIMP's Python (default: python3)")
    install.set_defaults(run=run_install)
    commands.add_parser("uninstall", help="remove what `glaze install` wrote").set_defaults(
        run=run_uninstall)
    commands.add_parser("doctor", help="versions, device, models, daemon and plug-ins: the "
                        "text to paste into a bug report").set_defaults(run=run_doctor)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if "model" in args and args.model is None:
            args.model = _configured_model()
        return args.run(args)
    except KeyboardInterrupt:
        print("glaze: interrupted; finished outputs are kept, none is half-written",
              file=sys.stderr)
        return 130
