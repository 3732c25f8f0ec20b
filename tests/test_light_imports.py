"""Commands that load no model must not pay for importing torch (seconds on a CPU)."""

import subprocess
import sys
import textwrap

import pytest
from timing import scaled

RUN_WITHOUT_TORCH = textwrap.dedent("""
    import sys
    from glaze.cli import main
    code = main(sys.argv[1:])
    heavy = sorted({"torch", "diffusers", "kornia", "lpips", "transformers"} & set(sys.modules))
    print("HEAVY", heavy)
    sys.exit(code)
""")


@pytest.mark.parametrize("command", [
    ["install", "--dry-run", "--krita", "--gimp", "--krita-python", "3.11",
     "--gimp-python", sys.executable, "--models", "demo"],
    ["styles"],
    ["profile"],
    ["daemon", "status"],
])
def test_commands_that_load_no_model_do_not_import_torch(command, tmp_path):
    env = {"HOME": str(tmp_path), "PATH": "/usr/local/bin:/usr/bin:/bin",
           "GLAZE_STATE_DIR": str(tmp_path / "state"), "GLAZE_DATA_DIR": str(tmp_path / "d"),
           "GLAZE_CACHE_DIR": str(tmp_path / "c"), "GLAZE_CONFIG_DIR": str(tmp_path / "cf")}
    done = subprocess.run([sys.executable, "-c", RUN_WITHOUT_TORCH, *command], env=env,
                          capture_output=True, text=True, timeout=scaled(300))
    assert "HEAVY []" in done.stdout, done.stdout + done.stderr


def test_the_engine_face_loads_its_names_on_first_use():
    code = ("import sys, glaze.engine as e; assert 'torch' not in sys.modules; "
            "e.ProfileStore; e.ModelLoadError; assert 'torch' not in sys.modules; "
            "e.CloakSettings; e.CloakResult; assert 'torch' in sys.modules; "
            "print(sorted(e.__all__))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=scaled(300))
    assert done.returncode == 0, done.stderr
    assert "'CloakResult'" in done.stdout and "'load_bundle'" in done.stdout


def test_the_engine_imports_nothing_of_the_daemon():
    """The engine is a library: the daemon uses it, never the other way round."""
    code = ("import sys, glaze.engine.cloak, glaze.engine.evaluation.run, glaze.engine.target; "
            "print(sorted(name for name in sys.modules if name.startswith('glaze.daemon')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=scaled(300))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
