"""One daemon job (a cloak, or the preview of one): the daemon works in a thread while
Krita stays responsive; the result is applied on Krita's own thread, all at once, or not at
all."""

from .client import Client, DaemonError, JobCancelled
from .qt import QObject, QThread, pyqtSignal


class DaemonThread(QThread):
    """Talks to the daemon (the client's socket lives and dies in this thread)."""

    progressed = pyqtSignal(float, str)
    succeeded = pyqtSignal(bytes, dict)
    failed = pyqtSignal(str)
    cancelled = pyqtSignal()

    def __init__(self, request, parent=None) -> None:
        """`request(client)` queues the job and returns it (client.Job)."""
        super().__init__(parent)
        self.request = request
        self.cancel_requested = False
        self.finish_requested = False  # end the cloak at its next step, keeping its result

    def run(self) -> None:
        try:
            with Client.connect(autostart=True) as client:
                job = self.request(client)
                asked = []

                def on_progress(fraction: float, message: str) -> None:
                    if self.cancel_requested and not asked:  # once: the daemon confirms
                        job.cancel()
                        asked.append(True)
                    self.progressed.emit(fraction, message)

                data, result = job.result(on_progress, lambda: self.finish_requested)
                self.succeeded.emit(bytes(data), result)
        except JobCancelled:
            self.cancelled.emit()
        except DaemonError as error:  # a failed job included (JobFailed)
            self.failed.emit(str(error))
        except Exception as error:  # never let a thread die silently inside Krita
            self.failed.emit(f"{type(error).__name__}: {error}")


def cloak_request(pixels, settings: dict):
    """A cloak job of `pixels` (document.Pixels) with the daemon's `settings`."""
    return lambda client: client.submit(pixels.data, pixels.layout, settings)


def preview_request(job_id: str):
    """The preview of finished cloak job `job_id`: its data is the sheet, a PNG."""
    return lambda client: client.preview(job_id)


class GlazeRun(QObject):
    """Runs the daemon job `request` makes (cloak_request, preview_request) and calls
    `apply(data, result)` with what comes back; `result["job"]` names the job.

    `finished(status, message)`: status is "done", "failed" or "cancelled".
    """

    progressed = pyqtSignal(float, str)
    finished = pyqtSignal(str, str)

    def __init__(self, request, apply, parent=None) -> None:
        super().__init__(parent)
        self.apply = apply
        self.job_id: str | None = None  # the job's, once it is done
        self.thread = DaemonThread(request, self)
        self.thread.progressed.connect(self.progressed)
        self.thread.succeeded.connect(self._succeeded)
        self.thread.failed.connect(lambda message: self.finished.emit("failed", message))
        self.thread.cancelled.connect(lambda: self.finished.emit("cancelled", "Cancelled."))

    def start(self) -> None:
        self.thread.start()

    def cancel(self) -> None:
        self.thread.cancel_requested = True

    def finish_now(self) -> None:
        """End the cloak at its next step and apply what it has made."""
        self.thread.finish_requested = True

    def _succeeded(self, data: bytes, result: dict) -> None:
        if self.thread.cancel_requested:  # the result came first: the user still said no
            self.finished.emit("cancelled", "Cancelled.")
            return
        self.job_id = result.get("job")
        try:
            message = self.apply(data, result)
        except Exception as error:
            self.finished.emit("failed", f"{type(error).__name__}: {error}")
            return
        self.finished.emit("done", message)
