"""Getting the model bundle the daemon will load: nothing for the demo, a check for a local
folder, a download through the Hugging Face cache (resumable, with progress) for a hub id."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path


class ModelFetchError(RuntimeError):
    """The chosen models could not be made available; the message says why."""


def model_location(choice: str) -> str:
    """What the settings file records: "demo", an absolute folder, or a hub id."""
    from glaze.engine.models import ModelLoadError, model_source

    try:
        location = model_source(choice)
    except ModelLoadError as error:
        raise ModelFetchError(str(error)) from error
    if Path(location).is_dir() and not (Path(location) / "model_index.json").is_file():
        raise ModelFetchError(f"{location} is not a diffusers model folder (no "
                              "model_index.json)")
    return location


def fetch(location: str, report: Callable[[str], None] = print) -> None:
    """Make `location` loadable offline: download a hub id's pipeline files (diffusers picks
    exactly what from_pretrained needs) and the LPIPS backbone into their caches."""
    if location == "demo" or Path(location).is_dir():
        return
    from diffusers import StableDiffusionImg2ImgPipeline
    from huggingface_hub import constants

    from glaze.engine.models import ModelLoadError, perceptual_model

    try:
        StableDiffusionImg2ImgPipeline.download(location, local_files_only=True)
    except (OSError, ValueError):  # not complete in the cache yet
        report(f"fetching {location} into {constants.HF_HUB_CACHE} (resumes if interrupted)")
        try:
            StableDiffusionImg2ImgPipeline.download(location)
        except (OSError, ValueError) as error:
            raise ModelFetchError(f"could not fetch {location}: {error}") from error
    try:
        perceptual_model()  # torchvision's AlexNet weights, into torch's cache (once)
    except ModelLoadError as error:
        raise ModelFetchError(f"could not fetch LPIPS's backbone: {error}") from error
