"""Importing through ``datasets.load_dataset``: real local dataset folders and files, offline (no Hub)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loradesk.core.conversation import ToolCall, Turn
from loradesk.core.dataset import Example
from loradesk.core.formats import FormatError
from loradesk.core.hub_datasets import HubDatasetError, _errors, _Ref, hub_dataset_preview, load_hub_dataset

QA_TRAIN = [{"question": f"Question {i}?", "answer": f"Answer {i}.", "id": i} for i in range(1, 6)]
QA_TEST = [{"question": "Held out?", "answer": "Yes.", "id": 99}, {"question": "Also?", "answer": "No.", "id": 98}]
ODD = [{"problem": "What is 2+2?", "solution": "4", "persona": "tutor"},
       {"problem": "Name a colour.", "solution": "Blue", "persona": ""}]


@pytest.fixture(autouse=True)
def datasets_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "hf-cache"
    monkeypatch.setenv("HF_DATASETS_CACHE", str(cache))
    return cache


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def qa_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "qa"
    write_jsonl(folder / "train.jsonl", QA_TRAIN)
    write_jsonl(folder / "test.jsonl", QA_TEST)
    return folder


def parquet_folder(tmp_path: Path, records: list[dict]) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = tmp_path / "odd-parquet"
    folder.mkdir()
    pq.write_table(pa.Table.from_pylist(records), folder / "train.parquet")
    return folder


def test_local_folder_splits_load_as_rows(tmp_path: Path, datasets_cache: Path) -> None:
    folder = qa_folder(tmp_path)
    reports: list[tuple[str, float | None]] = []
    rows = load_hub_dataset(str(folder), progress=lambda text, fraction: reports.append((text, fraction)))
    assert rows == [Example(f"Question {i}?", f"Answer {i}.") for i in range(1, 6)]
    assert load_hub_dataset(str(folder), split="test") == [Example("Held out?", "Yes."), Example("Also?", "No.")]
    assert reports and reports[0][0] == "Opening qa…" and reports[-1][1] == 1.0
    assert any(datasets_cache.iterdir())  # prepared into the given cache, not the user's


def test_row_limit_streams_only_the_first_rows(tmp_path: Path) -> None:
    folder = qa_folder(tmp_path)
    assert load_hub_dataset(str(folder), limit=2) == [Example("Question 1?", "Answer 1."),
                                                      Example("Question 2?", "Answer 2.")]
    assert len(load_hub_dataset(str(folder), split="test", limit=50)) == 2


@pytest.mark.parametrize("limit", [None, 3])
def test_unknown_split_names_the_available_ones(tmp_path: Path, limit: int | None) -> None:
    folder = qa_folder(tmp_path)
    with pytest.raises(HubDatasetError) as info:
        load_hub_dataset(str(folder), split="validation", limit=limit)
    assert str(info.value) == "qa: there is no split 'validation'; available splits: train, test"
    assert info.value.splits == ["train", "test"]


def test_unrecognised_columns_offer_a_mapping_then_map(tmp_path: Path) -> None:
    folder = parquet_folder(tmp_path, ODD)
    with pytest.raises(FormatError) as info:
        load_hub_dataset(str(folder))
    err = info.value
    assert err.columns == ["problem", "solution", "persona"]
    assert err.preview == ODD
    assert str(err).startswith("odd-parquet (train): no prompt and completion columns recognised")
    mapping = {"prompt": "problem", "completion": "solution", "system": "persona"}
    assert load_hub_dataset(str(folder), mapping=mapping) == [Example("What is 2+2?", "4", "tutor"),
                                                              Example("Name a colour.", "Blue")]
    assert load_hub_dataset(str(folder), mapping=mapping, limit=1) == [Example("What is 2+2?", "4", "tutor")]


def test_csv_folder_and_a_single_file(tmp_path: Path) -> None:
    folder = tmp_path / "csv-data"
    folder.mkdir()
    (folder / "train.csv").write_text("input,target,note\nTranslate cat,chat,x\nTranslate dog,chien,y\n",
                                      encoding="utf-8")
    (folder / "test.csv").write_text("input,target,note\nTranslate bird,oiseau,z\n", encoding="utf-8")
    assert load_hub_dataset(str(folder)) == [Example("Translate cat", "chat"), Example("Translate dog", "chien")]
    assert load_hub_dataset(str(folder), split="test") == [Example("Translate bird", "oiseau")]
    assert load_hub_dataset(str(folder / "train.csv"), limit=1) == [Example("Translate cat", "chat")]
    with pytest.raises(HubDatasetError, match=r"train\.csv: there is no split 'test'; available splits: train"):
        load_hub_dataset(str(folder / "train.csv"), split="test")


def test_chat_columns_import_like_chat_files(tmp_path: Path) -> None:
    chats = [{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi?"},
                           {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "Name?"},
                           {"role": "assistant", "content": "Quill."}]},
             {"messages": [{"role": "user", "content": "Sky?"}, {"role": "assistant", "content": "Blue."}]}]
    folder = tmp_path / "chat"
    write_jsonl(folder / "train.jsonl", chats)
    whole = [Example.conversation([Turn("user", "Hi?"), Turn("assistant", "Hello."), Turn("user", "Name?"),
                                   Turn("assistant", "Quill.")], "Be brief."), Example("Sky?", "Blue.")]
    assert load_hub_dataset(str(folder)) == whole
    assert load_hub_dataset(str(folder), limit=1) == whole[:1]
    assert load_hub_dataset(str(folder), conversations="pairs") == [
        Example("Hi?", "Hello.", "Be brief."), Example("Name?", "Quill.", "Be brief."), Example("Sky?", "Blue.")]


def test_tool_call_columns_come_in_whole(tmp_path: Path) -> None:
    tools = json.dumps([{"name": "find_map", "parameters": {"type": "object"}}])
    sharegpt = [{"conversations": [{"from": "human", "value": "Map of Vaelmoor?"},
                                   {"from": "function_call", "value": '{"name": "find_map", "arguments": {"r": "V"}}'},
                                   {"from": "observation", "value": "case 7"}, {"from": "gpt", "value": "Case 7."}],
                 "tools": tools, "id": 1}]
    openai = [{"messages": [{"role": "user", "content": "Map?"},
                            {"role": "assistant", "content": None, "tool_calls": [
                                {"id": "c1", "type": "function", "function": {"name": "find_map", "arguments": "{}"}}]},
                            {"role": "tool", "content": "case 7", "tool_call_id": "c1"},
                            {"role": "assistant", "content": "Case 7."}]},
              {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}]
    write_jsonl(tmp_path / "sharegpt" / "train.jsonl", sharegpt)
    write_jsonl(tmp_path / "openai" / "train.jsonl", openai)
    assert load_hub_dataset(str(tmp_path / "sharegpt")) == [Example.conversation(
        [Turn("user", "Map of Vaelmoor?"), Turn("assistant", "", (ToolCall("find_map", '{"r": "V"}'),)),
         Turn("tool", "case 7"), Turn("assistant", "Case 7.")],
        tools='[{"name":"find_map","parameters":{"type":"object"}}]')]
    # arrow gives every message every key (None where absent): read as absent
    assert load_hub_dataset(str(tmp_path / "openai")) == [Example.conversation(
        [Turn("user", "Map?"), Turn("assistant", "", (ToolCall("find_map", "{}", "c1"),)),
         Turn("tool", "case 7", tool_call_id="c1"), Turn("assistant", "Case 7.")]), Example("Hi", "Hello")]
    with pytest.raises(FormatError, match=r"^sharegpt \(train\), row 1: field 'conversations\[1\]' is a tool call"):
        load_hub_dataset(str(tmp_path / "sharegpt"), conversations="pairs")


def test_saved_to_disk_folder(tmp_path: Path) -> None:
    import datasets

    saved = tmp_path / "saved"
    datasets.DatasetDict({"train": datasets.Dataset.from_list(QA_TRAIN[:2]),
                          "test": datasets.Dataset.from_list(QA_TEST)}).save_to_disk(str(saved))
    assert load_hub_dataset(str(saved), split="test", limit=1) == [Example("Held out?", "Yes.")]
    assert len(load_hub_dataset(str(saved))) == 2
    with pytest.raises(HubDatasetError, match="no split 'dev'; available splits: train, test"):
        load_hub_dataset(str(saved), split="dev")


def test_several_configurations_need_a_name(tmp_path: Path) -> None:
    folder = tmp_path / "multi"
    write_jsonl(folder / "easy.jsonl", [{"question": "1+1?", "answer": "2"}])
    write_jsonl(folder / "hard.jsonl", [{"question": "Riemann?", "answer": "Open."}])
    (folder / "README.md").write_text("---\nconfigs:\n- config_name: easy\n  data_files: easy.jsonl\n"
                                      "- config_name: hard\n  data_files: hard.jsonl\n---\n", encoding="utf-8")
    with pytest.raises(HubDatasetError) as info:
        load_hub_dataset(str(folder))
    assert "several configurations; enter one of: easy, hard" in str(info.value)
    assert info.value.configs == ["easy", "hard"]
    assert load_hub_dataset(str(folder), name="hard") == [Example("Riemann?", "Open.")]
    with pytest.raises(HubDatasetError, match="no configuration 'medium'; available: easy, hard"):
        load_hub_dataset(str(folder), name="medium")


def test_bad_values_name_source_split_and_row(tmp_path: Path) -> None:
    folder = tmp_path / "nums"
    write_jsonl(folder / "train.jsonl", [{"question": "One?", "answer": 1}, {"question": "Two?", "answer": 2}])
    with pytest.raises(FormatError, match=r"^nums \(train\), row 1: field 'answer' must be text, got a number$"):
        load_hub_dataset(str(folder))


def test_preview_shows_columns_and_first_records(tmp_path: Path) -> None:
    columns, records = hub_dataset_preview(str(qa_folder(tmp_path)), split="test", limit=1)
    assert columns == ["question", "answer", "id"]
    assert records == [QA_TEST[0]]


def test_offline_hub_id_and_bad_sources_are_explained(tmp_path: Path) -> None:
    with pytest.raises(HubDatasetError, match=r"^tatsu-lab/alpaca: can't reach the Hugging Face Hub: offline mode"):
        load_hub_dataset("tatsu-lab/alpaca", revision="main")
    with pytest.raises(HubDatasetError, match="offline mode"):
        hub_dataset_preview("tatsu-lab/alpaca")
    with pytest.raises(HubDatasetError, match="there is no such folder or file"):
        load_hub_dataset(str(tmp_path / "missing" / "folder"))
    with pytest.raises(HubDatasetError, match="not a Hub dataset id"):
        load_hub_dataset("what is this?")
    with pytest.raises(HubDatasetError, match="no dataset given"):
        load_hub_dataset("  ")
    (tmp_path / "notes.txt").write_text("hello", encoding="utf-8")
    with pytest.raises(HubDatasetError, match=r"notes\.txt: can't read this kind of file"):
        load_hub_dataset(str(tmp_path / "notes.txt"))


@pytest.mark.parametrize(("raised", "says"), [
    ("gated401", "gated dataset: accept its conditions on https://huggingface.co/datasets/org/data, then log in "
                 "with `huggingface-cli login` (or set the HF_TOKEN environment variable)"),
    ("gated403", "gated dataset: ask for access on https://huggingface.co/datasets/org/data first"),
    ("missing", "no such dataset on the Hugging Face Hub (or it is private: log in"),
    ("revision", "there is no revision 'v9' of this dataset"),
    ("script", "this dataset needs a loading script, which is never run; try the revision refs/convert/parquet"),
])
def test_hub_errors_say_what_to_do(raised: str, says: str) -> None:
    """The Hub can't be reached here: raise what ``datasets`` raises (its own classes and messages)."""
    from datasets.exceptions import DatasetNotFoundError

    errors = {
        "gated401": DatasetNotFoundError("Dataset 'org/data' is a gated dataset on the Hub. "
                                         "You must be authenticated to access it."),
        "gated403": DatasetNotFoundError("Dataset 'org/data' is a gated dataset on the Hub. Visit the dataset page "
                                         "at https://huggingface.co/datasets/org/data to ask for access."),
        "missing": DatasetNotFoundError("Dataset 'org/data' doesn't exist on the Hub or cannot be accessed."),
        "revision": DatasetNotFoundError("Revision 'v9' doesn't exist for dataset 'org/data' on the Hub."),
        "script": RuntimeError("Dataset scripts are no longer supported, but found data.py"),
    }
    with pytest.raises(HubDatasetError) as info, _errors(_Ref.of("org/data", "train", None, "v9")):
        raise errors[raised]
    assert str(info.value).startswith(f"org/data: {says}")
