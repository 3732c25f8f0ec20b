"""The `glaze` command line."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from glaze import __version__

MODEL_HELP = ("demo (tiny, NO protection), default, a local folder or a hub id (default: what "
              "`glaze install --models` chose, else demo)")
DEVICE_HELP = "cuda, mps or cpu (default: the best available)"
PRECISION_HELP = "encoder precision (default: the fastest the device handles well)"

MAIN_EXAMPLES = """examples:
  glaze cloak painting.png          cloak one image (writes painting.glazed.png)
  glaze daemon start                keep the models loaded for Krita, GIMP and the CLI
  glaze install --models default    put Filter > Glaze into Krita and GIMP 3
  glaze COMMAND --help              a command's options and their defaults"""
CLOAK_EXAMPLES = """examples:
  glaze cloak painting.png
  glaze cloak portfolio/ -o glazed/ --intensity high
  glaze cloak sketch.jpg --quality faster --target "Cubism painting by Juan Gris"
  glaze cloak *.png --profile ada --report figures.json"""
START_EXAMPLES = """examples:
  glaze daemon start --model default    returns once the models are loaded
  glaze daemon start --foreground --idle-exit 30"""
PROFILE_EXAMPLES = ("examples:\n"
                    "  glaze profile ada\n"
                    '  glaze profile ada --target "Baroque painting by Caravaggio"')
INSTALL_EXAMPLES = """examples:
  glaze install --models default    the real models (Stable Diffusion 1.5, ~4.3 GB)
  glaze install --dry-run           list what it would write
  glaze install --autostart         also start the daemon at login"""


class HelpFormatter(argparse.HelpFormatter):
    """Keeps the examples' line breaks and appends each option's default to its help, unless
    the help says it already (a default of None or False has no words of its own)."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if text.startswith("examples:"):  # one command a line, as typed
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if ("(default" in text or not action.option_strings or action.default is None
                or isinstance(action.default, bool) or action.default is argparse.SUPPRESS):
            return text
        return f"{text} (default: %(default)s)"


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose sub-commands (theirs too) format help with HelpFormatter."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)


def add_setting_options(parser: argparse.ArgumentParser) -> None:
    """The cloak settings as options, one per declaration in glaze.options: their
    names, defaults and help are the ones the daemon and both plug-ins use."""
    from glaze.options import SETTINGS

    for setting in SETTINGS:
        text = setting.describe().replace("%", "%%")  # argparse formats help with %
        if setting.default is None and setting.placeholder:
            text += f" (default: {setting.placeholder})"
        if setting.saved:  # filled in by main() from the settings file
            text += (f" (default: what `glaze install {setting.flag}` saved, else "
                     f"{setting.default})")
            parser.add_argument(setting.flag, default=None, help=text)
            continue
        if setting.presets:  # a preset name, or a number the engine reads from the text
            metavar = "|".join([*setting.presets, "NUMBER"])
            parser.add_argument(setting.flag, default=setting.default, metavar=metavar,
                                help=text)
        else:
            parser.add_argument(setting.flag, type=setting.kind, default=setting.default,
                                help=text)


def run_cloak(args: argparse.Namespace) -> int:
    from glaze.batch import run_cloak as run

    return run(args)


def run_daemon_start(args: argparse.Namespace) -> int:
    from glaze.daemon.client import DaemonError
    from glaze.daemon.control import find, start_background, wait_until_running

    found = find()
    if found.stale is not None:
        print(found.describe())
    try:
        if found.starting is not None:  # another start is loading the models
            print(found.describe())
            return _report_running(wait_until_running(), already=True)
    except DaemonError as error:
        print(f"glaze: {error}", file=sys.stderr)
        return 1
    if found.running is not None:
        return _report_running(found.running, already=True)
    if args.foreground:
        return _serve_here(args)
    options = ["--model", args.model]
    for flag, value in (("--device", args.device), ("--precision", args.precision),
                        ("--idle-exit", args.idle_exit), ("--max-layer-mb", args.max_layer_mb)):
        if value is not None:
            options += [flag, str(value)]
    try:
        info, ours = start_background(options)
    except DaemonError as error:
        print(f"glaze: {error}", file=sys.stderr)
        return 1
    return _report_running(info, already=not ours)


def _report_running(info, already: bool) -> int:
    print(f"the Glaze daemon is {'already ' if already else ''}running: pid {info.pid}, "
          f"{info.endpoint}, bundle {info.bundle}")
    _print_note(_protection_note(info))
    return 0


def _protection_note(info) -> str | None:
    """What the running daemon's welcome says its outputs must carry (None if it does not
    answer: the start itself has been reported)."""
    from glaze.daemon.client import Client, DaemonError

    try:
        with Client(info, timeout=5.0) as client:
            return client.welcome.get("protection_note")
    except DaemonError:
        return None


def _print_note(note: str | None) -> None:
    if note:
        print(f"NOTE: {note}.", flush=True)


def _serve_here(args: argparse.Namespace) -> int:
    import logging

    from glaze.daemon.config import configured
    from glaze.daemon.connection import StartLock, remove_loading, write_loading
    from glaze.daemon.control import LOCK_HELD_EXIT
    from glaze.daemon.protocol import MAX_LAYER_BYTES
    from glaze.daemon.server import serve
    from glaze.engine import ModelLoadError, load_bundle
    from glaze.options import DEFEND

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    lock = StartLock()  # held until this process exits, before the models load
    if not lock.acquire():
        print(f"glaze: another Glaze daemon (pid {lock.holder()}) is starting or running; "
              "`glaze daemon status` says which", file=sys.stderr)
        return LOCK_HELD_EXIT
    try:  # the extractors `glaze install --defend` chose (the dialogs offer these)
        bundle = load_bundle(args.model, device=args.device, precision=args.precision,
                             defend=configured(DEFEND), progress=write_loading)
    except (ModelLoadError, ValueError) as error:
        remove_loading()
        print(f"glaze: {error}", file=sys.stderr)
        return 1
    _print_note(bundle.protection_note)  # before serving: nothing is printed after it
    limit = int(args.max_layer_mb * 2**20) if args.max_layer_mb else MAX_LAYER_BYTES
    serve(bundle, idle_exit_s=args.idle_exit * 60 if args.idle_exit else None,
          max_layer_bytes=limit)
    return 0


def run_daemon_stop(args: argparse.Namespace) -> int:
    from glaze.daemon.control import stop

    info = stop()
    print("the Glaze daemon is not running" if info is None
          else f"stopped the Glaze daemon (pid {info.pid})")
    return 0


def run_daemon_status(args: argparse.Namespace) -> int:
    from glaze.daemon.client import Client, DaemonError
    from glaze.daemon.control import find

    found = find()
    info = found.running
    if info is None:
        print(found.describe())
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


def run_inspect(args: argparse.Namespace) -> int:
    from glaze.daemon.client import stopping_text, visibility_text
    from glaze.engine.imagefile import read_record
    from glaze.engine.provenance import describe

    missing = 0
    for name in args.files:
        found = read_record(name)
        if len(args.files) > 1:
            print(f"== {name}")
        if found is None:
            missing += 1
            print(f"{name}: no Glaze record (not made by `glaze cloak`, made before records "
                  "were kept, or changed since)")
        else:
            print(describe(found))
            if visible := visibility_text(found):
                print(f"Visibility: {visible}.")
            if stopped := stopping_text(found):
                print(f"The cloak {stopped}.")
    return 1 if missing else 0


def run_preview(args: argparse.Namespace) -> int:
    from glaze.batch import preview_path, write_preview
    from glaze.engine import ModelLoadError, load_bundle
    from glaze.engine.imagefile import ImageFileError, read_image, read_record
    from glaze.engine.preview import preview_of_files
    from glaze.stamp import file_sha256

    found = read_record(args.glazed)
    if found is None:
        print(f"glaze: {args.glazed} carries no Glaze record: the target and families it "
              "was cloaked with are unknown", file=sys.stderr)
        return 2
    try:
        original, glazed = read_image(args.original), read_image(args.glazed)
        if found.get("source_sha256") not in (None, file_sha256(args.original)):
            print(f"note: {args.original} is not the file {args.glazed} was made from (its "
                  "hash differs); comparing them anyway")
        bundle = load_bundle(found["model"], device=args.device, precision=args.precision,
                             defend=found["defend"])
        _print_note(bundle.protection_note)
        shown = preview_of_files(bundle, original.pixels, glazed.pixels, found)
        output = Path(args.output or preview_path(Path(args.glazed)))
        write_preview(output, shown)
    except (ImageFileError, ModelLoadError, ValueError, OSError) as error:
        print(f"glaze: {error}", file=sys.stderr)
        return 1
    print(f"wrote {output}")
    return 0


def run_styles(args: argparse.Namespace) -> int:
    from glaze.options import candidate_styles

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
        krita=args.krita, gimp=args.gimp, models=args.models, defend=args.defend,
        autostart=args.autostart,
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


def _fill_saved_settings(args: argparse.Namespace) -> None:
    """Saved settings left unset on the command line take the settings file's value."""
    from glaze.daemon.config import configured
    from glaze.options import SETTINGS

    for setting in SETTINGS:
        if setting.saved and setting.name in args and getattr(args, setting.name) is None:
            try:
                setattr(args, setting.name, configured(setting))
            except ValueError as error:
                raise SystemExit(f"glaze: {error}") from error


def build_parser() -> argparse.ArgumentParser:
    from glaze.options import DEFEND

    parser = Parser(prog="glaze", epilog=MAIN_EXAMPLES,
                    description="Glaze for painters: cloak artworks against style mimicry "
                                "(Glaze, Shan et al. 2023), here, in Krita and in GIMP 3.")
    parser.add_argument("--version", action="version", version=f"glaze {__version__}",
                        help="print the version and exit")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    cloak = commands.add_parser(
        "cloak", help="cloak image files or folders of them",
        description="Cloak image files against style mimicry. Each output is written whole "
                    "beside its input as NAME.glazed.EXT (or under -o), never over it; a "
                    "batch run again skips the finished images. Uses the running daemon if "
                    "there is one.",
        epilog=CLOAK_EXAMPLES)
    cloak.add_argument("inputs", nargs="+", metavar="INPUT",
                       help="PNG, JPEG, WebP or TIFF files, or folders (searched recursively)")
    cloak.add_argument("-o", "--outdir", help="write outputs here (default: beside each input)")
    cloak.add_argument("--model", help=MODEL_HELP)
    add_setting_options(cloak)
    cloak.add_argument("--device", help=DEVICE_HELP)
    cloak.add_argument("--precision", choices=("fp32", "bf16", "fp16"), help=PRECISION_HELP)
    cloak.add_argument("--report", metavar="FILE.json",
                       help="write every figure of every image to this file (default: none)")
    cloak.add_argument("--preview", action="store_true",
                       help="also write NAME.glazed.preview.png: what each defended model "
                            "family's decoder makes of the original, the glazed picture and "
                            "the target after a typical upload (cloaks in this process)")
    cloak.add_argument("--no-overwrite", action="store_true",
                       help="keep an existing output that another run made (other models, "
                            "target, settings, seed or source) and report it, instead of "
                            "cloaking it again")
    where = cloak.add_mutually_exclusive_group()
    where.add_argument("--daemon", action="store_true", default=None,
                       help="cloak through the daemon, starting it if needed (default: use "
                            "it when it is running)")
    where.add_argument("--in-process", dest="daemon", action="store_false",
                       help="cloak in this process even if a daemon is running")
    cloak.set_defaults(run=run_cloak)

    daemon = commands.add_parser(
        "daemon", help="the warm daemon that keeps models loaded",
        description="Start, stop or ask about the daemon that keeps the models loaded and "
                    "serves the command line, Krita and GIMP.")
    actions = daemon.add_subparsers(dest="action", required=True, metavar="ACTION")
    start = actions.add_parser(
        "start", help="start the daemon (or report the running one)",
        description="Start the daemon in the background and return once its models are "
                    "loaded, or report the one already running.",
        epilog=START_EXAMPLES)
    start.add_argument("--model", help=MODEL_HELP)
    start.add_argument("--device", help=DEVICE_HELP)
    start.add_argument("--precision", choices=("fp32", "bf16", "fp16"), help=PRECISION_HELP)
    start.add_argument("--foreground", action="store_true",
                       help="serve in this process until stopped, instead of in the background")
    start.add_argument("--idle-exit", type=float, metavar="MINUTES",
                       help="exit after this many minutes without work (default: never)")
    start.add_argument("--max-layer-mb", type=float, metavar="MB",
                       help="refuse layers larger than this (default: an 8192 px square "
                            "RGBA float layer, 1 GiB)")
    start.set_defaults(run=run_daemon_start)
    actions.add_parser("stop", help="stop the daemon",
                       description="Stop the running daemon; its running and queued jobs are "
                                   "cancelled.").set_defaults(run=run_daemon_stop)
    actions.add_parser("status", help="show what the daemon is doing",
                       description="Show the running daemon's pid, endpoint, models, queue "
                                   "and jobs served; exit 1 if none is running."
                       ).set_defaults(run=run_daemon_status)

    inspect = commands.add_parser(
        "inspect", help="show what made a cloaked file",
        description="Print the record a cloaked file carries: the models (and whether they "
                    "were demo models giving no protection), target style, settings, seed, "
                    "the source file's hash and the shift achieved.")
    inspect.add_argument("files", nargs="+", metavar="FILE", help="cloaked image files")
    inspect.set_defaults(run=run_inspect)

    shown = commands.add_parser(
        "preview", help="show what a model makes of a file cloaked earlier",
        description="Write a sheet of what each model family the file was cloaked against "
                    "makes of the original, the glazed file and the target after a typical "
                    "upload (its decoder's picture of each latent), from the glazed file's "
                    "record: target style, settings, seed and families. Loads the models the "
                    "record names.")
    shown.add_argument("original", help="the image the glazed file was made from")
    shown.add_argument("glazed", help="the glazed file (it carries its record)")
    shown.add_argument("-o", "--output", metavar="FILE.png",
                       help="where to write the sheet (default: NAME.glazed.preview.png beside "
                            "the glazed file)")
    shown.add_argument("--device", help=DEVICE_HELP)
    shown.add_argument("--precision", choices=("fp32", "bf16", "fp16"), help=PRECISION_HELP)
    shown.set_defaults(run=run_preview)

    styles = commands.add_parser(
        "styles", help="list the candidate target styles",
        description="List the candidate target styles, one a line: a profile's target is "
                    "chosen among them, and `--target` takes any of them (or any prompt).")
    styles.set_defaults(run=run_styles)

    from glaze.evaluate import add_parser as add_eval

    add_eval(commands)

    profile = commands.add_parser(
        "profile", help="show an artist profile or set its target",
        description="Show an artist profile (its target style and how it was chosen), set "
                    "its target style, or list every profile.", epilog=PROFILE_EXAMPLES)
    profile.add_argument("name", nargs="?",
                         help="the profile to show or change (default: list every profile)")
    profile.add_argument("--json", action="store_true",
                         help="print the stored record as JSON instead of text")
    profile.add_argument("--target", help="set this profile's target style (default: leave "
                                          "it as it is)")
    profile.set_defaults(run=run_profile)

    install = commands.add_parser(
        "install", help="put Filter > Glaze into Krita and GIMP 3 (run again to update)",
        description="Install the Krita and GIMP 3 plug-ins (each with its own copy of the "
                    "client), record how to start the daemon and which models it loads. Run "
                    "it again to update; `glaze uninstall` removes it all.",
        epilog=INSTALL_EXAMPLES)
    install.add_argument("--krita", action="store_true",
                         help="install the Krita plug-in even if Krita is not found")
    install.add_argument("--gimp", action="store_true",
                         help="install the GIMP 3 plug-ins even if GIMP 3 is not found")
    install.add_argument("--models", metavar="demo|default|PATH|HUB_ID",
                         help="the models the daemon loads: demo (tiny, NO protection), "
                              "default (fetches Stable Diffusion 1.5, ~4.3 GB), a local "
                              "diffusers folder or a hub id (default: keep the current choice)")
    install.add_argument("--defend", metavar=DEFEND.default,
                         help=f"{DEFEND.describe()}: the default of every cloak, what the "
                              "daemon loads and what --models fetches (default: keep the "
                              "current choice, all of them at first)")
    install.add_argument("--autostart", action=argparse.BooleanOptionalAction, default=None,
                         help="start the daemon at login (systemd user unit, launchd agent or "
                              "Windows startup entry); without it the plug-ins start it "
                              "(default: keep the current choice, off at first)")
    install.add_argument("--dry-run", action="store_true",
                         help="list every file it would write, write nothing")
    install.add_argument("--krita-python", metavar="3.X",
                         help="Krita's Python version, when it cannot be found out (default: "
                              "found from Krita)")
    install.add_argument("--gimp-python", metavar="COMMAND",
                         help="the command that runs GIMP's Python (default: python3)")
    install.set_defaults(run=run_install)
    commands.add_parser(
        "uninstall", help="remove what `glaze install` wrote",
        description="Stop the daemon and remove every file `glaze install` wrote (plug-ins, "
                    "autostart entry, settings), putting back what it replaced; files you "
                    "changed since are kept."
    ).set_defaults(run=run_uninstall)
    commands.add_parser(
        "doctor", help="versions, device, models, daemon and plug-ins: the text to paste into "
                       "a bug report",
        description="Print the versions, device, models, daemon and plug-in state: the text "
                    "to paste into a bug report.").set_defaults(run=run_doctor)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if "model" in args and args.model is None:
            args.model = _configured_model()
        _fill_saved_settings(args)
        return args.run(args)
    except KeyboardInterrupt:
        print("glaze: interrupted; finished outputs are kept, none is half-written",
              file=sys.stderr)
        return 130
