"""The Glaze algorithm as a library: no sockets, no host applications.

    bundle = load_bundle("demo")                       # or a folder / hub id
    profile = resolve_target(bundle, "my-name", artworks)
    result = cloak(pixels, bundle, profile.target_style, CloakSettings(intensity="default"))
    result.image, result.report
"""

from .cloak import CloakReport, CloakResult, cloak
from .models import NO_PROTECTION, ModelBundle, ModelLoadError, load_bundle
from .profiles import ArtistProfile, ProfileStore, resolve_target
from .progress import Cancelled
from .settings import CloakSettings

__all__ = [
    "NO_PROTECTION", "ArtistProfile", "Cancelled", "CloakReport", "CloakResult",
    "CloakSettings", "ModelBundle", "ModelLoadError", "ProfileStore", "cloak", "load_bundle",
    "resolve_target",
]
