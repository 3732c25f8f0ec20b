"""One geometry: the crop the cloak optimizes is the crop a mimic's training script takes."""

import random

import numpy as np
import pytest
import torch
from torchvision.transforms import CenterCrop, Resize

from glaze.engine.evaluation.mimicry import training_tensor
from glaze.engine.geometry import View, center_crop_view, mimic_views

SHAPES = [(2000, 3000), (3000, 2000), (723, 1021), (1021, 723), (512, 512), (333, 777),
          (1080, 1350)]


def index_image(shape: tuple[int, int]) -> torch.Tensor:
    """1 x 2 x H x W: each pixel holds its own row and column."""
    rows, cols = torch.meshgrid(torch.arange(shape[0]), torch.arange(shape[1]), indexing="ij")
    return torch.stack([rows, cols]).float()[None]


@pytest.mark.parametrize("shape", SHAPES)
def test_the_center_crop_is_torchvisions_resize_and_center_crop(shape):
    """The resized size and the crop's place, as diffusers' training scripts compute them
    (torchvision Resize(512) then CenterCrop(512)); nearest resizing keeps indices exact."""
    view = center_crop_view(shape, 512)
    resized = Resize(512, interpolation=0)(index_image(shape))
    assert tuple(resized.shape[-2:]) == view.size
    top, left, height, width = view.box
    expected = CenterCrop(512)(resized)
    assert torch.equal(resized[..., top:top + height, left:left + width], expected)


@pytest.mark.parametrize("shape", SHAPES)
def test_the_cloak_optimizes_the_crop_the_evaluation_trains_on(shape):
    views = mimic_views(shape, 512, True, random.Random(0))
    assert center_crop_view(shape, 512) in views
    image = np.random.default_rng(0).integers(0, 256, (*shape, 3), dtype=np.uint8)
    trained = (training_tensor([image], 512) + 1) / 2
    seen = center_crop_view(shape, 512).apply(
        torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255)
    assert torch.allclose(trained, seen, atol=1e-6)


def test_views_cover_larger_training_resolutions():
    views = mimic_views((2000, 3000), 512, True, random.Random(0))
    sizes = [view.size for view in views]
    assert sizes[0] == (344, 512)  # whole image, long side at the working size
    assert sizes[1:3] == [(512, 768), (768, 1152)]  # center crop, a random crop at 1.5x
    assert all(view.box[2:] == (512, 512) for view in views[1:3])
    assert views[3] == View((680, 1024), (0, 0, 680, 1024))  # a typical upload, whole
    assert len(views) == 4
    assert mimic_views((2000, 3000), 512, False, random.Random(0)) == views[:1]
