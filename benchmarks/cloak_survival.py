"""How much of the cloak's feature shift survives a mimic's preprocessing.

Engineering figures, not protection claims: the encoder is Stable Diffusion 2.x's full-size
VAE architecture with RANDOM weights (as in cloak_step.py; the SD extractor alone), and the
target is a fixed synthetic painting instead of a style transfer. For the cloak as built
(resize-robust) and for the variant without resize-robustness, side by side in one run, it
prints

    shift_P = 1 - ||Phi(P(x')) - Phi(G(t))|| / ||Phi(P(x)) - Phi(G(t))||

for the working view (what the optimizer saw) and for each preprocessing P a mimic may apply
(resize to 512 / 1024 px long side, resize-and-center-crop to 512 px, JPEG q90 / q75 and
Gaussian noise sigma 0.02 / 0.05 at 512 px), where x is the image, x' the cloaked image, t
the target and G the geometric part of P; "kept" is shift_P over the working view's shift.

    python benchmarks/cloak_survival.py                       # about 2 minutes on 2 CPU cores
    python benchmarks/cloak_survival.py --image-size 1536 --steps 100
    python benchmarks/cloak_survival.py --model default --device cuda --steps 200
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from cloak_step import full_size_bundle  # this folder's benchmark: the SD 2.x VAE bundle
from PIL import Image

from glaze.engine.cloak import cloak_toward
from glaze.engine.evaluation.countermeasures import gaussian_noise, jpeg
from glaze.engine.evaluation.synthetic import painting
from glaze.engine.geometry import View, center_crop_view, fit, whole_view
from glaze.engine.models import ModelBundle, load_bundle
from glaze.engine.pixels import image_array, image_tensor
from glaze.engine.settings import CloakSettings

SAMPLE = Path(__file__).resolve().parent.parent / "examples" / "sample-artwork.png"


@dataclass(frozen=True)
class Preprocessing:
    """A geometric view of the image, then optionally a pixel operation on that view."""

    name: str
    view: Callable[[tuple[int, int]], View]
    pixels: Callable[[np.ndarray], np.ndarray] | None = None


def long_side(size: int) -> Callable[[tuple[int, int]], View]:
    return lambda shape: whole_view(shape, size)


def center_crop(size: int) -> Callable[[tuple[int, int]], View]:
    return lambda shape: center_crop_view(shape, size)


def preprocessings(work_size: int) -> list[Preprocessing]:
    resized = [] if work_size == 512 else [Preprocessing("resize 512", long_side(512))]
    return [
        Preprocessing(f"working view ({work_size} px)", long_side(work_size)),
        *resized,  # at a 512 px working size that is the working view itself
        Preprocessing("resize 1024", long_side(1024)),
        Preprocessing("resize + center crop 512", center_crop(512)),
        Preprocessing("JPEG q90 @512", long_side(512), lambda a: jpeg(a, 90)),
        Preprocessing("JPEG q75 @512", long_side(512), lambda a: jpeg(a, 75)),
        Preprocessing("Gaussian 0.02 @512", long_side(512), lambda a: gaussian_noise(a, 0.02)),
        Preprocessing("Gaussian 0.05 @512", long_side(512), lambda a: gaussian_noise(a, 0.05)),
    ]


@torch.no_grad()
def seen(bundle: ModelBundle, image: np.ndarray, step: Preprocessing) -> torch.Tensor:
    """Phi of the image as the mimic sees it after the preprocessing."""
    viewed = step.view(image.shape[:2]).apply(image_tensor(image))
    if step.pixels is not None:
        viewed = image_tensor(step.pixels(image_array(viewed)))
    return bundle.encode(viewed)


def shifts(bundle: ModelBundle, image: np.ndarray, cloaked: list[np.ndarray],
           target: np.ndarray, steps: list[Preprocessing]) -> list[list[float]]:
    """shift_P of each cloaked version (rows: preprocessings, columns: versions)."""
    rows, goals = [], {}
    for step in steps:
        view = step.view(target.shape[:2])
        if view not in goals:  # the target is seen through the geometry only, once per view
            goals[view] = seen(bundle, target, Preprocessing(step.name, step.view))
        goal = goals[view]
        before = torch.linalg.vector_norm(seen(bundle, image, step) - goal)
        rows.append([float(1 - torch.linalg.vector_norm(seen(bundle, version, step) - goal)
                           / before) for version in cloaked])
    return rows


def load_image(long: int) -> np.ndarray:
    image = Image.open(SAMPLE).convert("RGB")
    height, width = fit((image.height, image.width), long)
    return np.asarray(image.resize((width, height), Image.LANCZOS))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=1024, help="long side of the image")
    parser.add_argument("--work-size", type=int, default=512, help="the cloak's working size")
    parser.add_argument("--steps", type=int, default=12, help="cloak optimizer steps")
    parser.add_argument("--intensity", default="default", help="LPIPS budget preset or p")
    parser.add_argument("--model", help="a bundle to measure instead (folder or hub id; "
                                        "default: the random-weight SD 2.x VAE)")
    parser.add_argument("--precision", choices=("fp32", "bf16"))
    parser.add_argument("--device")
    args = parser.parse_args()
    torch.manual_seed(0)
    if args.model:
        bundle = load_bundle(args.model, args.device, args.precision, defend=("sd",))
        weights = f"bundle {bundle.name}"
    else:
        bundle = full_size_bundle(args.device, args.precision)
        weights = "RANDOM-weight SD 2.x VAE encoder"
    image = load_image(args.image_size)
    target = np.asarray(Image.fromarray(painting(512, seed=11)).resize(
        (image.shape[1], image.shape[0]), Image.BICUBIC))
    steps = preprocessings(args.work_size)
    print(f"{weights} ({bundle.precision}, {bundle.device}): engineering figures, not "
          "protection claims")
    print(f"image {image.shape[1]}x{image.shape[0]}, work size {args.work_size}, "
          f"{args.steps} steps, intensity {args.intensity}, {torch.get_num_threads()} threads")
    versions = []
    for robust in (True, False):
        settings = CloakSettings(intensity=args.intensity, quality=args.steps, defend="sd",
                                 work_size=args.work_size, resize_robust=robust)
        started = time.perf_counter()
        goal = whole_view(image.shape[:2], args.work_size).apply(image_tensor(target))
        versions.append(cloak_toward(image, bundle, goal, settings))
        print(f"  cloak {'as built (resize-robust)' if robust else 'without resize-robustness'}"
              f": {time.perf_counter() - started:.0f} s, "
              f"L_inf {np.abs(versions[-1].astype(int) - image).max()}/255", flush=True)
    rows = shifts(bundle, image, versions, target, steps)
    print(f"{'preprocessing':<26} {'as built: shift':>16} {'kept':>6} "
          f"{'no robustness: shift':>21} {'kept':>6}")
    (built_ref, plain_ref) = rows[0]
    for step, (built, plain) in zip(steps, rows, strict=True):
        print(f"{step.name:<26} {built:>16.3f} {built / built_ref:>6.0%} "
              f"{plain:>21.3f} {plain / plain_ref:>6.0%}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
