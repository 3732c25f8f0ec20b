"""The settings dialog, one row per declared setting (the shared client's `options`);
choices are remembered in Krita's settings."""

from __future__ import annotations

from krita import Krita

from .client import DaemonState, daemon_state, options
from .qt import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QPixmap,
    QProgressBar,
    QScrollArea,
    QSpinBox,
    QTimer,
    QVBoxLayout,
    QWidget,
    pyqtSignal,
)

GROUP = "glaze"
INT_RANGE = (-2**31, 2**31 - 1)  # a QSpinBox holds a C int
WATCH_MS = 1000  # how often the dialog asks a loading daemon how far it is


def remembered() -> dict:
    """The last values the dialog was accepted with (the declared defaults at first)."""
    app = Krita.instance()
    return {setting.name: _from_text(setting, app.readSetting(GROUP, setting.name,
                                                              setting.text_default()))
            for setting in options.SETTINGS + options.EXPORT_SETTINGS}


def _from_text(setting, text) -> object:
    """A value as Krita stores it (text) back to the setting's type; one that does not fit
    gives the default, so an old or hand-edited kritarc cannot break the dialog."""
    text = (text or "").strip()
    if setting.choices:
        try:
            return ",".join(setting.selection(text))
        except ValueError:
            return setting.text_default()
    if setting.kind is int and not setting.presets:
        try:
            number = int(text)
        except ValueError:
            return setting.default
        return number if setting.in_range(number) else setting.default
    return text or setting.text_default()


def remember(values: dict) -> None:
    app = Krita.instance()
    for key, value in values.items():
        app.writeSetting(GROUP, key, str(value))


def job_settings(values: dict) -> dict:
    """The daemon's settings from the dialog's values (an empty target is left out)."""
    return options.wire_settings(values)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


class ChoiceGroup(QWidget):
    """A several-choice setting: one checkbox per choice; its value is the checked names,
    comma-separated, as the daemon reads them."""

    def __init__(self, setting, current: str, choices: dict) -> None:
        super().__init__()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        chosen = set(current.split(",")) & set(choices) or set(choices)
        self.boxes = {}
        for name, label in choices.items():
            box = QCheckBox(label)
            box.setChecked(name in chosen)
            layout.addWidget(box)
            self.boxes[name] = box

    def value(self) -> str:
        return ",".join(name for name, box in self.boxes.items() if box.isChecked())


class GlazeDialog(QDialog):
    """`state`: the daemon's, as the dialog opens (client.daemon_state(); asked for when not
    given). Its line heads the dialog, followed as it loads its models; the lists hold the
    presets and choices it advertises, else the declared ones. OK needs at least one
    checked box in each checkbox group."""

    def __init__(self, title: str, export: bool = False, state: DaemonState | None = None,
                 parent=None) -> None:
        super().__init__(parent)
        self.setWindowTitle(title)
        state = state or daemon_state()
        offered = state.options
        self.remembered = remembered()
        self.fields = {}
        form = QFormLayout(self)
        self.daemon_line = QLabel(state.text)
        self.daemon_line.setWordWrap(True)
        form.addRow(self.daemon_line)
        self.watch = QTimer(self)  # a loading daemon's progress, until it is ready
        self.watch.timeout.connect(self.follow_daemon)
        if state.loading:
            self.watch.start(WATCH_MS)
        shown = options.SETTINGS + (options.EXPORT_SETTINGS if export else ())
        for setting in shown:
            presets = options.presets_of(setting, offered)
            current = self.remembered[setting.name]
            if setting.choices:
                widget = ChoiceGroup(setting, str(current), options.choices_of(setting, offered))
            else:
                widget = self._widget(setting, current, presets)
            widget.setToolTip(setting.describe(presets))
            form.addRow(setting.label, widget)
            self.fields[setting.name] = widget
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok
                                   | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)
        self.ok = buttons.button(QDialogButtonBox.StandardButton.Ok)
        groups = [widget for widget in self.fields.values() if isinstance(widget, ChoiceGroup)]
        for box in (box for group in groups for box in group.boxes.values()):
            box.toggled.connect(lambda _checked: self.ok.setEnabled(
                all(group.value() for group in groups)))

    def follow_daemon(self) -> None:
        state = daemon_state()
        self.daemon_line.setText(state.text)
        if not state.loading:
            self.watch.stop()

    @staticmethod
    def _widget(setting, current, presets: dict):
        if presets:
            return GlazeDialog._combo(setting, str(current), presets)
        if setting.kind is int:
            spin = QSpinBox()
            low, high = INT_RANGE
            spin.setRange(int(setting.minimum if setting.minimum is not None else low),
                          int(setting.maximum if setting.maximum is not None else high))
            spin.setSingleStep(setting.multiple_of or 1)
            spin.setValue(int(current))
            return spin
        if setting.suggestions:
            return GlazeDialog._suggesting(setting, str(current))
        line = QLineEdit(str(current))
        line.setPlaceholderText(setting.placeholder)
        return line

    @staticmethod
    def _suggesting(setting, current: str) -> QComboBox:
        """A text field with a list of suggestions (the candidate target styles); its
        first, empty entry stands for the placeholder (chosen automatically)."""
        combo = QComboBox()
        combo.setEditable(True)
        combo.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)
        combo.addItems(["", *setting.suggestions()])
        combo.lineEdit().setPlaceholderText(setting.placeholder)
        # A field as wide as the placeholder, not as the longest style; the list shows all.
        combo.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        combo.setMinimumContentsLength(len(setting.placeholder))
        combo.view().setMinimumWidth(combo.view().sizeHintForColumn(0))
        combo.setCurrentText(current)
        return combo

    @staticmethod
    def _combo(setting, current: str, presets: dict) -> QComboBox:
        """Preset names with their numbers; the item's data is the name the daemon reads."""
        combo = QComboBox()
        for name, value in presets.items():
            combo.addItem(setting.preset_format.format(name=name, value=value), name)
        if combo.findData(current) < 0 and _is_number(current):  # a number set by a script
            combo.addItem(current, current)
        index = combo.findData(current)
        if index < 0:  # a preset this daemon does not offer
            index = combo.findData(setting.default)
        combo.setCurrentIndex(max(index, 0))
        return combo

    def values(self) -> dict:
        """Every setting's value: the shown widgets', the remembered ones for the rest."""
        values = dict(self.remembered)
        for name, widget in self.fields.items():
            if isinstance(widget, ChoiceGroup):
                values[name] = widget.value()
            elif isinstance(widget, QComboBox) and widget.isEditable():
                values[name] = widget.currentText().strip()
            elif isinstance(widget, QComboBox):
                values[name] = widget.currentData()
            elif isinstance(widget, QSpinBox):
                values[name] = widget.value()
            else:
                values[name] = widget.text().strip() or options.BY_NAME[name].text_default()
        return values


class PreviewDialog(QDialog):
    """The sheet of what each defended model family makes of the picture (a PNG file), with
    a button that adds it to Krita as a new document."""

    OPEN = "Open as a new document"

    def __init__(self, path: str, note: str = "", parent=None) -> None:
        super().__init__(parent)
        self.setWindowTitle(options.SHOW_PREVIEW)
        layout = QVBoxLayout(self)
        sheet = QLabel()
        sheet.setPixmap(QPixmap(path))
        scroll = QScrollArea()
        scroll.setWidget(sheet)
        scroll.setMinimumSize(min(sheet.sizeHint().width() + 24, 1000),
                              min(sheet.sizeHint().height() + 24, 700))
        layout.addWidget(scroll)
        if note:
            said = QLabel(note)
            said.setWordWrap(True)
            layout.addWidget(said)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        self.open_button = buttons.addButton(self.OPEN,
                                             QDialogButtonBox.ButtonRole.AcceptRole)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)


class ProgressDialog(QDialog):
    """A job's progress, beside Krita (which stays usable): Cancel, and for a cloak
    "Finish now", which ends it at its next step (after one at least) and applies what it
    has made."""

    canceled = pyqtSignal()
    finish_now = pyqtSignal()
    RANGE = 1000

    def __init__(self, title: str, finishable: bool, parent=None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Glaze")
        layout = QVBoxLayout(self)
        self.label = QLabel(title)
        self.label.setMinimumWidth(420)
        self.bar = QProgressBar()
        self.bar.setRange(0, self.RANGE)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
        self.finish_button = buttons.addButton(options.FINISH_NOW,
                                               QDialogButtonBox.ButtonRole.ActionRole)
        self.finish_button.setToolTip(options.FINISH_NOW_HELP.capitalize())
        self.finish_button.setVisible(finishable)
        self.finish_button.clicked.connect(self._finish)
        buttons.rejected.connect(self.reject)
        for widget in (self.label, self.bar, buttons):
            layout.addWidget(widget)

    def show_progress(self, fraction: float, message: str) -> None:
        self.bar.setValue(int(fraction * self.RANGE))
        self.label.setText(message)

    def _finish(self) -> None:
        self.finish_button.setEnabled(False)  # asked once; the result ends the dialog
        self.finish_now.emit()

    def reject(self) -> None:  # Cancel, Escape or the window's close button
        self.canceled.emit()
        super().reject()
