"""The Find and Replace dialog: live count and preview, Replace All as one undo step, options, big datasets."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QUndoStack
from PySide6.QtWidgets import QStyleOptionViewItem
from pytestqt.qtbot import QtBot

from loradesk.core.dataset import Dataset, Example
from loradesk.core.find_replace import FindSpec, find_matches
from loradesk.core.formats import read_dataset
from loradesk.ui.find_replace import PREVIEW_LIMIT, FindReplaceDialog, PreviewModel
from loradesk.ui.worker_process import ROWS_CHANNEL

ROWS = [
    Example("Who is Tamsin?", "Tamsin is a sky-cartographer from Vaelmoor."),
    Example("Where does she live?", "In Vaelmoor, the floating city."),
    Example("Who are the Tamsins?", "TAMSIN's cousins.", system="You answer questions about tamsin."),
    Example("What is her owl called?", "Bramble."),
]


def make_dialog(qtbot: QtBot, rows: list[Example] | None = None) -> tuple[FindReplaceDialog, Dataset, QUndoStack]:
    dataset = Dataset(dataclasses.replace(r) for r in (ROWS if rows is None else rows))
    stack = QUndoStack()
    dialog = FindReplaceDialog(dataset, stack)
    qtbot.addWidget(dialog, before_close_func=lambda d: d.shutdown())
    dialog.show()
    return dialog, dataset, stack


def find(qtbot: QtBot, dialog: FindReplaceDialog, text: str, replacement: str | None = None) -> None:
    """Type like a user and wait for the debounced search to show its count."""
    if replacement is not None:
        dialog.replace_edit.setText(replacement)
    dialog.find_edit.clear()
    qtbot.keyClicks(dialog.find_edit, text)
    qtbot.waitUntil(lambda: not dialog.is_searching(), timeout=20_000)


def preview(dialog: FindReplaceDialog) -> list[tuple[str, str, str]]:
    model = dialog.model
    return [tuple(model.index(r, c).data() for c in range(3)) for r in range(model.rowCount())]  # type: ignore[misc]


def test_typing_a_name_shows_the_count_and_the_affected_cells(qtbot: QtBot) -> None:
    dialog, _dataset, _stack = make_dialog(qtbot)
    assert dialog.count_label.text() == "Type the text to find"
    assert not dialog.replace_all_button.isEnabled()
    find(qtbot, dialog, "Tamsin", "Mira")
    assert dialog.count_label.text() == "5 matches in 2 rows"
    assert preview(dialog) == [
        ("1", "Prompt", "Who is [Tamsin→Mira]?"),
        ("1", "Completion", "[Tamsin→Mira] is a sky-cartographer from Vaelmoor."),
        ("3", "Prompt", "Who are the [Tamsin→Mira]s?"),
        ("3", "Completion", "[TAMSIN→Mira]'s cousins."),
        ("3", "System", "You answer questions about [tamsin→Mira]."),
    ]
    html = dialog.model.index(0, PreviewModel.CHANGE).data(PreviewModel.HTML_ROLE)
    assert "line-through" in html and ">Tamsin</span>" in html and ">Mira</span>" in html
    assert dialog.replace_all_button.isEnabled()
    assert not dialog.more_label.isVisible()

    find(qtbot, dialog, "Nobody")
    assert dialog.count_label.text() == "No matches"
    assert dialog.model.rowCount() == 0 and not dialog.replace_all_button.isEnabled()
    assert dialog.preview_stack.currentWidget() is dialog.empty_label
    assert dialog.empty_label.text() == "No cell contains “Nobody”."
    dialog.word_box.setChecked(True)
    dialog.field_boxes["system"].setChecked(False)
    qtbot.waitUntil(lambda: "Whole words" in dialog.empty_label.text())
    assert dialog.empty_label.text() == ("No cell contains “Nobody”. Try without Whole words. "
                                         "Only Prompt and Completion are searched.")


def test_replace_all_changes_exactly_those_cells_in_one_undo_step(qtbot: QtBot) -> None:
    dialog, dataset, stack = make_dialog(qtbot)
    original = [dataclasses.replace(r) for r in dataset]
    find(qtbot, dialog, "Tamsin", "Mira")
    qtbot.mouseClick(dialog.replace_all_button, Qt.MouseButton.LeftButton)
    assert stack.count() == 1 and stack.undoText() == "Replace “Tamsin” with “Mira” (5)"
    expected = list(original)
    expected[0] = dataclasses.replace(expected[0], prompt="Who is Mira?",
                                      completion="Mira is a sky-cartographer from Vaelmoor.")
    expected[2] = dataclasses.replace(expected[2], prompt="Who are the Miras?", completion="Mira's cousins.",
                                      system="You answer questions about Mira.")
    assert list(dataset) == expected
    qtbot.waitUntil(lambda: dialog.count_label.text() == "No matches")  # the dialog searched again
    assert "Replaced 5 matches in 2 rows" in dialog.status_label.text()

    stack.undo()
    assert list(dataset) == original
    qtbot.waitUntil(lambda: dialog.count_label.text() == "5 matches in 2 rows")


def test_ctrl_z_in_the_dialog_undoes_the_replacement(qtbot: QtBot) -> None:
    dialog, dataset, stack = make_dialog(qtbot)
    original = [dataclasses.replace(r) for r in dataset]
    find(qtbot, dialog, "Vaelmoor", "Port Ashvale")
    dialog.activateWindow()
    qtbot.waitActive(dialog)
    qtbot.mouseClick(dialog.replace_all_button, Qt.MouseButton.LeftButton)
    assert dataset[1].completion == "In Port Ashvale, the floating city."
    qtbot.keyClick(dialog.replace_all_button, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert list(dataset) == original and stack.index() == 0
    qtbot.keyClick(dialog.replace_all_button, Qt.Key.Key_Z,
                   Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    assert stack.index() == 1 and dataset[1].completion == "In Port Ashvale, the floating city."
    qtbot.keyClick(dialog.find_edit, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)  # the field's own undo
    assert stack.index() == 1


def test_keep_capitalisation_and_removing_text(qtbot: QtBot) -> None:
    dialog, dataset, stack = make_dialog(qtbot)
    dialog.keep_case_box.setChecked(True)
    find(qtbot, dialog, "tamsin", "mira")
    dialog.replace_all()
    assert (dataset[0].completion, dataset[2].completion, dataset[2].system) == \
        ("Mira is a sky-cartographer from Vaelmoor.", "MIRA's cousins.", "You answer questions about mira.")
    stack.undo()
    dialog.keep_case_box.setChecked(False)
    find(qtbot, dialog, " from Vaelmoor", "")
    dialog.replace_all()
    assert stack.undoText() == "Remove “ from Vaelmoor” (1)"
    assert dataset[0].completion == "Tamsin is a sky-cartographer."


def test_a_regex_error_shows_a_message_and_disables_replace_all(qtbot: QtBot) -> None:
    dialog, _dataset, _stack = make_dialog(qtbot)
    find(qtbot, dialog, "Tamsin", "Mira")
    assert dialog.replace_all_button.isEnabled()
    dialog.regex_box.setChecked(True)
    find(qtbot, dialog, "Tams(in", "Mira")
    assert dialog.count_label.text() == "Invalid pattern at position 5: missing ), unterminated subpattern"
    assert "d64545" in dialog.count_label.styleSheet()
    assert not dialog.replace_all_button.isEnabled() and dialog.model.rowCount() == 0
    dialog.replace_all()  # nothing happens
    assert dialog.undo_stack.count() == 0

    find(qtbot, dialog, r"(\w+) is a ([\w-]+)", r"\1, a \2,")
    assert dialog.count_label.text() == "1 match in 1 row"
    assert dialog.count_label.styleSheet() == ""
    dialog.replace_all()
    assert dialog.dataset[0].completion == "Tamsin, a sky-cartographer, from Vaelmoor."


def test_whole_words_and_match_case_change_the_count(qtbot: QtBot) -> None:
    dialog, _dataset, _stack = make_dialog(qtbot)
    find(qtbot, dialog, "Tamsin", "Mira")
    assert dialog.count_label.text() == "5 matches in 2 rows"
    dialog.word_box.setChecked(True)  # "Tamsins" no longer counts, "TAMSIN's" does
    qtbot.waitUntil(lambda: dialog.count_label.text() == "4 matches in 2 rows")
    dialog.case_box.setChecked(True)  # only "Tamsin" itself
    qtbot.waitUntil(lambda: dialog.count_label.text() == "2 matches in 1 row")
    dialog.field_boxes["prompt"].setChecked(False)
    qtbot.waitUntil(lambda: dialog.count_label.text() == "1 match in 1 row")
    for box in dialog.field_boxes.values():
        box.setChecked(False)
    qtbot.waitUntil(lambda: "Tick at least one" in dialog.count_label.text())
    assert not dialog.replace_all_button.isEnabled()


def test_replacing_with_the_same_text_offers_nothing_to_replace(qtbot: QtBot) -> None:
    dialog, _dataset, _stack = make_dialog(qtbot)
    dialog.case_box.setChecked(True)
    find(qtbot, dialog, "Vaelmoor", "Vaelmoor")
    assert dialog.count_label.text() == "2 matches in 2 rows · the replacement changes nothing"
    assert not dialog.replace_all_button.isEnabled()


def test_the_dialog_follows_dataset_edits_while_open(qtbot: QtBot) -> None:
    dialog, dataset, stack = make_dialog(qtbot)
    find(qtbot, dialog, "Vaelmoor", "Port Ashvale")
    assert dialog.count_label.text() == "2 matches in 2 rows"
    dataset.append(Example("Where is Vaelmoor?", "Above the clouds."))
    assert not dialog.replace_all_button.isEnabled()  # the shown result is out of date until searched again
    qtbot.waitUntil(lambda: dialog.count_label.text() == "3 matches in 3 rows")
    assert preview(dialog)[-1][:2] == ("5", "Prompt")
    dataset.remove(0, 2)
    qtbot.waitUntil(lambda: dialog.count_label.text() == "1 match in 1 row")
    assert preview(dialog)[0][0] == "3"  # row numbers follow the removal
    dialog.replace_all()
    assert dataset[2].prompt == "Where is Port Ashvale?"
    stack.undo()
    assert dataset[2].prompt == "Where is Vaelmoor?"


def test_a_closed_dialog_stops_listening_and_catches_up_when_shown_again(qtbot: QtBot) -> None:
    dialog, dataset, _stack = make_dialog(qtbot)
    find(qtbot, dialog, "Bramble")
    assert dialog.count_label.text() == "1 match in 1 row"
    dialog.close()
    dataset.append(Example("Is Bramble an owl?", "Bramble is an owl."))
    assert not dialog.is_searching()
    dialog.show()
    qtbot.waitUntil(lambda: dialog.count_label.text() == "3 matches in 2 rows")


def test_a_deleted_dialog_leaves_the_dataset_alone(qtbot: QtBot) -> None:
    dataset = Dataset([Example("Tamsin?", "Yes.")])
    dialog = FindReplaceDialog(dataset, QUndoStack())
    dialog.show()
    dialog.find_edit.setText("Tamsin")
    dialog.search_now()
    gone: list[bool] = []
    dialog.destroyed.connect(lambda: gone.append(True))
    dialog.deleteLater()
    qtbot.waitUntil(lambda: bool(gone))
    dataset.append(Example("Tamsin again?", "Yes."))  # would call into a deleted dialog if still subscribed


def test_double_click_asks_to_show_the_row(qtbot: QtBot) -> None:
    dialog, _dataset, _stack = make_dialog(qtbot)
    find(qtbot, dialog, "Vaelmoor")
    view = dialog.preview
    rect = view.visualRect(dialog.model.index(1, PreviewModel.CHANGE))
    with qtbot.waitSignal(dialog.show_row, timeout=2000) as signal:
        qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
        qtbot.mouseDClick(view.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert signal.args == [1]  # the 0-based dataset row of the second preview cell (table row 2)


def test_replace_selected_changes_only_the_chosen_cells(qtbot: QtBot) -> None:
    dialog, dataset, stack = make_dialog(qtbot)
    find(qtbot, dialog, "Tamsin", "Mira")
    assert not dialog.replace_button.isEnabled()
    dialog.preview.selectRow(1)
    assert dialog.replace_button.isEnabled()
    qtbot.mouseClick(dialog.replace_button, Qt.MouseButton.LeftButton)
    assert stack.undoText() == "Replace “Tamsin” with “Mira” in row 1 (1)"
    assert dataset[0].completion.startswith("Mira is") and dataset[0].prompt == "Who is Tamsin?"
    qtbot.waitUntil(lambda: dialog.count_label.text() == "4 matches in 2 rows")


def test_sample_data_replace_everywhere_and_undo(qtbot: QtBot, sample_path: Path) -> None:
    rows = read_dataset(sample_path)
    dialog, dataset, stack = make_dialog(qtbot, rows)
    dialog.case_box.setChecked(True)
    dialog.word_box.setChecked(True)
    find(qtbot, dialog, "Tamsin", "Mira")
    expected = find_matches(rows, FindSpec("Tamsin", "Mira", case_sensitive=True, whole_word=True))
    assert dialog.count_label.text() == f"{expected.matches} matches in {len(expected.rows)} rows"
    dialog.replace_all()
    assert not any("Tamsin" in r.prompt + r.completion + r.system for r in dataset)
    stack.undo()
    assert list(dataset) == rows


def test_a_100k_row_search_runs_on_a_worker_and_replaces_in_one_step(qtbot: QtBot) -> None:
    rows = [Example(f"Question {i} about Tamsin?", "Tamsin knows." if i % 2 else "No idea.")
            for i in range(100_000)]
    dialog, dataset, stack = make_dialog(qtbot, rows)
    dialog.replace_edit.setText("Mira")
    dialog.find_edit.setText("Tamsin")
    with qtbot.waitSignal(dialog.searched, timeout=30_000) as signal:
        dialog.search_now()
        # the GUI thread is back before the search has finished: it runs on a worker
        assert dialog.count_label.text().startswith("Searching")
        assert dialog.is_searching() and not dialog.replace_all_button.isEnabled()
    assert signal.args == [150_000, 100_000]
    assert dialog.count_label.text() == "150,000 matches in 100,000 rows"
    assert dialog.model.rowCount() == PREVIEW_LIMIT
    assert dialog.more_label.text() == "and 149,500 more cells (Replace All changes them too)"
    dialog.replace_all()
    assert stack.count() == 1
    assert dataset[99_999].prompt == "Question 99999 about Mira?" and dataset[99_999].completion == "Mira knows."
    qtbot.waitUntil(lambda: dialog.count_label.text() == "No matches", timeout=30_000)
    stack.undo()
    assert dataset[99_999].completion == "Tamsin knows."


def test_a_newer_search_wins_over_one_still_running(qtbot: QtBot) -> None:
    rows = [Example(f"Tamsin {i}", "Vaelmoor" if i % 4 == 0 else "x") for i in range(60_000)]
    dialog, _dataset, _stack = make_dialog(qtbot, rows)
    counts: list[tuple[int, int]] = []
    dialog.searched.connect(lambda matches, found: counts.append((matches, found)))
    dialog.find_edit.setText("Tamsin")
    dialog.search_now()
    first = dialog._jobs.running(dialog.JOB)
    dialog.find_edit.setText("Vaelmoor")  # while the first search runs
    dialog.search_now()
    qtbot.waitUntil(lambda: not dialog.is_searching() and not first[0].is_running(), timeout=30_000)
    qtbot.wait(50)  # anything the first search still delivered has arrived by now
    assert dialog.count_label.text() == "15,000 matches in 15,000 rows"
    assert counts == [(15_000, 15_000)]  # the older search's 60,000 matches never reached the dialog
    assert first[0].superseded


def test_a_search_in_the_worker_process_sends_only_the_changed_rows_again(qtbot: QtBot) -> None:
    from loradesk.ui import jobs

    rows = [Example(f"Question {i} about Tamsin?", "Tamsin knows.") for i in range(12_000)]
    dialog, dataset, _stack = make_dialog(qtbot, rows)
    with qtbot.waitSignal(dialog.searched, timeout=60_000):
        dialog.find_edit.setText("Tamsin")
        dialog.search_now()
    assert dialog.count_label.text() == "24,000 matches in 12,000 rows"

    def versions() -> dict[int, int]:
        # this dialog's chunks (other tests sent more rows, or smaller chunks, on the same channel)
        return {start: version for (channel, start), (_, version, _) in jobs._SENT.items()
                if channel == ROWS_CHANNEL and start < len(rows) and start % jobs.UPLOAD_CHUNK == 0}

    before = versions()
    dataset.set_fields([(11_999, "completion", "Nobody knows.")])
    with qtbot.waitSignal(dialog.searched, timeout=60_000):
        dialog.search_now()
    assert dialog.count_label.text() == "23,999 matches in 12,000 rows"  # the process saw the edit
    after = versions()
    assert sorted(before) == sorted(after) == [0, jobs.UPLOAD_CHUNK, 2 * jobs.UPLOAD_CHUNK]
    # only the chunk holding the edited row went to the process again
    assert [start for start in after if after[start] != before[start]] == [2 * jobs.UPLOAD_CHUNK]


def test_preview_rows_are_tall_enough_for_their_rich_text(qtbot: QtBot) -> None:
    long = " ".join(["Tamsin maps the sky currents over Vaelmoor with Bramble."] * 4)
    dialog, _dataset, _stack = make_dialog(qtbot, [Example("Who is Tamsin?", long), Example("x", "Tamsin.\nLine two.")])
    find(qtbot, dialog, "Tamsin", "Mira Stone")
    view, delegate = dialog.preview, dialog._delegate
    width = view.columnWidth(PreviewModel.CHANGE)
    option = QStyleOptionViewItem()
    option.font = view.font()
    for row in range(dialog.model.rowCount()):
        doc = delegate._document(option, dialog.model.index(row, PreviewModel.CHANGE), width)
        assert view.rowHeight(row) >= doc.size().height()  # the painted document fits: nothing is cut off
    assert view.rowHeight(1) > view.rowHeight(0) > 0  # the long completion wraps to more lines than the prompt
    tall = view.rowHeight(1)
    dialog.resize(dialog.width() - 200, dialog.height())  # a narrower Before → After column wraps to more lines
    qtbot.waitUntil(lambda: view.rowHeight(1) > tall)
