"""Every output records what made it; a rerun keeps only outputs made as it asks."""

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import painting
from PIL import Image, ImageCms, PngImagePlugin

from glaze.cli import main
from glaze.engine.imagefile import read_record, write_image
from glaze.engine.models import BUNDLE_FILE
from glaze.engine.provenance import mismatch
from glaze.stamp import PNG_SIGNATURE, SIDECAR_SUFFIX, file_sha256, published

FAST = ["--quality", "2", "--work-size", "64", "--target", "Baroque painting by Caravaggio"]


@pytest.fixture
def artwork(tmp_path) -> Path:
    path = tmp_path / "art.png"
    Image.fromarray(painting(48, 64)).save(path)
    return path


@pytest.fixture
def real_looking_bundle(bundle, tmp_path) -> Path:
    """A folder without the demo label: what real weights look like to the CLI (its bundle
    file names its own extractors: no hub id is reachable here)."""
    folder = bundle.save(tmp_path / "plain")
    meta = json.loads((folder / BUNDLE_FILE).read_text())
    (folder / BUNDLE_FILE).write_text(json.dumps({**meta, "demo": False, "name": "plain"}))
    return folder


def test_a_demo_output_is_not_taken_for_a_real_models_output(artwork, real_looking_bundle,
                                                               capsys):
    output = artwork.with_name("art.glazed.png")
    assert main(["cloak", str(artwork), *FAST, "--model", "demo"]) == 0
    assert read_record(output)["demo"] is True
    capsys.readouterr()
    assert main(["cloak", str(artwork), *FAST, "--model", str(real_looking_bundle)]) == 0
    said = capsys.readouterr().out
    assert "replacing" in said and "model 'demo'" in said and "1 cloaked" in said
    made = read_record(output)
    assert made["demo"] is False and made["model"] == str(real_looking_bundle.resolve())
    assert made["protection_note"] is None and made["source_sha256"] == file_sha256(artwork)


def test_a_rerun_as_asked_skips_and_any_change_redoes(artwork, capsys):
    output = artwork.with_name("art.glazed.png")
    assert main(["cloak", str(artwork), *FAST]) == 0
    first = file_sha256(output)
    capsys.readouterr()
    assert main(["cloak", str(artwork), *FAST]) == 0
    assert "made as asked" in capsys.readouterr().out and file_sha256(output) == first
    for change in (["--seed", "3"], ["--intensity", "low"], ["--defend", "sd,flux"],
                   ["--target", "Cubism by Gris"]):
        assert main(["cloak", str(artwork), *FAST, *change]) == 0
        assert "replacing" in capsys.readouterr().out
    Image.fromarray(painting(48, 64, seed=5)).save(artwork)  # the source was repainted
    assert main(["cloak", str(artwork), *FAST, "--target", "Cubism by Gris"]) == 0
    assert "source sha256" in capsys.readouterr().out


def test_no_overwrite_keeps_another_runs_output_with_a_reason(artwork, capsys):
    output = artwork.with_name("art.glazed.png")
    assert main(["cloak", str(artwork), *FAST]) == 0
    kept = file_sha256(output)
    capsys.readouterr()
    assert main(["cloak", str(artwork), *FAST, "--seed", "9", "--no-overwrite"]) == 1
    said = capsys.readouterr().out
    assert "was made with seed 0, this run asks for 9; kept (--no-overwrite)" in said
    assert file_sha256(output) == kept


def test_an_output_without_a_record_is_redone(artwork, capsys):
    output = artwork.with_name("art.glazed.png")
    Image.fromarray(painting(48, 64)).save(output)  # the size matches; nothing says who made it
    assert main(["cloak", str(artwork), *FAST]) == 0
    assert "it has no record of what made it" in capsys.readouterr().out
    assert read_record(output) is not None


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".webp", ".tiff"])
def test_every_format_carries_its_record(tmp_path, suffix):
    path = tmp_path / f"out{suffix}"
    record = {"model": "demo", "demo": True, "protection_note": "NO protection here"}
    write_image(path, painting(16, 16), note="NO protection here", record=record)
    assert read_record(path) == record
    if suffix in (".png", ".jpg"):  # once, written with the pixels
        assert path.read_bytes().count(b'"protection_note"') == 1
    if suffix in (".webp", ".tiff"):  # a sidecar names the image it describes
        assert path.with_name(path.name + ".glaze.json").is_file()
        Image.fromarray(painting(16, 16, seed=2)).save(path)  # replaced by another program
        assert read_record(path) is None
    if suffix == ".jpg":
        assert "NO protection" in Image.open(path).info["comment"].decode()


def test_inspect_prints_the_record_and_fails_without_one(artwork, capsys):
    assert main(["cloak", str(artwork), *FAST]) == 0
    capsys.readouterr()
    assert main(["inspect", str(artwork.with_name("art.glazed.png"))]) == 0
    said = capsys.readouterr().out
    assert said.startswith("NOTE: DEMO bundle") and "target_style: Baroque painting" in said
    # How visible the cloak is, as the cloak measured it at full size.
    made = read_record(artwork.with_name("art.glazed.png"))
    assert made["format"] == 6 and 0 <= made["visibility"]["over_jnd"] <= 0.01
    assert (f"Visibility: {made['visibility']['over_jnd']:.1%} of pixels over their "
            "just-noticeable difference") in said and f"PSNR {made['psnr']:.1f} dB" in said
    # Why the cloak stopped and what it took (FAST: a number of steps, all run).
    assert (made["stopped"], made["goal"], made["steps_run"]) == ("cap", None, 2)
    assert (f"The cloak ran its most steps in 2 steps, {made['encoder_passes']} encoder "
            "passes.") in said and made["encoder_passes"] > 2 * 5
    assert main(["inspect", str(artwork)]) == 1
    assert "no Glaze record" in capsys.readouterr().out


def test_an_output_finished_early_is_not_taken_for_the_run_asked(artwork, capsys):
    assert main(["cloak", str(artwork), *FAST]) == 0
    output = artwork.with_name("art.glazed.png")
    made = read_record(output)
    assert mismatch(made, made) is None  # as asked, all of it
    assert "finished early" in mismatch({**made, "stopped": "cancelled"}, made)


def test_the_report_names_the_model_it_was_made_with(artwork, tmp_path):
    assert main(["cloak", str(artwork), *FAST, "--report", str(tmp_path / "r.json")]) == 0
    report = json.loads((tmp_path / "r.json").read_text())["images"][0]["report"]
    assert report["model"] == "demo"


RECORD = {"format": 4, "model": "demo", "demo": True, "protection_note": "NO protection"}


def encoded_by_another_program(path: Path) -> np.ndarray:
    """An image as a painting program writes it: a PNG with text and ICC chunks before its
    data, split over several IDAT chunks; a JPEG with JFIF and EXIF segments and a comment
    of its own ("Created with GIMP")."""
    pixels = painting(40, 56)
    image = Image.fromarray(pixels)
    if path.suffix == ".png":
        info = PngImagePlugin.PngInfo()
        info.add_text("Software", "a painting program")
        image.save(path, pnginfo=info, icc_profile=ImageCms.ImageCmsProfile(
            ImageCms.createProfile("sRGB")).tobytes(), compress_level=1)
    elif path.suffix == ".jpg":
        exif = Image.Exif()
        exif[0x0131] = "a painting program"
        image.convert("RGB").save(path, quality=90, exif=exif, comment="Created with GIMP")
    else:
        image.save(path, lossless=True)
    with Image.open(path) as stored:
        return np.asarray(stored.convert("RGBA"))


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".webp"])
def test_a_file_another_program_encoded_carries_the_record_unchanged(tmp_path, suffix):
    """What Export Glazed does in Krita and GIMP: the host encodes, `published` adds the
    record without re-encoding (the pixels and the host's own metadata stay)."""
    path = tmp_path / f"export{suffix}"
    with published(path, RECORD) as temporary:
        assert temporary.suffix == suffix and temporary.parent == tmp_path  # for the exporter
        pixels = encoded_by_another_program(temporary)
        encoded = temporary.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == (
        [path.name, path.name + SIDECAR_SUFFIX] if suffix == ".webp" else [path.name])
    assert read_record(path) == RECORD
    with Image.open(path) as stored:
        assert np.array_equal(np.asarray(stored.convert("RGBA")), pixels)
        if suffix == ".png":
            assert stored.text["Software"] == "a painting program" and stored.info["icc_profile"]
        if suffix == ".jpg":
            assert stored.getexif()[0x0131] == "a painting program"
            assert stored.applist[0][0] == "APP0"  # JFIF still leads
    if suffix == ".webp":
        assert path.read_bytes() == encoded
    else:  # only the record was added
        assert len(path.read_bytes()) > len(encoded)


def test_a_failed_export_leaves_nothing_and_the_old_file_as_it_was(tmp_path):
    path = tmp_path / "export.webp"
    with published(path, RECORD) as temporary:
        encoded_by_another_program(temporary)
    before = path.read_bytes()
    with pytest.raises(OSError), published(path, {**RECORD, "demo": False}) as temporary:
        temporary.write_bytes(b"half an image")
        raise OSError("the exporter failed")
    assert path.read_bytes() == before and read_record(path) == RECORD
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name, path.name + SIDECAR_SUFFIX]


def test_a_file_that_is_no_png_or_jpeg_is_refused_where_it_claims_to_be_one(tmp_path):
    path = tmp_path / "broken.png"
    with pytest.raises(ValueError, match="without image data"), \
            published(path, RECORD) as temporary:
        temporary.write_bytes(PNG_SIGNATURE + b"\0\0\0\0IEND\xaeB`\x82")
    assert not list(tmp_path.iterdir())
