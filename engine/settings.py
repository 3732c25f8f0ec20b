"""User-facing presets and the cloak parameters they stand for."""

from __future__ import annotations

from dataclasses import dataclass

from glaze.options import DEFEND, INTENSITY, QUALITY, QUALITY_GOALS, SEED, WORK_SIZE

from .transforms import DEFAULT_TRANSFORMS, check_transforms

# The presets, defaults and ranges are declared once, in glaze.options (standard
# library only), which the command line, the plug-ins and the daemon read too.
# Perceptual budget p (LPIPS) per intensity preset; the paper's default is 0.05.
INTENSITIES = dict(INTENSITY.presets)
# The most optimizer steps per render-quality preset, and the goal each stops at.
QUALITIES = dict(QUALITY.presets)

# The hard L_inf cap grows with p: 160 * p / 255 gives 4, 8 and 12 / 255 for the presets,
# inside the 3-13 / 255 range that Glaze's own app works in. It is a safety net: an LPIPS
# with a random backbone (the demo bundle) never reaches p.
LINF_PER_BUDGET = 160.0 / 255.0
LINF_RANGE = (3.0 / 255.0, 13.0 / 255.0)
MAX_BUDGET = INTENSITY.maximum
MAX_STEPS = QUALITY.maximum
STEP_RULES = ("signed", "adam")
MIN_WORK_SIZE, MAX_WORK_SIZE = WORK_SIZE.minimum, WORK_SIZE.maximum


def _preset(value: str | float, table: dict[str, float], what: str) -> float:
    """A preset's value, or the number given (also as text, as dialogs and CLIs pass it)."""
    if isinstance(value, str):
        if value in table:
            return table[value]
        try:
            return float(value)
        except ValueError:
            choices = ", ".join(table)
            raise ValueError(f"unknown {what} {value!r}: choose {choices} or a number") from None
    return float(value)


@dataclass(frozen=True)
class CloakSettings:
    """How hard and how long to cloak. Strings name presets; numbers set values directly."""

    intensity: str | float = INTENSITY.default  # preset name or the LPIPS budget p itself
    quality: str | int = QUALITY.default  # preset name, or the most optimizer steps
    defend: str = DEFEND.default  # the feature extractors to optimize against, "sd,sdxl"
    seed: int = SEED.default
    alpha: float = 30.0  # weight of the LPIPS penalty (paper: "large", e.g. 30)
    work_size: int = WORK_SIZE.default  # long side (pixels) the encoder sees
    resize_robust: bool = True  # also optimize through larger resizes and square crops
    max_change: float | None = None  # L_inf cap in [0, 1] units; None ties it to intensity
    # What a posted picture meets before a mimic trains on it, (name, weight) pairs drawn
    # from at every step (engine/transforms.py); () optimizes the views as they are.
    transforms: tuple[tuple[str, float], ...] = DEFAULT_TRANSFORMS
    # Keep each pixel's change within its just-noticeable difference and paint no texture
    # on flat colour (cloak.PerceptualBound). Off only to measure what it costs.
    visibility_bound: bool = True
    # "signed": projected signed-gradient steps (cloak.SignedSteps); "adam": the step rule
    # of the cloak before goals, kept to measure against.
    step_rule: str = "signed"
    # Each view in turn, as the cloak before goals took them, instead of the typical upload's
    # view every other step (cloak.view_order).
    views_in_turn: bool = False
    # Every defended encoder at every step, as the cloak before goals ran them, instead of
    # one family's a step in weighted turns (cloak.FamilyTurns).
    every_family: bool = False

    def __post_init__(self) -> None:
        if not INTENSITY.in_range(self.budget):
            raise ValueError(f"intensity (LPIPS budget p) must be in (0, {MAX_BUDGET:g}], "
                             f"got {self.budget}")
        if not QUALITY.in_range(self.steps):
            raise ValueError(f"quality (steps) must be between 0 and {MAX_STEPS}, "
                             f"got {self.steps}")
        if not WORK_SIZE.in_range(self.work_size):
            raise ValueError(f"work_size must be a multiple of {WORK_SIZE.multiple_of} from "
                             f"{MIN_WORK_SIZE} to {MAX_WORK_SIZE}, got {self.work_size}")
        self.extractors  # noqa: B018 (raises ValueError for an unknown or empty choice)
        check_transforms(self.transforms)
        if self.step_rule not in STEP_RULES:
            raise ValueError(f"step_rule must be one of {', '.join(STEP_RULES)}, "
                             f"got {self.step_rule!r}")
        if self.max_change is not None and not 0.0 < self.max_change <= 1.0:
            raise ValueError(f"max_change must be in (0, 1], got {self.max_change}")

    @property
    def budget(self) -> float:
        """The LPIPS budget p."""
        return _preset(self.intensity, INTENSITIES, "intensity")

    @property
    def extractors(self) -> tuple[str, ...]:
        """The defended feature extractors' names, in declared order."""
        return DEFEND.selection(self.defend)

    @property
    def steps(self) -> int:
        return int(_preset(self.quality, QUALITIES, "quality"))

    @property
    def goal(self) -> float | None:
        """The after-upload shift at which a quality preset stops (engine/stopping.py); None
        for a number of steps, which all run."""
        return QUALITY_GOALS.get(self.quality) if isinstance(self.quality, str) else None

    @property
    def linf(self) -> float:
        """The hard cap on any pixel's change, in [0, 1] units."""
        if self.max_change is not None:
            return self.max_change
        low, high = LINF_RANGE
        return min(max(LINF_PER_BUDGET * self.budget, low), high)

    @property
    def strength(self) -> float:
        """img2img strength for the style-transfer target: stronger cloaks aim further."""
        return min(max(0.3 + 4.0 * self.budget, 0.2), 0.8)
