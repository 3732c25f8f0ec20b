"""`glaze eval`: the open evaluation harness (mimicry attack, style metric, countermeasures)."""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

from glaze.engine.sources import MIMIC_RESOLUTIONS, MIMIC_SOURCES  # no torch there

# Real weights take the library's defaults (MimicSettings, EvalConfig); the demo bundle's
# tiny models work at 64 px and few steps; --quick shortens either.
DEMO = dict(resolution=64, steps=40, sample_steps=4, guidance=2.0, cloak_steps=20,
            impress_steps=20, upscale_steps=4, images_per_caption=2)
QUICK = dict(steps=30, cloak_steps=10, impress_steps=10, upscale_steps=4, images_per_caption=1)
QUICK_COUNTERMEASURES = ["jpeg:75", "noise:0.05", "resize:0.5", "noisy_upscale:0.1",
                         "impress:0.05"]


# The protection conditions (glaze.engine.evaluation.conditions.KINDS), spelled out here so
# that building the parser does not import torch.
KINDS = ("unprotected", "glaze", "noise", "photoguard", "mist")
# What the `eval` extra of pyproject.toml adds (pip install 'glaze-for-painters[eval]').
EVAL_EXTRA = ("peft", "matplotlib")


def _default(name: str, library: object) -> str:
    """The words for a default that the model family and --quick change: the library's own
    value (for real weights, spelled out here so that building the parser imports no
    torch; tests/test_cli.py checks them against the library), the demo's, --quick's."""
    words = [f"default: {library}"]
    if name in DEMO:
        words.append(f"demo {DEMO[name]}")
    if name in QUICK:
        words.append(f"--quick {QUICK[name]}")
    return f"({'; '.join(words)})"


EXAMPLES = """examples:
  glaze eval ~/glaze-demo/artist --demo-artist -o ~/glaze-demo/results
  glaze eval ARTIST_DIR -o results --model default --quick
  glaze eval ARTIST_DIR -o results --model default --mimic sdxl
  glaze eval ARTIST_DIR -o results --model default --conditions unprotected glaze \\
      --countermeasures jpeg:90,75 impress"""


def add_parser(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register `glaze eval` on the CLI's subcommands."""
    parser = commands.add_parser(
        "eval", help="check whether a cloak protects: mimicry attack, style metric, "
                     "countermeasures (see docs/evaluation.md)",
        description="Check whether a cloak protects one artist's style: fine-tune a mimic on "
                    "their works (unprotected, cloaked and with countermeasures applied), "
                    "then measure how close its images come to the artist's style. The run "
                    "resumes where it stopped; see docs/evaluation.md.",
        epilog=EXAMPLES)
    parser.add_argument("artist", metavar="ARTIST_FOLDER",
                        help="one artist's works (PNG, JPEG, WebP, TIFF; NAME.txt captions)")
    parser.add_argument("-o", "--results", required=True,
                        help="results folder (required; a run there resumes)")
    parser.add_argument("--demo-artist", action="store_true",
                        help="first fill an empty ARTIST_FOLDER with synthetic paintings")
    models = parser.add_argument_group("models")
    models.add_argument("--model", default="demo",
                        help="text-to-image bundle: demo (tiny, NO meaning), default, a folder "
                             "or a hub id")
    models.add_argument("--mimic", choices=tuple(MIMIC_SOURCES), default="sd",
                        help="the model family the mimic fine-tunes: sd (the bundle's own "
                             "Stable Diffusion) or sdxl (an SDXL base model, at 1024 px)")
    models.add_argument("--mimic-model",
                        help=f"the SDXL model for --mimic sdxl, a folder or a hub id (default: "
                             f"{MIMIC_SOURCES['sdxl']}; demo with --model demo)")
    models.add_argument("--clip", help="CLIP folder or hub id (default: "
                                       "openai/clip-vit-large-patch14; demo with --model "
                                       "demo)")
    models.add_argument("--upscaler", help="x4 upscaler folder or hub id for noisy upscaling "
                                           "(default: none, skipped; demo with --model demo)")
    models.add_argument("--captioner", help="image-to-text model for captions (default: "
                                            "NAME.txt files, else a template)")
    models.add_argument("--device", help="cuda, mps or cpu (default: the best available)")
    models.add_argument("--precision", choices=("fp32", "bf16", "fp16"),
                        help="precision of the models (default: the fastest the device "
                             "handles well)")
    plan = parser.add_argument_group("plan")
    plan.add_argument("--conditions", nargs="+", choices=KINDS, default=list(KINDS),
                      metavar="CONDITION",
                      help=f"the protections compared: {', '.join(KINDS)} (default: all)")
    plan.add_argument("--budget", type=float, default=0.05,
                      help="LPIPS budget p shared by every condition")
    plan.add_argument("--budgets", type=float, nargs="*",
                      help="the cloak's budget sweep (default: 0.025 0.05 0.075; --quick: "
                           "--budget alone)")
    plan.add_argument("--shares", type=float, nargs="*", default=[0.5, 0.25],
                      help="shares of the training set cloaked, for partial protection "
                           "(default: 0.5 0.25)")
    plan.add_argument("--countermeasures", nargs="*", metavar="KIND[:S1,S2]",
                      help="jpeg:QUALITIES noise:SIGMAS resize:FACTORS noisy_upscale:SIGMAS "
                           "impress:LPIPS_BOUNDS (default: a sweep of each)")
    plan.add_argument("--countermeasures-on", nargs="+", choices=KINDS, default=["glaze"],
                      metavar="CONDITION",
                      help="conditions the countermeasures are applied to (default: glaze)")
    mimic = parser.add_argument_group("mimicry attack and cloak")
    mimic.add_argument("--steps", type=int,
                       help=f"LoRA fine-tune steps {_default('steps', 500)}")
    mimic.add_argument("--rank", type=int, default=4, help="LoRA rank")
    mimic.add_argument("--lr", type=float, default=1e-4, help="LoRA learning rate")
    mimic.add_argument("--batch", type=int, default=1, help="fine-tune batch size")
    mimic.add_argument("--resolution", type=int,
                       help="training size in pixels "
                            f"{_default('resolution', '512 for sd, 1024 for sdxl')}")
    mimic.add_argument("--images-per-caption", type=int,
                       help="images generated per held-out caption and seed "
                            f"{_default('images_per_caption', 4)}")
    mimic.add_argument("--seeds", type=int, nargs="+",
                       help="generation seeds (default: 0 1; --quick: 0)")
    mimic.add_argument("--sample-steps", type=int,
                       help=f"diffusion steps per image {_default('sample_steps', 30)}")
    mimic.add_argument("--guidance", type=float,
                       help=f"classifier-free guidance scale {_default('guidance', 7.5)}")
    mimic.add_argument("--cloak-steps", type=int,
                       help=f"optimizer steps of every cloak {_default('cloak_steps', 500)}")
    mimic.add_argument("--impress-steps", type=int,
                       help="optimizer steps of the IMPRESS purification countermeasure "
                            f"{_default('impress_steps', 100)}")
    mimic.add_argument("--upscale-steps", type=int,
                       help="diffusion steps of the noisy-upscaling countermeasure "
                            f"{_default('upscale_steps', 20)}")
    mimic.add_argument("--artist-token", default="zqx artist",
                       help="the words that stand for the artist in the training captions")
    mimic.add_argument("--artist-genre", help="the artist's genre (default: CLIP's top genre)")
    mimic.add_argument("--target", help="the cloak's target style (default: chosen as "
                                        "`glaze cloak` chooses it)")
    mimic.add_argument("--seed", type=int, default=0,
                       help="seed of the whole run: the split, the fine-tune, the cloaks "
                            "and the countermeasures")
    parser.add_argument("--quick", action="store_true",
                        help="fewer steps, one seed, one strength per countermeasure")
    parser.add_argument("--no-progress", action="store_true", help="show no progress bars")
    parser.set_defaults(run=run)
    return parser


def parse_countermeasures(specs: list[str]) -> tuple:
    """["jpeg:90,75", "impress"] -> Countermeasure tuples (default strengths when none given)."""
    from glaze.engine.evaluation.countermeasures import Countermeasure

    defaults = dict(spec.split(":") for spec in library_countermeasures())
    result = []
    for spec in specs:
        kind, _, values = spec.partition(":")
        values = values or defaults.get(kind, "")
        if not values:
            raise ValueError(f"unknown countermeasure {kind!r}")
        result += [Countermeasure(kind, float(value)) for value in values.split(",")]
    return tuple(result)


def library_defaults() -> dict:
    """The library's own defaults for a run on real weights."""
    from glaze.engine.evaluation.mimicry import MimicSettings
    from glaze.engine.evaluation.run import EvalConfig

    mimic, config = MimicSettings(), EvalConfig(Path(), Path())
    return dict(resolution=mimic.resolution, steps=mimic.steps,
                sample_steps=mimic.sample_steps, guidance=mimic.guidance,
                images_per_caption=mimic.images_per_caption, seeds=list(mimic.seeds),
                cloak_steps=config.cloak_steps, impress_steps=config.impress_steps,
                upscale_steps=config.upscale_steps, budgets=list(config.budgets),
                clip=config.clip)


def library_countermeasures() -> list[str]:
    """EvalConfig's default countermeasures as KIND:S1,S2 words."""
    from glaze.engine.evaluation.run import DEFAULT_COUNTERMEASURES

    strengths: dict[str, list[str]] = {}
    for measure in DEFAULT_COUNTERMEASURES:
        strengths.setdefault(measure.kind, []).append(f"{measure.strength:g}")
    return [f"{kind}:{','.join(values)}" for kind, values in strengths.items()]


def resolve(args: argparse.Namespace) -> argparse.Namespace:
    """Fill the defaults that depend on the model family and on --quick."""
    demo = args.model == "demo"
    defaults = {**library_defaults(), "resolution": MIMIC_RESOLUTIONS[args.mimic],
                **(DEMO if demo else {}), **(QUICK if args.quick else {})}
    if args.quick:
        defaults.update(budgets=[args.budget], seeds=defaults["seeds"][:1])
    if demo:
        defaults.update(clip="demo")
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    args.upscaler = args.upscaler or ("demo" if demo else None)
    if args.countermeasures is None:
        args.countermeasures = QUICK_COUNTERMEASURES if args.quick else library_countermeasures()
    return args


def equivalent_command(args: argparse.Namespace) -> str:
    """The command with every default spelled out: it reproduces the run."""
    words = ["glaze", "eval", args.artist, "-o", args.results]
    for name in ("model", "mimic", "mimic_model", "clip", "upscaler", "captioner", "device",
                 "precision", "budget",
                 "steps", "rank", "lr", "batch", "resolution", "images_per_caption",
                 "sample_steps", "guidance", "cloak_steps", "impress_steps", "upscale_steps",
                 "artist_token", "artist_genre", "target", "seed"):
        value = getattr(args, name)
        if value is not None:
            words += [f"--{name.replace('_', '-')}", str(value)]
    for name in ("conditions", "budgets", "shares", "countermeasures", "countermeasures_on",
                 "seeds"):
        words += [f"--{name.replace('_', '-')}", *map(str, getattr(args, name))]
    if args.quick:
        words.append("--quick")  # marks the report as a smoke test
    return shlex.join(words)


def config_from(args: argparse.Namespace):
    from glaze.engine.evaluation.mimicry import MimicSettings
    from glaze.engine.evaluation.run import EvalConfig

    mimic = MimicSettings(
        steps=args.steps, rank=args.rank, lr=args.lr, batch=args.batch,
        resolution=args.resolution, images_per_caption=args.images_per_caption,
        seeds=tuple(args.seeds), sample_steps=args.sample_steps, guidance=args.guidance,
        seed=args.seed)
    return EvalConfig(
        artist=Path(args.artist), results=Path(args.results), model=args.model,
        mimic_family=args.mimic, mimic_model=args.mimic_model, clip=args.clip,
        upscaler=args.upscaler, captioner=args.captioner, device=args.device,
        precision=args.precision, artist_token=args.artist_token,
        artist_genre=args.artist_genre, target_style=args.target, budget=args.budget,
        budgets=tuple(args.budgets), shares=tuple(args.shares), kinds=tuple(args.conditions),
        countermeasures=parse_countermeasures(args.countermeasures),
        countermeasures_on=tuple(args.countermeasures_on), cloak_steps=args.cloak_steps,
        mimic=mimic, impress_steps=args.impress_steps, upscale_steps=args.upscale_steps,
        seed=args.seed, quick=args.quick, command=equivalent_command(args))


def missing_extra() -> str | None:
    """The first module of the `eval` extra that cannot be imported, if any."""
    import importlib

    for name in EVAL_EXTRA:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as error:
            if error.name != name:
                raise  # the module is there; something it needs is not
            return name
    return None


def run(args: argparse.Namespace) -> int:
    """Run the evaluation and print where its report is."""
    missing = missing_extra()
    if missing:
        print(f"glaze eval needs {missing}, which the `eval` extra installs: pip install "
              "'glaze-for-painters[eval]' (in a checkout: pip install -e '.[eval]')",
              file=sys.stderr)
        return 2
    from diffusers.utils import logging as diffusers_logging

    from glaze.engine import ModelLoadError
    from glaze.engine.evaluation.report import headline
    from glaze.engine.evaluation.run import evaluate
    from glaze.engine.evaluation.synthetic import write_artist
    from glaze.engine.imagefile import ImageFileError

    args = resolve(args)
    diffusers_logging.set_verbosity_error()  # LoRA loading notices are not the user's concern
    started = time.perf_counter()
    try:
        if args.demo_artist:
            write_artist(args.artist, size=max(args.resolution, 64))
        outcome = evaluate(config_from(args), show_progress=not args.no_progress)
    except (ModelLoadError, ImageFileError, ValueError, OSError) as error:
        print(f"glaze: {error}", file=sys.stderr)
        return 1
    print(headline(outcome.summary))
    print(f"{len(outcome.computed)} cell(s) computed, {len(outcome.reused)} reused from an "
          f"earlier run, {len(outcome.summary['skipped'])} skipped, "
          f"in {time.perf_counter() - started:.0f} s")
    for kind, path in outcome.paths.items():
        print(f"{kind:>8}: {path}")
    return 0
