import argparse
import io
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import png
import pytest
from conftest import painting, times_left
from PIL import Image, ImageCms
from timing import scaled

from glaze.cli import build_parser, main
from glaze.engine.imagefile import read_record

FAST = ["--quality", "2", "--work-size", "64", "--target", "Baroque painting by Caravaggio"]


def save(path: Path, pixels: np.ndarray, **options) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, **options)
    return path


def leftovers(folder: Path) -> list[str]:
    """Outputs or temporary files a failed run must not leave behind."""
    return sorted(p.name for p in folder.rglob("*") if ".glazed" in p.name or ".part" in p.name)


def exif_with_artist(name: str) -> bytes:
    exif = Image.Exif()
    exif[0x013B] = name  # Artist
    return exif.tobytes()


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".webp", ".tiff"])
def test_cloak_keeps_exif_and_icc(tmp_path, capsys, suffix):
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    source = save(tmp_path / f"art{suffix}", painting(96, 128), exif=exif_with_artist("Ada"),
                  icc_profile=icc)
    assert main(["cloak", str(source), *FAST]) == 0
    output = tmp_path / f"art.glazed{suffix}"
    with Image.open(output) as glazed, Image.open(source) as original:
        assert glazed.size == original.size
        assert glazed.info.get("icc_profile") == icc
        if suffix != ".tiff":  # Pillow keeps EXIF in PNG, JPEG and WebP files
            assert glazed.getexif().get(0x013B) == "Ada"
        assert not np.array_equal(np.asarray(glazed), np.asarray(original))
    printed = capsys.readouterr().out
    assert f"-> {output}" in printed and "NO protection" in printed


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".webp", ".tiff"])
def test_the_report_measures_the_file_as_written(tmp_path, capsys, suffix):
    source = save(tmp_path / f"art{suffix}", painting(64, 96, seed=3))
    report = tmp_path / "report.json"
    assert main(["cloak", str(source), "--report", str(report), *FAST]) == 0
    measured = json.loads(report.read_text())["images"][0]["report"]
    with Image.open(tmp_path / f"art.glazed{suffix}") as glazed, Image.open(source) as read:
        change = (np.asarray(glazed, np.float64) - np.asarray(read, np.float64)) / 255
    assert measured["linf"] == pytest.approx(np.abs(change).max(), abs=1e-6)
    psnr = 10 * np.log10(1 / np.mean(np.square(change)))
    assert measured["psnr"] == pytest.approx(psnr, abs=1e-3)
    printed = capsys.readouterr().out
    if suffix == ".jpg":  # encoding moved the cloaked pixels, and the report says by how much
        assert measured["encoding"]["format"] == "JPEG" and measured["encoding"]["linf"] > 0
        assert "JPEG encoding moved pixels by up to" in printed
    else:
        assert "encoding" not in measured
        assert measured["linf"] <= measured["linf_cap"] + 0.5 / 255  # the cap holds on disk


def test_an_exif_rotated_photo_is_cloaked_upright(tmp_path, capsys):
    stored = painting(48, 80)  # as the camera stored it: sideways
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to view
    exif[0x013B] = "Ada"
    source = save(tmp_path / "photo.jpg", stored, exif=exif.tobytes(), quality=95)
    assert main(["cloak", str(source), *FAST]) == 0
    with Image.open(tmp_path / "photo.glazed.jpg") as glazed:
        assert glazed.size == (48, 80)  # upright: what was optimized is what is shown
        assert glazed.getexif().get(0x0112) in (None, 1)  # no rotation left to apply
        assert glazed.getexif().get(0x013B) == "Ada"
        upright = np.rot90(np.asarray(Image.open(source)), k=-1)
        assert np.abs(np.asarray(glazed).astype(int) - upright).mean() < 6
    capsys.readouterr()
    assert main(["cloak", str(source), *FAST]) == 0  # a rerun knows the upright output
    assert "made as asked" in capsys.readouterr().out

def test_demo_outputs_carry_the_no_protection_note(tmp_path):
    png = save(tmp_path / "a.png", painting(64, 64))
    jpg = save(tmp_path / "b.jpg", painting(64, 64))
    assert main(["cloak", str(png), str(jpg), *FAST]) == 0
    with Image.open(tmp_path / "a.glazed.png") as image:
        assert "NO protection" in image.info["Comment"]
    with Image.open(tmp_path / "b.glazed.jpg") as image:
        assert b"NO protection" in image.info["comment"]


def test_rgba_alpha_survives_the_file_round_trip(tmp_path):
    pixels = painting(64, 96, channels=4)
    source = save(tmp_path / "layer.png", pixels)
    assert main(["cloak", str(source), *FAST]) == 0
    glazed = np.asarray(Image.open(tmp_path / "layer.glazed.png"))
    assert glazed.shape == pixels.shape
    assert np.array_equal(glazed[..., 3], pixels[..., 3])


@pytest.mark.parametrize("suffix", [".png", ".webp"])
def test_lossless_outputs_hold_the_cap_on_disk_and_keep_hidden_colours(tmp_path, suffix):
    pixels = painting(64, 96, channels=4)
    noise = np.random.default_rng(0).integers(0, 256, (64, 96, 3), dtype=np.uint8)
    pixels[:, :40, :3] = noise[:, :40]  # a noisy patch: what a lossy codec moves most
    pixels[20:40, 50:90, 3] = 0  # colours under full transparency, kept as they are
    source = save(tmp_path / f"layer{suffix}", pixels, **(
        {"lossless": True, "exact": True} if suffix == ".webp" else {}))
    assert main(["cloak", str(source), *FAST]) == 0
    glazed = np.asarray(Image.open(tmp_path / f"layer.glazed{suffix}"))
    change = np.abs(glazed[..., :3].astype(int) - pixels[..., :3])
    assert change.max() <= 8  # the default intensity's cap, 8/255, as decoded from disk
    hidden = pixels[..., 3] == 0
    assert np.array_equal(glazed[hidden], pixels[hidden])


def bad_inputs(folder: Path) -> dict[str, tuple[Path, str]]:
    text = folder / "notes.png"
    text.write_text("this is not an image")
    empty = folder / "empty.png"
    empty.touch()
    whole = io.BytesIO()
    Image.fromarray(painting(200, 200)).save(whole, format="PNG")
    truncated = folder / "truncated.png"
    truncated.write_bytes(whole.getvalue()[: len(whole.getvalue()) // 2])
    cmyk = folder / "cmyk.jpg"
    Image.new("CMYK", (64, 64), (10, 20, 30, 40)).save(cmyk)
    palette = folder / "palette.png"
    Image.fromarray(painting(64, 64)).convert("P").save(palette)
    huge = folder / "huge.png"
    Image.new("RGB", (9000, 2000)).save(huge)
    deep = {}
    for channels, name in ((3, "rgb16.png"), (4, "rgba16.png")):  # Pillow reads them as 8-bit
        samples = np.random.default_rng(channels).integers(0, 65536, (24, 32 * channels))
        with open(folder / name, "wb") as file:
            png.Writer(32, 24, bitdepth=16, greyscale=False,
                       alpha=channels == 4).write(file, samples.tolist())
        deep[name] = (folder / name, "16-bit samples are not supported yet")
    animated = folder / "animated.webp"
    frames = [Image.fromarray(painting(32, 32, seed=seed)) for seed in range(3)]
    frames[0].save(animated, save_all=True, append_images=frames[1:], duration=100)
    pages = folder / "pages.tif"
    frames[0].save(pages, save_all=True, append_images=frames[1:])
    return {
        **deep,
        "animated": (animated, "holds 3 frames or pages"),
        "multi-page": (pages, "holds 3 frames or pages"),
        "not an image": (text, "not an image"),
        "zero size": (empty, "empty (0 bytes)"),
        "truncated": (truncated, "truncated or damaged"),
        "cmyk": (cmyk, "colour mode CMYK is not supported"),
        "palette": (palette, "colour mode P is not supported"),
        "over the size limit": (huge, "limited to 8192 px"),
    }


def test_each_bad_input_gets_its_reason_and_no_output(tmp_path, capsys):
    cases = bad_inputs(tmp_path)
    good = save(tmp_path / "good.png", painting(64, 64))
    paths = [str(path) for path, _ in cases.values()]
    assert main(["cloak", *paths, str(good), *FAST]) == 1  # any failure: non-zero exit
    printed = capsys.readouterr().out.splitlines()
    for path, reason in cases.values():
        lines = [line for line in printed if line.startswith(f"FAILED {path}")]
        assert len(lines) == 1 and reason in lines[0], (path, printed)
    assert leftovers(tmp_path) == ["good.glazed.png"]  # the good image is still done


def test_unwritable_output_folder(tmp_path, capsys):
    source = save(tmp_path / "in" / "a.png", painting(64, 64))
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the output folder should be")
    assert main(["cloak", str(source), "-o", str(blocker / "out"), *FAST]) == 1
    line = [x for x in capsys.readouterr().out.splitlines() if x.startswith("FAILED")][0]
    assert str(source) in line and ("Not a directory" in line or "not a folder" in line)
    assert leftovers(tmp_path) == []


def test_an_existing_folder_that_cannot_be_written_fails_before_any_cloak(tmp_path, capsys):
    source = save(tmp_path / "a.png", painting(64, 64))
    # /proc/self exists, and nothing can create a file in it, root included
    assert main(["cloak", str(source), "-o", "/proc/self", *FAST]) == 1
    said = capsys.readouterr().out
    assert "cannot write into the output folder /proc/self" in said, said
    assert "NOTE: DEMO" not in said  # no image was cloaked first: no models were even loaded


def test_names_with_glazed_are_processed_unless_they_are_outputs(tmp_path, capsys):
    folder = tmp_path / "art"
    for name in ("sketch.glazed.v2.png", "glazed-pots.png", "cat.png"):
        save(folder / name, painting(48, 48))
    assert main(["cloak", str(folder), *FAST]) == 0
    made = sorted(p.name for p in folder.iterdir())
    assert made == ["cat.glazed.png", "cat.png", "glazed-pots.glazed.png", "glazed-pots.png",
                    "sketch.glazed.v2.glazed.png", "sketch.glazed.v2.png"], made
    capsys.readouterr()
    assert main(["cloak", str(folder), *FAST]) == 0  # the outputs are recognized as such
    assert capsys.readouterr().out.count("made as asked") == 3
    assert sorted(p.name for p in folder.iterdir()) == made


def test_a_killed_write_s_leftover_is_removed_by_the_next_write(tmp_path):
    source = save(tmp_path / "a.png", painting(64, 64))
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                           capture_output=True, text=True, check=True)
    stale = tmp_path / f".a.glazed.png.{int(ended.stdout)}.0badc0de.part"  # its writer is gone
    stale.write_bytes(b"half an image")
    live = tmp_path / f".a.glazed.png.{os.getpid()}.0badc0de.part"  # a write in progress
    live.write_bytes(b"being written")
    assert main(["cloak", str(source), *FAST]) == 0
    assert not stale.exists() and live.exists()


def test_missing_input_fails_clearly(tmp_path, capsys):
    assert main(["cloak", str(tmp_path / "nope.png"), *FAST]) == 1
    assert "no such file or folder" in capsys.readouterr().out


def test_batches_resume_and_redo_broken_outputs(tmp_path, capsys):
    first = save(tmp_path / "one.png", painting(64, 64, seed=1))
    second = save(tmp_path / "two.png", painting(64, 64, seed=2))
    report = tmp_path / "report.json"
    assert main(["cloak", str(tmp_path), "-o", str(tmp_path / "out"), *FAST]) == 0
    out_one = tmp_path / "out" / tmp_path.name / "one.glazed.png"
    out_two = out_one.with_name("two.glazed.png")
    stamp = out_one.stat().st_mtime_ns
    out_two.write_bytes(out_two.read_bytes()[:100])  # an output damaged since
    capsys.readouterr()
    assert main(["cloak", str(tmp_path), "-o", str(tmp_path / "out"), "--report", str(report),
                 *FAST]) == 0
    assert out_one.stat().st_mtime_ns == stamp
    data = json.loads(report.read_text())
    status = {Path(item["input"]).name: item["status"] for item in data["images"]}
    assert status == {"one.png": "skipped", "two.png": "done"}
    assert "NO protection" in data["protection_note"]
    done = [item for item in data["images"] if item["status"] == "done"][0]["report"]
    assert done["width"] == 64 and done["steps_run"] == 2 and "relative_shift" in done
    assert Image.open(out_two).size == Image.open(second).size
    assert first.exists()


def test_bad_settings_are_refused(tmp_path, capsys):
    source = save(tmp_path / "a.png", painting(64, 64))
    assert main(["cloak", str(source), "--intensity", "extreme"]) == 2
    assert "unknown intensity" in capsys.readouterr().err


def test_profile_command(tmp_path, capsys):
    assert main(["profile"]) == 0
    assert "no artist profiles yet" in capsys.readouterr().out
    assert main(["profile", "eve"]) == 1
    assert main(["profile", "eve", "--target", "Cubism painting by Juan Gris"]) == 0
    said = capsys.readouterr().out
    assert "target style: Cubism painting by Juan Gris" in said and "chosen by you" in said
    assert main(["profile", "eve", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["target_style"] == "Cubism painting by Juan Gris"
    assert main(["profile", "ada", "--target", "Baroque painting by Caravaggio"]) == 0
    capsys.readouterr()
    assert main(["profile"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "ada: Baroque painting by Caravaggio", "eve: Cubism painting by Juan Gris"]


def test_console_script_runs_the_demo(tmp_path):
    """The installed `glaze` command, as the README runs it."""
    source = save(tmp_path / "art.png", painting(64, 96))
    glaze = Path(sys.executable).with_name("glaze")
    done = subprocess.run([str(glaze), "cloak", str(source), "--quality", "2"],
                          capture_output=True, text=True, timeout=scaled(600),
                          env=os.environ.copy())
    assert done.returncode == 0, done.stderr
    assert str(tmp_path / "art.glazed.png") in done.stdout
    assert "NO protection" in done.stdout
    # Not a terminal: progress comes as lines (tqdm would draw nothing).
    assert "target style: 0% (" in done.stdout and "art.png: 0% (style transfer)" in done.stdout


def test_ctrl_c_finishes_the_picture_in_hand_and_a_second_stops(tmp_path):
    """The first Ctrl-C finishes the picture being cloaked with what it has made and leaves
    the rest of the batch; the output says so and its record too."""
    first, second = (save(tmp_path / f"{name}.png", painting(64, 64, seed=index))
                     for index, name in enumerate(("a", "b")))
    glaze = Path(sys.executable).with_name("glaze")
    child = subprocess.Popen(
        [str(glaze), "cloak", str(first), str(second), "--quality", "100000",
         "--work-size", "64", "--defend", "sd", "--target", "Baroque painting by Caravaggio"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    said = []
    for line in child.stdout:  # its first progress line: the cloak of a.png has begun
        said.append(line)
        if line.startswith("a.png: "):
            break
    child.send_signal(signal.SIGINT)
    out, err = child.communicate(timeout=scaled(300))
    printed = "".join(said) + out
    assert child.returncode == 130, err
    assert "finishing a.png:" in printed and "was finished early on request" in printed, printed
    assert "SKIPPED" in printed and "not started" in printed, printed
    assert "1 cloaked, 1 skipped, 0 failed" in printed
    made = read_record(tmp_path / "a.glazed.png")
    assert made["stopped"] == "cancelled" and made["steps_run"] < 100000
    assert leftovers(tmp_path) == ["a.glazed.png"]  # nothing of b, nothing half-written


def parsers(parser: argparse.ArgumentParser, path: tuple = ("glaze",)):
    """Every (command words, parser) under `parser`, sub-commands of sub-commands too."""
    yield " ".join(path), parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from parsers(sub, (*path, name))


def test_every_command_and_option_says_what_it_does_and_its_default():
    found, problems = {}, []
    for command, parser in parsers(build_parser()):
        found[command] = parser
        if not parser.description:
            problems.append(f"{command}: no description")
        formatter = parser._get_formatter()
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                problems += [f"{command} {choice.dest}: no help in the command list"
                             for choice in action._choices_actions if not choice.help]
                continue
            name = "/".join(action.option_strings) or action.dest
            if not action.help or action.help == argparse.SUPPRESS:
                problems.append(f"{command} {name}: no help")
            elif action.option_strings and action.nargs != 0 and not action.required \
                    and "(default" not in formatter._get_help_string(action):
                problems.append(f"{command} {name}: its help does not give its default")
    assert {"glaze cloak", "glaze eval", "glaze daemon start", "glaze uninstall",
            "glaze styles"} <= set(found)
    assert problems == []


def test_eval_help_gives_the_library_defaults():
    """The defaults eval's help spells out (to build the parser without torch) are the
    library's own."""
    from glaze.evaluate import library_defaults

    defaults = library_defaults()
    evaluate = dict(parsers(build_parser()))["glaze eval"]
    helps = {action.dest: action.help for action in evaluate._actions}
    for name in ("steps", "resolution", "images_per_caption", "sample_steps", "guidance",
                 "cloak_steps", "impress_steps", "upscale_steps"):
        assert f"(default: {defaults[name]}" in helps[name], name
    assert f"(default: {' '.join(map(str, defaults['seeds']))};" in helps["seeds"]
    assert f"(default: {' '.join(map(str, defaults['budgets']))};" in helps["budgets"]
    assert f"(default: {defaults['clip']};" in helps["clip"]
    from glaze.engine.sources import MIMIC_RESOLUTIONS, MIMIC_SOURCES

    assert f"(default: {MIMIC_SOURCES['sdxl']};" in helps["mimic_model"]
    assert f"{MIMIC_RESOLUTIONS['sdxl']} for sdxl" in helps["resolution"]


def test_progress_lines_show_the_time_left_and_it_falls(tmp_path, capsys, monkeypatch):
    from glaze import batch

    monkeypatch.setattr(batch, "LINE_EVERY_S", 0.0)  # every progress report as a line
    source = save(tmp_path / "art.png", painting(64, 64))
    assert main(["cloak", str(source), "--quality", "150", "--work-size", "64",
                 "--target", "Baroque painting by Caravaggio", "--defend", "sd"]) == 0
    printed = capsys.readouterr().out
    left = times_left(printed)
    assert len(left) == 150 and "cloak step 150 of at most 150" in printed, printed
    assert left[-1] < left[0], left
    assert "ran its most steps in 150 steps" in printed  # and why it stopped, at the end
