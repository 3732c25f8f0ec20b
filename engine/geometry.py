"""Image geometry, declared once: the sizes the engine accepts, and the views a mimic takes
of a picture (resized, cropped). The cloak optimizes through these views, the evaluation
trains on them and the benchmarks measure on them, so all three see the same pixels.

Sizes are plain tuples; only `resize` and `View.apply` touch tensors (kornia loads on first
use, so that file helpers can check sizes without importing torch).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

MAX_SIDE = 8192  # long side, pixels
MAX_ASPECT = 8.0
# The VAEs downsample by 8: a view's sides are multiples of it, or of the larger multiple
# the defended extractors ask (extractors.Extractor.size_multiple; FLUX.2 patchifies 2x2).
ENCODER_MULTIPLE = 8
# Short sides of the training views a robust cloak also optimizes through, in working
# sizes: 1x is the usual "resize, center crop"; 1.5x a random crop of a mimic that trains
# at a larger resolution than the working size.
CROP_SCALES = (1.0, 1.5)
# The long side of a typical upload, and what SDXL- and FLUX-era mimics train at: a robust
# cloak also optimizes this whole view. Whole, not in working-size tiles: the encoders'
# group norms and attention see the whole view at once, and tiles kept half the shift a
# resize to 1024 px leaves (benchmarks/cloak_survival.py).
UPLOAD_LONG_SIDE = 1024


def check_size(shape: tuple[int, int]) -> None:
    """Raise ValueError for images the cloak refuses to process."""
    height, width = shape
    if max(height, width) > MAX_SIDE:
        raise ValueError(f"image is {width}x{height}: the long side is limited to {MAX_SIDE} px")
    if max(height, width) / min(height, width) > MAX_ASPECT:
        raise ValueError(f"image is {width}x{height}: aspect ratios beyond "
                         f"{MAX_ASPECT:g}:1 are not supported")


def resize(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Differentiable resize, antialiased when shrinking (as image libraries do)."""
    if tuple(images.shape[-2:]) == tuple(size):
        return images
    import kornia

    return kornia.geometry.transform.resize(images, size, interpolation="bilinear",
                                            antialias=True, align_corners=False)


@dataclass(frozen=True)
class View:
    """One way a mimic may see the image: resized to `size` (h, w), then cropped to `box`."""

    size: tuple[int, int]
    box: tuple[int, int, int, int]  # top, left, height, width

    @property
    def pixels(self) -> int:
        """The pixels an encoder sees of this view."""
        return self.box[2] * self.box[3]

    def apply(self, images: torch.Tensor) -> torch.Tensor:
        top, left, height, width = self.box
        return resize(images, self.size)[..., top:top + height, left:left + width]


def fit(shape: tuple[int, int], long_side: int,
        multiple: int = ENCODER_MULTIPLE) -> tuple[int, int]:
    """(h, w) of `shape` scaled so its long side is `long_side`, rounded to `multiple`."""
    height, width = shape
    scale = long_side / max(height, width)
    return tuple(max(multiple, round(side * scale / multiple) * multiple)
                 for side in (height, width))


def whole_view(shape: tuple[int, int], long_side: int,
               multiple: int = ENCODER_MULTIPLE) -> View:
    """The whole image with its long side at `long_side` (rounded to `multiple`)."""
    size = fit(shape, long_side, multiple)
    return View(size, (0, 0, *size))


def short_side_size(shape: tuple[int, int], short_side: int) -> tuple[int, int]:
    """(h, w) with the short side at `short_side`, the long side truncated as torchvision's
    Resize(int) does: the resize of diffusers' training scripts."""
    height, width = shape
    if height <= width:
        return short_side, max(short_side, int(short_side * width / height))
    return max(short_side, int(short_side * height / width)), short_side


def center_crop_view(shape: tuple[int, int], size: int) -> View:
    """Short side resized to `size`, then the central square cropped (offsets rounded as
    torchvision's CenterCrop): what training scripts do to an image."""
    resized = short_side_size(shape, size)
    top, left = (round((side - size) / 2) for side in resized)
    return View(resized, (top, left, size, size))


def random_crop_view(shape: tuple[int, int], short_side: int, size: int,
                     rng: random.Random) -> View:
    """Short side resized to `short_side`, then a random `size` square (or less, where the
    image is smaller): a training script's random crop."""
    resized = short_side_size(shape, short_side)
    height, width = min(size, resized[0]), min(size, resized[1])
    top, left = rng.randrange(resized[0] - height + 1), rng.randrange(resized[1] - width + 1)
    return View(resized, (top, left, height, width))


def upload_view(shape: tuple[int, int], multiple: int = ENCODER_MULTIPLE) -> View:
    """A typical upload's view: the whole image, its long side at UPLOAD_LONG_SIDE (never
    enlarged)."""
    return whole_view(shape, min(UPLOAD_LONG_SIDE, max(shape)), multiple)


def mimic_views(shape: tuple[int, int], work_size: int, robust: bool,
                rng: random.Random, multiple: int = ENCODER_MULTIPLE) -> list[View]:
    """The views the cloak's loss is taken on: the whole view first; with `robust`, also
    the center crop, random crops at the CROP_SCALES and a typical upload's whole view;
    every side a multiple of `multiple`."""
    views = [whole_view(shape, work_size, multiple)]
    if not robust:
        return views
    crop = max(multiple, work_size - work_size % multiple)
    for scale in CROP_SCALES:
        short_side = round(work_size * scale)
        view = (center_crop_view(shape, crop) if scale == 1.0
                else random_crop_view(shape, short_side, crop, rng))
        views.append(view)
    views.append(upload_view(shape, multiple))
    return list(dict.fromkeys(views))  # in order, each once
