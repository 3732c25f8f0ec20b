"""A small synthetic "artist": procedural paintings sharing one palette and brushwork.

For trying the harness offline and for its tests; no figure from it says anything about
protection of real art.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

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


def flat_card(width: int = 1024, height: int = 720) -> np.ndarray:
    """A cel-shaded test card, height x width x 3 uint8: flat fills (a sky, a sun, hills, a
    house, each with a flat shadow tone) inside black line art: what a cloak must leave
    without new texture."""
    card = Image.new("RGB", (width, height), (135, 190, 235))  # sky
    draw = ImageDraw.Draw(card)
    line = max(2, width // 256)

    def box(*fractions: float) -> list[float]:
        return [f * (width if i % 2 == 0 else height) for i, f in enumerate(fractions)]

    draw.ellipse(box(0.72, 0.08, 0.88, 0.31), fill=(250, 215, 70), outline=(0, 0, 0),
                 width=line)  # sun
    draw.chord(box(0.72, 0.08, 0.88, 0.31), 20, 160, fill=(235, 180, 50))  # its shade
    draw.ellipse(box(-0.2, 0.55, 0.6, 1.4), fill=(110, 175, 90), outline=(0, 0, 0),
                 width=line)  # hills
    draw.ellipse(box(0.35, 0.62, 1.2, 1.5), fill=(85, 145, 70), outline=(0, 0, 0),
                 width=line)
    draw.rectangle(box(0.18, 0.45, 0.42, 0.75), fill=(225, 205, 170), outline=(0, 0, 0),
                   width=line)  # house
    draw.rectangle(box(0.32, 0.45, 0.42, 0.75), fill=(190, 170, 135))  # its shaded side
    draw.line(box(0.32, 0.45, 0.32, 0.75), fill=(0, 0, 0), width=line)
    draw.polygon(box(0.15, 0.46, 0.30, 0.28, 0.45, 0.46), fill=(180, 70, 60),
                 outline=(0, 0, 0), width=line)  # roof
    draw.rectangle(box(0.23, 0.58, 0.28, 0.75), fill=(100, 70, 50), outline=(0, 0, 0),
                   width=line)  # door
    return np.asarray(card)


def write_artist(folder: str | Path, count: int = 6, size: int = 64, seed: int = 0) -> Path:
    """Write `count` works as PNGs into `folder` (created), unless it already holds images."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if not any(folder.glob("*.png")):
        for index in range(count):
            Image.fromarray(painting(size, seed + index)).save(folder / f"work-{index:02d}.png")
    return folder
