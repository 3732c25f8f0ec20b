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


def _say(line: str) -> None:
    """Print a line without tearing the progress bars."""
    from tqdm import tqdm

    tqdm.write(line, file=sys.stdout)


def _progress_bar(bar):
    def progress(fraction: float, message: str) -> None:
        bar.n = round(fraction * 100)
        bar.set_postfix_str(message, refresh=True)
    return progress


def _choose_target(bundle, args: argparse.Namespace, jobs: Sequence[Job]) -> str:
    from glaze.engine import resolve_target
    from glaze.engine.progress import Progress

    with _bar(total=100, desc="target style", leave=False) as bar:
        profile = resolve_target(bundle, args.profile, _artworks(jobs), override=args.target,
                                 seed=args.seed, progress=Progress(_progress_bar(bar)))
    how = "chosen by you" if profile.chosen_by == "user" else "chosen automatically"
    _say(f"profile {profile.name!r}: target style {profile.target_style!r} ({how})")
    return profile.target_style


def _cloak_one(job: Job, loaded, bundle, target: str, settings) -> None:
    from glaze.engine import cloak
    from glaze.engine.imagefile import ImageFileError, write_image

    folder = job.output.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:  # checked before the long part, not after it
        raise ImageFileError(f"cannot create the output folder {folder}: "
                             f"{error.strerror or error}") from None
    with _bar(total=100, position=1, leave=False, desc=job.source.name,
              bar_format="{desc}: {percentage:3.0f}%|{bar}| {postfix}") as bar:
        result = cloak(loaded.pixels, bundle, target, settings, progress=_progress_bar(bar))
    write_image(job.output, result.image, like=loaded, note=bundle.protection_note)
    job.report = result.report.to_dict()
    job.status = "done"


def _describe(job: Job) -> str:
    if job.status != "done":
        return f"{job.status.upper()} {job.source}" + (f": {job.error}" if job.error else "")
    report = job.report
    flag = "  INCOMPLETE: the style shift fell short" if report["incomplete"] else ""
    psnr = f"{report['psnr']:.1f} dB" if report["psnr"] is not None else "unchanged"
    return (f"done {job.source} -> {job.output}  (shift {report['relative_shift']:.0%}, "
            f"LPIPS {report['lpips']:.4f}, PSNR {psnr}, {report['steps_run']} steps, "
            f"{report['seconds']:.1f} s){flag}")


def _settings(args: argparse.Namespace):
    from glaze.engine import CloakSettings, ProfileStore

    ProfileStore().path(args.profile)  # refuses a bad profile name before any work
    return CloakSettings(intensity=_number_or_name(args.intensity),
                         quality=_number_or_name(args.quality), seed=args.seed,
                         work_size=args.work_size)


def _unfinished(jobs: Sequence[Job]) -> list[Job]:
    """The jobs whose output is not already there and complete; marks the others skipped."""
    from glaze.engine.imagefile import is_complete

    pending = []
    for job in jobs:
        if job.output.exists() and is_complete(job.output, _size_of(job.source)):
            job.status, job.error = "skipped", f"{job.output} exists"
        else:
            pending.append(job)
    return pending


def run_cloak(args: argparse.Namespace) -> int:
    from glaze.engine import ModelLoadError, load_bundle
    from glaze.engine.imagefile import ImageFileError, read_image
    from glaze.engine.storage import write_json

    try:
        settings = _settings(args)
    except ValueError as error:
        print(f"glaze: {error}", file=sys.stderr)
        return 2
    jobs, missing = collect_jobs(args.inputs, args.outdir)
    pending = _unfinished(jobs)
    bundle = target = None
    if pending:
        try:
            bundle = load_bundle(args.model, device=args.device, precision=args.precision)
        except ModelLoadError as error:
            print(f"glaze: {error}", file=sys.stderr)
            return 2
        if bundle.protection_note:
            _say(f"NOTE: {bundle.protection_note}.")
    with _bar(total=len(pending), desc="images", unit="image") as overall:
        for job in pending:
            try:
                loaded = read_image(job.source)
                target = target or _choose_target(bundle, args, pending)
                _cloak_one(job, loaded, bundle, target, settings)
            except (ImageFileError, ValueError, OSError) as error:
                job.status, job.error = "failed", str(error)
            overall.update()
            _say(_describe(job))
    for job in itertools.chain(missing, (j for j in jobs if j.status == "skipped")):
        _say(_describe(job))
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
