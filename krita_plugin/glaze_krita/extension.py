"""The Krita extension: the actions, and the flows they start."""

import os

from krita import Extension, Krita

from .client import describe, keep_sheet, left_out_lines, options
from .dialog import GlazeDialog, PreviewDialog, ProgressDialog, job_settings, remember
from .document import (
    UnsupportedLayer,
    add_glazed_layer,
    export_pixels,
    read_layer,
    read_projection,
    suggested_export_path,
)
from .job import GlazeRun, cloak_request, preview_request
from .qt import QFileDialog, QMessageBox

EXPORT_TYPES = options.EXPORT_FORMATS  # suffix -> format; Krita's exporter goes by suffix
# id -> (text, menu, method); glaze_krita.action files these ids under Krita's categories.
ACTIONS = {"glaze_layer": ("Glaze\u2026", "filter", "glaze_active_layer"),
           "glaze_export": ("Export Glazed\u2026", "file", "export_active_document")}


class GlazeExtension(Extension):
    def __init__(self, parent) -> None:
        super().__init__(parent)
        self.runs = []  # runs in flight, kept alive until they finish

    def setup(self) -> None:
        pass

    def createActions(self, window) -> None:
        for action_id, (text, menu, method) in ACTIONS.items():
            window.createAction(action_id, text, menu).triggered.connect(getattr(self, method))

    # -- the actions (interactive) -------------------------------------------------------

    def glaze_active_layer(self) -> None:
        document = Krita.instance().activeDocument()
        if document is None:
            return self._tell("Open an image first.")
        dialog = GlazeDialog("Glaze")
        if dialog.exec():
            remember(dialog.values())
            try:
                self.glaze_layer(document, document.activeNode(), job_settings(dialog.values()))
            except UnsupportedLayer as error:
                self._tell(str(error))

    def export_active_document(self) -> None:
        document = Krita.instance().activeDocument()
        if document is None:
            return self._tell("Open an image first.")
        dialog = GlazeDialog("Export Glazed", export=True)
        if not dialog.exec():
            return
        values = dialog.values()
        remember(values)
        path, _ = QFileDialog.getSaveFileName(
            None, "Export Glazed", suggested_export_path(document),
            "Images ({})".format(" ".join("*" + suffix for suffix in EXPORT_TYPES)))
        if path:
            try:
                self.export_glazed(document, path, job_settings(values), values["jpeg_quality"])
            except UnsupportedLayer as error:
                self._tell(str(error))

    # -- the flows (also used by tests and scripts) --------------------------------------

    def glaze_layer(self, document, node, settings: dict, interactive: bool = True) -> GlazeRun:
        """Cloak `node` into a new layer above it. Raises UnsupportedLayer at once."""
        pixels = read_layer(node)

        def apply(data: bytes, result: dict) -> str:
            add_glazed_layer(document, node, pixels, data)
            return describe(result)

        return self._start(cloak_request(pixels, settings), apply,
                           f"Glazing \u201c{node.name()}\u201d", interactive, node.name())

    def export_glazed(self, document, path: str, settings: dict,
                      quality: int = options.JPEG_QUALITY.default,
                      interactive: bool = True) -> GlazeRun:
        """Cloak the visible image into a new file; the document stays as it is."""
        suffix = path[path.rfind("."):].lower() if "." in path else ""
        if suffix not in EXPORT_TYPES:
            raise UnsupportedLayer(f"Export Glazed writes {options.export_names()} files: end "
                                   f"the name with {options.export_suffixes()}.")
        pixels = read_projection(document)

        def apply(data: bytes, result: dict) -> str:
            export_pixels(document, pixels, data, path, result.get("record"), quality)
            return f"Wrote {path}.\n" + describe(result)

        name = os.path.splitext(os.path.basename(path))[0]
        return self._start(cloak_request(pixels, settings), apply, "Exporting glazed",
                           interactive, name)

    def show_what_a_model_sees(self, job_id: str, name: str,
                               interactive: bool = True) -> GlazeRun:
        """The daemon's sheet of what each defended model family's decoder makes of cloak
        job `job_id`'s original, glazed picture and target: in a dialog that can add it as
        a new document (`interactive`), else opened as a new document at once."""
        def apply(data: bytes, result: dict) -> str:
            path = keep_sheet(data, name)
            left_out = "\n".join(left_out_lines(result.get("left_out", {})))
            if interactive and not PreviewDialog(path, left_out).exec():
                return ""
            document = Krita.instance().openDocument(path)
            window = Krita.instance().activeWindow()
            if window is not None and interactive:
                window.addView(document)
            return "" if interactive else f"Opened what a model sees: {path}"

        return self._start(preview_request(job_id), apply, "What a model sees", interactive)

    def _start(self, request, apply, title: str, interactive: bool,
               name: str | None = None) -> GlazeRun:
        """Run a daemon job; interactively with progress, and for a cloak (`name`: what
        it glazed) a result message that offers its preview."""
        run = GlazeRun(request, apply, self)
        self.runs.append(run)
        run.finished.connect(lambda *_: self.runs.remove(run))
        if interactive:
            self._show_progress(run, title, name)
        run.start()
        return run

    def _show_progress(self, run: GlazeRun, title: str, name: str | None) -> None:
        dialog = ProgressDialog(title, finishable=name is not None)
        dialog.canceled.connect(run.cancel)
        dialog.finish_now.connect(run.finish_now)

        def progressed(fraction: float, message: str) -> None:
            dialog.show_progress(fraction, f"{title}: {message}")

        def finished(status: str, message: str) -> None:
            dialog.hide()  # not close(): a dialog's close rejects it, which means Cancel
            dialog.deleteLater()
            if status == "done" and name is not None and run.job_id:
                self._offer_preview(message, run.job_id, name)
            elif status != "cancelled" and message:
                self._tell(message, warning=status == "failed")

        run.progressed.connect(progressed)
        run.finished.connect(finished)
        dialog.show()

    def _offer_preview(self, message: str, job_id: str, name: str) -> None:
        box = QMessageBox(QMessageBox.Icon.Information, "Glaze", message)
        show = box.addButton(options.SHOW_PREVIEW, QMessageBox.ButtonRole.ActionRole)
        show.setToolTip(options.SHOW_PREVIEW_HELP.capitalize())
        box.addButton(QMessageBox.StandardButton.Ok)
        box.exec()
        if box.clickedButton() is show:
            self.show_what_a_model_sees(job_id, name)

    @staticmethod
    def _tell(message: str, warning: bool = True) -> None:
        box = QMessageBox.warning if warning else QMessageBox.information
        box(None, "Glaze", message)
