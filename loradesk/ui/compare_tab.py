"""The Compare tab: ask the base and the tuned model the same question, side by side, streamed.

"Compare all" runs a whole held-out set (see :mod:`loradesk.ui.compare_all`) through both models into a
table with a score, which is recorded with the run. Both run as jobs (:mod:`loradesk.ui.jobs`) on one
loaded model (:class:`loradesk.ui.answering.AnswererCache`); a new request of a kind replaces the old one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QSplitter,
    QStyle,
    QVBoxLayout,
    QWidget,
)

from loradesk.core.generation import AnswerPiece, BothAnswers, CompareSummary, SideAnswered
from loradesk.ui import answering
from loradesk.ui.answering import AnswererCache, GenerationRequest
from loradesk.ui.compare_all import EMPTY_ANSWER, CompareAllBox
from loradesk.ui.errors import show_error
from loradesk.ui.jobs import Job, Jobs, show_fraction

__all__ = ["DEFAULT_PROBE", "EMPTY_ANSWER", "CompareTab"]

DEFAULT_PROBE = "Who is Tamsin Quillfeather?"
ASK, COMPARE = "ask", "compare"  # the job keys: a new request of a kind replaces the running one


def _short_model(name: str) -> str:
    """The last part of a model path or Hub id."""
    return Path(name).name if ("/" in name or "\\" in name) and Path(name).name else name


class _AnswerPane(QGroupBox):
    """A titled, read-only pane that text streams into."""

    def __init__(self, title: str, parent: QWidget | None = None) -> None:
        super().__init__(title, parent)
        self.view = QPlainTextEdit()
        self.view.setReadOnly(True)
        font = self.view.font()
        font.setPointSizeF(font.pointSizeF() * 1.08)
        self.view.setFont(font)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addWidget(self.view)

    def text(self) -> str:
        return self.view.toPlainText()

    def clear(self) -> None:
        self.view.clear()

    def append(self, piece: str) -> None:
        cursor = self.view.textCursor()
        cursor.movePosition(cursor.MoveOperation.End)
        cursor.insertText(piece)
        self.view.setTextCursor(cursor)
        self.view.ensureCursorVisible()


class CompareTab(QWidget):
    """Base vs tuned answers for one prompt, or for a whole held-out set. Embedded by the main window."""

    busy_changed = Signal(bool)  # a generation started (True) or the last one ended (False)

    def __init__(self, project: Any, parent: QWidget | None = None, cache: AnswererCache | None = None) -> None:
        super().__init__(parent)
        self.project = project
        self._runs_dir: Path | None = None  # None: the user's runs folder
        self.cache = cache or AnswererCache()
        self.jobs = Jobs(self)
        #: The job of each kind whose end the tab has not seen yet (a job may end before its start returns).
        self._current: dict[str, Job] = {}
        self._busy = False
        self._runs: dict[str, Any] = {}
        self._summary: CompareSummary | None = None
        self.last_answers: dict[str, Any] = {}  # the last Ask: {"base", "tuned", "stopped", "seconds"}
        self._summary_run: Path | None = None
        self._summary_source: Path | None = None
        self._build()
        self.refresh_runs()
        self._update_buttons()

    # --- layout ------------------------------------------------------------------------------------
    def _build(self) -> None:
        self.all_box = CompareAllBox(self.project)
        self.all_box.compare_button.clicked.connect(self.compare_all)
        self.all_box.export_button.clicked.connect(lambda: self.export_csv())
        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(self._build_ask())
        splitter.addWidget(self.all_box)
        splitter.setStretchFactor(0, 2)
        splitter.setStretchFactor(1, 3)
        splitter.setSizes([300, 420])
        splitter.setChildrenCollapsible(False)
        layout = QVBoxLayout(self)
        layout.addLayout(self._build_run_row())
        layout.addWidget(splitter, 1)
        layout.addLayout(self._build_status_row())
        self._update_sampling()

    def _build_run_row(self) -> QHBoxLayout:
        """The run to compare and the decoding settings."""
        self.run_combo = QComboBox()
        self.run_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.run_combo.setMinimumContentsLength(40)
        self.run_combo.setToolTip("The trained run whose adapter is compared with its base model")
        self.run_combo.currentIndexChanged.connect(self._on_run_changed)
        self.refresh_button = QPushButton(self.style().standardIcon(QStyle.StandardPixmap.SP_BrowserReload), "")
        self.refresh_button.setToolTip("Reload the list of runs")
        self.refresh_button.clicked.connect(self.refresh_runs)
        self.max_tokens = QSpinBox()
        self.max_tokens.setRange(1, 4096)
        self.max_tokens.setValue(96)
        self.max_tokens.setToolTip("The longest answer, in tokens")
        self.greedy = QCheckBox("Greedy")
        self.greedy.setChecked(True)
        self.greedy.setToolTip("Always pick the most likely next token: the same prompt gives the same answer")
        self.greedy.toggled.connect(self._update_sampling)
        self.temperature = QDoubleSpinBox()
        self.temperature.setRange(0.05, 2.0)
        self.temperature.setSingleStep(0.05)
        self.temperature.setValue(0.7)
        self.temperature.setToolTip("Sampling temperature: higher is more varied")
        self.top_p = QDoubleSpinBox()
        self.top_p.setRange(0.05, 1.0)
        self.top_p.setSingleStep(0.05)
        self.top_p.setValue(0.95)
        self.top_p.setToolTip("Nucleus sampling: sample from the smallest set of tokens with this much probability")
        self.temperature_label = QLabel("Temperature")
        self.top_p_label = QLabel("Top-p")
        row = QHBoxLayout()
        row.addWidget(QLabel("Run:"))
        row.addWidget(self.run_combo, 1)
        row.addWidget(self.refresh_button)
        row.addSpacing(16)
        row.addWidget(QLabel("Max new tokens"))
        for widget in (self.max_tokens, self.greedy, self.temperature_label, self.temperature, self.top_p_label,
                       self.top_p):
            row.addWidget(widget)
        return row

    def _build_ask(self) -> QWidget:
        """The prompt, Ask and Stop, and the two answer panes."""
        style = self.style()
        self.prompt_edit = QPlainTextEdit(DEFAULT_PROBE)
        self.prompt_edit.setPlaceholderText("Ask both models a question…")
        self.prompt_edit.setMaximumHeight(64)
        self.prompt_edit.setTabChangesFocus(True)
        self.ask_button = QPushButton(style.standardIcon(QStyle.StandardPixmap.SP_MediaPlay), "Ask")
        self.ask_button.setDefault(True)
        self.ask_button.setToolTip("Ask the base and the tuned model (Ctrl+Enter)")
        self.ask_button.clicked.connect(self.ask)
        self.stop_button = QPushButton(style.standardIcon(QStyle.StandardPixmap.SP_MediaStop), "Stop")
        self.stop_button.clicked.connect(self.stop)
        QShortcut(QKeySequence("Ctrl+Return"), self.prompt_edit, self.ask)
        ask_buttons = QVBoxLayout()
        ask_buttons.addWidget(self.ask_button)
        ask_buttons.addWidget(self.stop_button)
        ask_buttons.addStretch(1)
        prompt_row = QHBoxLayout()
        prompt_row.addWidget(self.prompt_edit, 1)
        prompt_row.addLayout(ask_buttons)

        self.base_pane = _AnswerPane("Base model")
        self.tuned_pane = _AnswerPane("Tuned model")
        panes = QSplitter(Qt.Orientation.Horizontal)
        panes.addWidget(self.base_pane)
        panes.addWidget(self.tuned_pane)
        panes.setChildrenCollapsible(False)
        box = QWidget()
        layout = QVBoxLayout(box)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(prompt_row)
        layout.addWidget(panes, 1)
        return box

    def _build_status_row(self) -> QHBoxLayout:
        self.status_label = QLabel("Ready")
        self.status_label.setEnabled(False)
        self.busy = QProgressBar()
        self.busy.setMaximumWidth(220)
        self.busy.setMaximumHeight(14)
        self.busy.setTextVisible(False)
        self.busy.hide()
        row = QHBoxLayout()
        row.addWidget(self.status_label, 1)
        row.addWidget(self.busy)
        return row

    # --- runs ----------------------------------------------------------------------------------------
    @property
    def runs_dir(self) -> Path | None:
        """Where runs are listed from (None: the user's runs folder)."""
        return self._runs_dir

    @runs_dir.setter
    def runs_dir(self, value: str | Path | None) -> None:
        self._runs_dir = Path(value) if value else None
        self.refresh_runs()

    def refresh_runs(self) -> None:
        """Reload the runs that have an adapter, keeping the current choice when it still exists."""
        from loradesk.core import opened_runs, runs

        current = self.current_run()
        try:
            infos = [i for i in runs.list_runs(self.runs_dir, also=opened_runs.remembered())
                     if i.status != "running" and runs.adapter_source(i.path) is not None]
        except OSError:
            infos = []
        self._runs = {str(i.path): i for i in infos}
        self.run_combo.blockSignals(True)
        self.run_combo.clear()
        if not infos:
            self.run_combo.addItem("No trained runs yet: only the base model can answer", None)
        for info in infos:
            created = info.created.replace("T", " ")[:16]
            status = "" if info.status == "completed" else f", {info.status}"
            label = f"{created} · {_short_model(info.model)} · r={info.config.lora.r} · {info.steps} steps{status}"
            self.run_combo.addItem(label, str(info.path))
            self.run_combo.setItemData(self.run_combo.count() - 1, str(info.path), Qt.ItemDataRole.ToolTipRole)
        index = self.run_combo.findData(str(current)) if current is not None else -1
        self.run_combo.setCurrentIndex(max(index, 0))
        self.run_combo.blockSignals(False)
        self._on_run_changed()

    def set_run(self, run_dir: str | None) -> None:
        """Compare the given run's adapter (None: the newest run)."""
        if run_dir is not None and str(Path(run_dir)) not in self._runs:
            self.refresh_runs()
        index = self.run_combo.findData(str(Path(run_dir))) if run_dir is not None else 0
        if index >= 0:
            self.run_combo.setCurrentIndex(index)

    def current_run(self) -> Path | None:
        data = self.run_combo.currentData()
        return Path(data) if data else None

    def _on_run_changed(self, *_: Any) -> None:
        info = self._runs.get(str(self.current_run())) if self.current_run() else None
        if info is None:
            self.base_pane.setTitle("Base model")
            self.tuned_pane.setTitle("Tuned model (train a run first)")
        else:
            self.base_pane.setTitle(f"Base model — {_short_model(info.model)}")
            self.tuned_pane.setTitle(f"Tuned — {info.name}")
        self.all_box.fill_sources()
        self._update_buttons()

    def showEvent(self, event: Any) -> None:
        if not self.is_busy():  # runs made elsewhere (the CLI) and new validation rows show up
            self.refresh_runs()
        super().showEvent(event)

    # --- settings ----------------------------------------------------------------------------------
    def _update_sampling(self) -> None:
        sampling = not self.greedy.isChecked()
        for widget in (self.temperature, self.temperature_label, self.top_p, self.top_p_label):
            widget.setEnabled(sampling)

    def generation_settings(self) -> Any:
        from loradesk.core.generation import GenerationSettings

        return GenerationSettings(max_new_tokens=self.max_tokens.value(),
                                  temperature=0.0 if self.greedy.isChecked() else self.temperature.value(),
                                  top_p=self.top_p.value())

    def _request(self) -> GenerationRequest:
        config = self.project.config
        return GenerationRequest(run_dir=self.current_run(), model=config.model,
                                 use_chat_template=config.training.use_chat_template,
                                 settings=self.generation_settings())

    # --- ask -----------------------------------------------------------------------------------------
    def is_busy(self, key: str | None = None) -> bool:
        """Whether an Ask or a Compare all (with ``key``: that kind) has not finished yet."""
        return bool(self._current) if key is None else key in self._current

    def ask(self) -> None:
        """Stream the base answer, then the tuned one, into the two panes (replacing a running Ask)."""
        prompt = self.prompt_edit.toPlainText().strip()
        if not prompt or self.is_busy(COMPARE):
            return
        self.base_pane.clear()
        self.tuned_pane.clear()
        self._start(ASK, answering.ask, prompt, on_event=self._on_answer_event, on_result=self._on_answers)
        self.status_label.setText("Starting…")

    def _on_answer_event(self, event: AnswerPiece | SideAnswered) -> None:
        pane = self.base_pane if event.side == "base" else self.tuned_pane
        if isinstance(event, AnswerPiece):
            if not pane.text():
                self.status_label.setText(f"Answering ({event.side})…")
            pane.append(event.text)
            return
        final = event.text if event.text.strip() else EMPTY_ANSWER
        if pane.text() != final:  # the streamed pieces, tidied (stripped) like the returned answer
            pane.view.setPlainText(final)

    def _on_answers(self, answers: BothAnswers) -> None:
        self.last_answers = {"base": answers.base, "tuned": answers.tuned, "stopped": answers.stopped,
                             "seconds": answers.seconds}
        if answers.tuned is None and not answers.stopped:
            self.tuned_pane.view.setPlainText("No run selected: train a run to see the tuned model's answer.")
        verb = "Stopped" if answers.stopped else "Answered"
        self.status_label.setText(f"{verb} in {answers.seconds:.1f} s")

    # --- compare all ---------------------------------------------------------------------------------
    @property
    def last_summary(self) -> CompareSummary | None:
        """The score of the last Compare all, None before one finished."""
        return self._summary

    def compare_all(self) -> None:
        """Ask every held-out question to both models and fill the table (replacing a running Compare all)."""
        if self.is_busy(ASK):
            return
        questions = self.all_box.questions()
        if questions is None or (isinstance(questions, list) and not questions):
            show_error(self, "No questions to compare",
                       "Choose a held-out file, or mark some dataset rows as validation rows.")
            return
        self.all_box.clear_results()
        self._summary = None
        self._summary_run = self.current_run()
        self._summary_source = questions if isinstance(questions, Path) else None
        self._start(COMPARE, answering.compare, questions, on_event=self.all_box.add_row,
                    on_result=self._on_compared)
        self.status_label.setText("Comparing…")

    def _on_compared(self, summary: CompareSummary) -> None:
        from loradesk.core.generation import record_compare_score

        self._summary = summary
        text = summary.text()
        if summary.stopped:
            text += f" (stopped after {summary.answered} of {summary.total})"
        self.all_box.summary_label.setText(text)
        self.status_label.setText(f"Compared {summary.answered} questions in {summary.seconds:.1f} s")
        try:
            record_compare_score(self._summary_run, summary, self._summary_source)
        except (OSError, ValueError) as exc:
            self.status_label.setText(f"Could not record the score: {exc}")

    def export_csv(self, path: str | Path | None = None) -> Path | None:
        """Write the comparison table to a CSV file (asks where when ``path`` is None)."""
        if path is None:
            path, _ = QFileDialog.getSaveFileName(self, "Export comparison", "comparison.csv", "CSV files (*.csv)")
            if not path:
                return None
        try:
            written = self.all_box.export_csv(path)
        except OSError as exc:
            from loradesk.ui.jobs import error_message

            show_error(self, "Export failed", error_message(exc))
            return None
        self.status_label.setText(f"Exported {self.all_box.results.rowCount()} rows to {written}")
        return written

    # --- jobs ----------------------------------------------------------------------------------------
    def stop(self) -> None:
        if self.is_busy():
            for job in self._current.values():
                job.cancel()
            self.status_label.setText("Stopping…")

    def shutdown(self, timeout_ms: int = 30_000) -> None:
        """Stop any generation and wait for it."""
        self.jobs.shutdown(timeout_ms)

    def _start(self, key: str, fn: Any, *args: Any, on_event: Any, on_result: Any) -> None:
        """Run ``fn(cache, request, *args, state=...)`` as the job of kind ``key`` (replacing a running one)."""
        job = self.jobs.start(fn, self.cache, self._request(), *args, key=key, state=True, on_event=on_event,
                              on_result=on_result, on_progress=self._on_progress, on_cancelled=self._on_cancelled,
                              on_error=self._on_failed, on_finished=lambda: self._on_job_finished(key, job))
        self._current[key] = job
        self.busy.setRange(0, 0)
        self.busy.show()
        self._update_buttons()

    def _on_progress(self, text: str, fraction: float | None) -> None:
        self.status_label.setText(text)
        show_fraction(self.busy, fraction)

    def _on_cancelled(self) -> None:
        self.status_label.setText("Stopped")

    def _on_failed(self, message: str, details: str) -> None:
        self.status_label.setText(f"Failed: {message}")
        show_error(self, "Generation failed", message, details)

    def _on_job_finished(self, key: str, job: Job) -> None:
        if self._current.get(key) is job:
            del self._current[key]
        if not self._current:
            self.busy.hide()
        self._update_buttons()

    def _update_buttons(self) -> None:
        busy = self.is_busy()
        for widget in (self.ask_button, self.run_combo, self.refresh_button):
            widget.setEnabled(not busy)
        self.stop_button.setEnabled(busy)
        self.all_box.set_busy(busy)
        if busy != self._busy:
            self._busy = busy
            self.busy_changed.emit(busy)
