"""How much of the cloak's feature shift survives what happens to a posted picture.

Engineering figures, not protection claims. By default the extractor is TAEF2 (engine/
taef2.py, weights in ../shared/weights): a tiny encoder distilled to the FLUX.2 VAE's latent
space, the one trained diffusion-latent encoder that loads on machines without a model
hub. Trained filters matter here: random-weight encoders' first convolutions are
white-noise filters, on which a cloak looked fragile to JPEG and robust to noise, the
opposite of what TAEF2 shows. `--extractors sd sdxl flux flux2 qwen` measures the
full-size RANDOM-weight architectures instead (as in cloak_step.py), for cost. Each
extractor is defended alone, and the target is a fixed synthetic painting instead of a
style transfer. For each extractor, side by side in one run, it cloaks the image

- with the views alone (`transforms=()`: the cloak before EOT),
- with the expectation over transformations (EOT, the default `CloakSettings.transforms`),
  at the same number of steps,
- with the views alone again, given as many more steps as make its time EOT's ("same
  time"; left out where an EOT step costs no more),

and prints, for the working view (what the optimizer saw) and for each preprocessing P,

    shift_P = 1 - ||Phi(P(x')) - Phi(G(t))|| / ||Phi(P(x)) - Phi(G(t))||

where x is the image, x' the cloaked image, t the target and G the geometric part of P;
"kept" is shift_P over the working view's shift of the same cloak. Then the mean time of
a step of each, and their ratio.

    python benchmarks/cloak_survival.py --steps 24 96         # TAEF2; about 40 minutes
    python benchmarks/cloak_survival.py --extractors sd --steps 12 24 48   # random SD
    python benchmarks/cloak_survival.py --model default --device cuda --steps 200
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from cloak_step import (  # this folder's: full-size random VAEs, TAEF2's name and weights
    FULL_SIZE,
    TAEF2,
    WEIGHTS,
    full_size_bundle,
)
from PIL import Image

from glaze.engine.cloak import cloak_toward
from glaze.engine.evaluation.countermeasures import gaussian_noise
from glaze.engine.evaluation.synthetic import painting
from glaze.engine.geometry import (
    ENCODER_MULTIPLE,
    UPLOAD_LONG_SIDE,
    View,
    center_crop_view,
    fit,
    whole_view,
)
from glaze.engine.models import ModelBundle, load_bundle
from glaze.engine.pixels import image_array, image_tensor
from glaze.engine.settings import CloakSettings
from glaze.engine.taef2 import measurement_bundle
from glaze.engine.transforms import jpeg

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "examples" / "sample-artwork.png"


@dataclass(frozen=True)
class Preprocessing:
    """A geometric view of the image, then optionally a pixel operation on that view."""

    name: str
    view: Callable[[tuple[int, int]], View]
    pixels: Callable[[np.ndarray], np.ndarray] | None = None


def long_side(size: int, multiple: int = ENCODER_MULTIPLE) -> Callable[[tuple[int, int]], View]:
    """The whole image at `size` px on its long side, its sides multiples of `multiple`."""
    return lambda shape: whole_view(shape, size, multiple)


def center_crop(size: int) -> Callable[[tuple[int, int]], View]:
    return lambda shape: center_crop_view(shape, size)


def noisy_upscaling_analog(image: np.ndarray) -> np.ndarray:
    """Gaussian noise 0.1, then down x4 and bicubic up x4: the shape of a noisy upscaler's
    purification, without its model."""
    noisy = Image.fromarray(gaussian_noise(image, 0.1))
    small = noisy.resize((noisy.width // 4, noisy.height // 4), Image.Resampling.BICUBIC)
    return np.asarray(small.resize(noisy.size, Image.Resampling.BICUBIC))


def preprocessings(work_size: int) -> list[Preprocessing]:
    upload = UPLOAD_LONG_SIDE
    resized = [] if work_size == 512 else [Preprocessing("resize 512", long_side(512))]
    return [
        Preprocessing(f"working view ({work_size} px)", long_side(work_size)),
        *resized,  # at a 512 px working size that is the working view itself
        Preprocessing(f"resize {upload}", long_side(upload)),
        Preprocessing("resize + center crop 512", center_crop(512)),
        Preprocessing("JPEG q90 @512", long_side(512), lambda a: jpeg(a, 90)),
        Preprocessing("JPEG q75 @512", long_side(512), lambda a: jpeg(a, 75)),
        Preprocessing("JPEG q60 @512", long_side(512), lambda a: jpeg(a, 60)),
        Preprocessing(f"resize {upload} + JPEG q75", long_side(upload),
                      lambda a: jpeg(a, 75)),
        Preprocessing("Gaussian 0.02 @512", long_side(512), lambda a: gaussian_noise(a, 0.02)),
        Preprocessing("Gaussian 0.05 @512", long_side(512), lambda a: gaussian_noise(a, 0.05)),
        Preprocessing("noisy upscaling analog", long_side(512), noisy_upscaling_analog),
    ]


@torch.no_grad()
def seen(bundle: ModelBundle, name: str, image: np.ndarray,
         step: Preprocessing) -> torch.Tensor:
    """Phi of the image as the mimic sees it after the preprocessing."""
    viewed = step.view(image.shape[:2]).apply(image_tensor(image))
    if step.pixels is not None:
        viewed = image_tensor(step.pixels(image_array(viewed)))
    return bundle.encode(viewed, name)


def shifts(bundle: ModelBundle, name: str, image: np.ndarray, cloaked: list[np.ndarray],
           target: np.ndarray, steps: list[Preprocessing]) -> list[list[float]]:
    """shift_P of each cloaked version (rows: preprocessings, columns: versions)."""
    rows, goals = [], {}
    for step in steps:
        view = step.view(target.shape[:2])
        if view not in goals:  # the target is seen through the geometry only, once per view
            goals[view] = seen(bundle, name, target, Preprocessing(step.name, step.view))
        goal = goals[view]
        before = torch.linalg.vector_norm(seen(bundle, name, image, step) - goal)
        rows.append([float(1 - torch.linalg.vector_norm(seen(bundle, name, version, step)
                                                        - goal) / before)
                     for version in cloaked])
    return rows


def load_image(long: int) -> np.ndarray:
    image = Image.open(SAMPLE).convert("RGB")
    height, width = fit((image.height, image.width), long)
    return np.asarray(image.resize((width, height), Image.Resampling.LANCZOS))


def timed_cloak(image: np.ndarray, bundle: ModelBundle, goal: torch.Tensor,
                settings: CloakSettings) -> tuple[np.ndarray, float]:
    """The cloaked image and the mean seconds of its steps (a mean, not a median: the
    upload's 1024 px view costs more than the others)."""
    stamps: list[float] = []
    cloaked = cloak_toward(image, bundle, goal, settings,
                           progress=lambda fraction, message: stamps.append(
                               time.perf_counter()))
    if len(stamps) < 2:
        return cloaked, float("nan")
    return cloaked, (stamps[-1] - stamps[0]) / (len(stamps) - 1)


def one_extractor(bundle: ModelBundle, name: str, image: np.ndarray, target: np.ndarray,
                  args: argparse.Namespace, steps_run: int) -> None:
    base = CloakSettings(intensity=args.intensity, quality=steps_run, defend=name,
                         work_size=args.work_size, seed=args.seed)
    goal = whole_view(image.shape[:2], args.work_size).apply(image_tensor(target))
    plain, plain_step = timed_cloak(image, bundle, goal, replace(base, transforms=()))
    eot, eot_step = timed_cloak(image, bundle, goal, base)
    versions = {f"views, {steps_run} steps": plain, f"EOT, {steps_run} steps": eot}
    more = round(steps_run * eot_step / plain_step)
    if more > steps_run:  # else EOT's steps cost no more, and equal steps are equal time
        versions[f"views, {more} steps (same time)"], _ = timed_cloak(
            image, bundle, goal, replace(base, transforms=(), quality=more))
    steps = preprocessings(args.work_size)
    rows = shifts(bundle, name, image, list(versions.values()), target, steps)
    print(f"\n{name.upper()}, {steps_run} steps: a step {plain_step:.2f} s with the views "
          f"alone, {eot_step:.2f} s with EOT (x{eot_step / plain_step:.2f}); L_inf "
          + ", ".join(f"{np.abs(v.astype(int) - image).max()}/255" for v in versions.values()))
    print(f"{'preprocessing':<26}" + "".join(f"{label:>32}" for label in versions))
    print(f"{'':<26}" + f"{'shift':>23} {'kept':>8}" * len(versions))
    references = rows[0]
    for step, row in zip(steps, rows, strict=True):
        print(f"{step.name:<26}" + "".join(
            f"{shift:>23.3f} {shift / reference:>8.0%}"
            for shift, reference in zip(row, references, strict=True)))
    sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=1024, help="long side of the image")
    parser.add_argument("--work-size", type=int, default=512, help="the cloak's working size")
    parser.add_argument("--steps", type=int, nargs="+", default=[12],
                        help="cloak optimizer steps (several: the shares kept against steps)")
    parser.add_argument("--intensity", default="default", help="LPIPS budget preset or p")
    parser.add_argument("--seed", type=int, default=CloakSettings().seed,
                        help="the cloaks' seed (their random crop and transform draws)")
    parser.add_argument("--extractors", nargs="+", default=[TAEF2],
                        choices=[TAEF2, *FULL_SIZE],
                        help="taef2 (trained, FLUX.2's latent space) or full-size random ones")
    parser.add_argument("--weights", type=Path, default=WEIGHTS, help="TAEF2's folder")
    parser.add_argument("--model", help="a bundle to measure instead (folder or hub id; "
                                        "default: the random-weight VAE encoders)")
    parser.add_argument("--precision", choices=("fp32", "bf16"))
    parser.add_argument("--device")
    args = parser.parse_args()
    torch.manual_seed(0)
    image = load_image(args.image_size)
    target = np.asarray(Image.fromarray(painting(512, seed=11)).resize(
        (image.shape[1], image.shape[0]), Image.Resampling.BICUBIC))
    print(f"image {image.shape[1]}x{image.shape[0]}, work size {args.work_size}, "
          f"{'/'.join(map(str, args.steps))} steps, intensity {args.intensity}, "
          f"seed {args.seed}, "
          f"{torch.get_num_threads()} threads; engineering figures, not protection claims")
    for name in args.extractors:
        bundle, weights = extractor_bundle(name, args)
        print(f"\n{weights} ({bundle.precision}, {bundle.device})", flush=True)
        for steps_run in args.steps:
            one_extractor(bundle, next(iter(bundle.extractors)), image, target, args,
                          steps_run)


def extractor_bundle(name: str, args: argparse.Namespace) -> tuple[ModelBundle, str]:
    """The bundle that measures extractor `name`, and what its weights are, in words."""
    if args.model:
        bundle = load_bundle(args.model, args.device, args.precision, defend=(name,))
        return bundle, f"bundle {bundle.name}"
    if name == TAEF2:
        return (measurement_bundle(args.weights, args.device, args.precision),
                f"TRAINED TAEF2 encoder (FLUX.2's latent space) from {args.weights}")
    return (full_size_bundle(args.device, args.precision, (name,)),
            f"RANDOM-weight full-size {name.upper()} VAE encoder")


if __name__ == "__main__":
    main()
