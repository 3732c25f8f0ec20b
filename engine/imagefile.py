"""Image files in and out: PNG, JPEG, WebP and TIFF, with EXIF and ICC profile kept.

Every refusal is an ImageFileError with a message meant for the artist; an output file is
written whole or not at all.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, PngImagePlugin, UnidentifiedImageError

from .geometry import check_size
from .storage import atomic_path

FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".tif": "TIFF",
           ".tiff": "TIFF"}
# Grey images are widened to RGB(A); other modes are refused with a hint.
MODES = {"RGB": "RGB", "RGBA": "RGBA", "L": "RGB", "LA": "RGBA"}
JPEG_QUALITY = 95


class ImageFileError(ValueError):
    """An input or output file that cannot be used; the message says why."""


@dataclass
class ImageFile:
    pixels: np.ndarray  # H x W x 3|4 uint8
    exif: bytes | None
    icc_profile: bytes | None


def read_image(path: str | Path) -> ImageFile:
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            raise ImageFileError(f"{path}: the file is empty (0 bytes)")
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(path)
    except UnidentifiedImageError:
        raise ImageFileError(f"{path}: not an image, or a format other than PNG, JPEG, WebP "
                             "or TIFF") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageFileError(f"{path}: the image is too large to process") from None
    except OSError as error:
        raise ImageFileError(f"{path}: cannot read the file ({error.strerror or error})") from None
    with image:
        width, height = image.size
        try:
            check_size((height, width))
        except ValueError as error:
            raise ImageFileError(f"{path}: {error}") from None
        if image.mode not in MODES:
            raise ImageFileError(
                f"{path}: colour mode {image.mode} is not supported (palette, CMYK and "
                "high-bit-depth files are not); save it as 8-bit RGB or RGBA first")
        try:
            image.load()
        except (OSError, SyntaxError) as error:
            raise ImageFileError(f"{path}: the file is truncated or damaged ({error})") from None
        converted = image.convert(MODES[image.mode]) if image.mode in ("L", "LA") else image
        return ImageFile(pixels=np.asarray(converted).copy(), exif=image.info.get("exif"),
                         icc_profile=image.info.get("icc_profile"))


def output_format(path: str | Path) -> str:
    try:
        return FORMATS[Path(path).suffix.lower()]
    except KeyError:
        raise ImageFileError(f"{path}: unsupported output type; use one of "
                             f"{', '.join(sorted(FORMATS))}") from None


def write_image(path: str | Path, pixels: np.ndarray, like: ImageFile | None = None,
                note: str | None = None) -> None:
    """Write `pixels` (uint8) to `path`, typed by its suffix, keeping `like`'s metadata.

    `note` is stored as a text comment where the format has one (PNG, JPEG).
    """
    path = Path(path)
    fmt = output_format(path)
    image = Image.fromarray(pixels)
    options: dict = {}
    if like is not None and like.exif:
        options["exif"] = like.exif
    if like is not None and like.icc_profile:
        options["icc_profile"] = like.icc_profile
    if fmt == "JPEG":
        if image.mode == "RGBA":
            raise ImageFileError(f"{path}: JPEG has no transparency; choose PNG, WebP or TIFF")
        options.update(quality=JPEG_QUALITY, subsampling=0)
        if note:
            options["comment"] = note
    elif fmt == "PNG" and note:
        info = PngImagePlugin.PngInfo()
        info.add_text("Comment", note)
        options["pnginfo"] = info
    elif fmt == "WEBP":
        options.update(quality=JPEG_QUALITY, method=6)
    elif fmt == "TIFF":
        options["compression"] = "tiff_adobe_deflate"
    try:
        with atomic_path(path) as temporary:
            image.save(temporary, format=fmt, **options)
    except OSError as error:
        raise ImageFileError(f"{path}: cannot write the output "
                             f"({error.strerror or error})") from None


def is_complete(path: str | Path, size: tuple[int, int]) -> bool:
    """True if `path` holds a whole, decodable image of `size` (width, height)."""
    try:
        with Image.open(path) as image:
            image.load()
            return image.size == size
    except (OSError, SyntaxError, ValueError):
        return False
