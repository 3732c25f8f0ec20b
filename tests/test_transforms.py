"""What a posted picture meets (engine/transforms.py): differentiable where the cloak's loss
goes through it, seeded, and measured on a real JPEG in the report."""

import io
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import painting
from PIL import Image

from glaze.engine import CloakSettings, transforms
from glaze.engine.cloak import CloakOptimizer, cloak
from glaze.engine.fullres import Seen
from glaze.engine.geometry import upload_view
from glaze.engine.pixels import image_array

STYLE = "Impressionism painting by Claude Monet"


def random_images(seed: int = 0) -> torch.Tensor:
    return torch.rand(1, 3, 40, 56, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", sorted(transforms.TRANSFORMS))
def test_each_transform_passes_a_gradient_back(name):
    images = random_images().requires_grad_(True)
    out = transforms.TRANSFORMS[name](images, torch.Generator().manual_seed(1))
    assert out.shape == images.shape
    (out * random_images(2)).sum().backward()
    assert torch.isfinite(images.grad).all() and images.grad.abs().sum() > 0
    if name != "none":
        assert not torch.equal(out.detach(), images.detach())  # it did something


def test_the_differentiable_jpeg_is_close_to_a_real_one():
    images = random_images() * 0.5 + 0.25
    quality = torch.tensor([75.0])
    import kornia

    stand_in = kornia.enhance.jpeg_codec_differentiable(images, quality)
    real = torch.from_numpy(transforms.jpeg(image_array(images), 75)).permute(2, 0, 1)[None]
    error = (stand_in - real / 255).abs().mean()
    moved = (images - real / 255).abs().mean()
    assert error < 0.5 * moved, (error, moved)  # nearer the real codec than the input is


def test_draws_are_seeded_and_follow_the_weights():
    weights = (("none", 1.0), ("jpeg", 1.0), ("noise", 2.0))
    images = random_images()

    def run(seed):
        draw = transforms.TransformDraw(weights, seed)
        return [draw(images) for _ in range(40)]

    first, again, other = run(3), run(3), run(4)
    assert [name for name, _ in first] == [name for name, _ in again]
    assert all(torch.equal(a, b) for (_, a), (_, b) in zip(first, again, strict=True))
    assert [name for name, _ in first] != [name for name, _ in other]
    names = [name for name, _ in run(5) + run(6)]
    assert names.count("noise") > names.count("jpeg") > 0 and "blur" not in names
    only = transforms.TransformDraw((), 0)
    assert only(images)[0] == "none" and only(images)[1] is images


@pytest.mark.parametrize("weights, message", [
    ((("zoom", 1.0),), "unknown transform 'zoom'"),
    ((("jpeg", -1.0),), "negative weight"),
    ((("jpeg", 0.0),), "add up to nothing"),
])
def test_bad_transform_settings_are_refused(weights, message):
    with pytest.raises(ValueError, match=message):
        CloakSettings(transforms=weights)


@pytest.mark.parametrize("name", ["jpeg", "resize_jpeg", "noise", "blur"])
def test_a_step_through_a_transform_moves_delta(bundle, name):
    image, target = random_images(5), random_images(6)
    settings = CloakSettings(work_size=64, quality=2, transforms=((name, 1.0),),
                             defend="sd", resize_robust=False)
    optimizer = CloakOptimizer(bundle, Seen(image, torch.ones(1, 1, 40, 56), (40, 56)),
                               target, settings)
    assert optimizer.step()["transform"] == "none"  # the whole view's first visit: clean
    before = optimizer.delta.detach().clone()
    assert optimizer.step()["transform"] == name
    assert not torch.equal(optimizer.delta, before)


def test_every_other_visit_of_the_whole_and_the_upload_view_is_clean(bundle):
    image, target = torch.rand(2, 3, 96, 128, generator=torch.Generator().manual_seed(5))
    settings = CloakSettings(work_size=64, quality=30, transforms=(("jpeg", 1.0),),
                             defend="sd")
    optimizer = CloakOptimizer(bundle, Seen(image[None], torch.ones(1, 1, 96, 128), (96, 128)),
                               F.interpolate(target[None], (48, 64)), settings)
    assert len(optimizer.views) > 2
    upload = optimizer.views.index(upload_view((96, 128)))
    assert upload > 0
    visits = {index: [] for index in range(len(optimizer.views))}
    for step in range(4 * len(optimizer.order)):
        index = optimizer.order[step % len(optimizer.order)]
        visits[index].append(optimizer.step()["transform"])
    assert len(visits[upload]) > len(visits[0])  # the upload's view every other step
    # The whole view (index 0) and the upload's on their 1st, 3rd, ... visits; no other.
    for index, drawn in visits.items():
        assert len(drawn) >= 4, index
        clean = index in (0, upload)
        assert drawn == [("none" if clean and visit % 2 == 0 else "jpeg")
                         for visit in range(len(drawn))], index


def test_the_delivered_file_keeps_the_bounds_with_eot(bundle):
    image = painting(96, 128, channels=4)
    settings = CloakSettings(work_size=64, quality=20, intensity=0.01)
    assert settings.transforms == transforms.DEFAULT_TRANSFORMS
    result = cloak(image, bundle, STYLE, settings)
    report = result.report
    change = np.abs(result.image[..., :3].astype(int) - image[..., :3]).max() / 255
    assert change <= settings.linf + 0.5 / 255 and report.linf <= settings.linf + 0.5 / 255
    assert report.lpips < 1.25 * settings.budget
    assert report.transforms == [name for name, _ in transforms.DEFAULT_TRANSFORMS]
    plain = cloak(image, bundle, STYLE, replace(settings, transforms=())).report
    assert plain.transforms == [] and not np.array_equal(
        cloak(image, bundle, STYLE, replace(settings, transforms=())).image, result.image)


def test_uploaded_is_a_real_jpeg_of_the_quantized_view():
    images = random_images(7)
    out = transforms.uploaded(images)
    buffer = io.BytesIO()
    Image.fromarray(image_array(images)).save(buffer, format="JPEG", quality=75)
    expected = np.asarray(Image.open(buffer).convert("RGB"))
    assert np.array_equal(image_array(out), expected)


def test_the_after_upload_shift_is_measured_on_that_jpeg(bundle, monkeypatch):
    """The report's after-upload figure goes through `uploaded`, on the whole image at the
    typical upload's size; the working-view figure does not."""
    image = painting(160, 240)
    settings = CloakSettings(work_size=64, quality=8, defend="sd")
    posted = []
    real = transforms.uploaded

    def recording(images):
        posted.append(tuple(images.shape[-2:]))
        return real(images)

    monkeypatch.setattr("glaze.engine.cloak.uploaded", recording)
    report = cloak(image, bundle, STYLE, settings).report
    # The original and the output, at the upload's size (the last two: before them, the
    # original and the cloak as it stood at each of the run's checks, the same way).
    assert len(posted) > 2 and set(posted) == {(160, 240)}
    monkeypatch.setattr(transforms, "UPLOAD_QUALITY", 20)
    harsher = cloak(image, bundle, STYLE, settings).report
    assert harsher.extractors["sd"].relative_shift == report.extractors["sd"].relative_shift
    assert harsher.extractors["sd"].after_upload != report.extractors["sd"].after_upload
    assert report.incomplete == (report.extractors["sd"].after_upload
                                 < 0.25)
