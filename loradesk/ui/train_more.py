"""Train more (Runs tab button and Run menu): ask how many more epochs and on which rows, then start the new run
on the Train tab through its usual training job. The work itself is :mod:`loradesk.core.train_more`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtWidgets import (
    QButtonGroup,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QLabel,
    QRadioButton,
    QVBoxLayout,
    QWidget,
)

from loradesk.core.wording import plural
from loradesk.ui import errors

if TYPE_CHECKING:
    from loradesk.ui.main_window import MainWindow


@dataclass(frozen=True)
class TrainMoreChoice:
    """What the user chose: how many more epochs, and whether on the run's own rows or the current dataset."""

    epochs: float
    own_rows: bool


class TrainMoreDialog(QDialog):
    """Epochs (default: the run's own) and the rows: the run's own or the current dataset's."""

    def __init__(self, info: Any, own_rows: int, current_rows: int, parent: QWidget | None = None) -> None:
        from loradesk.core.train_more import last_step

        super().__init__(parent)
        self.setWindowTitle("Train more")
        intro = QLabel(f"Continue <b>{info.name}</b> from its adapter (step {last_step(info)}) with its settings, "
                       "as a new run. The run itself stays as it is.")
        intro.setWordWrap(True)
        self.epochs = QDoubleSpinBox()
        self.epochs.setRange(0.1, 1000.0)
        self.epochs.setDecimals(1)
        self.epochs.setSingleStep(1.0)
        self.epochs.setValue(info.config.training.epochs)
        self.epochs.setSuffix(" more epochs")
        rows = f"{plural(own_rows, 'row')}, " if own_rows else ""  # an older run file may not say
        self.own = QRadioButton(f"Its own data ({rows}as it trained on them)")
        self.current = QRadioButton(f"The current dataset ({plural(current_rows, 'row')})")
        self.current.setEnabled(current_rows > 0)
        self.own.setChecked(True)
        group = QButtonGroup(self)
        group.addButton(self.own)
        group.addButton(self.current)
        form = QFormLayout()
        form.addRow("Train for", self.epochs)
        form.addRow("On", self.own)
        form.addRow("", self.current)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Train more")
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addLayout(form)
        layout.addWidget(self.buttons)

    def choice(self) -> TrainMoreChoice:
        return TrainMoreChoice(self.epochs.value(), self.own.isChecked())


def _trained_rows(run_dir: Path) -> int:
    """How many rows the run trained and validated on, from its run file."""
    from loradesk.core import runs

    result = runs.read_run_file(run_dir).get("result", {})
    return int(result.get("train_rows") or 0) + int(result.get("eval_rows") or 0)


def start(window: MainWindow, run_dir: str | Path = "") -> None:
    """Ask how to train ``run_dir`` more (default: the run selected on the Runs tab, else the newest), then
    start it on the Train tab; a run that cannot be continued gets one line saying why."""
    from loradesk.core import runs, train_more

    tab = window.training_tab
    if tab.is_running():
        return
    path = Path(run_dir) if run_dir else window.runs_tab.selected_run()
    if path is None:
        listed = runs.list_runs(tab.runs_dir)
        path = listed[0].path if listed else None
    if path is None:
        errors.show_error(window, "Nothing to train more", "There is no run yet: train one first.")
        return
    try:
        info = runs.read_run(path)
    except (OSError, ValueError, runs.RunError) as exc:
        errors.show_error(window, "Cannot train this run more", str(exc))
        return
    if reason := train_more.cannot_continue(info):
        errors.show_error(window, "Cannot train this run more", reason)
        return
    dialog = TrainMoreDialog(info, _trained_rows(path), len(window.project.dataset), window)
    if dialog.exec() != QDialog.DialogCode.Accepted:
        return
    choice = dialog.choice()
    window.tabs.setCurrentWidget(tab)
    tab.train_more(path, choice.epochs, None if choice.own_rows else window.project.dataset.copy())
