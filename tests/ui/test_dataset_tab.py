"""The Dataset tab's side panel and split column, wired to real parts: the tiny model's tokenizer, the core
dataset, the undo stack. (The panel widgets themselves are tested in test_token_view / test_checks_panel.)"""

from __future__ import annotations

import random
import threading
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QFont, QUndoStack
from PySide6.QtWidgets import QApplication
from pytestqt.qtbot import QtBot

from loradesk.core.dataset import Dataset, Example, ProblemIndex, split_rows
from loradesk.core.project import Project
from loradesk.ui.dataset_model import PROMPT, SPLIT, TOKENS
from loradesk.ui.dataset_tab import DatasetTab

ROWS = [Example("Who is Tamsin?", "A sky-cartographer."), Example("Where does she live?", "In Vaelmoor."),
        Example("What is her owl called?", "Bramble."), Example("Who made the map?", "Tamsin did."),
        Example("What does she carry?", "A brass storm compass and a book of wind charts.")]


def make_tab(qtbot: QtBot, rows: list[Example] | None = None, model_dir: Path | None = None) -> DatasetTab:
    project = Project(Dataset(list(ROWS if rows is None else rows)))
    if model_dir is not None:
        config = project.config
        config.model.kind = "local"
        config.model.name = str(model_dir)
        project.config = config
    tab = DatasetTab(project, QUndoStack())
    qtbot.addWidget(tab)
    tab.resize(1000, 700)
    tab.show()
    return tab


def set_training(tab: DatasetTab, **values: object) -> None:
    config = tab.project.config
    for name, value in values.items():
        setattr(config.training, name, value)
    tab.project.config = config


def test_split_column_shows_the_draw_and_pinned_rows(qtbot: QtBot) -> None:
    rows = [Example(f"Question number {i}?", f"Answer {i}.") for i in range(60)]
    tab = make_tab(qtbot, rows)
    model = tab.model
    shown = [model.index(r, SPLIT).data() for r in range(60)]
    assert shown == ["Train"] * 60  # no validation share yet
    set_training(tab, validation_fraction=0.25, seed=3)
    _, validation = split_rows(tab.project.dataset, 0.25, 3)
    shown = [model.index(r, SPLIT).data() for r in range(60)]
    assert [rows[r] for r in range(60) if shown[r] == "Validation"] == validation and 0 < len(validation) < 60

    tab.select_source_rows([0, 1, 2])
    tab.mark_split("validation")
    assert [tab.project.dataset[r].split for r in range(3)] == ["validation"] * 3
    assert tab.undo_stack.undoText() == "Mark 3 rows as validation"
    assert model.index(0, SPLIT).data() == "Validation"
    assert model.index(0, SPLIT).data(Qt.ItemDataRole.FontRole).bold()  # pinned rows are bold
    assert isinstance(model.index(0, SPLIT).data(Qt.ItemDataRole.FontRole), QFont)
    tab.undo_stack.undo()
    assert [tab.project.dataset[r].split for r in range(3)] == ["auto"] * 3

    assert model.setData(model.index(5, SPLIT), "train")  # the Split cell's list editor
    assert tab.project.dataset[5].split == "train" and tab.undo_stack.undoText() == "Edit split of row 6"
    assert not model.setData(model.index(5, SPLIT), "test")


def test_preview_follows_the_current_row_and_the_settings(qtbot: QtBot, tiny_model_dir: Path) -> None:
    from loradesk.core import models, tokenize

    tab = make_tab(qtbot, model_dir=tiny_model_dir)
    assert "Count tokens" in tab.token_preview.header_text() or tab.token_preview.explained() is None
    tab.count_tokens()
    qtbot.waitUntil(lambda: tab.model.has_token_counts() and not tab.token_counter.busy(), timeout=60_000)
    tab.select_source_rows([4])
    qtbot.waitUntil(lambda: tab.token_preview.header_text().startswith("Row 5"), timeout=30_000)
    tokenizer = models.load_tokenizer(tiny_model_dir)
    encoded = tokenize.encode(tokenizer, ROWS[4], 256)
    explained = tab.token_preview.explained()
    assert explained is not None and explained.trained_tokens == encoded.trained_tokens and explained.cut == 0

    set_training(tab, max_length=20)  # the same row, now cut
    qtbot.waitUntil(lambda: getattr(tab.token_preview.explained(), "max_length", None) == 20, timeout=30_000)
    explained = tab.token_preview.explained()
    assert explained.cut == tokenize.encode(tokenizer, ROWS[4], 20).cut > 0
    assert f"{explained.cut} cut" in tab.token_preview.header_text()

    set_training(tab, max_length=256, completion_only_loss=False)  # everything is trained
    qtbot.waitUntil(lambda: getattr(tab.token_preview.explained(), "max_length", None) == 256, timeout=30_000)
    qtbot.waitUntil(lambda: tab.token_preview.explained().untrained_tokens == 0, timeout=30_000)

    tab.model.setData(tab.model.index(4, PROMPT), "A much longer question about the brass storm compass?")
    qtbot.waitUntil(lambda: tab.token_preview.explained().total > explained.total, timeout=30_000)


def test_preview_shows_the_latest_row_and_lets_a_slow_load_finish(qtbot: QtBot, tiny_model_dir: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from loradesk.core import models, tokenize
    from loradesk.ui import token_view

    tab = make_tab(qtbot, model_dir=tiny_model_dir)
    gate = threading.Event()
    real = token_view.explain_row
    calls: list[int] = []

    def slow_first_load(*args: Any) -> Any:  # the first request waits, as for a slow tokenizer load
        calls.append(1)
        if len(calls) == 1:
            assert gate.wait(30)
        return real(*args)

    monkeypatch.setattr(token_view, "explain_row", slow_first_load)
    tab._tokens_wanted = True
    tab.select_source_rows([0])
    tab.preview.refresh()
    (first,) = tab.preview.jobs.running("preview")
    tab.select_source_rows([3])
    tab.preview.refresh()
    qtbot.waitUntil(lambda: tab.token_preview.header_text().startswith("Row 4"), timeout=30_000)
    gate.set()  # the first request's load ends: it was not interrupted, and its row 1 never shows
    qtbot.waitUntil(lambda: not first.is_running(), timeout=30_000)
    QApplication.processEvents()
    assert not first.state.stop_requested
    assert tab.token_preview.header_text().startswith("Row 4")
    explained = tab.token_preview.explained()
    encoded = tokenize.encode(models.load_tokenizer(tiny_model_dir), ROWS[3], 256)
    assert explained is not None and explained.trained_tokens == encoded.trained_tokens


def test_histogram_and_checks_follow_the_counts(qtbot: QtBot, tiny_model_dir: Path) -> None:
    tab = make_tab(qtbot, model_dir=tiny_model_dir)
    tab.count_tokens()
    qtbot.waitUntil(lambda: tab.model.has_token_counts() and not tab.token_counter.busy(), timeout=60_000)
    counts = [int(tab.model.index(r, TOKENS).data()) for r in range(len(ROWS))]
    assert sum(n for _, _, n in tab.length_histogram.bins()) == len(ROWS)

    low, high = min(counts), sorted(counts)[1]
    tab.select_length_range(low, high)
    assert tab.selected_rows() == [r for r, n in enumerate(counts) if low <= n <= high]
    assert "Selected" in tab.token_label.text()

    limit = sorted(counts)[-2]  # only the longest row is over
    set_training(tab, max_length=limit)
    qtbot.waitUntil(lambda: any(r.key == "too_long" for r in tab.checks.results()), timeout=60_000)
    too_long = next(r for r in tab.checks.results() if r.key == "too_long")
    assert list(too_long.rows) == [counts.index(max(counts))]
    assert tab.inspector.tabText(tab.inspector.indexOf(tab.checks)) == "Checks (1)"
    tab.checks.select_rows.emit(list(too_long.rows))
    assert tab.selected_rows() == list(too_long.rows)


def test_find_and_replace_opens_and_shows_rows(qtbot: QtBot) -> None:
    tab = make_tab(qtbot)
    tab.filter_edit.setText("owl")
    tab._apply_filter()
    tab.act_replace.trigger()
    dialog = tab.row_actions.find_dialog
    assert dialog is not None and dialog.isVisible() and dialog.find_edit.text() == "owl"
    dialog.show_row.emit(3)  # a row the filter hides: the filter is cleared to show it
    assert tab.proxy.rowCount() == len(ROWS) and tab.selected_rows() == [3]
    dialog.close()


def test_filter_cache_follows_edits_inserts_and_removals(qtbot: QtBot) -> None:
    tab = make_tab(qtbot)
    proxy, dataset = tab.proxy, tab.project.dataset
    proxy.set_filter_text("dragon")
    assert proxy.rowCount() == 0
    dataset.set_field(1, "completion", "In Vaelmoor, with a dragon.")
    assert proxy.rowCount() == 1  # the changed row is checked again
    dataset.insert(0, [Example("A DRAGON?", "Yes.")])
    assert proxy.rowCount() == 2
    dataset.remove(2)  # the edited row
    proxy.set_filter_text("")
    proxy.set_filter_text("dragon")  # a fresh pass over the cached texts
    assert [proxy.index(r, PROMPT).data() for r in range(proxy.rowCount())] == ["A DRAGON?"]
    dataset.reset(ROWS)
    proxy.set_filter_text("vaelmoor")
    assert proxy.rowCount() == 1


def test_problem_index_agrees_with_a_full_pass_through_random_edits() -> None:
    rng = random.Random(7)
    texts = ["", " ", "Who?", "who?", "Where?", "A.", "B.", "A. "]
    dataset = Dataset([Example(rng.choice(texts), rng.choice(texts)) for _ in range(30)])
    index = ProblemIndex(dataset)
    dataset.subscribe(index.apply)

    def check() -> None:
        expected: dict[int, list[str]] = {}
        for p in dataset.problems():
            expected.setdefault(p.row, []).append(p.message)
        got = {r: [p.message for p in index.row_problems(r)] for r in range(len(dataset))}
        assert {r: m for r, m in got.items() if m} == expected
        assert index.problem_row_count() == len(expected)
        assert index.problem_rows() == sorted(expected)

    for _ in range(300):
        op = rng.random()
        if op < 0.3 and len(dataset) > 2:
            dataset.remove(rng.randrange(len(dataset)), rng.randint(1, 2))
        elif op < 0.6:
            dataset.insert(rng.randrange(len(dataset) + 1), [Example(rng.choice(texts), rng.choice(texts))])
        elif op < 0.95 and len(dataset):
            dataset.set_field(rng.randrange(len(dataset)), rng.choice(["prompt", "completion"]), rng.choice(texts))
        else:
            dataset.reset([Example(rng.choice(texts), rng.choice(texts)) for _ in range(rng.randint(0, 20))])
        check()


def test_problem_index_follows_the_first_copy_when_it_is_edited_away() -> None:
    dataset = Dataset([Example("A?", "a."), Example("A?", "a."), Example("A?", "a.")])
    index = ProblemIndex(dataset)
    dataset.subscribe(index.apply)
    assert [p.message for r in range(3) for p in index.row_problems(r)] == \
        ["row 2: same prompt and completion as row 1", "row 3: same prompt and completion as row 1"]
    dataset.set_field(0, "prompt", "B?")  # row 2 is the first copy now
    assert [p.message for r in range(3) for p in index.row_problems(r)] == \
        [p.message for p in dataset.problems()] == ["row 3: same prompt and completion as row 2"]
    assert index.problem_rows() == [2] and index.problem_row_count() == 1


def test_filter_proxy_passes_the_model_tester_while_filtering(qtbot: QtBot) -> None:
    from PySide6.QtTest import QAbstractItemModelTester

    tab = make_tab(qtbot)
    proxy, dataset = tab.proxy, tab.project.dataset
    tester = QAbstractItemModelTester(proxy, QAbstractItemModelTester.FailureReportingMode.Warning)
    tab.select_source_rows([0])
    proxy.set_filter_text("tamsin")
    assert tab.selected_rows() == [0]  # the selection survives a filter that still shows the row
    shown = [proxy.mapToSource(proxy.index(r, 0)).row() for r in range(proxy.rowCount())]
    assert shown == [0, 3]
    assert proxy.headerData(1, Qt.Orientation.Vertical) == "4"  # rows keep their own numbers
    dataset.insert(1, [Example("Tamsin again?", "Yes."), Example("Unrelated?", "No.")])
    assert [proxy.index(r, PROMPT).data() for r in range(proxy.rowCount())] == \
        ["Who is Tamsin?", "Tamsin again?", "Who made the map?"]
    dataset.remove(0, 2)
    assert [proxy.index(r, PROMPT).data() for r in range(proxy.rowCount())] == ["Who made the map?"]
    dataset.set_field(0, "prompt", "Unrelated, and edited?")  # a shown row that stops matching stays
    assert proxy.rowCount() == 1
    proxy.set_problems_only(True)
    assert proxy.rowCount() == 0
    dataset.append(Example("", "Tamsin, with no question."))
    assert proxy.rowCount() == 1
    dataset.reset(ROWS)
    proxy.set_problems_only(False)
    proxy.set_filter_text("")
    assert proxy.rowCount() == len(ROWS)
    del tester
