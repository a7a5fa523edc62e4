"""The Train tab: start, stop and resume a run; live loss curves, progress, speed, device and a log.

Training runs as a background job (:mod:`loradesk.ui.jobs`, :func:`loradesk.ui.training_job.train`) on a
snapshot of the dataset and a copy of the settings taken at Start, so the user can keep editing while it
trains. The job's typed events feed the :class:`~loradesk.ui.run_view.RunView` below the buttons.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QStyle, QVBoxLayout, QWidget

from loradesk.core.config import RunConfig
from loradesk.core.dataset import Example
from loradesk.core.readiness import can_train
from loradesk.core.wording import plural, plural_word
from loradesk.ui import errors
from loradesk.ui.jobs import Job, Jobs
from loradesk.ui.preflight_gate import PreflightGate, PreflightPanel
from loradesk.ui.run_follower import RunFollower
from loradesk.ui.run_view import RunView
from loradesk.ui.training_job import (
    TOOLS_RETRY,
    TOOLS_TITLE,
    OutOfMemoryOffer,
    ToolsAsTextOffer,
    TrainDevice,
    TrainLog,
    TrainRequest,
    TrainStatus,
    train,
)

START_TIP = "Train a LoRA adapter on the current dataset with the current settings"


class TrainingTab(QWidget):
    """Start/Stop/Resume, the live plot and the run's progress. Embedded by the main window."""

    running_changed = Signal(bool)
    run_finished = Signal(str)  # run_dir, after a run completed or was stopped (its adapter is saved)

    def __init__(self, project: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.project = project
        self.jobs = Jobs(self)
        self._runs_dir: Path | None = None  # None: the user's runs folder
        self._job: Job | None = None  # the run, until its end has reached the GUI thread (or shutdown joined it)
        self._result: Any = None
        self._error: tuple[str, str] | None = None
        self._blocked: str | None = None
        self._resume_dir: Path | None = None
        self._oom_retry: tuple[RunConfig, Path] | None = None  # offered after the device ran out of memory
        self._signalled = False  # the last running_changed value sent
        self._build()
        self.refresh_resumable()

    # --- layout ------------------------------------------------------------------------------------
    def _build(self) -> None:
        self.view = RunView()
        # the parts of the view that the window, the benchmarks and the tests look at
        self.progress_bar, self.plot, self.log_view = self.view.progress_bar, self.view.plot, self.view.log_view
        self.result_label, self.warning_banner = self.view.result_label, self.view.warning_banner
        self.elapsed_stat, self.eta_stat, self.speed_stat = (self.view.elapsed_stat, self.view.eta_stat,
                                                             self.view.speed_stat)
        self.loss_stat, self.device_stat = self.view.loss_stat, self.view.device_stat
        self.preflight_panel = PreflightPanel()
        self.preflight = PreflightGate(self.preflight_panel, self)
        self.preflight.go.connect(self._launch)
        self.preflight.busy_changed.connect(self._on_check_busy)
        self.preflight.phase.connect(self._set_phase)
        self.preflight.tools_as_text_wanted.connect(self._train_tools_as_text)
        self.follower = RunFollower(self.view, self)  # a run another process writes (File > Open Run…)
        self.follower.phase.connect(self._set_phase)
        self.follower.ended.connect(self._on_follow_ended)
        layout = QVBoxLayout(self)
        layout.addLayout(self._build_buttons())
        layout.addWidget(self.preflight_panel)
        layout.addWidget(self.view, 1)

    def _build_buttons(self) -> QHBoxLayout:
        style = self.style()
        self.start_button = QPushButton(style.standardIcon(QStyle.StandardPixmap.SP_MediaPlay), "Start training")
        self.start_button.setDefault(True)
        self.start_button.setToolTip(START_TIP)
        self.stop_button = QPushButton(style.standardIcon(QStyle.StandardPixmap.SP_MediaStop), "Stop")
        self.stop_button.setToolTip("Stop after the current step and save a usable adapter")
        self.resume_button = QPushButton(style.standardIcon(QStyle.StandardPixmap.SP_MediaSeekForward),
                                         "Resume")
        self.start_button.clicked.connect(self.start)
        self.stop_button.clicked.connect(self.stop)
        self.resume_button.clicked.connect(lambda: self.resume())
        for button in (self.start_button, self.stop_button, self.resume_button):
            button.setMinimumHeight(30)

        self.blocked_label = QLabel()
        self.blocked_label.setWordWrap(True)
        self.blocked_label.setStyleSheet("color: #b3261e;")
        self.blocked_label.hide()

        self.phase_label = QLabel("Ready")
        phase_font = self.phase_label.font()
        phase_font.setPointSizeF(phase_font.pointSizeF() * 1.15)
        phase_font.setBold(True)
        self.phase_label.setFont(phase_font)
        self.phase_label.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)

        buttons = QHBoxLayout()
        buttons.addWidget(self.start_button)
        buttons.addWidget(self.stop_button)
        buttons.addWidget(self.resume_button)
        buttons.addSpacing(12)
        buttons.addWidget(self.blocked_label, 1)
        buttons.addStretch(0)
        buttons.addWidget(self.phase_label, 1)
        return buttons

    # --- public API ----------------------------------------------------------------------------------
    def is_running(self) -> bool:
        """True while a run or its pre-flight check is going."""
        return self._job is not None or self.preflight.is_busy()

    def set_blocked(self, reason: str | None) -> None:
        """Disable Start (and Resume) with ``reason`` shown, e.g. while the settings are invalid."""
        self._blocked = reason or None
        self.blocked_label.setText(reason or "")
        self.blocked_label.setVisible(bool(reason))
        self._update_buttons()

    def start(self) -> None:
        """Check the settings and rows (:func:`~loradesk.core.readiness.can_train`), then train a snapshot."""
        if self.is_running() or self._blocked:
            return
        snapshot = self.project.dataset.copy()
        config = RunConfig.from_dict(self.project.config.to_dict())  # edits made while training do not leak in
        if not self._ready(config, snapshot):
            return
        self.follower.stop()  # this run takes the view
        t = config.training
        self.view.planned_epochs = None if t.max_steps > 0 else t.epochs
        self.plot.clear()
        self.log_view.clear()
        self.view.append_log(f"Starting a run on {len(snapshot)} rows "
                             f"(r={config.lora.r}, alpha={config.lora.alpha}, lr={t.learning_rate:g}, "
                             + (f"{t.max_steps} steps)" if t.max_steps else f"{t.epochs:g} epochs)"))
        heldout = getattr(self.project, "heldout_path", None)  # the project's held-out questions, as Compare's
        self.preflight.request(TrainRequest(config, list(snapshot), self.runs_dir, heldout=heldout), snapshot)

    def resume(self, run_dir: str | Path | None = None) -> None:
        """Continue ``run_dir`` (default: the newest stopped or interrupted run) from its latest complete
        checkpoint."""
        run_dir = Path(run_dir) if run_dir else self._resume_dir
        if self.is_running() or self._blocked or run_dir is None:
            return
        from loradesk.core import runs

        try:
            info = runs.read_run(run_dir)
        except (OSError, ValueError) as exc:
            self._show_error("Cannot resume this run", str(exc))
            return
        t = info.config.training
        self.view.planned_epochs = None if t.max_steps > 0 else t.epochs
        self._show_lineage(run_dir, info)
        self.log_view.clear()
        self.view.append_log(f"Resuming {run_dir.name} from its latest checkpoint")
        self._launch(TrainRequest(info.config, (), self.runs_dir, resume_from=run_dir))

    def train_more(self, parent: str | Path, epochs: float, rows: Sequence[Example] | None = None) -> None:
        """Train ``parent`` (a completed or stopped run) ``epochs`` more epochs as a new run, on its own rows or on
        ``rows``; the live curve follows the parent's."""
        from loradesk.core import runs, train_more

        if self.is_running():
            return
        parent = Path(parent)
        try:
            info = runs.read_run(parent)
        except (OSError, ValueError, runs.RunError) as exc:
            self._show_error("Cannot train this run more", str(exc))
            return
        config = train_more.child_config(info.config, epochs)
        if rows is not None and not self._ready(config, rows):
            return
        self.view.planned_epochs = epochs
        self._show_lineage(parent, info)
        self.plot.mark_join(train_more.last_step(info))
        self.log_view.clear()
        self.view.append_log(f"Training {parent.name} {epochs:g} more {plural_word(epochs, 'epoch')} from step "
                             f"{train_more.last_step(info)} on " + ("its own rows" if rows is None
                                                                    else f"the current {plural(len(rows), 'row')}"))
        self._launch(TrainRequest(config, list(rows or ()), self.runs_dir, continue_from=parent))

    def follow(self, run_dir: str | Path) -> bool:
        """Show a run that another process is writing, growing live until it ends; False while a run trains
        here (it keeps the view)."""
        if self.is_running():
            return False
        self.follower.follow(run_dir)
        return True

    def _on_follow_ended(self, run_dir: str, status: str) -> None:
        if status in ("completed", "stopped"):  # its adapter is saved, as after a run trained here
            self.run_finished.emit(run_dir)

    def stop(self) -> None:
        """Ask the run to stop after the current step (it saves a usable adapter first), or stop its check."""
        self.preflight.cancel()
        if self._job is not None:
            self._job.cancel()
            self.phase_label.setText("Stopping…")
            self.view.append_log("Stop requested: finishing the current step and saving the adapter")
            self._update_buttons()

    def shutdown(self, timeout_ms: int = 30_000) -> None:
        """Stop a running run and wait (up to ``timeout_ms``) for it to end; its result still arrives, queued."""
        self.follower.stop()
        if self.jobs.shutdown(timeout_ms):
            self._job = None

    @property
    def runs_dir(self) -> Path | None:
        """Where new runs go (None: the user's runs folder)."""
        return self._runs_dir

    @runs_dir.setter
    def runs_dir(self, value: str | Path | None) -> None:
        self._runs_dir = Path(value) if value else None
        self.refresh_resumable()

    @property
    def resume_dir(self) -> Path | None:
        """The stopped run that Resume would continue, if any."""
        return self._resume_dir

    @property
    def last_result(self) -> Any:
        """The ``RunResult`` of the last run in this session (None until one ended)."""
        return self._result

    # --- the run's lifecycle -------------------------------------------------------------------------
    def _launch(self, request: TrainRequest) -> None:
        self.follower.stop()
        self._result = None
        self._error = None
        self._oom_retry = None
        self._tools_offer = False
        self.view.begin()
        self._set_phase("Loading model…")
        self._job = self.jobs.start(train, request, key="train", state=True, on_event=self._on_event,
                                    on_result=self._on_result, on_error=self._on_failed,
                                    on_finished=self._on_job_finished)
        self._update_buttons()
        self._set_running(True)

    def _on_check_busy(self, busy: bool) -> None:
        self._update_buttons()
        self._set_running(self.is_running())  # a check that led to a run: the run says when it ends

    def _set_running(self, running: bool) -> None:
        if running != self._signalled:
            self._signalled = running
            self.running_changed.emit(running)

    def _on_event(self, event: object) -> None:
        if isinstance(event, TrainStatus):
            self._set_phase(event.text)
        elif isinstance(event, TrainLog):
            self.view.append_log(event.text)
        elif isinstance(event, TrainDevice):
            self.device_stat.set(event.text)
        elif isinstance(event, OutOfMemoryOffer):
            self._oom_retry = (event.config, event.run_dir)
        elif isinstance(event, ToolsAsTextOffer):
            self._tools_offer = True
        else:  # a core.training.TrainProgress (not imported here: the worker thread loads that module)
            self.view.show_progress(event)  # type: ignore[arg-type]

    def _on_result(self, result: Any) -> None:
        if result is None:  # stopped while the model loaded: its status said so, nothing was written
            return
        self._result = result
        self.view.show_result(result)
        if result.status == "completed":
            self._set_phase("Completed with warnings" if result.warnings else
                            "Completed: learned" if result.learned else "Completed")
        else:
            self._set_phase("Stopped")

    def _retry_smaller(self) -> None:
        """Train the out-of-memory run's rows again with the smaller batch the user agreed to."""
        if self._oom_retry is None or self.is_running() or self._blocked:
            return
        config, failed_run = self._oom_retry
        t = config.training
        self.view.planned_epochs = None if t.max_steps > 0 else t.epochs
        self.plot.clear()
        self.view.append_log(f"Retrying with batch size {t.batch_size} and gradient accumulation {t.grad_accum}")
        self._launch(TrainRequest(config, (), self.runs_dir, retry_of=failed_run))

    def _on_failed(self, message: str, details: str) -> None:
        self._error = (message, details)
        self._set_phase("Failed")
        self.phase_label.setStyleSheet("color: #b3261e;")
        self.view.show_failure(message)
        if self._oom_retry is not None:
            t = self._oom_retry[0].training
            self._show_error("Out of memory", message, details, on_retry=self._retry_smaller,
                             retry_text=f"Retry with batch size {t.batch_size}")
        elif self._tools_offer:
            self._show_error(TOOLS_TITLE, message, details, on_retry=self._train_tools_as_text,
                             retry_text=TOOLS_RETRY)
        else:
            self._show_error("Training failed", message, details)

    def _train_tools_as_text(self) -> None:
        """Turn on the 'Tool calls as text' setting (the user agreed) and start again."""
        if self.is_running() or self._blocked:
            return
        self.project.config.training.tools_as_text = True
        self.project.config_changed()
        self.start()

    def _on_job_finished(self) -> None:
        self._job = None
        result = self._result
        if result is not None:
            self._resume_dir = Path(result.run_dir) if result.status == "stopped" else None
        elif self._error is None:  # stopped before training started
            self.view.show_not_started()
        self._update_buttons()
        self._set_running(False)
        if result is not None:
            self.run_finished.emit(str(result.run_dir))

    # --- helpers -------------------------------------------------------------------------------------
    def _ready(self, config: RunConfig, rows: Sequence[Example]) -> bool:
        """Whether ``config`` can train ``rows`` (:func:`~loradesk.core.readiness.can_train`); else says why."""
        readiness = can_train(config, rows)
        if readiness.settings:
            text = "\n".join(f"• {name}: {message}" for name, message in readiness.settings)
            self._show_error("The settings need fixing before training", text)
        elif readiness.data:
            self._show_error("The dataset is not ready for training", readiness.data)
        return readiness.ok

    def _show_lineage(self, run_dir: Path, info: Any) -> None:
        """The curves of ``run_dir`` after those of the runs it continues."""
        from loradesk.core import train_more

        self.plot.set_metrics(train_more.lineage_metrics(run_dir))
        self.plot.mark_join(info.step_offset if info.parent else None)

    def refresh_resumable(self) -> None:
        """Offer Resume for the newest run if it was stopped and has a complete checkpoint."""
        from loradesk.core import runs

        if self.is_running():
            return
        self._resume_dir = None
        try:
            found = runs.list_runs(self.runs_dir)
        except OSError:
            found = []
        if found and found[0].resumable:
            self._resume_dir = found[0].path
        self._update_buttons()
        if found and self._result is None and self._error is None:
            self.show_run(found[0].path)  # curves survive a restart

    def show_run(self, run_dir: str | Path) -> None:
        """Show an earlier run's curves, progress and result (not while a run is going)."""
        from loradesk.core import runs

        if self.is_running():
            return
        self.follower.stop()
        try:
            from loradesk.core.train_more import lineage_metrics

            info = runs.read_run(Path(run_dir))
            metrics = lineage_metrics(info.path)
        except (OSError, ValueError):
            return
        self.view.show_run(info, metrics)
        self._set_phase(f"Last run: {info.status_label}")  # a run whose process is gone reads "interrupted"

    def _set_phase(self, text: str) -> None:
        self.phase_label.setStyleSheet("")
        self.phase_label.setText(text)

    def _update_buttons(self) -> None:
        running = self.is_running()
        stopping = self._job is not None and self._job.state.stop_requested
        self.start_button.setEnabled(not running and not self._blocked)
        self.start_button.setToolTip(self._blocked or START_TIP)
        self.stop_button.setEnabled(running and not stopping)
        can_resume = not running and not self._blocked and self._resume_dir is not None
        self.resume_button.setEnabled(can_resume)
        self.resume_button.setToolTip(
            f"Continue {self._resume_dir.name} from its latest checkpoint" if self._resume_dir
            else "Continue a stopped run from its latest checkpoint (none yet)")

    def _show_error(self, title: str, message: str, details: str = "",
                    on_retry: Callable[[], None] | None = None, retry_text: str = "Retry") -> None:
        """Report through :func:`loradesk.ui.errors.show_error`: the user's dataset and settings are unchanged."""
        errors.show_error(self, title, message, details, errors.UNCHANGED, on_retry, retry_text)
