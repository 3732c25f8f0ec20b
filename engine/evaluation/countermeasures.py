"""Countermeasures a mimic applies to the (cloaked) training set before fine-tuning.

Each takes and returns an H x W x 3 uint8 image, as the mimic's files hold them:
- jpeg: re-encode at a JPEG quality (Pillow);
- noise: add Gaussian noise of standard deviation sigma ([0, 1] units);
- resize: downscale by a factor and upscale back (antialiased, kornia);
- noisy_upscale: Gaussian noise, downscale to a quarter of the training size, then a
  diffusion x4 upscaler (Hönig et al. 2024); skipped when no upscaler weights are given;
- impress: IMPRESS purification, min ||x_p - D(E(x_p))||^2 + alpha * max(LPIPS(x_p, x) - bound, 0)
  with the bundle's VAE and LPIPS; a final blend toward x keeps LPIPS within the bound.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from diffusers import (
    AutoencoderKL,
    DDIMScheduler,
    DDPMScheduler,
    StableDiffusionUpscalePipeline,
    UNet2DConditionModel,
)
from PIL import Image
from transformers import CLIPTextConfig, CLIPTextModel

from ..demo import demo_tokenizer
from ..geometry import fit, resize, whole_view
from ..models import ModelBundle, ModelLoadError, pick_device
from ..pixels import image_array, image_tensor
from ..progress import Progress
from ..transforms import jpeg

KINDS = ("none", "jpeg", "noise", "resize", "noisy_upscale", "impress")
UPSCALE = 4
SKIPPED_NO_UPSCALER = "skipped: no upscaler weights given (--upscaler)"


class Skipped(Exception):
    """A countermeasure that cannot run here; the message says why."""


@dataclass(frozen=True)
class Countermeasure:
    """A countermeasure and its strength in its own unit (see `UNITS`)."""

    kind: str = "none"
    strength: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown countermeasure {self.kind!r}: choose {', '.join(KINDS)}")

    @property
    def name(self) -> str:
        return "none" if self.kind == "none" else f"{self.kind}-{self.strength:g}"


# What `strength` means for each kind (the plots' x axes).
UNITS = {"jpeg": "JPEG quality", "noise": "Gaussian sigma", "resize": "downscale factor",
         "noisy_upscale": "Gaussian sigma before upscaling", "impress": "LPIPS bound"}


def gaussian_noise(image: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    """Add N(0, sigma^2) noise ([0, 1] units), clip and quantize."""
    rng = np.random.default_rng(seed)
    noisy = image[..., :3] / 255.0 + rng.normal(0.0, sigma, image[..., :3].shape)
    return np.rint(np.clip(noisy, 0, 1) * 255).astype(np.uint8)


def resize_round_trip(image: np.ndarray, factor: float) -> np.ndarray:
    """Downscale by `factor` (< 1, antialiased) and upscale back to the original size."""
    x = image_tensor(image)
    size = tuple(int(s) for s in x.shape[-2:])
    small = (max(1, round(size[0] * factor)), max(1, round(size[1] * factor)))
    return image_array(resize(resize(x, small), size))


def demo_upscaler(seed: int = 0) -> StableDiffusionUpscalePipeline:
    """A tiny random x4 upscaler built in code (no download); its output means nothing."""
    tokenizer = demo_tokenizer()
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        text_encoder = CLIPTextModel(CLIPTextConfig(
            vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
            num_hidden_layers=1, num_attention_heads=4, max_position_embeddings=77,
            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id))
        vae = AutoencoderKL(  # 3 blocks: 4x, as the x4 upscaler's VAE
            block_out_channels=(16, 32, 32), layers_per_block=1, latent_channels=4,
            down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
            norm_num_groups=8, mid_block_add_attention=False, scaling_factor=0.08333)
        unet = UNet2DConditionModel(
            sample_size=16, in_channels=7, out_channels=4, layers_per_block=1,
            block_out_channels=(32, 64), norm_num_groups=8, cross_attention_dim=32,
            attention_head_dim=8, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), num_class_embeds=1000)
    pipe = StableDiffusionUpscalePipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
        low_res_scheduler=DDPMScheduler(), scheduler=DDIMScheduler(), max_noise_level=350)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def load_upscaler(source: str | None,
                  device: str | None = None) -> StableDiffusionUpscalePipeline | None:
    """The x4 upscaler from "demo", a folder or a hub id; None when no source is given."""
    if not source:
        return None
    if source == "demo":
        pipe = demo_upscaler()
    else:
        try:
            half = torch.float16 if pick_device(device).type == "cuda" else torch.float32
            pipe = StableDiffusionUpscalePipeline.from_pretrained(source, dtype=half)
        except Exception as error:
            raise ModelLoadError(f"could not load the upscaler {source!r}: {error}") from error
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(pick_device(device))


def noisy_upscale(image: np.ndarray, sigma: float,
                  upscaler: StableDiffusionUpscalePipeline | None, seed: int = 0,
                  steps: int = 20, work_size: int = 512) -> np.ndarray:
    """Gaussian noise, downscale to a quarter of the training size, diffusion x4 upscaling.

    The result's long side is about `work_size` (the mimic trains at that size anyway), so
    the upscaler's cost does not grow with the artwork's size.
    """
    if upscaler is None:
        raise Skipped(SKIPPED_NO_UPSCALER)
    small = fit(image.shape[:2], max(8, min(work_size, max(image.shape[:2])) // UPSCALE))
    low = image_array(resize(image_tensor(gaussian_noise(image, sigma, seed)), small))
    output = upscaler(prompt="", image=Image.fromarray(low), num_inference_steps=steps,
                      generator=torch.Generator("cpu").manual_seed(seed), output_type="pil")
    return np.asarray(output.images[0].convert("RGB"))


def reconstruct(bundle: ModelBundle, images: torch.Tensor) -> torch.Tensor:
    """D(E(x)) with the bundle's VAE, N x 3 x H x W in [0, 1] (differentiable)."""
    vae = bundle.pipeline.vae
    with bundle.compute():
        latent = vae.encode((images.to(bundle.device) * 2 - 1).to(vae.dtype)).latent_dist.mean
        decoded = vae.decode(latent).sample
    return (decoded.float() + 1) / 2


def impress(image: np.ndarray, bundle: ModelBundle, bound: float, steps: int = 100,
            alpha: float = 10.0, lr: float = 0.01, work_size: int = 512,
            progress: Progress | None = None) -> np.ndarray:
    """IMPRESS purification at the mimic's working size (its long side at most `work_size`)."""
    progress = progress or Progress()
    x = image_tensor(image).to(bundle.device)
    view = whole_view(tuple(x.shape[-2:]), min(work_size, max(x.shape[-2:])))
    x = view.apply(x)
    purified = x.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([purified], lr=lr)
    for step in range(steps):
        progress.check(step)
        consistency = (purified - reconstruct(bundle, purified)).square().mean()
        excess = torch.relu(bundle.perceptual_distance(purified, x).mean() - bound)
        loss = consistency + alpha * excess
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            purified.clamp_(0, 1)
        progress.report((step + 1) / steps, f"IMPRESS step {step + 1}/{steps}")
    return image_array(within_bound(bundle, purified.detach(), x, bound))


@torch.no_grad()
def within_bound(bundle: ModelBundle, purified: torch.Tensor, original: torch.Tensor,
                 bound: float, rounds: int = 12) -> torch.Tensor:
    """The furthest blend of `purified` toward `original` whose LPIPS stays within the bound."""
    if bundle.perceptual_distance(purified, original).item() <= bound:
        return purified
    low, high = 0.0, 1.0  # share of the purification kept
    for _ in range(rounds):
        middle = (low + high) / 2
        blend = original + middle * (purified - original)
        if bundle.perceptual_distance(blend, original).item() <= bound:
            low = middle
        else:
            high = middle
    return original + low * (purified - original)


def apply(image: np.ndarray, countermeasure: Countermeasure, bundle: ModelBundle,
          upscaler: StableDiffusionUpscalePipeline | None = None, seed: int = 0,
          work_size: int = 512, impress_steps: int = 100, upscale_steps: int = 20) -> np.ndarray:
    """One image through the countermeasure. Raises Skipped when it cannot run here."""
    kind, strength = countermeasure.kind, countermeasure.strength
    if kind == "none":
        return image
    if kind == "jpeg":
        return jpeg(image, int(strength))
    if kind == "noise":
        return gaussian_noise(image, strength, seed)
    if kind == "resize":
        return resize_round_trip(image, strength)
    if kind == "noisy_upscale":
        return noisy_upscale(image, strength, upscaler, seed, upscale_steps, work_size)
    return impress(image, bundle, strength, impress_steps, work_size=work_size)
