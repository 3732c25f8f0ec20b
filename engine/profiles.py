"""Artist profiles: the target style an artist cloaks all their artwork toward.

Cloaking different artworks of one artist toward different targets would let the style
average back out, so the choice is made once per profile and stored.
"""

from __future__ import annotations

import datetime
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from . import storage

if TYPE_CHECKING:  # the choice itself needs the models: imported where it is made
    import numpy as np

    from .models import ModelBundle
    from .progress import Progress
    from .target import CentroidCache

NAME_PATTERN = re.compile(r"^[\w][\w .-]{0,63}$")


@dataclass
class ArtistProfile:
    name: str
    target_style: str
    chosen_by: str  # "auto" (percentile-band pick) or "user" (an override)
    bundle: str  # the bundle whose features chose it ("" for a user's choice)
    created: str

    @classmethod
    def new(cls, name: str, target_style: str, chosen_by: str, bundle: str = "") -> ArtistProfile:
        now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        return cls(name, target_style, chosen_by, bundle, now)


class ProfileStore:
    """One JSON file per profile in the per-user data folder."""

    def __init__(self, folder: Path | None = None) -> None:
        self.folder = folder or storage.data_dir() / "profiles"

    def path(self, name: str) -> Path:
        if not NAME_PATTERN.match(name):
            raise ValueError(f"invalid profile name {name!r}: use letters, digits, spaces, "
                             "'.', '-' or '_' (at most 64)")
        return self.folder / f"{name}.json"

    def names(self) -> list[str]:
        """Every stored profile's name, sorted."""
        return sorted(path.stem for path in self.folder.glob("*.json")
                      if NAME_PATTERN.match(path.stem))

    def load(self, name: str) -> ArtistProfile | None:
        path = self.path(name)
        if not path.is_file():
            return None
        return ArtistProfile(**json.loads(path.read_text()))

    def save(self, profile: ArtistProfile) -> None:
        storage.write_json(self.path(profile.name), asdict(profile))


def resolve_target(bundle: ModelBundle, profile_name: str, artworks: Iterable[np.ndarray], *,
                   override: str | None = None, seed: int = 0,
                   store: ProfileStore | None = None, cache: CentroidCache | None = None,
                   styles: Sequence[str] | None = None,
                   progress: Progress | None = None) -> ArtistProfile:
    """The profile's target style: the user's override, else the stored pick, else a new
    pick made from `artworks` (then stored)."""
    store = store or ProfileStore()
    if override is not None:
        if not override.strip():
            raise ValueError("the target style must not be empty")
        profile = ArtistProfile.new(profile_name, override.strip(), "user")
        store.save(profile)
        return profile
    existing = store.load(profile_name)
    if existing is not None:
        return existing
    from .target import choose_target

    target = choose_target(bundle, artworks, seed, styles, cache, progress)
    profile = ArtistProfile.new(profile_name, target, "auto", bundle.name)
    store.save(profile)
    return profile
