"""The dataset table model and tab: model tester, undoable edits, filtering, validation marks."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from PySide6.QtCore import QEvent, Qt
from PySide6.QtGui import QUndoStack
from PySide6.QtTest import QAbstractItemModelTester
from PySide6.QtWidgets import QApplication, QPlainTextEdit
from pytestqt.qtbot import QtBot

from loradesk.core.dataset import Dataset, Example
from loradesk.core.project import Project
from loradesk.ui.dataset_model import (
    COMPLETION,
    PROMPT,
    STATUS,
    TOKENS,
    DatasetFilterProxy,
    DatasetTableModel,
    token_key,
)
from loradesk.ui.dataset_tab import DatasetTab

ROWS = [Example("Who is Tamsin?", "A sky-cartographer."), Example("Where does she live?", "In Vaelmoor."),
        Example("What is her owl called?", "Bramble."), Example("Who made the map?", "Tamsin did.")]


def copies(rows: list[Example]) -> list[Example]:
    return [dataclasses.replace(r) for r in rows]


def make_model(rows: list[Example] | None = None) -> tuple[Dataset, DatasetTableModel, QUndoStack]:
    dataset = Dataset(copies(ROWS if rows is None else rows))
    stack = QUndoStack()
    return dataset, DatasetTableModel(dataset, stack), stack


def texts(model: DatasetTableModel, column: int = PROMPT) -> list[str]:
    return [model.index(r, column).data() for r in range(model.rowCount())]


def test_model_passes_the_qt_model_tester_through_every_kind_of_change(qtmodeltester) -> None:
    dataset, model, stack = make_model()
    proxy = DatasetFilterProxy()
    proxy.setSourceModel(model)
    qtmodeltester.check(model)  # pytest-qt keeps one tester: the proxy gets its own
    proxy_tester = QAbstractItemModelTester(proxy, QAbstractItemModelTester.FailureReportingMode.Warning)
    # changes made straight on the core dataset (the source of truth) ...
    dataset.insert(1, [Example("New?", "Yes."), Example("Newer?", "Also.")])
    dataset.remove(0, 2)
    dataset.set_field(0, "completion", "Changed.")
    dataset.append(Example("Last?", "Last."))
    dataset.reset([Example("Only?", "Only.")])
    dataset.remove(0)
    assert model.rowCount() == 0
    # ... and through the undo stack
    model.insert_examples(0, ROWS)
    model.remove_examples([0, 2])
    proxy.set_filter_text("tamsin")
    stack.undo()
    stack.undo()
    assert texts(model) == []
    stack.redo()
    assert texts(model) == [r.prompt for r in ROWS]
    del proxy_tester


def test_model_shows_rows_and_headers() -> None:
    _, model, _ = make_model()
    assert model.rowCount() == 4 and model.columnCount() == 5
    assert [model.headerData(c, Qt.Orientation.Horizontal) for c in range(5)] == \
        ["Prompt", "Completion", "Split", "Tokens", "Status"]
    assert model.index(1, COMPLETION).data() == "In Vaelmoor."
    assert model.index(0, TOKENS).data() is None  # unknown until counted
    assert texts(model, STATUS) == ["OK"] * 4
    assert model.flags(model.index(0, PROMPT)) & Qt.ItemFlag.ItemIsEditable
    assert not model.flags(model.index(0, STATUS)) & Qt.ItemFlag.ItemIsEditable


def test_edit_changes_core_dataset_and_undo_restores_it() -> None:
    dataset, model, stack = make_model()
    assert model.setData(model.index(2, COMPLETION), "Bramble, a snowy owl.")
    assert dataset[2].completion == "Bramble, a snowy owl."
    assert stack.count() == 1 and stack.undoText() == "Edit completion of row 3"
    stack.undo()
    assert dataset[2].completion == "Bramble."
    assert model.index(2, COMPLETION).data() == "Bramble."
    stack.redo()
    assert model.index(2, COMPLETION).data() == "Bramble, a snowy owl."
    assert model.setData(model.index(2, COMPLETION), "Bramble, a snowy owl.")  # unchanged: no new step
    assert stack.count() == 1


def test_invalid_rows_are_marked_with_reason() -> None:
    _, model, _ = make_model([Example("Q?", "A."), Example("", "No prompt."), Example("Q?", "A.")])
    assert texts(model, STATUS) == ["OK", "Empty", "Duplicate"]
    assert model.index(1, STATUS).data(Qt.ItemDataRole.ToolTipRole) == "row 2: prompt is empty"
    assert "same prompt and completion as row 1" in model.index(2, STATUS).data(Qt.ItemDataRole.ToolTipRole)
    assert model.index(1, PROMPT).data(Qt.ItemDataRole.BackgroundRole) is not None
    assert model.index(1, STATUS).data(Qt.ItemDataRole.DecorationRole) is not None
    assert model.problem_row_count() == 2
    model.setData(model.index(2, COMPLETION), "Another answer.")
    model.setData(model.index(1, PROMPT), "Has a prompt now?")
    assert texts(model, STATUS) == ["OK", "OK", "OK"] and model.problem_row_count() == 0

    repainted: list[tuple[int, int]] = []
    model.dataChanged.connect(lambda top, bottom, *_: repainted.extend(
        (r, bottom.column()) for r in range(top.row(), bottom.row() + 1)))
    model.setData(model.index(0, COMPLETION), "Another answer.")
    model.setData(model.index(0, PROMPT), "Q?")  # now row 3 repeats row 1: row 3's status must repaint
    assert texts(model, STATUS) == ["OK", "OK", "Duplicate"]
    assert (2, STATUS) in repainted


def test_token_counts_and_too_long_rows() -> None:
    dataset, model, _ = make_model()
    model.set_token_counts({token_key(dataset[0]): 12, token_key(dataset[1]): 300})
    model.set_max_length(256)
    assert model.index(0, TOKENS).data() == "12" and model.index(2, TOKENS).data() is None
    assert model.index(1, STATUS).data() == "Too long"
    assert "44 cut" in model.index(1, STATUS).data(Qt.ItemDataRole.ToolTipRole)
    assert len(model.rows_without_token_count()) == 2
    model.set_max_length(512)
    assert model.index(1, STATUS).data() == "OK"
    model.setData(model.index(0, PROMPT), "Who is Tamsin Quillfeather?")
    assert model.index(0, TOKENS).data() is None  # the text changed: count unknown again


def test_filter_shows_only_matching_rows() -> None:
    _, model, _ = make_model()
    proxy = DatasetFilterProxy()
    proxy.setSourceModel(model)
    proxy.set_filter_text("TAMSIN")  # prompt or completion, any case
    assert [proxy.index(r, PROMPT).data() for r in range(proxy.rowCount())] == \
        ["Who is Tamsin?", "Who made the map?"]
    proxy.set_filter_text("vaelmoor")
    assert proxy.rowCount() == 1
    proxy.set_filter_text("")
    assert proxy.rowCount() == 4
    model.setData(model.index(3, COMPLETION), "")
    proxy.set_problems_only(True)
    assert [proxy.index(r, PROMPT).data() for r in range(proxy.rowCount())] == ["Who made the map?"]


def make_tab(qtbot: QtBot, rows: list[Example] | None = None) -> DatasetTab:
    project = Project(Dataset(copies(ROWS if rows is None else rows)))
    tab = DatasetTab(project, QUndoStack())
    qtbot.addWidget(tab)
    tab.resize(900, 500)
    with qtbot.waitActive(tab):
        tab.show()
        tab.activateWindow()
    return tab


def select_rows(tab: DatasetTab, rows: list[int]) -> None:
    tab.view.clearSelection()
    selection = tab.view.selectionModel()
    for row in rows:
        index = tab.proxy.mapFromSource(tab.model.index(row, PROMPT))
        selection.select(index, selection.SelectionFlag.Select | selection.SelectionFlag.Rows)


def test_add_duplicate_delete_with_undo(qtbot: QtBot) -> None:
    tab = make_tab(qtbot)
    dataset, stack = tab.project.dataset, tab.undo_stack

    select_rows(tab, [1])
    tab.view.setCurrentIndex(tab.proxy.mapFromSource(tab.model.index(1, PROMPT)))
    tab.add_row()
    assert len(dataset) == 5 and dataset[2] == Example("", "")
    assert isinstance(QApplication.focusWidget(), QPlainTextEdit)  # editing the new prompt right away
    editor = QApplication.focusWidget()
    qtbot.keyClicks(editor, "Who carries the compass?")
    qtbot.keyClick(editor, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    assert dataset[2].prompt == "Who carries the compass?"

    select_rows(tab, [0, 3])
    tab.duplicate_rows()
    assert [r.prompt for r in dataset] == ["Who is Tamsin?", "Who is Tamsin?", "Where does she live?",
                                           "Who carries the compass?", "What is her owl called?",
                                           "What is her owl called?", "Who made the map?"]
    select_rows(tab, [0, 2, 6])
    tab.delete_rows()
    assert [r.prompt for r in dataset] == ["Who is Tamsin?", "Who carries the compass?",
                                           "What is her owl called?", "What is her owl called?"]
    stack.undo()  # delete
    stack.undo()  # duplicate
    stack.undo()  # edit
    stack.undo()  # add
    assert list(dataset) == ROWS
    assert tab.model.rowCount() == 4


def test_edit_through_the_view_and_filter_box(qtbot: QtBot) -> None:
    tab = make_tab(qtbot)
    index = tab.proxy.mapFromSource(tab.model.index(0, COMPLETION))
    tab.view.setCurrentIndex(index)
    tab.view.edit(index)
    editor = QApplication.focusWidget()
    assert isinstance(editor, QPlainTextEdit) and editor.toPlainText() == "A sky-cartographer."
    editor.selectAll()
    qtbot.keyClicks(editor, "A cartographer")
    qtbot.keyClick(editor, Qt.Key.Key_Return)  # a plain Enter is a new line
    qtbot.keyClicks(editor, "of the sky.")
    tab.view.setFocus()  # leaving the editor commits
    assert tab.project.dataset[0].completion == "A cartographer\nof the sky."
    tab.undo_stack.undo()
    assert tab.project.dataset[0].completion == "A sky-cartographer."

    tab.focus_filter()
    qtbot.keyClicks(tab.filter_edit, "owl")
    qtbot.waitUntil(lambda: tab.proxy.rowCount() == 1)
    assert tab.proxy.index(0, PROMPT).data() == "What is her owl called?"
    qtbot.waitUntil(lambda: "1 of 4 rows" in tab.summary_label.text())


def test_tab_reports_problems(qtbot: QtBot) -> None:
    tab = make_tab(qtbot, [Example("Q?", ""), Example("Q2?", "A.")])
    seen: list[tuple[int, int]] = []
    tab.stats_changed.connect(lambda rows, problems: seen.append((rows, problems)))
    assert "1 row with problems" in tab.summary_label.text()
    tab.model.setData(tab.model.index(0, COMPLETION), "Now answered.")
    qtbot.waitUntil(lambda: bool(seen))  # the footer is updated once the event loop runs again
    assert seen[-1] == (2, 0)
    assert "problems" not in tab.summary_label.text()


def test_model_follows_reset_and_unsubscribes_when_deleted() -> None:
    dataset, model, _ = make_model()
    dataset.reset(ROWS[:2])
    assert model.rowCount() == 2
    model.deleteLater()
    QApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    dataset.append(Example("After?", "Still fine."))  # would raise if a deleted model still listened
    assert len(dataset) == 3


def test_count_tokens_with_the_model_tokenizer(qtbot: QtBot, tiny_model_dir: Path) -> None:
    tab = make_tab(qtbot)
    config = tab.project.config
    config.model.kind = "local"
    config.model.name = str(tiny_model_dir)
    config.training.max_length = 26
    tab.project.config_changed()
    tab.count_button.click()
    qtbot.waitUntil(lambda: tab.model.index(3, TOKENS).data() is not None, timeout=60_000)
    from loradesk.core import models, tokenize

    tokenizer = models.load_tokenizer(tiny_model_dir)
    counts = [tokenize.token_count(tokenizer, row) for row in tab.project.dataset]
    assert [tab.model.token_count(row) for row in tab.project.dataset] == counts
    too_long = [r for r in range(4) if counts[r] > 26]
    assert 0 < len(too_long) < 4, counts
    assert [tab.model.index(r, TOKENS).data() for r in range(4)] == \
        [f"{n} (−{n - 26})" if n > 26 else str(n) for n in counts]  # over-long rows say what they lose
    assert [tab.model.index(r, STATUS).data() == "Too long" for r in range(4)] == \
        [r in too_long for r in range(4)]
    assert tab.token_label.text()

    tab.model.setData(tab.model.index(0, PROMPT), "A new question that was never counted?")
    assert tab.model.index(0, TOKENS).data() is None
    qtbot.waitUntil(lambda: tab.model.index(0, TOKENS).data() is not None, timeout=30_000)  # recounted

    config.training.use_chat_template = False  # another text layout: the counts are stale
    tab.project.config_changed()
    assert tab.model.index(1, TOKENS).data() is None


def test_deleting_a_scattered_selection_and_undo(qtmodeltester) -> None:
    rows = [Example(f"Question {i}?", f"Answer {i}.") for i in range(200)]
    dataset, model, stack = make_model(rows)
    qtmodeltester.check(model)
    model.remove_examples(list(range(0, 200, 2)))  # 100 separate blocks
    assert [r.prompt for r in dataset] == [f"Question {i}?" for i in range(1, 200, 2)]
    assert model.rowCount() == 100
    stack.undo()
    assert list(dataset) == rows and model.rowCount() == 200
    model.remove_examples([3, 4, 9])  # a few blocks go one by one
    assert len(dataset) == 197 and dataset[3].prompt == "Question 5?"
    stack.undo()
    assert list(dataset) == rows


def test_filter_narrows_and_remembers_but_always_agrees_with_a_full_search() -> None:
    import random

    rng = random.Random(3)
    words = ["lantern", "Harbour", "lane", "LAMP", "harp", "an", "", "Lantern-keeper"]

    def row() -> Example:
        return Example(" ".join(rng.choices(words, k=3)), " ".join(rng.choices(words, k=2)))

    dataset, model, _ = make_model([row() for _ in range(60)])
    proxy = DatasetFilterProxy()
    proxy.setSourceModel(model)
    typed, target = "", "lantern"
    for step in range(400):
        roll = rng.random()
        if roll < 0.45:  # typing a word narrows ...
            if len(typed) == len(target):
                typed, target = "", rng.choice([w for w in words if w]).casefold()
            typed += target[len(typed)]
        elif roll < 0.7:
            typed = typed[:-1]  # ... erasing finds the shorter filter's rows again
        elif roll < 0.9:
            dataset.set_field(rng.randrange(len(dataset)), rng.choice(["prompt", "completion"]), row().prompt)
        elif roll < 0.95:
            dataset.insert(rng.randrange(len(dataset) + 1), [row() for _ in range(rng.randint(1, 3))])
        else:
            dataset.remove(rng.randrange(len(dataset)), rng.randint(1, 2))
        proxy.set_filter_text("")  # a fresh filter (edited rows that stopped matching would stay shown)
        proxy.set_filter_text(typed)
        needle = typed.strip().casefold()
        expected = [i for i, r in enumerate(dataset) if needle in f"{r.prompt}\0{r.completion}".casefold()]
        shown = [proxy.mapToSource(proxy.index(r, 0)).row() for r in range(proxy.rowCount())]
        assert shown == expected, (step, typed)
        assert [proxy.index(r, PROMPT).data() for r in range(proxy.rowCount())] == \
            [dataset[i].prompt for i in expected]


def test_a_cell_answers_every_role_at_once_as_it_does_one_by_one() -> None:
    from PySide6.QtCore import QModelRoleData
    from PySide6.QtGui import QIcon

    dataset, model, _ = make_model([*ROWS, Example("Who is Tamsin?", "A sky-cartographer."), Example("", "Why?")])
    dataset.set_field(1, "split", "validation")
    model.set_max_length(3)
    model.set_token_counts({token_key(r): 2 + i for i, r in enumerate(dataset)})
    proxy = DatasetFilterProxy()
    proxy.setSourceModel(model)
    proxy.set_filter_text("?")  # every row but one, shown through the proxy's own row list

    def same(a: object, b: object) -> bool:
        return a.cacheKey() == b.cacheKey() if isinstance(a, QIcon) and isinstance(b, QIcon) else a == b

    roles = [Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.EditRole, Qt.ItemDataRole.ToolTipRole,
             Qt.ItemDataRole.FontRole, Qt.ItemDataRole.ForegroundRole, Qt.ItemDataRole.BackgroundRole,
             Qt.ItemDataRole.DecorationRole, Qt.ItemDataRole.TextAlignmentRole, Qt.ItemDataRole.UserRole]
    answered = 0
    for table in (model, proxy):
        for row in range(table.rowCount()):
            for column in range(table.columnCount()):
                index = table.index(row, column)
                for role in roles:
                    asked = QModelRoleData(role)
                    index.multiData(asked)
                    assert same(asked.data(), index.data(role)), (row, column, role)
                    answered += asked.data() is not None
    assert answered > 100  # texts, splits, counts, statuses, icons, fonts and colours were all compared
