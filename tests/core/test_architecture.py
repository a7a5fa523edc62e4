"""Layering and "one way to do each thing" rules, checked on the source.

The core never imports Qt; importing loradesk or asking for --help loads no torch; no class is over
400 lines; in ``loradesk/ui`` only ``jobs.py`` starts threads or processes, only ``errors.py`` shows error
boxes, and no module loads another through ``importlib``. Each scanner is first shown a planted offender
(and a harmless look-alike), so a scanner that finds nothing cannot pass for a clean codebase.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "loradesk"
CORE = PACKAGE / "core"
UI = PACKAGE / "ui"
QT_MODULES = ("PySide6", "PyQt5", "PyQt6", "pyqtgraph", "qtpy", "superqt", "loradesk.ui")
MAX_CLASS_LINES = 400
#: Calls (by their last name) that start a thread or a process, and classes that do it for you.
THREAD_MAKERS = {"Thread", "QThread", "Process", "Pool", "ProcessPoolExecutor", "ThreadPoolExecutor",
                 "start_new_thread", "QThreadPool", "QRunnable", "QtConcurrent"}


# --- scanners: source text in, offenders out ----------------------------------------------------------------
def _imports(source: str, package: str = "loradesk.core") -> set[str]:
    """Every module ``source`` imports (anywhere, lazily too), relative imports resolved against ``package``."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            names.add(base)
            names.update(f"{base}.{a.name}" for a in node.names)
    return names


def qt_imports(source: str, package: str = "loradesk.core") -> set[str]:
    """The Qt (or ``loradesk.ui``) modules ``source`` imports."""
    return {name for name in _imports(source, package) if name.startswith(QT_MODULES)}


def _by_line(hits: list[str]) -> list[str]:
    """``"line n: ..."`` hits in the order of their lines."""
    return sorted(hits, key=lambda hit: int(hit.split()[1].rstrip(":")))


def _last_name(node: ast.expr) -> str:
    return node.attr if isinstance(node, ast.Attribute) else node.id if isinstance(node, ast.Name) else ""


def _dotted(node: ast.expr) -> str:
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
    return ".".join(reversed(parts))


def long_classes(source: str) -> dict[str, int]:
    """Classes spanning more than :data:`MAX_CLASS_LINES` lines, with their length."""
    return {node.name: node.end_lineno - node.lineno + 1 for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.ClassDef) and node.end_lineno - node.lineno + 1 > MAX_CLASS_LINES}


def thread_makers(source: str) -> list[str]:
    """Lines that create a thread or a process (or subclass something that does)."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and _last_name(node.func) in THREAD_MAKERS:
            found.append(f"line {node.lineno}: {_dotted(node.func)}(...)")
        elif isinstance(node, ast.ClassDef):
            found += [f"line {node.lineno}: class {node.name}({_dotted(b)})" for b in node.bases
                      if _last_name(b) in THREAD_MAKERS]
        elif isinstance(node, ast.Attribute) and _last_name(node.value) in ("QThreadPool", "QtConcurrent"):
            found.append(f"line {node.lineno}: {_dotted(node)}")
    return _by_line(found)


def error_boxes(source: str) -> list[str]:
    """Lines that show an error box: ``QMessageBox.warning/critical(...)`` or a ``Critical`` icon."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Attribute):
            continue
        dotted = _dotted(node)
        if dotted in ("QMessageBox.warning", "QMessageBox.critical") or (
                node.attr == "Critical" and dotted.startswith("QMessageBox.")):
            found.append(f"line {node.lineno}: {dotted}")
    return _by_line(found)


def dynamic_imports(source: str) -> list[str]:
    """Lines that import a module by name at run time (``importlib.import_module``, ``__import__``)."""
    return _by_line([f"line {node.lineno}: {_dotted(node.func)}(...)" for node in ast.walk(ast.parse(source))
                     if isinstance(node, ast.Call) and _last_name(node.func) in ("import_module", "__import__")])


def _sources(folder: Path) -> Iterator[tuple[str, str]]:
    for path in sorted(folder.rglob("*.py")):
        yield path.relative_to(PACKAGE.parent).as_posix(), path.read_text(encoding="utf-8")


def _offenders(folder: Path, scan: Callable[[str], list[str]], allowed: tuple[str, ...] = ()) -> list[str]:
    """``scan`` over every module under ``folder`` but those named in ``allowed``, as ``"file, line n: ..."``."""
    return [f"{name}, {hit}" for name, source in _sources(folder) if Path(name).name not in allowed
            for hit in scan(source)]


# --- the scanners see what they are for ---------------------------------------------------------------------
def test_scanners_find_planted_offenders_and_pass_look_alikes() -> None:
    planted_qt = ("def later():\n    from PySide6.QtCore import QObject\n"
                  "import pyqtgraph as pg\nfrom ..ui import errors\nfrom . import fileio\n")
    assert qt_imports(planted_qt) >= {"PySide6.QtCore", "pyqtgraph", "loradesk.ui", "loradesk.ui.errors"}
    assert not qt_imports("from . import fileio\nimport json\nfrom loradesk.core.dataset import Example\n")
    assert _imports("from .fileio import atomic_write_text\n") >= {"loradesk.core.fileio"}

    big = "class Big:\n" + "    x = 1\n" * MAX_CLASS_LINES
    assert long_classes(big) == {"Big": MAX_CLASS_LINES + 1}
    assert not long_classes("class Fits:\n" + "    x = 1\n" * (MAX_CLASS_LINES - 1))

    threads = ("import threading, multiprocessing as mp\nfrom PySide6.QtCore import QThread, QThreadPool\n"
               "t = threading.Thread(target=print)\nq = QThread()\np = mp.get_context('spawn').Process()\n"
               "class W(QThread): pass\nQThreadPool.globalInstance().start(job)\n")
    assert [hit.split(":")[0] for hit in thread_makers(threads)] == [f"line {n}" for n in range(3, 8)]
    assert not thread_makers("import threading\nlock = threading.Lock()\nstop = threading.Event()\n"
                             "from PySide6.QtCore import QThread\nassert QThread.currentThread() is not None\n")

    boxes = ("QMessageBox.critical(self, 'Oops', text)\nQMessageBox.warning(None, 'Oops', text)\n"
             "box = QMessageBox(QMessageBox.Icon.Critical, 'Oops', text)\n")
    assert len(error_boxes(boxes)) == 3
    assert not error_boxes("answer = QMessageBox.question(self, 'Save?', 'Save changes?')\n"
                           "box = QMessageBox(QMessageBox.Icon.Question, 'Trust?', text)\n")

    assert len(dynamic_imports("import importlib\nm = importlib.import_module('loradesk.ui.compare_tab')\n"
                               "n = __import__('json')\n")) == 2
    assert not dynamic_imports("import importlib.metadata\nv = importlib.metadata.version('peft')\n")


# --- the rules ------------------------------------------------------------------------------------------------
def test_core_source_never_imports_qt() -> None:
    offenders = {f"{name}: {module}" for name, source in _sources(CORE) for module in qt_imports(source)}
    assert not offenders


def test_core_classes_are_at_most_400_lines() -> None:
    assert not {f"{name}: {cls} ({n} lines)" for name, source in _sources(CORE)
                for cls, n in long_classes(source).items()}


def test_no_class_is_over_400_lines() -> None:
    offenders = [f"{name}: {cls} ({n} lines)" for name, source in _sources(PACKAGE)
                 for cls, n in long_classes(source).items()]
    assert not offenders, "classes to split into named parts:\n" + "\n".join(offenders)


def test_only_jobs_starts_threads_or_processes_in_ui() -> None:
    # worker_process.py is the process side of the same mechanism (it runs inside the worker process)
    offenders = _offenders(UI, thread_makers, allowed=("jobs.py", "worker_process.py"))
    assert not offenders, "use loradesk.ui.jobs.Jobs instead:\n" + "\n".join(offenders)


def test_only_errors_shows_error_boxes_in_ui() -> None:
    offenders = _offenders(UI, error_boxes, allowed=("errors.py",))
    assert not offenders, "use loradesk.ui.errors.show_error instead:\n" + "\n".join(offenders)


def test_ui_imports_its_modules_explicitly() -> None:
    offenders = _offenders(UI, dynamic_imports)
    assert not offenders, "import the module at the top instead:\n" + "\n".join(offenders)


def test_architecture_page_names_only_real_modules() -> None:
    page = (PACKAGE.parent / "docs" / "architecture.md").read_text(encoding="utf-8")
    named = set(re.findall(r"`((?:core|ui)/\w+\.py|cli\.py)", page))
    assert {"core/dataset.py", "ui/jobs.py", "ui/errors.py", "core/readiness.py", "cli.py"} <= named
    assert not sorted(name for name in named if not (PACKAGE / name).is_file())


# --- what a start-up loads ------------------------------------------------------------------------------------
def _modules_after(code: str) -> set[str]:
    probe = code + "\nimport sys; print('MODULES:' + ','.join(sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                         cwd=PACKAGE.parent)
    line = next(x for x in out.stdout.splitlines() if x.startswith("MODULES:"))
    return set(line.removeprefix("MODULES:").split(","))


def test_importing_the_whole_core_loads_no_qt() -> None:
    mods = _modules_after("import importlib, pkgutil, loradesk.core as c\n"
                          "for m in pkgutil.iter_modules(c.__path__):\n"
                          "    importlib.import_module(f'loradesk.core.{m.name}')")
    assert not {m for m in mods if m.startswith(("PySide6", "pyqtgraph"))}
    assert "loradesk.core.training" in mods  # the probe really imported the core


def test_import_and_help_do_not_load_torch() -> None:
    mods = _modules_after("import loradesk, loradesk.cli, loradesk.core.config, loradesk.core.dataset\n"
                          "try:\n    loradesk.cli.main(['--help'])\nexcept SystemExit:\n    pass")
    assert "torch" not in mods and "transformers" not in mods
    assert "loradesk.cli" in mods
