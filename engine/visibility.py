"""How visible a cloak is where a painter looks: a just-noticeable-difference (JND) map of
the original, and figures of a cloaked image against it.

The JND model is the classical spatial one of X. Yang et al. ("Motion-compensated residue
preprocessing in video coding based on just-noticeable-distortion profile", IEEE TCSVT
15(6), 2005), built on C.-H. Chou and Y.-C. Li ("A perceptually tuned subband image coder
based on the measure of just-noticeable-distortion profile", IEEE TCSVT 5(6), 1995):

- luminance adaptation: the eye sees a smaller change on mid-grey than in the dark, from
  the background luminance (a weighted 5 x 5 mean);
- texture masking: busy regions hide more, in proportion to the largest of four
  directional gradients, except along contours (Canny edges where edges are sparse),
  which stay sensitive, so that line art keeps hard edges;
- the two combined by the nonlinear additivity model for masking (NAMM).

PSNR, the other figure beside these, is fullres.pixel_change's.

It needs no downloaded weights, so it holds everywhere, the demo and tests included; it is
local, unlike LPIPS's average over the picture, so a budget spent evenly cannot hide a
visible pattern on a flat sky. Values are in [0, 1] units (grey levels / 255), on the
image's luminance (BT.601 luma of the R'G'B' values, as the model's own 8-bit grey levels).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import kornia
import numpy as np
import torch
import torch.nn.functional as F

from .fullres import row_strips
from .pixels import to_unit

# Chou and Li's background-luminance weights and their four directional gradient operators.
BACKGROUND = torch.tensor([[1, 1, 1, 1, 1], [1, 2, 2, 2, 1], [1, 2, 0, 2, 1], [1, 2, 2, 2, 1],
                           [1, 1, 1, 1, 1]], dtype=torch.float32) / 32
GRADIENTS = torch.tensor([
    [[0, 0, 0, 0, 0], [1, 3, 8, 3, 1], [0, 0, 0, 0, 0], [-1, -3, -8, -3, -1], [0, 0, 0, 0, 0]],
    [[0, 0, 1, 0, 0], [0, 8, 3, 0, 0], [1, 3, 0, -3, -1], [0, 0, -3, -8, 0], [0, 0, -1, 0, 0]],
    [[0, 0, 1, 0, 0], [0, 0, 3, 8, 0], [-1, -3, 0, 3, 1], [0, -8, -3, 0, 0], [0, 0, -1, 0, 0]],
    [[0, 1, 0, -1, 0], [0, 3, 0, -3, 0], [0, 8, 0, -8, 0], [0, 3, 0, -3, 0], [0, 1, 0, -1, 0]],
], dtype=torch.float32)[:, None] / 16
TEXTURE_SLOPE = 0.117  # eta: grey levels of JND per grey level of gradient
EDGE_WEIGHT = 0.1  # texture masking kept along edges
# An edge is a contour where edges cover under this share of the 9 x 9 window around it.
EDGE_WINDOW, CONTOUR_DENSITY = 9, 0.25
OVERLAP = 0.3  # C: how much the two maskings overlap (NAMM)
# A region is flat where the original's local standard deviation (a 7 x 7 window) is under
# this many grey levels: sky, cel-shaded fills, paper.
FLAT_BELOW = 2.0 / 255
WINDOW = 7
# Rows read beyond a strip of a large image so that its maps are the whole image's (the
# 5 x 5 filters, Canny's blur and suppression, the 9 x 9 contour density, the 7 x 7 windows;
# Canny's hysteresis can reach further, and only along edges, where the map is smaller).
HALO = 16


def luma(images: torch.Tensor) -> torch.Tensor:
    """N x 3 x H x W in [0, 1] -> N x 1 x H x W (BT.601 weights)."""
    weights = torch.tensor([0.299, 0.587, 0.114], device=images.device).view(1, 3, 1, 1)
    return (images * weights).sum(1, keepdim=True)


def _filtered(grey: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    padded = F.pad(grey, (2, 2, 2, 2), mode="replicate")
    return F.conv2d(padded, kernel.to(grey.device, grey.dtype))


@torch.no_grad()
def jnd_map(images: torch.Tensor) -> torch.Tensor:
    """The visibility threshold of each pixel of N x 3 x H x W images in [0, 1]: N x 1 x H x W,
    in [0, 1] units."""
    grey = luma(images.float()) * 255
    background = _filtered(grey, BACKGROUND[None, None])
    dark = 17 * (1 - torch.sqrt(background.clamp_min(0) / 127)) + 3
    bright = 3 / 128 * (background - 127) + 3
    luminance = torch.where(background <= 127, dark, bright)
    gradient = _filtered(grey, GRADIENTS).abs().amax(1, keepdim=True)
    edges = kornia.filters.canny(grey / 255, low_threshold=0.05, high_threshold=0.15)[1]
    # Contours (line art, the border of a fill) stay sensitive; in dense texture Canny fires
    # everywhere, and there the texture masks as it does elsewhere.
    density = kornia.filters.box_blur(edges, (EDGE_WINDOW, EDGE_WINDOW), "replicate")
    edges = kornia.morphology.dilation(edges * (density < CONTOUR_DENSITY),
                                       torch.ones(3, 3, device=grey.device))
    # Full protection on the (dilated) contour, fading out beside it.
    near = torch.maximum(edges, kornia.filters.gaussian_blur2d(edges, (7, 7), (1.5, 1.5)))
    weight = 1 - (1 - EDGE_WEIGHT) * near
    texture = TEXTURE_SLOPE * gradient * weight
    return (luminance + texture - OVERLAP * torch.minimum(luminance, texture)) / 255


def local_std(images: torch.Tensor, window: int = WINDOW) -> torch.Tensor:
    """Each channel's standard deviation over a window around each pixel."""
    mean = kornia.filters.box_blur(images, (window, window), "replicate")
    square = kornia.filters.box_blur(images ** 2, (window, window), "replicate")
    return (square - mean ** 2).clamp_min(0).sqrt()


def flat_mask(images: torch.Tensor) -> torch.Tensor:
    """N x 1 x H x W: where the original is flat (every channel's local deviation small)."""
    return local_std(images.float()).amax(1, keepdim=True) < FLAT_BELOW


@dataclass(frozen=True)
class Visibility:
    """How visible a change is, measured against the original."""

    over_jnd: float  # share of covered pixels changed beyond their JND (any channel)
    flat_share: float  # share of covered pixels in flat regions
    flat_ssim: float | None  # mean SSIM over flat regions (None: none)
    flat_texture: float | None  # the change's mean local deviation there, grey levels

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Tally:
    """Sums of the per-pixel figures over covered pixels, added up strip by strip."""

    seen: float = 0.0
    over: float = 0.0
    flat: float = 0.0
    ssim: float = 0.0
    texture: float = 0.0

    @torch.no_grad()
    def add(self, original: torch.Tensor, changed: torch.Tensor, coverage: torch.Tensor | None,
            rows: slice = slice(None)) -> None:
        """Count `rows` of `changed` against `original` (N x 3 x H x W in [0, 1]); the other
        rows only give the windows around them. `coverage` (N x 1 x H x W in [0, 1], e.g.
        alpha) leaves out what is not seen."""
        original, changed = original.float(), changed.float()
        seen = torch.ones_like(original[:, :1]) if coverage is None else (coverage > 0).float()
        difference = changed - original
        over = difference.abs().amax(1, keepdim=True) > jnd_map(original) + 1e-6
        flat = flat_mask(original).float() * seen
        ssim = kornia.metrics.ssim(original, changed, WINDOW).mean(1, keepdim=True)
        texture = local_std(difference).amax(1, keepdim=True) * 255

        def total(values: torch.Tensor) -> float:
            return float(values[..., rows, :].sum())

        self.seen += total(seen)
        self.over += total(over.float() * seen)
        self.flat += total(flat)
        self.ssim += total(ssim * flat)
        self.texture += total(texture * flat)

    def result(self) -> Visibility:
        seen = max(self.seen, 1.0)
        if self.flat == 0:
            return Visibility(self.over / seen, 0.0, None, None)
        return Visibility(self.over / seen, self.flat / seen, self.ssim / self.flat,
                          self.texture / self.flat)


def visibility(original: torch.Tensor, changed: torch.Tensor,
               coverage: torch.Tensor | None = None) -> Visibility:
    """Figures of `changed` against `original` (N x 3 x H x W in [0, 1]); `coverage`
    (N x 1 x H x W in [0, 1], e.g. alpha) leaves out what is not seen."""
    tally = Tally()
    tally.add(original, changed, coverage)
    return tally.result()


def haloed_strip(image: np.ndarray, rows: slice) -> tuple[torch.Tensor, torch.Tensor, slice]:
    """`rows` of `image` (H x W x 3|4) and HALO rows either side, as the picture's own colours
    (1 x 3 x h x w in [0, 1]) and its coverage (1 x 1 x h x w), with where `rows` lie in them."""
    top, bottom = max(rows.start - HALO, 0), min(rows.stop + HALO, image.shape[0])
    colours, coverage = to_unit(image[top:bottom])
    colours = torch.from_numpy(np.clip(colours, 0, 1)).permute(2, 0, 1)[None]
    return colours, torch.from_numpy(coverage)[None, None], slice(rows.start - top,
                                                                  rows.stop - top)


def full_visibility(source: np.ndarray, changed: np.ndarray) -> Visibility:
    """The figures of `changed` against `source` (H x W x 3|4 of a supported sample type,
    alike) at full resolution, a strip of rows at a time, on the picture's own colours."""
    tally = Tally()
    for rows in row_strips(*source.shape[:2]):
        before, coverage, inner = haloed_strip(source, rows)
        after, _, _ = haloed_strip(changed, rows)
        tally.add(before, after, coverage, inner)
    return tally.result()
