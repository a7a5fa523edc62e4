"""Layering rules: the core never imports Qt; importing loradesk or asking for --help loads no torch."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

CORE = Path(__file__).resolve().parents[2] / "loradesk" / "core"
QT_MODULES = ("PySide6", "PyQt5", "PyQt6", "pyqtgraph", "qtpy", "superqt", "loradesk.ui")


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_core_source_never_imports_qt() -> None:
    offenders = {f"{p.name}: {name}" for p in CORE.glob("*.py") for name in _imports(p) if name.startswith(QT_MODULES)}
    assert not offenders
    assert "config.py: loradesk.core.fileio" not in offenders  # the scan sees real imports


def _modules_after(code: str) -> set[str]:
    probe = code + "\nimport sys; print('MODULES:' + ','.join(sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    line = next(x for x in out.stdout.splitlines() if x.startswith("MODULES:"))
    return set(line.removeprefix("MODULES:").split(","))


def test_importing_the_whole_core_loads_no_qt() -> None:
    mods = _modules_after("import importlib, pkgutil, loradesk.core as c\n"
                          "for m in pkgutil.iter_modules(c.__path__):\n"
                          "    importlib.import_module(f'loradesk.core.{m.name}')")
    assert not {m for m in mods if m.startswith(("PySide6", "pyqtgraph"))}


def test_import_and_help_do_not_load_torch() -> None:
    mods = _modules_after("import loradesk, loradesk.cli, loradesk.core.config, loradesk.core.dataset\n"
                          "try:\n    loradesk.cli.main(['--help'])\nexcept SystemExit:\n    pass")
    assert "torch" not in mods and "transformers" not in mods
