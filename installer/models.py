"""Getting the model bundle the daemon will load: nothing for the demo, a check for a local
folder, a download through the Hugging Face cache (resumable, with progress) for a hub id."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from glaze.engine.sources import (
    DEFAULT,
    DEMO,
    FORMER_DEFAULTS,
    ModelLoadError,
    model_source,
    upgraded_choice,
)


class ModelFetchError(RuntimeError):
    """The chosen models could not be made available; the message says why."""


def model_choice(choice: str, report: Callable[[str], None] = print) -> str:
    """What the settings file records: "demo", "default" (kept as the word, so that it
    follows the default when a release moves it), an absolute folder, or a hub id."""
    if choice in FORMER_DEFAULTS:
        report(f"the settings named {choice}, the former default, which is gone from the "
               f"hub: `{DEFAULT}` now stands for {model_source(DEFAULT)}")
    choice = upgraded_choice(choice)
    try:
        location = model_source(choice)
    except ModelLoadError as error:
        raise ModelFetchError(str(error)) from error
    if location != DEMO and Path(location).is_dir() and \
            not (Path(location) / "model_index.json").is_file():
        raise ModelFetchError(f"{location} is not a diffusers model folder (no "
                              "model_index.json)")
    return choice if choice in (DEMO, DEFAULT) else location


def fetch(choice: str, defend: str | None = None,
          report: Callable[[str], None] = print) -> None:
    """Make `choice` loadable offline: a hub id's pipeline files (diffusers picks exactly
    what from_pretrained needs), the feature extractors `defend` names (the SDXL and FLUX.1
    VAEs for the default; None: all) and the LPIPS backbone, into their caches."""
    location = model_source(choice)
    if location == DEMO:
        return
    from huggingface_hub import constants

    from glaze.engine.models import fetch_bundle, perceptual_model

    report(f"models: {location}, and the feature extractors it needs, in "
           f"{constants.HF_HUB_CACHE} (fetched if missing; resumes if interrupted)")
    try:
        fetch_bundle(location, defend)
    except ModelLoadError as error:
        raise ModelFetchError(str(error)) from error
    if Path(location).is_dir():
        return  # a folder carries its LPIPS weights, or torchvision fetches them on first use
    try:
        perceptual_model()  # torchvision's AlexNet weights, into torch's cache (once)
    except ModelLoadError as error:
        raise ModelFetchError(f"could not fetch LPIPS's backbone: {error}") from error
