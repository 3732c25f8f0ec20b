"""Which Krita versions the plug-in supports, and what an unsupported one is told."""

import re
import sys

from krita import Extension

OLDEST = (5, 0)  # the Python plug-in API the plug-in is written for
NEWEST_MAJOR = 6  # Krita 6 (Qt 6): the newest major version the plug-in knows
PYTHON = (3, 10)  # the shared client's oldest Python (Krita 5.0 and 5.1's own builds: 3.8)


def refusal(version: str, python: tuple = sys.version_info[:2]) -> str:
    """Why Krita `version` ("5.3.4", "6.0.0-beta1") running Python `python` is not
    supported, or "" if it is."""
    if tuple(python) < PYTHON:
        return (f"Glaze needs Python {PYTHON[0]}.{PYTHON[1]} or newer inside Krita; this Krita "
                f"{version} runs Python {python[0]}.{python[1]}. Krita 5.2 and later run a "
                "newer one.")
    numbers = re.match(r"(\d+)\.(\d+)", version or "")
    if numbers is None:
        return ""  # a development build that does not say: try
    found = (int(numbers.group(1)), int(numbers.group(2)))
    if found >= OLDEST and found[0] <= NEWEST_MAJOR:
        return ""
    return (f"Glaze supports Krita {OLDEST[0]}.{OLDEST[1]} to {NEWEST_MAJOR}.x; this is Krita "
            f"{version}. " + ("Update Krita, or use Glaze from the command line (glaze cloak)."
                              if found < OLDEST else
                              "Install a newer Glaze, then run `glaze install` again."))


class RefusalNotice(Extension):
    """Stands in for the plug-in in an unsupported Krita: says so once, adds no action."""

    def __init__(self, parent, message: str) -> None:
        super().__init__(parent)
        self.message, self.shown = message, False

    def setup(self) -> None:
        pass

    def createActions(self, window) -> None:
        if self.shown:
            return
        self.shown = True
        from .qt import QMessageBox, QTimer

        QTimer.singleShot(0, lambda: QMessageBox.warning(None, "Glaze", self.message))
