"""The settings dialog; choices are remembered in Krita's settings."""

from krita import Krita
from PyQt5.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QSpinBox,
)

GROUP = "glaze"
INTENSITIES = ("low", "default", "high")
QUALITIES = ("faster", "default", "slower")


def remembered() -> dict:
    app = Krita.instance()
    return {
        "intensity": app.readSetting(GROUP, "intensity", "default") or "default",
        "quality": app.readSetting(GROUP, "quality", "default") or "default",
        "profile": app.readSetting(GROUP, "profile", "default") or "default",
        "target": app.readSetting(GROUP, "target", ""),
        "jpeg_quality": int(app.readSetting(GROUP, "jpeg_quality", "95") or 95),
    }


def remember(values: dict) -> None:
    app = Krita.instance()
    for key, value in values.items():
        app.writeSetting(GROUP, key, str(value))


def job_settings(values: dict) -> dict:
    """The daemon's settings from the dialog's values."""
    settings = {key: values[key] for key in ("intensity", "quality", "profile")}
    if values.get("target"):
        settings["target"] = values["target"]
    return settings


class GlazeDialog(QDialog):
    def __init__(self, title: str, export: bool = False, parent=None) -> None:
        super().__init__(parent)
        self.setWindowTitle(title)
        values = remembered()
        form = QFormLayout(self)
        self.intensity = self._combo(INTENSITIES, values["intensity"])
        self.quality = self._combo(QUALITIES, values["quality"])
        self.profile = QLineEdit(values["profile"])
        self.target = QLineEdit(values["target"])
        self.target.setPlaceholderText("chosen for the profile automatically")
        form.addRow("Intensity", self.intensity)
        form.addRow("Render quality", self.quality)
        form.addRow("Artist profile", self.profile)
        form.addRow("Target style", self.target)
        self.jpeg_quality = QSpinBox()
        self.jpeg_quality.setRange(50, 100)
        self.jpeg_quality.setValue(values["jpeg_quality"])
        if export:
            form.addRow("JPEG quality", self.jpeg_quality)
        note = QLabel("The first glaze of a session starts the Glaze daemon and loads its "
                      "models: it can take a minute or more.")
        note.setWordWrap(True)
        form.addRow(note)
        buttons = QDialogButtonBox(QDialogButtonBox.Ok | QDialogButtonBox.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)

    @staticmethod
    def _combo(choices, current: str) -> QComboBox:
        combo = QComboBox()
        combo.addItems(choices)
        combo.setCurrentText(current if current in choices else "default")
        return combo

    def values(self) -> dict:
        return {"intensity": self.intensity.currentText(),
                "quality": self.quality.currentText(),
                "profile": self.profile.text().strip() or "default",
                "target": self.target.text().strip(),
                "jpeg_quality": self.jpeg_quality.value()}
