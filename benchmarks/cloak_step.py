"""Cost of one cloak step with the full-size Stable Diffusion 2.x VAE encoder.

Random weights: the time of a step does not depend on the weights' values. Prints, per size
and precision, the median time of a bare encoder forward+backward and of one whole cloak
step (encoder + LPIPS + resizes + Adam), measured alternately in the same run, and their
ratio: the overhead of everything the cloak adds to the encoder.

    python benchmarks/cloak_step.py --sizes 512 1024 --precisions fp32 bf16 --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from diffusers import AutoencoderKL

from glaze.engine.cloak import CloakOptimizer
from glaze.engine.demo import demo_pipeline
from glaze.engine.models import (
    DEMO_GENERATION,
    ModelBundle,
    perceptual_model,
    pick_device,
    pick_precision,
)
from glaze.engine.settings import CloakSettings


def sd2_vae() -> AutoencoderKL:
    """Stable Diffusion 2.x's VAE architecture (34M-parameter encoder), random weights."""
    return AutoencoderKL(
        block_out_channels=(128, 256, 512, 512), layers_per_block=2, latent_channels=4,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        norm_num_groups=32, sample_size=768)


def full_size_bundle(device: str | None, precision: str) -> ModelBundle:
    pipeline = demo_pipeline()
    pipeline.register_modules(vae=sd2_vae())
    dev = pick_device(device)
    return ModelBundle(
        name="sd2-vae-random", pipeline=pipeline, perceptual=perceptual_model(True),
        device=dev, precision=pick_precision(dev, precision), generation=DEMO_GENERATION)


def timed(function) -> float:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    function()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start


def measure(bundle: ModelBundle, size: int, repeats: int) -> tuple[float, float]:
    generator = torch.Generator().manual_seed(0)
    image = torch.rand(1, 3, size, size, generator=generator).to(bundle.device)
    target = torch.rand(1, 3, size, size, generator=generator).to(bundle.device)
    coverage = torch.ones(1, 1, size, size, device=bundle.device)
    settings = CloakSettings(work_size=size, quality=repeats + 1, resize_robust=False)
    optimizer = CloakOptimizer(bundle, image, coverage, target, settings)
    probe = image.clone().requires_grad_(True)

    def bare() -> None:
        bundle.encode(probe).square().mean().backward()

    bare(), optimizer.step()  # warm-up
    encoder, step = [], []
    for _ in range(repeats):  # alternate, so both see the same machine state
        encoder.append(timed(bare))
        step.append(timed(optimizer.step))
    return statistics.median(encoder), statistics.median(step)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024])
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device")
    args = parser.parse_args()
    device = pick_device(args.device)
    name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    print(f"device {name}, torch {torch.__version__}, {torch.get_num_threads()} CPU threads, "
          f"median of {args.repeats}")
    print(f"{'size':>6} {'precision':>9} {'encoder f+b (s)':>16} {'cloak step (s)':>15} "
          f"{'ratio':>6}")
    for precision in args.precisions:
        bundle = full_size_bundle(args.device, precision)
        for size in args.sizes:
            encoder, step = measure(bundle, size, args.repeats)
            print(f"{size:>6} {precision:>9} {encoder:>16.3f} {step:>15.3f} "
                  f"{step / encoder:>6.2f}", flush=True)


if __name__ == "__main__":
    main()
