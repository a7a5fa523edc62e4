"""The pre-flight check before Start: measure the run first, warn in the Train tab if it will not fit.

:class:`PreflightGate` stands between the Train tab's Start and the run. When the pre-flight setting is on
and the model, settings or rows changed since the last check (or there was none), it runs
:func:`loradesk.core.preflight.preflight` as a job (Stop cancels it), shows the result in its
:class:`PreflightPanel` and then hands the request on through :attr:`PreflightGate.go`, with the report
attached so the run file records it. A run that will not fit waits for "Start anyway" or "Cancel".
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from loradesk.core.config import RunConfig
from loradesk.core.dataset import Example
from loradesk.ui.jobs import Cancelled, Job, Jobs
from loradesk.ui.training_job import TOOLS_RETRY, TOOLS_TITLE, ToolsAsTextOffer, TrainRequest

if TYPE_CHECKING:
    from loradesk.core.preflight import PreflightReport
    from loradesk.ui.jobs import TaskState


def check(config: RunConfig, rows: Sequence[Example], *, state: TaskState) -> PreflightReport:
    """The pre-flight check as a job: ``state.stop`` stops it (reported as cancelled)."""
    from loradesk.core.ml_stack import import_stack

    import_stack()  # waits for the start-up import on another thread, if it is still running
    from loradesk.core.preflight import CheckStopped, preflight
    from loradesk.core.training import ToolsUnsupported

    try:
        return preflight(config, rows, state.stop, state.progress)
    except CheckStopped:
        raise Cancelled("cancelled") from None
    except ToolsUnsupported:
        state.emit(ToolsAsTextOffer())
        raise


def fingerprint(config: RunConfig, rows: Sequence[Example]) -> tuple[str, int, int]:
    """What a check's answer depends on: every setting and the rows' text."""
    return (json.dumps(config.to_dict(), sort_keys=True), len(rows),
            hash(tuple((r.system, r.prompt, r.completion, r.turns, r.tools) for r in rows)))


class PreflightPanel(QFrame):
    """The check's one-line result and, for a run that will not fit, the advice with Start anyway / Cancel."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.summary_label = QLabel()
        self.summary_label.setWordWrap(True)
        self.summary_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.warning = QFrame()
        self.warning.setStyleSheet("QFrame { background: #fff4ce; border-radius: 4px; }")
        self.warning_label = QLabel()
        self.warning_label.setWordWrap(True)
        self.start_anyway_button = QPushButton("Start anyway")
        self.cancel_button = QPushButton("Cancel")
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(self.start_anyway_button)
        buttons.addWidget(self.cancel_button)
        inner = QVBoxLayout(self.warning)
        inner.addWidget(self.warning_label)
        inner.addLayout(buttons)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.summary_label)
        layout.addWidget(self.warning)
        self.warning.hide()
        self.hide()

    def show_text(self, text: str) -> None:
        self.summary_label.setText(text)
        self.warning.hide()
        self.setVisible(bool(text))

    def show_report(self, report: PreflightReport) -> None:
        """The result line; the warning with its advice when the run will not fit."""
        self.show_text(report.summary())
        self.summary_label.setToolTip("\n".join(report.lines()))
        if not report.fits:
            advice = "".join(f"<li>{a}</li>" for a in report.advice)
            self.warning_label.setText(f"<b>This run will probably not fit in memory</b> ({_why(report)}). "
                                       f"Try:<ul>{advice}</ul>")
            self.warning.show()


def _why(report: PreflightReport) -> str:
    if report.out_of_memory:
        return "the device ran out of memory on its longest batch"
    need, have = (report.needed_memory or 0) / 2**20, report.available_memory / 2**20
    return f"it needs about {need:,.0f} MiB; {have:,.0f} MiB are available"


class PreflightGate(QObject):
    """Runs the check when it is due, then emits :attr:`go` with the request to train (or nothing)."""

    go = Signal(object)  # the TrainRequest to launch, its ``preflight`` set when a check ran
    busy_changed = Signal(bool)  # a check started / ended
    phase = Signal(str)  # what the check is doing, for the tab's phase label
    tools_as_text_wanted = Signal()  # the check met tool calls the template leaves out; the user asked for text

    def __init__(self, panel: PreflightPanel, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.panel = panel
        self.jobs = Jobs(self)
        self._job: Job | None = None
        self._last: tuple[tuple[str, int, int], PreflightReport] | None = None
        self._waiting: TrainRequest | None = None  # a request held back by a "will not fit" warning
        self._tools_offer = False  # the running check met tool calls the model's template leaves out
        panel.start_anyway_button.clicked.connect(self._start_anyway)
        panel.cancel_button.clicked.connect(self.dismiss)

    @property
    def last_report(self) -> PreflightReport | None:
        return self._last[1] if self._last else None

    def is_busy(self) -> bool:
        return self._job is not None

    def request(self, request: TrainRequest, rows: Sequence[Example]) -> None:
        """Train ``request`` (new rows ``rows``) once the check, if one is due, allows it."""
        self.dismiss()
        if not request.config.training.preflight:
            self.go.emit(request)
            return
        key = fingerprint(request.config, rows)
        if self._last is not None and self._last[0] == key:
            self._decide(request, self._last[1])
            return
        self.panel.show_text("Pre-flight check: measuring memory and time per step…")
        self.phase.emit("Pre-flight check…")
        self._tools_offer = False
        self._job = self.jobs.start(
            check, request.config, list(rows), key="preflight", state=True, on_event=self._on_event,
            on_result=lambda report: self._on_report(request, key, report),
            on_progress=lambda text, _fraction: self.phase.emit(f"Pre-flight: {text}"),
            on_cancelled=self._on_cancelled,
            on_error=self._on_error, on_finished=self._on_finished)
        self.busy_changed.emit(True)

    def cancel(self) -> None:
        """Stop a running check; nothing is started."""
        if self._job is not None:
            self._job.cancel()

    def dismiss(self) -> None:
        """Drop a run held back by the warning."""
        self._waiting = None
        self.panel.warning.hide()

    def _on_report(self, request: TrainRequest, key: tuple[str, int, int], report: PreflightReport) -> None:
        self._last = (key, report)
        self._decide(request, report)

    def _decide(self, request: TrainRequest, report: PreflightReport) -> None:
        self.panel.show_report(report)
        checked = dataclasses.replace(request, preflight=report.to_dict())
        if report.fits:
            self.go.emit(checked)
        else:
            self._waiting = checked
            self.phase.emit("Will not fit")

    def _start_anyway(self) -> None:
        request, self._waiting = self._waiting, None
        self.panel.warning.hide()
        if request is not None:
            self.go.emit(request)

    def _on_cancelled(self) -> None:
        self.panel.show_text("Pre-flight check stopped; nothing was started.")
        self.phase.emit("Check stopped")

    def _on_event(self, event: object) -> None:
        if isinstance(event, ToolsAsTextOffer):
            self._tools_offer = True

    def _on_error(self, message: str, details: str) -> None:
        from loradesk.ui import errors

        self.panel.show_text(f"Pre-flight check failed: {message}")
        self.phase.emit("Check failed")
        parent = self.parent()
        if self._tools_offer:
            errors.show_error(parent if isinstance(parent, QWidget) else None, TOOLS_TITLE, message, details,
                              errors.UNCHANGED, self.tools_as_text_wanted.emit, TOOLS_RETRY)
            return
        errors.show_error(parent if isinstance(parent, QWidget) else None, "The pre-flight check failed",
                          message, details, errors.UNCHANGED)

    def _on_finished(self) -> None:
        self._job = None
        self.busy_changed.emit(False)

