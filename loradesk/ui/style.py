"""The application's look: Fusion everywhere (same on every OS) with a few gentle touches."""

from __future__ import annotations

import contextlib
from pathlib import Path

from PySide6.QtGui import QIcon
from PySide6.QtWidgets import QApplication

STYLE_SHEET = """
QTabWidget::pane { border-top: 1px solid palette(mid); top: -1px; }
QTabBar::tab { padding: 7px 18px; }
QGroupBox { font-weight: 600; margin-top: 14px; padding-top: 6px; }
QGroupBox::title { subcontrol-origin: margin; left: 4px; padding: 0 2px; }
QGroupBox QLabel, QGroupBox QCheckBox, QGroupBox QComboBox, QGroupBox QLineEdit, QGroupBox QAbstractSpinBox,
QGroupBox QPushButton { font-weight: normal; }
QLabel#hintLabel, QLabel#summaryLabel { color: palette(placeholder-text); }
QLabel#fieldMessage { color: #d64545; }
QFrame#importNotes { background: #fff6d6; color: #3d3000; border: 1px solid #e0c060; border-radius: 4px; }
QFrame#importNotes QLabel { color: #3d3000; }
QTableView#datasetTable { gridline-color: palette(midlight); }
QTableView#datasetTable::item { padding: 3px 4px; }
QStatusBar QLabel { padding: 0 6px; }
QPlainTextEdit#cellEditor { border: 2px solid palette(highlight); }
"""


def icon_path() -> Path | None:
    """The app icon shipped in ``resources/icons`` (SVG preferred), if present."""
    from loradesk.core.paths import sample_data_dir

    candidates = [Path(__file__).resolve().parent.parent.parent / "resources" / "icons"]
    with contextlib.suppress(FileNotFoundError):
        candidates.append(sample_data_dir().parent / "resources" / "icons")
    for folder in candidates:
        for name in ("loradesk.svg", "loradesk.png"):
            if (folder / name).is_file():
                return folder / name
    return None


def app_icon() -> QIcon:
    path = icon_path()
    return QIcon(str(path)) if path else QIcon()


def apply_style(app: QApplication) -> None:
    """Fusion style, our style sheet and the icon."""
    app.setStyle("Fusion")
    app.setStyleSheet(STYLE_SHEET)
    app.setWindowIcon(app_icon())
