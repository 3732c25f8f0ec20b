"""Omega, the style-transfer model: Stable Diffusion img2img (and text-to-image)."""

from __future__ import annotations

import torch

from .models import ModelBundle
from .progress import Progress


def _step_callback(progress: Progress, total: int, message: str):
    def on_step_end(pipe, step: int, timestep, kwargs: dict) -> dict:
        progress.report((step + 1) / max(total, 1), message)
        progress.check()
        return kwargs
    return on_step_end


def _generator(seed: int) -> torch.Generator:
    # CPU generator: the same seed gives the same noise on every device.
    return torch.Generator("cpu").manual_seed(seed)


def transfer_style(bundle: ModelBundle, images: torch.Tensor, style: str, strength: float,
                   seed: int = 0, progress: Progress | None = None) -> torch.Tensor:
    """Omega(x, T): N x 3 x H x W images in [0, 1] repainted toward `style`, same size.

    H and W must be multiples of the VAE's downsampling factor (8 for Stable Diffusion).
    """
    progress = progress or Progress()
    settings = bundle.generation
    total = max(int(settings.steps * strength), 1)
    result = bundle.pipeline(
        prompt=[style] * images.shape[0], image=images.to(bundle.device), strength=strength,
        num_inference_steps=settings.steps, guidance_scale=settings.guidance,
        generator=_generator(seed), output_type="pt",
        callback_on_step_end=_step_callback(progress, total, "style transfer"),
    )
    return result.images.float().clamp(0, 1)


def generate(bundle: ModelBundle, style: str, count: int, size: int, seed: int = 0,
             progress: Progress | None = None) -> torch.Tensor:
    """`count` text-to-image samples of `style`, count x 3 x size x size in [0, 1]."""
    progress = progress or Progress()
    settings = bundle.generation
    result = bundle.text_to_image(
        prompt=style, num_images_per_prompt=count, height=size, width=size,
        num_inference_steps=settings.centroid_steps, guidance_scale=settings.guidance,
        generator=_generator(seed), output_type="pt",
        callback_on_step_end=_step_callback(progress, settings.centroid_steps, style),
    )
    return result.images.float().clamp(0, 1)
