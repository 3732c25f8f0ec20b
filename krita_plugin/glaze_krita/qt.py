"""The one place the plug-in imports Qt: PyQt5 in Krita 5, PyQt6 in Krita 6.

Since Krita 5.3 an import hook in Krita refuses the binding it does not run, so the binding
is chosen by what Krita says (`pykrita.qt_major_version()`), never by trying an import.
Krita before 5.3 has no such function and runs Qt 5. The rest of the plug-in writes enums in
their scoped form (QDialogButtonBox.StandardButton.Ok) and calls exec(): PyQt5 5.15 and
PyQt6 both take them.
"""

SUPPORTED_QT = (5, 6)


class UnsupportedKrita(ImportError):
    """This Krita runs a Qt the plug-in does not know; the message says what to do (Krita
    shows it in Settings > Python Plugin Manager)."""


def qt_major_version() -> int:
    try:
        from pykrita import qt_major_version as krita_qt  # Krita 5.3 and later
    except ImportError:
        return 5
    return int(krita_qt())


QT_MAJOR = qt_major_version()
if QT_MAJOR == 6:
    from PyQt6.QtCore import PYQT_VERSION_STR, QObject, QThread, QTimer, pyqtSignal
    from PyQt6.QtWidgets import (
        QComboBox,
        QDialog,
        QDialogButtonBox,
        QFileDialog,
        QFormLayout,
        QLabel,
        QLineEdit,
        QMessageBox,
        QProgressDialog,
        QSpinBox,
    )
elif QT_MAJOR == 5:
    from PyQt5.QtCore import PYQT_VERSION_STR, QObject, QThread, QTimer, pyqtSignal
    from PyQt5.QtWidgets import (
        QComboBox,
        QDialog,
        QDialogButtonBox,
        QFileDialog,
        QFormLayout,
        QLabel,
        QLineEdit,
        QMessageBox,
        QProgressDialog,
        QSpinBox,
    )
else:
    raise UnsupportedKrita(
        f"Glaze supports Krita 5 (Qt 5) and Krita 6 (Qt 6); this Krita runs Qt {QT_MAJOR}. "
        "Install a newer Glaze (then `glaze install`), or use Glaze from the command line.")

BINDING = f"PyQt{QT_MAJOR} {PYQT_VERSION_STR}"

__all__ = ["BINDING", "QT_MAJOR", "QComboBox", "QDialog", "QDialogButtonBox",
           "QFileDialog", "QFormLayout", "QLabel", "QLineEdit", "QMessageBox", "QObject",
           "QProgressDialog", "QSpinBox", "QThread", "QTimer", "UnsupportedKrita",
           "pyqtSignal"]
