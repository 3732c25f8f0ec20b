"""What the first profile's cheaper candidate centroids change in the target band.

A new profile generates images of every candidate style once (they are cached). This runs
the whole choice on the demo bundle three ways, side by side in one run, and prints each
recipe's UNet steps, time and 50-75th percentile band, and how much of the band it shares
with the former recipe (Jaccard overlap):

- before: 4 images x 30 DDIM steps a style (the former recipe);
- after: the current default GenerationSettings' recipe (fewer images, DPM-Solver++ steps);
- noise: the former recipe again with other generation seeds: the overlap that chance
  alone leaves, which the cheaper recipe is to be compared with.

Demo bundle: random tiny models at 64 px. It measures the selection's stability, not
protection.

    python benchmarks/target_centroids.py --styles 131
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from diffusers import StableDiffusionPipeline

from glaze.engine import target
from glaze.engine.evaluation.synthetic import painting
from glaze.engine.models import GenerationSettings, ModelBundle, demo_bundle
from glaze.options import candidate_styles

FORMER = dict(centroid_images=4, centroid_steps=30)


def former(bundle: ModelBundle) -> ModelBundle:
    """The bundle with the former recipe: 4 images at 30 steps of the pipeline's DDIM."""
    bundle.generation = replace(bundle.generation, **FORMER)
    pipe = StableDiffusionPipeline(**bundle.pipeline.components, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    bundle.__dict__["text_to_image"] = pipe  # the cached property's slot
    return bundle


def band(bundle: ModelBundle, styles: list[str], artworks: list, salt: int = 0):
    """(band, seconds) for one recipe, centroids computed from scratch."""
    seed_of = target._style_seed
    target._style_seed = lambda style: seed_of(style) + salt
    try:
        with tempfile.TemporaryDirectory() as folder:
            started = time.perf_counter()
            centroids = target.candidate_centroids(
                bundle, styles, target.CentroidCache(bundle, Path(folder)))
            seconds = time.perf_counter() - started
    finally:
        target._style_seed = seed_of
    return set(target.percentile_band(target.artist_centroid(bundle, artworks),
                                      centroids)), seconds


def jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--styles", type=int, default=131, help="candidates to use")
    parser.add_argument("--noise-runs", type=int, default=2,
                        help="former-recipe runs with other seeds")
    args = parser.parse_args()
    styles = candidate_styles()[:args.styles]
    artworks = [painting(64, seed) for seed in range(6)]
    current = GenerationSettings()
    before, before_s = band(former(demo_bundle()), styles, artworks)
    cheaper = demo_bundle()
    cheaper.generation = replace(cheaper.generation, centroid_images=current.centroid_images,
                                 centroid_steps=current.centroid_steps)
    after, after_s = band(cheaper, styles, artworks)
    print(f"{len(styles)} candidates; band of {len(before)} styles (former recipe)")
    print(f"{'recipe':<34} {'UNet steps':>10} {'seconds':>8} {'overlap':>8}")
    steps = len(styles) * FORMER["centroid_images"] * FORMER["centroid_steps"]
    print(f"{'before: 4 x 30 DDIM':<34} {steps:>10} {before_s:>8.1f} {1.0:>8.2f}")
    name = f"after: {current.centroid_images} x {current.centroid_steps} DPM-Solver++"
    print(f"{name:<34} {current.centroid_unet_steps(len(styles)):>10} "
          f"{after_s:>8.1f} {jaccard(before, after):>8.2f}")
    for salt in range(1, args.noise_runs + 1):
        noise, noise_s = band(former(demo_bundle()), styles, artworks, salt)
        print(f"{f'noise: 4 x 30 DDIM, seeds +{salt}':<34} {steps:>10} {noise_s:>8.1f} "
              f"{jaccard(before, noise):>8.2f}")


if __name__ == "__main__":
    main()
