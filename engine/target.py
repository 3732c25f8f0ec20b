"""Target-style selection (paper section 5.3, step 1).

Each candidate style's centroid in Phi space comes from a few images Omega generates for
it; the artist's centroid from their own artworks. Candidates whose distance to the artist
lies between the 50th and 75th percentile are far enough to move the style and near enough
to be reachable within the budget; one is picked at random (seeded). The pick is kept in the
artist's profile so that every later artwork is cloaked toward the same target.

Phi's latents are spatial; a style is compared through a size-free descriptor of them:
per-channel mean and standard deviation and the correlations between channels.

With several extractors (SD, SDXL, FLUX.1, FLUX.2, Qwen-Image) every centroid is computed
in each extractor's space. A candidate's distance to the artist is then the mean over
extractors of its distance in that space divided by the median distance of all candidates
there: each extractor's distances are on their own scale (descriptors of 16 or 128
channels are longer), and dividing by the median puts them on one before they are
combined. The 50-75th percentile band is taken
on that combined distance.

First profile. Omega generates the candidates' images once per bundle (they are cached):
GenerationSettings.centroid_images per style, with the multistep DPM-Solver++ scheduler at
centroid_steps, a quarter of the UNet steps of 4 images at 30 steps.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch

from glaze.options import candidate_styles

from . import storage
from .fullres import reduction, seen
from .geometry import whole_view
from .models import ModelBundle
from .progress import Progress
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


Centroids = dict[str, np.ndarray]  # extractor name -> descriptor


def artist_centroid(bundle: ModelBundle, artworks: Iterable[np.ndarray]) -> Centroids:
    """The artist's mean descriptor in each extractor's space (artworks: pixel arrays in any
    supported format)."""
    descriptors: dict[str, list[np.ndarray]] = {name: [] for name in bundle.extractors}
    for artwork in artworks:
        view = whole_view(artwork.shape[:2], bundle.generation.centroid_size,
                          bundle.size_multiple())
        reduced = seen(artwork, bundle.device, reduction(artwork.shape[:2], [view.size]))
        image = view.apply(reduced.image)
        with torch.no_grad():
            for name, found in descriptors.items():
                found.append(style_descriptor(bundle.encode(image, name))[0])
    if not any(descriptors.values()):
        raise ValueError("choosing a target style needs at least one of the artist's artworks")
    return {name: np.mean(found, axis=0) for name, found in descriptors.items()}


def _style_seed(style: str) -> int:
    return int.from_bytes(hashlib.sha256(style.encode()).digest()[:4], "little")


class CentroidCache:
    """Candidate-style centroids for one bundle's Omega, kept on disk as they are computed:
    style -> extractor identity -> descriptor. The file is rewritten whole, so at most every
    SAVE_EVERY seconds and when a run ends (`save`): a FLUX.2 descriptor has 8,384 numbers
    (128 patchified channels), and rewriting the file after each of 131 styles took most of
    a demo cloak's time. A run killed in between loses at most those seconds' styles."""

    SAVE_EVERY = 20.0  # seconds

    def __init__(self, bundle: ModelBundle, folder: Path | None = None) -> None:
        self.path = (folder or storage.cache_dir() / "centroids") / f"{bundle.identity}.json"
        self.keys = {name: phi.identity for name, phi in bundle.extractors.items()}
        self.values: dict[str, dict[str, list[float]]] = {}
        self.saved_at: float | None = None  # when the file was last written; None: unchanged
        if self.path.is_file():
            found = json.loads(self.path.read_text())
            self.values = {style: value for style, value in found.items()
                           if isinstance(value, dict)}  # older files held one list a style

    def get(self, style: str) -> Centroids | None:
        """The style's centroid in every extractor's space, or None if one is missing."""
        stored = self.values.get(style, {})
        if not all(key in stored for key in self.keys.values()):
            return None
        return {name: np.asarray(stored[key]) for name, key in self.keys.items()}

    def put(self, style: str, centroids: Centroids) -> None:
        stored = self.values.setdefault(style, {})
        for name, centroid in centroids.items():
            stored[self.keys[name]] = [float(v) for v in centroid]
        now = time.monotonic()
        if self.saved_at is None:
            self.saved_at = now  # the first change since the last write starts the clock
        elif now - self.saved_at >= self.SAVE_EVERY:
            self.save()

    def save(self) -> None:
        """Write what changed since the last write, if anything."""
        if self.saved_at is not None:
            storage.write_json(self.path, self.values)
            self.saved_at = None


def duration_text(seconds: float) -> str:
    """A rough duration for a progress message: "40 s", "12 min", "2 h 5 min"."""
    if seconds < 90:
        return f"{max(round(seconds), 1)} s"
    minutes = round(seconds / 60)
    return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60} min"


def candidate_centroids(bundle: ModelBundle, styles: Sequence[str],
                        cache: CentroidCache | None = None,
                        progress: Progress | None = None) -> dict[str, Centroids]:
    """Each style's centroids, generated on first use and cached per bundle; the progress
    message gives the time left, estimated from the styles generated so far."""
    cache = cache or CentroidCache(bundle)
    progress = progress or Progress()
    missing = sum(cache.get(style) is None for style in styles)
    generated, spent = 0, 0.0
    centroids = {}
    try:
        for index, style in enumerate(styles):
            centroids[style], took = _centroid(bundle, style, cache, progress.phase(
                index / len(styles), (index + 1) / len(styles)))
            if took is not None:
                generated, spent = generated + 1, spent + took
            left = (f", about {duration_text(spent / generated * (missing - generated))} "
                    "left" if generated and missing > generated else "")
            progress.report((index + 1) / len(styles),
                            f"target-style centroids {index + 1}/{len(styles)}{left}")
    finally:  # a cancelled or failed run keeps what it computed
        cache.save()
    return centroids


def _centroid(bundle: ModelBundle, style: str, cache: CentroidCache,
              step: Progress) -> tuple[Centroids, float | None]:
    """A style's centroids from the cache, or generated and cached (with the seconds it
    took)."""
    step.check()
    found = cache.get(style)
    if found is not None:
        return found, None
    started = time.perf_counter()
    settings = bundle.generation
    with torch.no_grad():
        images = generate(bundle, style, settings.centroid_images, settings.centroid_size,
                          _style_seed(style), step)
        found = {name: style_descriptor(bundle.encode(images, name)).mean(axis=0)
                 for name in bundle.extractors}
    cache.put(style, found)
    return found, time.perf_counter() - started


def combined_distances(artist: Centroids, centroids: dict[str, Centroids]) -> dict[str, float]:
    """Each style's distance to the artist: per extractor, divided by that extractor's
    median over the styles, then averaged over the extractors."""
    names = sorted(centroids)
    total = np.zeros(len(names))
    for extractor, own in artist.items():
        distances = np.array([np.linalg.norm(centroids[name][extractor] - own)
                              for name in names])
        total += distances / max(float(np.median(distances)), 1e-12)
    return dict(zip(names, total / len(artist), strict=True))


def percentile_band(artist: Centroids, centroids: dict[str, Centroids],
                    low: float = 50, high: float = 75) -> list[str]:
    """The styles whose combined distance to `artist` lies between the low and high
    percentiles."""
    distances = combined_distances(artist, centroids)
    lo, hi = np.percentile(list(distances.values()), [low, high])
    return [name for name, d in distances.items() if lo <= d <= hi]


def pick_target(artist: Centroids, centroids: dict[str, Centroids], seed: int = 0) -> str:
    """A seeded random pick from the 50-75th percentile band."""
    return random.Random(seed).choice(percentile_band(artist, centroids))


def choose_target(bundle: ModelBundle, artworks: Iterable[np.ndarray], seed: int = 0,
                  styles: Sequence[str] | None = None, cache: CentroidCache | None = None,
                  progress: Progress | None = None) -> str:
    """A new artist's target style: a seeded pick among the candidates in the 50-75th
    percentile band of distance from the artist's works (paper section 5), in the space of
    every extractor the bundle has."""
    centroids = candidate_centroids(bundle, styles or candidate_styles(), cache, progress)
    return pick_target(artist_centroid(bundle, artworks), centroids, seed)
