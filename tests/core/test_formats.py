"""Dataset files: round trips, format detection, conversation and column rules, and clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loradesk.core.dataset import Example
from loradesk.core.formats import (
    EXPORT_FILTER,
    EXPORT_FORMATS,
    FORMATS,
    IMPORT_FILTER,
    FormatError,
    columns_used,
    detect_format,
    preview_records,
    read_dataset,
    read_heldout,
    read_records,
    write_dataset,
)

TRICKY = [
    Example("Who is the wizard?", "The wizard Zorblax lives in the tower."),
    Example('She said "hi", then left', "Line one\nLine two\n\nLine four", system="Be brief, please."),
    Example("Commas, commas, and more, commas", "semi;colon\ttab  and  spaces  "),
    Example("Ünïcödé — 日本語 and emoji 🧙‍♂️🔥", "Réponse: ✓ 🎉", system="Sys\nwith newline"),
    Example("  leading and trailing  ", "windows\r\nline end", split="validation"),
    Example("[not json] {either}", "'single' and \"double\" quotes", split="train"),
]


def write_json(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return path


def write_jsonl(path: Path, records: list) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def error_of(path: Path, **kwargs: object) -> FormatError:
    with pytest.raises(FormatError) as info:
        read_dataset(path, **kwargs)
    return info.value


# --- round trips ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("suffix", [".json", ".jsonl", ".csv"])
def test_round_trip_keeps_every_field(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"data{suffix}"
    write_dataset(path, TRICKY)
    assert read_dataset(path) == TRICKY
    assert detect_format(path) == suffix[1:]


@pytest.mark.parametrize("fmt", ["openai", "alpaca", "sharegpt"])
def test_round_trip_through_exchange_formats(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / "export.out"
    write_dataset(path, TRICKY, fmt=fmt)
    assert detect_format(path) == fmt
    # these formats have no place for the split; everything else comes back
    assert read_dataset(path) == [Example(r.prompt, r.completion, r.system) for r in TRICKY]


def test_export_filter_labels_name_writable_formats() -> None:
    assert EXPORT_FILTER.split(";;") == list(EXPORT_FORMATS)
    assert set(EXPORT_FORMATS.values()) == set(FORMATS)
    assert "*.jsonl" in IMPORT_FILTER and "*.csv" in IMPORT_FILTER and "*.json " in IMPORT_FILTER


def test_openai_export_is_standard_chat_jsonl(tmp_path: Path) -> None:
    path = tmp_path / "chat.jsonl"
    write_dataset(path, [Example("Q", "A", system="S"), Example("Q2", "A2")], fmt="openai")
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert lines == [
        {"messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "Q"},
                      {"role": "assistant", "content": "A"}]},
        {"messages": [{"role": "user", "content": "Q2"}, {"role": "assistant", "content": "A2"}]},
    ]


def test_format_follows_suffix_and_unknown_suffix_is_refused(tmp_path: Path) -> None:
    rows = [Example("p, with comma", "c")]
    write_dataset(tmp_path / "a.csv", rows)
    assert (tmp_path / "a.csv").read_bytes() == b'prompt,completion\r\n"p, with comma",c\r\n'
    write_dataset(tmp_path / "a.json", rows)
    assert json.loads((tmp_path / "a.json").read_text(encoding="utf-8")) == [rows[0].to_record()]
    with pytest.raises(FormatError, match=r"a\.txt.*\.json, \.jsonl or \.csv"):
        write_dataset(tmp_path / "a.txt", rows)
    assert not (tmp_path / "a.txt").exists()


def test_failed_write_leaves_the_old_file_untouched(tmp_path: Path) -> None:
    path = tmp_path / "keep.json"
    write_dataset(path, TRICKY)
    before = path.read_bytes()
    with pytest.raises(TypeError):
        write_dataset(path, [Example("fine", "fine"), Example(object(), "x")])  # type: ignore[arg-type]
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["keep.json"]


def test_empty_dataset_round_trips_as_json_and_csv(tmp_path: Path) -> None:
    for name in ("empty.json", "empty.csv"):
        write_dataset(tmp_path / name, [])
        assert read_dataset(tmp_path / name) == []


# --- CSV details ------------------------------------------------------------------------------------------
def test_csv_with_bom_crlf_and_quoted_newlines(tmp_path: Path) -> None:
    path = tmp_path / "excel.csv"
    path.write_bytes('\ufeffPrompt,Completion,System\r\n"Multi\nline ""quoted"" prompt","a, b",\r\n'
                     '\r\nsecond,"x\r\ny",be nice\r\n'.encode())
    assert read_dataset(path) == [Example('Multi\nline "quoted" prompt', "a, b"),
                                  Example("second", "x\r\ny", system="be nice")]


def test_semicolon_separated_csv(tmp_path: Path) -> None:
    path = tmp_path / "excel_de.csv"
    path.write_text('prompt;completion\n"Grüße; hallo";Antwort\n', encoding="utf-8")
    assert read_dataset(path) == [Example("Grüße; hallo", "Antwort")]


# --- detection --------------------------------------------------------------------------------------------
ALPACA = [{"instruction": "Translate", "input": "chat", "output": "cat"},
          {"instruction": "Say hi", "input": "", "output": "hi", "system": "Friendly."}]
SHAREGPT = [{"conversations": [{"from": "human", "value": "Q1"}, {"from": "gpt", "value": "A1"}]}]
OPENAI = [{"messages": [{"role": "user", "content": "Q1"}, {"role": "assistant", "content": "A1"}]}]


@pytest.mark.parametrize(("name", "records", "expected"), [
    ("alpaca", ALPACA, "alpaca"), ("sharegpt", SHAREGPT, "sharegpt"), ("openai", OPENAI, "openai"),
    ("pairs", [{"prompt": "p", "completion": "c"}], None),
])
@pytest.mark.parametrize("container", ["json", "jsonl"])
def test_detects_record_shape_in_either_container(tmp_path: Path, name: str, records: list,
                                                  expected: str | None, container: str) -> None:
    path = tmp_path / f"{name}.data"  # the suffix says nothing; the content decides
    (write_json if container == "json" else write_jsonl)(path, records)
    assert detect_format(path) == (expected or container)


def test_detection_ignores_misleading_suffixes(tmp_path: Path) -> None:
    jsonl_named_json = write_jsonl(tmp_path / "lines.json", [{"prompt": "p", "completion": "c"}] * 2)
    assert detect_format(jsonl_named_json) == "jsonl"
    assert read_dataset(jsonl_named_json) == [Example("p", "c")] * 2
    csv_named_txt = tmp_path / "table.txt"
    csv_named_txt.write_text("question,answer\nQ,A\n", encoding="utf-8")
    assert detect_format(csv_named_txt) == "csv"
    assert read_dataset(csv_named_txt) == [Example("Q", "A")]
    alpaca_csv = tmp_path / "alpaca.csv"
    alpaca_csv.write_text("instruction,input,output\nAdd,2 and 3,5\n", encoding="utf-8")
    assert detect_format(alpaca_csv) == "alpaca"
    assert read_dataset(alpaca_csv) == [Example("Add\n\n2 and 3", "5")]


def test_alpaca_prompt_rule(tmp_path: Path) -> None:
    path = write_json(tmp_path / "alpaca.json", ALPACA)
    assert read_dataset(path) == [Example("Translate\n\nchat", "cat"),
                                  Example("Say hi", "hi", system="Friendly.")]


# --- conversations ----------------------------------------------------------------------------------------
def test_openai_split_into_pairs_rule(tmp_path: Path) -> None:
    conversation = {"messages": [
        {"role": "assistant", "content": "Hello! (a greeting with no question: skipped)"},
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Q1"},
        {"role": "assistant", "content": "A1"},
        {"role": "user", "content": "Q2 part one"},
        {"role": "user", "content": [{"type": "text", "text": "Q2 "}, {"type": "text", "text": "part two"}]},
        {"role": "assistant", "content": "A2"},
        {"role": "assistant", "content": "A2 continued"},
        {"role": "user", "content": "unanswered (skipped)"},
    ]}
    other = {"messages": [{"role": "user", "content": "Solo"}, {"role": "assistant", "content": "Reply"}]}
    path = write_jsonl(tmp_path / "chat.jsonl", [conversation, other])
    assert read_dataset(path, conversations="pairs") == [
        Example("Q1", "A1", system="You are terse."),
        Example("Q2 part one\n\nQ2 part two", "A2\n\nA2 continued", system="You are terse."),
        Example("Solo", "Reply"),
    ]


def test_sharegpt_split_into_pairs_rule(tmp_path: Path) -> None:
    records = [{"system": "Top-level system.", "conversations": [
        {"from": "system", "value": "Message system."},
        {"from": "human", "value": "Q1"}, {"from": "gpt", "value": "A1"},
        {"from": "human", "value": "Q2"}, {"from": "gpt", "value": "A2"},
    ]}, {"conversations": [{"from": "user", "value": "Q3"}, {"from": "assistant", "value": "A3"}]}]
    path = write_json(tmp_path / "sharegpt.json", records)
    both = "Top-level system.\n\nMessage system."
    assert read_dataset(path, conversations="pairs") == [
        Example("Q1", "A1", system=both), Example("Q2", "A2", system=both), Example("Q3", "A3")]


@pytest.mark.parametrize(("messages", "field", "says"), [
    ("not a list", "messages", "must be a list of messages, got text"),
    ([{"role": "user", "content": "Q"}], "messages", "has no assistant message that says or calls anything"),
    ([{"role": "robot", "content": "x"}], "messages[0].role", "is 'robot'; expected one of"),
    ([{"role": "user", "content": "Q"}, {"role": "assistant", "content": 3}], "messages[1].content",
     "must be text, got a number"),
    ([{"content": "Q"}], "messages[0].role", "missing field"),
    (["hi"], "messages[0]", "must be an object, got text"),
])
def test_bad_conversations(tmp_path: Path, messages: object, field: str, says: str) -> None:
    good = {"messages": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}]}
    path = write_jsonl(tmp_path / "chat.jsonl", [good, good, {"messages": messages}])
    err = error_of(path)
    assert (err.row, err.unit, err.field) == (3, "line", field)
    assert str(err).startswith("chat.jsonl, line 3: ")
    assert f"'{field}'" in str(err) and says in str(err)


def test_shape_is_decided_by_the_first_records(tmp_path: Path) -> None:
    records = [{"prompt": f"p{i}", "completion": f"c{i}"} for i in range(30)]
    records.append({"prompt": "p", "completion": "c", "messages": "stray column", "system": "late"})
    path = write_jsonl(tmp_path / "pairs.jsonl", records)
    assert detect_format(path) == "jsonl"
    rows = read_dataset(path)
    assert len(rows) == 31 and rows[-1] == Example("p", "c", system="late")


def test_forcing_a_conversation_format_on_pairs_names_the_missing_field(tmp_path: Path) -> None:
    path = write_json(tmp_path / "pairs.json", [{"prompt": "p", "completion": "c"}])
    assert str(error_of(path, fmt="openai")) == "pairs.json, row 1: missing field 'messages'"


# --- columns: aliases and mapping -------------------------------------------------------------------------
@pytest.mark.parametrize(("prompt", "completion"), [
    ("question", "answer"), ("input", "output"), ("instruction", "response"), ("input", "target"),
    ("query", "response"), ("Question", "Answer"),
])
def test_alias_columns(tmp_path: Path, prompt: str, completion: str) -> None:
    path = write_jsonl(tmp_path / "alias.jsonl", [{prompt: "P", completion: "C", "id": 7, "system": "S"}])
    assert read_dataset(path) == [Example("P", "C", system="S")]


def test_instruction_response_with_context_folds_like_alpaca(tmp_path: Path) -> None:
    path = write_json(tmp_path / "dolly.json", [
        {"instruction": "Summarise", "context": "Long text.", "response": "Short.", "category": "x"},
        {"instruction": "Hi", "context": "", "response": "Hello"}])
    assert read_dataset(path) == [Example("Summarise\n\nLong text.", "Short."), Example("Hi", "Hello")]


def test_ambiguous_aliases_ask_for_a_mapping(tmp_path: Path) -> None:
    path = write_json(tmp_path / "two.json", [{"input": "i", "output": "o", "target": "t"}])
    err = error_of(path)
    assert "ambiguous" in str(err) and "input/output" in str(err) and "input/target" in str(err)
    assert err.columns == ["input", "output", "target"]
    assert read_dataset(path, mapping={"prompt": "input", "completion": "target"}) == [Example("i", "t")]


def test_unrecognised_columns_are_listed(tmp_path: Path) -> None:
    path = tmp_path / "odd.csv"
    path.write_text("colA,colB,notes\nask,tell,n\n", encoding="utf-8")
    err = error_of(path)
    assert str(err) == ("odd.csv: no prompt and completion columns recognised (columns found: "
                        "'colA', 'colB', 'notes'); map them to prompt and completion")
    assert err.columns == ["colA", "colB", "notes"]


def test_explicit_mapping(tmp_path: Path) -> None:
    path = tmp_path / "odd.csv"
    path.write_text("colA,colB,persona,split\nask,tell,pirate,val\nask2,tell2,,\n", encoding="utf-8")
    mapping = {"prompt": "colA", "completion": "colB", "system": "persona"}
    assert read_dataset(path, mapping=mapping) == [Example("ask", "tell", "pirate", "validation"),
                                                   Example("ask2", "tell2")]
    err = error_of(path, mapping={"prompt": "colA", "completion": "colC"})
    assert "no column 'colC'" in str(err) and "'colA', 'colB', 'persona', 'split'" in str(err)
    assert err.field == "colC"
    with pytest.raises(ValueError, match="mapping needs"):
        read_dataset(path, mapping={"prompt": "colA"})


def test_unrecognised_columns_come_with_a_preview(tmp_path: Path) -> None:
    records = [{"colA": f"ask {i}", "colB": f"tell {i}", "n": i} for i in range(60)]
    err = error_of(write_jsonl(tmp_path / "odd.jsonl", records))
    assert err.columns == ["colA", "colB", "n"]
    assert err.preview == records[:50]
    assert error_of(write_json(tmp_path / "ok.json", [{"prompt": 1, "completion": "x"}])).preview is None


def test_preview_records_of_each_container(tmp_path: Path) -> None:
    path = tmp_path / "odd.csv"
    path.write_text("colA,colB\n" + "".join(f"ask {i},tell {i}\n" for i in range(80)), encoding="utf-8")
    columns, records = preview_records(path)
    assert columns == ["colA", "colB"] and len(records) == 50
    assert records[49] == {"colA": "ask 49", "colB": "tell 49"}
    chats = [{"messages": [{"role": "user", "content": "Hi"}]}, {"messages": [], "extra": True}]
    assert preview_records(write_jsonl(tmp_path / "chat.jsonl", chats), limit=5) == (["messages", "extra"], chats)
    assert preview_records(write_json(tmp_path / "one.json", [{"q": "a"}, {"q": "b"}]), limit=1) == (
        ["q"], [{"q": "a"}])
    empty = tmp_path / "empty.csv"
    empty.write_text("prompt,completion\n", encoding="utf-8")
    assert preview_records(empty) == (["prompt", "completion"], [])


@pytest.mark.parametrize("fmt", ["jsonl", "openai", "alpaca", "sharegpt"])
def test_records_read_like_files(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"data.{fmt}"
    write_dataset(path, TRICKY, fmt)
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()] if fmt in (
        "jsonl", "openai") else json.loads(path.read_text(encoding="utf-8"))
    assert read_records(records) == read_dataset(path)


def test_records_with_mapping_columns_and_errors() -> None:
    records = [{"q": "ask", "a": "tell", "who": "pirate"}, {"q": "ask2", "a": None, "who": None}]
    mapping = {"prompt": "q", "completion": "a", "system": "who"}
    assert read_records(records[:1], mapping=mapping) == [Example("ask", "tell", "pirate")]
    with pytest.raises(FormatError, match=r"^org/data \(train\), row 2: field 'a' must be text, got null$"):
        read_records(records, mapping=mapping, source="org/data (train)")
    with pytest.raises(FormatError) as info:
        read_records([], ["q", "a"], source="org/data (train)")
    assert info.value.columns == ["q", "a"] and info.value.preview == []
    assert str(info.value).startswith("org/data (train): no prompt and completion columns recognised")
    assert read_records([], ["prompt", "completion"]) == []
    with pytest.raises(FormatError, match="row 1: each record must have named fields, got a list"):
        read_records([["a", "b"]])  # type: ignore[list-item]


def test_columns_used() -> None:
    assert columns_used(["id", "question", "answer", "system_prompt", "meta"]) == ["question", "answer",
                                                                                   "system_prompt"]
    assert columns_used(["instruction", "input", "output", "text"]) == ["instruction", "input", "output"]
    assert columns_used(["id", "messages"]) == ["messages"]
    assert columns_used(["conversations", "system", "x"]) == ["conversations", "system"]
    assert columns_used(["x", "y", "z"], {"prompt": "z", "completion": "x"}) == ["x", "z"]
    with pytest.raises(FormatError) as info:
        columns_used(["x", "y"])
    assert info.value.columns == ["x", "y"]


# --- bad input --------------------------------------------------------------------------------------------
def test_message_names_file_line_and_field(tmp_path: Path) -> None:
    records = [{"prompt": f"p{i}", "completion": f"c{i}"} for i in range(6)]
    records.append({"prompt": "p", "completion": 42})
    path = write_jsonl(tmp_path / "sample.jsonl", records)
    err = error_of(path)
    assert str(err) == "sample.jsonl, line 7: field 'completion' must be text, got a number"
    assert (err.path, err.row, err.field) == (path, 7, "completion")


def test_jsonl_line_numbers_count_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "gaps.jsonl"
    path.write_text('{"prompt": "a", "completion": "b"}\n\n\n{"prompt": "a"}\n', encoding="utf-8")
    assert str(error_of(path)) == "gaps.jsonl, line 4: missing field 'completion'"


@pytest.mark.parametrize(("record", "field", "says"), [
    ({"completion": "c"}, "prompt", "missing field 'prompt'"),
    ({"prompt": None, "completion": "c"}, "prompt", "field 'prompt' must be text, got null"),
    ({"prompt": ["a"], "completion": "c"}, "prompt", "field 'prompt' must be text, got a list"),
    ({"prompt": "p", "completion": True}, "completion", "field 'completion' must be text, got true/false"),
    ({"prompt": "p", "completion": "c", "system": 1}, "system", "field 'system' must be text, got a number"),
    ({"prompt": "p", "completion": "c", "split": "test"}, "split", "field 'split' is 'test'"),
])
def test_bad_records_in_a_json_array(tmp_path: Path, record: dict, field: str, says: str) -> None:
    path = write_json(tmp_path / "data.json", [{"prompt": "p", "completion": "c"}, record])
    err = error_of(path)
    assert (err.row, err.field) == (2, field)
    assert str(err).startswith("data.json, row 2: ") and says in str(err)


def test_record_that_is_not_an_object(tmp_path: Path) -> None:
    path = write_json(tmp_path / "data.json", [{"prompt": "p", "completion": "c"}, "just text"])
    assert str(error_of(path)) == ("data.json, row 2: each record must be an object with named fields, "
                                   "got text")
    path = tmp_path / "data.jsonl"
    path.write_text('{"prompt": "p", "completion": "c"}\n[1, 2]\n', encoding="utf-8")
    assert str(error_of(path)) == ("data.jsonl, line 2: each line must be a JSON object with named fields, "
                                   "got a list")


def test_invalid_json_gives_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('[\n  {"prompt": "p", "completion": "c"},\n  {"prompt": "p" "completion": "c"}\n]\n',
                    encoding="utf-8")
    err = error_of(path)
    assert (err.line, err.column) == (3, 18)
    assert str(err) == "broken.json, line 3, column 18: invalid JSON: Expecting ',' delimiter"


def test_a_file_cut_inside_a_string_says_where_the_string_starts(tmp_path: Path) -> None:
    """Python's message ("Unterminated string starting at") expects a position after it; ours reads whole."""
    from loradesk.core.project import Project, ProjectError

    path = tmp_path / "cut.json"
    path.write_text('[{"prompt": "p", "completion": "c', encoding="utf-8")
    assert str(error_of(path)) == ("cut.json, line 1, column 32: invalid JSON: Unterminated string "
                                   "(it starts there)")
    project = tmp_path / "cut.loradesk"
    project.write_text('{"format": "loradesk-project", "dataset": [{"prompt": "Wh', encoding="utf-8")
    with pytest.raises(ProjectError) as caught:
        Project.load(project)
    assert str(caught.value).endswith("invalid JSON at line 1, column 55: Unterminated string (it starts there)")


def test_invalid_jsonl_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.jsonl"
    path.write_text('{"prompt": "p", "completion": "c"}\n{"prompt": "p", "completion": "c"}\n'
                    '{"prompt": "p", "completion": "c",}\n', encoding="utf-8")
    err = error_of(path)
    assert (err.row, err.unit) == (3, "line")
    assert str(err).startswith("broken.jsonl, line 3: invalid JSON at column 35")


def test_top_level_must_be_a_list(tmp_path: Path) -> None:
    path = tmp_path / "object.json"
    path.write_text('{\n  "prompt": "p",\n  "completion": "c"\n}\n', encoding="utf-8")
    assert str(error_of(path)) == ("object.json: the file must hold a JSON array of records "
                                   "(or one JSON object per line), not an object")
    number = write_json(tmp_path / "number.json", 42)
    assert "not a number" in str(error_of(number))


@pytest.mark.parametrize("name", ["data.json", "data.jsonl", "data.csv"])
def test_non_utf8_names_the_line(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    good = b"prompt,completion\n" if name.endswith(".csv") else b'{"prompt": "p", "completion": "c"}\n'
    bad = b"caf\xe9,x\n" if name.endswith(".csv") else b'{"prompt": "caf\xe9", "completion": "c"}\n'
    if name.endswith(".json"):
        good, bad = b"[\n" + good.rstrip() + b",\n", bad.rstrip() + b"\n]\n"
    path.write_bytes(good + bad)
    err = error_of(path)
    line = 3 if name.endswith(".json") else 2
    assert err.line == line
    assert str(err).startswith(f"{name}, line {line}, column ") and "not UTF-8" in str(err)


def test_utf16_is_explained(tmp_path: Path) -> None:
    path = tmp_path / "utf16.csv"
    path.write_bytes("prompt,completion\nq,a\n".encode("utf-16"))
    assert str(error_of(path)) == "utf16.csv: the file is UTF-16 text; save it as UTF-8"


@pytest.mark.parametrize("content", [b"", b"  \n\n\t", b"\xef\xbb\xbf"])
@pytest.mark.parametrize("name", ["empty.json", "empty.jsonl", "empty.csv"])
def test_empty_file(tmp_path: Path, content: bytes, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    assert str(error_of(path)) == f"{name}: the file is empty"
    with pytest.raises(FormatError, match="empty"):
        detect_format(path)


def test_csv_row_problems(tmp_path: Path) -> None:
    path = tmp_path / "rows.csv"
    path.write_text("prompt,completion\np,c\nonly prompt\n", encoding="utf-8")
    assert str(error_of(path)) == "rows.csv, row 2: missing field 'completion'"
    path.write_text("prompt,completion\np,c\np,c\nunquoted, comma,here\n", encoding="utf-8")
    err = error_of(path)
    assert (err.row, err.field) == (3, None)
    assert str(err) == ("rows.csv, row 3: 3 values but the header has 2 columns (line 4); "
                        "quote values that contain commas")
    path.write_text("prompt,prompt,completion\na,b,c\n", encoding="utf-8")
    assert str(error_of(path)) == "rows.csv, line 1: column 'prompt' appears more than once in the header"


def test_missing_file_is_a_format_error(tmp_path: Path) -> None:
    with pytest.raises(FormatError, match=r"nowhere\.json: can't read the file"):
        read_dataset(tmp_path / "nowhere.json")


def test_nothing_is_half_imported(tmp_path: Path) -> None:
    records = [{"prompt": f"p{i}", "completion": f"c{i}"} for i in range(1000)] + [{"prompt": "last"}]
    path = write_jsonl(tmp_path / "almost.jsonl", records)
    with pytest.raises(FormatError, match="line 1001: missing field 'completion'"):
        read_dataset(path)


# --- held-out questions -----------------------------------------------------------------------------------
def test_read_heldout(tmp_path: Path) -> None:
    data = [{"prompt": "Who is the wizard?", "expected": "Zorblax"},
            {"prompt": "Where?", "expected": "tower"}]
    assert read_heldout(write_json(tmp_path / "h.json", data)) == [("Who is the wizard?", "Zorblax"),
                                                                    ("Where?", "tower")]
    assert read_heldout(write_jsonl(tmp_path / "h.jsonl", data)) == [("Who is the wizard?", "Zorblax"),
                                                                      ("Where?", "tower")]


@pytest.mark.parametrize(("record", "says"), [
    ({"prompt": "q"}, "h.jsonl, line 2: missing field 'expected'"),
    ({"prompt": "q", "expected": 3}, "h.jsonl, line 2: field 'expected' must be text, got a number"),
    ({"prompt": "q", "expected": "  "}, "h.jsonl, line 2: field 'expected' is empty"),
])
def test_bad_heldout(tmp_path: Path, record: dict, says: str) -> None:
    path = write_jsonl(tmp_path / "h.jsonl", [{"prompt": "p", "expected": "e"}, record])
    with pytest.raises(FormatError) as info:
        read_heldout(path)
    assert str(info.value) == says


# --- size -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".csv"])
def test_hundred_thousand_rows_round_trip(tmp_path: Path, suffix: str) -> None:
    """A file of many megabytes comes back row for row (how long it takes: benchmarks/file_formats.py)."""
    rows = [Example(f"Question {i}, with a comma?", f"Answer {i}\nsecond line") for i in range(100_000)]
    path = tmp_path / f"big{suffix}"
    write_dataset(path, rows)
    assert path.stat().st_size > 2_000_000
    assert read_dataset(path) == rows
