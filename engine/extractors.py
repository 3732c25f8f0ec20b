"""Feature extractors Phi: one part per kind of image encoder a mimic's model trains on.

A part owns everything that differs between encoders: the diffusers class it loads with
(its decoder dropped: the loss needs the encoder only), its latent as that family's
diffusion model sees it, the multiple its input sides must be, how it bounds the memory
of a large view, and whether it runs in the channels-last layout. The bundle, the
optimizer, the target choice and the evaluation call only this interface; where each
family's weights come from is declared in sources.EXTRACTOR_SOURCES, which names the part
by its `kind`.

Pixels come in as N x 3 x H x W in [-1, 1], in the model's dtype and layout; `latent` runs
under the caller's autocast, `normalized` in float32 outside it.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import ClassVar

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, AutoencoderKLFlux2, AutoencoderKLQwenImage
from diffusers.models.autoencoders.autoencoder_kl_qwenimage import QwenImageCausalConv3d

# run(function, *args): `function(*args)` with its activations recomputed in the backward
# (the bundle's checkpoint, which restores its attention kernel there).
Recompute = Callable[..., torch.Tensor]


class Extractor:
    """One feature extractor: an image encoder, read in its diffusion model's latent space."""

    kind: ClassVar[str]  # the name sources.ExtractorSource.kind gives this part
    model_class: ClassVar[type[torch.nn.Module]]
    size_multiple: ClassVar[int] = 8  # input sides must be multiples of it
    channels_last: ClassVar[bool] = True  # 4-D convolutions, which the CPU runs faster so
    # What a forward keeps for its backward, in bytes per pixel of the view, in bf16 without
    # checkpointing (benchmarks/cloak_step.py --memory, 720 x 1024 on the CPU: SD's kl-f8
    # encoder 5,877 MiB, FLUX.2's 5,866, Qwen-Image's 7,222).
    activation_bytes: ClassVar[int] = 8_400

    def __init__(self, name: str, model: torch.nn.Module, source: str) -> None:
        self.name = name  # a DEFEND choice: sd, sdxl, flux, flux2, qwen
        self.model = model
        self.source = source  # where it was loaded from ("demo" for the built-in tiny ones)
        # Loads the whole VAE again, decoder included, where the encoder was loaded without
        # it (models.load_extractor): a preview's decoder, loaded when asked for.
        self.whole: Callable[[], torch.nn.Module] | None = None

    @property
    def dtype(self) -> torch.dtype:
        """The type of its weights, which its input takes."""
        return next(self.model.parameters()).dtype

    def latent(self, pixels: torch.Tensor) -> torch.Tensor:
        """The encoder's latent (its distribution's mean) of pixels in [-1, 1]."""
        raise NotImplementedError

    def normalized(self, latent: torch.Tensor) -> torch.Tensor:
        """`latent` (float32) as the family's diffusion model is trained on it."""
        raise NotImplementedError

    def bound_memory(self, enabled: bool, recompute: Recompute) -> None:
        """Keep only block inputs for the backward (recomputing the rest there) while
        `enabled`: less memory on large views, for one more forward pass."""
        raise NotImplementedError

    @property
    def can_decode(self) -> bool:
        """Whether its decoder is loaded (weights loaded for the loss drop it)."""
        return getattr(self.model, "decoder", None) is not None

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        """Pixels in [0, 1] from a latent as `latent` gives it, through the family's own
        VAE decoder: what a model of that family is taught a picture looks like."""
        if not self.can_decode:
            raise ValueError(f"the {self.name} extractor was loaded without its decoder")
        return ((self._decoded(latent) + 1) / 2).clamp(0, 1)

    def _decoded(self, latent: torch.Tensor) -> torch.Tensor:
        return self.model.decode(latent).sample

    @classmethod
    def load(cls, location: str, subfolder: str | None, dtype: torch.dtype,
             local_files_only: bool, decoder: bool = False) -> torch.nn.Module:
        """The encoder's model from a folder or hub id, its decoder dropped unless
        `decoder` (the VAE's one file holds both). Raises ValueError when the folder holds
        another kind of model."""
        config = cls.model_class.load_config(location, subfolder=subfolder,
                                             local_files_only=local_files_only)
        found = config.get("_class_name", cls.model_class.__name__)
        if found != cls.model_class.__name__:
            raise ValueError(f"it holds a {found}, not the {cls.model_class.__name__} this "
                             "family's encoder is")
        model = cls.model_class.from_pretrained(location, subfolder=subfolder, dtype=dtype,
                                                local_files_only=local_files_only)
        if not decoder:
            model.decoder = model.post_quant_conv = None
        return model

    def save(self, folder: Path) -> None:
        self.model.save_pretrained(folder)

    @cached_property
    def identity(self) -> str:
        """A key for caches made with this extractor, beside its bundle's identity: its name
        and architecture (where it was loaded from is the bundle's choice)."""
        text = json.dumps([self.name, config_dict(self.model)], sort_keys=True, default=str)
        return f"{self.name}-{hashlib.sha256(text.encode()).hexdigest()[:12]}"


class KLExtractor(Extractor):
    """A kl-f8 VAE (AutoencoderKL): SD 1/2, SDXL and FLUX.1. Their diffusion models train on
    (mean - shift) * scaling."""

    kind = "kl"
    model_class = AutoencoderKL

    @property
    def scaling(self) -> float:
        return float(self.model.config.scaling_factor)

    @property
    def shift(self) -> float:
        return float(self.model.config.get("shift_factor") or 0.0)

    def latent(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model.encode(pixels).latent_dist.mean

    def normalized(self, latent: torch.Tensor) -> torch.Tensor:
        return (latent - self.shift) * self.scaling

    def bound_memory(self, enabled: bool, recompute: Recompute) -> None:
        """diffusers' own per-block gradient checkpointing, with the bundle's recompute."""
        if enabled != self.model.is_gradient_checkpointing:
            if enabled:
                self.model.enable_gradient_checkpointing(recompute)
            else:
                self.model.disable_gradient_checkpointing()


class Flux2Extractor(KLExtractor):
    """FLUX.2's VAE (AutoencoderKLFlux2: SD's encoder layout, 32 latent channels). The Flux2
    pipeline patchifies the latent 2x2 (128 channels at 1/16 size) and normalizes it with
    the VAE's BatchNorm running statistics; the patchify needs even latent sides."""

    kind = "flux2"
    model_class = AutoencoderKLFlux2
    size_multiple = 16

    def normalized(self, latent: torch.Tensor) -> torch.Tensor:
        height, width = latent.shape[-2:]
        if height % 2 or width % 2:
            raise ValueError(f"FLUX.2's latent patchify needs sides that are multiples of "
                             f"{self.size_multiple} px, got {width * 8}x{height * 8}")
        patches = F.pixel_unshuffle(latent, 2)  # the pipeline's channel order: c*4 + 2*dy + dx
        norm = self.model.bn
        mean = norm.running_mean.view(1, -1, 1, 1).float()
        std = torch.sqrt(norm.running_var.view(1, -1, 1, 1).float()
                         + self.model.config.batch_norm_eps)
        return (patches - mean) / std


class QwenImageExtractor(Extractor):
    """The Qwen-Image VAE (AutoencoderKLQwenImage: causal 3-D convolutions, 16 channels),
    given a picture as one frame. Its pipelines train on (mean - latents_mean) / latents_std,
    per channel. diffusers gives it no gradient checkpointing: its encoder blocks are
    recomputed through the bundle's checkpoint instead. 5-D tensors have no channels-last
    layout of the 4-D kind."""

    kind = "qwenimage"
    model_class = AutoencoderKLQwenImage
    activation_bytes = 10_300
    channels_last = False

    def __init__(self, name: str, model: torch.nn.Module, source: str) -> None:
        super().__init__(name, model, source)
        for module in [*model.encoder.modules(), model.quant_conv]:
            if isinstance(module, QwenImageCausalConv3d) and "forward" not in vars(module):
                module.forward = functools.partial(_one_frame_conv, module)

    def latent(self, pixels: torch.Tensor) -> torch.Tensor:
        # One frame through the encoder without diffusers' frame cache, which would hold
        # state across a checkpoint's recomputation; for a single frame both are the same
        # (the causal padding is zeros either way).
        moments = self.model.quant_conv(self.model.encoder(pixels.unsqueeze(2)))
        return moments[:, :self.model.config.z_dim, 0]

    def _decoded(self, latent: torch.Tensor) -> torch.Tensor:
        return self.model.decode(latent.unsqueeze(2)).sample[:, :, 0]

    def normalized(self, latent: torch.Tensor) -> torch.Tensor:
        config = self.model.config
        mean = torch.tensor(config.latents_mean, device=latent.device).view(1, -1, 1, 1)
        std = torch.tensor(config.latents_std, device=latent.device).view(1, -1, 1, 1)
        return (latent - mean) / std

    def bound_memory(self, enabled: bool, recompute: Recompute) -> None:
        encoder = self.model.encoder
        checkpoint_forwards([*encoder.down_blocks, encoder.mid_block], enabled, recompute)


def _one_frame_conv(conv: QwenImageCausalConv3d, x: torch.Tensor,
                    cache_x: torch.Tensor | None = None) -> torch.Tensor:
    """A causal 3-D convolution of one frame without a cache, as the 2-D convolution it is:
    the causal padding puts only zeros before the frame, so only the kernel's last temporal
    tap sees anything. The same output, without the 3-D kernel's work on the zeros (two
    thirds of it for the 3-tap kernels) or the padded copy; other inputs take diffusers' way."""
    pad_w, _, pad_h, _, pad_t, _ = conv._padding
    if x.shape[2] != 1 or cache_x is not None or pad_t != conv.kernel_size[0] - 1:
        return type(conv).forward(conv, x, cache_x)
    return F.conv2d(x[:, :, 0], conv.weight[:, :, -1], conv.bias, conv.stride[1:],
                    (pad_h, pad_w)).unsqueeze(2)


def checkpoint_forwards(blocks: list[torch.nn.Module], enabled: bool,
                        recompute: Recompute) -> None:
    """Gradient checkpointing for models diffusers gives none: while `enabled`, each of
    `blocks` runs its own forward through `recompute` (an instance attribute over the
    class's forward, removed again when disabled)."""
    for block in blocks:
        if enabled and "forward" not in vars(block):
            block.forward = functools.partial(recompute, type(block).forward.__get__(block))
        elif not enabled:
            vars(block).pop("forward", None)


# The parts by kind: sources.ExtractorSource.kind names one of these.
PARTS: dict[str, type[Extractor]] = {
    part.kind: part for part in (KLExtractor, Flux2Extractor, QwenImageExtractor)}


def config_dict(model: torch.nn.Module) -> dict:
    """A model's architecture, without what changes with where and how it was saved."""
    config = model.config
    items = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    return {key: value for key, value in items.items()
            if not key.startswith("_") and key not in ("transformers_version", "dtype",
                                                        "torch_dtype")}
