"""The tests' deadlines, scaled by one factor for slow machines.

GLAZE_TEST_TIMEOUT_SCALE (default 1) multiplies every fixed deadline and timeout in the
tests, so a slow machine can give them more time while each still catches a real hang.
Where a bound is a promise of the software itself, only its slack is scaled: a job whose
client vanished is cancelled within 1.0 + scaled(1.0) s, the daemon's fixed 1 s heartbeat
timeout plus up to a step of work, so 2 s exactly at the default factor.
Standard library only: Krita's scenario (run by Krita's own Python) loads this file too.
"""

from __future__ import annotations

import os

VARIABLE = "GLAZE_TEST_TIMEOUT_SCALE"


def scale() -> float:
    """The factor from $GLAZE_TEST_TIMEOUT_SCALE: 1 when unset, a positive number otherwise."""
    text = os.environ.get(VARIABLE, "").strip()
    if not text:
        return 1.0
    try:
        factor = float(text)
    except ValueError:
        raise ValueError(f"{VARIABLE} must be a number, not {text!r}") from None
    if not factor > 0 or factor == float("inf"):
        raise ValueError(f"{VARIABLE} must be a positive, finite number, not {text!r}")
    return factor


def scaled(seconds: float) -> float:
    """`seconds` (a deadline, a timeout or a wait) times the factor."""
    return seconds * scale()
