"""When a cloak stops, and how long it has left.

Every few steps the cloak checks each defended family's shift after a typical upload (what
`incomplete` judges). The run ends at the first check where every family has reached the
goal of its quality preset, when the weakest family's shift has stopped growing over the
last checks (a plateau: more steps would buy nothing), or at the preset's cap of steps.

Once the step rule has settled (its step no longer shrinks: SignedSteps past its horizon),
the shift no longer converges but wanders within a step's reach of where it is, so from
the check after the one where it settles a single check that does not beat the best is a
plateau, and the run keeps the delta of its best check since it settled. A run that reaches
its cap past settling, with a goal or without, is checked there too and ends the same way:
its last steps' wandering never costs it its best check since settling. Before settling
the output is the last step's: on random-weight encoders, whose shift after an upload is
noise, "the best check" of the whole run would pick an early step and give up the shift on
the views.

Plain Python: the rules are tested apart from any model.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Why a run stopped, as reported. CANCELLED: the caller asked to finish now (after a step at
# least), and the output keeps what the steps so far made.
GOAL, PLATEAU, CAP, CANCELLED = "goal", "plateau", "cap", "cancelled"
# A plateau: over the last PLATEAU_CHECKS checks (and at least PLATEAU_STEPS steps) the
# weakest family's shift grew by less than PLATEAU_GAIN (a share of the distance to the
# target).
PLATEAU_CHECKS, PLATEAU_STEPS, PLATEAU_GAIN = 3, 20, 0.005
TREND_CHECKS = 3  # the checks the time-to-goal estimate draws its trend from


@dataclass(frozen=True)
class Check:
    step: int  # steps run when it was taken
    seconds: float  # time spent in the run so far
    shifts: dict[str, float]  # each defended family's shift after a typical upload

    @property
    def weakest(self) -> float:
        return min(self.shifts.values())


@dataclass
class Stopping:
    """The stopping rule of one run: `goal` (None: run to the cap), `cap` in steps and
    `settled`, the step from which the step rule's step stays the same (None: it shrinks
    to the end)."""

    goal: float | None
    cap: int
    settled: int | None = None
    checks: list[Check] = field(default_factory=list)

    @property
    def best(self) -> Check | None:
        """The check with the largest weakest-family shift (the earliest of equals)."""
        return best_of(self.checks)

    def add(self, check: Check) -> None:
        self.checks.append(check)

    @property
    def settled_checks(self) -> list[Check]:
        """The checks taken since the step rule settled."""
        if self.settled is None:
            return []
        return [check for check in self.checks if check.step >= self.settled]

    def worth_keeping(self) -> bool:
        """Whether the last check is the best since the step rule settled: its delta is
        the one a plateau or the cap there ends with."""
        settled = self.settled_checks
        return bool(settled) and settled[-1] is best_of(settled)

    def checks_at_cap(self, steps_run: int) -> bool:
        """Whether the run, at its cap, is checked once more: where it has settled checks
        that the last step's delta must beat to be kept."""
        return steps_run >= self.cap and bool(self.settled_checks)

    def reason(self, steps_run: int, finishing: bool = False) -> str | None:
        """Why the run stops now (GOAL, PLATEAU, CAP; CANCELLED where `finishing`, once a
        step has run), or None to go on."""
        last = self.checks[-1] if self.checks else None
        if last is not None and last.step == steps_run:
            if self.goal is not None and last.weakest >= self.goal:
                return GOAL
            if self.goal is not None and self._plateau():
                return PLATEAU
        if steps_run >= self.cap:
            return CAP
        return CANCELLED if finishing and steps_run > 0 else None

    def _plateau(self) -> bool:
        """Whether the best shift grew by less than PLATEAU_GAIN since the window began: the
        last PLATEAU_CHECKS checks and at least PLATEAU_STEPS steps, or once the step rule
        has settled, the last check alone."""
        last = self.checks[-1].step
        checks, steps = ((1, 0) if len(self.settled_checks) > 1
                         else (PLATEAU_CHECKS, PLATEAU_STEPS))
        before = [check for check in self.checks[:-checks] if check.step <= last - steps]
        if not before:
            return False
        return self.best.weakest - max(check.weakest for check in before) < PLATEAU_GAIN

    def seconds_left(self, steps_run: int, seconds: float) -> float:
        """The time the run has left, from its measured pace: to the cap, or sooner to the
        goal where the last checks' trend reaches it first, or to the next check where the
        step rule has settled and the trend gains less than a plateau's PLATEAU_GAIN a
        check (that check will end it, unless it beats the best)."""
        pace = seconds / max(steps_run, 1)
        steps = self.cap - steps_run
        trend = self.checks[-TREND_CHECKS:]
        if self.goal is not None and len(trend) >= 2:
            last = trend[-1]
            gained = last.weakest - trend[0].weakest
            if last.weakest >= self.goal:
                steps = 0
            elif gained > 0:
                per_step = gained / (last.step - trend[0].step)
                reached = last.step + (self.goal - last.weakest) / per_step
                steps = min(steps, reached - steps_run)
            if (self.settled is not None and last.step >= self.settled
                    and gained / (len(trend) - 1) < PLATEAU_GAIN):
                next_check = last.step + (last.step - trend[-2].step)
                steps = min(steps, next_check - steps_run)
        return max(steps, 0) * pace


def best_of(checks: list[Check]) -> Check | None:
    """The check with the largest weakest-family shift (the earliest of equals)."""
    return max(reversed(checks), key=lambda check: check.weakest, default=None)


def time_left_text(seconds: float) -> str:
    """"about 4 min left", "about 40 s left", "about 3 s left": what the progress line says
    (to the second under ten seconds, to five under a minute and a half)."""
    if seconds >= 90:
        return f"about {round(seconds / 60)} min left"
    if seconds >= 10:
        return f"about {round(seconds / 5) * 5} s left"
    return f"about {max(1, round(seconds))} s left"
