"""Every Krita and GIMP version series the README claims is tested for real: in CI a missing
one fails the run instead of its tests being skipped (tests/hosts.py finds them)."""

import socket

import pytest
from hosts import GIMP_SERIES, IN_CI, KRITA_SERIES, find_gimps, find_kritas, missing, xvfb_run


@pytest.mark.parametrize(("program", "find", "claimed"), [
    ("Krita", find_kritas, KRITA_SERIES), ("GIMP", find_gimps, GIMP_SERIES)])
def test_every_claimed_version_is_here_to_test(program, find, claimed):
    found = find()
    absent = missing(found, claimed)
    if absent and not IN_CI:
        pytest.skip(f"{program} {', '.join(absent)} not found here (.ci/run provides them)")
    assert not absent, (f"{program} {', '.join(absent)} not found (found: "
                        f"{[host.version for host in found]}); .ci/run builds the Debian roots")


def test_a_missing_series_is_reported():
    class Host:
        version = "5.3.4"

    assert missing([Host()], KRITA_SERIES) == ["5.1 or 5.2", "6.0"]
    assert missing([], GIMP_SERIES) == ["3.0", "3.2"]


def test_each_xvfb_gets_a_display_no_x_server_listens_on():
    first = int(xvfb_run()[3])
    taken = socket.socket(socket.AF_UNIX)  # an X server of another root on the next number
    taken.bind(f"\0/tmp/.X11-unix/X{first + 1}")
    try:
        argv = xvfb_run("-screen 0 640x480x24")
    finally:
        taken.close()
    assert argv[:3] == ["xvfb-run", "-a", "-n"] and int(argv[3]) == first + 2
    assert argv[4:] == ["-s", "-screen 0 640x480x24"]
