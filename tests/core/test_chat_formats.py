"""Conversation files: ShareGPT and OpenAI chat (tool calls included) come in whole, go out unchanged."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from loradesk.core.conversation import ToolCall, Turn
from loradesk.core.dataset import Dataset, Example
from loradesk.core.formats import FormatError, columns_used, detect_format, read_dataset, read_records, write_dataset

EXAMPLE = Path(__file__).resolve().parents[2] / "data" / "examples" / "tool_calls.sharegpt.json"

WEATHER_TOOLS = [{"name": "get_weather", "description": "Weather in a city",
                  "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]
# glaive-function-calling as LLaMA-Factory ships it: ShareGPT, calls as JSON text, `tools` a JSON *string*
GLAIVE = [
    {"conversations": [
        {"from": "human", "value": "Weather in Vaelmoor?"},
        {"from": "function_call", "value": '{"name": "get_weather", "arguments": {"city": "Vaelmoor"}}'},
        {"from": "observation", "value": '{"temp": 11, "sky": "clear"}'},
        {"from": "gpt", "value": "Clear and 11 degrees."},
     ], "tools": json.dumps(WEATHER_TOOLS)},
    {"conversations": [
        {"from": "human", "value": "Compare Vaelmoor and Lune."},
        {"from": "function_call", "value": json.dumps([{"name": "get_weather", "arguments": {"city": "Vaelmoor"}},
                                                       {"name": "get_weather", "arguments": {"city": "Lune"}}])},
        {"from": "observation", "value": "[11, 4]"},
        {"from": "gpt", "value": "Vaelmoor is warmer."},
     ], "tools": json.dumps(WEATHER_TOOLS)},
]
GLAIVE_ROWS = [
    Example.conversation([
        Turn("user", "Weather in Vaelmoor?"),
        Turn("assistant", "", (ToolCall("get_weather", '{"city": "Vaelmoor"}'),)),
        Turn("tool", '{"temp": 11, "sky": "clear"}'),
        Turn("assistant", "Clear and 11 degrees."),
    ], tools=json.dumps(WEATHER_TOOLS, separators=(",", ":"))),
    Example.conversation([
        Turn("user", "Compare Vaelmoor and Lune."),
        Turn("assistant", "", (ToolCall("get_weather", '{"city": "Vaelmoor"}'),
                               ToolCall("get_weather", '{"city": "Lune"}'))),
        Turn("tool", "[11, 4]"),
        Turn("assistant", "Vaelmoor is warmer."),
    ], tools=json.dumps(WEATHER_TOOLS, separators=(",", ":"))),
]
# OpenAI fine-tuning chat JSONL with tool calls (arguments as JSON text), tool results and a `tools` list
OPENAI_TOOLS = [{"type": "function", "function": WEATHER_TOOLS[0]}]
OPENAI = [
    {"messages": [
        {"role": "system", "content": "You are a weather bot."},
        {"role": "user", "content": "Weather in Lune?"},
        {"role": "assistant", "content": "Let me look.", "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city": "Lune"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "name": "get_weather", "content": "4 degrees"},
        {"role": "assistant", "content": "It is 4 degrees in Lune."},
        {"role": "user", "content": "Thanks."},
        {"role": "assistant", "content": "Any time."},
    ], "tools": OPENAI_TOOLS},
    {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]},
]
OPENAI_ROWS = [
    Example.conversation([
        Turn("user", "Weather in Lune?"),
        Turn("assistant", "Let me look.", (ToolCall("get_weather", '{"city": "Lune"}', "call_1"),)),
        Turn("tool", "4 degrees", name="get_weather", tool_call_id="call_1"),
        Turn("assistant", "It is 4 degrees in Lune."),
        Turn("user", "Thanks."),
        Turn("assistant", "Any time."),
    ], system="You are a weather bot.", tools=json.dumps(OPENAI_TOOLS, separators=(",", ":"))),
    Example("Hi", "Hello!"),  # one exchange and no tools: a plain pair
]


def put(path: Path, records: list[dict[str, Any]]) -> Path:
    """``records`` in ``path``: a JSON array, or one object per line for ``.jsonl``."""
    lines = [json.dumps(r, ensure_ascii=False) for r in records]
    path.write_text("\n".join(lines) + "\n" if path.suffix == ".jsonl" else f"[{', '.join(lines)}]", encoding="utf-8")
    return path


def load_records(path: Path) -> list[dict[str, Any]]:
    text = path.read_text(encoding="utf-8")
    return json.loads(text) if text.lstrip().startswith("[") else [json.loads(line) for line in text.splitlines()]


def parsed(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Records with their JSON-text fields (``tools``, ``function_call`` values, call arguments) parsed."""
    out = json.loads(json.dumps(records))
    for rec in out:
        if isinstance(rec.get("tools"), str):
            rec["tools"] = json.loads(rec["tools"])
        for msg in rec.get("conversations", []):
            if msg["from"] == "function_call":
                msg["value"] = json.loads(msg["value"])
        for msg in rec.get("messages", []):
            for call in msg.get("tool_calls", []):
                call["function"]["arguments"] = json.loads(call["function"]["arguments"])
    return out


def error_of(path: Path, **kwargs: Any) -> FormatError:
    with pytest.raises(FormatError) as info:
        read_dataset(path, **kwargs)
    return info.value


# --- import: one conversation per record ----------------------------------------------------------------------
def test_glaive_style_sharegpt_comes_in_whole(tmp_path: Path) -> None:
    path = put(tmp_path / "glaive.json", GLAIVE)
    assert detect_format(path) == "sharegpt"
    assert read_dataset(path) == GLAIVE_ROWS
    assert GLAIVE_ROWS[0].prompt == "Weather in Vaelmoor?" and GLAIVE_ROWS[0].completion == "Clear and 11 degrees."


def test_openai_tool_calls_come_in_whole(tmp_path: Path) -> None:
    path = put(tmp_path / "chat.jsonl", OPENAI)
    assert detect_format(path) == "openai"
    assert read_dataset(path) == OPENAI_ROWS


def test_multi_turn_sharegpt_with_system_keeps_every_turn_in_order(tmp_path: Path) -> None:
    record = {"system": "Top-level system.", "conversations": [
        {"from": "system", "value": "Message system."},
        {"from": "human", "value": "Q1"}, {"from": "gpt", "value": "A1"},
        {"from": "human", "value": "Q2 part one"}, {"from": "user", "value": "Q2 part two"},
        {"from": "chatgpt", "value": "A2"}, {"from": "assistant", "value": "A2 continued"},
        {"from": "human", "value": "unanswered"},
    ]}
    rows = read_dataset(put(tmp_path / "multi.json", [record]))
    assert rows == [Example.conversation([
        Turn("user", "Q1"), Turn("assistant", "A1"), Turn("user", "Q2 part one"), Turn("user", "Q2 part two"),
        Turn("assistant", "A2"), Turn("assistant", "A2 continued"), Turn("user", "unanswered"),
    ], system="Top-level system.\n\nMessage system.")]
    assert (rows[0].prompt, rows[0].completion) == ("Q1", "A2 continued")


def test_content_parts_with_text_or_value_and_other_parts_left_out(tmp_path: Path) -> None:
    record = {"messages": [
        {"role": "developer", "content": [{"type": "text", "text": "Be brief."}]},
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x.png"}},
                                     {"type": "text", "text": "What is "}, {"type": "text", "value": "this?"}]},
        {"role": "assistant", "content": ["An ", "owl."]},
        {"role": "user", "content": "Sure?"},
        {"role": "assistant", "content": [{"type": "text", "value": "Yes."}]},
    ]}
    rows = read_dataset(put(tmp_path / "parts.jsonl", [record]))
    assert rows == [Example.conversation([Turn("user", "What is this?"), Turn("assistant", "An owl."),
                                          Turn("user", "Sure?"), Turn("assistant", "Yes.")], system="Be brief.")]


def test_older_openai_function_call_form(tmp_path: Path) -> None:
    record = {"messages": [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": None,
         "function_call": {"name": "get_weather", "arguments": '{"city": "Lune"}'}},
        {"role": "function", "name": "get_weather", "content": "4 degrees"},
        {"role": "assistant", "content": "4 degrees."},
    ]}
    assert read_dataset(put(tmp_path / "old.jsonl", [record]))[0].turns == (
        Turn("user", "Weather?"), Turn("assistant", "", (ToolCall("get_weather", '{"city": "Lune"}'),)),
        Turn("tool", "4 degrees", name="get_weather"), Turn("assistant", "4 degrees."))


# --- bad records: one line naming file, record and field ---------------------------------------------------
@pytest.mark.parametrize(("message", "field", "says"), [
    ({"from": "function_call", "value": '{"name": "get_weather", "arguments": {"city": '}, "conversations[1].value",
     "is not valid JSON"),
    ({"from": "function_call", "value": '{"arguments": {}}'}, "conversations[1].value.name", "missing field"),
    ({"from": "function_call", "value": '["get_weather"]'}, "conversations[1].value[0]", "must be a call"),
    ({"from": "wizard", "value": "Hi"}, "conversations[1].from", "is 'wizard'; expected one of system, human"),
    ({"from": "gpt"}, "conversations[1].value", "missing field"),
    ({"from": "gpt", "value": ["a"]}, "conversations[1].value", "must be text, got a list"),
])
def test_bad_sharegpt_messages(tmp_path: Path, message: dict, field: str, says: str) -> None:
    bad = {"conversations": [{"from": "human", "value": "Q"}, message, {"from": "gpt", "value": "A"}]}
    path = put(tmp_path / "chat.json", [GLAIVE[0], GLAIVE[1], bad])
    err = error_of(path)
    assert (err.row, err.unit, err.field) == (3, "row", field)
    assert str(err).startswith("chat.json, row 3: ") and f"field '{field}'" in str(err) and says in str(err)
    assert "\n" not in str(err)


@pytest.mark.parametrize(("record", "field", "says"), [
    ({"messages": [{"role": "user"}, {"role": "assistant", "content": "A"}]}, "messages[0].content", "missing field"),
    ({"messages": [{"role": "user", "content": "Q"}, {"role": "assistant"}]}, "messages[1].content", "missing field"),
    ({"messages": [{"role": "user", "content": "Q"},
                   {"role": "assistant", "content": "", "tool_calls": [{"id": "1"}]}]},
     "messages[1].tool_calls[0].function", "must be an object with name and arguments"),
    ({"messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}, {"role": "assistant", "content": "A"}]},
     "messages[0].content[0].text", "must be text, got a number"),
    ({"messages": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": " "}]}, "messages",
     "no assistant message that says or calls anything"),
    ({"messages": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}], "tools": "[{"},
     "tools", "is not valid JSON"),
    ({"messages": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}], "tools": {"a": 1}},
     "tools", "must be a list of tools"),
])
def test_bad_openai_records(tmp_path: Path, record: dict, field: str, says: str) -> None:
    path = put(tmp_path / "chat.jsonl", [OPENAI[0], record])
    err = error_of(path)
    assert (err.row, err.unit, err.field) == (2, "line", field)
    assert str(err).startswith("chat.jsonl, line 2: ") and f"field '{field}'" in str(err) and says in str(err)


# --- export: the same records back ----------------------------------------------------------------------------
def test_sharegpt_out_of_a_sharegpt_file_is_the_same_records(tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    write_dataset(out, read_dataset(put(tmp_path / "glaive.json", GLAIVE)), fmt="sharegpt")
    written = load_records(out)
    assert isinstance(written[0]["tools"], str)  # LLaMA-Factory's encoding: tools and calls as JSON text
    assert isinstance(written[0]["conversations"][1]["value"], str)
    assert parsed(written) == parsed(GLAIVE)
    assert read_dataset(out) == GLAIVE_ROWS


def test_openai_out_of_an_openai_file_is_the_same_records(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    write_dataset(out, read_dataset(put(tmp_path / "chat.jsonl", OPENAI)), fmt="openai")
    assert load_records(out) == OPENAI
    assert read_dataset(out) == OPENAI_ROWS


def test_sharegpt_to_openai_and_back_keeps_every_turn_and_call(tmp_path: Path) -> None:
    rows = read_dataset(EXAMPLE)
    openai = tmp_path / "tools.jsonl"
    write_dataset(openai, rows, fmt="openai")
    calls = [c for rec in load_records(openai) for m in rec["messages"] for c in m.get("tool_calls", [])]
    assert len(calls) == 6 and all(isinstance(c["function"]["arguments"], str) for c in calls)
    assert read_dataset(openai) == rows
    back = tmp_path / "back.json"
    write_dataset(back, read_dataset(openai), fmt="sharegpt")
    assert read_dataset(back) == rows
    assert parsed(load_records(back)) == parsed(json.loads(EXAMPLE.read_text(encoding="utf-8")))


def test_openai_to_sharegpt_keeps_turns_calls_and_their_ids(tmp_path: Path) -> None:
    rows = read_dataset(put(tmp_path / "chat.jsonl", OPENAI))
    sharegpt = tmp_path / "chat.json"
    write_dataset(sharegpt, rows, fmt="sharegpt")
    conv = load_records(sharegpt)[0]["conversations"]
    assert [m["from"] for m in conv] == ["system", "human", "gpt", "function_call", "observation", "gpt", "human",
                                         "gpt"]
    assert json.loads(conv[3]["value"]) == {"name": "get_weather", "arguments": {"city": "Lune"}, "id": "call_1"}
    back = read_dataset(sharegpt)[0]
    # ShareGPT has no place for a tool result's name and call id, and says text and call in two messages
    assert [t.role for t in back.turns] == ["user", "assistant", "assistant", "tool", "assistant", "user", "assistant"]
    assert back.turns[2].tool_calls == OPENAI_ROWS[0].turns[1].tool_calls
    assert back.tools == OPENAI_ROWS[0].tools and back.system == OPENAI_ROWS[0].system


@pytest.mark.parametrize("suffix", [".json", ".jsonl"])
@pytest.mark.parametrize("conversations_first", [True, False])
def test_own_formats_mix_pairs_and_conversations(tmp_path: Path, suffix: str, conversations_first: bool) -> None:
    pairs = [Example(f"Q{i}", f"A{i}", split="train" if i % 2 else "auto") for i in range(25)]
    chats = [pinned(r, "validation") for r in read_dataset(EXAMPLE)]
    rows = chats + pairs if conversations_first else pairs + chats
    path = tmp_path / f"mixed{suffix}"
    write_dataset(path, rows)
    assert read_dataset(path) == rows
    records = load_records(path)
    first, last = (records[0], records[-1]) if conversations_first else (records[-1], records[0])
    assert "messages" in first and "prompt" in last


def pinned(row: Example, split: str) -> Example:
    return Example.conversation(row.turns, row.system, split, row.tools)


@pytest.mark.parametrize(("fmt", "name"), [("csv", "CSV"), ("alpaca", "Alpaca")])
def test_csv_and_alpaca_refuse_conversations_naming_the_first(tmp_path: Path, fmt: str, name: str) -> None:
    rows = [Example("Q", "A"), Example("Q2", "A2"), *read_dataset(EXAMPLE)]
    path = tmp_path / "out.csv"
    with pytest.raises(FormatError) as info:
        write_dataset(path, rows, fmt=fmt)
    assert str(info.value) == (f"out.csv, row 3: a conversation (6 turns) cannot be written as {name}, which holds "
                               "prompt/completion pairs only; export as JSONL, ShareGPT or OpenAI chat")
    assert not path.exists()
    write_dataset(path, rows[:2], fmt=fmt)  # pairs only: written as always
    assert read_dataset(path) == rows[:2]


# --- split into pairs -------------------------------------------------------------------------------------
def test_split_into_pairs_refuses_tool_calls_naming_the_message(tmp_path: Path) -> None:
    err = error_of(put(tmp_path / "glaive.json", GLAIVE), conversations="pairs")
    assert str(err) == ("glaive.json, row 1: field 'conversations[1]' is a tool call: a conversation with tool "
                        "calls cannot be split into pairs (its replies rest on the tool results); import it whole")
    plain = [{"messages": [{"role": "user", "content": "Q"}, {"role": "tool", "content": "x"},
                           {"role": "assistant", "content": "A"}]}]
    assert "field 'messages[1]' is a tool result" in str(error_of(put(tmp_path / "t.jsonl", plain),
                                                                  conversations="pairs"))


def test_conversations_option_is_checked() -> None:
    with pytest.raises(ValueError, match="conversations must be one of whole, pairs"):
        read_records([], ["messages"], conversations="turns")  # type: ignore[arg-type]


def test_records_read_whole_or_as_pairs() -> None:
    records = [{"conversations": [{"from": "human", "value": "Q1"}, {"from": "gpt", "value": "A1"},
                                  {"from": "human", "value": "Q2"}, {"from": "gpt", "value": "A2"}],
                "system": None, "tools": None}]
    assert read_records(records) == [Example.conversation(
        [Turn("user", "Q1"), Turn("assistant", "A1"), Turn("user", "Q2"), Turn("assistant", "A2")])]
    assert read_records(records, conversations="pairs") == [Example("Q1", "A1"), Example("Q2", "A2")]
    assert columns_used(["id", "conversations", "tools", "system"]) == ["conversations", "tools", "system"]
    assert columns_used(["messages", "tools", "split", "x"]) == ["messages", "tools", "split"]


# --- the shipped example -------------------------------------------------------------------------------------
def test_example_file_is_whole_clean_and_round_trips(tmp_path: Path) -> None:
    rows = read_dataset(EXAMPLE)
    assert len(rows) == 6 and all(r.is_conversation and r.system and r.tools for r in rows)
    assert sum(len(t.tool_calls) for r in rows for t in r.turns) == 6
    assert Dataset(rows).problems() == []
    out = tmp_path / "again.json"
    write_dataset(out, rows, fmt="sharegpt")
    assert parsed(load_records(out)) == parsed(json.loads(EXAMPLE.read_text(encoding="utf-8")))


# --- the command line ---------------------------------------------------------------------------------------
ROOT = Path(__file__).resolve().parents[2]


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "loradesk", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_cli_train_split_pairs_trains_on_pairs(tmp_path: Path, tiny_model_dir: Path) -> None:
    record = {"conversations": [
        {"from": "system", "value": "Be brief."},
        {"from": "human", "value": "Who is Tamsin?"}, {"from": "gpt", "value": "A cartographer."},
        {"from": "human", "value": "From where?"}, {"from": "gpt", "value": "Vaelmoor."}]}
    data = put(tmp_path / "chat.json", [record])
    run = tmp_path / "run"
    done = cli("train", str(data), "--split-pairs", "--model", str(tiny_model_dir), "--max-steps", "1",
               "--out", str(run))
    assert done.returncode == 0, done.stderr
    trained = [json.loads(line) for line in (run / "dataset.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [(r["prompt"], r["completion"], r["system"]) for r in trained] == [
        ("Who is Tamsin?", "A cartographer.", "Be brief."), ("From where?", "Vaelmoor.", "Be brief.")]


def test_cli_reads_tool_calls_whole_and_refuses_to_split_them(tmp_path: Path) -> None:
    split = cli("train", str(EXAMPLE), "--split-pairs")
    assert split.returncode == 1
    assert split.stderr.strip().splitlines() == [
        "loradesk: error: tool_calls.sharegpt.json, row 1: field 'conversations[2]' is a tool call: a conversation "
        "with tool calls cannot be split into pairs (its replies rest on the tool results); import it whole"]
    whole = cli("train", str(EXAMPLE), "--model", str(tmp_path / "no-model"))  # read whole: it gets to the model
    assert whole.returncode == 1 and "tool_calls.sharegpt.json" not in whole.stderr
    assert whole.stderr.strip().splitlines()[-1] == f"loradesk: error: Model folder not found: {tmp_path / 'no-model'}"
