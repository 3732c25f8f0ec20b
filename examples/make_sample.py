"""Paint examples/sample-artwork.png: a small procedural landscape to try the cloak on."""

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

WIDTH, HEIGHT = 640, 448


def paint(seed: int = 7) -> Image.Image:
    rng = np.random.default_rng(seed)
    y = np.linspace(0, 1, HEIGHT)[:, None, None]
    sky = (1 - y) * np.array([70, 110, 190]) + y * np.array([250, 200, 150])
    canvas = Image.fromarray(np.broadcast_to(sky, (HEIGHT, WIDTH, 3)).astype(np.uint8))
    draw = ImageDraw.Draw(canvas)
    draw.ellipse((430, 70, 520, 160), fill=(255, 230, 170))
    for layer, colour in enumerate([(90, 120, 90), (60, 95, 70), (40, 70, 50)]):
        base = 230 + layer * 60
        xs = np.arange(0, WIDTH + 16, 16)
        ys = base + 40 * np.sin(xs / (90 + 30 * layer) + layer) + rng.normal(0, 6, xs.size)
        ridge = list(zip(xs.tolist(), ys.tolist(), strict=True))
        draw.polygon([(0, HEIGHT), *ridge, (WIDTH, HEIGHT)], fill=colour)
    for _ in range(1800):  # brush strokes
        x, y0 = rng.integers(0, WIDTH), rng.integers(0, HEIGHT)
        r, g, b = canvas.getpixel((int(x), int(y0)))
        jitter = rng.integers(-25, 26, 3)
        angle, length = rng.uniform(-0.5, 0.5), rng.integers(6, 18)
        end = (x + length * np.cos(angle), y0 + length * np.sin(angle))
        tint = tuple(int(np.clip(c + j, 0, 255)) for c, j in zip((r, g, b), jitter, strict=True))
        draw.line((x, y0, *end), width=int(rng.integers(2, 5)), fill=tint)
    return canvas.filter(ImageFilter.SMOOTH)


if __name__ == "__main__":
    out = Path(__file__).with_name("sample-artwork.png")
    paint().save(out, optimize=True)
    print(out)
