"""The mimicry attack (paper section 6.1): caption, fine-tune with LoRA, generate.

The mimic fine-tunes the text-to-image model on 80% of the artist's (possibly cloaked and
purified) works with LoRA adapters on the UNet's attention projections, through diffusers'
own peft integration, then prompts it with the captions of the held-out 20%. The adapter is
saved with the pipeline's LoRA format and generation loads it back from that file, so the
file on disk is exactly what produced the images.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler, StableDiffusionPipeline
from diffusers.training_utils import cast_training_params
from diffusers.utils import convert_state_dict_to_diffusers
from peft import LoraConfig
from peft.utils import get_peft_model_state_dict

from ..geometry import center_crop_view
from ..models import ModelBundle
from ..pixels import image_tensor
from ..progress import Progress

ADAPTER = "mimic"
LORA_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]
TEMPLATE = "an artwork in the style of {token}"
HELD_OUT_SHARE = 0.2


@dataclass(frozen=True)
class MimicSettings:
    """The mimic's fine-tune and generation (defaults near common LoRA practice)."""

    steps: int = 500
    rank: int = 4
    lr: float = 1e-4
    batch: int = 1
    resolution: int = 512
    images_per_caption: int = 4  # per seed
    seeds: tuple[int, ...] = (0, 1)
    sample_steps: int = 30
    guidance: float = 7.5
    seed: int = 0  # training noise and batch order


def split(names: Sequence[str], seed: int = 0) -> tuple[list[str], list[str]]:
    """A seeded 80/20 split of the artist's works: (training, held out)."""
    if len(names) < 2:
        raise ValueError("the mimicry attack needs at least 2 artworks (80% train, 20% held out)")
    order = sorted(names)
    random.Random(seed).shuffle(order)
    held = max(1, round(len(order) * HELD_OUT_SHARE))
    return sorted(order[held:]), sorted(order[:held])


def captions(paths: Sequence[Path], token: str, captioner: str | None = None) -> list[str]:
    """One caption per work: a sidecar NAME.txt, else a captioning model, else the template.

    The artist token is always part of the caption: it is what the mimic prompts with.
    """
    model = None
    if captioner and not all(path.with_suffix(".txt").is_file() for path in paths):
        from transformers import pipeline

        model = pipeline("image-to-text", model=captioner)
    result = []
    for path in paths:
        sidecar = path.with_suffix(".txt")
        if sidecar.is_file():
            text = sidecar.read_text("utf-8").strip()
        elif model is not None:
            text = model(str(path))[0]["generated_text"].strip()
        else:
            text = ""
        suffix = TEMPLATE.format(token=token)
        result.append(f"{text}, {suffix}" if text and token not in text else text or suffix)
    return result


def training_tensor(images: Sequence[np.ndarray], resolution: int) -> torch.Tensor:
    """Resize the short side to the resolution and center-crop, as training scripts do."""
    batch = [center_crop_view(image.shape[:2], resolution).apply(image_tensor(image))
             for image in images]
    return torch.cat(batch) * 2 - 1


def _autocast(bundle: ModelBundle) -> contextlib.AbstractContextManager:
    if bundle.device.type == "cuda" and bundle.precision != torch.float32:
        return torch.autocast("cuda", dtype=bundle.precision)
    return contextlib.nullcontext()


@torch.no_grad()
def _encode_text(bundle: ModelBundle, texts: Sequence[str]) -> torch.Tensor:
    tokenizer = bundle.pipeline.tokenizer
    ids = tokenizer(list(texts), padding="max_length", truncation=True,
                    max_length=tokenizer.model_max_length, return_tensors="pt").input_ids
    return bundle.pipeline.text_encoder(ids.to(bundle.device))[0]


@torch.no_grad()
def _latent_moments(bundle: ModelBundle, pixels: torch.Tensor) -> tuple[torch.Tensor, ...]:
    vae = bundle.pipeline.vae
    moments = [vae.encode(x[None].to(bundle.device, vae.dtype)).latent_dist for x in pixels]
    return (torch.cat([m.mean for m in moments]).float(),
            torch.cat([m.std for m in moments]).float())


def finetune(bundle: ModelBundle, images: Sequence[np.ndarray], texts: Sequence[str],
             settings: MimicSettings, folder: Path, progress: Progress | None = None) -> Path:
    """LoRA-fine-tune the bundle's UNet on the images, save the adapter to `folder`.

    The bundle's UNet is left as it was: the adapter is removed after saving.
    """
    progress = progress or Progress()
    pipe, unet = bundle.pipeline, bundle.pipeline.unet
    generator = torch.Generator("cpu").manual_seed(settings.seed)
    mean, std = _latent_moments(bundle, training_tensor(images, settings.resolution))
    embeddings = _encode_text(bundle, texts)
    scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    unet.add_adapter(LoraConfig(r=settings.rank, lora_alpha=settings.rank,
                                init_lora_weights="gaussian", target_modules=LORA_TARGETS),
                     adapter_name=ADAPTER)
    try:
        cast_training_params(unet, dtype=torch.float32)  # half-precision UNets train in fp32
        parameters = [p for p in unet.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(parameters, lr=settings.lr)
        scale = pipe.vae.config.scaling_factor
        for step in range(settings.steps):
            progress.check(step)
            index = torch.randint(len(mean), (settings.batch,), generator=generator)
            noise_shape = mean[index].shape
            latents = (mean[index] + std[index] * torch.randn(noise_shape, generator=generator)
                       .to(bundle.device)) * scale
            noise = torch.randn(noise_shape, generator=generator).to(bundle.device)
            timesteps = torch.randint(scheduler.config.num_train_timesteps, (settings.batch,),
                                      generator=generator).to(bundle.device)
            noisy = scheduler.add_noise(latents, noise, timesteps)
            goal = (noise if scheduler.config.prediction_type == "epsilon"
                    else scheduler.get_velocity(latents, noise, timesteps))
            with _autocast(bundle):
                predicted = unet(noisy.to(unet.dtype), timesteps,
                                 embeddings[index.to(bundle.device)]).sample
            loss = F.mse_loss(predicted.float(), goal.float())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            progress.report((step + 1) / settings.steps,
                            f"LoRA step {step + 1}/{settings.steps} (loss {loss.item():.4f})")
        state = convert_state_dict_to_diffusers(
            get_peft_model_state_dict(unet, adapter_name=ADAPTER))
        folder.mkdir(parents=True, exist_ok=True)
        StableDiffusionPipeline.save_lora_weights(folder, unet_lora_layers=state,
                                                  safe_serialization=True)
    finally:
        unet.unload_lora()  # removes peft's wrapper layers too: the UNet is as it was
        unet.requires_grad_(False)
    return folder


@contextlib.contextmanager
def loaded_lora(bundle: ModelBundle, folder: Path) -> Iterator[StableDiffusionPipeline]:
    """The bundle's text-to-image pipeline with the saved adapter loaded, removed on exit."""
    pipe = bundle.text_to_image
    pipe.load_lora_weights(folder, adapter_name=ADAPTER)
    try:
        yield pipe
    finally:
        pipe.unload_lora_weights()


def generate(pipe: StableDiffusionPipeline, prompts: Sequence[str], settings: MimicSettings,
             progress: Progress | None = None) -> list[np.ndarray]:
    """images_per_caption images per prompt and seed, H x W x 3 uint8 each."""
    progress = progress or Progress()
    jobs = [(prompt, seed) for prompt in prompts for seed in settings.seeds]
    images = []
    for done, (prompt, seed) in enumerate(jobs):
        progress.check()
        output = pipe(prompt=prompt, num_images_per_prompt=settings.images_per_caption,
                      height=settings.resolution, width=settings.resolution,
                      num_inference_steps=settings.sample_steps, guidance_scale=settings.guidance,
                      generator=torch.Generator("cpu").manual_seed(seed), output_type="np")
        images += [np.rint(np.clip(image, 0, 1) * 255).astype(np.uint8)
                   for image in output.images]
        progress.report((done + 1) / len(jobs), f"mimicry images {done + 1}/{len(jobs)}")
    return images
