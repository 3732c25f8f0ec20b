"""The full-resolution image, handled in bounded memory.

Artists paint at up to 8192 px a side: one such RGBA layer is 256 MiB of 8-bit samples and
1 GiB as float32. The optimizer never works at that size (its views are a few working sizes
at most), so what does (compositing over grey, reducing to the views, carrying delta back,
merging, measuring) runs over strips of rows of at most STRIP_SAMPLES float samples, and
the whole image is only ever held in its own sample type.

Reduction. Before the views' antialiased resize, the image over grey is box-averaged over
`factor` x `factor` blocks, strip by strip (a box filter is itself an antialiasing
reduction); the factor leaves the reduced image at least twice each view's size, so the
views' own resize still does the final filtering.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from . import pixels

BACKGROUND = 0.5  # grey that transparent areas are composited over
STRIP_SAMPLES = 1 << 22  # float samples per strip (16 MiB as float32)

DeltaRows = Callable[[slice], np.ndarray]  # full-resolution delta (rows x W x 3) by rows


def row_strips(height: int, width: int, multiple: int = 1) -> Iterator[slice]:
    """Slices of rows covering `height`, each about STRIP_SAMPLES RGBA samples wide and
    a multiple of `multiple` rows (but the last)."""
    rows = max(1, STRIP_SAMPLES // (width * 4) // multiple) * multiple
    for top in range(0, height, rows):
        yield slice(top, min(top + rows, height))


@dataclass(frozen=True)
class Seen:
    """An image as the optimizer sees it: over grey, with its alpha coverage (1 x 3|1 x h x
    w tensors), box-reduced by `factor` from its full-resolution `shape` (H, W)."""

    image: torch.Tensor
    coverage: torch.Tensor
    shape: tuple[int, int]
    factor: int = 1

    def colours(self) -> torch.Tensor:
        """The picture's own colours, not composited over grey (grey where nothing is
        covered): what a painter sees of the layer itself."""
        covered = self.coverage.clamp_min(1e-6)
        own = (self.image - BACKGROUND * (1 - self.coverage)) / covered
        return torch.where(self.coverage > 0, own, self.image).clamp(0, 1)


def reduction(shape: tuple[int, int], sizes: list[tuple[int, int]]) -> int:
    """The largest box factor that leaves `shape` at least twice each of `sizes` (h, w)."""
    return max(1, min(min(shape[0] // (2 * h), shape[1] // (2 * w)) for h, w in sizes))


def seen(image: np.ndarray, device: torch.device, factor: int = 1) -> Seen:
    """`image` (H x W x 3|4, any supported sample type) over grey, box-reduced by `factor`."""
    pixels.check_pixels(image)
    height, width = image.shape[:2]
    # The results are allocated first and filled in place, so that no small long-lived
    # block lands above each strip's temporaries and the allocator reuses their memory.
    reduced = (-(-height // factor), -(-width // factor))
    over = torch.empty((1, 3, *reduced))
    coverage = torch.empty((1, 1, *reduced))
    for rows in row_strips(height, width, factor):
        rgb, alpha = pixels.to_unit(image[rows])
        rgb = torch.from_numpy(np.clip(rgb, 0, 1, out=rgb)).permute(2, 0, 1)[None]
        alpha = torch.from_numpy(alpha)[None, None]
        strip = rgb.mul_(alpha).add_(BACKGROUND * (1 - alpha))
        # Partial blocks at the edges are averaged over what they hold.
        into = slice(rows.start // factor, -(-rows.stop // factor))
        over[..., into, :] = F.avg_pool2d(strip, factor, ceil_mode=True)
        coverage[..., into, :] = F.avg_pool2d(alpha, factor, ceil_mode=True)
    return Seen(over.to(device), coverage.to(device), (height, width), factor)


class FullDelta:
    """delta (1 x 3 x h x w) carried to full resolution (H, W) by bicubic upsampling, as
    F.interpolate does it, a strip of rows at a time, within +-`linf` (a DeltaRows)."""

    def __init__(self, delta: torch.Tensor, shape: tuple[int, int], linf: float) -> None:
        self.delta, self.shape, self.linf = delta.detach().float().cpu(), shape, linf
        height = self.delta.shape[-2]
        # Bicubic upsampling is separable and works along the width first: each output row
        # is a weighted sum of a few width-upsampled rows of delta. The weights are the
        # upsampling of the identity along the height (bicubic leaves an axis at its own
        # size exactly as it is): an H x h matrix, a few entries a row.
        identity = torch.eye(height)[None, None]
        self.weights = F.interpolate(identity, size=(shape[0], height), mode="bicubic",
                                     align_corners=False)[0, 0]

    def __call__(self, rows: slice) -> np.ndarray:
        weights = self.weights[rows]
        used = weights.any(dim=0).nonzero()
        low, high = int(used[0]), int(used[-1]) + 1
        wide = F.interpolate(self.delta[..., low:high, :], size=(high - low, self.shape[1]),
                             mode="bicubic", align_corners=False)[0]
        full = torch.einsum("yr,crw->ywc", weights[:, low:high], wide)
        return full.clamp_(-self.linf, self.linf).numpy()


def merge(source: np.ndarray, delta_rows: DeltaRows) -> np.ndarray:
    """`source` with the RGB perturbation `delta_rows` ([0, 1] units) added where alpha > 0.

    The result has the source's dtype and channel count; alpha and every sample the delta
    leaves at zero keep their exact source values.
    """
    pixels.check_pixels(source)
    scale = pixels.sample_scale(source.dtype)
    out = source.copy()
    for rows in row_strips(*source.shape[:2]):
        strip = source[rows]
        rgb, coverage = pixels.to_unit(strip)
        delta = np.where(coverage[..., None] > 0, delta_rows(rows), np.float32(0))
        moved = rgb + delta
        if source.dtype.kind == "u":
            moved = np.rint(np.clip(moved, 0.0, 1.0) * np.float32(scale))
        # Float hosts may hold values outside [0, 1] (HDR): only the perturbation is added.
        out[rows, :, :3] = np.where(delta != 0, moved.astype(source.dtype), strip[..., :3])
    return out


def pixel_change(source: np.ndarray, changed: np.ndarray) -> dict:
    """How far `changed` (the source's height and width) is from `source`: `linf`, the
    largest change of any RGB sample, and `psnr`, dB over covered pixels (None if none
    changed)."""
    squares, count, linf = 0.0, 0, 0.0
    for rows in row_strips(*source.shape[:2]):
        before, coverage = pixels.to_unit(source[rows])
        after, _ = pixels.to_unit(changed[rows])
        change = after - before
        linf = max(linf, float(np.abs(change).max()))
        covered = change[coverage > 0]
        squares += float(np.square(covered, dtype=np.float64).sum())
        count += covered.size
    mse = squares / count if count else 0.0
    return {"psnr": 10 * math.log10(1.0 / mse) if mse > 0 else None, "linf": linf}
