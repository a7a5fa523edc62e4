"""What the window remembers between sessions: geometry, the splitter, recent projects and import preferences
(never run settings)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QByteArray, QSettings
from PySide6.QtWidgets import QMainWindow, QMenu, QSplitter

from loradesk.core.chat_formats import Conversations
from loradesk.core.paths import app_home

MAX_RECENT = 8


def window_settings() -> QSettings:
    """Window geometry and recent files, kept in the LoRA Desk data folder."""
    return QSettings(str(app_home() / "window.ini"), QSettings.Format.IniFormat)


def recent_projects() -> list[str]:
    """The recently opened or saved projects, newest first."""
    value = window_settings().value("recentProjects", [])
    items = [value] if isinstance(value, str) else list(value or [])
    return [str(v) for v in items if v]


def add_recent(path: Path) -> None:
    """Put ``path`` first in the recent projects."""
    resolved = str(path.resolve())
    items = [resolved] + [p for p in recent_projects() if p != resolved]
    window_settings().setValue("recentProjects", items[:MAX_RECENT])


def import_conversations() -> Conversations:
    """How imports read conversations, as last chosen: ``"whole"`` (the default) or ``"pairs"``."""
    return "pairs" if window_settings().value("import/conversations") == "pairs" else "whole"


def set_import_conversations(conversations: Conversations) -> None:
    """Remember how imports read conversations."""
    window_settings().setValue("import/conversations", conversations)


def fill_recent_menu(menu: QMenu, open_project: Callable[[str], None]) -> None:
    """List the recent projects that still exist in ``menu``; choosing one calls ``open_project(path)``."""
    menu.clear()
    items = [p for p in recent_projects() if Path(p).is_file()]
    for item in items:
        act = menu.addAction(Path(item).name)
        act.setStatusTip(item)
        act.triggered.connect(lambda _checked=False, item=item: open_project(item))
    if not items:
        menu.addAction("No recent projects").setEnabled(False)


def restore_window(window: QMainWindow, splitter: QSplitter) -> None:
    """Give ``window`` and ``splitter`` the geometry they had at the last close (a default size the first time)."""
    settings = window_settings()
    geometry = settings.value("geometry")
    if isinstance(geometry, QByteArray) and not geometry.isEmpty():
        window.restoreGeometry(geometry)
    else:
        window.resize(1320, 820)
    state = settings.value("windowState")
    if isinstance(state, QByteArray):
        window.restoreState(state)
    sizes = settings.value("datasetSplitter")
    if isinstance(sizes, QByteArray):
        splitter.restoreState(sizes)


def save_window(window: QMainWindow, splitter: QSplitter) -> None:
    """Remember the geometry of ``window`` and ``splitter`` for the next start."""
    settings = window_settings()
    settings.setValue("geometry", window.saveGeometry())
    settings.setValue("windowState", window.saveState())
    settings.setValue("datasetSplitter", splitter.saveState())
    settings.sync()
