"""Conversation rows: turns, tool calls, their stored form and how the dataset treats them."""

from __future__ import annotations

import json

import pytest

from loradesk.core.conversation import (
    ConversationError,
    ToolCall,
    Turn,
    messages,
    tools_text,
    turns_from_messages,
)
from loradesk.core.dataset import Dataset, Example, ProblemIndex, RecordError, draw_split, row_from_record
from loradesk.core.project import Project

# compact JSON text, as rows keep it
WEATHER = tools_text([{"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}])


def chat(last: str = "It is sunny in Paris.") -> Example:
    return Example.conversation([
        Turn("user", "Weather in Paris?"),
        Turn("assistant", "", (ToolCall("get_weather", '{"city": "Paris"}', "call_1"),)),
        Turn("tool", '{"sky": "sunny"}', name="get_weather", tool_call_id="call_1"),
        Turn("assistant", last),
        Turn("user", "Thanks!"),
        Turn("assistant", "You're welcome."),
    ], system="You are terse.", tools=WEATHER)


def test_a_conversation_mirrors_its_first_question_and_last_answer() -> None:
    row = chat()
    assert row.is_conversation and not Example("a", "b").is_conversation
    assert (row.prompt, row.completion) == ("Weather in Paris?", "You're welcome.")
    edited = row.with_field("prompt", "Weather in Rome?").with_field("completion", "Any time.")
    assert edited.turns[0].content == "Weather in Rome?" and edited.turns[-1].content == "Any time."
    assert (edited.prompt, edited.completion) == ("Weather in Rome?", "Any time.")
    assert edited.turns[1:-1] == row.turns[1:-1] and edited.tools == row.tools


def test_the_stored_record_round_trips_through_a_project_file(tmp_path) -> None:
    rows = [chat(), Example("q", "a", split="validation"), chat().with_field("completion", "Bye.")]
    project = Project()
    project.dataset.reset(rows)
    path = tmp_path / "p.loradesk"
    project.save(path)
    stored = json.loads(path.read_text(encoding="utf-8"))["dataset"]
    assert stored[0]["messages"][1]["tool_calls"][0]["function"] == {"name": "get_weather",
                                                                     "arguments": '{"city": "Paris"}'}
    assert stored[0]["tools"] == json.loads(WEATHER)
    assert list(Project.load(path).dataset.rows) == rows


def test_bad_stored_messages_name_the_message_and_field() -> None:
    with pytest.raises(RecordError, match=r"messages\[1\]\.role"):
        row_from_record({"messages": [{"role": "user", "content": "hi"}, {"role": "robot", "content": "x"}]})
    with pytest.raises(ConversationError, match=r"messages\[0\]\.content: must be text"):
        turns_from_messages([{"role": "user", "content": 3}])
    system, turns = turns_from_messages(messages(chat().turns, "sys"))
    assert (system, turns) == ("sys", chat().turns)


def test_set_field_on_a_conversation_edits_its_turns_and_undoes() -> None:
    data = Dataset([chat()])
    old = data.set_field(0, "completion", "Cheers.")
    assert data[0].turns[-1] == Turn("assistant", "Cheers.") and old == "You're welcome."
    previous = data.set_rows([(0, chat())])
    assert data[0] == chat() and previous[0][1].completion == "Cheers."


def test_duplicates_and_empties_look_at_every_turn() -> None:
    a = chat()
    b = chat(last="It rains in Paris.")  # same first question and last answer, another middle
    silent = Example.conversation([Turn("user", "hi"), Turn("assistant", "  ")])
    calls_only = Example.conversation([Turn("user", "hi"), Turn("assistant", "", (ToolCall("f", "{}"),))])
    data = Dataset([a, b, a, silent, calls_only])
    kinds = {(p.row, p.kind) for p in data.problems()}
    assert kinds == {(2, "duplicate"), (3, "empty")}
    index = ProblemIndex(data)
    assert index.problem_rows() == [2, 3]
    assert draw_split(a, 0.5, 1) == draw_split(chat(), 0.5, 1)
    assert {draw_split(Example.conversation([Turn("user", "q"), Turn("assistant", f"a{i}")]), 0.5, 7)
            for i in range(40)} == {"train", "validation"}
