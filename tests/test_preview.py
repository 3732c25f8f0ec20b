"""What a mimic's model makes of a picture: each family's decoder on the original, the
glazed picture and the target, after a typical upload, set out on a labelled sheet."""

import numpy as np
import pytest
import torch
from conftest import painting
from PIL import Image

from glaze.cli import main
from glaze.engine import taef2
from glaze.engine.cloak import cloak, cloak_toward, see
from glaze.engine.models import ModelLoadError, load_bundle
from glaze.engine.pixels import image_tensor
from glaze.engine.preview import (
    CELL,
    COLUMNS,
    STAMP,
    posted_pictures,
    preview_posted,
    preview_sheet,
)
from glaze.engine.settings import CloakSettings
from glaze.options import DEFEND

TARGET = "Baroque painting by Caravaggio"
FAST = CloakSettings(quality=2, work_size=64)


def red_pixels(sheet: Image.Image) -> int:
    pixels = np.asarray(sheet).reshape(-1, 3).astype(int)
    return int(np.sum(np.all(np.abs(pixels - STAMP) < 40, axis=1)))


def test_the_demo_sheet_has_a_row_per_family_and_its_stamp(bundle):
    original = painting(48, 80)
    result = cloak(original, bundle, TARGET, FAST)
    shifts = {name: shift.after_upload for name, shift in result.report.extractors.items()}
    found = preview_posted(bundle, result.posted, list(bundle.extractors), shifts)
    assert [row.family for row in found.rows] == list(DEFEND.choices) and not found.left_out
    for row in found.rows:
        assert len(row.pictures) == len(COLUMNS)
        assert {picture.shape for picture in row.pictures} == {(48, 80, 3)}  # upload size
        assert row.label.startswith(row.family.upper()) and "after-upload shift" in row.label
        assert not np.array_equal(row.pictures[0], row.pictures[2])  # the target differs
    sheet = preview_sheet(found)
    assert sheet.width == 12 + 3 * (CELL + 12)
    assert sheet.height > len(DEFEND.choices) * CELL * 48 / 80
    assert red_pixels(sheet) > 200  # "DEMO: random models, NO protection" across it
    found.stamp = None  # what a sheet of protecting models looks like: no stamp
    assert red_pixels(preview_sheet(found)) < red_pixels(sheet) / 10


def test_a_decoder_left_out_of_the_loaded_models_is_loaded_for_the_preview_alone(
        bundle, tmp_path):
    """Weights loaded for the loss keep the encoder alone: the preview loads the whole VAE
    from the same place for its rows and releases it; where nothing can be loaded, the
    family's row is left out with one line saying why."""
    loaded = load_bundle(bundle.save(tmp_path / "demo"))
    assert not loaded.extractors["flux"].can_decode and loaded.extractors["sd"].can_decode
    original = painting(32, 32)
    target = image_tensor(painting(32, 32, seed=3))
    posted = posted_pictures(loaded, see(original, FAST, loaded), original, target, FAST)
    found = preview_posted(loaded, posted, ["sd", "flux", "qwen"])
    assert [row.family for row in found.rows] == ["sd", "flux", "qwen"] and not found.left_out
    assert not loaded.extractors["flux"].can_decode  # not kept resident
    in_memory = preview_posted(bundle, posted, ["flux"])  # the same VAE, kept in memory
    assert np.array_equal(found.rows[1].pictures[2], in_memory.rows[0].pictures[2])

    def gone():
        raise ModelLoadError("the folder is gone")

    loaded.extractors["flux"].whole, loaded.extractors["qwen"].whole = gone, None
    posted = posted_pictures(loaded, see(original, FAST, loaded), original, target, FAST)
    found = preview_posted(loaded, posted, ["sd", "flux", "qwen"])
    assert [row.family for row in found.rows] == ["sd"]
    assert found.left_out == {"flux": "its decoder could not be loaded: the folder is gone",
                              "qwen": "its model was built without a decoder"}
    found.rows.clear()
    with pytest.raises(ValueError, match="flux: its decoder could not be loaded"):
        preview_sheet(found)


def test_a_cloaked_picture_decodes_closer_to_its_target_on_taef2(taef2_weights, pytestconfig):
    """On the trained measurement encoder, after a typical upload: what FLUX.2's family
    makes of the glazed picture is closer to what it makes of the target than what it makes
    of the original is, as that family sees it (the decoded pictures' latents). In pixels it
    is not: within the perceptual bound the decoder renders the moved latent as texture
    (docs/engine.md, "What a model sees")."""
    bundle = taef2.measurement_bundle(taef2_weights, "cpu", "fp32", decoder=True)
    picture = Image.open(pytestconfig.rootpath / "examples/sample-artwork.png").convert("RGB")
    original = np.asarray(picture.resize((192, 136)))
    target = image_tensor(np.asarray(picture.rotate(180).resize((192, 136))))
    settings = CloakSettings(quality=30, work_size=192, defend="flux2", resize_robust=False)
    glazed = cloak_toward(original, bundle, target, settings)
    found = preview_posted(bundle, posted_pictures(bundle, see(original, settings, bundle),
                                                   glazed, target, settings), ["flux2"])
    with torch.no_grad():
        before, after, aimed = (bundle.encode(image_tensor(decoded), "flux2")
                                for decoded in found.rows[0].pictures)
    distance = {"original": float(torch.mean((before - aimed) ** 2)),
                "glazed": float(torch.mean((after - aimed) ** 2))}
    assert distance["glazed"] < 0.9 * distance["original"], distance
    assert "TAEF2" in found.stamp


def test_cloak_preview_writes_the_sheet_and_preview_rebuilds_it(tmp_path, capsys):
    """`glaze cloak --preview` beside the output; `glaze preview ORIGINAL GLAZED` remakes
    the same sheet from the record; a batch run again takes neither for an input."""
    (tmp_path / "work").mkdir()
    source = tmp_path / "work" / "art.png"
    Image.fromarray(painting(48, 64)).save(source)
    options = ["--quality", "2", "--work-size", "64", "--target", TARGET, "--in-process"]
    assert main(["cloak", str(source), "--preview", *options]) == 0
    sheet = tmp_path / "work" / "art.glazed.preview.png"
    first = np.asarray(Image.open(sheet))
    assert red_pixels(Image.open(sheet).convert("RGB")) > 200  # the demo stamp
    assert main(["preview", str(source), str(tmp_path / "work" / "art.glazed.png"),
                 "-o", str(tmp_path / "again.png")]) == 0
    assert np.array_equal(np.asarray(Image.open(tmp_path / "again.png")), first)
    capsys.readouterr()
    assert main(["cloak", str(tmp_path / "work"), *options]) == 0  # again: all done
    said = capsys.readouterr().out
    assert "0 cloaked, 1 skipped, 0 failed" in said and "preview.png" not in said, said
    assert main(["preview", str(source), str(source)]) == 2  # no record: nothing to show
    assert "carries no Glaze record" in capsys.readouterr().err
