"""The data checks on conversation rows: every turn counts for duplicates, emptiness and tidying; the
compact form the worker process receives keeps the turns."""

from __future__ import annotations

from loradesk.core.checks import check_records, run_checks
from loradesk.core.conversation import ToolCall, Turn
from loradesk.core.dataset import Example, compact_row


def chat(middle: str = "What does she carry?", last: str = "A brass compass.") -> Example:
    return Example.conversation([Turn("user", "Who is Tamsin?"), Turn("assistant", "A sky-cartographer."),
                                 Turn("user", middle), Turn("assistant", last)])


def keyed(rows: list[Example]) -> dict[str, tuple[int, ...]]:
    return {r.key: r.rows for r in run_checks(rows)}


def test_conversations_that_differ_only_in_a_middle_turn_are_not_duplicates() -> None:
    rows = [chat(), chat(middle="What is her owl called?"), chat(), Example("Who is Tamsin?", "A brass compass.")]
    found = keyed(rows)
    assert found["duplicate"] == (2,)  # only the exact copy; row 1 shares the first and last message only
    assert "near_duplicate" not in found
    near = keyed([chat(), chat(middle="what does she CARRY")])
    assert near["near_duplicate"] == (1,)


def test_a_conversation_is_empty_only_when_no_assistant_turn_says_or_calls_anything() -> None:
    calling = Example.conversation([Turn("user", "Weather?"), Turn("assistant", "", (ToolCall("get_weather"),))])
    silent = Example.conversation([Turn("user", "Hello?"), Turn("assistant", "  ")])
    found = {r.key: r for r in run_checks([calling, silent])}
    assert found["empty"].rows == (1,) and found["empty"].notes == ("empty completion",)


def test_whitespace_and_control_characters_in_middle_turns_are_fixed_in_the_row() -> None:
    row = Example.conversation([Turn("user", "Hi"), Turn("assistant", "Hello  there"),
                                Turn("user", "Map\x00 please"), Turn("assistant", "Here.")], split="train")
    found = {r.key: r for r in run_checks([row, Example("Tab\there", "x\x07")])}
    whitespace, control = found["whitespace"], found["control"]
    assert whitespace.rows == (0, 1) and whitespace.notes[0] == "turn 2: double spaces"
    [fix] = whitespace.fixes
    assert fix.changes == ((1, "prompt", "Tab here"),)
    [(index, tidy)] = fix.rows
    assert index == 0 and tidy.turns[1].content == "Hello there" and tidy.split == "train"
    assert tidy.turns[2].content == "Map\x00 please"  # only whitespace here
    assert control.notes[0] == "turn 3: NUL"
    [(_, clean)] = control.fixes[0].rows
    assert clean.turns[2].content == "Map please" and clean.turns[1].content == "Hello  there"


def test_the_compact_form_keeps_conversations_whole() -> None:
    rows = [chat(), chat(middle="What is her owl called?"), Example("a", "b"), Example("a", "b")]
    records = [compact_row(r) for r in rows]
    assert records[2] == ("", "a", "b") and records[0] is rows[0]
    assert {r.key: r.rows for r in check_records(records)} == keyed(rows) == {"duplicate": (3,)}
