"""The mimicry attack (paper section 6.1): caption, fine-tune with LoRA, generate.

The mimic fine-tunes a text-to-image model on 80% of the artist's (possibly cloaked and
purified) works with LoRA adapters on the UNet's attention projections, through diffusers'
own peft integration, then prompts it with the captions of the held-out 20%. The model is
the bundle's own Stable Diffusion (`sd`) or an SDXL base model (`sdxl`, what SDXL-family
LoRAs are trained on), each at its own training resolution; an SDXL UNet is conditioned as
diffusers' SDXL training scripts do (both text encoders, the pooled text embedding and the
original size / crop / target size ids). The adapter is
saved with the pipeline's LoRA format and generation loads it back from that file, so the
file on disk is exactly what produced the images.
"""

from __future__ import annotations

import contextlib
import json
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler, StableDiffusionPipeline, StableDiffusionXLPipeline
from diffusers.training_utils import cast_training_params
from diffusers.utils import convert_state_dict_to_diffusers
from peft import LoraConfig
from peft.utils import get_peft_model_state_dict

from ..demo import demo_sdxl_pipeline
from ..geometry import View, center_crop_view
from ..models import ModelBundle, cached_or_fetched, config_dict
from ..pixels import image_tensor
from ..progress import Progress
from ..sources import DEMO, MIMIC_RESOLUTIONS, MIMIC_SOURCES, OWN, ModelLoadError

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
    resolution: int = MIMIC_RESOLUTIONS["sd"]  # the family's own: MIMIC_RESOLUTIONS
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


@dataclass
class Mimic:
    """The text-to-image model a mimic fine-tunes, and how its UNet is conditioned."""

    family: str  # a MIMIC_SOURCES key: sd, sdxl
    pipeline: StableDiffusionPipeline | StableDiffusionXLPipeline
    name: str  # where it comes from
    demo: bool
    device: torch.device
    precision: torch.dtype

    @property
    def identity(self) -> str:
        """What shapes its results, for the run's fingerprint."""
        parts = ("unet", "vae", "text_encoder", "text_encoder_2")
        return json.dumps([self.family, self.name, {
            key: config_dict(getattr(self.pipeline, key)) for key in parts
            if getattr(self.pipeline, key, None) is not None}], sort_keys=True, default=str)

    @torch.no_grad()
    def conditioning(self, texts: Sequence[str], views: Sequence[View],
                     shapes: Sequence[tuple[int, int]]) -> tuple[torch.Tensor, dict]:
        """The UNet's text conditioning per text, and SDXL's added conditions (pooled text;
        original size, crop offsets and target size of each training view)."""
        encoded = self.pipeline.encode_prompt(list(texts), device=self.device,
                                              num_images_per_prompt=1,
                                              do_classifier_free_guidance=False)
        if self.family != "sdxl":
            return encoded[0], {}
        ids = [[*shape, view.box[0], view.box[1], view.box[2], view.box[3]]
               for shape, view in zip(shapes, views, strict=True)]
        return encoded[0], {"text_embeds": encoded[2],
                            "time_ids": torch.tensor(ids, dtype=encoded[0].dtype,
                                                     device=self.device)}


def load_mimic(family: str, bundle: ModelBundle, source: str | None = None) -> Mimic:
    """The model `family` fine-tunes: the bundle's own pipeline for sd; for sdxl, `source`
    (a folder, a hub id, or demo), by default the demo SDXL for the demo bundle and the
    SDXL base model otherwise."""
    if family not in MIMIC_SOURCES:
        raise ValueError(f"unknown mimic {family!r}: choose {', '.join(MIMIC_SOURCES)}")
    device, precision = bundle.device, bundle.precision
    if MIMIC_SOURCES[family] == OWN:
        pipe = StableDiffusionPipeline(**bundle.pipeline.components,
                                       requires_safety_checker=False)
        name, demo = bundle.name, bundle.demo
    else:
        location = source or (DEMO if bundle.demo else MIMIC_SOURCES[family])
        pipe, demo = (demo_sdxl_pipeline(), True) if location == DEMO else (
            _from_folder_or_hub(location, device, precision), False)
        name = f"demo-{family}" if demo else location
        pipe.to(device)
        for part in ("unet", "vae", "text_encoder", "text_encoder_2"):
            getattr(pipe, part).requires_grad_(False).eval()
    pipe.set_progress_bar_config(disable=True)
    return Mimic(family, pipe, name, demo, device, precision)


def _from_folder_or_hub(location: str, device: torch.device,
                        precision: torch.dtype) -> StableDiffusionXLPipeline:
    weights = precision if device.type in ("cuda", "mps") else torch.float32

    def load(local_files_only: bool) -> StableDiffusionXLPipeline:
        return StableDiffusionXLPipeline.from_pretrained(
            location, dtype=weights, local_files_only=local_files_only)
    try:
        return cached_or_fetched(location, load)
    except (OSError, ValueError) as error:
        raise ModelLoadError(f"could not load the SDXL mimic {location}: {error}. A folder "
                             "must be an SDXL pipeline in diffusers format") from error


def training_views(images: Sequence[np.ndarray], resolution: int) -> list[View]:
    """Each image's training view: the short side resized to the resolution, the center
    square cropped, as training scripts do."""
    return [center_crop_view(image.shape[:2], resolution) for image in images]


def training_tensor(images: Sequence[np.ndarray], resolution: int) -> torch.Tensor:
    """The images' training views, in [-1, 1]."""
    batch = [view.apply(image_tensor(image))
             for view, image in zip(training_views(images, resolution), images, strict=True)]
    return torch.cat(batch) * 2 - 1


def _autocast(mimic: Mimic) -> contextlib.AbstractContextManager:
    if mimic.device.type == "cuda" and mimic.precision != torch.float32:
        return torch.autocast("cuda", dtype=mimic.precision)
    return contextlib.nullcontext()


@torch.no_grad()
def _latent_moments(mimic: Mimic, pixels: torch.Tensor) -> tuple[torch.Tensor, ...]:
    vae = mimic.pipeline.vae
    moments = [vae.encode(x[None].to(mimic.device, vae.dtype)).latent_dist for x in pixels]
    return (torch.cat([m.mean for m in moments]).float(),
            torch.cat([m.std for m in moments]).float())


def finetune(mimic: Mimic, images: Sequence[np.ndarray], texts: Sequence[str],
             settings: MimicSettings, folder: Path, progress: Progress | None = None) -> Path:
    """LoRA-fine-tune the mimic's UNet on the images, save the adapter to `folder`.

    The mimic's UNet is left as it was: the adapter is removed after saving.
    """
    progress = progress or Progress()
    pipe, unet = mimic.pipeline, mimic.pipeline.unet
    generator = torch.Generator("cpu").manual_seed(settings.seed)
    mean, std = _latent_moments(mimic, training_tensor(images, settings.resolution))
    embeddings, added = mimic.conditioning(
        texts, training_views(images, settings.resolution), [i.shape[:2] for i in images])
    scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    unet.add_adapter(LoraConfig(r=settings.rank, lora_alpha=settings.rank,
                                init_lora_weights="gaussian", target_modules=LORA_TARGETS),
                     adapter_name=ADAPTER)
    try:
        cast_training_params(unet, dtype=torch.float32)  # half-precision UNets train in fp32
        parameters = [p for p in unet.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(parameters, lr=settings.lr)
        scale = pipe.vae.config.scaling_factor
        shift = pipe.vae.config.get("shift_factor") or 0.0
        for step in range(settings.steps):
            progress.check(step)
            index = torch.randint(len(mean), (settings.batch,), generator=generator)
            noise_shape = mean[index].shape
            sample = mean[index] + std[index] * torch.randn(noise_shape, generator=generator) \
                .to(mimic.device)
            latents = (sample - shift) * scale
            noise = torch.randn(noise_shape, generator=generator).to(mimic.device)
            timesteps = torch.randint(scheduler.config.num_train_timesteps, (settings.batch,),
                                      generator=generator).to(mimic.device)
            noisy = scheduler.add_noise(latents, noise, timesteps)
            goal = (noise if scheduler.config.prediction_type == "epsilon"
                    else scheduler.get_velocity(latents, noise, timesteps))
            chosen = index.to(mimic.device)
            with _autocast(mimic):
                predicted = unet(noisy.to(unet.dtype), timesteps, embeddings[chosen],
                                 added_cond_kwargs={key: value[chosen]
                                                    for key, value in added.items()} or None
                                 ).sample
            loss = F.mse_loss(predicted.float(), goal.float())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            progress.report((step + 1) / settings.steps,
                            f"LoRA step {step + 1}/{settings.steps} (loss {loss.item():.4f})")
        state = convert_state_dict_to_diffusers(
            get_peft_model_state_dict(unet, adapter_name=ADAPTER))
        folder.mkdir(parents=True, exist_ok=True)
        type(pipe).save_lora_weights(folder, unet_lora_layers=state, safe_serialization=True)
    finally:
        unet.unload_lora()  # removes peft's wrapper layers too: the UNet is as it was
        unet.requires_grad_(False)
    return folder


@contextlib.contextmanager
def loaded_lora(mimic: Mimic, folder: Path) -> Iterator[StableDiffusionPipeline]:
    """The mimic's pipeline with the saved adapter loaded, removed on exit."""
    pipe = mimic.pipeline
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
