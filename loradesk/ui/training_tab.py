"""The Train tab: start, stop and resume a run; live loss curves, progress, speed, device and a log.

Training runs in a :class:`~loradesk.ui.workers.TrainWorker` on its own thread, on a snapshot of the
dataset and a copy of the settings taken at Start, so the user can keep editing while it trains.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QFont, QFontDatabase
from PySide6.QtWidgets import (
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QSplitter,
    QStyle,
    QVBoxLayout,
    QWidget,
)

from loradesk.core.config import RunConfig
from loradesk.ui.plots import LossPlot
from loradesk.ui.workers import Job, TrainWorker

LOG_LINES = 5000


def format_duration(seconds: float | None) -> str:
    """``0:42``, ``12:05`` or ``1:02:09``; an em dash when unknown."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "—"
    total = round(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def epoch_text(epoch: float, step: int, max_steps: int, planned_epochs: float | None) -> str:
    """``epoch 2/3 · step 40/60``: the epoch being trained, out of the epochs the run will cover."""
    if planned_epochs is None or planned_epochs <= 0:
        planned_epochs = epoch * max_steps / step if step and max_steps else 1.0
    total = max(1, math.ceil(planned_epochs - 1e-9))
    current = min(total, int(epoch) + 1) if step < max_steps else total
    return f"epoch {current}/{total} · step {step}/{max_steps}"


def open_error_box(parent: QWidget, title: str, message: str, details: str = "",
                   note: str = "", on_retry: Callable[[], None] | None = None,
                   retry_text: str = "Retry") -> QMessageBox:
    """Show a window-modal but non-blocking error dialog; ``details`` (the traceback) sit behind a button.

    With ``on_retry`` the box asks: a ``retry_text`` button calls it, Cancel just closes.
    """
    box = QMessageBox(QMessageBox.Icon.Critical, title, message, QMessageBox.StandardButton.Ok, parent)
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
    box.setWindowModality(Qt.WindowModality.WindowModal)
    box.open()
    return box


class _Stat(QWidget):
    """A small caption over a value."""

    def __init__(self, caption: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        self.caption = QLabel(caption)
        self.caption.setEnabled(False)
        font = self.caption.font()
        font.setPointSizeF(font.pointSizeF() * 0.85)
        self.caption.setFont(font)
        self.value = QLabel("—")
        self.value.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        bold = self.value.font()
        bold.setBold(True)
        self.value.setFont(bold)
        layout.addWidget(self.caption)
        layout.addWidget(self.value)

    def set(self, text: str, tooltip: str = "") -> None:
        self.value.setText(text)
        self.value.setToolTip(tooltip)


class TrainingTab(QWidget):
    """Start/Stop/Resume, the live plot and the run's progress. Embedded by the main window."""

    running_changed = Signal(bool)
    run_finished = Signal(str)  # run_dir, after a run completed or was stopped (its adapter is saved)

    def __init__(self, project: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.project = project
        self._runs_dir: Path | None = None  # None: the user's runs folder
        self.error_box: QMessageBox | None = None
        self._job: Job | None = None
        self._result: Any = None
        self._error: tuple[str, str] | None = None
        self._blocked: str | None = None
        self._resume_dir: Path | None = None
        self._planned_epochs: float | None = None
        self._last_epoch = 0.0
        self._oom_retry: tuple[RunConfig, Path] | None = None  # offered after the device ran out of memory
        self._build()
        self.refresh_resumable()

    # --- layout ------------------------------------------------------------------------------------
    def _build(self) -> None:
        style = self.style()
        self.start_button = QPushButton(style.standardIcon(QStyle.StandardPixmap.SP_MediaPlay), "Start training")
        self.start_button.setDefault(True)
        self.start_button.setToolTip("Train a LoRA adapter on the current dataset with the current settings")
        self.stop_button = QPushButton(style.standardIcon(QStyle.StandardPixmap.SP_MediaStop), "Stop")
        self.stop_button.setToolTip("Stop after the current step and save a usable adapter")
        self.resume_button = QPushButton(style.standardIcon(QStyle.StandardPixmap.SP_MediaSeekForward),
                                         "Resume")
        self.start_button.clicked.connect(self.start)
        self.stop_button.clicked.connect(self.stop)
        self.resume_button.clicked.connect(self.resume)
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

        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setValue(0)
        self.progress_bar.setTextVisible(True)
        self.progress_bar.setFormat("Not started")
        self.progress_bar.setMinimumHeight(24)

        self.elapsed_stat = _Stat("Elapsed")
        self.eta_stat = _Stat("Time left")
        self.speed_stat = _Stat("Speed (loss tokens/s)")
        self.loss_stat = _Stat("Loss")
        self.device_stat = _Stat("Device")
        stats = QGridLayout()
        stats.setHorizontalSpacing(28)
        for col, stat in enumerate((self.elapsed_stat, self.eta_stat, self.speed_stat, self.loss_stat,
                                    self.device_stat)):
            stats.addWidget(stat, 0, col)
        stats.setColumnStretch(5, 1)

        self.plot = LossPlot()
        self.plot.setMinimumHeight(220)

        self.log_view = QPlainTextEdit()
        self.log_view.setReadOnly(True)
        self.log_view.setMaximumBlockCount(LOG_LINES)
        self.log_view.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        self.log_view.setPlaceholderText("The run's log appears here.")
        mono = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)
        mono.setStyleHint(QFont.StyleHint.Monospace)
        self.log_view.setFont(mono)

        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(self.plot)
        splitter.addWidget(self.log_view)
        splitter.setStretchFactor(0, 4)
        splitter.setStretchFactor(1, 1)
        splitter.setChildrenCollapsible(False)

        self.result_label = QLabel()
        self.result_label.setWordWrap(True)
        self.result_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.result_label.hide()

        self.warning_banner = QLabel()  # a run that completed but diverged or did not learn
        self.warning_banner.setWordWrap(True)
        self.warning_banner.setTextFormat(Qt.TextFormat.RichText)
        self.warning_banner.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.warning_banner.setStyleSheet("QLabel { background: #fff4ce; color: #4d3800; border: 1px solid "
                                          "#e0b000; border-radius: 4px; padding: 6px; }")
        self.warning_banner.hide()

        line = QFrame()
        line.setFrameShape(QFrame.Shape.HLine)
        line.setFrameShadow(QFrame.Shadow.Sunken)

        layout = QVBoxLayout(self)
        layout.addLayout(buttons)
        layout.addWidget(self.progress_bar)
        layout.addLayout(stats)
        layout.addWidget(self.result_label)
        layout.addWidget(self.warning_banner)
        layout.addWidget(line)
        layout.addWidget(splitter, 1)
        self.progress_bar.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)

    # --- public API ----------------------------------------------------------------------------------
    def is_running(self) -> bool:
        return self._job is not None and self._job.is_running()

    def set_blocked(self, reason: str | None) -> None:
        """Disable Start (and Resume) with ``reason`` shown, e.g. while the settings are invalid."""
        self._blocked = reason or None
        self.blocked_label.setText(reason or "")
        self.blocked_label.setVisible(bool(reason))
        self._update_buttons()

    def start(self) -> None:
        """Validate the settings, snapshot the dataset and train on a worker thread."""
        if self.is_running() or self._blocked:
            return
        config: RunConfig = self.project.config
        problems = config.problems()
        if problems:
            text = "\n".join(f"• {name}: {message}" for name, message in problems)
            self.show_error("The settings need fixing before training", text)
            return
        if len(self.project.dataset) == 0:
            self.show_error("The dataset is empty", "Add some prompt/completion rows before training.")
            return
        snapshot = self.project.dataset.copy()
        config = RunConfig.from_dict(config.to_dict())  # edits made while training do not leak in
        t = config.training
        self._planned_epochs = None if t.max_steps > 0 else t.epochs
        self.plot.clear()
        self.log_view.clear()
        self._append_log(f"Starting a run on {len(snapshot)} rows "
                         f"(r={config.lora.r}, alpha={config.lora.alpha}, lr={t.learning_rate:g}, "
                         + (f"{t.max_steps} steps)" if t.max_steps else f"{t.epochs:g} epochs)"))
        self._launch(TrainWorker(config, snapshot, self.runs_dir))

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
            self.show_error("Cannot resume this run", str(exc))
            return
        t = info.config.training
        self._planned_epochs = None if t.max_steps > 0 else t.epochs
        self.plot.set_metrics(runs.read_metrics(run_dir))
        self.log_view.clear()
        self._append_log(f"Resuming {run_dir.name} from its latest checkpoint")
        self._launch(TrainWorker(info.config, [], self.runs_dir, resume_from=run_dir))

    def stop(self) -> None:
        """Ask the run to stop after the current step; it saves a usable adapter first."""
        if self.is_running() and self._job is not None:
            self._job.stop()
            self.phase_label.setText("Stopping…")
            self._append_log("Stop requested: finishing the current step and saving the adapter")
            self._update_buttons()

    def shutdown(self, timeout_ms: int = 30_000) -> None:
        """Stop a running run and wait (up to ``timeout_ms``) for its thread to end."""
        if self._job is not None:
            self._job.shutdown(timeout_ms)

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
    def _launch(self, worker: TrainWorker) -> None:
        self._result = None
        self._error = None
        self._oom_retry = None
        self._last_epoch = 0.0
        self.result_label.hide()
        self.warning_banner.hide()
        self.progress_bar.setRange(0, 0)  # busy until the first step
        self.progress_bar.setFormat("Preparing…")
        for stat in (self.elapsed_stat, self.eta_stat, self.speed_stat, self.loss_stat):
            stat.set("—")
        self._set_phase("Loading model…")
        worker.status.connect(self._on_status)
        worker.progress.connect(self._on_progress)
        worker.log.connect(self._append_log)
        worker.device.connect(self._on_device)
        worker.finished.connect(self._on_result)
        worker.failed.connect(self._on_failed)
        worker.out_of_memory.connect(self._on_out_of_memory)
        job = Job(worker, self)
        job.finished.connect(self._on_thread_finished)
        self._job = job
        job.start()
        self._update_buttons()
        self.running_changed.emit(True)

    def _on_status(self, text: str) -> None:
        self._set_phase(text)

    def _on_device(self, text: str) -> None:
        self.device_stat.set(text)

    def _on_progress(self, p: Any) -> None:
        self.plot.add_progress(p)
        self._last_epoch = p.epoch
        if p.max_steps:
            if self.progress_bar.maximum() != p.max_steps:
                self.progress_bar.setRange(0, p.max_steps)
            self.progress_bar.setValue(min(p.step, p.max_steps))
            self.progress_bar.setFormat(epoch_text(p.epoch, p.step, p.max_steps, self._planned_epochs)
                                        + " · %p%")
        self.elapsed_stat.set(format_duration(p.elapsed))
        self.eta_stat.set(format_duration(p.eta))
        if p.tokens_per_second:
            self.speed_stat.set(f"{p.tokens_per_second:,.0f}",
                                "Tokens that carry loss (answer tokens) trained per second")
        if p.loss is not None:
            text = f"{p.loss:.4f}"
            if p.learning_rate is not None:
                text += f"  (lr {p.learning_rate:.2g})"
            self.loss_stat.set(text)
        if p.eval_loss is not None:
            self._append_log(f"step {p.step}: eval loss {p.eval_loss:.4f}")

    def _on_result(self, result: Any) -> None:
        self._result = result
        self.plot.flush()
        if result.status == "completed":
            steps = max(result.steps, 1)
            self.progress_bar.setRange(0, steps)
            self.progress_bar.setValue(steps)
            self.progress_bar.setFormat(epoch_text(self._last_epoch, steps, steps, self._planned_epochs)
                                        + " · %p%")
            self._set_phase("Completed with warnings" if result.warnings else "Completed")
        else:
            if self.progress_bar.maximum() == 0:
                self.progress_bar.setRange(0, 1)
            self._set_phase("Stopped")
        self.device_stat.set(result.device)
        if result.tokens_per_second:
            self.speed_stat.set(f"{result.tokens_per_second:,.0f}")
        self.elapsed_stat.set(format_duration(result.seconds))
        self.eta_stat.set("—")
        loss = f", final loss {result.final_loss:.4f}" if result.final_loss is not None else ""
        verb = "Completed" if result.status == "completed" else "Stopped (adapter saved)"
        verb += " with warnings" if result.warnings else ""
        cut = f" · {result.cut_rows} row(s) cut to max length" if result.cut_rows else ""
        self.result_label.setText(f"<b>{verb}</b>: {result.steps} steps in {format_duration(result.seconds)}"
                                  f"{loss}{cut} — <span>{Path(result.run_dir)}</span>")
        self.result_label.setStyleSheet("")
        self.result_label.show()
        self._show_warnings(result.warnings)
        for warning in result.warnings:
            self._append_log(f"WARNING: {warning}")

    def _show_warnings(self, warnings: list[str]) -> None:
        """The banner under the result line: each warning with its advice (hidden when there are none)."""
        if not warnings:
            self.warning_banner.hide()
            return
        items = "".join(f"<li>{html.escape(w)}</li>" for w in warnings)
        self.warning_banner.setText(f"<b>Warning</b>: the run ended and its adapter was saved, but it may "
                                    f"be useless.<ul style='margin: 2px 0 0 -20px'>{items}</ul>")
        self.warning_banner.show()

    def _on_out_of_memory(self, config: RunConfig, run_dir: str) -> None:
        self._oom_retry = (config, Path(run_dir))

    def _retry_smaller(self) -> None:
        """Train the out-of-memory run's rows again with the smaller batch the user agreed to."""
        if self._oom_retry is None or self.is_running() or self._blocked:
            return
        config, failed_run = self._oom_retry
        t = config.training
        self._planned_epochs = None if t.max_steps > 0 else t.epochs
        self.plot.clear()
        self._append_log(f"Retrying with batch size {t.batch_size} and gradient accumulation {t.grad_accum}")
        self._launch(TrainWorker(config, [], self.runs_dir, retry_of=failed_run))

    def _on_failed(self, message: str, details: str) -> None:
        self._error = (message, details)
        self._set_phase("Failed")
        self.phase_label.setStyleSheet("color: #b3261e;")
        if self.progress_bar.maximum() == 0:
            self.progress_bar.setRange(0, 1)
            self.progress_bar.setValue(0)
        self.progress_bar.setFormat("Failed")
        self.result_label.setText(f"<b>Training failed</b>: {message}")
        self.result_label.setStyleSheet("color: #b3261e;")
        self.result_label.show()
        self._append_log(f"ERROR: {message}")
        if self._oom_retry is not None:
            t = self._oom_retry[0].training
            self.show_error("Out of memory", message, details, on_retry=self._retry_smaller,
                            retry_text=f"Retry with batch size {t.batch_size}")
        else:
            self.show_error("Training failed", message, details)

    def _on_thread_finished(self) -> None:
        job, self._job = self._job, None
        if job is not None:
            job.deleteLater()
        result = self._result
        if result is not None:
            self._resume_dir = Path(result.run_dir) if result.status == "stopped" else None
        elif self._error is None and self.progress_bar.maximum() == 0:  # stopped before training started
            self.progress_bar.setRange(0, 1)
            self.progress_bar.setFormat("Not started")
        self._update_buttons()
        self.running_changed.emit(False)
        if result is not None:
            self.run_finished.emit(str(result.run_dir))

    # --- helpers -------------------------------------------------------------------------------------
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
        try:
            info = runs.read_run(Path(run_dir))
            metrics = runs.read_metrics(info.path)
        except (OSError, ValueError):
            return
        self.plot.set_metrics(metrics)
        last = next((m for m in reversed(metrics) if m.get("max_steps")), {})
        t = info.config.training
        max_steps = int(last.get("max_steps") or info.steps or 1)
        self.progress_bar.setRange(0, max_steps)
        self.progress_bar.setValue(min(info.steps, max_steps))
        self.progress_bar.setFormat(epoch_text(float(last.get("epoch") or 0.0), info.steps, max_steps,
                                               None if t.max_steps > 0 else t.epochs) + " · %p%")
        status = info.status_label  # read_run reports a run whose process is gone as "interrupted"
        self._set_phase(f"Last run: {status}")
        self.elapsed_stat.set(format_duration(info.seconds))
        self.eta_stat.set("—")
        speed = last.get("tokens_per_second")
        self.speed_stat.set(f"{speed:,.0f}" if speed else "—")
        self.loss_stat.set(f"{info.final_loss:.4f}" if info.final_loss is not None else "—")
        self.device_stat.set(info.device or "—")
        created = info.created.replace("T", " ")[:16]
        loss = f", final loss {info.final_loss:.4f}" if info.final_loss is not None else ""
        self._show_warnings(info.warnings)
        self.result_label.setText(f"<b>Last run</b> ({created}, {status}): {info.steps} steps"
                                  + (f" in {format_duration(info.seconds)}" if info.seconds else "")
                                  + f"{loss} — {info.path}")
        self.result_label.setStyleSheet("")
        self.result_label.show()

    def _set_phase(self, text: str) -> None:
        self.phase_label.setStyleSheet("")
        self.phase_label.setText(text)

    def _append_log(self, text: str) -> None:
        self.log_view.appendPlainText(text)

    def _update_buttons(self) -> None:
        running = self.is_running()
        stopping = running and self._job is not None and self._job.worker.stop_requested
        self.start_button.setEnabled(not running and not self._blocked)
        self.start_button.setToolTip(self._blocked or "Train a LoRA adapter on the current dataset with the "
                                     "current settings")
        self.stop_button.setEnabled(running and not stopping)
        can_resume = not running and not self._blocked and self._resume_dir is not None
        self.resume_button.setEnabled(can_resume)
        self.resume_button.setToolTip(
            f"Continue {self._resume_dir.name} from its latest checkpoint" if self._resume_dir
            else "Continue a stopped run from its latest checkpoint (none yet)")

    def show_error(self, title: str, message: str, details: str = "",
                   on_retry: Callable[[], None] | None = None, retry_text: str = "Retry") -> None:
        """A non-blocking error dialog (``error_box``); ``details`` hold the traceback. With ``on_retry``
        it asks whether to retry (see :func:`open_error_box`)."""
        if self.error_box is not None:
            self.error_box.close()
        self.error_box = open_error_box(self, title, message, details,
                                        "Your dataset and settings are unchanged.", on_retry, retry_text)
