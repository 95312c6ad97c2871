"""The engine is a pure library: importing every engine module works with Qt made unimportable."""

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent(
    """
    import importlib, importlib.abc, pkgutil, sys

    class BlockQt(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("PySide6", "shiboken6", "PyQt5", "PyQt6", "qtpy"):
                raise ImportError(f"Qt is blocked in this test: {name}")
            return None

    sys.meta_path.insert(0, BlockQt())
    import engine
    names = [info.name for info in pkgutil.walk_packages(engine.__path__, prefix="engine.")]
    for name in names:
        if name != "engine.__main__":
            importlib.import_module(name)
    assert not any(m.split(".")[0] in ("PySide6", "shiboken6") for m in sys.modules)
    print(len(names))
    """
)


def test_every_engine_module_imports_without_qt():
    out = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout.strip()) > 40  # really walked the package


def test_the_blocker_really_blocks():
    probe = SCRIPT.split("import engine")[0] + "import PySide6.QtCore\n"
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "blocked" in out.stderr
