"""The evaluation harness on the demo bundle: real tiny models, no downloads.

Every number here comes from tiny random models: the tests check the mechanics (the attack
trains and reloads, the metric counts right, each countermeasure does what it says, budgets
hold, reruns reuse finished work), never protection.
"""

import json

import numpy as np
import pytest
import torch
from conftest import painting
from PIL import Image

from glaze.cli import main
from glaze.engine.evaluation import conditions, countermeasures, mimicry, style_metric
from glaze.engine.evaluation.run import EvalConfig, plan
from glaze.engine.evaluation.synthetic import write_artist
from glaze.engine.settings import CloakSettings
from glaze.engine.sources import ModelLoadError
from glaze.options import DEFEND

STYLE = "Impressionism painting by Claude Monet"
TINY = mimicry.MimicSettings(steps=6, lr=1e-2, resolution=64, sample_steps=2,
                             images_per_caption=1, seeds=(0,), guidance=1.0)


def works(count: int = 4) -> list[np.ndarray]:
    return [painting(64, 64, seed=seed) for seed in range(count)]


@pytest.fixture(params=["sd", "sdxl"])
def mimic(request, bundle):
    """Each family a mimic fine-tunes, demo-sized: the bundle's own SD, a tiny SDXL."""
    return mimicry.load_mimic(request.param, bundle)


@torch.no_grad()
def unet_output(mimic) -> torch.Tensor:
    unet = mimic.pipeline.unet
    generator = torch.Generator().manual_seed(1)
    latents = torch.randn(1, 4, 8, 8, generator=generator)
    text = torch.randn(1, 77, unet.config.cross_attention_dim, generator=generator)
    added = None
    if mimic.family == "sdxl":  # pooled text and size/crop ids
        added = {"text_embeds": torch.randn(1, 32, generator=generator),
                 "time_ids": torch.tensor([[64.0, 64.0, 0.0, 0.0, 64.0, 64.0]])}
    return unet(latents, torch.tensor([500]), text, added_cond_kwargs=added).sample


def test_lora_finetune_changes_the_unet_and_reloads_from_its_file(mimic, tmp_path):
    before = unet_output(mimic)
    unet = mimic.pipeline.unet
    keys = set(unet.state_dict())
    folder = mimicry.finetune(mimic, works(), ["a work by zqx"] * 4, TINY, tmp_path / "lora")
    assert (folder / "pytorch_lora_weights.safetensors").is_file()
    assert torch.equal(unet_output(mimic), before)  # the adapter is removed after saving
    assert set(unet.state_dict()) == keys  # and peft's wrappers with it
    with mimicry.loaded_lora(mimic, folder):
        tuned = unet_output(mimic)
    with mimicry.loaded_lora(mimic, folder):
        again = unet_output(mimic)
    assert not torch.allclose(tuned, before, atol=1e-4)
    assert torch.allclose(tuned, again)
    assert torch.equal(unet_output(mimic), before)
    assert set(unet.state_dict()) == keys


def test_generate_makes_images_per_prompt_and_seed(mimic, tmp_path):
    folder = mimicry.finetune(mimic, works(), ["a work by zqx"] * 4, TINY, tmp_path / "lora")
    settings = mimicry.MimicSettings(**{**TINY.__dict__, "seeds": (0, 1),
                                        "images_per_caption": 2})
    with mimicry.loaded_lora(mimic, folder) as pipe:
        images = mimicry.generate(pipe, ["a work by zqx", "a sketch by zqx"], settings)
    assert len(images) == 2 * 2 * 2
    assert images[0].shape == (64, 64, 3) and images[0].dtype == np.uint8
    assert not np.array_equal(images[0], images[2])  # another seed, another image


def test_the_sdxl_mimic_is_conditioned_as_sdxl_training_scripts_do(bundle):
    mimic = mimicry.load_mimic("sdxl", bundle)
    assert mimic.demo and mimic.pipeline.vae is not bundle.pipeline.vae
    # The demo SDXL trains on the latents of the demo's SDXL-shaped extractor.
    image = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    latent = mimic.pipeline.vae.encode(image * 2 - 1).latent_dist.mean
    assert torch.allclose((latent - 0.0) * 0.13025, bundle.encode(image, "sdxl"), atol=1e-5)
    wide = painting(64, 128)  # center crop of a 2:1 image: 32 px off on the left
    views = mimicry.training_views([wide], 32)
    text, added = mimic.conditioning(["a work by zqx"], views, [wide.shape[:2]])
    assert text.shape == (1, 77, 64) and added["text_embeds"].shape == (1, 32)
    assert added["time_ids"].tolist() == [[64.0, 128.0, 0.0, 16.0, 32.0, 32.0]]
    sd = mimicry.load_mimic("sd", bundle)
    assert sd.conditioning(["x"], views, [wide.shape[:2]])[1] == {}
    with pytest.raises(ValueError, match="unknown mimic"):
        mimicry.load_mimic("midjourney", bundle)


def test_split_and_captions(tmp_path):
    names = [f"w{i}.png" for i in range(10)]
    training, held_out = mimicry.split(names, seed=3)
    assert len(training) == 8 and len(held_out) == 2 and not set(training) & set(held_out)
    assert mimicry.split(names, seed=3) == (training, held_out)
    (tmp_path / "a.txt").write_text("a red barn at dusk\n")
    texts = mimicry.captions([tmp_path / "a.png", tmp_path / "b.png"], "zqx artist")
    assert texts == ["a red barn at dusk, an artwork in the style of zqx artist",
                     "an artwork in the style of zqx artist"]


def test_genre_shift_rate_on_constructed_probabilities():
    labels = ["a", "b", "c", "d", "e"]
    probabilities = np.array([
        [0.50, 0.20, 0.10, 0.10, 0.10],  # a first: not shifted
        [0.10, 0.40, 0.30, 0.15, 0.05],  # a fourth: shifted
        [0.20, 0.30, 0.25, 0.15, 0.10],  # a third: not shifted at k=3
    ])
    assert style_metric.shift_rate(probabilities, labels, "a") == pytest.approx(1 / 3)
    assert style_metric.shift_rate(probabilities, labels, "a", k=1) == pytest.approx(2 / 3)
    assert style_metric.shift_rate(probabilities, labels, "e") == 1.0
    assert style_metric.top_genres(probabilities, labels)[1] == ["b", "c", "d"]
    assert style_metric.artist_genre(probabilities, labels) == "b"
    with pytest.raises(ValueError):
        style_metric.shift_rate(probabilities[:0], labels, "a")


def test_genre_list_and_demo_clip():
    labels = style_metric.genres()
    assert len(labels) == 40 == len(set(labels))
    assert {"Impressionism", "Ukiyo-e", "Anime", "Pixel art"} <= set(labels)
    clip = style_metric.demo_clip()
    probabilities = style_metric.genre_probabilities(clip, works(3), labels)
    assert probabilities.shape == (3, 40)
    assert np.allclose(probabilities.sum(axis=1), 1, atol=1e-5)
    one = works(1)
    assert style_metric.similarity(clip, one, style_metric.centroid(clip, one)) == \
        pytest.approx(1, abs=1e-5)  # an image is its own one-image centroid
    assert style_metric.text_embeddings(clip, ["a", "b"]).shape[0] == 2
    assert {"a", "b"} <= set(clip.texts)  # embedded once, then taken from the Clip
    assert torch.equal(style_metric.text_embeddings(clip, ["b"])[0], clip.texts["b"])


def mean_change(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float64) - b).mean())


def test_jpeg_lower_quality_changes_more():
    image = painting(96, 96, seed=4)
    changes = [mean_change(countermeasures.jpeg(image, q), image) for q in (95, 75, 30)]
    assert 0 < changes[0] < changes[1] < changes[2]


def test_gaussian_noise_has_the_requested_sigma():
    grey = np.full((128, 128, 3), 128, np.uint8)  # mid-grey: no clipping
    for sigma in (0.02, 0.05):
        noisy = countermeasures.gaussian_noise(grey, sigma, seed=1)
        measured = (noisy.astype(np.float64) - grey).std() / 255
        assert measured == pytest.approx(sigma, rel=0.05)


def test_resize_round_trip_blurs_detail_and_keeps_size():
    image = painting(96, 96, seed=2)
    rng = np.random.default_rng(0)
    detailed = np.clip(image + rng.integers(-40, 40, image.shape), 0, 255).astype(np.uint8)
    half = countermeasures.resize_round_trip(detailed, 0.5)
    quarter = countermeasures.resize_round_trip(detailed, 0.25)
    assert half.shape == detailed.shape == quarter.shape
    assert 0 < mean_change(half, detailed) < mean_change(quarter, detailed)
    flat = np.full((64, 64, 3), 77, np.uint8)
    assert np.array_equal(countermeasures.resize_round_trip(flat, 0.5), flat)


def test_noisy_upscaling_is_skipped_without_weights_and_runs_with_them(bundle):
    image = painting(64, 64)
    measure = countermeasures.Countermeasure("noisy_upscale", 0.1)
    with pytest.raises(countermeasures.Skipped, match="no upscaler weights given"):
        countermeasures.apply(image, measure, bundle, upscaler=None)
    upscaler = countermeasures.load_upscaler("demo")
    out = countermeasures.apply(image, measure, bundle, upscaler, upscale_steps=2)
    assert out.shape == image.shape and out.dtype == np.uint8
    assert mean_change(out, image) > 1


def test_impress_lowers_the_reconstruction_loss_within_its_lpips_bound(bundle):
    image = painting(64, 64, seed=5)

    def consistency(array: np.ndarray) -> float:
        x = torch.from_numpy(array).permute(2, 0, 1)[None].float() / 255
        with torch.no_grad():
            return float((x - countermeasures.reconstruct(bundle, x)).square().mean())

    def lpips(a: np.ndarray, b: np.ndarray) -> float:
        x, y = (torch.from_numpy(v).permute(2, 0, 1)[None].float() / 255 for v in (a, b))
        with torch.no_grad():
            return bundle.perceptual_distance(x, y).item()

    bound = 2e-3  # on the demo LPIPS's scale (its random backbone scores tiny values)
    purified = countermeasures.impress(image, bundle, bound, steps=15, lr=0.02, work_size=64)
    assert consistency(purified) < 0.9 * consistency(image)
    assert lpips(purified, image) <= bound + 2e-4  # + 8-bit rounding
    held = countermeasures.impress(image, bundle, 1e-4, steps=15, lr=0.02, work_size=64)
    assert lpips(held, image) <= 1e-4 + 2e-4
    assert mean_change(held, image) < mean_change(purified, image)


@pytest.mark.parametrize("kind", ["glaze", "noise", "photoguard", "mist"])
def test_each_condition_stays_within_its_linf_cap(bundle, kind):
    image = painting(64, 64, seed=6)
    condition = conditions.Condition(kind, budget=0.05)
    base = CloakSettings(work_size=64, quality=8)
    out, shifts = conditions.protect(image, condition, bundle, base, STYLE)
    assert (shifts is not None) is (kind == "glaze")  # only the cloak has a style target
    if shifts is not None:
        assert set(shifts) == set(DEFEND.choices)
    change = np.abs(out.astype(np.int16) - image).max() / 255
    cap = condition.settings(base).linf
    assert 0 < change <= cap + 0.5 / 255
    if kind in ("photoguard", "mist"):  # the latent moved toward the attack's fixed target
        x, y = (torch.from_numpy(v).permute(2, 0, 1)[None].float() / 255 for v in (image, out))
        goal = bundle.encode(conditions.target_image(kind, 64, 64))
        with torch.no_grad():
            before = torch.linalg.vector_norm(bundle.encode(x) - goal)
            after = torch.linalg.vector_norm(bundle.encode(y) - goal)
        assert after < before


def test_noise_is_scaled_down_to_the_lpips_budget(bundle):
    image = painting(64, 64, seed=6)

    def lpips(out):
        x, y = (torch.from_numpy(v).permute(2, 0, 1)[None].float() / 255 for v in (image, out))
        with torch.no_grad():
            return float(bundle.perceptual_distance(y, x)[0])

    full = conditions.random_noise(image, 8 / 255, seed=0)
    budget = lpips(full) / 4
    held = conditions.random_noise(image, 8 / 255, seed=0, bundle=bundle, budget=budget)
    assert 0 < lpips(held) <= budget * 1.05  # + 8-bit rounding
    assert np.abs(held.astype(np.int16) - image).max() < np.abs(full.astype(np.int16) - image).max()


def test_quick_keeps_what_the_user_asked_for():
    from glaze import evaluate
    from glaze.cli import build_parser

    def resolved(*flags):
        return evaluate.resolve(build_parser().parse_args(["eval", "a", "-o", "r", *flags]))

    quick = resolved("--quick")
    assert (quick.seeds, quick.budgets, quick.images_per_caption) == ([0], [0.05], 1)
    asked = resolved("--quick", "--seeds", "0", "1", "2", "--images-per-caption", "3",
                     "--budgets", "0.03")
    assert (asked.seeds, asked.budgets, asked.images_per_caption) == ([0, 1, 2], [0.03], 3)
    assert "--quick" in evaluate.equivalent_command(quick)
    real = evaluate.config_from(resolved("--model", "default"))  # the library's own defaults
    library = EvalConfig(artist=real.artist, results=real.results, model="default",
                         command=real.command)
    assert real == library


def test_a_quick_run_on_real_models_is_labelled_as_measuring_nothing():
    from glaze.engine.evaluation import report

    summary = {"models": {"bundle": "some/model", "clip": "some/clip", "upscaler": None,
                          "demo": False},
               "seeds": {"run": 0, "generation": [0]}, "meaningful": False}
    assert report.headline(summary).startswith("These numbers carry NO meaning about "
                                               "protection: a --quick run")
    assert report.headline({**summary, "meaningful": True}).startswith("Glaze evaluation.")


def test_works_with_the_same_stem_are_kept_apart(tmp_path):
    from glaze.engine.evaluation.run import read_works

    Image.fromarray(painting(32, 32, seed=1)).save(tmp_path / "cat.png")
    Image.fromarray(painting(32, 32, seed=2)).save(tmp_path / "cat.jpg", quality=95)
    works = read_works(tmp_path)
    assert set(works) == {"cat.png", "cat.jpg"}
    assert not np.array_equal(works["cat.png"], works["cat.jpg"])


def test_the_command_line_lists_every_condition():
    from glaze import evaluate

    assert evaluate.KINDS == conditions.KINDS


def test_unprotected_and_partial_conditions():
    assert conditions.Condition("unprotected", budget=0.1).name == "unprotected"
    assert conditions.Condition("glaze", 0.05, 0.25).name == "glaze-p0.05-25pct"
    names = [f"w{i}" for i in range(8)]
    assert len(conditions.covered(names, 0.25)) == 2
    assert len(conditions.covered(names, 0.5)) == 4
    assert conditions.covered(names, 0.5) == conditions.covered(names, 0.5)
    with pytest.raises(ValueError):
        conditions.Condition("blur")


def test_plan_covers_every_condition_and_countermeasure(tmp_path):
    cells = plan(EvalConfig(artist=tmp_path, results=tmp_path))
    names = [cell.name for cell in cells]
    assert len(names) == len(set(names))
    kinds = {cell.condition.kind for cell in cells}
    assert kinds == set(conditions.KINDS)
    measured = {cell.countermeasure.kind for cell in cells}
    assert measured == set(countermeasures.KINDS)
    shares = {cell.condition.share for cell in cells if cell.condition.kind == "glaze"}
    assert shares == {1.0, 0.5, 0.25}


def test_glaze_eval_end_to_end_on_the_demo_bundle_and_resume(tmp_path, capsys):
    artist, results = tmp_path / "artist", tmp_path / "results"
    write_artist(artist, count=6, size=64)
    argv = ["eval", str(artist), "-o", str(results), "--quick", "--target", STYLE,
            "--steps", "4", "--cloak-steps", "3", "--impress-steps", "3",
            "--upscale-steps", "2", "--sample-steps", "2", "--no-progress"]
    assert main(argv) == 0
    first = capsys.readouterr().out
    assert first.startswith("These numbers carry NO meaning about protection")
    markdown = (results / "results.md").read_text()
    assert markdown.splitlines()[0].startswith("These numbers carry NO meaning about protection")
    assert "demo-seed0" in markdown.splitlines()[0] and "demo-clip" in markdown.splitlines()[0]
    summary = json.loads((results / "results.json").read_text())
    assert next(iter(summary)) == "note" and "NO meaning" in summary["note"]
    assert summary["meaningful"] is False and summary["command"].startswith("glaze eval")
    conditions_run = {cell["condition"]["kind"] for cell in summary["cells"]}
    assert conditions_run == set(conditions.KINDS)
    measures_run = {cell["countermeasure"]["kind"] for cell in summary["cells"]}
    assert measures_run == set(countermeasures.KINDS) and not summary["skipped"]
    genre = summary["artist"]["genre"]
    for cell in summary["cells"]:  # the rate is the share of images whose top 3 miss the genre
        missed = [genre not in top for top in cell["top_genres"]]
        assert len(missed) == cell["images"] > 0
        assert cell["shift_rate"] == pytest.approx(float(np.mean(missed)))
    assert (results / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for cell in summary["cells"]:  # each defended extractor's shift, where there is a target
        shifts = cell["extractor_shifts"]
        if cell["condition"]["kind"] == "glaze":
            assert set(shifts) == set(DEFEND.choices), cell["name"]
        else:
            assert shifts is None, cell["name"]
    assert "| SDXL feature shift |" in markdown

    # Partial shares take their cloaked works from the full-share set: no second cloak.
    protected = sorted(path.name for path in (results / "protected").iterdir())
    assert "glaze-p0.05" in protected and not [name for name in protected if "pct" in name]
    cells = sorted((results / "cells").glob("*.json"))
    assert len(cells) == len(summary["cells"]) == 12
    stamps = {path: path.stat().st_mtime_ns for path in cells}
    assert main(argv) == 0
    assert f"0 cell(s) computed, {len(cells)} reused" in capsys.readouterr().out
    assert {path: path.stat().st_mtime_ns for path in cells} == stamps

    cells[0].unlink()  # an interrupted run: only the missing cell is computed again
    assert main(argv) == 0
    assert f"1 cell(s) computed, {len(cells) - 1} reused" in capsys.readouterr().out

    # Another mimicry setting recomputes every cell but reuses the protected works.
    protected = sorted((results / "protected").rglob("*.png"))
    stamps = {path: path.stat().st_mtime_ns for path in protected}
    assert main([*argv, "--lr", "0.001"]) == 0
    assert f"{len(cells)} cell(s) computed, 0 reused" in capsys.readouterr().out
    assert {path: path.stat().st_mtime_ns for path in protected} == stamps


def test_an_sdxl_mimic_loads_from_a_saved_folder(bundle, tmp_path):
    demo = mimicry.load_mimic("sdxl", bundle)
    demo.pipeline.save_pretrained(tmp_path / "sdxl")
    loaded = mimicry.load_mimic("sdxl", bundle, str(tmp_path / "sdxl"))
    assert not loaded.demo and loaded.name == str(tmp_path / "sdxl")
    assert json.loads(loaded.identity)[2] == json.loads(demo.identity)[2]  # the same models
    assert torch.equal(unet_output(loaded), unet_output(demo))
    with pytest.raises(ModelLoadError, match="could not load the SDXL mimic"):
        mimicry.load_mimic("sdxl", bundle, str(tmp_path))  # a folder without a pipeline


def test_glaze_eval_mimics_with_sdxl_end_to_end(tmp_path, capsys):
    artist, results = tmp_path / "artist", tmp_path / "results"
    write_artist(artist, count=5, size=64)
    assert main(["eval", str(artist), "-o", str(results), "--mimic", "sdxl", "--quick",
                 "--target", STYLE, "--conditions", "unprotected", "glaze",
                 "--countermeasures", "jpeg:75", "--steps", "4", "--cloak-steps", "3",
                 "--sample-steps", "2", "--no-progress"]) == 0
    assert "mimic sdxl demo-sdxl" in capsys.readouterr().out  # the headline names it
    summary = json.loads((results / "results.json").read_text())
    assert summary["models"]["mimic_family"] == "sdxl" and summary["models"]["demo"]
    assert "--mimic sdxl" in summary["command"] and "--resolution 64" in summary["command"]
    glazed = [cell for cell in summary["cells"] if cell["condition"]["kind"] == "glaze"]
    assert glazed and all(set(cell["extractor_shifts"]) == set(DEFEND.choices)
                          for cell in glazed)
    assert all(cell["images"] > 0 for cell in summary["cells"])
    assert (results / "lora" / summary["cells"][0]["name"] /
            "pytorch_lora_weights.safetensors").is_file()


def test_without_the_eval_extra_glaze_eval_says_which_extra_to_install(tmp_path):
    """peft absent (as after a plain `pip install`): one line naming the extra."""
    import subprocess
    import sys

    from timing import scaled

    code = ("import sys; sys.modules['peft'] = None; from glaze.cli import main; "
            f"sys.exit(main(['eval', {str(tmp_path / 'artist')!r}, '--demo-artist', '-o', "
            f"{str(tmp_path / 'out')!r}, '--quick']))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=scaled(300))
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        "glaze eval needs peft, which the `eval` extra installs: pip install "
        "'glaze-for-painters[eval]' (in a checkout: pip install -e '.[eval]')"]
    assert not (tmp_path / "out").exists()
