"""Every user setting of a cloak, declared once: name, label, help, default, presets, range.

The `glaze cloak` options, the Krita dialog, the GIMP procedure arguments, the daemon's
accepted fields, its advertised presets and the engine's preset tables are all built from
these declarations, so a preset, a default or a range changes here and nowhere else.
Standard library only: both plug-ins carry this module in their vendored client, and the
engine imports it without pulling in pyzmq.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

Number = int | float


@dataclass(frozen=True)
class Setting:
    """One user setting. `name` is its key in a job's settings map (the wire name); the
    command line spells it --name-with-dashes, GIMP name-with-dashes."""

    name: str
    label: str  # what the dialogs call it
    help: str  # what it does, as a phrase
    default: str | int | None
    kind: type = str  # the type of a value that is not a preset name: float, int or str
    presets: Mapping[str, Number] = field(default_factory=dict)  # preset name -> number
    minimum: Number | None = None
    maximum: Number | None = None
    exclusive_minimum: bool = False
    multiple_of: int | None = None
    cloak: bool = True  # a field of the engine's CloakSettings (else the job's own)
    preset_format: str = "{name} ({value:g})"  # a preset as the dialogs list it
    placeholder: str = ""  # what an empty text field means (settings without a default)
    choices: Mapping[str, str] = field(default_factory=dict)  # name -> label; several at once
    suggestions: Callable[[], list[str]] | None = None  # values a text field offers
    saved: bool = False  # its default is the one `glaze install` keeps in the settings file

    def __post_init__(self) -> None:
        object.__setattr__(self, "presets", MappingProxyType(dict(self.presets)))
        object.__setattr__(self, "choices", MappingProxyType(dict(self.choices)))

    @property
    def flag(self) -> str:
        """The command-line option."""
        return "--" + self.name.replace("_", "-")

    @property
    def argument(self) -> str:
        """The GIMP procedure argument (GObject property names take dashes)."""
        return self.name.replace("_", "-")

    @property
    def wire_types(self) -> tuple[type, ...]:
        """The types the daemon accepts for this setting in a job's settings map."""
        if self.presets:
            return (str, int, float)
        if self.kind is float:
            return (int, float)
        return (self.kind,) if self.default is not None else (self.kind, type(None))

    def in_range(self, number: Number) -> bool:
        """Whether `number` is a value of this setting (comparisons written so that NaN
        fails them all)."""
        if self.minimum is not None and not (
                number > self.minimum if self.exclusive_minimum else number >= self.minimum):
            return False
        if self.maximum is not None and not number <= self.maximum:
            return False
        return not (self.multiple_of and number % self.multiple_of)

    def selection(self, value: str | list | tuple) -> tuple[str, ...]:
        """The chosen names of a several-choice setting, in declared order, from text like
        "sd, flux" or a list. Raises ValueError for an unknown name or an empty choice."""
        names = value.split(",") if isinstance(value, str) else list(value)
        chosen = {str(name).strip().lower() for name in names} - {""}
        unknown = sorted(chosen - set(self.choices))
        if unknown or not chosen:
            said = f"unknown {', '.join(map(repr, unknown))}" if unknown else "nothing chosen"
            raise ValueError(f"{self.label.lower()}: {said}; choose one or more of "
                             f"{', '.join(self.choices)}, separated by commas")
        return tuple(name for name in self.choices if name in chosen)

    def range_text(self) -> str:
        """The range in words, e.g. "from 64 to 2048, a multiple of 8"; "" without one."""
        if self.minimum is None or self.maximum is None:
            return ""
        words = (f"above {self.minimum:g} up to {self.maximum:g}" if self.exclusive_minimum
                 else f"from {self.minimum:g} to {self.maximum:g}")
        return words + (f", a multiple of {self.multiple_of}" if self.multiple_of else "")

    def describe(self, presets: Mapping[str, Number] | None = None) -> str:
        """The help with its choices: what the CLI, GIMP's argument blurbs and the Krita
        tooltips say. `presets`: the ones to list (the daemon's, when it advertises them)."""
        table = self.presets if presets is None else presets
        if self.choices:
            listed = ", ".join(f"{name} ({label})" for name, label in self.choices.items())
            return f"{self.help}: one or more of {listed}, separated by commas"
        if table:
            listed = ", ".join(self.preset_format.format(name=name, value=value)
                               for name, value in table.items())
            return f"{self.help}: {listed}, or a number {self.range_text()}".rstrip()
        limits = self.range_text()
        return f"{self.help}, {limits}" if limits else self.help

    def text_default(self) -> str:
        """The default as a text field holds it ("" for none)."""
        return "" if self.default is None else str(self.default)


INTENSITY = Setting(
    "intensity", "Intensity", "how strongly to cloak, as the LPIPS budget p (how far the "
    "image may visibly change; it also scales each pixel's just-noticeable-difference "
    "cap, 1x at the default)", "default", kind=float,
    presets={"low": 0.025, "default": 0.05, "high": 0.075},  # the paper's default is 0.05
    minimum=0.0, maximum=0.5, exclusive_minimum=True, preset_format="{name} (p = {value:g})")
# Each quality preset's goal: the after-upload shift (a share of the feature distance to
# the target) at which a cloak stops (engine/stopping.py). `faster` stops at what counts as
# protected at all (cloak.INCOMPLETE_BELOW); the default's is above what 500 fixed steps of
# the cloak before goals reached on the trained TAEF2 encoder (docs/engine.md, "Stopping").
QUALITY_GOALS: Mapping[str, float] = MappingProxyType(
    {"faster": 0.25, "default": 0.4, "slower": 0.5})
QUALITY = Setting(
    "quality", "Render quality", "how long to optimize: a preset stops as soon as every "
    "defended family's shift after a typical upload reaches its goal ("
    + ", ".join(f"{name}: {goal:.0%}" for name, goal in QUALITY_GOALS.items())
    + " of the way to the target style), when the shift stops growing, or at its most "
    "steps; a number of steps runs them all", "default",
    kind=int, presets={"faster": 16, "default": 200, "slower": 600},
    minimum=0, maximum=100_000, preset_format="{name} (up to {value:g} steps)")
SEED = Setting("seed", "Seed", "random seed: the same seed and image give the same cloak", 0,
               kind=int)
WORK_SIZE = Setting(  # the encoder's memory grows with its square
    "work_size", "Working size", "long side the encoder sees, in pixels", 512, kind=int,
    minimum=64, maximum=2048, multiple_of=8)
PROFILE = Setting("profile", "Artist profile", "the artist profile whose target style to use "
                  "(a new profile chooses one from the first artworks)", "default", cloak=False)
# The candidate target styles, one "GENRE painting by ARTIST" a line, beside this module
# (the plug-ins' client runtime carries it too): what a new profile chooses among and what
# the dialogs offer.
STYLES_FILE = "target_styles.txt"


def candidate_styles() -> list[str]:
    """The shipped candidate target styles."""
    text = (Path(__file__).with_name(STYLES_FILE)).read_text("utf-8")
    return [line.strip() for line in text.splitlines()
            if line.strip() and not line.startswith("#")]


TARGET = Setting("target", "Target style", "set the profile's target style instead of "
                 "choosing one (`glaze styles` lists the candidates)", None, cloak=False,
                 placeholder="chosen for the profile automatically",
                 suggestions=candidate_styles)
# The image encoders a cloak is optimized against, one per model family that mimics
# fine-tune (engine/sources.py names their weights); the default defends them all.
FAMILIES = {"sd": "Stable Diffusion 1 and 2", "sdxl": "SDXL, Illustrious, Pony",
            "flux": "FLUX.1, Chroma, Z-Image", "flux2": "FLUX.2, ERNIE-Image",
            "qwen": "Qwen-Image, Anima, Wan"}
DEFEND = Setting(
    "defend", "Defend against", "the model families whose image encoders the cloak is tuned "
    "against", ",".join(FAMILIES), saved=True, choices=FAMILIES)
JPEG_QUALITY = Setting("jpeg_quality", "JPEG quality", "JPEG quality of an exported file",
                       95, kind=int, minimum=50, maximum=100, cloak=False)

# What a job's settings map may carry: the daemon's fields, `glaze cloak`'s options, the
# dialogs' rows and GIMP's procedure arguments.
SETTINGS: tuple[Setting, ...] = (INTENSITY, QUALITY, DEFEND, SEED, WORK_SIZE, PROFILE, TARGET)
# The plug-ins' own settings for Export Glazed; never sent to the daemon.
EXPORT_SETTINGS: tuple[Setting, ...] = (JPEG_QUALITY,)
BY_NAME: Mapping[str, Setting] = MappingProxyType(
    {setting.name: setting for setting in SETTINGS + EXPORT_SETTINGS})

# The tag in an output's name: sketch.png -> sketch.glazed.png (CLI, Export Glazed).
OUTPUT_TAG = ".glazed"
# What a model sees of an output, beside it: sketch.glazed.png -> sketch.glazed.preview.png.
PREVIEW_TAG = ".preview"


def preview_name(stem: str) -> str:
    """The file name of a preview sheet: STEM.preview.png."""
    return f"{stem}{PREVIEW_TAG}.png"


# The painting programs' way to it, after a glaze: a button (Krita), an argument (GIMP).
SHOW_PREVIEW = "Show what a model sees"
SHOW_PREVIEW_HELP = ("open, as a new image, what each defended model family's decoder makes "
                     "of the original, the glazed picture and the target after a typical "
                     "upload")
FINISH_NOW = "Finish now"
FINISH_NOW_HELP = ("end the cloak at its next step and keep what it has made; the report says "
                   "how far its shift got")
# What Export Glazed writes (Krita and GIMP alike): suffix -> format name.
EXPORT_FORMATS: Mapping[str, str] = MappingProxyType(
    {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WebP"})


def export_proposal(saved: str | None, name: str, suffix: str = ".png") -> str:
    """Where Export Glazed proposes to write (Krita and GIMP alike): beside the image's file
    `saved`, named after it with OUTPUT_TAG; an image never saved: `name`, in the home
    folder. `suffix`: the format last chosen."""
    if saved:
        folder, stem = os.path.dirname(saved), os.path.splitext(os.path.basename(saved))[0]
    else:
        folder, stem = os.path.expanduser("~"), name or "untitled"
    suffix = suffix if suffix.lower() in EXPORT_FORMATS else ".png"
    return os.path.join(folder, f"{stem}{OUTPUT_TAG}{suffix}")


def advertised(extractors: Sequence[str] | None = None) -> dict[str, dict | list]:
    """What the daemon announces in its welcome: setting name -> preset -> number, and for
    DEFEND the choices its models serve (`extractors`; None: every declared one)."""
    table: dict[str, dict | list] = {setting.name: dict(setting.presets)
                                     for setting in SETTINGS if setting.presets}
    table[DEFEND.name] = list(DEFEND.choices if extractors is None else extractors)
    return table


def choices_of(setting: Setting, offered: Mapping | None = None) -> dict[str, str]:
    """The choices to show for a several-choice `setting` (name -> label): those of the
    declared ones the daemon advertises when it names any, else every declared one."""
    names = (offered or {}).get(setting.name)
    if isinstance(names, list):
        shown = {name: label for name, label in setting.choices.items() if name in names}
        if shown:
            return shown
    return dict(setting.choices)


def presets_of(setting: Setting, offered: Mapping | None = None) -> dict[str, Number]:
    """The presets to show for `setting`: the daemon's when it advertises a usable table
    (it is the one that reads the names), else the declared ones."""
    table = (offered or {}).get(setting.name)
    if isinstance(table, Mapping) and table and all(
            isinstance(name, str) and isinstance(value, (int, float))
            and not isinstance(value, bool) for name, value in table.items()):
        return dict(table)
    return dict(setting.presets)


def wire_settings(values: Mapping[str, object]) -> dict[str, object]:
    """A job's settings map from values keyed by setting name (a dialog's, parsed options).

    Text is stripped; an empty text or a missing value is left out, so the daemon applies
    its default (an empty target means "chosen for the profile").
    """
    settings = {}
    for setting in SETTINGS:
        value = values.get(setting.name)
        if isinstance(value, str):
            value = value.strip()
        if value is None or value == "":
            continue
        settings[setting.name] = value
    return settings


def export_names() -> str:
    """The export formats in words: "PNG, JPEG or WebP"."""
    names = list(dict.fromkeys(EXPORT_FORMATS.values()))
    return ", ".join(names[:-1]) + " or " + names[-1]


def export_suffixes() -> str:
    """The export suffixes in words: ".png, .jpg, .jpeg or .webp"."""
    suffixes = list(EXPORT_FORMATS)
    return ", ".join(suffixes[:-1]) + " or " + suffixes[-1]
