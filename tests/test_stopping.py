"""The stopping rule and the time left, apart from any model (engine/stopping.py)."""

import re

import pytest

from glaze.engine.stopping import (
    CANCELLED,
    CAP,
    GOAL,
    PLATEAU,
    PLATEAU_CHECKS,
    PLATEAU_GAIN,
    PLATEAU_STEPS,
    Check,
    Stopping,
    time_left_text,
)


def checked(stopping: Stopping, *shifts: float, every: int = 10) -> Stopping:
    for index, shift in enumerate(shifts, start=1):
        stopping.add(Check(index * every, index * every * 2.0, {"sd": shift, "flux": shift + 0.1}))
    return stopping


def test_the_goal_ends_the_run_once_every_family_reaches_it():
    stopping = checked(Stopping(goal=0.3, cap=500), 0.1, 0.2)
    assert stopping.reason(20) is None
    stopping.add(Check(30, 60.0, {"sd": 0.35, "flux": 0.29}))  # one family still short
    assert stopping.reason(30) is None
    stopping.add(Check(40, 80.0, {"sd": 0.35, "flux": 0.31}))
    assert stopping.reason(40) == GOAL
    assert stopping.reason(41) is None  # judged at a check only


def test_a_plateau_ends_the_run_short_of_its_goal():
    rising = [0.05 * step for step in range(1, 7)]
    stopping = checked(Stopping(goal=0.9, cap=500), *rising)
    assert stopping.reason(60) is None
    flat = rising + [rising[-1] + PLATEAU_GAIN / 2] * PLATEAU_CHECKS
    stopping = checked(Stopping(goal=0.9, cap=500), *flat)
    assert stopping.reason(10 * len(flat)) == PLATEAU
    # as few steps as PLATEAU_STEPS need: frequent checks over a short span go on
    stopping = checked(Stopping(goal=0.9, cap=500), *flat, every=PLATEAU_STEPS // 8)
    assert stopping.reason(len(flat) * (PLATEAU_STEPS // 8)) is None


def test_once_settled_a_check_that_does_not_beat_the_best_is_a_plateau():
    rising = [0.1, 0.2, 0.3, 0.4, 0.5]  # every 10 steps; the step rule settles at 40
    stopping = checked(Stopping(goal=0.9, cap=500, settled=40), *rising)
    assert stopping.reason(50) is None and stopping.worth_keeping()  # 50 beat 40
    stopping.add(Check(60, 120.0, {"sd": 0.5 + PLATEAU_GAIN / 2}))
    assert stopping.reason(60) == PLATEAU and stopping.worth_keeping()
    # Not settled yet: the same checks need the whole window.
    unsettled = checked(Stopping(goal=0.9, cap=500, settled=None), *rising)
    unsettled.add(Check(60, 120.0, {"sd": 0.5 + PLATEAU_GAIN / 2}))
    assert unsettled.reason(60) is None and not unsettled.worth_keeping()
    # A settled check below the best since settling is a plateau, and not worth keeping.
    dipped = checked(Stopping(goal=0.9, cap=500, settled=40), *rising, 0.45)
    assert dipped.reason(60) == PLATEAU and not dipped.worth_keeping()
    # The check at the settling step is judged by the whole window, as before it: a small
    # gain over the last check alone goes on.
    at_settling = checked(Stopping(goal=0.9, cap=500, settled=50), *rising[:4],
                          rising[3] + PLATEAU_GAIN / 2)
    assert at_settling.reason(50) is None and at_settling.worth_keeping()
    # Without a goal there is no plateau, but the cap keeps the best settled check too.
    no_goal = checked(Stopping(goal=None, cap=500, settled=40), *rising, 0.45)
    assert no_goal.reason(60) is None and not no_goal.worth_keeping()
    no_goal.add(Check(70, 140.0, {"sd": 0.55}))
    assert no_goal.worth_keeping()


def test_the_cap_is_checked_only_where_settled_checks_are_weighed():
    assert not checked(Stopping(goal=None, cap=50, settled=60), 0.1, 0.2).checks_at_cap(50)
    settled = checked(Stopping(goal=None, cap=50, settled=20), 0.1, 0.2, 0.3)
    assert not settled.checks_at_cap(49) and settled.checks_at_cap(50)
    assert not checked(Stopping(goal=None, cap=50), 0.1, 0.2, 0.3).checks_at_cap(50)


def test_finishing_ends_the_run_after_a_step_and_other_reasons_come_first():
    stopping = Stopping(goal=0.3, cap=10)
    assert stopping.reason(0, finishing=True) is None  # not before a step has run
    assert stopping.reason(1, finishing=True) == CANCELLED
    assert stopping.reason(10, finishing=True) == CAP  # the run ended by itself anyway
    checked(stopping, 0.35)
    assert stopping.reason(10, finishing=True) == GOAL


def test_without_a_goal_every_step_runs_and_the_cap_ends_it():
    stopping = checked(Stopping(goal=None, cap=50), 0.5, 0.5, 0.5, 0.5, 0.5)
    assert stopping.reason(49) is None
    assert stopping.reason(50) == CAP
    assert Stopping(goal=0.3, cap=0).reason(0) == CAP


def test_the_best_check_is_the_weakest_family_s_highest():
    stopping = Stopping(goal=None, cap=100)
    stopping.add(Check(10, 1.0, {"sd": 0.2, "flux": 0.5}))
    stopping.add(Check(20, 2.0, {"sd": 0.3, "flux": 0.1}))
    assert stopping.best.step == 10
    stopping.add(Check(30, 3.0, {"sd": 0.25, "flux": 0.25}))
    assert stopping.best.step == 30


def test_the_time_left_comes_from_the_pace_and_the_trend():
    stopping = Stopping(goal=0.4, cap=200)
    assert stopping.seconds_left(10, 20.0) == pytest.approx(190 * 2.0)  # no trend: to the cap
    checked(stopping, 0.1, 0.2)  # 0.01 a step: 20 steps to the goal
    assert stopping.seconds_left(20, 40.0) == pytest.approx(20 * 2.0)
    stopping.add(Check(30, 60.0, {"sd": 0.4}))
    assert stopping.seconds_left(30, 60.0) == 0


def test_once_settled_a_flat_trend_leaves_the_time_to_the_next_check():
    flat = [0.2, 0.2 + PLATEAU_GAIN / 2, 0.2 + PLATEAU_GAIN]  # at 10, 20 and 30 steps
    settled = checked(Stopping(goal=0.4, cap=200, settled=30), *flat)
    assert settled.seconds_left(33, 66.0) == pytest.approx(7 * 2.0)  # check at 40 ends it
    # Before settling the same trend leaves its way to the goal (or the cap) ...
    unsettled = checked(Stopping(goal=0.4, cap=200, settled=60), *flat)
    assert unsettled.seconds_left(33, 66.0) == pytest.approx(167 * 2.0)
    # ... and a settled trend that still gains, its way to the goal.
    rising = checked(Stopping(goal=0.4, cap=200, settled=30), 0.2, 0.25, 0.3)
    assert rising.seconds_left(33, 66.0) == pytest.approx(17 * 2.0)


@pytest.mark.parametrize(("seconds", "text"), [(0.2, "about 1 s left"), (3.4, "about 3 s left"),
                                               (42, "about 40 s left"),
                                               (200, "about 3 min left")])
def test_the_time_left_in_words(seconds, text):
    assert time_left_text(seconds) == text
    assert re.fullmatch(r"about \d+ (s|min) left", text)


def test_the_user_is_told_why_it_stopped_and_which_step_it_kept():
    from glaze.daemon.client import stopping_text

    report = {"stopped": PLATEAU, "goal": 0.4, "steps_run": 66, "kept_step": 60,
              "encoder_passes": 82}
    assert stopping_text(report) == (
        "stopped where the shift stopped growing, short of its goal (40%) in 66 steps, "
        "keeping step 60's cloak, the best of its last checks, 82 encoder passes")
    last = {**report, "kept_step": 66}
    assert "keeping" not in stopping_text(last)
    assert stopping_text({**last, "stopped": CANCELLED}).startswith(
        "was finished early on request, short of its goal (40%) in 66 steps")
    assert stopping_text({"stopped": "unknown to this client"}) == ""
