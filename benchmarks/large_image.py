"""What a large file costs outside the optimizer: peak memory over the models' own, and time.

Artists paint at 6000-8000 px a side; the cloak's views are a few working sizes at most, so
everything done at full resolution (read, composite, reduce to the views, carry delta back,
merge, measure, write) should cost a small multiple of the image's own bytes and a small
part of the cloak's time. Each size runs in a process of its own, the way `glaze cloak`
takes a file in this process (read, cloak, measure as written, write):

- the demo bundle is loaded and a 1024 px image cloaked first (its views are those of
  any larger square), so that the models, their working memory at the working size and
  torch's kernels count as the models' own ("base");
- the peak resident size is then reset (Linux: /proc/self/clear_refs), one RGBA PNG of the
  size is cloaked, and "peak over base" is the high-water mark less the base;
- "outside" is the file's wall time less the optimizer's steps and the style transfer
  (with the demo bundle both are short; with real models only these grow).

    python benchmarks/large_image.py                        # 2048, 4096, 8192; a few minutes
    python benchmarks/large_image.py --sizes 8192 --steps 3 --work-size 64
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

MIB = 1 << 20


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def restart_peak() -> int:
    """Restart this process's resident high-water mark (Linux); the resident bytes now."""
    Path("/proc/self/clear_refs").write_text("5")
    return _status_kib("VmRSS") * 1024


def peak_bytes() -> int:
    """This process's resident high-water mark since `restart_peak`."""
    return _status_kib("VmHWM") * 1024


def painting_file(size: int, folder: Path) -> Path:
    """A size x size RGBA PNG that compresses like a painting: smooth colour fields with
    brush-scale texture, and a transparent margin."""
    from PIL import Image

    path = folder / f"painting-{size}.png"
    if path.exists():
        return path
    rng = np.random.default_rng(size)
    coarse = Image.fromarray(rng.integers(0, 256, (size // 64, size // 64, 3), np.uint8))
    fields = np.asarray(coarse.resize((size, size), Image.Resampling.BICUBIC))
    texture = rng.integers(-6, 7, (size, size, 1), np.int16)
    rgb = np.clip(fields.astype(np.int16) + texture, 0, 255).astype(np.uint8)
    alpha = np.full((size, size, 1), 255, np.uint8)
    alpha[: size // 16] = 0  # a transparent band, as a layer with empty canvas has
    Image.fromarray(np.concatenate([rgb, alpha], axis=2)).save(path, compress_level=1)
    return path


def one_size(path: Path, steps: int, work_size: int) -> dict:
    """Cloak `path` as `glaze cloak` does; figures as a dict (this process only)."""
    import torch

    import glaze.engine.cloak as cloak_module
    from glaze import batch
    from glaze.engine import CloakSettings, load_bundle
    from glaze.engine.imagefile import read_image, write_image

    torch.set_num_threads(1)  # as the demo bundle runs in the CLI
    bundle = load_bundle("demo")
    settings = CloakSettings(quality=steps, work_size=work_size)
    spent = {"optimizer": 0.0, "transfer": 0.0}

    def timed(name, function):
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                spent[name] += time.perf_counter() - start
        return wrapper

    cloak_module.CloakOptimizer.step = timed("optimizer", cloak_module.CloakOptimizer.step)
    cloak_module.transfer_style = timed("transfer", cloak_module.transfer_style)
    warm = np.random.default_rng(0).integers(0, 256, (1024, 1024, 4), np.uint8)
    cloak_module.cloak(warm, bundle, "warm-up", settings)
    spent.update(optimizer=0.0, transfer=0.0)
    base = restart_peak()
    phases = {}
    start = time.perf_counter()
    loaded = read_image(path)
    phases["read"] = time.perf_counter() - start
    result = cloak_module.cloak(loaded.pixels, bundle, "oil painting", settings)
    phases["cloak"] = time.perf_counter() - start - phases["read"]
    output = path.with_name(path.stem + ".glazed.png")
    report = batch.as_written(output, result.report.to_dict(), loaded.pixels, result.image)
    write_image(output, result.image, like=loaded, record={"report": report})
    wall = time.perf_counter() - start
    phases["write"] = wall - phases["read"] - phases["cloak"]
    output.unlink()
    return {"size": loaded.pixels.shape[0], "wall": wall, **phases, **spent,
            "outside": wall - spent["optimizer"] - spent["transfer"],
            "base_mib": base / MIB, "peak_over_mib": (peak_bytes() - base) / MIB,
            "image_mib": loaded.pixels.nbytes / MIB}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2048, 4096, 8192])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--work-size", type=int, default=512)
    parser.add_argument("--one", type=Path, help=argparse.SUPPRESS)  # a child's file
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one_size(args.one, args.steps, args.work_size)))
        return
    print(f"demo bundle, {args.steps} steps at work size {args.work_size}; RGBA PNG in and out")
    print(f"{'size':>6} {'image MiB':>9} {'peak over base MiB':>18} {'x image':>7} "
          f"{'outside s':>9} {'read':>6} {'cloak':>6} {'write':>6} {'optimizer':>9} "
          f"{'transfer':>8}")
    with tempfile.TemporaryDirectory() as folder:
        for size in args.sizes:
            path = painting_file(size, Path(folder))
            child = subprocess.run(
                [sys.executable, __file__, "--one", str(path), "--steps", str(args.steps),
                 "--work-size", str(args.work_size)], capture_output=True, text=True)
            if child.returncode:
                sys.exit(f"{size}: {child.stderr.strip().splitlines()[-1]}")
            row = json.loads(child.stdout.strip().splitlines()[-1])
            print(f"{size:>6} {row['image_mib']:>9.0f} {row['peak_over_mib']:>18.0f} "
                  f"{row['peak_over_mib'] / row['image_mib']:>7.1f} {row['outside']:>9.1f} "
                  f"{row['read']:>6.1f} {row['cloak']:>6.1f} {row['write']:>6.1f} "
                  f"{row['optimizer']:>9.1f} {row['transfer']:>8.1f}", flush=True)


if __name__ == "__main__":
    main()
