"""Per-user folders and all-or-nothing file writes."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import platformdirs

from glaze.stamp import remove_stale_parts

APP = "glaze"


def data_dir() -> Path:
    """Artist profiles live here ($GLAZE_DATA_DIR overrides the per-user default)."""
    return Path(os.environ.get("GLAZE_DATA_DIR") or platformdirs.user_data_dir(APP, False))


def cache_dir() -> Path:
    """Recomputable results live here ($GLAZE_CACHE_DIR overrides the per-user default)."""
    return Path(os.environ.get("GLAZE_CACHE_DIR") or platformdirs.user_cache_dir(APP, False))


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; it replaces `path` only if the block succeeds.

    Readers see the old file or the whole new one, never a half-written one.
    """
    path = Path(path)
    remove_stale_parts(path)
    # Not mkstemp: its 0600 mode would end up on the user's file; this one gets the umask's.
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.part")
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def write_json(path: str | Path, data: object) -> None:
    """Write `data` as JSON, atomically, creating the folder if needed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as temporary:
        temporary.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
