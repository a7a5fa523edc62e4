"""Conversation rows in the Dataset tab: how the table shows them, the conversation editor (opened by a
double-click or Enter, one undo step), the filter, find and replace inside turns, and the checks panel."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QModelIndex, Qt
from PySide6.QtGui import QIcon, QUndoStack
from PySide6.QtWidgets import QAbstractItemView
from pytestqt.qtbot import QtBot

from loradesk.core.conversation import ToolCall, Turn
from loradesk.core.dataset import Dataset, Example
from loradesk.core.project import Project
from loradesk.ui import checks_panel
from loradesk.ui.conversation_editor import ConversationEditor
from loradesk.ui.dataset_model import COMPLETION, PROMPT, SPLIT, TOKENS, token_key
from loradesk.ui.dataset_tab import DatasetTab
from loradesk.ui.errors import ErrorReport
from loradesk.ui.find_replace import FindReplaceDialog


def chat(middle: str = "What does she carry?") -> Example:
    return Example.conversation([
        Turn("user", "Who is Tamsin?"), Turn("assistant", "A sky-cartographer."),
        Turn("user", middle), Turn("assistant", "A brass storm compass."),
        Turn("user", "And her owl?"), Turn("assistant", "Bramble, who hates rain."),
    ], system="You know Vaelmoor.")


def weather() -> Example:
    return Example.conversation([
        Turn("user", "Rain in Oslo?"),
        Turn("assistant", "", (ToolCall("get_weather", '{"city": "Oslo"}', "c1"),)),
    ])


def make_tab(qtbot: QtBot, rows: list[Example]) -> DatasetTab:
    tab = DatasetTab(Project(Dataset(rows)), QUndoStack())
    qtbot.addWidget(tab, before_close_func=lambda t: t.shutdown())
    tab.resize(1000, 700)
    tab.show()
    qtbot.waitExposed(tab)
    return tab


def view_index(tab: DatasetTab, row: int, column: int) -> QModelIndex:
    return tab.proxy.mapFromSource(tab.model.index(row, column))


def open_editor(qtbot: QtBot, tab: DatasetTab, row: int) -> ConversationEditor:
    """Double-click the conversation's prompt cell, as a user does."""
    index = view_index(tab, row, PROMPT)
    tab.view.scrollTo(index)
    centre = tab.view.visualRect(index).center()
    qtbot.mouseClick(tab.view.viewport(), Qt.MouseButton.LeftButton, pos=centre)
    qtbot.mouseDClick(tab.view.viewport(), Qt.MouseButton.LeftButton, pos=centre)
    editor = tab.row_actions.conversation_editor
    assert isinstance(editor, ConversationEditor)
    qtbot.waitUntil(editor.isVisible)
    editor.activateWindow()  # a window manager does this; the offscreen platform leaves the table's window active
    qtbot.waitUntil(editor.isActiveWindow)
    return editor


def test_the_table_shows_the_first_and_last_message_with_a_turn_badge(qtbot: QtBot) -> None:
    tab = make_tab(qtbot, [Example("Hi", "Hello"), chat(), weather()])
    model = tab.model
    assert model.index(1, PROMPT).data() == "Who is Tamsin?"
    assert model.index(1, COMPLETION).data() == "Bramble, who hates rain."
    badge = model.index(1, PROMPT).data(Qt.ItemDataRole.DecorationRole)
    assert isinstance(badge, QIcon) and not badge.isNull()
    tip = model.index(1, PROMPT).data(Qt.ItemDataRole.ToolTipRole)
    assert tip.startswith("Conversation: 6 turns") and "3. User: What does she carry?" in tip
    assert "System: You know Vaelmoor." in tip
    assert model.index(0, PROMPT).data(Qt.ItemDataRole.DecorationRole) is None  # a pair: no badge
    # a conversation that ends in a tool call shows the call, and is not marked empty
    assert model.index(2, COMPLETION).data() == '→ get_weather({"city": "Oslo"})'
    assert model.index(2, COMPLETION).data(Qt.ItemDataRole.BackgroundRole) is None
    assert "2 turns · 1 call" in model.index(2, PROMPT).data(Qt.ItemDataRole.ToolTipRole)
    assert [model.index(r, 4).data() for r in range(3)] == ["OK", "OK", "OK"]


def test_double_click_opens_the_editor_and_ok_is_one_undo_step(qtbot: QtBot) -> None:
    tab = make_tab(qtbot, [Example("Hi", "Hello"), chat()])
    dataset, stack = tab.project.dataset, tab.undo_stack
    before = dataset[1]
    editor = open_editor(qtbot, tab, 1)
    assert tab.view.state() != QAbstractItemView.State.EditingState  # not edited in place
    assert [t.role for t in editor.turns] == ["user", "assistant"] * 3
    assert editor.system_edit.toPlainText() == "You know Vaelmoor."
    # delete turns 5-6, move the last remaining answer above its question, then back, add a turn
    editor.remove_turn(editor.turns[5])
    editor.turns[4].delete_button.click()
    editor.move_turn(editor.turns[3], -1)
    assert [t.role for t in editor.turns] == ["user", "assistant", "assistant", "user"]
    editor.turns[2].down_button.click()
    editor.add_button.click()
    added = editor.turns[-1]
    assert added.role == "user"  # the other side of the last turn (an assistant)
    added.role_box.setCurrentIndex(added.role_box.findData("user"))
    added.text_edit.setPlainText("Thanks!")
    editor.add_button.click()
    editor.turns[-1].text_edit.setPlainText("You're welcome.")
    editor.buttons.button(editor.buttons.StandardButton.Ok).click()
    assert not editor.isVisible()
    row = dataset[1]
    assert [(t.role, t.content) for t in row.turns] == [
        ("user", "Who is Tamsin?"), ("assistant", "A sky-cartographer."), ("user", "What does she carry?"),
        ("assistant", "A brass storm compass."), ("user", "Thanks!"), ("assistant", "You're welcome.")]
    assert tab.model.index(1, COMPLETION).data() == "You're welcome."
    assert stack.count() == 1 and stack.undoText() == "Edit conversation in row 2"
    stack.undo()
    assert dataset[1] == before and tab.model.index(1, COMPLETION).data() == "Bramble, who hates rain."


def test_enter_opens_the_editor_and_cancel_changes_nothing(qtbot: QtBot) -> None:
    tab = make_tab(qtbot, [Example("Hi", "Hello"), chat()])
    before = tab.project.dataset.rows
    tab.view.setFocus()
    tab.view.setCurrentIndex(view_index(tab, 1, SPLIT))
    qtbot.keyClick(tab.view, Qt.Key.Key_Return)
    editor = tab.row_actions.conversation_editor
    assert isinstance(editor, ConversationEditor) and editor.isVisible()
    editor.turns[0].text_edit.setPlainText("Changed")
    editor.remove_turn(editor.turns[1])
    editor.buttons.button(editor.buttons.StandardButton.Cancel).click()
    assert tab.project.dataset.rows == before and tab.undo_stack.count() == 0


def test_a_pair_is_still_edited_in_place(qtbot: QtBot) -> None:
    tab = make_tab(qtbot, [Example("Hi", "Hello"), chat()])
    centre = tab.view.visualRect(view_index(tab, 0, PROMPT)).center()
    qtbot.mouseClick(tab.view.viewport(), Qt.MouseButton.LeftButton, pos=centre)
    qtbot.mouseDClick(tab.view.viewport(), Qt.MouseButton.LeftButton, pos=centre)
    assert tab.view.state() == QAbstractItemView.State.EditingState
    assert tab.row_actions.conversation_editor is None


def test_the_editor_checks_json_arguments_and_needs_an_answer(qtbot: QtBot) -> None:
    tab = make_tab(qtbot, [weather()])
    editor = open_editor(qtbot, tab, 0)
    call = editor.turns[1].calls[0]
    assert (call.name_edit.text(), call.arguments_edit.toPlainText()) == ("get_weather", '{"city": "Oslo"}')
    call.arguments_edit.setPlainText('{"city": Oslo}')
    qtbot.keyClick(editor.turns[0].text_edit, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    assert editor.isVisible() and editor.error_label.text().startswith(
        "Turn 2 (assistant), call 1: arguments are not JSON (Expecting value at line 1 column 10)")
    assert call.arguments_edit.hasFocus()
    call.remove_requested.emit(call)  # its ✕: now no assistant turn says or calls anything
    editor.accept()
    assert editor.error_label.text() == "A conversation needs an assistant turn that says or calls something"
    editor.turns[1].add_call_button.click()
    new_call = editor.turns[1].calls[0]
    new_call.name_edit.setText("get_forecast")
    new_call.arguments_edit.setPlainText('{"city": "Bergen", "days": 2}')
    qtbot.keyClick(new_call.arguments_edit, Qt.Key.Key_Enter, Qt.KeyboardModifier.ControlModifier)  # accepts
    assert not editor.isVisible()
    [turn_call] = tab.project.dataset[0].turns[1].tool_calls
    assert (turn_call.name, turn_call.arguments) == ("get_forecast", '{"city": "Bergen", "days": 2}')
    assert tab.undo_stack.count() == 1


def test_edit_conversation_on_a_pair_and_convert_to_conversation(qtbot: QtBot) -> None:
    tab = make_tab(qtbot, [Example("Hi", "Hello", system="Be brief.", split="train"), Example("Yo", "Hey")])
    dataset, stack = tab.project.dataset, tab.undo_stack
    tab.select_source_rows([0])
    tab.row_actions.act_edit_conversation.trigger()
    editor = tab.row_actions.conversation_editor
    assert [(t.role, t.text_edit.toPlainText()) for t in editor.turns] == [("user", "Hi"), ("assistant", "Hello")]
    editor.add_button.click()
    editor.turns[-1].text_edit.setPlainText("More?")
    editor.add_button.click()
    editor.turns[-1].text_edit.setPlainText("Sure.")
    editor.accept()
    assert dataset[0].is_conversation and len(dataset[0].turns) == 4
    assert (dataset[0].system, dataset[0].split, dataset[0].completion) == ("Be brief.", "train", "Sure.")
    tab.select_source_rows([0, 1])
    tab.row_actions.act_convert.trigger()
    assert dataset[1].turns == (Turn("user", "Yo"), Turn("assistant", "Hey")) and len(dataset[0].turns) == 4
    assert stack.count() == 2 and stack.undoText() == "Convert 1 row to conversations"
    stack.undo()
    stack.undo()
    assert dataset.rows == (Example("Hi", "Hello", system="Be brief.", split="train"), Example("Yo", "Hey"))


def test_the_filter_finds_a_word_said_only_in_a_middle_turn(qtbot: QtBot) -> None:
    tab = make_tab(qtbot, [Example("What does she carry?", "A compass."), chat(middle="Does she own a spyglass?"),
                           weather()])
    tab.proxy.set_filter_text("SPYGLASS")
    assert [tab.proxy.mapToSource(tab.proxy.index(r, 0)).row() for r in range(tab.proxy.rowCount())] == [1]
    tab.proxy.set_filter_text("get_weather")  # a tool call's name
    assert tab.proxy.rowCount() == 1 and tab.proxy.mapToSource(tab.proxy.index(0, 0)).row() == 2
    tab.proxy.set_filter_text("vaelmoor")  # the system prompt of a conversation
    assert tab.proxy.rowCount() == 1
    # an edit in the editor is searched at once
    tab.proxy.set_filter_text("")
    editor = open_editor(qtbot, tab, 0 + 1)
    editor.turns[2].text_edit.setPlainText("Does she own a telescope?")
    editor.accept()
    tab.proxy.set_filter_text("telescope")
    assert tab.proxy.rowCount() == 1
    tab.proxy.set_filter_text("spyglass")
    assert tab.proxy.rowCount() == 0


def test_find_and_replace_inside_turns_is_one_undo_step_with_the_pairs(qtbot: QtBot) -> None:
    rows = [Example("Who is Tamsin?", "Tamsin maps skies."), chat(middle="Is Tamsin brave?"), weather()]
    dataset, stack = Dataset(rows), QUndoStack()
    dialog = FindReplaceDialog(dataset, stack)
    qtbot.addWidget(dialog, before_close_func=lambda d: d.shutdown())
    dialog.show()
    dialog.replace_edit.setText("Mira")
    qtbot.keyClicks(dialog.find_edit, "tamsin")
    qtbot.waitUntil(lambda: not dialog.is_searching() and dialog.count_label.text() == "4 matches in 2 rows")
    fields = [dialog.model.index(r, 1).data() for r in range(dialog.model.rowCount())]
    assert fields == ["Prompt", "Completion", "Turn 1 (user)", "Turn 3 (user)"]
    assert "Row 2, Turn 3 (user)" in dialog.model.index(3, 2).data(Qt.ItemDataRole.ToolTipRole)
    dialog.replace_all()
    assert stack.count() == 1
    assert (dataset[0].prompt, dataset[0].completion) == ("Who is Mira?", "Mira maps skies.")
    assert [t.content for t in dataset[1].turns][:3] == ["Who is Mira?", "A sky-cartographer.", "Is Mira brave?"]
    stack.undo()
    assert dataset.rows == tuple(rows)
    # Replace Selected on a middle turn only
    qtbot.waitUntil(lambda: not dialog.is_searching() and dialog.replace_all_button.isEnabled())
    assert dialog.count_label.text() == "4 matches in 2 rows"
    dialog.preview.selectRow(3)
    dialog.replace_selected()
    assert [t.content for t in dataset[1].turns][:3] == ["Who is Tamsin?", "A sky-cartographer.", "Is Mira brave?"]
    assert dataset[0] == rows[0] and stack.count() == 1


@pytest.mark.parametrize("process_rows", [10_000, 3], ids=["thread", "worker process"])
def test_the_checks_panel_lists_a_duplicate_conversation_and_removes_it(qtbot: QtBot, monkeypatch: pytest.MonkeyPatch,
                                                                         process_rows: int) -> None:
    monkeypatch.setattr(checks_panel, "PROCESS_ROWS", process_rows)
    rows = [chat(), Example("Who is Tamsin?", "Bramble, who hates rain."), chat(middle="Is she brave?"), chat(),
            weather()]
    tab = make_tab(qtbot, rows)
    panel = tab.checks
    qtbot.waitUntil(lambda: panel.is_current() and panel.card("duplicate") is not None, timeout=30_000)
    assert {r.key for r in panel.results()} == {"duplicate"}  # a conversation ending in a call is not empty
    card = panel.card("duplicate")
    assert [link.row for link in card.row_links] == [3]
    assert card.row_links[0].prompt == "Who is Tamsin?" and card.row_links[0].note == "same as row 1"
    qtbot.mouseClick(card.row_links[0], Qt.MouseButton.LeftButton)
    assert tab.selected_rows() == [3] and tab.current_row() == 3
    assert tab.model.index(3, 4).data() == "Duplicate" and tab.model.index(2, 4).data() == "OK"
    card.fix_buttons[0].click()
    assert tab.project.dataset.rows == tuple(rows[:3] + rows[4:])
    tab.undo_stack.undo()
    assert tab.project.dataset.rows == tuple(rows)


def test_a_row_that_moved_or_went_while_the_editor_was_open(qtbot: QtBot, shown_errors: list[ErrorReport]) -> None:
    tab = make_tab(qtbot, [Example("Hi", "Hello"), chat(), weather()])
    dataset = tab.project.dataset
    editor = open_editor(qtbot, tab, 2)
    dataset.remove(0)  # e.g. a change that arrives while the dialog is open: the row is now row 1
    editor.turns[0].text_edit.setPlainText("Snow in Oslo?")
    editor.accept()
    assert dataset[1].prompt == "Snow in Oslo?" and dataset[0] == chat() and not shown_errors
    editor = open_editor(qtbot, tab, 1)
    dataset.remove(1)
    editor.turns[0].text_edit.setPlainText("Hail?")
    editor.accept()
    assert [e.title for e in shown_errors] == ["Conversation not changed"]
    assert dataset.rows == (chat(),) and tab.undo_stack.count() == 1


def test_token_counts_of_conversations_follow_all_their_turns(qtbot: QtBot) -> None:
    short, long = chat(), chat(middle="Tell me everything about her journeys. " * 20)
    assert (short.prompt, short.completion) == (long.prompt, long.completion)
    tab = make_tab(qtbot, [short, long, Example("Hi", "Hello")])
    model = tab.model
    model.set_max_length(512)
    model.set_token_counts({token_key(short): 40, token_key(long): 900, token_key(Example("Hi", "Hello")): 5})
    qtbot.waitUntil(lambda: model.counts_in_row_order() is not None)
    assert (model.index(0, TOKENS).data(), model.index(2, TOKENS).data()) == ("40", "5")
    assert model.rows_with_counts_between(500, 1000) == [1] and model.too_long_rows() == [1]
    assert model.rows_without_token_count() == []
