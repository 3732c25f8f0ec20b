"""Getting the model bundle the daemon will load: nothing for the demo, a check for a local
folder, a download through the Hugging Face cache (resumable, with progress) for a hub id."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from glaze.engine.sources import (
    DEFAULT,
    DEMO,
    FORMER_DEFAULTS,
    OWN,
    ExtractorSource,
    ModelLoadError,
    bundle_meta,
    declared_extractors,
    model_source,
    upgraded_choice,
)
from glaze.options import DEFEND


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


def _cached(location: str, subfolder: str | None, name: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    path = f"{subfolder}/{name}" if subfolder else name
    return isinstance(try_to_load_from_cache(location, path), str)


def describe_sources(choice: str, defend: str) -> list[str]:
    """A line per model family `defend` names: where its encoder comes from for `choice`
    and whether it is there yet (nothing downloaded, nothing of torch imported)."""
    location = model_source(choice)
    if location == DEMO:
        return [f"defends {name} ({DEFEND.choices[name]}): built in, tiny, NO protection"
                for name in DEFEND.selection(defend)] + _left_out(defend)
    declared, lines = declared_extractors(bundle_meta(location)), []
    for name in DEFEND.selection(defend):
        source = declared.get(name)
        if source is None:
            lines.append(f"defends {name} ({DEFEND.choices[name]}): the bundle {location} "
                         "declares no such extractor: defend without it")
            continue
        where = ExtractorSource(location if source.location == OWN else source.location,
                                source.subfolder)
        state = ("a local folder" if Path(where.location).is_dir() else
                 "in the Hugging Face cache" if _cached(where.location, where.subfolder,
                                                       "config.json")
                 else "to fetch (`glaze install` without --dry-run does)")
        lines.append(f"defends {name} ({DEFEND.choices[name]}): {where.describe()}, {state}")
    return lines + _left_out(defend)


def _left_out(defend: str) -> list[str]:
    """A line naming the declared families `defend` leaves out (a settings file of an older
    version keeps the families of its day), if any."""
    chosen = DEFEND.selection(defend)
    left = [name for name in DEFEND.choices if name not in chosen]
    if not left:
        return []
    return [f"does not defend {', '.join(left)} (`glaze install --defend "
            f"{','.join(DEFEND.choices)}` adds them)"]
