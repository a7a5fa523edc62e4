"""The recovery file of unsaved work: written in the background a moment after each change."""

from __future__ import annotations

from PySide6.QtCore import QObject, QTimer, Signal

from loradesk.core.project import ConfigChanged, Project, ProjectEvent, write_recovery
from loradesk.ui.jobs import Jobs

AUTOSAVE_MS = 2000


class Autosave(QObject):
    """Writes the project's recovery file :data:`AUTOSAVE_MS` after a change to its rows or settings.

    The snapshot is taken on the GUI thread; encoding and writing happen on a background job (a
    100,000-row project is ~30 MB of JSON). A change made while a write runs is picked up by the next one.
    A failed write is announced by :attr:`failed` (the status bar says it; the next change tries again).
    """

    failed = Signal(str)

    def __init__(self, project: Project, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._project = project
        self._jobs = Jobs(self)
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(AUTOSAVE_MS)
        self._timer.timeout.connect(self.write)
        unsubscribe = [project.subscribe(self._on_project_event), project.dataset.subscribe(self._on_dataset_event)]
        for each in unsubscribe:
            self.destroyed.connect(each)

    def _on_project_event(self, event: ProjectEvent) -> None:
        if isinstance(event, ConfigChanged):
            self.schedule()

    def _on_dataset_event(self, _event: object) -> None:
        self.schedule()

    def schedule(self) -> None:
        """Write a moment from now (changes in between are written together)."""
        if not self._timer.isActive():
            self._timer.start()

    def write(self) -> None:
        """Write the recovery file now, in the background (later, when a write is still running)."""
        if self._jobs.busy():
            self.schedule()
            return
        snapshot = self._project.recovery_snapshot()
        if snapshot is not None:
            self._jobs.start(write_recovery, snapshot, on_error=lambda message, _details: self.failed.emit(message))

    def wait(self) -> None:
        """Let a write in progress finish (before a save or a discard replaces the file)."""
        self._jobs.shutdown(-1)

    def idle(self) -> bool:
        """Whether nothing is waiting to be written or being written."""
        return not self._timer.isActive() and not self._jobs.busy()

    def stop(self) -> None:
        """No more scheduled writes (on close); a running one still finishes."""
        self._timer.stop()
