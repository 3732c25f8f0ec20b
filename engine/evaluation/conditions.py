"""Protection conditions, each at the same budget (LPIPS p and its L_inf cap).

- unprotected: the artist's works as they are;
- glaze: this project's cloak (`glaze.engine.cloak`) toward the artist's target style;
- noise: uniform random noise filling the L_inf cap, scaled down until its LPIPS is within p
  (what "just add noise" buys);
- photoguard: PhotoGuard's encoder attack, the latent pushed toward a flat grey image;
- mist: Mist's textural attack, the latent pushed toward a fixed texture pattern.

PhotoGuard and Mist differ from the cloak only in their target image, so they run the
cloak's own optimization toward that target (`cloak_toward`) instead of a style transfer.
A condition may cover only a share of the training set (paper section 6.4).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace

import numpy as np
import torch

from ..cloak import cloak, cloak_toward, cloak_views
from ..fullres import BACKGROUND, merge
from ..models import ModelBundle
from ..pixels import image_tensor
from ..settings import CloakSettings
from .countermeasures import within_bound

KINDS = ("unprotected", "glaze", "noise", "photoguard", "mist")


@dataclass(frozen=True)
class Condition:
    """One protection: its kind, LPIPS budget p and the share of the training set it covers."""

    kind: str
    budget: float = 0.05
    share: float = 1.0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown condition {self.kind!r}: choose {', '.join(KINDS)}")
        if not 0.0 < self.share <= 1.0:
            raise ValueError(f"share must be in (0, 1], got {self.share}")
        if self.kind == "unprotected":  # no budget, nothing cloaked: one condition only
            object.__setattr__(self, "budget", 0.0)
            object.__setattr__(self, "share", 1.0)

    @property
    def name(self) -> str:
        if self.kind == "unprotected":
            return "unprotected"
        share = "" if self.share == 1.0 else f"-{round(self.share * 100)}pct"
        return f"{self.kind}-p{self.budget:g}{share}"

    def settings(self, base: CloakSettings) -> CloakSettings:
        """The cloak settings at this condition's budget (its L_inf cap follows p)."""
        return replace(base, intensity=self.budget)


def texture(height: int, width: int) -> torch.Tensor:
    """Mist-style fixed target: a high-contrast pattern of stripes and rings, 1 x 3 x H x W."""
    y, x = torch.meshgrid(torch.arange(height, dtype=torch.float32),
                          torch.arange(width, dtype=torch.float32), indexing="ij")
    stripes = torch.sin((x + y) * 0.9)
    rings = torch.cos(torch.sqrt((x - width / 2) ** 2 + (y - height / 2) ** 2) * 0.6)
    checks = torch.sign(torch.sin(x * 0.35) * torch.sin(y * 0.35))
    channels = [stripes, rings, checks]
    return torch.stack([0.5 + 0.5 * c for c in channels])[None]


def target_image(kind: str, height: int, width: int) -> torch.Tensor:
    """The fixed target of an encoder attack, 1 x 3 x H x W in [0, 1]."""
    if kind == "photoguard":
        return torch.full((1, 3, height, width), BACKGROUND)  # flat mid-grey
    if kind == "mist":
        return texture(height, width)
    raise ValueError(f"{kind!r} has no fixed target image")


def random_noise(image: np.ndarray, linf: float, seed: int, bundle: ModelBundle | None = None,
                 budget: float | None = None) -> np.ndarray:
    """Uniform noise in [-linf, linf] on every RGB sample, scaled down until its LPIPS is
    within `budget` when a bundle is given (the same two limits the cloak has)."""
    rng = np.random.default_rng(seed)
    delta = rng.uniform(-linf, linf, size=(*image.shape[:2], 3)).astype(np.float32)
    if bundle is not None and budget is not None:
        x = image_tensor(image).to(bundle.device)
        noisy = (x + torch.from_numpy(delta).permute(2, 0, 1)[None].to(bundle.device))
        kept = within_bound(bundle, noisy.clamp(0, 1), x, budget) - x
        delta = kept[0].permute(1, 2, 0).cpu().numpy()
    return merge(image, lambda rows: delta[rows])


def protect(image: np.ndarray, condition: Condition, bundle: ModelBundle,
            base: CloakSettings, target_style: str,
            seed: int = 0) -> tuple[np.ndarray, dict[str, float] | None]:
    """One artwork under the condition (uint8 H x W x 3 in and out), and for the cloak each
    defended extractor's feature shift toward the target style (None for the others: they
    have no style target)."""
    if condition.kind == "unprotected":
        return image, None
    settings = replace(condition.settings(base), seed=seed)
    if condition.kind == "glaze":
        result = cloak(image, bundle, target_style, settings)
        return result.image, {name: shift.relative_shift
                              for name, shift in result.report.extractors.items()}
    if condition.kind == "noise":
        return random_noise(image, settings.linf, seed, bundle, condition.budget), None
    size = cloak_views(image.shape[:2], settings, bundle)[0].size
    return cloak_toward(image, bundle, target_image(condition.kind, *size), settings), None


def covered(names: list[str], share: float, seed: int = 0) -> set[str]:
    """The works a partial condition covers: a seeded choice of round(share * n), at least 1."""
    count = max(1, round(len(names) * share))
    return set(random.Random(seed).sample(sorted(names), min(count, len(names))))
