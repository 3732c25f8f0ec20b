"""What a mimic's model makes of a picture: each defended family's own VAE decoder turning
the latent of the original and of the glazed picture, as a typical upload stores them (the
1024 px view, a real JPEG at q75: cloak.as_posted, the pictures the after-upload shift is
taken on), and of the target at that view, back into a picture. A diffusion model
fine-tuned on the glazed file is taught its latent: an incomplete cloak decodes like the
original, a working one drifts toward the target.

The sheet (`preview_sheet`) sets them out one row per family, columns original / glazed /
target, each labelled; a sheet made with models that give no protection says so in a red
band across its foot.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from glaze.options import DEFEND

from . import fullres
from .cloak import as_posted, see, style_target
from .extractors import Extractor
from .geometry import upload_view
from .models import ModelBundle
from .pixels import image_array, image_tensor
from .settings import CloakSettings
from .sources import ModelLoadError

COLUMNS = ("original", "glazed", "target")
CELL = 256  # the long side of each picture on the sheet
MARGIN, LABEL_HEIGHT, TITLE_HEIGHT, STAMP_HEIGHT = 12, 22, 28, 48
INK, PAPER, STAMP = (20, 20, 20), (245, 245, 240), (200, 0, 0)


@dataclass
class PreviewRow:
    family: str  # a DEFEND choice
    shift: float | None  # the glazed picture's shift after a typical upload, if known
    pictures: tuple[np.ndarray, ...]  # decoded, H x W x 3 uint8, in COLUMNS order

    @property
    def label(self) -> str:
        said = f"{self.family.upper()} ({DEFEND.choices[self.family]})"
        return said if self.shift is None else f"{said}: after-upload shift {self.shift:.0%}"


@dataclass
class Preview:
    rows: list[PreviewRow]
    left_out: dict[str, str] = field(default_factory=dict)  # family -> why it has no row
    stamp: str | None = None  # what the models are, where they give no protection


def same_size(shape: tuple[int, int], glazed: np.ndarray) -> None:
    """Refuse a glazed picture that is not the size of the original (`shape`)."""
    if tuple(glazed.shape[:2]) != tuple(shape):
        raise ValueError(f"the original is {shape[1]}x{shape[0]}, the glazed picture "
                         f"{glazed.shape[1]}x{glazed.shape[0]}: give the original it was "
                         "made from")


def posted_pictures(bundle: ModelBundle, seen: fullres.Seen, glazed: np.ndarray,
                    target: torch.Tensor, settings: CloakSettings) -> list[np.ndarray]:
    """The original (as `see` gives it), the `glazed` picture and the `target` as a typical
    upload delivers them (cloak.as_posted), 8-bit: what `cloak` keeps in its result
    (`CloakResult.posted`), made again from the files."""
    same_size(seen.shape, glazed)
    delivered = fullres.seen(glazed, bundle.device, seen.factor).image
    upload = upload_view(seen.shape, bundle.size_multiple(settings.extractors))
    return [image_array(picture)
            for picture in as_posted(upload, seen.image, delivered, target.to(bundle.device))]


def decoded(bundle: ModelBundle, phi: Extractor, pictures: Sequence[np.ndarray]
            ) -> list[np.ndarray]:
    """Each 8-bit picture through `phi`'s encoder and decoder."""
    out = []
    with torch.no_grad():
        for picture in pictures:
            pixels = (image_tensor(picture).to(bundle.device) * 2 - 1).to(phi.dtype)
            with bundle.compute():
                latent = phi.latent(pixels)
                out.append(image_array(phi.decode(latent).float()))
    return out


def preview_posted(bundle: ModelBundle, posted: Sequence[np.ndarray], families: Sequence[str],
                   shifts: Mapping[str, float] | None = None) -> Preview:
    """The preview of pictures as posted (posted_pictures: original, glazed, target) for
    each of `families` whose decoder the bundle holds; the others are left out, saying why.
    `shifts`: each family's after-upload shift, for the labels."""
    rows, left_out = [], {}
    for family in families:
        try:
            decoding = decoding_extractor(bundle, family)
        except (ModelLoadError, OSError, ValueError) as error:
            left_out[family] = f"its decoder could not be loaded: {error}"
            continue
        if decoding is None:
            left_out[family] = "its model was built without a decoder"
            continue
        rows.append(PreviewRow(family, (shifts or {}).get(family),
                               tuple(decoded(bundle, decoding, posted))))
        del decoding  # a decoder loaded for the preview is released with it
    return Preview(rows, left_out, bundle.protection_note)


def decoding_extractor(bundle: ModelBundle, family: str) -> Extractor | None:
    """`family`'s extractor with its decoder: the bundle's own where it kept the decoder
    (the demo, SD's pipeline VAE, TAEF2), else the whole VAE loaded again from where the
    encoder came from, for this preview only (the loss keeps the encoder alone resident);
    None where there is nothing to load it from."""
    phi = bundle.extractor(family)
    if phi.can_decode:
        return phi
    if phi.whole is None:
        return None
    model = phi.whole().to(bundle.device).requires_grad_(False).eval()
    return type(phi)(family, model, phi.source)


def preview_of_files(bundle: ModelBundle, original: np.ndarray, glazed: np.ndarray,
                     record: Mapping) -> Preview:
    """The preview of a picture cloaked earlier, from its record (engine/provenance.py):
    the target remade from the original with the record's style, working size and seed (as
    the cloak made it), the families it defended, their shifts after a typical upload."""
    same_size(original.shape[:2], glazed)  # before the style transfer's work
    settings = CloakSettings(work_size=record["work_size"], seed=record["seed"],
                             defend=",".join(record["defend"]))
    seen = see(original, settings, bundle)
    target = style_target(bundle, seen, record["target_style"], settings)
    return preview_posted(bundle, posted_pictures(bundle, seen, glazed, target, settings),
                          list(settings.extractors), record.get("shifts_after_upload"))


def preview_sheet(found: Preview) -> Image.Image:
    """The preview as one picture: a title row of COLUMNS, then one row per family, each
    labelled; at its foot, the stamp of models that give no protection."""
    if not found.rows:
        raise ValueError("no family's decoder is available: " + "; ".join(
            f"{family}: {why}" for family, why in found.left_out.items()))
    height, width = found.rows[0].pictures[0].shape[:2]
    scale = CELL / max(height, width)
    cell = (max(1, round(width * scale)), max(1, round(height * scale)))
    row_height = LABEL_HEIGHT + cell[1] + MARGIN
    rows_bottom = TITLE_HEIGHT + len(found.rows) * row_height
    sheet = Image.new("RGB", (MARGIN + len(COLUMNS) * (cell[0] + MARGIN),
                              rows_bottom + MARGIN + (STAMP_HEIGHT if found.stamp else 0)),
                      PAPER)
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(14)
    for column, title in enumerate(COLUMNS):
        draw.text((MARGIN + column * (cell[0] + MARGIN), MARGIN // 2), title, INK, font)
    for index, row in enumerate(found.rows):
        top = TITLE_HEIGHT + index * row_height
        draw.text((MARGIN, top + 2), row.label, INK, font)
        for column, picture in enumerate(row.pictures):
            shown = Image.fromarray(picture).resize(cell, Image.Resampling.LANCZOS)
            sheet.paste(shown, (MARGIN + column * (cell[0] + MARGIN), top + LABEL_HEIGHT))
    if found.stamp:
        stamp_band(sheet, rows_bottom, "DEMO: random models, NO protection"
                   if "DEMO" in found.stamp else "NO protection: measurement models")
    return sheet


def stamp_band(sheet: Image.Image, top: int, text: str) -> None:
    """`text` in red across the sheet's width, in a band of its own from `top` down, so
    that it is never cropped off the pictures nor hides them."""
    draw = ImageDraw.Draw(sheet)
    size = STAMP_HEIGHT - 8
    font = ImageFont.load_default(size)
    while size > 10 and draw.textlength(text, font=font) > sheet.width - 2 * MARGIN:
        size -= 2
        font = ImageFont.load_default(size)
    draw.rectangle((0, top, sheet.width, sheet.height), fill=STAMP)
    left, _, right, _ = draw.textbbox((0, 0), text, font=font)
    draw.text(((sheet.width - (right - left)) // 2, top + (sheet.height - top - size) // 2 - 2),
              text, PAPER, font)
