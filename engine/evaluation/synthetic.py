"""A small synthetic "artist": procedural paintings sharing one palette and brushwork.

For trying the harness offline and for its tests; no figure from it says anything about
protection of real art.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

PALETTE = np.array([[0.93, 0.80, 0.45], [0.20, 0.33, 0.55], [0.75, 0.30, 0.22],
                    [0.30, 0.55, 0.35], [0.95, 0.93, 0.85]])


def painting(size: int, seed: int) -> np.ndarray:
    """One size x size x 3 uint8 work: a two-colour wash, then round strokes from the palette."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    top, bottom = PALETTE[rng.choice(len(PALETTE), 2, replace=False)]
    image = (1 - y)[..., None] * top + y[..., None] * bottom
    for _ in range(12):
        cy, cx = rng.uniform(0, 1, 2)
        radius = rng.uniform(0.05, 0.18)
        colour = PALETTE[rng.integers(len(PALETTE))]
        blob = np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * radius**2))[..., None]
        image = image * (1 - 0.8 * blob) + 0.8 * blob * colour
    hatching = 0.04 * np.sin((x + y) * size * 0.8)[..., None]  # the artist's diagonal strokes
    return np.rint(np.clip(image + hatching, 0, 1) * 255).astype(np.uint8)


def write_artist(folder: str | Path, count: int = 6, size: int = 64, seed: int = 0) -> Path:
    """Write `count` works as PNGs into `folder` (created), unless it already holds images."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if not any(folder.glob("*.png")):
        for index in range(count):
            Image.fromarray(painting(size, seed + index)).save(folder / f"work-{index:02d}.png")
    return folder
