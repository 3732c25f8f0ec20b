"""Cost of one cloak step with full-size feature extractors: one encoder, three, five.

The extractors are the full-size architectures of the SD (kl-f8, 4 channels), SDXL (the same
layout, its own scaling), FLUX.1 (16 channels, no quant convs), FLUX.2 (the same layout,
32 channels, a BatchNorm over the patchified latent) and Qwen-Image (causal 3-D
convolutions, base width 96, 16 channels) VAE encoders, with random weights: the time of a
step does not depend on the weights' values. Prints, per size and precision, the median
time of a bare SD encoder forward+backward, of one whole cloak step (encoders + LPIPS +
resizes + Adam) defending against SD alone, against the three families of before 2026 (SD,
SDXL, FLUX.1) and against all five, every family's encoder at every step (`every_family`,
as the cloak before goals ran them; the default runs one a step), measured alternately in
the same run, and the ratios.

With `--memory`, it also measures what each family's encoder forward+backward holds at its
peak over what was held before (the weights, torch's kernels), with and without gradient
checkpointing, and its time, each in a process of its own (CPU: the resident high-water
mark; CUDA: torch's allocator), and the time of a forward pass alone. The activations grow
with the view's pixels; the cloak checkpoints a view where they would take more than half
the free memory (ModelBundle.needs_checkpointing, from each extractor's bytes a pixel).

With `--compile`, it times each family's encoder forward+backward on each `--memory` view
plain and through torch.compile (its encoder network compiled, default mode): the first
compiled call, compilation included, and the median of the next `--repeats`, beside the
plain median.

    python benchmarks/cloak_step.py --sizes 512 --precisions bf16 --repeats 3
    python benchmarks/cloak_step.py --sizes --memory 512x512 720x1024   # a few minutes
    python benchmarks/cloak_step.py --sizes --memory 720x1024 --families qwen flux2
    python benchmarks/cloak_step.py --sizes --memory 720x1024 --families sd taef2
    python benchmarks/cloak_step.py --sizes --compile --memory 512x512 720x1024 --families taef2
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from diffusers import AutoencoderKL, AutoencoderKLFlux2, AutoencoderKLQwenImage
from large_image import MIB, peak_bytes, restart_peak  # this folder's

from glaze.engine.cloak import CloakOptimizer
from glaze.engine.demo import demo_pipeline
from glaze.engine.fullres import Seen
from glaze.engine.models import (
    DEMO_GENERATION,
    ModelBundle,
    extractor_part,
    perceptual_model,
    pick_device,
    pick_precision,
)
from glaze.engine.settings import CloakSettings
from glaze.engine.taef2 import find_weights, measurement_bundle

# The extractors' full-size architectures: SD's kl-f8 VAE (34M-parameter encoder), which
# SDXL's shares with its own scaling, FLUX.1's with 16 latent channels and FLUX.2's with
# 32 (diffusers' defaults for its class); Qwen-Image's 3-D VAE (its class's defaults).
KL_LAYOUT = dict(block_out_channels=(128, 256, 512, 512), layers_per_block=2,
                 down_block_types=("DownEncoderBlock2D",) * 4,
                 up_block_types=("UpDecoderBlock2D",) * 4, norm_num_groups=32, sample_size=768)
FULL_SIZE = {
    "sd": lambda: AutoencoderKL(**KL_LAYOUT, latent_channels=4, scaling_factor=0.18215),
    "sdxl": lambda: AutoencoderKL(**KL_LAYOUT, latent_channels=4, scaling_factor=0.13025),
    "flux": lambda: AutoencoderKL(**KL_LAYOUT, latent_channels=16, use_quant_conv=False,
                                  use_post_quant_conv=False, scaling_factor=0.3611,
                                  shift_factor=0.1159),
    "flux2": lambda: AutoencoderKLFlux2(),
    "qwen": lambda: AutoencoderKLQwenImage(),
}
BEFORE_2026 = ("sd", "sdxl", "flux")  # the families defended before FLUX.2 and Qwen-Image
TAEF2 = "taef2"  # --memory's name for the trained TAEF2 (engine/taef2.py), not a family
# TAEF2's weights, in shared/weights beside the repository (the benchmarks' one place).
WEIGHTS = find_weights(Path(__file__).resolve().parent.parent)


def full_size_bundle(device: str | None, precision: str,
                     extractors: tuple[str, ...] = ("sd",)) -> ModelBundle:
    """The demo's Omega with full-size random extractors (decoders dropped, as loaded ones)."""
    pipeline = demo_pipeline()
    pipeline.register_modules(vae=FULL_SIZE["sd"]())
    found = {"sd": extractor_part("sd", pipeline.vae, "random")}
    for name in extractors:
        if name != "sd":
            model = FULL_SIZE[name]()
            model.decoder = model.post_quant_conv = None
            found[name] = extractor_part(name, model, "random")
    dev = pick_device(device)
    return ModelBundle(
        name="full-size-random", pipeline=pipeline, perceptual=perceptual_model(True),
        device=dev, precision=pick_precision(dev, precision),
        extractors={name: found[name] for name in extractors}, generation=DEMO_GENERATION)


def machine(device: torch.device) -> str:
    """What ran the figures: the GPU's or the CPU's name, torch's version and threads (the
    development machines differ: one without bf16 instructions runs the encoders in fp32,
    about 3.5 times slower; docs/engine.md)."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        cpuinfo = Path("/proc/cpuinfo")
        lines = cpuinfo.read_text().splitlines() if cpuinfo.exists() else []
        name = next((line.split(":", 1)[1].strip() for line in lines
                     if line.startswith("model name")), platform.processor() or "CPU")
    return (f"device {name}, torch {torch.__version__}, {torch.get_num_threads()} CPU "
            "threads")


def timed(function) -> float:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    function()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start


def measure(bundle: ModelBundle, size: int, repeats: int,
            defends: tuple[str, ...]) -> tuple[float, list[float]]:
    """Median seconds of a bare SD encoder forward+backward and of one cloak step for each
    `defends` choice, measured alternately."""
    generator = torch.Generator().manual_seed(0)
    image = torch.rand(1, 3, size, size, generator=generator).to(bundle.device)
    target = torch.rand(1, 3, size, size, generator=generator).to(bundle.device)
    coverage = torch.ones(1, 1, size, size, device=bundle.device)
    seen = Seen(image, coverage, (size, size))
    optimizers = [CloakOptimizer(bundle, seen, target, CloakSettings(
        work_size=size, quality=repeats + 1, resize_robust=False, defend=defend,
        every_family=True)) for defend in defends]
    probe = image.clone().requires_grad_(True)

    def bare() -> None:
        bundle.encode(probe).square().mean().backward()

    bare()  # warm-up
    for optimizer in optimizers:
        optimizer.step()
    encoder, steps = [], [[] for _ in defends]
    for _ in range(repeats):  # alternate, so that all see the same machine state
        encoder.append(timed(bare))
        for times, optimizer in zip(steps, optimizers, strict=True):
            times.append(timed(optimizer.step))
    return statistics.median(encoder), [statistics.median(times) for times in steps]


def step_table(sizes: list[int], precisions: list[str], repeats: int,
               device: str | None) -> None:
    defends = ("sd", ",".join(BEFORE_2026), ",".join(FULL_SIZE))
    print(f"{'size':>6} {'precision':>9} {'encoder f+b (s)':>16} {'step, SD (s)':>13} "
          f"{'step, 3 (s)':>12} {'step, 5 (s)':>12} {'step/enc':>8} {'3/1':>6} {'5/3':>6}")
    for precision in precisions:
        bundle = full_size_bundle(device, precision, tuple(FULL_SIZE))
        for size in sizes:
            encoder, (one, three, five) = measure(bundle, size, repeats, defends)
            print(f"{size:>6} {precision:>9} {encoder:>16.3f} {one:>13.3f} {three:>12.3f} "
                  f"{five:>12.3f} {one / encoder:>8.2f} {three / one:>6.2f} "
                  f"{five / three:>6.2f}", flush=True)


def view_shape(text: str) -> tuple[int, int]:
    height, width = text.split("x")
    return int(height), int(width)


def family_bundle(device: str | None, precision: str, family: str) -> tuple[ModelBundle, str]:
    """A bundle with `family`'s encoder (TAEF2's: the trained one), and its DEFEND name."""
    if family == TAEF2:
        return measurement_bundle(WEIGHTS, device, precision), "flux2"
    return full_size_bundle(device, precision, (family,)), family


def peak(device: str | None, precision: str, view: tuple[int, int], checkpointed: bool,
         family: str = "sd") -> dict[str, float]:
    """One `family` encoder forward+backward on a `view` (h, w) image, in this process: MiB
    held at the peak over what was held before it, and seconds; and the seconds of a
    forward pass alone (no gradient), what a check or a target costs."""
    bundle, name = family_bundle(device, precision, family)
    cuda = bundle.device.type == "cuda"

    def forward_backward(image: torch.Tensor) -> None:
        bundle.encode(image.requires_grad_(True), name, checkpointed).square().mean(
        ).backward()

    forward_backward(torch.rand(1, 3, 64, 64, device=bundle.device))  # kernels, small
    image = torch.rand(1, 3, *view, device=bundle.device)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = restart_peak()
    seconds = timed(lambda: forward_backward(image))
    top = torch.cuda.max_memory_allocated() if cuda else peak_bytes()
    with torch.no_grad():
        forward = timed(lambda: bundle.encode(image.detach(), name))
    return {"peak_mib": (top - base) / MIB, "seconds": seconds, "forward": forward}


def memory_table(views: list[str], precisions: list[str], device: str | None,
                 families: list[str]) -> None:
    print("\nEncoder forward+backward, peak over what was held before it; one each")
    print(f"{'family':>7} {'view':>10} {'precision':>9} {'plain MiB':>10} {'ckpt MiB':>9} "
          f"{'plain s':>8} {'ckpt s':>7} {'fwd s':>6}")
    for family in families:
        for precision in precisions:
            for view in views:
                memory_row(family, view, precision, device)


def memory_row(family: str, view: str, precision: str, device: str | None) -> None:
    rows = []
    for checkpointed in (False, True):
        child = subprocess.run(
            [sys.executable, __file__, "--peak-of", view, "--precisions", precision,
             "--families", family, *(["--device", device] if device else []),
             *(["--checkpointed"] if checkpointed else [])],
            capture_output=True, text=True)
        if child.returncode:
            sys.exit(f"{family} {view}: {child.stderr.strip().splitlines()[-1]}")
        rows.append(json.loads(child.stdout.strip().splitlines()[-1]))
    plain, checkpointed_row = rows
    print(f"{family:>7} {view:>10} {precision:>9} {plain['peak_mib']:>10.0f} "
          f"{checkpointed_row['peak_mib']:>9.0f} {plain['seconds']:>8.1f} "
          f"{checkpointed_row['seconds']:>7.1f} {plain['forward']:>6.1f}", flush=True)


def compile_table(views: list[str], precision: str, device: str | None,
                  families: list[str], repeats: int) -> None:
    print(f"\nEncoder forward+backward, plain and through torch.compile; median of {repeats}")
    print(f"{'family':>7} {'view':>10} {'plain s':>8} {'first compiled s':>17} "
          f"{'compiled s':>11} {'ratio':>6}")
    for family in families:
        for view in views:  # a bundle each: compiling changes its encoder for good
            bundle, name = family_bundle(device, precision, family)
            plain, first, compiled = compiled_times(bundle, name, view_shape(view), repeats)
            print(f"{family:>7} {view:>10} {plain:>8.2f} {first:>17.1f} {compiled:>11.2f} "
                  f"{compiled / plain:>6.2f}", flush=True)


def compiled_times(bundle: ModelBundle, name: str, view: tuple[int, int],
                   repeats: int) -> tuple[float, float, float]:
    """Seconds of `name`'s encoder forward+backward on a `view` image: the plain median,
    the first call with its encoder network compiled, and the compiled median. It leaves
    `bundle`'s encoder compiled, in place."""
    image = torch.rand(1, 3, *view, device=bundle.device)
    model = bundle.extractor(name).model
    # A VAE's encoder network, or TAEF2's whole model (which is its encoder).
    network = getattr(model, "encoder", model)

    def forward_backward() -> None:
        bundle.encode(image.clone().requires_grad_(True), name).square().mean().backward()

    forward_backward()  # warm-up
    plain = statistics.median(timed(forward_backward) for _ in range(repeats))
    network.compile()
    first = timed(forward_backward)
    compiled = statistics.median(timed(forward_backward) for _ in range(repeats))
    torch._dynamo.reset()
    return plain, first, compiled


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[512])
    parser.add_argument("--precisions", nargs="+", default=["bf16"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device")
    parser.add_argument("--memory", nargs="*", metavar="HxW", default=[],
                        help="views whose peak memory to measure, plain and checkpointed")
    parser.add_argument("--families", nargs="+", default=list(FULL_SIZE),
                        choices=[*FULL_SIZE, TAEF2],
                        help="the encoders whose memory to measure (taef2: the trained "
                        "TAEF2 in ../shared/weights)")
    parser.add_argument("--compile", action="store_true",
                        help="time the --memory views' encoder passes through torch.compile "
                        "instead of their memory")
    parser.add_argument("--peak-of", help=argparse.SUPPRESS)  # a child's view
    parser.add_argument("--checkpointed", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.peak_of:
        print(json.dumps(peak(args.device, args.precisions[0], view_shape(args.peak_of),
                              args.checkpointed, args.families[0])))
        return
    print(f"{machine(pick_device(args.device))}, median of {args.repeats}")
    if args.sizes:
        step_table(args.sizes, args.precisions, args.repeats, args.device)
    if args.memory and args.compile:
        compile_table(args.memory, args.precisions[0], args.device, args.families,
                      args.repeats)
    elif args.memory:
        memory_table(args.memory, args.precisions, args.device, args.families)


if __name__ == "__main__":
    main()
