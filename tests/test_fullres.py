"""The full-resolution path in strips: the same result as whole-image arithmetic, in bounded
memory."""

import tracemalloc

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import painting

from glaze.engine import CloakSettings, fullres
from glaze.engine.cloak import cloak

STYLE = "Impressionism painting by Claude Monet"


@pytest.fixture
def small_strips(monkeypatch):
    """Strips of a few rows, so that small images cross many strip boundaries."""
    monkeypatch.setattr(fullres, "STRIP_SAMPLES", 1000)


def whole_composite(image: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """The image over grey and its coverage, computed on the whole array at once."""
    scale = np.iinfo(image.dtype).max if image.dtype.kind == "u" else 1.0
    unit = torch.from_numpy(image.astype(np.float64) / scale).permute(2, 0, 1)[None]
    alpha = unit[:, 3:] if image.shape[2] == 4 else torch.ones_like(unit[:, :1])
    rgb = unit[:, :3].clamp(0, 1)
    return rgb * alpha + fullres.BACKGROUND * (1 - alpha), alpha


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
@pytest.mark.parametrize("factor", [1, 3, 4])
def test_seen_in_strips_is_the_box_average_of_the_whole_composite(small_strips, dtype, factor):
    image = painting(61, 47, channels=4, dtype=dtype)  # neither side a multiple of 3 or 4
    seen = fullres.seen(image, torch.device("cpu"), factor)
    over, alpha = whole_composite(image)
    expected = F.avg_pool2d(over, factor, ceil_mode=True)
    assert seen.shape == (61, 47) and seen.factor == factor
    assert seen.image.shape == expected.shape == (1, 3, -(-61 // factor), -(-47 // factor))
    assert torch.allclose(seen.image.double(), expected, atol=1e-6)
    assert torch.allclose(seen.coverage.double(),
                          F.avg_pool2d(alpha, factor, ceil_mode=True), atol=1e-6)


def test_reduction_keeps_twice_each_view_size():
    assert fullres.reduction((8192, 8192), [(512, 512), (1024, 1024)]) == 4
    assert fullres.reduction((8192, 6000), [(512, 376)]) == 7
    assert fullres.reduction((1000, 1000), [(512, 512)]) == 1


@pytest.mark.parametrize("shapes", [((37, 53), (300, 411)), ((64, 64), (64, 64)),
                                    ((100, 80), (1000, 799)), ((5, 7), (9, 13))])
def test_full_delta_in_strips_is_bicubic_upsampling(small_strips, shapes):
    (height, width), full = shapes
    delta = torch.randn(1, 3, height, width, generator=torch.Generator().manual_seed(1)) / 20
    expected = F.interpolate(delta, size=full, mode="bicubic", align_corners=False)
    expected = expected.clamp(-0.03, 0.03)[0].permute(1, 2, 0).numpy()
    carried = fullres.FullDelta(delta, full, 0.03)
    strips = list(fullres.row_strips(*full))
    assert len(strips) > 1 or full[0] < 20
    got = np.concatenate([carried(rows) for rows in strips])
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=1e-6)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float16, np.float32])
def test_merge_in_strips_moves_only_covered_samples(small_strips, dtype):
    image = painting(40, 30, channels=4, dtype=dtype)
    image[5:12, 3:20, 3] = 0  # fully transparent block
    delta = np.random.default_rng(2).uniform(-0.02, 0.02, (40, 30, 3)).astype(np.float32)
    delta[20:25] = 0  # rows the perturbation leaves alone
    out = fullres.merge(image, lambda rows: delta[rows])
    assert out.dtype == image.dtype and out.shape == image.shape
    assert out[..., 3].tobytes() == image[..., 3].tobytes()
    untouched = (image[..., 3] == 0) | np.all(delta == 0, axis=-1)
    assert out[untouched].tobytes() == image[untouched].tobytes()
    scale = np.iinfo(dtype).max if np.dtype(dtype).kind == "u" else 1.0
    unit = image[..., :3].astype(np.float64) / scale
    expected = np.where(untouched[..., None], unit, np.clip(unit + delta, 0, 1))
    quantum = 0.5 / scale if np.dtype(dtype).kind == "u" else 1e-3
    assert np.abs(out[..., :3] / scale - expected).max() <= quantum + 1e-6
    assert not np.array_equal(out, image)


def test_pixel_change_over_strips_is_that_of_the_whole(small_strips):
    source = painting(33, 50, channels=4)
    source[:, :10, 3] = 0
    changed = source.copy()
    changed[..., :3] = np.clip(source[..., :3].astype(int)
                               + np.random.default_rng(3).integers(-4, 5, (33, 50, 3)), 0, 255)
    changed[:, :10, :3] = 255 - source[:, :10, :3]  # counted in linf, not in PSNR
    found = fullres.pixel_change(source, changed)
    difference = (changed[..., :3].astype(float) - source[..., :3]) / 255
    mse = np.mean(np.square(difference[:, 10:]))
    assert found["psnr"] == pytest.approx(10 * np.log10(1 / mse))
    assert found["linf"] == pytest.approx(np.abs(difference).max())
    assert fullres.pixel_change(source, source) == {"psnr": None, "linf": 0.0}


def test_a_large_cloak_never_holds_the_image_as_float(bundle):
    """The traced numpy memory of a cloak stays near the image's own bytes: the whole image
    as float32 RGB (3x its 8-bit RGBA bytes) never exists at once. (Measured: 3.0x the
    image's bytes; 19.5x when the whole image was converted at once.)"""
    image = painting(4096, 3072, channels=4)
    settings = CloakSettings(work_size=64, quality=1)
    tracemalloc.start()
    try:
        result = cloak(image, bundle, STYLE, settings)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.image.shape == image.shape and not np.array_equal(result.image, image)
    # The output itself, and a few strips of float32 samples.
    assert peak < 2 * image.nbytes + 8 * fullres.STRIP_SAMPLES * 4, peak / image.nbytes
