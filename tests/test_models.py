import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from glaze.engine.models import (
    BUNDLE_FILE,
    ModelLoadError,
    demo_bundle,
    load_bundle,
    pick_precision,
)
from glaze.engine.transfer import transfer_style


def test_demo_bundle_is_built_the_same_for_the_same_seed(bundle):
    images = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    assert torch.equal(demo_bundle().encode(images), bundle.encode(images))
    assert not torch.equal(demo_bundle(seed=1).encode(images), bundle.encode(images))
    assert bundle.demo and "NO protection" in bundle.protection_note


def test_demo_bundle_round_trips_through_the_real_loading_path(bundle, tmp_path):
    folder = bundle.save(tmp_path / "demo")
    assert (folder / "model_index.json").is_file() and (folder / BUNDLE_FILE).is_file()
    loaded = load_bundle(folder)
    assert loaded.demo and loaded.protection_note == bundle.protection_note
    assert loaded.identity == bundle.identity and loaded.generation == bundle.generation
    images = torch.rand(2, 3, 64, 96, generator=torch.Generator().manual_seed(2))
    assert torch.equal(loaded.encode(images), bundle.encode(images))
    noisy = (images + 0.05 * torch.randn_like(images)).clamp(0, 1)
    assert torch.equal(loaded.perceptual_distance(images, noisy),
                       bundle.perceptual_distance(images, noisy))
    style = "Baroque painting by Caravaggio"
    assert torch.equal(transfer_style(loaded, images, style, 0.5, seed=5),
                       transfer_style(bundle, images, style, 0.5, seed=5))


def test_a_diffusers_folder_without_bundle_file_is_a_real_bundle(bundle, tmp_path):
    folder = bundle.save(tmp_path / "plain")
    (folder / BUNDLE_FILE).unlink()
    loaded = load_bundle(folder)  # the LPIPS weights saved in the folder are used
    assert not loaded.demo and loaded.protection_note is None


HUB_SCRIPT = textwrap.dedent("""
    import sys
    from glaze.engine.models import ModelLoadError, load_bundle
    bundle = load_bundle("glaze-tests/tiny-sd")
    print("loaded", bundle.name, bundle.demo)
    try:
        load_bundle("glaze-tests/not-cached")
    except ModelLoadError as error:
        print("refused", error)
""")


def test_hub_id_loads_from_the_huggingface_cache_offline(bundle, tmp_path):
    snapshot = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--glaze-tests--tiny-sd"
    bundle.save(repo / "snapshots" / snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(snapshot)
    env = dict(os.environ, HF_HUB_CACHE=str(tmp_path / "hub"), HF_HUB_OFFLINE="1")
    done = subprocess.run([sys.executable, "-c", HUB_SCRIPT], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "loaded demo-seed0 True" in done.stdout
    assert "refused could not load the model bundle 'glaze-tests/not-cached'" in done.stdout


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
