"""Getting the model bundle the daemon will load: nothing for the demo, a check for a local
folder, a download through the Hugging Face cache (resumable, with progress) for a hub id."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path


class ModelFetchError(RuntimeError):
    """The chosen models could not be made available; the message says why."""


def model_location(choice: str) -> str:
    """What the settings file records: "demo", an absolute folder, or a hub id."""
    if choice == "demo":
        return "demo"
    folder = Path(choice).expanduser()
    if folder.is_dir():
        if not (folder / "model_index.json").is_file():
            raise ModelFetchError(f"{folder} is not a diffusers model folder (no "
                                  "model_index.json)")
        return str(folder.resolve())
    if choice == "default":
        from glaze.engine.models import DEFAULT_HUB_ID

        return DEFAULT_HUB_ID
    if folder.is_absolute() or choice.startswith(".") or choice.count("/") != 1:
        raise ModelFetchError(f"{choice}: no such folder, and not a hub id like 'owner/name'")
    return choice


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
