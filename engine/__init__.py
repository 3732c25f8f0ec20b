"""The Glaze algorithm as a library: no sockets, no host applications.

    from glaze.engine.cloak import cloak

    bundle = load_bundle("demo")                       # or a folder / hub id
    profile = resolve_target(bundle, "my-name", artworks)
    result = cloak(pixels, bundle, profile.target_style, CloakSettings(intensity="default"))
    result.image, result.report

The names below load their module on first use (PEP 562), so that the installer, the
daemon's client side and file helpers can use this package without importing torch. The
function `cloak` is imported from `glaze.engine.cloak`: the submodule of that name replaces
a lazily loaded attribute of the same name whenever it is first imported.
"""

from __future__ import annotations

import importlib

_HOMES = {
    "CloakReport": "cloak", "CloakResult": "cloak",
    "NO_PROTECTION": "models", "ModelBundle": "models", "load_bundle": "models",
    "ModelLoadError": "sources",
    "ArtistProfile": "profiles", "ProfileStore": "profiles", "resolve_target": "profiles",
    "Cancelled": "progress", "CloakSettings": "settings",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_HOMES[name]}", __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_HOMES])
