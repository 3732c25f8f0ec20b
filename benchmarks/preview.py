"""What a model sees: the preview sheet on the trained TAEF2 encoder and decoder.

Engineering figures, not protection claims (engine/taef2.py; weights in ../shared/weights):
TAEF2 approximates the FLUX.2 VAE, and its sheet is stamped as giving no protection. The
sample painting, resized to --size px, is cloaked (default settings, perceptual bound on)
toward the fixed synthetic target the other benchmarks use (a two-colour wash with round
strokes, engine/evaluation/synthetic.py); the sheet shows what TAEF2's decoder makes of the
original and the glazed picture after a typical upload (1024 px, JPEG q75) and of the target
at that size, and the script prints the after-upload shift (as the report takes it) and how
far each decoded picture is from the target's decode:

- in pixels (mean squared difference, 0-1 scale), and
- as the family sees them: the mean squared difference of the decoded pictures' latents.

With --decoder-cost it prints instead what one pass of SD's full-size decoder (random
weights: cost only) takes for a 1024 x 720 picture in bf16 on the CPU: seconds and the rise
of the process's peak memory.

    python benchmarks/preview.py                    # 100 steps at 512 px, a few minutes
    python benchmarks/preview.py --steps 24 --out /tmp/preview.png
    python benchmarks/preview.py --decoder-cost
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import numpy as np
import torch
from cloak_step import FULL_SIZE
from cloak_survival import WEIGHTS, load_image
from PIL import Image

from glaze.engine.cloak import cloak_toward, see
from glaze.engine.evaluation.synthetic import painting
from glaze.engine.extractors import KLExtractor
from glaze.engine.pixels import image_tensor
from glaze.engine.preview import posted_pictures, preview_posted, preview_sheet
from glaze.engine.settings import CloakSettings
from glaze.engine.taef2 import measurement_bundle

ROOT = Path(__file__).resolve().parent.parent
FAMILY = "flux2"


def distances(bundle, pictures: tuple[np.ndarray, ...]) -> dict[str, tuple[float, float]]:
    """For the original and the glazed picture's decodes: (pixels, latents) distance to
    the target's decode."""
    with torch.no_grad():
        latents = [bundle.encode(image_tensor(picture), FAMILY) for picture in pictures]
    pixels = [picture.astype(np.float64) / 255 for picture in pictures]
    return {name: (float(np.mean((pixels[index] - pixels[2]) ** 2)),
                   float(torch.mean((latents[index] - latents[2]) ** 2)))
            for index, name in enumerate(("original", "glazed"))}


def decoder_cost(passes: int = 2) -> None:
    phi = KLExtractor("sd", FULL_SIZE["sd"]().eval().requires_grad_(False), "random")
    latent = torch.randn(1, 4, 720 // 8, 1024 // 8)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    seconds = []
    for _ in range(passes):
        started = time.perf_counter()
        with torch.no_grad(), torch.autocast("cpu", torch.bfloat16):
            phi.decode(latent)
        seconds.append(time.perf_counter() - started)
    risen = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    print(f"SD's full-size decoder, 1024 x 720, bf16, CPU: {', '.join(f'{s:.1f}' for s in seconds)}"
          f" s a pass; peak memory rose {risen:.0f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--size", type=int, default=512, help="the painting's long side")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "preview-taef2.png")
    parser.add_argument("--decoder-cost", action="store_true")
    args = parser.parse_args()
    if args.decoder_cost:
        return decoder_cost()
    bundle = measurement_bundle(WEIGHTS, decoder=True, name=FAMILY)
    original = load_image(args.size)
    height, width = original.shape[:2]
    target = image_tensor(np.asarray(Image.fromarray(painting(512, seed=11)).resize(
        (width, height), Image.Resampling.LANCZOS)))
    settings = CloakSettings(quality=args.steps, work_size=args.size, defend=FAMILY)
    glazed = cloak_toward(original, bundle, target, settings)
    posted = posted_pictures(bundle, see(original, settings, bundle), glazed, target, settings)
    with torch.no_grad():
        latents = [bundle.encode(image_tensor(picture), FAMILY) for picture in posted]
    # as the report's after-upload shift: the share of the latent distance closed
    shift = 1 - float(torch.linalg.vector_norm(latents[1] - latents[2])
                      / torch.linalg.vector_norm(latents[0] - latents[2]))
    found = preview_posted(bundle, posted, [FAMILY], {FAMILY: shift})
    print(f"TAEF2 (measurement only), the sample painting at {width}x{height}, "
          f"{args.steps} steps, default settings; after a typical upload the latent moved "
          f"{shift:.0%} of its distance toward the target's; decoded:")
    print(f"{'':10} {'to the target, pixels':>22} {'as the family sees it':>22}")
    for name, (pixels, latents) in distances(bundle, found.rows[0].pictures).items():
        print(f"{name:10} {pixels:22.4f} {latents:22.4f}")
    preview_sheet(found).save(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
