"""Model bundles: the feature extractor Phi, the style-transfer model Omega and LPIPS.

A bundle is a diffusers Stable Diffusion folder (a hub id or a local path; hub downloads are
cached where huggingface_hub caches) plus an optional `glaze_bundle.json` that says how to
run it. The demo bundle is saved and loaded through exactly the same path.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import warnings
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path

import lpips
import torch
from diffusers import AutoencoderKL, StableDiffusionImg2ImgPipeline, StableDiffusionPipeline
from huggingface_hub import constants, hf_hub_download, model_info
from huggingface_hub.errors import (
    EntryNotFoundError,
    GatedRepoError,
    HfHubHTTPError,
    RepositoryNotFoundError,
)
from safetensors.torch import load_model, save_model
from torch.nn.attention import SDPBackend, sdpa_kernel

from .demo import demo_pipeline
from .sources import (
    BUNDLE_FILE,
    DEMO,
    ModelLoadError,
    alternatives,
    model_source,
    retired_note,
)

LPIPS_FILE = "lpips/alex.safetensors"
NO_PROTECTION = ("DEMO bundle (tiny random models): this output gives NO protection against "
                 "style mimicry")

PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class GenerationSettings:
    """How Omega is run for style transfer and for target-style centroids."""

    steps: int = 30  # diffusion steps (img2img runs strength * steps of them)
    guidance: float = 7.5
    centroid_images: int = 4  # images generated per candidate style
    centroid_size: int = 512  # their side in pixels


DEMO_GENERATION = GenerationSettings(steps=4, guidance=2.0, centroid_images=2, centroid_size=64)


@dataclass
class ModelBundle:
    """Phi, Omega and LPIPS, resident on one device."""

    name: str
    pipeline: StableDiffusionImg2ImgPipeline
    perceptual: lpips.LPIPS
    device: torch.device
    precision: torch.dtype  # compute type of the encoder; float32 means no autocast
    demo: bool = False
    generation: GenerationSettings = field(default_factory=GenerationSettings)
    source: str = DEMO  # where it was loaded from (sources.model_source): outputs record it

    def __post_init__(self) -> None:
        """Make the models resident on the device, frozen, in evaluation mode."""
        self.pipeline.set_progress_bar_config(disable=True)
        self.pipeline.to(self.device)
        for model in (self.pipeline.vae, self.pipeline.unet, self.pipeline.text_encoder):
            model.requires_grad_(False).eval()
        self.perceptual.to(self.device)
        if self.demo and self.device.type == "cpu":
            # Tiny models gain nothing from threads and lose much when the machine is busy:
            # 40 demo cloak steps at 720x512 took 21 s with 1 thread, 122 s with 2 beside a
            # busy core (13 s with 2 on an idle machine).
            torch.set_num_threads(1)
        if self.channels_last:
            self.encoder.to(memory_format=torch.channels_last)

    @property
    def channels_last(self) -> bool:
        """Full-size convolutions on the CPU use channels-last, oneDNN's preferred layout
        (not measured separately here: benchmarks/cloak_step.py times the result)."""
        return self.device.type == "cpu" and not self.demo

    @property
    def encoder(self) -> AutoencoderKL:
        return self.pipeline.vae

    @property
    def protection_note(self) -> str | None:
        """What every output of this bundle must say about itself, if anything."""
        return NO_PROTECTION if self.demo else None

    @cached_property
    def identity(self) -> str:
        """A key for caches made with this bundle's models."""
        configs = {key: _config_dict(getattr(self.pipeline, key))
                   for key in ("vae", "unet", "text_encoder")}
        text = json.dumps([self.name, configs], sort_keys=True, default=str)
        slug = "".join(c if c.isalnum() else "-" for c in self.name)[-40:]
        return f"{slug}-{hashlib.sha256(text.encode()).hexdigest()[:12]}"

    @cached_property
    def text_to_image(self) -> StableDiffusionPipeline:
        """Omega used text-to-image (for target-style centroids), sharing every model."""
        pipe = StableDiffusionPipeline(**self.pipeline.components, requires_safety_checker=False)
        pipe.set_progress_bar_config(disable=True)
        return pipe

    def compute(self) -> contextlib.ExitStack:
        """The autocast and attention-kernel context for encoder passes."""
        stack = contextlib.ExitStack()
        if self.device.type == "cpu":
            # The default SDPA kernel's backward is slow on CPU; the math kernel is faster.
            stack.enter_context(sdpa_kernel(SDPBackend.MATH))
        if self.precision != torch.float32:
            stack.enter_context(torch.autocast(self.device.type, dtype=self.precision))
        return stack

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Phi: the VAE latent mean of N x 3 x H x W images in [0, 1] (differentiable)."""
        vae = self.encoder
        x = (images.to(self.device) * 2 - 1).to(vae.dtype)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with self.compute():
            latent = vae.encode(x).latent_dist.mean
        return latent.float()

    def perceptual_distance(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """LPIPS between N x 3 x H x W images in [0, 1], one value per image."""
        return self.perceptual(a.float(), b.float(), normalize=True).flatten()

    def save(self, folder: str | Path) -> Path:
        """Write the bundle as a diffusers folder that `load_bundle` reads back."""
        folder = Path(folder)
        self.pipeline.save_pretrained(folder)
        (folder / LPIPS_FILE).parent.mkdir(exist_ok=True)
        save_model(self.perceptual, str(folder / LPIPS_FILE))
        meta = {"format": 1, "name": self.name, "demo": self.demo,
                "generation": asdict(self.generation)}
        (folder / BUNDLE_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        return folder


def _config_dict(model: torch.nn.Module) -> dict:
    config = model.config
    items = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    # Keep the architecture; drop bookkeeping that changes with where and how it was saved.
    return {key: value for key, value in items.items()
            if not key.startswith("_") and key not in ("transformers_version", "dtype",
                                                        "torch_dtype")}


def pick_device(requested: str | None = None) -> torch.device:
    """The requested device, else CUDA, then Apple's MPS, then the CPU."""
    if requested:
        return torch.device(requested)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def _cpu_has_fast_bf16() -> bool:
    checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def pick_precision(device: torch.device, requested: str | None = None,
                   demo: bool = False) -> torch.dtype:
    """The requested precision, else the fastest one the device handles well."""
    if requested:
        try:
            return PRECISIONS[requested]
        except KeyError:
            raise ValueError(f"unknown precision {requested!r}: choose "
                             f"{', '.join(PRECISIONS)}") from None
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "mps":
        return torch.float16
    # Tiny demo convolutions gain nothing from autocast; full-size ones run ~2x faster in
    # bf16 on CPUs with bf16 instructions.
    return torch.bfloat16 if not demo and _cpu_has_fast_bf16() else torch.float32


def perceptual_model(random_backbone: bool = False, seed: int = 0,
                      weights: Path | None = None) -> lpips.LPIPS:
    """LPIPS (AlexNet): saved `weights`, else a seeded random backbone, else torchvision's."""
    if weights is not None or random_backbone:
        # lpips ships only its linear heads; the backbone is random until weights load.
        with torch.random.fork_rng(), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # torchvision's `pretrained` notice
            torch.manual_seed(seed)
            model = lpips.LPIPS(net="alex", pnet_rand=True, verbose=False)
        if weights is not None:
            load_model(model, str(weights))
    else:
        try:
            model = lpips.LPIPS(net="alex", verbose=False)
        except Exception as error:  # torchvision downloads AlexNet's weights on first use
            raise ModelLoadError(
                "LPIPS needs torchvision's ImageNet AlexNet weights and could not get them "
                f"({error}). Connect once to the internet, or run `glaze install --models "
                "default`, which fetches them into torch's cache.") from error
    return model.eval().requires_grad_(False)


def demo_bundle(device: str | None = None, precision: str | None = None,
                seed: int = 0) -> ModelBundle:
    """The tiny random bundle (no download, NO protection)."""
    dev = pick_device(device)
    return ModelBundle(
        name=f"demo-seed{seed}", pipeline=demo_pipeline(seed),
        perceptual=perceptual_model(random_backbone=True, seed=seed), device=dev,
        precision=pick_precision(dev, precision, demo=True), demo=True,
        generation=DEMO_GENERATION)


def _hub_problem(location: str) -> str | None:
    """Why `location` cannot be fetched now (offline, unreachable, not on the hub), or None.
    Asked once, without retries: huggingface_hub retries a dead network for about 20 s."""
    where = f"it is not in the Hugging Face cache ({constants.HF_HUB_CACHE})"
    if constants.HF_HUB_OFFLINE:
        return (f"{where} and HF_HUB_OFFLINE is set: fetch it on a connected machine with "
                f"`glaze install --models {location}`, or give a local folder")
    try:
        model_info(location, timeout=10)
    except (RepositoryNotFoundError, GatedRepoError) as error:
        gone = retired_note(location) or f"use {alternatives()}"
        return f"the hub has no public model {location!r} ({type(error).__name__}): {gone}"
    except Exception as error:  # the network layer raises its own types
        return (f"{where} and the hub cannot be reached ({error}): connect once and run "
                "`glaze install --models ...`, set HF_HUB_OFFLINE=1 to use only the cache, "
                "or give a local folder in diffusers format")
    return None


def fetch_hub(location: str) -> Path:
    """A hub id's pipeline folder in the Hugging Face cache, downloaded (resumably, with
    progress) if it is not complete there yet; the bundle's optional files come with it."""
    try:  # a complete copy in the cache needs no network at all
        return Path(StableDiffusionImg2ImgPipeline.download(
            location, local_files_only=True, safety_checker=None))
    except (OSError, ValueError):
        pass
    problem = _hub_problem(location)
    if problem:
        raise ModelLoadError(f"cannot load {location}: {problem}")
    try:
        folder = Path(StableDiffusionImg2ImgPipeline.download(location, safety_checker=None))
        for name in (BUNDLE_FILE, LPIPS_FILE):
            with contextlib.suppress(EntryNotFoundError):
                hf_hub_download(location, name)
    except (OSError, ValueError, HfHubHTTPError) as error:
        raise ModelLoadError(f"could not fetch {location}: {error}") from error
    return folder


def _optional_file(folder: Path, name: str) -> Path | None:
    return folder / name if (folder / name).is_file() else None


def load_bundle(source: str | Path = "demo", device: str | None = None,
                precision: str | None = None) -> ModelBundle:
    """Load a bundle: "demo", "default" (the standard hub model), a local folder or a hub id."""
    location = model_source(source)
    if location == DEMO:
        return demo_bundle(device, precision)
    folder = Path(location) if Path(location).is_dir() else fetch_hub(location)
    bundle_file = _optional_file(folder, BUNDLE_FILE)
    meta = json.loads(bundle_file.read_text()) if bundle_file else {}
    demo = bool(meta.get("demo", False))
    dev = pick_device(device)
    compute = pick_precision(dev, precision, demo=demo)
    # Weights stay float32 on the CPU (autocast computes in bf16); GPUs hold them halved.
    weights = compute if dev.type in ("cuda", "mps") else torch.float32
    try:
        pipeline = StableDiffusionImg2ImgPipeline.from_pretrained(
            folder, dtype=weights, safety_checker=None, requires_safety_checker=False)
    except Exception as error:
        raise ModelLoadError(
            f"could not load the model bundle {source!r}: {error}. A folder must be in "
            "diffusers format (model_index.json, vae/, unet/, text_encoder/, tokenizer/, "
            "scheduler/).") from error
    return ModelBundle(
        name=meta.get("name", str(source) if Path(location).is_dir() else location),
        pipeline=pipeline,
        perceptual=perceptual_model(weights=_optional_file(folder, LPIPS_FILE)),
        device=dev, precision=compute, demo=demo,
        generation=GenerationSettings(**meta.get("generation", {})), source=location)
