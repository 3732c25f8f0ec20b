"""Progress reporting, cooperative cancellation and "finish now", shared by every long engine
call."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

ProgressCallback = Callable[[float, str], None]  # (fraction done in [0, 1], message)
CancelCheck = Callable[[], bool]  # returns True once the caller wants the work stopped
# returns True once the caller wants a cloak ended at its next step, keeping what it made
FinishCheck = Callable[[], bool]


class Cancelled(Exception):
    """The caller asked to stop; nothing was produced."""

    def __init__(self, steps_run: int = 0) -> None:
        super().__init__(f"cancelled after {steps_run} step(s)")
        self.steps_run = steps_run


@dataclass
class Progress:
    """Reports a phase of a job as a slice [start, end] of the job's whole progress."""

    callback: ProgressCallback | None = None
    cancel: CancelCheck | None = None
    start: float = 0.0
    end: float = 1.0
    finish: FinishCheck | None = None

    def report(self, fraction: float, message: str) -> None:
        if self.callback is not None:
            self.callback(self.start + (self.end - self.start) * min(max(fraction, 0.0), 1.0),
                          message)

    def check(self, steps_run: int = 0) -> None:
        """Raise Cancelled if the caller asked to stop."""
        if self.cancel is not None and self.cancel():
            raise Cancelled(steps_run)

    def finishing(self) -> bool:
        """Whether the caller asked to end the work now and keep what it made."""
        return self.finish is not None and self.finish()

    def phase(self, start: float, end: float) -> Progress:
        """The sub-slice [start, end] of this one (fractions of this slice)."""
        span = self.end - self.start
        return Progress(self.callback, self.cancel, self.start + span * start,
                        self.start + span * end, self.finish)
