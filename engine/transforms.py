"""What happens to a posted picture before a mimic trains on it, declared once.

Every platform re-encodes an upload as JPEG (quality about 70-85), often resized first, and
a mimic's training script then resizes and crops it (the views, engine/geometry.py). A
cloak that this erases protects nothing. So the cloak's loss is an expectation over these
transformations (EOT): at each step one is drawn, with the weights in
`CloakSettings.transforms`, and applied, differentiably, to the view the encoders see:

- `none`: the view as it is;
- `jpeg`: JPEG at a quality drawn from JPEG_QUALITIES (kornia's differentiable codec);
- `resize_jpeg`: JPEG at a scale drawn from UPLOAD_SCALES times the view's, then resized
  back: a platform's resize and re-encoding of a file larger than the training size;
- `noise`: Gaussian noise of a sigma drawn up to NOISE_SIGMA;
- `blur`: a slight Gaussian blur of a sigma drawn from BLUR_SIGMAS.

The report's "after a typical upload" shift is measured on a real JPEG (Pillow) of the
output at geometry.upload_view and UPLOAD_QUALITY, not on the differentiable stand-in.
torch and kornia load on first use, so that the settings can name transforms without
importing them.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

JPEG_QUALITIES = (60, 95)
UPLOAD_SCALES = (1.0, 2.0)
NOISE_SIGMA = 0.05
BLUR_SIGMAS = (0.3, 1.0)
# The default draw: a fifth of the steps see the view as it is, most an upload's
# re-encoding, some noise. Blur is left out: at a tenth of the steps it lowered every shift
# measured, after JPEG too (benchmarks/cloak_survival.py, two seeds).
DEFAULT_TRANSFORMS = (("none", 0.2), ("jpeg", 0.45), ("resize_jpeg", 0.25), ("noise", 0.1))
# A typical upload: its geometry is geometry.upload_view (long side 1024 px); it is stored
# as JPEG at this quality.
UPLOAD_QUALITY = 75


def _uniform(generator: torch.Generator, bounds: tuple[float, float]) -> float:
    import torch

    low, high = bounds
    return low + (high - low) * float(torch.rand((), generator=generator))


def _jpeg(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    import kornia
    import torch

    quality = torch.tensor([_uniform(generator, JPEG_QUALITIES)], device=images.device)
    return kornia.enhance.jpeg_codec_differentiable(images.clamp(0, 1), quality)


def _resize_jpeg(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    from .geometry import resize

    size = tuple(images.shape[-2:])
    scale = _uniform(generator, UPLOAD_SCALES)
    larger = resize(images, tuple(max(8, round(side * scale)) for side in size))
    return resize(_jpeg(larger, generator), size)


def _noise(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    import torch

    sigma = _uniform(generator, (0.0, NOISE_SIGMA))
    noise = torch.randn(images.shape, generator=generator).to(images.device, images.dtype)
    return images + sigma * noise


def _blur(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    import kornia

    sigma = _uniform(generator, BLUR_SIGMAS)
    kernel = 2 * int(np.ceil(2 * sigma)) + 1
    return kornia.filters.gaussian_blur2d(images, (kernel, kernel), (sigma, sigma))


Transform = Callable[["torch.Tensor", "torch.Generator"], "torch.Tensor"]
TRANSFORMS: dict[str, Transform] = {"none": lambda images, generator: images, "jpeg": _jpeg,
                                    "resize_jpeg": _resize_jpeg, "noise": _noise,
                                    "blur": _blur}


def check_transforms(weights: Sequence[tuple[str, float]]) -> None:
    """Raise ValueError for unknown names or weights that are not a distribution's."""
    for name, weight in weights:
        if name not in TRANSFORMS:
            raise ValueError(f"unknown transform {name!r}: choose among "
                             f"{', '.join(TRANSFORMS)}")
        if not weight >= 0:
            raise ValueError(f"transform {name!r} has a negative weight {weight}")
    if weights and sum(weight for _, weight in weights) <= 0:
        raise ValueError("the transforms' weights add up to nothing")


class TransformDraw:
    """Draws one transform per step, with its parameters, from a seeded generator: the same
    seed gives the same sequence. No weights: every step sees the view as it is."""

    def __init__(self, weights: Sequence[tuple[str, float]], seed: int) -> None:
        import torch

        check_transforms(weights)
        self.names = [name for name, _ in weights] or ["none"]
        self.weights = torch.tensor([weight for _, weight in weights] or [1.0],
                                    dtype=torch.float64)
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, images: torch.Tensor) -> tuple[str, torch.Tensor]:
        """(the transform's name, `images` through it)."""
        import torch

        index = int(torch.multinomial(self.weights, 1, generator=self.generator))
        name = self.names[index]
        return name, TRANSFORMS[name](images, self.generator)


def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    """Re-encode 8-bit RGB(A) pixels as a JPEG at `quality` and decode them again (Pillow:
    what platforms and training scripts use)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image[..., :3])).save(buffer, format="JPEG",
                                                               quality=int(quality))
    with Image.open(buffer) as decoded:
        return np.array(decoded.convert("RGB"))


def uploaded(images: torch.Tensor) -> torch.Tensor:
    """A 1 x 3 x h x w view in [0, 1] as a typical upload stores it: 8-bit, real JPEG."""
    from .pixels import image_array, image_tensor

    stored = jpeg(image_array(images), UPLOAD_QUALITY)
    return image_tensor(stored).to(images.device)
