"""What made an output file, recorded in the file, and whether an existing output is what a
run asks for. A batch that is run again keeps an output only if the same models (demo or
real), target style, settings, seed and source file made it: an output of the demo models
is never taken for a protected one.

Standard library only: the command line checks outputs before it loads any model.
"""

from __future__ import annotations

import datetime
from typing import Any

from .stopping import CANCELLED

FORMAT = 6  # 2: the defended extractors and each one's shift; 3: the transforms, the shift
# after a typical upload; 4: the perceptual bound, and how visible the change is; 5: the
# goal a run stops at, its step rule, why it stopped and its encoder passes; 6: one
# family's encoder a step, or every family's
# What must be equal for an existing output to count as this run's result. The rest of a
# record (bundle name, shift achieved, time) describes the output and is only shown.
MUST_MATCH = ("format", "model", "demo", "target_style", "budget", "steps", "goal",
              "step_rule", "views_in_turn", "every_family", "defend", "work_size",
              "transforms", "seed", "source_sha256")
NONE_MEANS_OFF = ("goal",)  # None: a number of steps, all run; not "not known yet"


def request(model: str, demo: bool, target_style: str | None, settings: Any,
            source_sha256: str) -> dict:
    """What a run asks of one output: `settings` are its CloakSettings; `source_sha256` the
    hash of the source file (of the layer's pixels as sent, for a painting program's
    export). `target_style` is None where it is not known before cloaking (a profile yet
    to choose one): then no existing output can match."""
    return {"format": FORMAT, "model": model, "demo": demo, "target_style": target_style,
            "budget": settings.budget, "steps": settings.steps, "goal": settings.goal,
            "step_rule": settings.step_rule, "views_in_turn": settings.views_in_turn,
            "every_family": settings.every_family,
            "defend": list(settings.extractors), "work_size": settings.work_size,
            "transforms": [list(pair) for pair in settings.transforms], "seed": settings.seed,
            "source_sha256": source_sha256}


def record(asked: dict, report: dict, profile: str, version: str) -> dict:
    """The record an output carries: what was asked, and what the cloak reports it did."""
    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    return {**asked, "glaze": version, "created": now, "profile": profile,
            "target_style": report["target_style"], "bundle": report["bundle"],
            "protection_note": report.get("protection_note"),
            "relative_shift": report["relative_shift"], "incomplete": report["incomplete"],
            "shifts": {name: round(shift["relative_shift"], 4)
                       for name, shift in report.get("extractors", {}).items()},
            "shifts_after_upload": {name: round(shift["after_upload"], 4)
                                    for name, shift in report.get("extractors", {}).items()},
            "linf_cap": report["linf_cap"], "steps_run": report["steps_run"],
            "stopped": report["stopped"], "encoder_passes": report["encoder_passes"],
            "psnr": None if report.get("psnr") is None else round(report["psnr"], 2),
            "visibility": {name: None if value is None else round(value, 4)
                           for name, value in report.get("visibility", {}).items()}}


def mismatch(found: dict | None, asked: dict) -> str | None:
    """Why an output with record `found` is not what `asked` wants (None: it is)."""
    if found is None:
        return "it has no record of what made it"
    if found.get("stopped") == CANCELLED:  # made as asked, but not all of it
        return "it was finished early, before its cloak's own end"
    for key in MUST_MATCH:
        if asked.get(key) is None and key not in NONE_MEANS_OFF:
            return f"this run's {key.replace('_', ' ')} is not known before cloaking"
        if found.get(key) != asked[key]:
            return (f"it was made with {key.replace('_', ' ')} {found.get(key)!r}, this run "
                    f"asks for {asked[key]!r}")
    return None


def describe(found: dict) -> str:
    """The record as lines for `glaze inspect`."""
    lines = []
    if found.get("protection_note"):
        lines.append(f"NOTE: {found['protection_note']}.")
    elif found.get("incomplete"):
        lines.append("INCOMPLETE: the style shift fell short; only partly protected.")
    width = max(map(len, found))
    lines += [f"{key:>{width}}: {value}" for key, value in sorted(found.items())]
    return "\n".join(lines)
