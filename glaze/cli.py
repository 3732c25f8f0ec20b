"""The `glaze` command line."""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from glaze import __version__

OUTPUT_TAG = ".glazed"
ARTWORKS_FOR_CENTROID = 20  # first artworks of a batch that choose a new profile's target


@dataclass
class Job:
    """One input file and where its output goes."""

    source: Path
    output: Path
    status: str = "pending"  # pending, done, skipped, failed
    error: str | None = None
    report: dict | None = field(default=None, repr=False)

    def to_dict(self) -> dict:
        return {"input": str(self.source), "output": str(self.output), "status": self.status,
                "error": self.error, "report": self.report}


def _number_or_name(value: str) -> str | float:
    try:
        return float(value)
    except ValueError:
        return value


def _glazed_name(path: Path) -> str:
    return f"{path.stem}{OUTPUT_TAG}{path.suffix}"


def collect_jobs(inputs: Sequence[str], outdir: str | None) -> tuple[list[Job], list[Job]]:
    """Expand files and folders (recursively) into jobs; also return inputs that are missing."""
    from glaze.engine.imagefile import FORMATS

    jobs, missing = [], []
    for name in inputs:
        path = Path(name)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file()
                           and p.suffix.lower() in FORMATS and OUTPUT_TAG not in p.stem)
            for file in files:
                relative = file.relative_to(path).parent
                folder = Path(outdir) / path.name / relative if outdir else file.parent
                jobs.append(Job(file, folder / _glazed_name(file)))
        elif path.is_file():
            folder = Path(outdir) if outdir else path.parent
            jobs.append(Job(path, folder / _glazed_name(path)))
        else:
            missing.append(Job(path, path, "failed", "no such file or folder"))
    return jobs, missing


def _artworks(jobs: Sequence[Job]) -> Iterator:
    """Pixels of the batch's first readable artworks, for choosing a target style."""
    from glaze.engine.imagefile import ImageFileError, read_image

    count = 0
    for job in jobs:
        if count == ARTWORKS_FOR_CENTROID:
            return
        try:
            yield read_image(job.source).pixels
            count += 1
        except ImageFileError:
            continue


def _bar(**options):
    from tqdm import tqdm

    return tqdm(disable=None, file=sys.stderr, dynamic_ncols=True, **options)


def _cloak_one(job: Job, bundle, target: str, settings, position: int) -> None:
    from glaze.engine import cloak
    from glaze.engine.imagefile import read_image, write_image

    loaded = read_image(job.source)
    height, width = loaded.pixels.shape[:2]
    with _bar(total=100, position=position, leave=False, desc=job.source.name,
              bar_format="{desc}: {percentage:3.0f}%|{bar}| {postfix}") as bar:
        def progress(fraction: float, message: str) -> None:
            bar.n = round(fraction * 100)
            bar.set_postfix_str(message, refresh=True)

        result = cloak(loaded.pixels, bundle, target, settings, progress=progress)
    job.output.parent.mkdir(parents=True, exist_ok=True)
    write_image(job.output, result.image, like=loaded, note=bundle.protection_note)
    job.report = result.report.to_dict()
    job.status = "done"


def _describe(job: Job) -> str:
    if job.status != "done":
        return f"{job.status.upper()} {job.source}" + (f": {job.error}" if job.error else "")
    report = job.report
    flag = "  INCOMPLETE: the style shift fell short" if report["incomplete"] else ""
    return (f"done {job.source} -> {job.output}  (shift {report['relative_shift']:.0%}, "
            f"LPIPS {report['lpips']:.4f}, PSNR {report['psnr'] or float('inf'):.1f} dB, "
            f"{report['steps_run']} steps, {report['seconds']:.1f} s){flag}")


def run_cloak(args: argparse.Namespace) -> int:
    from glaze.engine import CloakSettings, ModelLoadError, load_bundle, resolve_target
    from glaze.engine.imagefile import ImageFileError, is_complete
    from glaze.engine.progress import Progress
    from glaze.engine.storage import write_json

    try:
        settings = CloakSettings(intensity=_number_or_name(args.intensity),
                                 quality=_number_or_name(args.quality), seed=args.seed,
                                 work_size=args.work_size)
    except ValueError as error:
        print(f"glaze: {error}", file=sys.stderr)
        return 2
    jobs, missing = collect_jobs(args.inputs, args.outdir)
    pending = []
    for job in jobs:
        if job.output.exists() and is_complete(job.output, _size_of(job.source)):
            job.status = "skipped"
            job.error = f"{job.output} exists"
        else:
            pending.append(job)
    bundle = profile = None
    if pending:
        try:
            bundle = load_bundle(args.model, device=args.device, precision=args.precision)
            with _bar(total=100, desc="target style", leave=False) as bar:
                def progress(fraction: float, message: str) -> None:
                    bar.n = round(fraction * 100)
                    bar.set_postfix_str(message, refresh=True)

                profile = resolve_target(bundle, args.profile, _artworks(pending),
                                         override=args.target, seed=args.seed,
                                         progress=Progress(progress))
        except (ModelLoadError, ValueError) as error:
            print(f"glaze: {error}", file=sys.stderr)
            return 2
        print(f"profile {profile.name!r}: target style {profile.target_style!r} "
              f"({'chosen by you' if profile.chosen_by == 'user' else 'chosen automatically'})")
        if bundle.protection_note:
            print(f"NOTE: {bundle.protection_note}.")
    with _bar(total=len(pending), desc="images", unit="image") as overall:
        for job in pending:
            try:
                _cloak_one(job, bundle, profile.target_style, settings, position=1)
            except (ImageFileError, ValueError, OSError) as error:
                job.status, job.error = "failed", str(error)
            overall.update()
            print(_describe(job), flush=True)
    for job in itertools.chain(missing, (j for j in jobs if j.status == "skipped")):
        print(_describe(job))
    every = missing + jobs
    if args.report:
        write_json(args.report, {"version": __version__,
                                 "bundle": bundle.name if bundle else None,
                                 "protection_note": bundle.protection_note if bundle else None,
                                 "images": [job.to_dict() for job in every]})
    failed = [job for job in every if job.status == "failed"]
    done = sum(job.status == "done" for job in every)
    print(f"{done} cloaked, {len(every) - done - len(failed)} skipped, {len(failed)} failed")
    if bundle is not None and bundle.protection_note and done:
        print(f"NOTE: {bundle.protection_note}.")
    return 1 if failed or not every else 0


def _size_of(path: Path) -> tuple[int, int]:
    from PIL import Image

    try:
        with Image.open(path) as image:
            return image.size
    except OSError:
        return (0, 0)


def run_styles(args: argparse.Namespace) -> int:
    from glaze.engine.target import candidate_styles

    print("\n".join(candidate_styles()))
    return 0


def run_profile(args: argparse.Namespace) -> int:
    from glaze.engine.profiles import ArtistProfile, ProfileStore

    store = ProfileStore()
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
    print(json.dumps(vars(profile), indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="glaze", description=__doc__)
    parser.add_argument("--version", action="version", version=f"glaze {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    cloak = commands.add_parser("cloak", help="cloak image files or folders of them")
    cloak.add_argument("inputs", nargs="+", metavar="INPUT",
                       help="PNG, JPEG, WebP or TIFF files, or folders (searched recursively)")
    cloak.add_argument("-o", "--outdir", help="write outputs here (default: beside each input)")
    cloak.add_argument("--model", default="demo",
                       help="demo (tiny, NO protection), default, a local folder or a hub id")
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
    cloak.set_defaults(run=run_cloak)

    styles = commands.add_parser("styles", help="list the candidate target styles")
    styles.set_defaults(run=run_styles)

    profile = commands.add_parser("profile", help="show an artist profile or set its target")
    profile.add_argument("name")
    profile.add_argument("--target", help="set this profile's target style")
    profile.set_defaults(run=run_profile)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except KeyboardInterrupt:
        print("glaze: interrupted; finished outputs are kept, none is half-written",
              file=sys.stderr)
        return 130
