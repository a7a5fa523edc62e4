"""Following a run that another process writes (a job on a cluster, seen through a mounted filesystem, or the
CLI): the Train tab's run view grows as the run's ``metrics.jsonl`` does, like a run trained here.

Every second (:data:`POLL_MS`) a job (:mod:`loradesk.ui.jobs`) reads the run file, then the metrics lines added
since the last read (:func:`loradesk.core.runs.read_new_metrics`). All file access happens off the GUI thread,
so a slow or hung network filesystem never blocks the window; a poll still going when the next one is due is
not doubled. Polling rather than ``QFileSystemWatcher``: on network filesystems changes made by another machine
raise no notification. Following ends when the run file says the run ended (completed, stopped, failed, or
interrupted: its process on this machine is gone).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QTimer, Signal

from loradesk.ui.jobs import Jobs
from loradesk.ui.run_view import RunView, format_duration

POLL_MS = 1000
#: The most bytes of metrics one poll reads (about 10,000 steps): a long backlog (a run opened late) is drawn
#: in pieces, the next one read at once, so the window is never held for long.
CHUNK_BYTES = 2_000_000
ENDED = ("completed", "stopped", "failed", "interrupted")
#: After this long without a new step the phase says how long it has been quiet.
QUIET_S = 60.0


@dataclass(frozen=True)
class FollowUpdate:
    """One poll's findings: the run's state and the steps logged since the previous poll."""

    info: Any  # runs.RunInfo, read before the metrics: once it says "ended", every step is in the file
    steps: list[Any]  # core.training.TrainProgress, one per new metrics row
    rows: list[dict[str, Any]]  # the new metrics rows themselves
    offset: int
    file_id: tuple[int, int] | None
    restarted: bool  # the metrics file was rewritten: ``rows`` are all of it
    more: bool  # more lines were already there: read them next, without waiting for the timer


def progress_of(row: Mapping[str, Any], start_step: int = 0) -> Any:
    """A metrics row (as training writes it) as the ``TrainProgress`` it was written from; None without a step."""
    from loradesk.core.training import TrainProgress

    names = {f.name for f in fields(TrainProgress)}
    values = {k: v for k, v in row.items() if k in names and k != "start_step"}
    try:
        return TrainProgress(**{"max_steps": 0, "epoch": 0.0, **values, "start_step": start_step})
    except TypeError:  # no step: not a row training wrote
        return None


def poll(run_dir: Path, offset: int, file_id: tuple[int, int] | None) -> FollowUpdate:
    """Read ``run_dir``'s state and its metrics after byte ``offset`` (runs on a job thread)."""
    from loradesk.core import runs

    info = runs.read_run(run_dir)
    new = runs.read_new_metrics(run_dir, offset, file_id, CHUNK_BYTES)
    steps = [p for p in (progress_of(row, info.step_offset) for row in new.rows) if p is not None]
    return FollowUpdate(info, steps, new.rows, new.offset, new.file_id, new.restarted, new.more)


class RunFollower(QObject):
    """Feeds a :class:`RunView` from a run folder that another process is writing."""

    phase = Signal(str)  # what the Train tab's phase label should say
    ended = Signal(str, str)  # the run folder and its final status, once the run file says it ended

    def __init__(self, view: RunView, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.view = view
        self.jobs = Jobs(self)
        self._timer = QTimer(self)
        self._timer.setInterval(POLL_MS)
        self._timer.timeout.connect(self._poll)
        self._run: Path | None = None
        self._offset, self._file_id = 0, None
        self._rows: list[dict[str, Any]] = []
        self._last_step_at = 0.0
        self._described = False
        self._more = False  # the last poll left lines to read

    @property
    def run_dir(self) -> Path | None:
        """The run being followed (None: none)."""
        return self._run

    def follow(self, run_dir: str | Path) -> None:
        """Show ``run_dir`` in the view from its first step and keep it growing until the run ends."""
        self.stop()
        self._run = Path(run_dir)
        self._offset, self._file_id, self._rows = 0, None, []
        self._last_step_at, self._described = time.monotonic(), False
        self.view.begin()
        self.view.plot.clear()
        self.view.log_view.clear()
        self.view.progress_bar.setFormat("Waiting for its first step…")
        self.view.append_log(f"Following {self._run}")
        self.phase.emit(f"Following {self._run.name}…")
        self._timer.start()
        self._poll()

    def stop(self) -> None:
        """Stop following (what is shown stays)."""
        self._timer.stop()
        self.jobs.drop("follow")
        self._run = None

    def _poll(self) -> None:
        if self._run is not None and not self.jobs.busy("follow"):
            self._more = False
            self.jobs.start(poll, self._run, self._offset, self._file_id, key="follow", on_result=self._apply,
                            on_error=self._on_error, on_finished=self._after_poll)

    def _after_poll(self) -> None:
        if self._more:  # a backlog: its next piece now, not in a second
            self._poll()

    def _apply(self, update: FollowUpdate) -> None:
        if self._run is None or update.info.path != self._run:
            return
        info = update.info
        self._offset, self._file_id = update.offset, update.file_id
        if not self._described:
            self._described = True
            t = info.config.training
            self.view.planned_epochs = None if t.max_steps > 0 else t.epochs
            if info.where:
                self.view.append_log(f"Trained by {info.where}")
        if update.restarted:
            self._rows = []
            self.view.plot.clear()
        self._rows.extend(update.rows)
        if update.steps:
            self._last_step_at = time.monotonic()
            self.view.show_steps(update.steps)
        self._more = update.more
        if not update.more and info.status in ENDED:
            run = self._run
            self.stop()
            self.view.show_run(info, self._rows)
            self.view.append_log(f"The run ended: {info.status_label}")
            self.phase.emit(f"Followed run: {info.status_label}")
            self.ended.emit(str(run), info.status)
            return
        self.phase.emit(self._phase_text(info.name))

    def _phase_text(self, name: str) -> str:
        quiet = time.monotonic() - self._last_step_at
        text = f"Following {name}"
        if quiet >= QUIET_S:
            text += f" · no new step for {format_duration(quiet)}"
        return text

    def _on_error(self, message: str, _details: str) -> None:
        """The folder or its files could not be read this time (unmounted, mid-copy): say so, keep trying."""
        if self._run is not None:
            self.phase.emit(f"Cannot read {self._run.name} ({message}); trying again")
