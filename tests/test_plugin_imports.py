"""The plug-ins import only what their host provides: the standard library, the host's own
API and Qt, and the shared client (pyzmq and msgpack come with it). No numpy, no torch."""

import ast
import sys
from pathlib import Path

from glaze.installer.runtime import CLIENT_MODULES, SHARED_MODULES

ROOT = Path(__file__).resolve().parent.parent
KRITA_ALLOWED = {"krita", "pykrita", "PyQt5", "PyQt6", "glaze_client", "glaze"}
# GIMP's PyGObject, the client (vendored or the installed glaze package), and the modules the
# plug-ins share from gimp_plugin/glaze_shared (which they put on sys.path).
GIMP_SHARED = ROOT / "gimp_plugin" / "glaze_shared"
GIMP_ALLOWED = {"gi", "glaze_client", "glaze"} | {path.stem for path in GIMP_SHARED.glob("*.py")}
CLIENT_ALLOWED = {"zmq", "msgpack", "platformdirs"}
# Vendored, the client finds the modules it shares with the engine beside it; in this
# repository, in the glaze package.
SHARED = {name.removesuffix(".py") for name in SHARED_MODULES if name.endswith(".py")}


def imported_roots(folder: Path) -> dict[str, set[str]]:
    found = {}
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module]
            else:
                continue
            for name in names:
                found.setdefault(name.split(".")[0], set()).add(path.name)
    return found


def outside_stdlib(found: dict[str, set[str]], allowed: set[str]) -> dict[str, set[str]]:
    return {name: files for name, files in found.items()
            if name not in sys.stdlib_module_names and name not in allowed}


def test_krita_plugin_imports():
    found = imported_roots(ROOT / "krita_plugin")
    assert outside_stdlib(found, KRITA_ALLOWED) == {}
    # Qt only through qt.py, which asks Krita for its binding (Krita refuses the other one)
    assert {name: files for name, files in found.items() if name.startswith("PyQt")} == {
        "PyQt5": {"qt.py"}, "PyQt6": {"qt.py"}}


def test_gimp_plugin_imports():
    found = imported_roots(ROOT / "gimp_plugin")
    assert {"gi", "glaze_gimp"} <= set(found)  # the plug-ins were read
    assert outside_stdlib(found, GIMP_ALLOWED) == {}


def test_shared_client_imports():
    client = {name: files for name, files in imported_roots(ROOT / "daemon").items()
              if files & set(CLIENT_MODULES)}
    assert outside_stdlib(client, CLIENT_ALLOWED | {"glaze"}) == {}
    shared = imported_roots(ROOT / "glaze")
    assert outside_stdlib({name: files for name, files in shared.items()
                           if files & set(SHARED_MODULES)}, set()) == {}


def test_the_vendored_client_imports_only_its_own_modules():
    """glaze install copies CLIENT_MODULES and SHARED_MODULES alone: a relative import of
    another daemon module would break every plug-in."""
    for name in CLIENT_MODULES:
        tree = ast.parse((ROOT / "daemon" / name).read_text())
        relative = {module for node in ast.walk(tree)
                    if isinstance(node, ast.ImportFrom) and node.level == 1
                    for module in ([node.module] if node.module
                                   else [alias.name for alias in node.names])}
        own = {module.removesuffix(".py") for module in CLIENT_MODULES}
        assert relative <= own | SHARED, name
