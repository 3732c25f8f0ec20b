"""TAEF2, the trained measurement encoder: built from its description, its weights load, it
reconstructs pictures, and a cloak measured with it says it gives no protection."""

import math

import numpy as np
import pytest
import torch
from conftest import painting
from PIL import Image

from glaze.engine import taef2
from glaze.engine.cloak import cloak
from glaze.engine.models import ModelLoadError
from glaze.engine.pixels import image_tensor
from glaze.engine.settings import CloakSettings

SAMPLE = "examples/sample-artwork.png"


def test_taef2_reconstructs_the_sample_painting(taef2_weights, pytestconfig):
    """Trained weights in the right architecture: decode(encode(x)) is close to x (random
    or misplaced weights give noise)."""
    encoder = taef2.load(taef2_weights)
    decoder = taef2.load(taef2_weights, taef2.DECODER_FILE)
    picture = Image.open(pytestconfig.rootpath / SAMPLE).convert("RGB").resize((256, 176))
    x = image_tensor(np.asarray(picture))
    with torch.no_grad():
        latent = encoder(x)
        decoded = decoder(latent).clamp(0, 1)
    assert latent.shape == (1, 32, 22, 32)
    psnr = -10 * math.log10(torch.mean((decoded - x) ** 2).item())
    assert psnr > 28, psnr


def test_missing_weights_are_one_line_that_names_the_folder(tmp_path):
    with pytest.raises(ModelLoadError, match=f"not at {tmp_path}"):
        taef2.load(tmp_path)
    with pytest.raises(ModelLoadError, match="GLAZE_TAEF2_WEIGHTS"):  # none found
        taef2.load(None)


def test_a_cloak_measured_with_taef2_says_it_gives_no_protection(taef2_weights):
    bundle = taef2.measurement_bundle(taef2_weights, "cpu", "fp32")
    assert list(bundle.extractors) == ["flux2"] and not bundle.demo
    settings = CloakSettings(work_size=64, quality=6, defend="flux2", resize_robust=False,
                             transforms=())
    report = cloak(painting(64, 96), bundle, "Baroque painting by Caravaggio", settings).report
    assert "NO protection" in report.protection_note and "TAEF2" in report.protection_note
    shift = report.extractors["flux2"]
    assert shift.distance_after < shift.distance_before
