"""The Compare tab: ask the base and the tuned model the same question, side by side, streamed.

"Compare all" runs a whole held-out set (the project's held-out file, the dataset's validation rows or
any file) through both models into a table with a score, which is recorded with the run.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QBrush, QColor, QFont, QKeySequence, QShortcut, QStandardItem, QStandardItemModel
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMessageBox,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QSplitter,
    QStyle,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from loradesk.ui.training_tab import open_error_box
from loradesk.ui.workers import AnswererCache, CompareAllWorker, GenerateWorker, GenerationRequest, Job

DEFAULT_PROBE = "Who is Tamsin Quillfeather?"
COLUMNS = ("Prompt", "Expected", "Base", "Tuned", "Base ✓", "Tuned ✓")
OK_COLOR = QColor("#1e7b34")
BAD_COLOR = QColor("#b3261e")
EMPTY_ANSWER = "(empty answer: the model produced no text)"
SOURCE_HELDOUT, SOURCE_VALIDATION, SOURCE_FILE = "heldout", "validation", "file"


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

    busy_changed = Signal(bool)  # a generation started (True) or its thread ended (False)

    def __init__(self, project: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.project = project
        self._runs_dir: Path | None = None  # None: the user's runs folder
        self.error_box: QMessageBox | None = None
        self.cache = AnswererCache()
        self._job: Job | None = None
        self._runs: dict[str, Any] = {}
        self._loaded_file: Path | None = None
        self._summary: Any = None
        self.last_answers: dict[str, Any] = {}  # the last Ask: {"base", "tuned", "stopped", "seconds"}
        self._summary_run: Path | None = None
        self._build()
        self.refresh_runs()
        self._update_buttons()

    # --- layout ------------------------------------------------------------------------------------
    def _build(self) -> None:
        style = self.style()
        self.run_combo = QComboBox()
        self.run_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.run_combo.setMinimumContentsLength(40)
        self.run_combo.setToolTip("The trained run whose adapter is compared with its base model")
        self.run_combo.currentIndexChanged.connect(self._on_run_changed)
        self.refresh_button = QPushButton(style.standardIcon(QStyle.StandardPixmap.SP_BrowserReload), "")
        self.refresh_button.setToolTip("Reload the list of runs")
        self.refresh_button.clicked.connect(self.refresh_runs)

        self.max_tokens = QSpinBox()
        self.max_tokens.setRange(1, 4096)
        self.max_tokens.setValue(96)
        self.max_tokens.setToolTip("The longest answer, in tokens")
        self.greedy = QCheckBox("Greedy")
        self.greedy.setChecked(True)
        self.greedy.setToolTip("Always pick the most likely next token: the same prompt gives the same answer")
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
        self.greedy.toggled.connect(self._update_sampling)

        top = QHBoxLayout()
        top.addWidget(QLabel("Run:"))
        top.addWidget(self.run_combo, 1)
        top.addWidget(self.refresh_button)
        top.addSpacing(16)
        top.addWidget(QLabel("Max new tokens"))
        top.addWidget(self.max_tokens)
        top.addWidget(self.greedy)
        self.temperature_label = QLabel("Temperature")
        top.addWidget(self.temperature_label)
        top.addWidget(self.temperature)
        self.top_p_label = QLabel("Top-p")
        top.addWidget(self.top_p_label)
        top.addWidget(self.top_p)

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

        self.status_label = QLabel("Ready")
        self.status_label.setEnabled(False)
        self.busy = QProgressBar()
        self.busy.setMaximumWidth(220)
        self.busy.setMaximumHeight(14)
        self.busy.setTextVisible(False)
        self.busy.hide()
        status_row = QHBoxLayout()
        status_row.addWidget(self.status_label, 1)
        status_row.addWidget(self.busy)

        ask_box = QWidget()
        ask_layout = QVBoxLayout(ask_box)
        ask_layout.setContentsMargins(0, 0, 0, 0)
        ask_layout.addLayout(prompt_row)
        ask_layout.addWidget(panes, 1)

        # -- compare all --
        self.source_combo = QComboBox()
        self.source_combo.setToolTip("Questions with an expected phrase; an answer counts as right when it "
                                     "contains the phrase (ignoring case)")
        self.open_button = QPushButton(style.standardIcon(QStyle.StandardPixmap.SP_DialogOpenButton),
                                       "Open…")
        self.open_button.setToolTip("Load held-out questions from a JSON, JSONL or CSV file "
                                    "(prompt + expected)")
        self.open_button.clicked.connect(self._choose_file)
        self.compare_button = QPushButton("Compare all")
        self.compare_button.setToolTip("Ask every held-out question to both models and score the answers")
        self.compare_button.clicked.connect(self.compare_all)
        self.export_button = QPushButton(style.standardIcon(QStyle.StandardPixmap.SP_DialogSaveButton),
                                         "Export CSV…")
        self.export_button.clicked.connect(self.export_csv)
        self.summary_label = QLabel()
        summary_font = self.summary_label.font()
        summary_font.setBold(True)
        summary_font.setPointSizeF(summary_font.pointSizeF() * 1.1)
        self.summary_label.setFont(summary_font)
        all_row = QHBoxLayout()
        all_row.addWidget(QLabel("Questions:"))
        all_row.addWidget(self.source_combo, 1)
        all_row.addWidget(self.open_button)
        all_row.addWidget(self.compare_button)
        all_row.addSpacing(12)
        all_row.addWidget(self.summary_label)
        all_row.addStretch(0)
        all_row.addWidget(self.export_button)

        self.results = QStandardItemModel(0, len(COLUMNS), self)
        self.results.setHorizontalHeaderLabels(list(COLUMNS))
        self.table = QTableView()
        self.table.setModel(self.results)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setAlternatingRowColors(True)
        self.table.setWordWrap(False)
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setDefaultSectionSize(self.fontMetrics().height() + 10)
        header = self.table.horizontalHeader()
        for col in range(4):
            header.setSectionResizeMode(col, QHeaderView.ResizeMode.Stretch)
        for col in (4, 5):
            header.setSectionResizeMode(col, QHeaderView.ResizeMode.ResizeToContents)

        all_box = QGroupBox("Compare all held-out questions")
        all_layout = QVBoxLayout(all_box)
        all_layout.addLayout(all_row)
        all_layout.addWidget(self.table, 1)

        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(ask_box)
        splitter.addWidget(all_box)
        splitter.setStretchFactor(0, 2)
        splitter.setStretchFactor(1, 3)
        splitter.setSizes([300, 420])
        splitter.setChildrenCollapsible(False)

        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(splitter, 1)
        layout.addLayout(status_row)
        self._fill_sources()
        self._update_sampling()

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
        from loradesk.core import runs

        current = self.current_run()
        try:
            infos = [i for i in runs.list_runs(self.runs_dir)
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
        self._fill_sources()
        self._update_buttons()

    def showEvent(self, event: Any) -> None:
        if not self.is_busy():  # runs made elsewhere (the CLI) and new validation rows show up
            self.refresh_runs()
        super().showEvent(event)

    # --- settings and sources ------------------------------------------------------------------------
    def _update_sampling(self) -> None:
        sampling = not self.greedy.isChecked()
        for widget in (self.temperature, self.temperature_label, self.top_p, self.top_p_label):
            widget.setEnabled(sampling)

    def generation_settings(self) -> Any:
        from loradesk.core.generation import GenerationSettings

        return GenerationSettings(max_new_tokens=self.max_tokens.value(),
                                  temperature=0.0 if self.greedy.isChecked() else self.temperature.value(),
                                  top_p=self.top_p.value())

    def heldout_file(self) -> Path | None:
        """The project's held-out file, else the shipped sample's."""
        path = getattr(self.project, "heldout_path", None)
        if path:
            return Path(path)
        from loradesk.core.paths import sample_data_dir

        try:
            return sample_data_dir() / "sample_heldout.json"
        except FileNotFoundError:
            return None

    def _fill_sources(self) -> None:
        previous = self.source_combo.currentData()
        self.source_combo.blockSignals(True)
        self.source_combo.clear()
        heldout = self.heldout_file()
        if heldout is not None:
            self.source_combo.addItem(f"Held-out file: {heldout.name}", SOURCE_HELDOUT)
            self.source_combo.setItemData(0, str(heldout), Qt.ItemDataRole.ToolTipRole)
        count = len(self._validation_rows())
        self.source_combo.addItem(f"Validation rows of the dataset ({count:,})", SOURCE_VALIDATION)
        self.source_combo.setItemData(self.source_combo.count() - 1,
                                      "The rows the Split column shows as Validation: marked by hand, or drawn "
                                      "by the validation share in Settings", Qt.ItemDataRole.ToolTipRole)
        if self._loaded_file is not None:
            self.source_combo.addItem(f"File: {self._loaded_file.name}", SOURCE_FILE)
            self.source_combo.setItemData(self.source_combo.count() - 1, str(self._loaded_file),
                                          Qt.ItemDataRole.ToolTipRole)
        index = self.source_combo.findData(previous)
        self.source_combo.setCurrentIndex(max(index, 0))
        self.source_combo.blockSignals(False)

    def _validation_rows(self) -> list[Any]:
        """The dataset's validation rows, exactly as training splits them (pinned rows and the seeded draw)."""
        from loradesk.core.dataset import split_rows

        training = self.project.config.training
        return split_rows(self.project.dataset, training.validation_fraction, training.seed)[1]

    def load_questions_file(self, path: str | Path) -> None:
        """Use ``path`` (prompt + expected rows) for Compare all."""
        self._loaded_file = Path(path)
        self._fill_sources()
        self.source_combo.setCurrentIndex(self.source_combo.findData(SOURCE_FILE))

    def _choose_file(self) -> None:
        from loradesk.core.formats import IMPORT_FILTER

        path, _ = QFileDialog.getOpenFileName(self, "Open held-out questions", "", IMPORT_FILTER)
        if path:
            self.load_questions_file(path)

    def _questions(self) -> list[tuple[str, str]] | Path | None:
        source = self.source_combo.currentData()
        if source == SOURCE_VALIDATION:
            return [(row.prompt, row.completion) for row in self._validation_rows()]
        if source == SOURCE_FILE:
            return self._loaded_file
        return self.heldout_file()

    # --- jobs ----------------------------------------------------------------------------------------
    def _request(self) -> GenerationRequest:
        config = self.project.config
        return GenerationRequest(run_dir=self.current_run(), model=config.model,
                                 use_chat_template=config.training.use_chat_template,
                                 settings=self.generation_settings())

    @property
    def last_summary(self) -> Any:
        """The score of the last Compare all (a ``CompareSummary``), None before one finished."""
        return self._summary

    def is_busy(self) -> bool:
        return self._job is not None and self._job.is_running()

    def ask(self) -> None:
        """Stream the base answer, then the tuned one, into the two panes."""
        prompt = self.prompt_edit.toPlainText().strip()
        if not prompt or self.is_busy():
            return
        self.base_pane.clear()
        self.tuned_pane.clear()
        worker = GenerateWorker(self.cache, self._request(), prompt)
        worker.token.connect(self._on_token)
        worker.answered.connect(self._on_answered)
        worker.finished.connect(self._on_answer_finished)
        self._start(worker, "Starting…")

    def compare_all(self) -> None:
        """Ask every held-out question to both models and fill the table."""
        if self.is_busy():
            return
        questions = self._questions()
        if questions is None or (isinstance(questions, list) and not questions):
            self.show_error("No questions to compare",
                            "Choose a held-out file, or mark some dataset rows as validation rows.")
            return
        self.results.removeRows(0, self.results.rowCount())
        self.summary_label.clear()
        self._summary = None
        self._summary_run = self.current_run()
        worker = CompareAllWorker(self.cache, self._request(), questions)
        worker.row.connect(self._on_row)
        worker.progress.connect(self._on_compare_progress)
        worker.finished.connect(self._on_compare_finished)
        self._start(worker, "Comparing…")

    def stop(self) -> None:
        if self._job is not None:
            self._job.stop()
            self.status_label.setText("Stopping…")

    def shutdown(self, timeout_ms: int = 30_000) -> None:
        """Stop any generation and wait for its thread."""
        if self._job is not None:
            self._job.shutdown(timeout_ms)

    def _start(self, worker: Any, text: str) -> None:
        worker.status.connect(self._on_status)
        worker.failed.connect(self._on_failed)
        job = Job(worker, self)
        job.finished.connect(self._on_thread_finished)
        self._job = job
        self.status_label.setText(text)
        self.busy.setRange(0, 0)
        self.busy.show()
        job.start()
        self._update_buttons()
        self.busy_changed.emit(True)

    def _on_thread_finished(self) -> None:
        job, self._job = self._job, None
        if job is not None:
            job.deleteLater()
        self.busy.hide()
        self._update_buttons()
        self.busy_changed.emit(False)

    def _on_status(self, text: str) -> None:
        self.status_label.setText(text)

    def _on_token(self, side: str, piece: str) -> None:
        (self.base_pane if side == "base" else self.tuned_pane).append(piece)

    def _on_answered(self, side: str, text: str) -> None:
        pane = self.base_pane if side == "base" else self.tuned_pane
        final = text if text.strip() else EMPTY_ANSWER
        if pane.text() != final:  # the streamed pieces, tidied (stripped) like the returned answer
            pane.view.setPlainText(final)

    def _on_answer_finished(self, result: dict[str, Any]) -> None:
        self.last_answers = result
        if result.get("tuned") is None and not result.get("stopped"):
            self.tuned_pane.view.setPlainText("No run selected: train a run to see the tuned model's answer.")
        verb = "Stopped" if result.get("stopped") else "Answered"
        self.status_label.setText(f"{verb} in {result.get('seconds', 0.0):.1f} s")

    def _on_row(self, row: Any) -> None:
        def cell(text: str | None) -> QStandardItem:
            shown = "—" if text is None else (text or EMPTY_ANSWER)
            item = QStandardItem(" ".join(shown.split()))
            item.setToolTip(shown)
            item.setData(text, Qt.ItemDataRole.UserRole)  # the raw answer, for export
            return item

        def mark(ok: bool | None) -> QStandardItem:
            item = QStandardItem("—" if ok is None else ("✓" if ok else "✗"))
            item.setTextAlignment(Qt.AlignmentFlag.AlignCenter)
            if ok is not None:
                item.setForeground(QBrush(OK_COLOR if ok else BAD_COLOR))
                font = QFont(item.font())
                font.setBold(True)
                item.setFont(font)
            item.setData(ok, Qt.ItemDataRole.UserRole)
            return item

        self.results.appendRow([cell(row.prompt), cell(row.expected), cell(row.base), cell(row.tuned),
                                mark(row.base_ok), mark(row.tuned_ok)])

    def _on_compare_progress(self, done: int, total: int) -> None:
        self.busy.setRange(0, max(total, 1))
        self.busy.setValue(done)

    def _on_compare_finished(self, summary: Any) -> None:
        self._summary = summary
        text = summary.text()
        if summary.stopped:
            text += f" (stopped after {summary.answered} of {summary.total})"
        self.summary_label.setText(text)
        self.status_label.setText(f"Compared {summary.answered} questions in {summary.seconds:.1f} s")
        run = self._summary_run
        if run is not None and summary.tuned_correct is not None and summary.answered and not summary.stopped:
            from loradesk.core import runs

            try:
                runs.record_score(run, summary.tuned_correct / summary.answered,
                                  {"tuned": summary.tuned_correct, "base": summary.base_correct,
                                   "total": summary.answered})
            except (OSError, ValueError) as exc:
                self.status_label.setText(f"Could not record the score: {exc}")
        self._update_buttons()

    def _on_failed(self, message: str, details: str) -> None:
        self.status_label.setText(f"Failed: {message}")
        self.show_error("Generation failed", message, details)

    # --- export --------------------------------------------------------------------------------------
    def table_rows(self) -> list[list[str]]:
        """The comparison table as text rows (without the header)."""
        return [[self.results.item(r, c).text() for c in range(len(COLUMNS))]
                for r in range(self.results.rowCount())]

    def export_csv(self, path: str | Path | None = None) -> Path | None:
        """Write the comparison table to a CSV file (asks where when ``path`` is None)."""
        if path is None:
            path, _ = QFileDialog.getSaveFileName(self, "Export comparison", "comparison.csv",
                                                  "CSV files (*.csv)")
            if not path:
                return None
        from loradesk.core.fileio import atomic_write_text

        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(["prompt", "expected", "base", "tuned", "base_ok", "tuned_ok"])
        for r in range(self.results.rowCount()):
            values = [self.results.item(r, c).data(Qt.ItemDataRole.UserRole) for c in range(len(COLUMNS))]
            texts = ["" if v is None else v for v in values[:4]]
            oks = ["" if v is None else str(bool(v)).lower() for v in values[4:]]
            writer.writerow([*texts, *oks])
        path = Path(path)
        atomic_write_text(path, buffer.getvalue())
        self.status_label.setText(f"Exported {self.results.rowCount()} rows to {path}")
        return path

    # --- helpers -------------------------------------------------------------------------------------
    def _update_buttons(self) -> None:
        busy = self.is_busy()
        for widget in (self.ask_button, self.compare_button, self.run_combo, self.source_combo,
                       self.open_button, self.refresh_button):
            widget.setEnabled(not busy)
        self.stop_button.setEnabled(busy)
        self.export_button.setEnabled(not busy and self.results.rowCount() > 0)

    def show_error(self, title: str, message: str, details: str = "") -> None:
        """A non-blocking error dialog (``error_box``); ``details`` hold the traceback."""
        if self.error_box is not None:
            self.error_box.close()
        self.error_box = open_error_box(self, title, message, details)
