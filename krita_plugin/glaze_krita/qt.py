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
if QT_MAJOR not in SUPPORTED_QT:
    raise UnsupportedKrita(
        f"Glaze supports Krita 5 (Qt 5) and Krita 6 (Qt 6); this Krita runs Qt {QT_MAJOR}. "
        "Install a newer Glaze (then `glaze install`), or use Glaze from the command line.")
if QT_MAJOR == 6:
    from PyQt6 import QtCore, QtGui, QtWidgets
else:
    from PyQt5 import QtCore, QtGui, QtWidgets

# What the plug-in uses; both bindings keep these in the same modules.
QObject, QThread, QTimer, pyqtSignal = (QtCore.QObject, QtCore.QThread, QtCore.QTimer,
                                        QtCore.pyqtSignal)
QComboBox, QDialog, QDialogButtonBox, QFileDialog, QFormLayout, QLabel, QLineEdit = (
    QtWidgets.QComboBox, QtWidgets.QDialog, QtWidgets.QDialogButtonBox, QtWidgets.QFileDialog,
    QtWidgets.QFormLayout, QtWidgets.QLabel, QtWidgets.QLineEdit)
QMessageBox, QSpinBox = QtWidgets.QMessageBox, QtWidgets.QSpinBox
QCheckBox, QVBoxLayout, QWidget = QtWidgets.QCheckBox, QtWidgets.QVBoxLayout, QtWidgets.QWidget
QPixmap, QProgressBar, QScrollArea = QtGui.QPixmap, QtWidgets.QProgressBar, QtWidgets.QScrollArea

__all__ = ["QT_MAJOR", "QCheckBox", "QComboBox", "QDialog", "QDialogButtonBox", "QFileDialog",
           "QFormLayout", "QLabel", "QLineEdit", "QMessageBox", "QObject", "QPixmap",
           "QProgressBar", "QScrollArea", "QSpinBox", "QThread", "QTimer", "QVBoxLayout",
           "QWidget", "QtCore", "QtGui", "QtWidgets", "UnsupportedKrita", "pyqtSignal"]
