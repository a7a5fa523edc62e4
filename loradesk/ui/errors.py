"""The one way the app shows an error: a non-blocking dialog with the details behind a button.

Every failed background job and every failed user action ends in :func:`show_error`. The dialog is
window-modal but opened with ``open()``, so the event loop (and a running training) never waits on it.
Each report is also kept in :data:`REPORTS` (the last few) and announced by :data:`reporter`, which is
what tests and the status bar listen to.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass

import shiboken6
from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import QMessageBox, QWidget

#: The note under every error that a user's data did not change.
UNCHANGED = "Your dataset and settings are unchanged."


@dataclass(frozen=True)
class ErrorReport:
    """One error as the user saw it."""

    title: str
    message: str
    details: str = ""
    note: str = ""


class _Reporter(QObject):
    reported = Signal(ErrorReport)


#: Emits every :class:`ErrorReport` after its dialog opened (or after it went to stderr without a window).
reporter = _Reporter()
#: The most recent reports, oldest first (a short history; tests read it through the ``shown_errors`` fixture).
REPORTS: list[ErrorReport] = []
_KEEP = 50
#: The dialog each parent widget shows now; a new error replaces the previous one of the same widget.
_OPEN: dict[int, QMessageBox] = {}


def show_error(parent: QWidget | None, title: str, message: str, details: str = "", note: str = "",
               on_retry: Callable[[], None] | None = None, retry_text: str = "Retry") -> QMessageBox | None:
    """Show ``message`` in a non-blocking dialog titled ``title``; ``details`` (a traceback) sit behind a button.

    With ``on_retry`` the dialog asks: its ``retry_text`` button calls it, Cancel just closes. Without a
    running QApplication (the CLI, a headless check) the error goes to stderr instead. Returns the dialog.
    """
    report = ErrorReport(title, message, details, note)
    REPORTS.append(report)
    del REPORTS[:-_KEEP]
    from PySide6.QtWidgets import QApplication

    if QApplication.instance() is None:
        print(f"{title}: {message}", file=sys.stderr)
        reporter.reported.emit(report)
        return None
    key = id(parent)
    previous = _OPEN.pop(key, None)
    if previous is not None and shiboken6.isValid(previous):
        previous.close()
    box = QMessageBox(QMessageBox.Icon.Critical, title, message, QMessageBox.StandardButton.Ok, parent)
    box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    if on_retry is not None:
        box.setStandardButtons(QMessageBox.StandardButton.Retry | QMessageBox.StandardButton.Cancel)
        retry = box.button(QMessageBox.StandardButton.Retry)
        retry.setText(retry_text)
        retry.clicked.connect(on_retry)
        box.setDefaultButton(retry)
    if note:
        box.setInformativeText(note)
    if details:
        box.setDetailedText(details)
    box.setWindowModality(Qt.WindowModality.WindowModal if parent is not None else Qt.WindowModality.ApplicationModal)
    _OPEN[key] = box
    box.open()
    reporter.reported.emit(report)
    return box


def open_box(parent: QWidget | None) -> QMessageBox | None:
    """The error dialog ``parent`` shows now, if any."""
    box = _OPEN.get(id(parent))
    return box if box is not None and shiboken6.isValid(box) and box.isVisible() else None


def close_all() -> None:
    """Close every open error dialog (on quit, and between tests)."""
    for box in list(_OPEN.values()):
        if shiboken6.isValid(box):
            box.close()
    _OPEN.clear()
