"""The evaluation plan (conditions x countermeasures) and its resumable run.

Each cell protects the artist's training works under one condition, applies one
countermeasure, fine-tunes the mimic and scores its images. A finished cell's numbers are
written atomically to cells/NAME.json together with a fingerprint of every setting that
produced them; a rerun reuses the cells whose fingerprint matches. Protected training sets
are kept as PNGs under protected/CONDITION/ and reused the same way.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..imagefile import FORMATS, read_image, write_image
from ..models import ModelBundle, load_bundle
from ..progress import Progress
from ..settings import CloakSettings
from ..storage import write_json
from ..target import choose_target
from . import conditions as protection
from . import countermeasures as counter
from . import mimicry, report, style_metric

SHIFTS_FILE = "shifts.json"  # beside a condition's protected works: their feature shifts
DEFAULT_COUNTERMEASURES = (
    counter.Countermeasure("jpeg", 90), counter.Countermeasure("jpeg", 75),
    counter.Countermeasure("jpeg", 50), counter.Countermeasure("noise", 0.02),
    counter.Countermeasure("noise", 0.05), counter.Countermeasure("noise", 0.1),
    counter.Countermeasure("resize", 0.5), counter.Countermeasure("resize", 0.25),
    counter.Countermeasure("noisy_upscale", 0.1), counter.Countermeasure("impress", 0.05),
)


@dataclass(frozen=True)
class Cell:
    """One fine-tune: a protection condition, then a countermeasure."""

    condition: protection.Condition
    countermeasure: counter.Countermeasure

    @property
    def name(self) -> str:
        return f"{self.condition.name}__{self.countermeasure.name}"


@dataclass
class EvalConfig:
    """Everything a run needs; the fields that shape results go into the fingerprint."""

    artist: Path
    results: Path
    model: str = "default"
    mimic_family: str = "sd"  # the model the mimic fine-tunes (mimicry.MIMIC_SOURCES)
    mimic_model: str | None = None  # its folder or hub id; None: the family's default
    clip: str = style_metric.DEFAULT_CLIP
    upscaler: str | None = None
    captioner: str | None = None
    device: str | None = None
    precision: str | None = None
    artist_token: str = "zqx artist"
    artist_genre: str | None = None  # None: CLIP's top genre of the artist's works
    target_style: str | None = None  # None: chosen as `glaze cloak` chooses it
    budget: float = 0.05  # p of every condition at equal budget
    budgets: tuple[float, ...] = (0.025, 0.05, 0.075)  # the cloak's budget sweep
    shares: tuple[float, ...] = (0.5, 0.25)  # partial cloaking (paper section 6.4)
    kinds: tuple[str, ...] = protection.KINDS
    countermeasures: tuple[counter.Countermeasure, ...] = DEFAULT_COUNTERMEASURES
    countermeasures_on: tuple[str, ...] = ("glaze",)
    cloak_steps: int = 500
    mimic: mimicry.MimicSettings = field(default_factory=mimicry.MimicSettings)
    impress_steps: int = 100
    upscale_steps: int = 20
    seed: int = 0
    quick: bool = False  # a shortened smoke-test run: its report says it measures nothing
    command: str = ""


def plan(config: EvalConfig) -> list[Cell]:
    """Every condition without countermeasure, then the countermeasures on chosen kinds."""
    conditions = []
    for kind in config.kinds:
        if kind == "unprotected":
            conditions.append(protection.Condition(kind))
        elif kind == "glaze":
            budgets = sorted(set(config.budgets) | {config.budget})
            conditions += [protection.Condition(kind, budget) for budget in budgets]
            conditions += [protection.Condition(kind, config.budget, share)
                           for share in config.shares if share != 1.0]
        else:
            conditions.append(protection.Condition(kind, config.budget))
    cells = [Cell(condition, counter.Countermeasure()) for condition in conditions]
    for kind in config.countermeasures_on:
        if kind in config.kinds:
            main = protection.Condition(kind, config.budget)
            cells += [Cell(main, measure) for measure in config.countermeasures
                      if measure.kind != "none"]
    return cells


@dataclass
class Context:
    """What every cell shares: models, the artist's works and the run's fixed choices."""

    config: EvalConfig
    bundle: ModelBundle
    mimic: mimicry.Mimic
    clip: style_metric.Clip
    upscaler: object | None
    labels: list[str]
    works: dict[str, np.ndarray]
    training: list[str]
    held_out: list[str]
    captions: dict[str, str]
    genre: str
    genre_source: str
    target_style: str
    reference: torch.Tensor | None = None  # CLIP centroid of the held-out works
    fingerprint: str = ""  # of everything that shapes a cell's numbers
    protection_fingerprint: str = ""  # of what shapes the protected works only

    @property
    def base(self) -> CloakSettings:
        res = self.config.mimic.resolution
        return CloakSettings(quality=self.config.cloak_steps, seed=self.config.seed,
                             work_size=res, intensity=self.config.budget)


def read_works(folder: Path) -> dict[str, np.ndarray]:
    """The artist's works as RGB uint8 (transparency composited over white), by file name."""
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in FORMATS)
    works = {}
    for path in files:
        image = read_image(path).pixels
        if image.shape[-1] == 4:
            alpha = image[..., 3:] / 255.0
            image = np.rint(image[..., :3] * alpha + 255 * (1 - alpha)).astype(np.uint8)
        works[path.name] = image
    if len(works) < 2:
        raise ValueError(f"{folder}: the harness needs at least 2 artworks (PNG, JPEG, WebP "
                         "or TIFF), better 10 or more")
    return works


def _digest(works: dict[str, np.ndarray]) -> str:
    digest = hashlib.sha256()
    for name in sorted(works):
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(works[name]).tobytes())
    return digest.hexdigest()[:16]


def fingerprint(config: EvalConfig, context_choices: dict) -> str:
    """A short hash of every setting that shapes a cell's numbers."""
    fields = {key: value for key, value in asdict(config).items()
              if key not in ("results", "command", "device", "kinds", "budgets", "shares",
                             "countermeasures", "countermeasures_on", "artist", "quick")}
    text = json.dumps([fields, context_choices], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


class Runner:
    """Runs a plan with one progress bar, reusing finished work."""

    def __init__(self, context: Context, cells: list[Cell], show_progress: bool = True) -> None:
        self.context, self.cells = context, cells
        self.folder = context.config.results
        self.protected: dict[str, dict[str, np.ndarray]] = {}
        # per condition, per covered work: each extractor's feature shift (or None)
        self.shifts: dict[str, dict[str, dict[str, float] | None]] = {}
        conditions = {cell.condition for cell in cells if cell.condition.kind != "unprotected"}
        total = len(conditions) * len(context.training) + len(cells)
        self.bar = tqdm(total=total, unit="task", desc="glaze eval", disable=not show_progress,
                        dynamic_ncols=True)
        self.computed: list[str] = []
        self.reused: list[str] = []

    def progress(self) -> Progress:
        return Progress(lambda _fraction, message: self.bar.set_postfix_str(message[:60]))

    def protected_set(self, condition: protection.Condition) -> dict[str, np.ndarray]:
        """The training works under the condition, cached as PNGs in the results folder."""
        context = self.context
        if condition.kind == "unprotected":
            return {name: context.works[name] for name in context.training}
        if condition.name in self.protected:
            return self.protected[condition.name]
        # One folder per protection at full share: a partial condition reuses its works.
        folder = self.folder / "protected" / replace(condition, share=1.0).name
        stamp = folder / "fingerprint.txt"
        stamped = stamp.is_file() and stamp.read_text() == context.protection_fingerprint
        if folder.is_dir() and not stamped:
            shutil.rmtree(folder)
        folder.mkdir(parents=True, exist_ok=True)
        stamp.write_text(context.protection_fingerprint)
        chosen = protection.covered(context.training, condition.share, context.config.seed)
        shifts_file = folder / SHIFTS_FILE
        shifts = json.loads(shifts_file.read_text()) if shifts_file.is_file() else {}
        result, covered_shifts = {}, {}
        for index, name in enumerate(context.training):
            path = folder / f"{name}.png"  # the whole name: cat.png and cat.jpg differ
            if name not in chosen:
                result[name] = context.works[name]
            elif path.is_file() and name in shifts:
                result[name] = read_image(path).pixels
            else:
                self.bar.set_postfix_str(f"{condition.name}: {name}")
                result[name], shifts[name] = protection.protect(
                    context.works[name], condition, context.bundle, context.base,
                    context.target_style, context.config.seed + index)
                write_image(path, result[name])
                write_json(shifts_file, shifts)
            if name in chosen:
                covered_shifts[name] = shifts[name]
            self.bar.update()
        self.protected[condition.name] = result
        self.shifts[condition.name] = covered_shifts
        return result

    def extractor_shifts(self, condition: protection.Condition) -> dict[str, float] | None:
        """The mean feature shift of the covered works per extractor (None where the
        condition has no style target)."""
        found = list(self.shifts.get(condition.name, {}).values())
        if not found or None in found:
            return None
        return {name: float(np.mean([shifts[name] for shifts in found])) for name in found[0]}

    def cell(self, cell: Cell) -> dict:
        """The cell's numbers: reused when finished with the same settings, else computed."""
        path = self.folder / "cells" / f"{cell.name}.json"
        if path.is_file():
            stored = json.loads(path.read_text())
            if stored.get("fingerprint") == self.context.fingerprint:
                self.reused.append(cell.name)
                self.bar.update()
                return stored
        result = self.compute(cell)
        write_json(path, result)
        self.computed.append(cell.name)
        self.bar.update()
        return result

    def compute(self, cell: Cell) -> dict:
        context, config = self.context, self.context.config
        started = time.perf_counter()
        protected = self.protected_set(cell.condition)
        self.bar.set_postfix_str(f"{cell.name}: countermeasure")
        train = [counter.apply(protected[name], cell.countermeasure, context.bundle,
                               context.upscaler, config.seed + index,
                               config.mimic.resolution, config.impress_steps,
                               config.upscale_steps)
                 for index, name in enumerate(context.training)]
        lora = mimicry.finetune(context.mimic, train,
                                [context.captions[name] for name in context.training],
                                config.mimic, self.folder / "lora" / cell.name, self.progress())
        with mimicry.loaded_lora(context.mimic, lora) as pipe:
            images = mimicry.generate(pipe, sorted({context.captions[n] for n in context.held_out}),
                                      config.mimic, self.progress())
        generated = self.folder / "generated" / cell.name
        shutil.rmtree(generated, ignore_errors=True)  # no stale images from another setting
        generated.mkdir(parents=True)
        for index, image in enumerate(images):
            write_image(generated / f"{index:03d}.png", image)
        return self._score(cell, images, protected, train, time.perf_counter() - started)

    def _score(self, cell: Cell, images: list[np.ndarray], protected: dict, train: list,
               seconds: float) -> dict:
        context = self.context
        probabilities = style_metric.genre_probabilities(context.clip, images, context.labels)
        originals = [context.works[name].astype(np.int16) for name in context.training]
        change = max(float(np.abs(protected[name].astype(np.int16) - original).max())
                     for name, original in zip(context.training, originals, strict=True))
        countered = [float(np.abs(t.astype(np.int16) - protected[name]).mean()) / 255
                     if t.shape == protected[name].shape else None
                     for t, name in zip(train, context.training, strict=True)]
        cap = (0.0 if cell.condition.kind == "unprotected"
               else cell.condition.settings(context.base).linf)
        return {
            "name": cell.name, "condition_name": cell.condition.name,
            "countermeasure_name": cell.countermeasure.name,
            "condition": asdict(cell.condition), "countermeasure": asdict(cell.countermeasure),
            "fingerprint": context.fingerprint,
            "shift_rate": style_metric.shift_rate(probabilities, context.labels, context.genre),
            "clip_similarity": style_metric.similarity(context.clip, images, context.reference),
            "images": len(images), "linf_cap": cap, "measured_linf": change / 255,
            "extractor_shifts": self.extractor_shifts(cell.condition),
            "countermeasure_mean_change": (None if None in countered
                                           else float(np.mean(countered))),
            "top_genres": style_metric.top_genres(probabilities, context.labels),
            "seconds": round(seconds, 2),
        }

    def run(self) -> tuple[list[dict], list[dict]]:
        """All cells; returns (finished cells, skipped cells with their reasons)."""
        done, skipped = [], []
        for cell in self.cells:
            try:
                done.append(self.cell(cell))
            except counter.Skipped as reason:
                self.bar.update()
                skipped.append({"name": cell.name, "condition_name": cell.condition.name,
                                "countermeasure_name": cell.countermeasure.name,
                                "countermeasure": asdict(cell.countermeasure),
                                "status": "skipped", "reason": str(reason)})
        self.bar.update(self.bar.total - self.bar.n)  # protection reused with its cells
        self.bar.close()
        return done, skipped


def prepare(config: EvalConfig, progress: Progress | None = None) -> Context:
    """Load the models and the artist's works; fix the split, captions, genre and target."""
    progress = progress or Progress()
    works = read_works(config.artist)
    training, held_out = mimicry.split(list(works), config.seed)
    paths = [config.artist / name for name in works]
    captions = dict(zip(works, mimicry.captions(paths, config.artist_token, config.captioner),
                        strict=True))
    bundle = load_bundle(config.model, config.device, config.precision)
    mimic = mimicry.load_mimic(config.mimic_family, bundle, config.mimic_model)
    clip = style_metric.load_clip(config.clip, config.device)
    labels = style_metric.genres()
    if config.artist_genre:
        if config.artist_genre not in labels:
            raise ValueError(f"unknown genre {config.artist_genre!r}: choose one of "
                             f"{', '.join(labels)}")
        genre, source = config.artist_genre, "given"
    else:
        probabilities = style_metric.genre_probabilities(clip, list(works.values()), labels)
        genre, source = style_metric.artist_genre(probabilities, labels), "CLIP's top genre"
    target = config.target_style or choose_target(bundle, list(works.values()), config.seed,
                                                  progress=progress)
    needs_upscaler = any(m.kind == "noisy_upscale" for m in config.countermeasures)
    upscaler = (counter.load_upscaler(config.upscaler, config.device)
                if needs_upscaler else None)
    context = Context(config, bundle, mimic, clip, upscaler, labels, works, training, held_out,
                      captions, genre, source, target,
                      style_metric.centroid(clip, [works[name] for name in held_out]))
    context.fingerprint = fingerprint(config, {
        "bundle": bundle.identity, "mimic": mimic.identity, "training": training,
        "captions": captions, "genre": genre,
        "target": target, "works": _digest(works)})
    protection_settings = {"bundle": bundle.identity, "cloak_steps": config.cloak_steps,
                           "extractors": {name: phi.identity
                                          for name, phi in bundle.extractors.items()},
                           "precision": str(bundle.precision), "device": bundle.device.type,
                           "resolution": config.mimic.resolution, "seed": config.seed,
                           "training": training, "target": target, "works": _digest(works)}
    context.protection_fingerprint = hashlib.sha256(
        json.dumps(protection_settings, sort_keys=True).encode()).hexdigest()[:12]
    return context


def summarize(context: Context, cells: list[dict], skipped: list[dict]) -> dict:
    """Every number of the run, its models, seeds and command (the note first)."""
    config = context.config
    demo = (context.bundle.demo or context.mimic.demo or context.clip.demo
            or config.upscaler == "demo")
    held = [context.works[name] for name in context.held_out]
    reference = style_metric.genre_probabilities(context.clip, held, context.labels)
    summary = {
        "note": "", "meaningful": not demo and not config.quick, "quick": config.quick,
        "models": {"bundle": context.bundle.name, "mimic": context.mimic.name,
                   "mimic_family": context.mimic.family, "clip": context.clip.name,
                   "upscaler": config.upscaler, "captioner": config.captioner,
                   "demo": demo},
        "seeds": {"run": config.seed, "generation": list(config.mimic.seeds)},
        "command": config.command,
        "artist": {"folder": str(config.artist), "works": len(context.works),
                   "training": context.training, "held_out": context.held_out,
                   "genre": context.genre, "genre_source": context.genre_source,
                   "token": config.artist_token, "captions": context.captions},
        "target_style": context.target_style,
        "reference": {"shift_rate": style_metric.shift_rate(reference, context.labels,
                                                             context.genre)},
        "settings": {"mimic": asdict(config.mimic), "cloak_steps": config.cloak_steps,
                     "budget": config.budget, "impress_steps": config.impress_steps,
                     "upscale_steps": config.upscale_steps,
                     "genre_prompt": style_metric.PROMPT, "top_k": style_metric.TOP_K,
                     "fingerprint": context.fingerprint},
        "cells": cells, "skipped": skipped,
    }
    summary["note"] = report.headline(summary)
    return summary


@dataclass
class Outcome:
    summary: dict
    paths: dict[str, Path]
    computed: list[str]
    reused: list[str]


def evaluate(config: EvalConfig, show_progress: bool = True) -> Outcome:
    """Run the whole evaluation into config.results and write the report."""
    config.results.mkdir(parents=True, exist_ok=True)
    context = prepare(config)
    runner = Runner(context, plan(config), show_progress)
    cells, skipped = runner.run()
    summary = summarize(context, cells, skipped)
    paths = report.write(summary, config.results)
    return Outcome(summary, paths, runner.computed, runner.reused)
