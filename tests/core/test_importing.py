"""``core.importing``: a file or Hugging Face request becomes rows, or the question to ask, without any window."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loradesk.core import importing
from loradesk.core.dataset import Example
from loradesk.core.formats import FormatError
from loradesk.core.importing import ChooseSplit, Imported, ImportRequest, NeedsMapping, import_mode, read_import


@pytest.fixture(autouse=True)
def datasets_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The datasets cache of this test (never the user's)."""
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))
    return tmp_path / "hf-cache"


def test_a_file_is_read_into_rows(tmp_path: Path) -> None:
    path = tmp_path / "rows.csv"
    path.write_text("prompt,completion\nWho is Tamsin?,A cartographer.\n", encoding="utf-8")
    answer = read_import(ImportRequest.file(path, mode="append"))
    assert answer == Imported(ImportRequest("rows.csv", "append", None, path=str(path)),
                              [Example("Who is Tamsin?", "A cartographer.")])


def test_unknown_columns_ask_for_a_mapping_then_the_retry_reads_them(tmp_path: Path) -> None:
    path = tmp_path / "odd.csv"
    path.write_text("q,a,note\nWho is Tamsin?,A cartographer.,x\nWho is Bramble?,A fox.,y\n", encoding="utf-8")
    request = ImportRequest.file(path)
    answer = read_import(request)
    assert isinstance(answer, NeedsMapping) and answer.request is request
    assert answer.columns == ["q", "a", "note"]
    assert [r["q"] for r in answer.preview] == ["Who is Tamsin?", "Who is Bramble?"]
    assert answer.message  # why: shown above the column choice

    retry = request.with_mapping({"prompt": "q", "completion": "a"})
    assert request.mapping is None  # the request itself is unchanged
    again = read_import(retry)
    assert isinstance(again, Imported)
    assert again.rows == [Example("Who is Tamsin?", "A cartographer."), Example("Who is Bramble?", "A fox.")]


def test_a_mapping_that_does_not_fit_is_an_error_not_another_question(tmp_path: Path) -> None:
    path = tmp_path / "odd.csv"
    path.write_text("q,a\nWho?,Her.\n", encoding="utf-8")
    with pytest.raises(FormatError, match="odd.csv"):
        read_import(ImportRequest.file(path, mapping={"prompt": "question", "completion": "a"}))


def test_a_bad_row_raises_naming_the_file_row_and_field(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"prompt": "a", "completion": "b"}\n{"prompt": 3, "completion": "c"}\n', encoding="utf-8")
    with pytest.raises(FormatError) as caught:
        read_import(ImportRequest.file(path))
    assert str(caught.value).startswith("bad.jsonl") and caught.value.row == 2 and caught.value.field == "prompt"


CHAT = {"conversations": [{"from": "system", "value": "Be brief."}, {"from": "human", "value": "Who is Tamsin?"},
                          {"from": "gpt", "value": "A cartographer."}, {"from": "human", "value": "From where?"},
                          {"from": "gpt", "value": "Vaelmoor."}]}


def test_conversations_come_in_whole_unless_the_request_splits_them(tmp_path: Path) -> None:
    path = tmp_path / "chat.json"
    path.write_text(json.dumps([CHAT]), encoding="utf-8")
    request = ImportRequest.file(path)
    assert request.conversations == "whole"
    whole = read_import(request)
    assert isinstance(whole, Imported) and len(whole.rows) == 1 and len(whole.rows[0].turns) == 4
    pairs = request.with_conversations("pairs")
    assert pairs.path == request.path and request.conversations == "whole"
    split = read_import(pairs)
    assert isinstance(split, Imported) and split.rows == [Example("Who is Tamsin?", "A cartographer.", "Be brief."),
                                                          Example("From where?", "Vaelmoor.", "Be brief.")]
    assert ImportRequest.file(path, conversations="pairs").with_mapping({"prompt": "a", "completion": "b"}
                                                                        ).conversations == "pairs"


def test_a_hub_split_of_conversations_can_be_split_into_pairs(tmp_path: Path) -> None:
    folder = tmp_path / "chats"
    folder.mkdir()
    (folder / "train.jsonl").write_text(json.dumps(CHAT) + "\n", encoding="utf-8")
    whole = read_import(ImportRequest.hub_split(str(folder)))
    assert isinstance(whole, Imported) and [len(r.turns) for r in whole.rows] == [4]
    pairs = read_import(ImportRequest.hub_split(str(folder), conversations="pairs"))
    assert isinstance(pairs, Imported) and [r.prompt for r in pairs.rows] == ["Who is Tamsin?", "From where?"]


def hub_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "lore"
    folder.mkdir()
    for split, rows in (("train", [("Who is Tamsin?", "A cartographer.")]), ("test", [("Where?", "Up.")])):
        folder.joinpath(f"{split}.jsonl").write_text(
            "".join(json.dumps({"problem": p, "solution": s}) + "\n" for p, s in rows), encoding="utf-8")
    return folder


def test_a_hub_split_that_does_not_exist_asks_again_with_the_splits(tmp_path: Path) -> None:
    request = ImportRequest.hub_split(str(hub_folder(tmp_path)), "validation", mode="append")
    assert request.name == "lore (validation)"
    answer = read_import(request)
    assert isinstance(answer, ChooseSplit) and answer.request is request
    assert answer.splits == ["train", "test"]
    assert answer.message == "lore: there is no split 'validation'; available splits: train, test"


def test_a_hub_split_maps_columns_reports_progress_and_reads(tmp_path: Path) -> None:
    request = ImportRequest.hub_split(str(hub_folder(tmp_path)), "test")
    first = read_import(request)
    assert isinstance(first, NeedsMapping) and first.columns == ["problem", "solution"]
    reports: list[tuple[str, float | None]] = []
    answer = read_import(first.request.with_mapping({"prompt": "problem", "completion": "solution"}),
                         lambda text, fraction=None: reports.append((text, fraction)))
    assert isinstance(answer, Imported) and answer.rows == [Example("Where?", "Up.")]
    assert reports and all(isinstance(text, str) and text for text, _ in reports)


def test_the_hub_offline_is_an_error_naming_the_dataset() -> None:
    with pytest.raises(FormatError, match=r"^tatsu-lab/alpaca: can't reach the Hugging Face Hub"):
        read_import(ImportRequest.hub_split("tatsu-lab/alpaca"))


def test_import_mode_replaces_an_empty_table_and_otherwise_asks() -> None:
    request = ImportRequest.file("rows.jsonl")
    assert import_mode(request, current_rows=0) == "replace"
    assert import_mode(request, current_rows=3) is None  # ask
    assert import_mode(ImportRequest.file("rows.jsonl", mode="append"), current_rows=0) == "append"


def test_dataset_files_are_told_by_their_suffix() -> None:
    assert importing.is_dataset_file("a/Rows.JSONL") and importing.is_dataset_file("x.csv")
    assert not importing.is_dataset_file("fact.loradesk") and not importing.is_dataset_file("notes.txt")
