"""Image files in and out: PNG, JPEG, WebP and TIFF, with EXIF and ICC profile kept.

Every refusal is an ImageFileError with a message meant for the artist; an output file is
written whole or not at all. An output carries the record of what made it
(engine/provenance.py), put there by glaze/stamp.py as the plug-ins' exports put it.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, PngImagePlugin, UnidentifiedImageError

from glaze.stamp import (
    RECORD_KEY,
    file_sha256,
    published,
    read_text_record,
    record_text,
    sidecar_path,
)

from .geometry import check_size

FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".tif": "TIFF",
           ".tiff": "TIFF"}
# Grey images are widened to RGB(A); other modes are refused with a hint.
MODES = {"RGB": "RGB", "RGBA": "RGBA", "L": "RGB", "LA": "RGBA"}
JPEG_QUALITY = 95
# The save options, by format. PNG, WebP (lossless, and `exact`: the colour under alpha 0
# is kept too) and TIFF store the pixels exactly; JPEG moves them, so what it stores is
# measured (`as_stored`). PNG's zlib level 3 wrote a 4096 px painting 3.6x faster than
# the default level 6 (2.2 s against 8.1 s), for a file 4% larger.
SAVE_OPTIONS = {"PNG": {"compress_level": 3},
                 "JPEG": {"quality": JPEG_QUALITY, "subsampling": 0},
                 "WEBP": {"lossless": True, "exact": True},
                 "TIFF": {"compression": "tiff_adobe_deflate"}}
LOSSY = ("JPEG",)
ORIENTATION = 0x0112  # the EXIF tag


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
        bits = _stored_bits(image)
        if bits > 8:  # Pillow would hand over 8 bits of them without a word
            raise ImageFileError(
                f"{path}: {bits}-bit samples are not supported yet (reading "
                "them as 8-bit would lose precision); save it as 8-bit RGB or RGBA first")
        frames = getattr(image, "n_frames", 1)
        if frames > 1 and image.format != "MPO":  # a camera JPEG's extra frames are previews
            raise ImageFileError(
                f"{path}: the file holds {frames} frames or pages (animated or multi-page); "
                "Glaze cloaks single images: save the one you want on its own")
        try:
            image.load()
        except (OSError, SyntaxError) as error:
            raise ImageFileError(f"{path}: the file is truncated or damaged ({error})") from None
        # Upright, as a viewer shows it and a mimic's training script loads it; the output is
        # written upright with the orientation tag removed (the rest of EXIF kept).
        turned = _orientation(image) != 1
        upright = ImageOps.exif_transpose(image) if turned else image  # no copy otherwise
        converted = upright.convert(MODES[image.mode]) if image.mode in ("L", "LA") else upright
        return ImageFile(pixels=_array(converted), exif=upright.info.get("exif"),
                         icc_profile=image.info.get("icc_profile"))


def _array(image: Image.Image, band_bytes: int = 16 << 20) -> np.ndarray:
    """The image's pixels as a writable array, copied in bands of rows: numpy's view of a
    Pillow image is a read-only copy of its bytes, and a writable copy of that would hold
    the image three times over at once."""
    width, height = image.size
    pixels = np.empty((height, width, len(image.getbands())), np.uint8)
    rows = max(1, band_bytes // max(1, pixels[0].nbytes))
    for top in range(0, height, rows):
        bottom = min(top + rows, height)
        pixels[top:bottom] = np.asarray(image.crop((0, top, width, bottom)))
    return pixels


def _stored_bits(image: Image.Image) -> int:
    """Bits per sample as the file stores them: Pillow opens 16-bit RGB(A) PNG and TIFF as
    8-bit modes, and only the decoder's raw mode ("RGB;16B") tells."""
    bits = 8
    for tile in image.tile:
        args = tile[3]  # the decoder's arguments: its raw mode first
        raw = args if isinstance(args, str) else next(
            (arg for arg in args or () if isinstance(arg, str)), "")
        if ";16" in raw or ";32" in raw:
            bits = max(bits, 32 if ";32" in raw else 16)
    return bits


def output_format(path: str | Path) -> str:
    try:
        return FORMATS[Path(path).suffix.lower()]
    except KeyError:
        raise ImageFileError(f"{path}: unsupported output type; use one of "
                             f"{', '.join(sorted(FORMATS))}") from None


def _encodable(path: Path, pixels: np.ndarray) -> tuple[str, Image.Image]:
    """The output format for `path` and `pixels` as an image it can store."""
    fmt = output_format(path)
    image = Image.fromarray(pixels)
    if fmt == "JPEG" and image.mode == "RGBA":
        raise ImageFileError(f"{path}: JPEG has no transparency; choose PNG, WebP or TIFF")
    return fmt, image


def as_stored(path: str | Path, pixels: np.ndarray) -> np.ndarray:
    """The pixels that `write_image(path, pixels)` stores, as a reader decodes them:
    `pixels` themselves for the lossless formats; for JPEG, the decoding of an encoding
    made in memory with the same settings (metadata does not change the pixels)."""
    fmt, image = _encodable(Path(path), pixels)
    if fmt not in LOSSY:
        return pixels
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **SAVE_OPTIONS[fmt])
    with Image.open(buffer) as stored:
        return np.asarray(stored.convert(image.mode))


def write_image(path: str | Path, pixels: np.ndarray, like: ImageFile | None = None,
                note: str | None = None, record: dict | None = None) -> None:
    """Write `pixels` (uint8) to `path`, typed by its suffix, keeping `like`'s metadata.

    `note` is stored as a text comment where the format has one (PNG, JPEG); `record`
    (what made the output) in the file, or beside it for WebP and TIFF.
    """
    path = Path(path)
    fmt, image = _encodable(path, pixels)
    options: dict = dict(SAVE_OPTIONS[fmt])
    if like is not None and like.exif:
        options["exif"] = like.exif
    if like is not None and like.icc_profile:
        options["icc_profile"] = like.icc_profile
    if fmt == "JPEG" and (note or record is not None):  # one comment: the record, if any
        options["comment"] = note if record is None else record_text(record)
    elif fmt == "PNG" and (note or record is not None):
        info = PngImagePlugin.PngInfo()
        if note:
            info.add_text("Comment", note)
        if record is not None:
            info.add_text(RECORD_KEY, record_text(record))
        options["pnginfo"] = info
    try:  # the record goes in with the pixels: published need not rewrite the file
        with published(path, record, embedded=True) as temporary:
            image.save(temporary, format=fmt, **options)
    except OSError as error:
        raise ImageFileError(f"{path}: cannot write the output "
                             f"({error.strerror or error})") from None


def read_record(path: str | Path) -> dict | None:
    """The record of what made the output at `path`, if it carries one."""
    path = Path(path)
    sidecar = sidecar_path(path)
    try:
        if sidecar.is_file():
            found = read_text_record(sidecar.read_text())
            if found is None or found.pop("output_sha256", None) != file_sha256(path):
                return None  # the image was replaced since
            return found
        with Image.open(path) as image:
            if image.format == "JPEG":  # a painting program may add a comment of its own
                texts = [data for marker, data in image.applist if marker == "COM"]
            else:
                texts = [getattr(image, "text", {}).get(RECORD_KEY)]
    except (OSError, ValueError, SyntaxError):
        return None
    return next(filter(None, map(read_text_record, texts)), None)


def _orientation(image: Image.Image) -> int:
    """The EXIF orientation (1: stored upright; 5 to 8 turn the picture by 90 degrees)."""
    return image.getexif().get(ORIENTATION, 1)


def upright_size(path: str | Path) -> tuple[int, int]:
    """(width, height) of the image as it is shown, as read_image returns it (EXIF
    orientations 5 to 8 turn it by 90 degrees); (0, 0) for a file that cannot be opened."""
    try:
        with Image.open(path) as image:
            return image.size[::-1] if _orientation(image) in (5, 6, 7, 8) else image.size
    except OSError:
        return (0, 0)


def is_complete(path: str | Path, size: tuple[int, int]) -> bool:
    """True if `path` holds a whole, decodable image of `size` (width, height)."""
    try:
        with Image.open(path) as image:
            image.load()
            return image.size == size
    except (OSError, SyntaxError, ValueError):
        return False
