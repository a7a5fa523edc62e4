"""What the Train tab shows of one run: its progress bar, stats strip, live loss plot, log, result line and
warnings banner. It only displays; :class:`~loradesk.ui.training_tab.TrainingTab` decides when."""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QFont, QFontDatabase
from PySide6.QtWidgets import (
    QFrame,
    QGridLayout,
    QLabel,
    QPlainTextEdit,
    QProgressBar,
    QSizePolicy,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from loradesk.core.wording import plural
from loradesk.ui.plots import LossPlot

if TYPE_CHECKING:  # the training module is imported on the worker thread, not at start-up
    from loradesk.core.training import RunResult, TrainProgress

LOG_LINES = 5000
SPEED_TIP = "Tokens that carry loss (answer tokens) trained per second"


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


class RunView(QWidget):
    """Progress, stats, plot, log and result of the run being trained or the last one."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        #: Epochs the shown run covers (None: it is counted in steps), for the progress bar's text.
        self.planned_epochs: float | None = None
        self._last_epoch = 0.0
        self._start_step = 0  # where the run's step numbering starts (a continued run: its parent's last step)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self._build_progress())
        layout.addLayout(self._build_stats())
        layout.addWidget(self._build_result())
        layout.addWidget(self._build_banner())
        line = QFrame()
        line.setFrameShape(QFrame.Shape.HLine)
        line.setFrameShadow(QFrame.Shadow.Sunken)
        layout.addWidget(line)
        layout.addWidget(self._build_plot_and_log(), 1)

    # --- layout ------------------------------------------------------------------------------------
    def _build_progress(self) -> QProgressBar:
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setValue(0)
        self.progress_bar.setTextVisible(True)
        self.progress_bar.setFormat("Not started")
        self.progress_bar.setMinimumHeight(24)
        self.progress_bar.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        return self.progress_bar

    def _build_stats(self) -> QGridLayout:
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
        return stats

    def _build_result(self) -> QLabel:
        self.result_label = QLabel()
        self.result_label.setWordWrap(True)
        self.result_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.result_label.hide()
        return self.result_label

    def _build_banner(self) -> QLabel:
        self.warning_banner = QLabel()  # a run that completed but diverged or did not learn
        self.warning_banner.setWordWrap(True)
        self.warning_banner.setTextFormat(Qt.TextFormat.RichText)
        self.warning_banner.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.warning_banner.setStyleSheet("QLabel { background: #fff4ce; color: #4d3800; border: 1px solid "
                                          "#e0b000; border-radius: 4px; padding: 6px; }")
        self.warning_banner.hide()
        return self.warning_banner

    def _build_plot_and_log(self) -> QSplitter:
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
        return splitter

    # --- a run going on ----------------------------------------------------------------------------
    def append_log(self, text: str) -> None:
        self.log_view.appendPlainText(text)

    def begin(self) -> None:
        """A run is starting: busy until its first step, the previous result and stats cleared."""
        self._last_epoch = 0.0
        self._start_step = 0
        self.result_label.hide()
        self.warning_banner.hide()
        self.progress_bar.setRange(0, 0)
        self.progress_bar.setFormat("Preparing…")
        for stat in (self.elapsed_stat, self.eta_stat, self.speed_stat, self.loss_stat):
            stat.set("—")

    def show_progress(self, p: TrainProgress) -> None:
        """One logged step or evaluation: the plot, the progress bar and the stats."""
        self.plot.add_progress(p)
        self._last_epoch, self._start_step = p.epoch, p.start_step
        if p.max_steps:
            if (self.progress_bar.minimum(), self.progress_bar.maximum()) != (p.start_step, p.max_steps):
                self.progress_bar.setRange(p.start_step, p.max_steps)  # a continued run: from its parent's step
            self.progress_bar.setValue(min(p.step, p.max_steps))
            self.progress_bar.setFormat(epoch_text(p.epoch, p.step, p.max_steps, self.planned_epochs) + " · %p%")
        self.elapsed_stat.set(format_duration(p.elapsed))
        self.eta_stat.set(format_duration(p.eta))
        if p.tokens_per_second:
            self.speed_stat.set(f"{p.tokens_per_second:,.0f}", SPEED_TIP)
        if p.loss is not None:
            text = f"{p.loss:.4f}"
            if p.learning_rate is not None:
                text += f"  (lr {p.learning_rate:.2g})"
            self.loss_stat.set(text)
        self._log_eval(p)

    def show_steps(self, steps: Sequence[TrainProgress]) -> None:
        """Several logged steps at once (a followed run's new lines): the plot takes them all, the stats and
        the progress bar the last."""
        for p in steps[:-1]:
            self.plot.add_progress(p)
            self._log_eval(p)
        if steps:
            self.show_progress(steps[-1])

    def _log_eval(self, p: TrainProgress) -> None:
        if p.eval_loss is not None:
            self.append_log(f"step {p.step}: eval loss {p.eval_loss:.4f}")

    def show_result(self, result: RunResult) -> None:
        """The run completed or was stopped (its adapter is saved)."""
        self.plot.flush()
        if result.status == "completed":
            first = self._start_step
            steps = first + max(result.steps, 1)
            self.progress_bar.setRange(first, steps)
            self.progress_bar.setValue(steps)
            self.progress_bar.setFormat(epoch_text(self._last_epoch, steps, steps, self.planned_epochs) + " · %p%")
        elif self.progress_bar.maximum() == 0:
            self.progress_bar.setRange(0, 1)
        self.device_stat.set(result.device)
        if result.tokens_per_second:
            self.speed_stat.set(f"{result.tokens_per_second:,.0f}")
        self.elapsed_stat.set(format_duration(result.seconds))
        self.eta_stat.set("—")
        loss = f", final loss {result.final_loss:.4f}" if result.final_loss is not None else ""
        verb = "Completed" if result.status == "completed" else "Stopped (adapter saved)"
        verb += " with warnings" if result.warnings else ""
        cut = f" · {result.cut_rows} row(s) cut to max length" if result.cut_rows else ""
        if result.skipped_rows:
            cut += f" · {plural(result.skipped_rows, 'row')} skipped (nothing to train within the max length)"
        learned = f"<br>{html.escape(result.learned)}" if result.learned else ""  # stopped early: it learned
        self._show_result_text(f"<b>{verb}</b>: {result.steps} steps in {format_duration(result.seconds)}"
                               f"{loss}{cut} — <span>{Path(result.run_dir)}</span>{learned}")
        self.show_warnings(result.warnings)
        for warning in result.warnings:
            self.append_log(f"WARNING: {warning}")

    def show_failure(self, message: str) -> None:
        if self.progress_bar.maximum() == 0:
            self.progress_bar.setRange(0, 1)
            self.progress_bar.setValue(0)
        self.progress_bar.setFormat("Failed")
        self.result_label.setText(f"<b>Training failed</b>: {message}")
        self.result_label.setStyleSheet("color: #b3261e;")
        self.result_label.show()
        self.append_log(f"ERROR: {message}")

    def show_not_started(self) -> None:
        """The run was stopped before its first step (only if nothing else has been shown since)."""
        if self.progress_bar.maximum() == 0:
            self.progress_bar.setRange(0, 1)
            self.progress_bar.setFormat("Not started")

    def show_warnings(self, warnings: list[str]) -> None:
        """The banner under the result line: each warning with its advice (hidden when there are none)."""
        if not warnings:
            self.warning_banner.hide()
            return
        items = "".join(f"<li>{html.escape(w)}</li>" for w in warnings)
        self.warning_banner.setText(f"<b>Warning</b>: the run ended and its adapter was saved, but it may "
                                    f"be useless.<ul style='margin: 2px 0 0 -20px'>{items}</ul>")
        self.warning_banner.show()

    # --- an earlier run ----------------------------------------------------------------------------
    def show_run(self, info: Any, metrics: list[dict[str, Any]]) -> None:
        """An earlier run (a ``runs.RunInfo`` and its metrics): curves, progress, stats and result line."""
        self.plot.set_metrics(metrics)
        self.plot.mark_join(info.step_offset if info.parent else None)
        last = next((m for m in reversed(metrics) if m.get("max_steps")), {})
        t = info.config.training
        first, step = info.step_offset, info.step_offset + info.steps  # a continued run counts on from its parent
        max_steps = int(last.get("max_steps") or step or 1)
        self.progress_bar.setRange(first, max(max_steps, first + 1))
        self.progress_bar.setValue(min(step, max_steps))
        self.progress_bar.setFormat(epoch_text(float(last.get("epoch") or 0.0), step, max_steps,
                                               None if t.max_steps > 0 else t.epochs) + " · %p%")
        self.elapsed_stat.set(format_duration(info.seconds))
        self.eta_stat.set("—")
        speed = last.get("tokens_per_second")
        self.speed_stat.set(f"{speed:,.0f}" if speed else "—")
        self.loss_stat.set(f"{info.final_loss:.4f}" if info.final_loss is not None else "—")
        self.device_stat.set(info.device or "—")
        created = info.created.replace("T", " ")[:16]
        loss = f", final loss {info.final_loss:.4f}" if info.final_loss is not None else ""
        self.show_warnings(info.warnings)
        self._show_result_text(f"<b>Last run</b> ({created}, {info.status_label}): {info.steps} steps"
                               + (f" in {format_duration(info.seconds)}" if info.seconds else "")
                               + f"{loss} — {info.path}")

    def _show_result_text(self, text: str) -> None:
        self.result_label.setText(text)
        self.result_label.setStyleSheet("")
        self.result_label.show()
