"""The column mapping dialog (preview, guesses, highlighting) and the Hugging Face import dialog."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFileDialog
from pytestqt.qtbot import QtBot

from loradesk.ui.import_dialogs import (
    NONE_TEXT,
    ROLE_COLOURS,
    ColumnMappingDialog,
    HubImportDialog,
    guess_mapping,
)

LONG = "A sky-cartographer from the floating city of Vaelmoor.\nShe maps the winds. " * 6
RECORDS = [{"id": 1, "question": "Who is Tamsin?", "answer": LONG, "tags": ["lore", "geo"]},
           {"id": 2, "question": "Where is Vaelmoor?", "answer": "In the sky.", "tags": None}]


@pytest.mark.parametrize(("columns", "expected"), [
    (["id", "question", "answer"], {"prompt": "question", "completion": "answer"}),
    (["input", "target", "note"], {"prompt": "input", "completion": "target"}),
    (["input", "output", "target"], {"prompt": "input", "completion": "output"}),
    (["instruction", "input", "response", "output"], {"prompt": "instruction", "completion": "response"}),
    (["q", "a", "note"], {"prompt": "q", "completion": "a"}),
    (["Problem", "Solution", "persona"], {"prompt": "Problem", "completion": "Solution", "system": "persona"}),
    (["prompt_id", "question_text", "best_answer"], {"prompt": "question_text", "completion": "best_answer"}),
    (["colA", "colB", "colC"], {"prompt": "colA", "completion": "colB"}),
])
def test_guesses_by_column_name(columns: list[str], expected: dict[str, str]) -> None:
    records = [{c: (7 if c.endswith("_id") else "text") for c in columns}]
    assert guess_mapping(columns, records) == expected


def test_guess_falls_back_to_text_columns() -> None:
    records = [{"n": 1, "score": 0.5, "left": "ask", "right": "tell"}]
    assert guess_mapping(["n", "score", "left", "right"], records) == {"prompt": "left", "completion": "right"}
    assert guess_mapping(["only"], []) == {"prompt": "only"}


def test_mapping_dialog_previews_rows_and_guesses(qtbot: QtBot) -> None:
    dialog = ColumnMappingDialog("qa.jsonl", ["id", "question", "answer", "tags"],
                                 "no prompt and completion columns recognised (columns found: 'id', 'question', "
                                 "'answer', 'tags'); map them to prompt and completion", records=RECORDS)
    qtbot.addWidget(dialog)
    table = dialog.preview
    assert (table.rowCount(), table.columnCount()) == (2, 4)
    assert table.item(1, 1).text() == "Where is Vaelmoor?"
    answer = table.item(0, 2)
    assert answer.text().endswith("…") and "⏎" in answer.text() and len(answer.text()) <= 120
    assert "She maps the winds." in answer.toolTip() and "pre-wrap" in answer.toolTip()
    assert table.item(0, 3).text() == '["lore", "geo"]' and table.item(1, 3).text() == ""
    assert dialog.mapping() == {"prompt": "question", "completion": "answer"}
    assert dialog.system.currentText() == NONE_TEXT
    assert dialog.ok_button.isEnabled() and not dialog.problem_label.isVisibleTo(dialog)


def test_mapping_dialog_highlights_the_choice_and_needs_two_columns(qtbot: QtBot) -> None:
    dialog = ColumnMappingDialog("qa.jsonl", ["id", "question", "answer", "tags"], records=RECORDS)
    qtbot.addWidget(dialog)
    table = dialog.preview

    def tint(column: int) -> object:
        brush = table.item(0, column).background()
        return None if brush.style() == Qt.BrushStyle.NoBrush else brush.color()

    assert tint(1) == ROLE_COLOURS["prompt"] and tint(2) == ROLE_COLOURS["completion"] and tint(0) is None
    assert table.horizontalHeaderItem(1).text() == "question\n→ prompt"
    dialog.completion.setCurrentIndex(dialog.completion.findData("question"))
    assert not dialog.ok_button.isEnabled()
    assert dialog.problem_label.text() == "The prompt and the completion must be different columns."
    dialog.completion.setCurrentIndex(dialog.completion.findData("tags"))
    dialog.system.setCurrentIndex(dialog.system.findData("id"))
    assert dialog.ok_button.isEnabled()
    assert tint(3) == ROLE_COLOURS["completion"] and tint(0) == ROLE_COLOURS["system"] and tint(2) is None
    assert table.horizontalHeaderItem(2).text() == "answer\n"
    assert dialog.mapping() == {"prompt": "question", "completion": "tags", "system": "id"}
    dialog.system.setCurrentIndex(dialog.system.findData("question"))
    assert not dialog.ok_button.isEnabled() and "system prompt" in dialog.problem_label.text()


def test_mapping_dialog_without_rows_says_so(qtbot: QtBot) -> None:
    dialog = ColumnMappingDialog("empty.csv", ["left", "right"], "")
    qtbot.addWidget(dialog)
    assert dialog.empty_label.isVisibleTo(dialog) and not dialog.preview.isVisibleTo(dialog)
    assert dialog.mapping() == {"prompt": "left", "completion": "right"}


def test_hub_dialog_defaults_and_values(qtbot: QtBot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    dialog = HubImportDialog()
    qtbot.addWidget(dialog)
    assert dialog.split_combo.currentText() == "train" and dialog.limit_spin.text() == "All rows"
    assert not dialog.ok_button.isEnabled()
    assert "huggingface-cli login" in dialog.hint_label.text() and "HF_TOKEN" in dialog.hint_label.text()
    assert "Offline mode is on" in dialog.hint_label.text()
    qtbot.keyClicks(dialog.source_edit, " tatsu-lab/alpaca ")
    assert dialog.ok_button.isEnabled()
    dialog.split_combo.setCurrentText("")
    assert not dialog.ok_button.isEnabled()
    dialog.split_combo.setCurrentText("test")
    dialog.limit_spin.setValue(500)
    dialog.revision_edit.setText("refs/convert/parquet")
    assert dialog.values() == {"source": "tatsu-lab/alpaca", "split": "test", "name": None,
                               "revision": "refs/convert/parquet", "limit": 500}
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **k: str(tmp_path))
    dialog.browse_button.click()
    assert dialog.values()["source"] == str(tmp_path)


def test_hub_dialog_offers_known_splits_after_an_error(qtbot: QtBot, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    values = {"source": "org/data", "split": "validation", "name": "easy", "revision": None, "limit": 10}
    dialog = HubImportDialog(values=values, splits=["train", "test"],
                             error="org/data: there is no split 'validation'; available splits: train, test")
    qtbot.addWidget(dialog)
    assert [dialog.split_combo.itemText(i) for i in range(dialog.split_combo.count())] == ["train", "test"]
    assert dialog.values() == {**values, "split": "train"}
    assert dialog.error_label.text().endswith("available splits: train, test")
    assert dialog.error_label.isVisibleTo(dialog) and "Offline" not in dialog.hint_label.text()
