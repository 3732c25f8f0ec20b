"""`glaze cloak`: a batch of image files, cloaked in this process or by the daemon."""

from __future__ import annotations

import argparse
import contextlib
import itertools
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from glaze import __version__
from glaze.options import FINISH_NOW_HELP, OUTPUT_TAG, PREVIEW_TAG, preview_name

ARTWORKS_FOR_CENTROID = 20  # first artworks of a batch that choose a new profile's target
LINE_EVERY_S = 10.0  # progress lines where no bar can be drawn


@dataclass
class Job:
    """One input file and where its output goes."""

    source: Path
    output: Path
    status: str = "pending"  # pending, done, skipped, failed
    error: str | None = None
    report: dict | None = field(default=None, repr=False)
    asked: dict | None = field(default=None, repr=False)  # what this run asks of the output
    profile: str = "default"

    def to_dict(self) -> dict:
        return {"input": str(self.source), "output": str(self.output), "status": self.status,
                "error": self.error, "report": self.report}


def _glazed_name(path: Path) -> str:
    return f"{path.stem}{OUTPUT_TAG}{path.suffix}"


def is_output(path: Path) -> bool:
    """Whether `path` is named as this tool names outputs (NAME.glazed.EXT) and their
    previews (NAME.glazed.preview.png), not merely a name with `.glazed` in it
    (sketch.glazed.v2.png is an input). A damaged output has no record left to tell, so the
    name decides."""
    return path.stem.endswith((OUTPUT_TAG, OUTPUT_TAG + PREVIEW_TAG))


def preview_path(output: Path) -> Path:
    """Where the preview of `output` goes: beside it, NAME.glazed.preview.png."""
    return output.with_name(preview_name(output.stem))


def write_preview(path: Path, found) -> None:
    """The preview sheet (engine/preview.py) as a PNG, written whole or not at all."""
    from glaze.daemon.client import left_out_lines
    from glaze.engine.imagefile import write_image
    from glaze.engine.preview import preview_sheet

    write_image(path, np.asarray(preview_sheet(found)), note=found.stamp)
    for line in left_out_lines(found.left_out):
        _say(f"{path.name}: {line}")


def unwritable(folder: Path) -> str | None:
    """Why outputs cannot be written into `folder` (created if missing), or None: asked by
    writing a nameless temporary file there, before any image is cloaked."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        return f"cannot write into the output folder {folder}: {error.strerror or error}"
    return None


def collect_jobs(inputs: Sequence[str], outdir: str | None) -> tuple[list[Job], list[Job]]:
    """Expand files and folders (recursively) into jobs; also return inputs that are missing."""
    from glaze.engine.imagefile import FORMATS

    jobs, missing = [], []
    for name in inputs:
        path = Path(name)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file()
                           and p.suffix.lower() in FORMATS and not is_output(p))
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


class _ProgressLines:
    """Progress as plain lines, at most one every LINE_EVERY_S seconds: tqdm draws nothing
    where stderr is not a terminal (a log, a pipe, a CI job), and a long phase would
    otherwise pass in silence."""

    def __init__(self, desc: str) -> None:
        self.desc, self.last = desc, -LINE_EVERY_S

    def __call__(self, fraction: float, message: str) -> None:
        now = time.monotonic()
        if now - self.last >= LINE_EVERY_S:
            self.last = now
            _say(f"{self.desc}: {fraction:.0%} ({message})")


@contextlib.contextmanager
def _progress(desc: str, **options) -> Iterator:
    """A progress callback (fraction, message): a bar on a terminal, else lines."""
    if not sys.stderr.isatty():
        yield _ProgressLines(desc)
        return
    with _bar(total=100, leave=False, desc=desc, **options) as bar:
        yield _progress_bar(bar)


class InProcess:
    """Cloaks in this process: loads the bundle, chooses the target at the first image."""

    def __init__(self, args: argparse.Namespace, jobs: Sequence[Job]) -> None:
        from glaze.engine import load_bundle

        self.args, self.jobs = args, jobs
        self.settings = _settings(args)
        self.bundle = load_bundle(args.model, device=args.device, precision=args.precision,
                                  defend=self.settings.extractors)
        self.name, self.note = self.bundle.name, self.bundle.protection_note
        self.target: str | None = None
        self.previews = bool(args.preview)
        self.last = None  # the last CloakResult, for its preview

    def _choose_target(self) -> str:
        from glaze.engine import resolve_target
        from glaze.engine.progress import Progress

        with _progress("target style") as progress:
            profile = resolve_target(self.bundle, self.args.profile, _artworks(self.jobs),
                                     override=self.args.target, seed=self.args.seed,
                                     progress=Progress(progress))
        how = "chosen by you" if profile.chosen_by == "user" else "chosen automatically"
        _say(f"profile {profile.name!r}: target style {profile.target_style!r} ({how})")
        return profile.target_style

    def __call__(self, pixels: np.ndarray, progress,
                 finish: Callable[[], bool]) -> tuple[np.ndarray, dict]:
        from glaze.engine.cloak import cloak

        self.target = self.target or self._choose_target()
        self.last = cloak(pixels, self.bundle, self.target, self.settings, progress=progress,
                          finish=finish)
        return self.last.image, self.last.report.to_dict()

    def preview(self, report: dict):
        """What each defended family's decoder makes of the last image cloaked."""
        from glaze.engine.preview import preview_posted

        shifts = {name: shift["after_upload"] for name, shift in report["extractors"].items()}
        return preview_posted(self.bundle, self.last.posted, list(self.settings.extractors),
                              shifts)

    def close(self) -> None:
        pass


class ViaDaemon:
    """Cloaks through the warm daemon (the daemon chooses and keeps the profile's target)."""

    previews = False  # --preview cloaks in this process (_open_cloaker)

    def __init__(self, args: argparse.Namespace, autostart: bool) -> None:
        from glaze.daemon.client import Client

        self.args = args
        self.client = Client.connect(autostart=autostart)
        welcome = self.client.welcome
        self.name, self.note = welcome["bundle"], welcome.get("protection_note")
        self.model = welcome.get("model")  # older daemons do not say
        _say(f"using the Glaze daemon (pid {self.client.info.pid}, {self.name})")

    def __call__(self, pixels: np.ndarray, progress,
                 finish: Callable[[], bool]) -> tuple[np.ndarray, dict]:
        from glaze.daemon.client import DaemonError
        from glaze.daemon.protocol import layout_for
        from glaze.options import wire_settings

        rgba = pixels if pixels.shape[2] == 4 else np.dstack(
            [pixels, np.full(pixels.shape[:2], 255, np.uint8)])
        height, width = rgba.shape[:2]
        settings = wire_settings(vars(self.args))  # the options carry the wire names
        try:
            job = self.client.submit(np.ascontiguousarray(rgba), layout_for(width, height),
                                     settings)
            data, result = job.result(on_progress=progress, finish=finish)
        except DaemonError as error:
            raise ValueError(f"the daemon could not cloak it: {error}") from None
        image = np.frombuffer(data, np.uint8).reshape(height, width, 4)
        return image[..., :pixels.shape[2]].copy(), result["report"]

    def close(self) -> None:
        self.client.close()


def _cloak_one(job: Job, loaded, cloaker, finish: Callable[[], bool]) -> None:
    """Cloak one job (its output folder was checked writable before any cloaking); when
    `finish()` turns true its cloak ends at its next step with what it has made."""
    from glaze.engine.imagefile import write_image

    told = []

    def progress_and_finishing(fraction: float, message: str) -> None:
        if finish() and not told:  # said here: printing in a signal handler can fail
            told.append(True)
            _say(f"finishing {job.source.name}: {FINISH_NOW_HELP}; the pictures after it "
                 "are left. Ctrl-C again to stop at once")
        progress(fraction, message)

    with _progress(job.source.name, position=1,
                   bar_format="{desc}: {percentage:3.0f}%|{bar}| {postfix}") as progress:
        image, report = cloaker(loaded.pixels, progress_and_finishing, finish)
    from glaze.engine.provenance import record

    report = as_written(job.output, report, loaded.pixels, image)
    made = record(job.asked, report, job.profile, __version__)
    write_image(job.output, image, like=loaded, note=cloaker.note, record=made)
    job.report = report
    job.status = "done"
    if cloaker.previews:
        write_preview(preview_path(job.output), cloaker.preview(report))


@contextlib.contextmanager
def _finish_on_interrupt() -> Iterator[threading.Event]:
    """An event set by the first Ctrl-C: the picture in hand is finished with what its cloak
    has made and the batch ends there. A second Ctrl-C stops at once (KeyboardInterrupt).
    Where Ctrl-C is ignored (a job started in the background) it stays ignored."""
    asked = threading.Event()
    if (threading.current_thread() is not threading.main_thread()  # signals are the main's
            or signal.getsignal(signal.SIGINT) is signal.SIG_IGN):
        yield asked
        return

    def interrupted(signum, frame) -> None:
        if asked.is_set():
            raise KeyboardInterrupt
        asked.set()

    previous = signal.signal(signal.SIGINT, interrupted)
    try:
        yield asked
    finally:
        signal.signal(signal.SIGINT, previous if previous is not None
                      else signal.default_int_handler)


def as_written(output: Path, report: dict, source: np.ndarray, cloaked: np.ndarray) -> dict:
    """The report with `linf` and `psnr` measured on the pixels the output file stores.
    A lossy format (JPEG) adds `encoding`: how far encoding moved the cloaked pixels; the
    feature shifts stay those measured before encoding."""
    from glaze.engine.fullres import pixel_change
    from glaze.engine.imagefile import as_stored, output_format

    stored = as_stored(output, cloaked)
    if stored is cloaked:
        return report
    return {**report, **pixel_change(source, stored),
            "encoding": {"format": output_format(output), **pixel_change(cloaked, stored)}}


def _describe(job: Job) -> str:
    if job.status != "done":
        return f"{job.status.upper()} {job.source}" + (f": {job.error}" if job.error else "")
    report = job.report
    from glaze.daemon.client import shifts_text, stopping_text, visibility_text

    flag = "  INCOMPLETE: the style shift fell short" if report["incomplete"] else ""
    psnr = f"{report['psnr']:.1f} dB" if report["psnr"] is not None else "unchanged"
    encoding = report.get("encoding")
    if encoding:  # the cap holds on the cloak; a lossy file may move pixels past it
        flag = (f"  {encoding['format']} encoding moved pixels by up to "
                f"{encoding['linf'] * 255:.0f}/255 more (largest change on disk "
                f"{report['linf'] * 255:.0f}/255, cap {report['linf_cap'] * 255:.0f}/255; "
                f"shift measured before encoding; PNG, WebP and TIFF store it exactly)"
                + flag)
    return (f"done {job.source} -> {job.output}  (shift {shifts_text(report)}, "
            f"LPIPS {report['lpips']:.4f}, PSNR {psnr} on disk, {report['seconds']:.1f} s; "
            f"{visibility_text(report, with_psnr=False)}; "
            f"{stopping_text(report) or str(report['steps_run']) + ' steps'}){flag}")


def _settings(args: argparse.Namespace):
    from glaze.engine import CloakSettings
    from glaze.options import SETTINGS

    given = {setting.name: getattr(args, setting.name) for setting in SETTINGS if setting.cloak}
    return CloakSettings(**{name: value for name, value in given.items() if value is not None})


def _check_arguments(args: argparse.Namespace) -> None:
    """Refuse bad settings and profile names before any work."""
    from glaze.engine import ProfileStore

    ProfileStore().path(args.profile)
    _settings(args)


def _open_cloaker(args: argparse.Namespace, jobs: Sequence[Job]):
    """The daemon if asked for (started if need be) or running, else this process. A
    running daemon that serves other models than asked is not used: its outputs would be
    taken for the asked models' ones."""
    from glaze.daemon.client import DaemonError
    from glaze.daemon.control import running
    from glaze.engine.sources import model_source

    if args.preview and args.daemon:  # the daemon makes no previews yet
        raise DaemonError("--preview decodes in this process: leave out --daemon")
    if args.daemon or (running() is not None and args.daemon is None and not args.preview):
        daemon = ViaDaemon(args, autostart=bool(args.daemon))
        wanted = model_source(args.model)
        if daemon.model == wanted:
            return daemon
        daemon.close()
        served = daemon.model or f"the bundle {daemon.name}"
        if args.daemon:
            raise DaemonError(f"the running daemon serves {served}, not {wanted}: stop it "
                              "(`glaze daemon stop`) or ask for its models with --model")
        _say(f"the running daemon serves {served}, not {wanted}: cloaking in this process")
    return InProcess(args, jobs)


def _asked(args: argparse.Namespace) -> dict:
    """What this run asks of every output, but for its source file (provenance.request)."""
    from glaze.engine import ProfileStore
    from glaze.engine.sources import declared_demo, model_source

    model = model_source(args.model)
    profile = ProfileStore().load(args.profile)
    target = args.target.strip() if args.target else (profile.target_style if profile
                                                       else None)
    return {"model": model, "demo": declared_demo(model), "target_style": target,
            "settings": _settings(args)}


def _unfinished(jobs: Sequence[Job], args: argparse.Namespace) -> list[Job]:
    """The jobs whose output is not already there, complete and made as this run asks
    (same models, target, settings, seed and source); marks the others skipped, or failed
    where --no-overwrite keeps an output that another run made."""
    from glaze.engine.imagefile import is_complete, read_record, upright_size
    from glaze.engine.provenance import mismatch, request
    from glaze.stamp import file_sha256

    base, pending = _asked(args), []
    problems: dict[Path, str | None] = {}
    for job in jobs:
        folder = job.output.parent
        if folder not in problems:
            problems[folder] = unwritable(folder)
        if problems[folder]:
            job.status, job.error = "failed", problems[folder]
            continue
        try:
            job.asked = request(source_sha256=file_sha256(job.source), **base)
        except OSError as error:
            job.status, job.error = "failed", f"cannot read it ({error.strerror or error})"
            continue
        job.profile = args.profile
        if not (job.output.exists() and is_complete(job.output, upright_size(job.source))):
            pending.append(job)
            continue
        reason = mismatch(read_record(job.output), job.asked)
        if reason is None:
            job.status, job.error = "skipped", f"{job.output} exists, made as asked"
        elif args.no_overwrite:
            job.status = "failed"
            job.error = f"{job.output} exists but {reason}; kept (--no-overwrite)"
        else:
            _say(f"replacing {job.output}: {reason}")
            pending.append(job)
    return pending


def run_cloak(args: argparse.Namespace) -> int:
    from glaze.daemon.client import DaemonError
    from glaze.engine import ModelLoadError
    from glaze.engine.imagefile import ImageFileError, read_image
    from glaze.engine.storage import write_json

    try:
        _check_arguments(args)
    except ValueError as error:
        print(f"glaze: {error}", file=sys.stderr)
        return 2
    jobs, missing = collect_jobs(args.inputs, args.outdir)
    try:
        pending = _unfinished(jobs, args)
    except ModelLoadError as error:
        print(f"glaze: {error}", file=sys.stderr)
        return 2
    cloaker = None
    if pending:
        try:
            cloaker = _open_cloaker(args, pending)
        except (ModelLoadError, DaemonError) as error:
            print(f"glaze: {error}", file=sys.stderr)
            return 2
        if cloaker.note:
            _say(f"NOTE: {cloaker.note}.")
    try:
        with (_bar(total=len(pending), desc="images", unit="image") as overall,
              _finish_on_interrupt() as finishing):
            for job in pending:
                if finishing.is_set():
                    job.status, job.error = "skipped", "not started: the run was finished early"
                    _say(_describe(job))
                    continue
                try:
                    _cloak_one(job, read_image(job.source), cloaker, finishing.is_set)
                except (ImageFileError, ValueError, OSError) as error:
                    job.status, job.error = "failed", str(error)
                overall.update()
                _say(_describe(job))
    finally:
        if cloaker is not None:
            cloaker.close()
    for job in itertools.chain(missing, (j for j in jobs if j.status in ("skipped", "failed")
                                         and j not in pending)):
        _say(_describe(job))
    every = missing + jobs
    if args.report:
        write_json(args.report, {"version": __version__,
                                 "bundle": cloaker.name if cloaker else None,
                                 "protection_note": cloaker.note if cloaker else None,
                                 "images": [job.to_dict() for job in every]})
    failed = [job for job in every if job.status == "failed"]
    done = sum(job.status == "done" for job in every)
    print(f"{done} cloaked, {len(every) - done - len(failed)} skipped, {len(failed)} failed")
    if cloaker is not None and cloaker.note and done:
        print(f"NOTE: {cloaker.note}.")
    if finishing.is_set():
        return 130  # interrupted, as a shell counts Ctrl-C
    return 1 if failed or not every else 0


