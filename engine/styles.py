"""The candidate target styles shipped with Glaze (no torch: `glaze styles` lists them)."""

from __future__ import annotations

from importlib import resources


def candidate_styles() -> list[str]:
    """The shipped candidate target styles, one "GENRE painting by ARTIST" prompt each."""
    text = resources.files(__package__).joinpath("data/target_styles.txt").read_text("utf-8")
    return [line.strip() for line in text.splitlines()
            if line.strip() and not line.startswith("#")]
