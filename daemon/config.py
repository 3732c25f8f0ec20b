"""The user's Glaze settings file, written by `glaze install` (e.g. which model bundle the
daemon loads). Read by the command line; the plug-ins never need it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import platformdirs

from glaze.engine.sources import upgraded_choice
from glaze.options import Setting

DEFAULT_MODEL = "demo"


def config_path() -> Path:
    """$GLAZE_CONFIG_DIR/config.json, else config.json in the per-user config folder."""
    folder = os.environ.get("GLAZE_CONFIG_DIR") or platformdirs.user_config_dir("glaze", False)
    return Path(folder) / "config.json"


def read_config() -> dict:
    """The settings, {} when there are none; a damaged file is reported, not ignored."""
    path = config_path()
    try:
        found = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as error:
        raise ValueError(f"{path} is not a valid settings file ({error}): fix or delete it, "
                         "or run `glaze install` again") from error
    if not isinstance(found, dict):
        raise ValueError(f"{path} is not a valid settings file: run `glaze install` again")
    return found


def configured(setting: Setting) -> str:
    """A saved setting's value from the settings file (`glaze install --defend ...`), else
    its declared default; a value the setting does not accept reads as the default."""
    value = read_config().get(setting.name)
    if value is None:
        return str(setting.default)
    try:
        return ",".join(setting.selection(value)) if setting.choices else str(value)
    except (ValueError, TypeError, AttributeError):
        return str(setting.default)


def configured_model() -> str:
    """The model bundle chosen at install time (`glaze install --models`), else the demo. A
    former default saved by an older version reads as `default`."""
    return upgraded_choice(str(read_config().get("model") or DEFAULT_MODEL))
