"""The just-noticeable-difference map and the visibility figures measured against it."""

import numpy as np
import pytest
import torch
from conftest import painting

from glaze.daemon.client import visibility_text
from glaze.engine import fullres
from glaze.engine.cloak import PerceptualBound, cloak
from glaze.engine.evaluation.synthetic import flat_card
from glaze.engine.fullres import pixel_change
from glaze.engine.pixels import image_tensor
from glaze.engine.settings import CloakSettings
from glaze.engine.visibility import flat_mask, full_visibility, jnd_map, visibility


def grey(level: float, size: int = 32) -> torch.Tensor:
    return torch.full((1, 3, size, size), level / 255)


def test_flat_mid_grey_shows_the_smallest_change_and_darkness_hides_more():
    """Chou and Li's luminance adaptation: 3 grey levels at mid-grey, about 20 in black,
    rising slowly toward white."""
    assert jnd_map(grey(127)) * 255 == pytest.approx(torch.full((1, 1, 32, 32), 3.0), abs=0.05)
    assert (jnd_map(grey(0)) * 255).mean().item() == pytest.approx(20.0, abs=0.1)
    assert 3.5 < (jnd_map(grey(255)) * 255).mean().item() < 6.5


def test_texture_hides_change_but_an_edge_does_not():
    generator = torch.Generator().manual_seed(0)
    busy = (grey(127, 64) + 0.15 * torch.randn(1, 3, 64, 64, generator=generator)).clamp(0, 1)
    assert (jnd_map(busy) * 255).median() > 1.5 * 3  # texture masking
    edge = grey(200, 64)
    edge[..., :, 30:34] = 0  # a black outline through a flat fill
    across = jnd_map(edge)[0, 0, 32] * 255
    # Texture masking alone would allow about 0.117 x 200 = 23 grey levels beside the line;
    # as a contour the fill there keeps about its own luminance threshold (inside the black
    # line, darkness alone allows more).
    assert across[29] < 6 and across[10] < 5, across[26:38]


def test_identical_images_are_invisible_and_noise_on_flat_colour_is_not():
    pixels = flat_card(256, 180)
    card = image_tensor(pixels)
    assert flat_mask(card).float().mean() > 0.8  # the card is mostly flat fills
    same = visibility(card, card)
    assert same.over_jnd == 0 and same.flat_ssim == pytest.approx(1.0)
    assert pixel_change(pixels, pixels)["psnr"] is None  # the PSNR beside these figures
    generator = torch.Generator().manual_seed(1)
    noise = torch.empty(card.shape).uniform_(-8 / 255, 8 / 255, generator=generator)
    noisy = visibility(card, ((card + noise).clamp(0, 1) * 255).round() / 255)
    assert noisy.over_jnd > 0.4 and noisy.flat_ssim < 0.9 and noisy.flat_texture > 3
    # A smooth shift of 2 grey levels stays under every JND and paints no texture.
    shifted = visibility(card, ((card * 255 + 2).clamp(0, 255)) / 255)
    assert shifted.over_jnd == 0 and shifted.flat_ssim > 0.99 and shifted.flat_texture < 0.1


def test_covered_pixels_only():
    card = image_tensor(flat_card(128, 96))
    changed = card.clone()
    changed[..., :, :64] = (changed[..., :, :64] + 0.2).clamp(0, 1)
    alpha = torch.zeros(1, 1, 96, 128)
    alpha[..., :, 64:] = 1  # the changed half is transparent
    assert visibility(card, changed, alpha).over_jnd == 0
    assert visibility(card, changed).over_jnd > 0.4


def test_full_size_figures_in_strips_are_the_whole_images(monkeypatch):
    """The report's figures, measured a strip of rows at a time with a halo, are those of
    the whole image at once, alpha left out alike."""
    source = painting(90, 70, channels=4)
    source[:20, :, 3] = 0
    generator = np.random.default_rng(2)
    changed = source.copy()
    changed[..., :3] = np.clip(source[..., :3] + generator.integers(-6, 7, source[..., :3].shape),
                               0, 255)
    whole = visibility(image_tensor(source[..., :3]), image_tensor(changed[..., :3]),
                       torch.from_numpy(source[..., 3] > 0).float()[None, None])
    monkeypatch.setattr(fullres, "STRIP_SAMPLES", 70 * 4 * 9)  # strips of 9 rows
    strips = full_visibility(source, changed)
    assert 0 < whole.over_jnd < 1 and whole.flat_share > 0
    for name, value in whole.to_dict().items():
        assert getattr(strips, name) == pytest.approx(value, abs=1e-4), name


def test_intensity_presets_scale_the_map():
    """Each pixel's cap is its JND times the intensity over the default's (less the rounding
    margin), within the L_inf cap."""
    card = image_tensor(flat_card(128, 96))
    caps = {name: PerceptualBound(card, CloakSettings(intensity=name)).cap * 255
            for name in ("low", "default", "high")}
    jnd = jnd_map(card) * 255
    assert torch.allclose(caps["default"], (jnd - 0.5).clamp(0, 8), atol=1e-4)
    assert torch.allclose(caps["low"], (jnd / 2 - 0.5).clamp(0, 4), atol=1e-4)
    high = CloakSettings(intensity="high").linf * 255
    assert torch.allclose(caps["high"], (1.5 * jnd - 0.5).clamp(0, high), atol=1e-4)
    assert (caps["high"] > caps["default"]).float().mean() > 0.9


@pytest.mark.parametrize("resize_robust", [True, False])
def test_the_bound_keeps_a_flat_card_inside_its_jnd_and_alpha_untouched(bundle, resize_robust):
    """A cloak with the visibility bound (the default) moves no pixel beyond its
    just-noticeable difference, paints no texture on the flat fills, and leaves alpha as it
    was; also where delta is carried up to a larger full size (`resize_robust` off: delta at
    the working size) and the cap is the full-size picture's own."""
    card = flat_card(128, 96)
    alpha = np.full((96, 128, 1), 255, np.uint8)
    alpha[:, :16] = 0  # a transparent margin
    alpha[:, 16:24] = 128
    image = np.concatenate([card, alpha], axis=2)
    settings = CloakSettings(work_size=64, quality=8, resize_robust=resize_robust)
    result = cloak(image, bundle, "Baroque painting by Caravaggio", settings)
    assert np.array_equal(result.image[..., 3], alpha[..., 0])
    original, cloaked = image_tensor(card), image_tensor(result.image[..., :3])
    change = (cloaked - original).abs().amax(1, keepdim=True)
    assert change.max() > 0  # it did cloak
    covered = torch.from_numpy(alpha[..., 0] > 0)[None, None]
    # Beside transparency a pixel's threshold depends on what lies under the layer, which
    # the cloak cannot know: it is judged on the opaque pixels clear of the JND's window.
    opaque = torch.zeros_like(covered)
    opaque[..., 24 + 8:] = True
    assert not (change > jnd_map(original) + 1e-6)[opaque].any()
    seen = visibility(original, cloaked, opaque.float())
    assert seen.over_jnd == 0 and seen.flat_ssim > 0.98, seen
    reported = result.report.visibility
    assert reported == full_visibility(image, result.image).to_dict()
    assert reported["over_jnd"] < 0.01 and reported["flat_ssim"] > 0.98, reported
    unbounded = cloak(image, bundle, "Baroque painting by Caravaggio",
                      CloakSettings(work_size=64, quality=8, resize_robust=resize_robust,
                                    visibility_bound=False))
    # Without it, the same cloak does cross the threshold, and its report says so.
    assert unbounded.report.visibility["over_jnd"] > 0.2


def test_the_user_is_told_when_a_change_may_show():
    clean = {"visibility": {"over_jnd": 0.004, "flat_ssim": 0.991}, "psnr": 41.26}
    assert visibility_text(clean) == ("0.4% of pixels over their just-noticeable difference, "
                                      "flat areas SSIM 0.991, PSNR 41.3 dB")
    for figures in ({"over_jnd": 0.02, "flat_ssim": 0.991}, {"over_jnd": 0.0, "flat_ssim": 0.9}):
        assert visibility_text({"visibility": figures}).endswith("(may be visible)")
    assert visibility_text({"visibility": {"over_jnd": 0.0, "flat_ssim": None}}) == \
        "0.0% of pixels over their just-noticeable difference"
    assert visibility_text({}) == ""  # an older daemon's report
