"""Target-style selection (paper section 5.3, step 1).

Each candidate style's centroid in Phi space comes from a few images Omega generates for
it; the artist's centroid from their own artworks. Candidates whose distance to the artist
lies between the 50th and 75th percentile are far enough to move the style and near enough
to be reachable within the budget; one is picked at random (seeded). The pick is kept in the
artist's profile so that every later artwork is cloaked toward the same target.

Phi's latents are spatial; a style is compared through a size-free descriptor of them:
per-channel mean and standard deviation and the correlations between channels.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch

from . import pixels, storage
from .cloak import composite
from .geometry import whole_view
from .models import ModelBundle
from .progress import Progress
from .styles import candidate_styles
from .transfer import generate


def style_descriptor(latents: torch.Tensor) -> np.ndarray:
    """N x C x h x w latents -> N x D descriptors (channel means, stds, correlations)."""
    flat = latents.flatten(2).double()
    mean, std = flat.mean(-1), flat.std(-1).clamp_min(1e-8)
    normal = (flat - mean[..., None]) / std[..., None]
    correlation = normal @ normal.transpose(1, 2) / flat.shape[-1]
    upper = torch.triu_indices(flat.shape[1], flat.shape[1], offset=1)
    parts = [mean, std, correlation[:, upper[0], upper[1]]]
    return torch.cat(parts, dim=1).cpu().numpy()


def artist_centroid(bundle: ModelBundle, artworks: Iterable[np.ndarray]) -> np.ndarray:
    """The mean descriptor of the artist's artworks (pixel arrays in any supported format)."""
    descriptors = []
    for artwork in artworks:
        image, _ = composite(pixels.split(artwork), bundle.device)
        view = whole_view(artwork.shape[:2], bundle.generation.centroid_size)
        with torch.no_grad():
            descriptors.append(style_descriptor(bundle.encode(view.apply(image)))[0])
    if not descriptors:
        raise ValueError("choosing a target style needs at least one of the artist's artworks")
    return np.mean(descriptors, axis=0)


def _style_seed(style: str) -> int:
    return int.from_bytes(hashlib.sha256(style.encode()).digest()[:4], "little")


class CentroidCache:
    """Candidate-style centroids for one bundle, kept on disk as they are computed."""

    def __init__(self, bundle: ModelBundle, folder: Path | None = None) -> None:
        self.path = (folder or storage.cache_dir() / "centroids") / f"{bundle.identity}.json"
        self.values: dict[str, list[float]] = {}
        if self.path.is_file():
            self.values = json.loads(self.path.read_text())

    def get(self, style: str) -> np.ndarray | None:
        value = self.values.get(style)
        return None if value is None else np.asarray(value)

    def put(self, style: str, centroid: np.ndarray) -> None:
        self.values[style] = [float(v) for v in centroid]
        storage.write_json(self.path, self.values)


def candidate_centroids(bundle: ModelBundle, styles: Sequence[str],
                        cache: CentroidCache | None = None,
                        progress: Progress | None = None) -> dict[str, np.ndarray]:
    """Each style's centroid, generated on first use and cached per bundle."""
    cache = cache or CentroidCache(bundle)
    progress = progress or Progress()
    settings = bundle.generation
    centroids = {}
    for index, style in enumerate(styles):
        progress.check()
        centroid = cache.get(style)
        if centroid is None:
            step = progress.phase(index / len(styles), (index + 1) / len(styles))
            with torch.no_grad():
                images = generate(bundle, style, settings.centroid_images,
                                  settings.centroid_size, _style_seed(style), step)
                centroid = style_descriptor(bundle.encode(images)).mean(axis=0)
            cache.put(style, centroid)
        centroids[style] = centroid
        progress.report((index + 1) / len(styles),
                        f"target-style centroids {index + 1}/{len(styles)}")
    return centroids


def percentile_band(artist: np.ndarray, centroids: dict[str, np.ndarray],
                    low: float = 50, high: float = 75) -> list[str]:
    """The styles whose distance to `artist` lies between the low and high percentiles."""
    names = sorted(centroids)
    distances = np.array([np.linalg.norm(centroids[name] - artist) for name in names])
    lo, hi = np.percentile(distances, [low, high])
    return [name for name, d in zip(names, distances, strict=True) if lo <= d <= hi]


def pick_target(artist: np.ndarray, centroids: dict[str, np.ndarray], seed: int = 0) -> str:
    """A seeded random pick from the 50-75th percentile band."""
    return random.Random(seed).choice(percentile_band(artist, centroids))


def choose_target(bundle: ModelBundle, artworks: Iterable[np.ndarray], seed: int = 0,
                  styles: Sequence[str] | None = None, cache: CentroidCache | None = None,
                  progress: Progress | None = None) -> str:
    """A new artist's target style: a seeded pick among the candidates in the 50-75th
    percentile band of distance from the artist's works (paper section 5)."""
    centroids = candidate_centroids(bundle, styles or candidate_styles(), cache, progress)
    return pick_target(artist_centroid(bundle, artworks), centroids, seed)
