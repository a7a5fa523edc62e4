"""The Checks panel: cards for the crafted problems, row links, "Select rows", undoable fixes, fresh results."""

from __future__ import annotations

import threading

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QUndoStack
from pytestqt.qtbot import QtBot

from loradesk.core.dataset import Dataset, Example
from loradesk.core.project import Project
from loradesk.ui.checks_panel import PROCESS_ROWS, ChecksPanel
from loradesk.ui.undo import EditCellCommand


def crafted() -> list[Example]:
    return [
        Example("Who is Tamsin?", "A sky-cartographer."),       # 0
        Example("", "Nothing was asked"),                        # 1 empty prompt
        Example("Who is Tamsin?", "A sky-cartographer."),       # 2 copy of 0
        Example("Where does she live?", "In Vaelmoor.  "),       # 3 trailing spaces
        Example("Who is Tamsin?", "A sky-cartographer."),       # 4 copy of 0
        Example("Line one\r\nLine two", "Para one.\n\nPara two."),  # 5 Windows line break
        Example("What is the owl called?", "Bramble"),           # 6
        Example("Name her  owl", "Bramble the owl"),             # 7 double space
        Example("Who is Tamsin?", "A sky-cartographer."),       # 8 copy of 0
        Example("What does she map?", "Sky currents."),          # 9
    ]


def texts(project: Project) -> list[tuple[str, str, str]]:
    return [(r.prompt, r.completion, r.system) for r in project.dataset]


#: How long a check run may take in a test: the first one that asks where answers start also starts the worker
#: process (5-6 s on a quiet 2-core machine, more than 10 s under a loaded one); waiting ends at the signal.
CHECK_TIMEOUT_MS = 60_000


def make_panel(qtbot: QtBot, rows: list[Example] | None = None,
               project: Project | None = None) -> tuple[ChecksPanel, Project, QUndoStack]:
    project = project or Project(Dataset(crafted() if rows is None else rows))
    stack = QUndoStack()
    panel = ChecksPanel(project, stack)
    qtbot.addWidget(panel)
    panel.resize(420, 900)
    panel.show()
    with qtbot.waitSignal(panel.checked, timeout=CHECK_TIMEOUT_MS):
        pass
    return panel, project, stack


def rerun(qtbot: QtBot, panel: ChecksPanel) -> None:
    with qtbot.waitSignal(panel.checked, timeout=CHECK_TIMEOUT_MS, raising=False) as blocker:
        pass
    assert blocker.signal_triggered, f"no check run ended; the panel says: {panel.summary_label.text()}"
    assert panel.is_current()


def test_lists_the_crafted_problems(qtbot: QtBot) -> None:
    panel, _, _ = make_panel(qtbot)
    results = {r.key: r for r in panel.results()}
    assert set(results) == {"empty", "duplicate", "whitespace"}
    assert results["duplicate"].rows == (2, 4, 8)
    assert list(panel.cards) == ["empty", "duplicate", "whitespace"]  # errors first
    card = panel.card("duplicate")
    assert card is not None and card.isVisible()
    assert [link.row for link in card.row_links] == [2, 4, 8]
    assert [b.text() for b in card.fix_buttons] == ["Delete 3 duplicate rows"]
    assert panel.summary_label.text() == "1 error · 2 warnings in 10 rows"
    assert not panel.empty_state.isVisible() and not panel.busy.isVisible()


def test_select_rows_and_row_links(qtbot: QtBot) -> None:
    panel, _, _ = make_panel(qtbot)
    card = panel.card("whitespace")
    assert card is not None
    with qtbot.waitSignal(panel.select_rows) as selected:
        card.select_button.click()
    assert selected.args == [[3, 5, 7]]
    link = card.row_links[1]
    with qtbot.waitSignal(panel.show_row) as shown:
        qtbot.mouseClick(link, Qt.MouseButton.LeftButton)
    assert shown.args == [5]
    link.setFocus()
    with qtbot.waitSignal(panel.show_row) as shown:
        qtbot.keyClick(link, Qt.Key.Key_Return)
    assert shown.args == [5]


def apply_fix(qtbot: QtBot, panel: ChecksPanel, stack: QUndoStack, key: str, index: int = 0) -> str:
    """Click a card's fix; checks it is one undo step and that the check is gone afterwards; returns its text."""
    card = panel.card(key)
    assert card is not None
    card.fix_buttons[index].click()
    assert stack.count() == 1
    rerun(qtbot, panel)
    assert panel.card(key) is None
    return stack.undoText()


def test_duplicate_fix_is_one_step_and_undo_brings_the_rows_back(qtbot: QtBot) -> None:
    panel, project, stack = make_panel(qtbot)
    before = texts(project)
    assert apply_fix(qtbot, panel, stack, "duplicate") == "Delete 3 duplicate rows"
    assert texts(project) == [t for i, t in enumerate(before) if i not in (2, 4, 8)]
    stack.undo()
    assert texts(project) == before
    rerun(qtbot, panel)
    assert panel.card("duplicate") is not None


def test_whitespace_fix_is_one_undo_step(qtbot: QtBot) -> None:
    panel, project, stack = make_panel(qtbot)
    before = texts(project)
    assert apply_fix(qtbot, panel, stack, "whitespace") == "Tidy whitespace in 3 rows"
    rows = project.dataset
    assert (rows[3].completion, rows[5].prompt, rows[7].prompt) == ("In Vaelmoor.", "Line one\nLine two",
                                                                     "Name her owl")
    assert rows[5].completion == "Para one.\n\nPara two."  # a paragraph break is not stray whitespace
    stack.undo()
    assert texts(project) == before


def test_max_length_fix_changes_the_setting_and_undo_restores_it(qtbot: QtBot) -> None:
    panel, project, stack = make_panel(qtbot, [Example("short", "answer"), Example("long", "answer " * 50),
                                               Example("longer", "answer " * 60)])
    assert project.config.training.max_length == 256
    counts = {"short": 20, "long": 290, "longer": 300}
    panel.set_token_counts(lambda row: counts[row.prompt])
    rerun(qtbot, panel)
    card = panel.card("too_long")
    assert card is not None and card.result.rows == (1, 2)
    assert [b.text() for b in card.fix_buttons] == ["Raise max length to 320", "Delete 2 long rows"]
    assert apply_fix(qtbot, panel, stack, "too_long") == "Raise max length to 320"
    assert project.config.training.max_length == 320 and len(project.dataset) == 3
    stack.undo()
    assert project.config.training.max_length == 256
    rerun(qtbot, panel)
    assert panel.card("too_long") is not None


def test_an_edit_during_a_run_gives_fresh_results_not_stale_ones(qtbot: QtBot) -> None:
    panel, project, stack = make_panel(qtbot)
    started, release = threading.Event(), threading.Event()

    def slow_lookup(_row: Example) -> int:
        started.set()
        release.wait(10)
        return 10

    shown: list[set[str]] = []
    panel.checked.connect(lambda: shown.append({r.key for r in panel.results()}))
    panel.set_token_counts(slow_lookup)
    qtbot.waitUntil(started.is_set, timeout=10_000)  # a run is in flight
    stack.push(EditCellCommand(project.dataset, 1, "prompt", "What is missing?"))  # fixes the empty row
    card = panel.card("empty")
    assert card is not None and not card.fix_buttons[0].isEnabled()  # results are stale: no fixes
    release.set()
    rerun(qtbot, panel)
    assert shown == [{"duplicate", "whitespace"}]  # the run that missed the edit never showed
    assert panel.card("empty") is None


def test_stale_fix_is_not_applied(qtbot: QtBot) -> None:
    panel, project, stack = make_panel(qtbot)
    card = panel.card("duplicate")
    assert card is not None
    project.dataset.remove(0)  # rows moved: the listed rows are wrong now
    assert not panel.is_current() and not card.fix_buttons[0].isEnabled()
    card.fix_buttons[0].click()
    assert stack.count() == 0 and len(project.dataset) == 9


def test_no_problems_is_a_friendly_empty_state(qtbot: QtBot) -> None:
    panel, _, _ = make_panel(qtbot, [Example("Who?", "Tamsin."), Example("Where?", "Vaelmoor."),
                                     Example("What?", "Maps.")])
    assert panel.results() == [] and panel.cards == {}
    assert panel.empty_state.isVisible()
    assert panel.empty_label.text() == "No problems found in 3 rows"


def test_sample_project_only_notes_the_shared_answers(qtbot: QtBot) -> None:
    panel, project, _ = make_panel(qtbot, project=Project.new_default())
    assert [r.key for r in panel.results()] == ["same_answer"]
    card = panel.card("same_answer")
    assert card is not None and card.result.severity == "info"
    assert card.fix_buttons[0].text().endswith("keeping one per answer")
    assert panel.summary_label.text() == f"1 note in {len(project.dataset)} rows"


def test_a_big_dataset_is_checked_in_the_worker_process(qtbot: QtBot) -> None:
    from loradesk.core.checks import run_checks
    from loradesk.ui import jobs
    from loradesk.ui.worker_process import ROWS_CHANNEL

    rows = [Example(f"Question {i}?", f"Answer {i}.") for i in range(PROCESS_ROWS)] + crafted()
    panel, project, stack = make_panel(qtbot, rows)
    sent = jobs._SENT[(ROWS_CHANNEL, 0)][0]
    assert sent[0] is project.dataset[0]  # the rows went to the process
    assert panel.results() == run_checks(rows)  # the same answer a thread would give
    assert panel.card("duplicate") is not None and panel.card("duplicate").result.rows == (
        PROCESS_ROWS + 2, PROCESS_ROWS + 4, PROCESS_ROWS + 8)
    panel.set_token_counts(lambda row: 300 if row.prompt == "Question 7?" else 10)  # looked up in the GUI process
    rerun(qtbot, panel)
    card = panel.card("too_long")
    assert card is not None and card.result.rows == (7,)
    stack.push(EditCellCommand(project.dataset, 7, "prompt", "Question seven?"))
    rerun(qtbot, panel)
    assert panel.card("too_long") is None  # the edit reached the process


@pytest.mark.parametrize("size", [10, PROCESS_ROWS], ids=["thread", "worker process"])
def test_counts_in_row_order_serve_the_length_check_without_a_lookup_per_row(qtbot: QtBot, size: int) -> None:
    import numpy as np

    from loradesk.core.checks import run_checks

    rows = [Example(f"Question {i}?", f"Answer {i}.") for i in range(size)]
    panel, project, _ = make_panel(qtbot, rows)
    looked_up: list[Example] = []
    in_order = np.full(size, -1, dtype=np.int64)  # -1: not counted
    in_order[[3, 7]] = (300, 20)

    def lookup(row: Example) -> int | None:
        looked_up.append(row)
        return None

    panel.set_token_counts(lookup, lambda: in_order)
    rerun(qtbot, panel)
    card = panel.card("too_long")
    assert card is not None and card.result.rows == (3,)
    assert panel.results() == run_checks(rows, [300 if i == 3 else 20 if i == 7 else None for i in range(size)],
                                         project.config.training.max_length)
    assert looked_up == []
    panel.set_token_counts(lookup, lambda: None)  # not ready (counts being read in): the lookup serves
    rerun(qtbot, panel)
    assert panel.card("too_long") is None and len(looked_up) == size


def test_long_results_come_back_from_the_worker_process_in_chunks_and_whole(qtbot: QtBot,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    import numpy as np

    from loradesk.core.checks import run_checks
    from loradesk.ui import jobs
    from loradesk.ui.check_transfer import join_results, split_results

    monkeypatch.setattr(jobs, "UPLOAD_CHUNK", 500)  # results of thousands of items: several chunks each
    rows = [Example(f"Question {i}? ", "The same answer." if i % 3 else f"Answer {i}.") for i in range(PROCESS_ROWS)]
    panel, project, _ = make_panel(qtbot, rows)
    in_order = np.arange(PROCESS_ROWS, dtype=np.int64) + 250  # all but six rows over the max length of 256
    panel.set_token_counts(lambda _row: None, lambda: in_order)
    rerun(qtbot, panel)
    expected = run_checks(rows, in_order.tolist(), project.config.training.max_length)
    assert {r.key for r in expected} >= {"too_long", "whitespace", "same_answer"}
    assert sum(len(r.rows) + sum(len(f.changes) + len(f.remove_rows) for f in r.fixes) for r in expected) > 5_000
    assert panel.results() == expected
    assert join_results(*split_results(expected)) == expected


@pytest.mark.parametrize("size", [4, PROCESS_ROWS], ids=["thread", "worker process"])
def test_rows_whose_answers_lie_beyond_the_max_length_get_a_card(qtbot: QtBot, tiny_model_dir, size: int) -> None:
    from loradesk.core import tokenize
    from loradesk.core.config import ModelSettings
    from loradesk.core.conversation import Turn
    from loradesk.core.models import load_tokenizer

    long_question = "Who is Tamsin Quillfeather of Vaelmoor? " * 12
    rows = [Example(f"Question {i}?", f"Answer {i}.") for i in range(size)]
    rows[1] = Example.conversation([Turn("user", long_question), Turn("assistant", "Her.")])
    rows[2] = Example("Short?", "Long answer " * 40)  # too long, but its answer starts within the max length
    project = Project(Dataset(rows))
    project.config.model = ModelSettings(kind="local", name=str(tiny_model_dir))
    project.config.training.max_length = 64
    panel, project, stack = make_panel(qtbot, project=project)
    tok = load_tokenizer(tiny_model_dir)
    counts = {i: tokenize.token_count(tok, row) for i, row in enumerate(rows[:3])}
    panel.set_token_counts(lambda row: next((n for i, n in counts.items() if rows[i] is row), 10))
    rerun(qtbot, panel)
    assert panel.card("too_long").result.rows == (1, 2)
    card = panel.card("untrained")
    assert card is not None and card.result.rows == (1,)
    assert card.result.message.startswith("In row 2 every trained token lies beyond the max length of 64 tokens")
    assert apply_fix(qtbot, panel, stack, "untrained").startswith("Raise max length to ")
    assert tokenize.encode(tok, rows[1], project.config.training.max_length).trained_tokens > 0
    stack.undo()
    rerun(qtbot, panel)
    assert panel.card("untrained").result.rows == (1,)
    project.config.training.completion_only_loss = False  # a loss setting re-runs the checks: all is trained
    project.config_changed()
    rerun(qtbot, panel)
    assert panel.card("untrained") is None and panel.card("too_long") is not None
