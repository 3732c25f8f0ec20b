"""How visible the cloak is where a painter looks, on a painting and on flat colour.

Engineering figures on the trained TAEF2 extractor (engine/taef2.py; weights in
../shared/weights), not protection claims. For the sample painting and a cel-shaded
flat-colour test card with line art (engine/evaluation/synthetic.py), each resized to
1024 px, it cloaks toward a fixed synthetic target and prints, side by side, for the cloak
without the perceptual bound, with it (the default) and with it at the `high` intensity (and
with --ablation, for the JND cap alone and for the cap with flat regions left unchanged):

- the share of pixels changed beyond their just-noticeable difference (engine/visibility.py:
  luminance adaptation and texture masking, Yang et al. 2005), SSIM to the original over
  flat regions, the change's local deviation there (new texture, grey levels) and PSNR;
- the feature shift on the working view and after a typical upload (1024 px, JPEG q75),
  the latter as a share of the unbounded cloak's, and the share of the working-view shift
  kept after JPEG q75 at 512 px;

and writes a PNG of 4x crops for the docs (the original; unbounded and bound, each beside
its change x8).

    python benchmarks/visibility.py                      # 100 steps; about 20 minutes
    python benchmarks/visibility.py --steps 24 --ablation --out /tmp/crops.png
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from cloak_survival import WEIGHTS, Preprocessing, load_image, long_side, shifts
from PIL import Image

from glaze.engine import cloak
from glaze.engine.cloak import cloak_toward
from glaze.engine.evaluation.synthetic import flat_card, painting
from glaze.engine.fullres import pixel_change
from glaze.engine.geometry import UPLOAD_LONG_SIDE, whole_view
from glaze.engine.pixels import image_tensor
from glaze.engine.settings import CloakSettings
from glaze.engine.taef2 import measurement_bundle
from glaze.engine.transforms import jpeg
from glaze.engine.visibility import visibility

MEASURED = [
    Preprocessing("working view", long_side(512)),
    Preprocessing("JPEG q75 @512", long_side(512), lambda a: jpeg(a, 75)),
    Preprocessing("typical upload", long_side(UPLOAD_LONG_SIDE), lambda a: jpeg(a, 75)),
]
CROP, ZOOM = 96, 4  # a CROP x CROP square of each image, shown at ZOOM x


class CapOnly(cloak.PerceptualBound):
    """The JND cap without the flat regions' smoothing."""

    def smooth(self, delta: torch.Tensor) -> torch.Tensor:
        return delta


class FlatUnchanged(cloak.PerceptualBound):
    """The JND cap, and no change at all on flat regions."""

    def smooth(self, delta: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(delta)


@dataclass(frozen=True)
class Variant:
    """A way to cloak, as CloakSettings fields over the defaults, with the bound's class."""

    name: str
    fields: dict
    bound: type[cloak.PerceptualBound] = cloak.PerceptualBound


VARIANTS = [Variant("unbounded", {"visibility_bound": False}),  # the cloak before the bound
            Variant("JND bound", {}),  # the default
            Variant("bound, high", {"intensity": "high"})]
# Where the bound's cost lies (--ablation).
ABLATION = [Variant("cap only", {}, CapOnly), Variant("flat unchanged", {}, FlatUnchanged)]


def crops(images: list[np.ndarray], top: int, left: int) -> np.ndarray:
    """A row of CROP x CROP crops at ZOOM x (nearest neighbour: every pixel visible)."""
    tiles = [Image.fromarray(image[top:top + CROP, left:left + CROP]).resize(
        (CROP * ZOOM, CROP * ZOOM), Image.Resampling.NEAREST) for image in images]
    return np.concatenate([np.asarray(tile) for tile in tiles], axis=1)


def amplified(original: np.ndarray, cloaked: np.ndarray, gain: float = 8.0) -> np.ndarray:
    """The change, mid-grey at zero, `gain` times larger."""
    change = cloaked.astype(np.float32) - original.astype(np.float32)
    return np.clip(127.5 + gain * change, 0, 255).astype(np.uint8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--weights", type=Path, default=WEIGHTS, help="TAEF2's folder")
    parser.add_argument("--out", type=Path, default=Path("visibility.png"),
                        help="the PNG of 4x crops")
    parser.add_argument("--precision", choices=("fp32", "bf16"))
    parser.add_argument("--ablation", action="store_true",
                        help="also the JND cap alone, and the cap with flat regions unchanged")
    args = parser.parse_args()
    torch.manual_seed(0)
    bundle = measurement_bundle(args.weights, precision=args.precision)
    images = {"sample painting": load_image(UPLOAD_LONG_SIDE),
              "flat-colour card": flat_card(UPLOAD_LONG_SIDE, 720)}
    print(f"TRAINED TAEF2 encoder (FLUX.2's latent space), {bundle.precision}; {args.steps} "
          "steps at the default preset; engineering figures, not protection claims")
    rows = []
    for label, image in images.items():
        target = np.asarray(Image.fromarray(painting(512, seed=11)).resize(
            (image.shape[1], image.shape[0]), Image.Resampling.BICUBIC))
        goal = whole_view(image.shape[:2], 512).apply(image_tensor(target))
        row = [image]
        print(f"\n{label} ({image.shape[1]} x {image.shape[0]})")
        print(f"{'variant':<16} {'over JND':>9} {'flat SSIM':>10} {'flat texture':>13} "
              f"{'PSNR':>6} {'working shift':>14} {'upload shift':>13} {'of unbounded':>13} "
              f"{'JPEG q75 kept':>14}")
        first = None
        for variant in VARIANTS + (ABLATION if args.ablation else []):
            settings = CloakSettings(quality=args.steps, defend="flux2", **variant.fields)
            cloak.PerceptualBound = variant.bound  # what CloakOptimizer builds
            cloaked = cloak_toward(image, bundle, goal, settings)
            seen = visibility(image_tensor(image), image_tensor(cloaked))
            working, after_jpeg, upload = (shift for (shift,) in shifts(
                bundle, "flux2", image, [cloaked], target, MEASURED))
            first = first if first is not None else upload
            print(f"{variant.name:<16} {seen.over_jnd:>9.1%} {seen.flat_ssim:>10.3f} "
                  f"{seen.flat_texture:>13.2f} {pixel_change(image, cloaked)['psnr']:>6.1f} "
                  f"{working:>14.3f} {upload:>13.3f} {upload / first:>13.0%} "
                  f"{after_jpeg / working:>14.0%}", flush=True)
            if variant in VARIANTS[:2]:
                row += [cloaked, amplified(image, cloaked)]
        top, left = image.shape[0] // 6, image.shape[1] // 3  # sky in both images
        rows.append(crops(row, top, left))
    Image.fromarray(np.concatenate(rows, axis=0)).save(args.out)
    print(f"\ncrops (original, then the unbounded cloak and the JND bound, each beside "
          f"its change x8): {args.out}")


if __name__ == "__main__":
    main()
