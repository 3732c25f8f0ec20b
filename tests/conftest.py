import numpy as np
import pytest

from glaze.engine.models import demo_bundle


@pytest.fixture(scope="session")
def bundle():
    """The demo bundle (tiny random models, no protection), built once per test run."""
    return demo_bundle()


@pytest.fixture(autouse=True)
def user_folders(tmp_path, monkeypatch):
    """Profiles and caches in a fresh folder per test, never the user's own."""
    monkeypatch.setenv("GLAZE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("GLAZE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("GLAZE_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("GLAZE_CONFIG_DIR", str(tmp_path / "config"))


def painting(height: int, width: int, channels: int = 3, dtype=np.uint8,
             seed: int = 0) -> np.ndarray:
    """A smooth, colourful test image (gradients plus blobs) in the given format."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    rgb = np.stack([x / width, y / height, 0.5 + 0.3 * np.sin(x / 17 + y / 23)], axis=-1)
    for _ in range(6):
        cy, cx, r = rng.uniform(0, height), rng.uniform(0, width), rng.uniform(10, 60)
        blob = np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * r * r))[..., None]
        rgb = rgb * (1 - blob) + blob * rng.uniform(0, 1, 3)
    image = np.clip(rgb, 0, 1)
    if channels == 4:
        alpha = np.clip(x / width * 1.5, 0, 1)[..., None]  # a ramp, 0 on the left edge
        image = np.concatenate([image, alpha], axis=-1)
    if np.dtype(dtype).kind == "u":
        return np.rint(image * np.iinfo(dtype).max).astype(dtype)
    return image.astype(dtype)
