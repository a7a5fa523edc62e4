"""File ▸ Split Conversations into Pairs: a remembered choice that every import (and a file given at start) follows."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from pytestqt.qtbot import QtBot

from loradesk.core.conversation import Turn
from loradesk.core.dataset import Example
from loradesk.core.formats import read_dataset
from loradesk.core.project import Project
from loradesk.ui import window_state
from loradesk.ui.app import startup_project
from loradesk.ui.errors import ErrorReport
from loradesk.ui.main_window import MainWindow

EXAMPLE = Path(__file__).resolve().parents[2] / "data" / "examples" / "tool_calls.sharegpt.json"

CHAT = [{"conversations": [{"from": "system", "value": "Be brief."},
                           {"from": "human", "value": "Who is Tamsin?"}, {"from": "gpt", "value": "A cartographer."},
                           {"from": "human", "value": "From where?"}, {"from": "gpt", "value": "Vaelmoor."}]}]
WHOLE = Example.conversation([Turn("user", "Who is Tamsin?"), Turn("assistant", "A cartographer."),
                              Turn("user", "From where?"), Turn("assistant", "Vaelmoor.")], "Be brief.")
PAIRS = [Example("Who is Tamsin?", "A cartographer.", "Be brief."), Example("From where?", "Vaelmoor.", "Be brief.")]


def make_window(qtbot: QtBot) -> MainWindow:
    window = MainWindow(Project.new_default(), probe_device=False, count_tokens=False)
    qtbot.addWidget(window, before_close_func=lambda w: w.project.dirty and w.project.save(
        Path(tempfile.mkdtemp()) / "teardown.loradesk"))
    window.show()
    return window


def import_rows(qtbot: QtBot, window: MainWindow, path: Path) -> list[Example]:
    window.import_file(path, mode="replace")
    qtbot.waitUntil(lambda: not window.is_importing(), timeout=60_000)
    return list(window.project.dataset.rows)


def test_split_pairs_is_a_remembered_file_menu_choice(qtbot: QtBot, tmp_path: Path) -> None:
    chat = tmp_path / "chat.json"
    chat.write_text(json.dumps(CHAT), encoding="utf-8")
    window = make_window(qtbot)
    act = window.act_split_pairs
    file_menu = window.menuBar().actions()[0].menu()
    assert act in file_menu.actions() and act.isCheckable() and not act.isChecked()
    assert import_rows(qtbot, window, chat) == [WHOLE]

    act.trigger()
    assert act.isChecked() and window_state.import_conversations() == "pairs"
    assert import_rows(qtbot, window, chat) == PAIRS
    assert make_window(qtbot).act_split_pairs.isChecked()  # the next window (and start) remembers it

    act.trigger()
    assert not act.isChecked() and window_state.import_conversations() == "whole"
    assert import_rows(qtbot, window, chat) == [WHOLE]


def test_a_file_given_at_start_follows_the_choice(tmp_path: Path) -> None:
    chat = tmp_path / "chat.json"
    chat.write_text(json.dumps(CHAT), encoding="utf-8")
    assert list(startup_project([str(chat)])[0].dataset.rows) == [WHOLE]
    window_state.set_import_conversations("pairs")
    project, message = startup_project([str(chat)])
    assert list(project.dataset.rows) == PAIRS and message == "Imported 2 rows from chat.json"


def test_tool_call_example_in_and_out_of_the_window(qtbot: QtBot, tmp_path: Path,
                                                   shown_errors: list[ErrorReport]) -> None:
    window = make_window(qtbot)
    rows = import_rows(qtbot, window, EXAMPLE)
    assert len(rows) == 6 and all(r.is_conversation and r.tools for r in rows)
    assert sum(len(t.tool_calls) for r in rows for t in r.turns) == 6

    out = tmp_path / "again.json"
    window.importer.export_file(out, "sharegpt")
    qtbot.waitUntil(lambda: out.exists() and not window.busy_bar.isVisible(), timeout=60_000)
    assert read_dataset(out) == rows
    written, original = (json.loads(p.read_text(encoding="utf-8")) for p in (out, EXAMPLE))
    assert [[m["from"] for m in r["conversations"]] for r in written] == [
        [m["from"] for m in r["conversations"]] for r in original]
    assert [json.loads(r["tools"]) for r in written] == [json.loads(r["tools"]) for r in original]

    csv = tmp_path / "flat.csv"
    window.importer.export_file(csv, "csv")
    qtbot.waitUntil(lambda: bool(shown_errors), timeout=60_000)
    (report,) = shown_errors
    assert report.title == "Cannot export the dataset" and report.message.startswith(
        "flat.csv, row 1: a conversation (6 turns) cannot be written as CSV")
    assert not csv.exists() and not window.busy_bar.isVisible()
