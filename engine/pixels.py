"""Conversion between the pixel arrays hosts send and the float RGB the engine works on.

The engine accepts H x W x 3 (RGB) or H x W x 4 (RGBA) arrays of uint8, uint16, float16 or
float32. Alpha is never computed on: it is carried through untouched, bit for bit.
"""

from __future__ import annotations

import numpy as np
import torch

SUPPORTED_DTYPES = (np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.float16),
                    np.dtype(np.float32))


def check_pixels(image: np.ndarray) -> None:
    """Raise ValueError with a clear message if `image` is not a supported pixel array."""
    if not isinstance(image, np.ndarray):
        raise ValueError(f"expected a numpy array of pixels, got {type(image).__name__}")
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise ValueError(f"expected H x W x 3 (RGB) or H x W x 4 (RGBA) pixels, got shape "
                         f"{image.shape}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError("the image is empty (zero width or height)")
    if image.dtype not in SUPPORTED_DTYPES:
        raise ValueError(f"unsupported sample type {image.dtype}: use uint8, uint16, float16 or "
                         "float32")


def sample_scale(dtype: np.dtype) -> float:
    """The sample value that stands for 1.0: the integer maximum, or 1 for floats."""
    return float(np.iinfo(dtype).max) if dtype.kind == "u" else 1.0


def to_unit(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(H x W x 3 float32 RGB, H x W float32 coverage) of `image` (H x W x 3|4): the
    samples scaled to [0, 1] for integers (floats as given), alpha as a fraction in [0, 1]
    (1 where there is no alpha)."""
    scale = np.float32(sample_scale(image.dtype))
    rgb = image[..., :3].astype(np.float32) / scale
    if image.shape[2] == 4:
        coverage = np.clip(image[..., 3].astype(np.float32) / scale, 0.0, 1.0)
    else:
        coverage = np.ones(image.shape[:2], np.float32)
    return rgb, coverage


# Pixel buffers as hosts hand them over: rows of `stride` bytes, channels in `order`,
# little-endian samples. Krita gives B,G,R,A for integer depths; GIMP gives R,G,B,A.
SAMPLE_TYPES = {"u8": np.dtype("u1"), "u16": np.dtype("<u2"), "f16": np.dtype("<f2"),
                "f32": np.dtype("<f4")}


def _strided(buffer, layout: dict) -> np.ndarray:
    dtype = SAMPLE_TYPES[layout["sample"]]
    channels = len(layout["order"])
    height, width, stride = layout["height"], layout["width"], layout["stride"]
    if len(memoryview(buffer).cast("B")) < stride * height:
        raise ValueError(f"pixel buffer holds {len(memoryview(buffer).cast('B'))} bytes, "
                         f"its layout needs {stride * height}")
    return np.ndarray((height, width, channels), dtype, buffer,
                      strides=(stride, channels * dtype.itemsize, dtype.itemsize))


def from_buffer(buffer, layout: dict) -> np.ndarray:
    """A host's pixel buffer as an H x W x 4 RGBA array (a copy) in its own sample type."""
    pixels = _strided(buffer, layout)
    if layout["order"] == "BGRA":
        pixels = pixels[..., [2, 1, 0, 3]]
    return np.ascontiguousarray(pixels.astype(pixels.dtype.newbyteorder("=")))


def to_buffer(image: np.ndarray, layout: dict, like) -> bytearray:
    """`image` (H x W x 4 RGBA) written in `layout`, row padding copied from `like`."""
    out = bytearray(like)
    pixels = image[..., [2, 1, 0, 3]] if layout["order"] == "BGRA" else image
    _strided(out, layout)[...] = pixels
    return out


def image_tensor(image: np.ndarray) -> torch.Tensor:
    """8-bit H x W x 3|4 -> 1 x 3 x H x W float32 in [0, 1] (alpha dropped)."""
    rgb = np.array(image[..., :3], dtype=np.float32) / 255
    return torch.from_numpy(rgb).permute(2, 0, 1)[None]


def image_array(tensor: torch.Tensor) -> np.ndarray:
    """1 x 3 x H x W in [0, 1] -> 8-bit H x W x 3, rounded."""
    values = tensor[0].detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy()
    return np.rint(values * 255).astype(np.uint8)
