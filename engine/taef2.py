"""TAEF2, a tiny autoencoder distilled to the FLUX.2 VAE's latent space (madebyollin/taesd,
MIT licence), as a feature extractor for MEASUREMENT only.

No model hub is reachable where this project is built, so every full-size extractor built
there has random weights, whose white-noise first filters mislead about what survives
JPEG, noise and resizing. TAEF2's filters were learned from natural images: it shows how a
cloak behaves on a trained encoder and how many steps a shift takes. It approximates the
FLUX.2 VAE on natural images; nothing shows that a cloak fooling it fools the real VAE, so
its bundle is labelled as giving no protection and it is never offered to users.

The weights are plain torch state dicts of `nn.Sequential` modules (`taef2_encoder.pth`,
`taef2_decoder.pth`), RGB in [0, 1] <-> 32 latent channels at 1/8 size.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .demo import demo_pipeline
from .extractors import Extractor, Recompute, checkpoint_forwards
from .models import DEMO_GENERATION, ModelBundle, perceptual_model, pick_device, pick_precision
from .sources import ModelLoadError

WIDTH, LATENT_CHANNELS = 64, 32
ENCODER_FILE, DECODER_FILE = "taef2_encoder.pth", "taef2_decoder.pth"
MEASUREMENT_ONLY = ("TAEF2 measurement encoder (a tiny distillation of the FLUX.2 VAE): this "
                    "output gives NO protection against style mimicry")


def find_weights(start: Path) -> Path | None:
    """TAEF2's folder: $GLAZE_TAEF2_WEIGHTS, else `shared/weights` beside `start` or beside
    one of its parents (the workplace keeps it beside the repository); None if absent."""
    named = os.environ.get("GLAZE_TAEF2_WEIGHTS")
    if named:
        return Path(named)
    for folder in Path(start).resolve().parents:
        if (folder / "shared" / "weights" / ENCODER_FILE).is_file():
            return folder / "shared" / "weights"
    return None


def _conv(channels_in: int, channels_out: int, bias: bool = True) -> nn.Conv2d:
    return nn.Conv2d(channels_in, channels_out, 3, padding=1, bias=bias)


class Block(nn.Module):
    """Three 3x3 convolutions with ReLUs between them, added to the input, then a ReLU; at
    1/8 size a pooled 1x1 branch is first added to the input."""

    def __init__(self, pool: bool = False) -> None:
        super().__init__()
        self.conv = nn.Sequential(_conv(WIDTH, WIDTH), nn.ReLU(), _conv(WIDTH, WIDTH),
                                  nn.ReLU(), _conv(WIDTH, WIDTH))
        self.pool = nn.Sequential(
            nn.Conv2d(WIDTH, 4 * WIDTH, 1, bias=False), nn.GroupNorm(4, 4 * WIDTH), nn.ReLU(),
            nn.Conv2d(4 * WIDTH, WIDTH, 1, bias=False)) if pool else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pool is not None:
            x = x + self.pool(x)
        return F.relu(self.conv(x) + x)


class Clamp(nn.Module):
    """The decoder's soft clamp of its latent input: tanh(x / 3) * 3."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x / 3) * 3


def encoder() -> nn.Sequential:
    """RGB in [0, 1] -> the FLUX.2 VAE's 32-channel latent at 1/8 size."""
    layers: list[nn.Module] = [_conv(3, WIDTH), Block()]
    for stage in range(3):
        layers += [nn.Conv2d(WIDTH, WIDTH, 3, stride=2, padding=1, bias=False),
                   *(Block(pool=stage == 2) for _ in range(3))]
    return nn.Sequential(*layers, _conv(WIDTH, LATENT_CHANNELS))


def decoder() -> nn.Sequential:
    """The FLUX.2 VAE's latent -> RGB in about [0, 1]."""
    layers: list[nn.Module] = [Clamp(), _conv(LATENT_CHANNELS, WIDTH), nn.ReLU(),
                               *(Block(pool=True) for _ in range(3))]
    for _ in range(2):
        layers += [nn.Upsample(scale_factor=2), _conv(WIDTH, WIDTH, bias=False),
                   *(Block() for _ in range(3))]
    layers += [nn.Upsample(scale_factor=2), _conv(WIDTH, WIDTH, bias=False), Block(),
               _conv(WIDTH, 3)]
    return nn.Sequential(*layers)


def load(folder: Path | None, part: str = ENCODER_FILE) -> nn.Sequential:
    """The encoder (or, with DECODER_FILE, the decoder) with its trained weights, from
    `folder` (None: not found by find_weights)."""
    if folder is None:
        raise ModelLoadError("TAEF2's weights were not found in shared/weights beside the "
                             "repository: set GLAZE_TAEF2_WEIGHTS to their folder")
    path = Path(folder) / part
    if not path.is_file():
        raise ModelLoadError(f"TAEF2's weights are not at {path}: give the folder that holds "
                             f"{ENCODER_FILE} and {DECODER_FILE}")
    model = encoder() if part == ENCODER_FILE else decoder()
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model.eval()


class Taef2Extractor(Extractor):
    """TAEF2's encoder read as the FLUX.2 VAE's latent (its raw mean: the BatchNorm
    statistics the Flux2 pipeline normalizes with are the real VAE's, which TAEF2 lacks;
    a per-channel affine map moves no cloak's direction)."""

    kind = "taef2"
    model_class = nn.Sequential
    activation_bytes = 1_300  # 885 MiB at 720 x 1024 (bf16, CPU; cloak_step.py --memory)

    def __init__(self, name: str, model: nn.Module, source: str,
                 decoder: nn.Module | None = None) -> None:
        super().__init__(name, model, source)
        self.decoder = decoder

    @property
    def can_decode(self) -> bool:
        return self.decoder is not None

    def _decoded(self, latent: torch.Tensor) -> torch.Tensor:
        return self.decoder(latent) * 2 - 1

    def latent(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model((pixels + 1) / 2)

    def normalized(self, latent: torch.Tensor) -> torch.Tensor:
        return latent

    def bound_memory(self, enabled: bool, recompute: Recompute) -> None:
        checkpoint_forwards([layer for layer in self.model if isinstance(layer, Block)],
                            enabled, recompute)

    @property
    def identity(self) -> str:
        return f"{self.name}-taef2"


def measurement_bundle(folder: Path | None, device: str | None = None,
                       precision: str | None = None, name: str = "flux2",
                       decoder: bool = False) -> ModelBundle:
    """The demo's Omega with TAEF2 as the `name` extractor (the FLUX.2 family it distils),
    labelled as giving NO protection; `decoder`: with TAEF2's decoder, for previews."""
    dev = pick_device(device)
    decoding = load(folder, DECODER_FILE).to(dev).requires_grad_(False) if decoder else None
    return ModelBundle(
        name="taef2-measurement", pipeline=demo_pipeline(), perceptual=perceptual_model(True),
        device=dev, precision=pick_precision(dev, precision),
        extractors={name: Taef2Extractor(name, load(folder), str(folder), decoding)},
        generation=DEMO_GENERATION, caveat=MEASUREMENT_ONLY)
