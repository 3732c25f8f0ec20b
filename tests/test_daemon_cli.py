"""`glaze daemon start|stop|status` and `glaze cloak` through the daemon, as processes."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import painting
from PIL import Image
from timing import scaled

from glaze.daemon.connection import pid_alive, read_connection


def glaze(env: dict, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "glaze", *args], env=env, text=True,
                          capture_output=True, timeout=scaled(timeout))


@pytest.fixture
def env(tmp_path):
    environment = dict(os.environ, GLAZE_STATE_DIR=str(tmp_path / "state"),
                       GLAZE_DATA_DIR=str(tmp_path / "data"),
                       GLAZE_CACHE_DIR=str(tmp_path / "cache"))
    yield environment
    glaze(environment, "daemon", "stop")


def connection(env: dict):
    return read_connection(Path(env["GLAZE_STATE_DIR"]) / "daemon.json")


def test_start_status_second_start_and_stop(env):
    started = glaze(env, "daemon", "start")
    assert started.returncode == 0, started.stderr
    info = connection(env)
    assert f"pid {info.pid}" in started.stdout and pid_alive(info.pid)
    again = glaze(env, "daemon", "start")
    assert "already running" in again.stdout and f"pid {info.pid}" in again.stdout
    status = glaze(env, "daemon", "status")
    assert status.returncode == 0 and f"pid: {info.pid}" in status.stdout
    assert "bundle: demo-seed0" in status.stdout and "NO protection" in status.stdout
    stopped = glaze(env, "daemon", "stop")
    assert f"stopped the Glaze daemon (pid {info.pid})" in stopped.stdout
    assert not pid_alive(info.pid) and connection(env) is None
    assert glaze(env, "daemon", "status").returncode == 1


def test_the_state_folder_and_log_are_the_user_s_alone(env):
    state = Path(env["GLAZE_STATE_DIR"])
    state.mkdir(mode=0o755)  # as an older version made it
    (state / "daemon.log").write_text("an older log\n")
    (state / "daemon.log").chmod(0o644)
    assert glaze(env, "daemon", "start").returncode == 0
    assert state.stat().st_mode & 0o777 == 0o700
    assert (state / "daemon.log").stat().st_mode & 0o777 == 0o600
    assert (state / "daemon.json").stat().st_mode & 0o777 == 0o600
    fresh = state / "fresh"
    assert glaze({**env, "GLAZE_STATE_DIR": str(fresh)}, "daemon", "start").returncode == 0
    try:
        assert fresh.stat().st_mode & 0o777 == 0o700  # from creation
        assert (fresh / "daemon.log").stat().st_mode & 0o777 == 0o600
    finally:
        glaze({**env, "GLAZE_STATE_DIR": str(fresh)}, "daemon", "stop")


def test_a_stale_connection_file_is_replaced(env):
    state = Path(env["GLAZE_STATE_DIR"])
    state.mkdir(parents=True)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    (state / "daemon.json").write_text(json.dumps({
        "endpoint": "tcp://127.0.0.1:1", "key": "00" * 32, "pid": int(dead), "protocol": 1,
        "version": "0", "bundle": "gone"}))
    started = glaze(env, "daemon", "start")
    assert started.returncode == 0 and "already running" not in started.stdout
    assert connection(env).pid != int(dead) and connection(env).bundle == "demo-seed0"


def test_a_stale_file_whose_pid_now_names_another_process_is_replaced(env):
    state = Path(env["GLAZE_STATE_DIR"])
    state.mkdir(parents=True)
    reused = os.getpid()  # alive, and not a Glaze daemon: as after a reboot
    stale = json.dumps({"endpoint": "tcp://127.0.0.1:1", "key": "00" * 32, "pid": reused,
                        "protocol": 3, "version": "0", "bundle": "gone",
                        "server_key": "x" * 40})
    (state / "daemon.json").write_text(stale)
    status = glaze(env, "daemon", "status")
    assert status.returncode == 1
    assert f"removed a stale connection file: pid {reused} no longer runs" in status.stdout
    (state / "daemon.json").write_text(stale)  # status removed it
    started = glaze(env, "daemon", "start", timeout=120)
    assert started.returncode == 0 and "already running" not in started.stdout
    assert "removed a stale connection file" in started.stdout
    assert connection(env).pid not in (reused, 0) and connection(env).bundle == "demo-seed0"


def _daemons_of(env: dict) -> list[int]:
    """The pids of the Glaze daemon processes that serve this test's state folder."""
    found = []
    marker = f"GLAZE_STATE_DIR={env['GLAZE_STATE_DIR']}".encode()
    for entry in Path("/proc").iterdir():
        try:
            command = (entry / "cmdline").read_bytes()
            environment = (entry / "environ").read_bytes()
        except OSError:
            continue
        if b"--foreground" in command and marker in environment.split(b"\0"):
            found.append(int(entry.name))
    return found


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_concurrent_starts_leave_one_daemon(env):
    starts = [subprocess.Popen([sys.executable, "-m", "glaze", "daemon", "start"], env=env,
                               text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
              for _ in range(3)]
    said = [start.communicate(timeout=scaled(300)) for start in starts]
    assert [start.returncode for start in starts] == [0, 0, 0], said
    info = connection(env)
    assert all(f"pid {info.pid}" in out for out, _ in said), said
    assert sum("already running" in out for out, _ in said) == 2, said
    deadline = time.monotonic() + scaled(30)  # the starts that lost the lock have exited
    while _daemons_of(env) != [info.pid] and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _daemons_of(env) == [info.pid]
    assert "stopped" in glaze(env, "daemon", "stop").stdout
    assert _daemons_of(env) == []


def test_idle_exit(env):
    assert glaze(env, "daemon", "start", "--idle-exit", "0.02").returncode == 0  # 1.2 s
    info = connection(env)
    deadline = time.monotonic() + scaled(30)
    while pid_alive(info.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not pid_alive(info.pid) and connection(env) is None


def test_cloak_uses_the_running_daemon_and_in_process_on_request(env, tmp_path):
    source = tmp_path / "art.png"
    Image.fromarray(painting(48, 64, channels=4)).save(source)
    fast = ["--quality", "2", "--work-size", "64", "--target", "Cubism painting by Juan Gris"]
    assert glaze(env, "daemon", "start").returncode == 0
    via = glaze(env, "cloak", str(source), "-o", str(tmp_path / "a"), *fast)
    assert via.returncode == 0, via.stderr
    assert "using the Glaze daemon" in via.stdout and "NO protection" in via.stdout
    assert "served: 1" in glaze(env, "daemon", "status").stdout
    local = glaze(env, "cloak", str(source), "-o", str(tmp_path / "b"), "--in-process", *fast)
    assert local.returncode == 0 and "using the Glaze daemon" not in local.stdout
    # the same job gives the same pixels either way
    a = Image.open(tmp_path / "a" / "art.glazed.png")
    b = Image.open(tmp_path / "b" / "art.glazed.png")
    assert a.tobytes() == b.tobytes() and a.mode == "RGBA"


def test_cloak_with_daemon_flag_starts_one(env, tmp_path):
    source = tmp_path / "art.jpg"
    Image.fromarray(painting(48, 64)).save(source)
    done = glaze(env, "cloak", str(source), "--daemon", "--quality", "2", "--work-size", "64",
                 "--target", "Cubism painting by Juan Gris")
    assert done.returncode == 0, done.stderr
    assert "using the Glaze daemon" in done.stdout and connection(env) is not None
    assert (tmp_path / "art.glazed.jpg").is_file()


def test_start_prints_the_demo_bundle_s_no_protection_note(env):
    started = glaze(env, "daemon", "start", "--model", "demo")
    assert started.returncode == 0, started.stderr
    assert "NO protection" in started.stdout
    again = glaze(env, "daemon", "start", "--model", "demo")
    assert "already running" in again.stdout and "NO protection" in again.stdout
    assert "stopped the Glaze daemon" in glaze(env, "daemon", "stop").stdout


def test_foreground_start_prints_the_no_protection_note(env):
    process = subprocess.Popen(
        [sys.executable, "-m", "glaze", "daemon", "start", "--foreground", "--model", "demo"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        deadline = time.monotonic() + scaled(120)
        while connection(env) is None and process.poll() is None \
                and time.monotonic() < deadline:
            time.sleep(0.1)
        assert connection(env) is not None, f"no daemon (exit code {process.poll()})"
        assert "stopped the Glaze daemon" in glaze(env, "daemon", "stop").stdout
        printed, _ = process.communicate(timeout=scaled(60))
    finally:
        if process.poll() is None:  # never leave it running, whatever failed
            process.kill()
            process.wait()
    assert process.returncode == 0 and "NO protection" in printed, printed


def test_the_dialogs_say_how_far_a_starting_daemon_is(tmp_path, monkeypatch):
    """What a dialog opened during a start says (client.daemon_state) and `glaze daemon
    status`: the loading progress, never a silent fall-back to the built-in presets."""
    from daemon_helpers import DaemonProcess

    from glaze.daemon.client import daemon_state

    monkeypatch.setenv("GLAZE_STATE_DIR", str(tmp_path / "state"))
    assert "not running" in daemon_state().text and not daemon_state().loading
    loading = DaemonProcess(tmp_path, held_in_loading=True)
    try:
        state = daemon_state()
        assert state.loading and state.options == {}
        assert state.text == ("Glaze daemon: loading models, 33% (the demo feature "
                              "extractors); the lists show the built-in presets until it is "
                              "ready"), state.text
        status = glaze(dict(os.environ), "daemon", "status")
        assert status.returncode == 1
        assert "is starting" in status.stdout and "33% (the demo feature extractors)" in \
            status.stdout, status.stdout
    finally:
        loading.stop()
    assert "not running" in daemon_state().text  # its file is not trusted once it is gone
    (tmp_path / "ready").mkdir()
    ready = DaemonProcess(tmp_path / "ready")
    try:
        monkeypatch.setenv("GLAZE_STATE_DIR", str(tmp_path / "ready" / "state"))
        state = daemon_state()
        assert not state.loading and state.options and "serving demo-seed0" in state.text
        assert "NO protection" in state.text
    finally:
        ready.stop()
