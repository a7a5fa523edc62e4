"""The Runs tab: every finished or stopped run, its settings, loss curve and score; open and export them."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from PySide6.QtCore import QItemSelection, Qt, QUrl, Signal
from PySide6.QtGui import QBrush, QColor, QDesktopServices, QStandardItem, QStandardItemModel
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QProgressBar,
    QPushButton,
    QSplitter,
    QStyle,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from loradesk.ui import errors, gguf_export
from loradesk.ui.jobs import Jobs, show_fraction
from loradesk.ui.plots import LossPlot

COLUMNS = ("Date", "Model", "r / alpha", "Learning rate", "Epochs", "Steps", "Status", "Final loss", "Score")
STATUS_COLORS = {"completed": "#1e7b34", "stopped": "#9a6700", "interrupted": "#b35c00", "running": "#1f6fb5",
                 "failed": "#b3261e", "completed with warnings": "#b35c00", "stopped with warnings": "#b35c00"}
PATH_ROLE = Qt.ItemDataRole.UserRole + 1


def _model_label(name: str) -> str:
    return Path(name).name if ("/" in name or "\\" in name) and Path(name).name else name


def _state_text(info: Any) -> str:
    """What a failed, stopped, interrupted or still running run means for the user, shown under its name."""
    if info.where:
        return f"Still training in {info.where}."
    if info.status == "failed":
        return f"Failed: {html.escape(info.error)}" if info.error else "Failed."
    if info.status not in ("stopped", "interrupted"):
        return ""
    how = ("Interrupted: its training process ended without saving the run (killed, crashed or a power cut)"
           if info.status == "interrupted" else "Stopped")
    if info.checkpoint is None:
        kept = "nothing was kept" if info.status == "interrupted" else "its adapter is kept"
        return f"{how} before its first checkpoint: {kept}, and it cannot be resumed."
    from loradesk.core.runs import checkpoint_step

    return f"{how}. <b>Resume</b> continues it from its checkpoint at step {checkpoint_step(info.checkpoint)}."


def _item(text: str, sort: Any = None, align_right: bool = False) -> QStandardItem:
    item = QStandardItem(text)
    item.setData(sort if sort is not None else text, Qt.ItemDataRole.UserRole)
    if align_right:
        item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
    return item


class RunsTab(QWidget):
    """The list of runs with their curves. Embedded by the main window."""

    run_selected = Signal(str)  # "Compare this run": the run folder
    resume_requested = Signal(str)  # "Resume": a stopped or interrupted run folder, for the Train tab
    train_more_requested = Signal(str)  # "Train more": a completed or stopped run folder with its adapter
    busy_changed = Signal(bool)  # an export started (True) or ended (False)
    folder_dropped = Signal(str)  # a run folder dropped on the tab, to open (File > Open Run…)

    def __init__(self, project: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.project = project
        self._runs_dir: Path | None = None  # None: the user's runs folder
        self.jobs = Jobs(self)
        self._runs: list[Any] = []
        self.last_export: Path | None = None
        self._build()
        self.setAcceptDrops(True)
        self.refresh()

    # --- layout ------------------------------------------------------------------------------------
    def _build(self) -> None:
        style = self.style()
        self.model = QStandardItemModel(0, len(COLUMNS), self)
        self.model.setHorizontalHeaderLabels(list(COLUMNS))
        self.model.setSortRole(Qt.ItemDataRole.UserRole)
        self.table = QTableView()
        self.table.setModel(self.model)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setAlternatingRowColors(True)
        self.table.setSortingEnabled(True)
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setDefaultSectionSize(self.fontMetrics().height() + 10)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self.table.selectionModel().selectionChanged.connect(self._on_selection)
        self.table.doubleClicked.connect(self.compare_selected)

        self.refresh_button = QPushButton(style.standardIcon(QStyle.StandardPixmap.SP_BrowserReload), "Refresh")
        self.refresh_button.clicked.connect(self.refresh)
        self.open_button = QPushButton(style.standardIcon(QStyle.StandardPixmap.SP_DirOpenIcon), "Open folder")
        self.open_button.setToolTip("Show the run folder (adapter, tokenizer, metrics) in the file manager")
        self.open_button.clicked.connect(self.open_folder)
        self.export_adapter_button = QPushButton("Export adapter…")
        self.export_adapter_button.setToolTip("Copy the LoRA adapter and tokenizer to a folder of your choice")
        self.export_adapter_button.clicked.connect(lambda: self.export_adapter())
        self.export_merged_button = QPushButton("Export merged model…")
        self.export_merged_button.setToolTip("Fold the adapter into the base model and save a standalone model")
        self.export_merged_button.clicked.connect(lambda: self.export_merged())
        self.export_gguf_button = QPushButton("Export GGUF…")
        self.export_gguf_button.setToolTip("Merge and write one .gguf file for llama.cpp, Ollama or LM Studio, "
                                           "with an Ollama Modelfile beside it")
        self.export_gguf_button.clicked.connect(lambda: self.export_gguf())
        self.compare_button = QPushButton(style.standardIcon(QStyle.StandardPixmap.SP_ArrowRight),
                                          "Compare this run")
        self.compare_button.clicked.connect(self.compare_selected)
        self.resume_button = QPushButton(style.standardIcon(QStyle.StandardPixmap.SP_MediaSeekForward), "Resume")
        self.resume_button.setToolTip("Continue the selected stopped or interrupted run from its latest checkpoint "
                                      "on the Train tab")
        self.resume_button.clicked.connect(self.resume_selected)
        self.train_more_button = QPushButton("Train more…")
        self.train_more_button.setToolTip("Continue the selected completed or stopped run from its adapter for more "
                                          "epochs, as a new run on the Train tab")
        self.train_more_button.clicked.connect(self.train_more_selected)
        buttons = QHBoxLayout()
        buttons.addWidget(self.refresh_button)
        buttons.addWidget(self.open_button)
        buttons.addWidget(self.export_adapter_button)
        buttons.addWidget(self.export_merged_button)
        buttons.addWidget(self.export_gguf_button)
        buttons.addStretch(1)
        buttons.addWidget(self.resume_button)
        buttons.addWidget(self.train_more_button)
        buttons.addWidget(self.compare_button)

        self.detail_label = QLabel("Select a run to see its loss curve.")
        self.detail_label.setWordWrap(True)
        self.detail_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.plot = LossPlot()
        self.plot.setMinimumHeight(200)
        detail = QWidget()
        detail_layout = QVBoxLayout(detail)
        detail_layout.setContentsMargins(0, 0, 0, 0)
        detail_layout.addWidget(self.detail_label)
        detail_layout.addWidget(self.plot, 1)

        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(self.table)
        splitter.addWidget(detail)
        splitter.setStretchFactor(0, 2)
        splitter.setStretchFactor(1, 3)
        splitter.setChildrenCollapsible(False)

        self.status_label = QLabel()
        self.status_label.setEnabled(False)
        self.busy = QProgressBar()
        self.busy.setRange(0, 0)
        self.busy.setMaximumWidth(220)
        self.busy.setMaximumHeight(14)
        self.busy.setTextVisible(False)
        self.busy.hide()
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop the export; nothing is written")
        self.cancel_button.clicked.connect(lambda: self.jobs.cancel("export"))
        self.cancel_button.hide()
        status = QHBoxLayout()
        status.addWidget(self.status_label, 1)
        status.addWidget(self.busy)
        status.addWidget(self.cancel_button)

        layout = QVBoxLayout(self)
        layout.addLayout(buttons)
        layout.addWidget(splitter, 1)
        layout.addLayout(status)

    @staticmethod
    def _dropped_run(event: Any) -> str | None:
        """The first run folder (one with a run file) among the dropped URLs, else None."""
        from loradesk.core.runs import RUN_FILE

        for url in event.mimeData().urls():
            if url.isLocalFile() and (Path(url.toLocalFile()) / RUN_FILE).is_file():
                return url.toLocalFile()
        return None

    def dragEnterEvent(self, event: Any) -> None:
        if self._dropped_run(event) is not None:  # anything else goes on to the window (dataset imports)
            event.acceptProposedAction()

    def dropEvent(self, event: Any) -> None:
        folder = self._dropped_run(event)
        if folder is not None:
            event.acceptProposedAction()
            self.folder_dropped.emit(folder)

    def showEvent(self, event: Any) -> None:
        if not self.is_busy():
            self.refresh()  # runs made elsewhere (the CLI) show up
        super().showEvent(event)

    # --- the list ------------------------------------------------------------------------------------
    @property
    def runs_dir(self) -> Path | None:
        """Where runs are listed from (None: the user's runs folder)."""
        return self._runs_dir

    @runs_dir.setter
    def runs_dir(self, value: str | Path | None) -> None:
        self._runs_dir = Path(value) if value else None
        self.refresh()

    def refresh(self) -> None:
        """Re-read the runs folder, keeping the selected run selected."""
        from loradesk.core import opened_runs, runs

        selected = self.selected_run()
        try:
            self._runs = runs.list_runs(self.runs_dir, also=opened_runs.remembered())
        except OSError as exc:
            self._runs = []
            self.status_label.setText(f"Cannot read the runs folder: {exc}")
        self.table.setSortingEnabled(False)
        self.model.removeRows(0, self.model.rowCount())
        for info in self._runs:
            self.model.appendRow(self._row(info))
        self.table.setSortingEnabled(True)
        if not self._runs:
            self.detail_label.setText("No runs yet: train one on the Train tab.")
            self.plot.clear()
        row = self._row_of(selected) if selected is not None else None
        self.table.selectRow(row if row is not None else 0)
        self._update_buttons()

    def _row(self, info: Any) -> list[QStandardItem]:
        t, lora = info.config.training, info.config.lora
        epochs = f"{t.epochs:g}" if t.max_steps <= 0 else "—"
        loss = info.final_loss
        status = _item(info.status_label)
        status.setForeground(QBrush(QColor(STATUS_COLORS.get(info.status_label, "#555555"))))
        if info.warnings:
            status.setToolTip("\n\n".join(info.warnings))
        elif info.error:
            status.setToolTip(info.error)
        elif info.where:
            status.setToolTip(f"Training in {info.where}")
        elif info.resumable and info.checkpoint is not None:
            status.setToolTip(f"Can be resumed from {info.checkpoint.name}")
        cells = [
            _item(info.created.replace("T", " ")[:16], info.created),
            _item(_model_label(info.model)),
            _item(f"{lora.r} / {lora.alpha}", (lora.r, lora.alpha)),
            _item(f"{t.learning_rate:g}", t.learning_rate, True),
            _item(epochs, t.epochs, True),
            _item(str(info.steps), info.steps, True),
            status,
            _item(f"{loss:.4f}" if loss is not None else "—", loss if loss is not None else float("inf"), True),
            _item(f"{info.score:.0%}" if info.score is not None else "—",
                  info.score if info.score is not None else -1.0, True),
        ]
        cells[0].setData(str(info.path), PATH_ROLE)
        cells[0].setToolTip(str(info.path) + (f"\ncontinues {Path(info.parent).name}" if info.parent else ""))
        return cells

    def _row_of(self, run_dir: Path) -> int | None:
        for row in range(self.model.rowCount()):
            if self.model.item(row, 0).data(PATH_ROLE) == str(run_dir):
                return row
        return None

    def selected_run(self) -> Path | None:
        rows = self.table.selectionModel().selectedRows()
        if not rows:
            return None
        path = self.model.item(rows[0].row(), 0).data(PATH_ROLE)
        return Path(path) if path else None

    def select_run(self, run_dir: str | Path) -> bool:
        """Select the row of ``run_dir``; False when it is not listed."""
        row = self._row_of(Path(run_dir))
        if row is None:
            return False
        self.table.selectRow(row)
        return True

    def _info(self, run_dir: Path | None) -> Any:
        return next((i for i in self._runs if i.path == run_dir), None)

    def _on_selection(self, *_: QItemSelection) -> None:
        run_dir = self.selected_run()
        info = self._info(run_dir)
        self._update_buttons()
        if info is None or run_dir is None:
            self.plot.clear()
            return
        from loradesk.core import runs, train_more

        self.plot.set_metrics(train_more.lineage_metrics(run_dir))  # a continued run: its parent's curve first
        self.plot.mark_join(info.step_offset if info.parent else None)
        t = info.config.training
        parts = [f"<b>{info.name}</b>", f"{_model_label(info.model)}",
                 f"r={info.config.lora.r}, alpha={info.config.lora.alpha}, lr={t.learning_rate:g}, "
                 f"batch {t.batch_size}×{t.grad_accum}, {t.scheduler} schedule"]
        if info.seconds:
            parts.append(f"{info.seconds:.0f} s on {info.device}" if info.device else f"{info.seconds:.0f} s")
        if info.parent:
            parts.append(f"continues <b>{html.escape(Path(info.parent).name)}</b> from step {info.step_offset}")
        if info.path.parent != (self.runs_dir or runs.default_runs_dir()):  # opened from elsewhere
            parts.append(f"opened from {html.escape(str(info.path.parent))}")
        state = _state_text(info)
        self.detail_label.setText(" · ".join(parts) + (f"<br>{state}" if state else ""))

    # --- actions -------------------------------------------------------------------------------------
    def compare_selected(self, *_: Any) -> None:
        run_dir = self.selected_run()
        if run_dir is not None:
            self.run_selected.emit(str(run_dir))

    def resume_selected(self, *_: Any) -> None:
        """Hand the selected stopped or interrupted run to the Train tab's Resume."""
        info = self._info(self.selected_run())
        if info is not None and info.resumable:
            self.resume_requested.emit(str(info.path))

    def train_more_selected(self, *_: Any) -> None:
        """Hand the selected completed or stopped run to "Train more" (the window asks how much, on what)."""
        info = self._info(self.selected_run())
        if info is not None and self._can_train_more(info):
            self.train_more_requested.emit(str(info.path))

    @staticmethod
    def _can_train_more(info: Any) -> bool:
        from loradesk.core.train_more import cannot_continue

        return info is not None and not cannot_continue(info)

    def open_folder(self) -> None:
        run_dir = self.selected_run()
        if run_dir is not None:
            QDesktopServices.openUrl(QUrl.fromLocalFile(str(run_dir)))

    def export_adapter(self, dest: str | Path | None = None) -> None:
        """Copy the selected run's adapter to ``dest`` (asks for a folder when None), in the background."""
        run_dir = self.selected_run()
        if run_dir is None:
            return
        dest = dest or self._ask_folder("Export adapter to", f"{run_dir.name}-adapter")
        if dest:
            from loradesk.core import runs

            self._run_export(runs.export_adapter, run_dir, Path(dest), "Exporting the adapter…")

    def export_merged(self, dest: str | Path | None = None) -> None:
        """Save base model + adapter folded together to ``dest`` (a standalone transformers model)."""
        run_dir = self.selected_run()
        if run_dir is None:
            return
        dest = dest or self._ask_folder("Export merged model to", f"{run_dir.name}-merged")
        if dest:
            from loradesk.core import runs

            self._run_export(runs.export_merged, run_dir, Path(dest), "Merging and saving the model…")

    def export_gguf(self, dest: str | Path | None = None, quant: str = "f16") -> None:
        """Merge and write the selected run as one GGUF file (asks for the file and weights when ``dest`` is
        None), in the background with progress; Cancel leaves nothing behind."""
        run_dir = self.selected_run()
        if run_dir is None or self.is_busy():
            return
        if dest is None:
            choice = gguf_export.ask(self, run_dir)
            if choice is None:
                return
            dest, quant = choice
        self._run_export(gguf_export.export_job, run_dir, Path(dest), "Merging and writing the GGUF file…", quant,
                         state=True, on_result=lambda r: self._on_exported(r.path, gguf_export.describe(r)))
        self.cancel_button.show()

    def _ask_folder(self, title: str, name: str) -> Path | None:
        """A new folder ``name`` inside the folder the user picks."""
        parent = QFileDialog.getExistingDirectory(self, title)
        return Path(parent) / name if parent else None

    def _run_export(self, fn: Any, run_dir: Path, dest: Path, text: str, *args: Any, state: bool = False,
                    on_result: Any = None) -> None:
        if self.is_busy():
            return
        self.jobs.start(fn, run_dir, dest, *args, key="export", state=state, on_result=on_result or self._on_exported,
                        on_error=self._on_failed, on_progress=self._on_progress, on_cancelled=self._on_cancelled,
                        on_finished=self._on_export_finished)
        self.status_label.setText(text)
        self.busy.show()
        self._update_buttons()
        self.busy_changed.emit(True)

    def is_busy(self) -> bool:
        return self.jobs.busy("export")

    def shutdown(self, timeout_ms: int = 60_000) -> None:
        """Wait for a running export to finish (only a GGUF export stops early: it leaves nothing)."""
        self.jobs.cancel("export")
        for job in self.jobs.running("export"):
            job.wait(timeout_ms)

    def _on_exported(self, path: Any, text: str = "") -> None:
        self.last_export = Path(path)
        self.status_label.setText(text or f"Exported to {path}")

    def _on_progress(self, text: str, fraction: float | None) -> None:
        self.status_label.setText(text)
        show_fraction(self.busy, fraction)

    def _on_cancelled(self) -> None:
        self.status_label.setText("Export cancelled: nothing was written.")

    def _on_failed(self, message: str, details: str) -> None:
        self.status_label.setText(f"Export failed: {message}")
        errors.show_error(self, "Export failed", message, details)

    def _on_export_finished(self) -> None:
        self.busy.hide()
        self.busy.setRange(0, 0)
        self.cancel_button.hide()
        self._update_buttons()
        self.busy_changed.emit(False)

    def _update_buttons(self) -> None:
        from loradesk.core import runs

        info = self._info(self.selected_run())
        has_adapter = info is not None and runs.adapter_source(info.path) is not None
        busy = self.is_busy()
        self.open_button.setEnabled(info is not None)
        self.export_adapter_button.setEnabled(has_adapter and not busy)
        self.export_merged_button.setEnabled(has_adapter and not busy)
        self.export_gguf_button.setEnabled(has_adapter and not busy)
        self.compare_button.setEnabled(has_adapter)
        self.resume_button.setEnabled(info is not None and info.resumable)
        self.train_more_button.setEnabled(self._can_train_more(info))
        self.refresh_button.setEnabled(not busy)
