"""Files that are not plain SFT data (feedback labels, preference pairs, images) are never read as if they were.

The small files here are shaped like the public demo sets: KTO (trl-lib/kto-mix style, text and chat),
DPO (Intel/orca_dpo_pairs, HuggingFaceH4/ultrafeedback_binarized, Anthropic/hh-rlhf, LLaMA-Factory's
ShareGPT pairs) and LLaVA-style image instructions. Rows are checked through their prompt/completion and
``texts()``, which hold for pair and conversation rows alike.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from loradesk.core.formats import FormatError, read_dataset
from loradesk.core.importing import Imported, ImportRequest, NeedsMapping, read_import
from loradesk.core.runs import load_dataset_snapshot

ROOT = Path(__file__).resolve().parents[2]
SKIP_NOTE = "Skipped 4 of 10 rows whose label marks an answer not to learn (field 'label')"
PREFERENCE_NOTE = ("the rejected answers are not used (LoRA Desk trains on answers to learn, not preferences)")


@pytest.fixture(autouse=True)
def datasets_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The datasets cache of this test (never the user's)."""
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))
    return tmp_path / "hf-cache"


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def kto_records(n: int = 10) -> list[dict]:
    """Every third row (0, 3, 6, 9) is labelled as an answer not to learn."""
    return [{"prompt": f"Question {i}?", "completion": f"{'Bad' if i % 3 == 0 else 'Good'} answer {i}.",
             "label": i % 3 != 0} for i in range(n)]


def read(path: Path) -> tuple[list, list[str]]:
    notes: list[str] = []
    rows = read_dataset(path, notes=notes)
    return rows, notes


def all_text(rows: list) -> str:
    return "\n".join(t for r in rows for t in r.texts())


# --- feedback labels -------------------------------------------------------------------------------------
def test_kto_rows_labelled_bad_are_skipped_with_one_note(tmp_path: Path) -> None:
    rows, notes = read(write_jsonl(tmp_path / "kto.jsonl", kto_records()))
    assert [r.prompt for r in rows] == [f"Question {i}?" for i in (1, 2, 4, 5, 7, 8)]
    assert "Bad" not in all_text(rows)
    assert notes == [SKIP_NOTE]


@pytest.mark.parametrize(("good", "bad"), [("good", "bad"), ("1", "0"), ("True", "False"), ("yes", "no")])
def test_label_words_in_a_csv_under_an_alias(tmp_path: Path, good: str, bad: str) -> None:
    path = tmp_path / "feedback.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["question", "answer", "kto_tag"])
        writer.writerows([["Q1?", "Keep me.", good], ["Q2?", "Drop me.", bad], ["Q3?", "Keep me too.", good]])
    rows, notes = read(path)
    assert [r.completion for r in rows] == ["Keep me.", "Keep me too."]
    assert notes == ["Skipped 1 of 3 rows whose label marks an answer not to learn (field 'kto_tag')"]


def test_numbers_as_labels(tmp_path: Path) -> None:
    records = [{"prompt": "A?", "completion": "yes", "label": 1}, {"prompt": "B?", "completion": "no", "label": 0}]
    rows, _ = read(write_jsonl(tmp_path / "numbers.jsonl", records))
    assert [r.prompt for r in rows] == ["A?"]


def test_a_file_labelled_all_bad_is_refused(tmp_path: Path) -> None:
    records = [{**r, "label": False} for r in kto_records()]
    with pytest.raises(FormatError) as caught:
        read_dataset(write_jsonl(tmp_path / "all-bad.jsonl", records))
    assert str(caught.value) == ("all-bad.jsonl: all 10 rows are labelled as answers not to learn (field 'label'); "
                                 "there is nothing to learn from")


def test_a_label_that_is_not_true_or_false_names_the_line_and_field(tmp_path: Path) -> None:
    records = kto_records()
    records[4]["label"] = "maybe"
    with pytest.raises(FormatError) as caught:
        read_dataset(write_jsonl(tmp_path / "odd-label.jsonl", records))
    assert str(caught.value).startswith("odd-label.jsonl, line 5: field 'label' is 'maybe'")
    assert caught.value.field == "label"


def test_conversational_kto_reads_the_good_chats(tmp_path: Path) -> None:
    records = [{"prompt": [{"role": "user", "content": f"Chat {i}?"}],
                "completion": [{"role": "assistant", "content": f"{'Good' if i % 2 else 'Bad'} reply {i}."}],
                "label": bool(i % 2)} for i in range(4)]
    rows, notes = read(write_jsonl(tmp_path / "kto-chat.jsonl", records))
    assert [(r.prompt, r.completion) for r in rows] == [("Chat 1?", "Good reply 1."), ("Chat 3?", "Good reply 3.")]
    assert notes == ["Skipped 2 of 4 rows whose label marks an answer not to learn (field 'label')"]


def test_a_mapping_does_not_hide_the_label(tmp_path: Path) -> None:
    records = [{"q": f"Q{i}?", "a": f"A{i}.", "label": i != 1} for i in range(3)]
    notes: list[str] = []
    rows = read_dataset(write_jsonl(tmp_path / "mapped.jsonl", records), mapping={"prompt": "q", "completion": "a"},
                        notes=notes)
    assert [r.prompt for r in rows] == ["Q0?", "Q2?"]
    assert notes == ["Skipped 1 of 3 rows whose label marks an answer not to learn (field 'label')"]


def test_a_column_mapped_by_the_user_is_not_taken_for_a_label(tmp_path: Path) -> None:
    records = [{"text": "Classify: great film", "label": "positive"}, {"text": "Classify: dull", "label": "negative"}]
    notes: list[str] = []
    rows = read_dataset(write_jsonl(tmp_path / "cls.jsonl", records), mapping={"prompt": "text", "completion": "label"},
                        notes=notes)
    assert [r.completion for r in rows] == ["positive", "negative"] and notes == []


# --- preference pairs ------------------------------------------------------------------------------------
def test_orca_style_pairs_import_the_chosen_answers(tmp_path: Path) -> None:
    records = [{"system": "Be brief.", "question": f"Q{i}?", "chosen": f"Chosen {i}.", "rejected": f"Rejected {i}."}
               for i in range(3)]
    rows, notes = read(write_jsonl(tmp_path / "orca.jsonl", records))
    assert [(r.system, r.prompt, r.completion) for r in rows] == [("Be brief.", f"Q{i}?", f"Chosen {i}.")
                                                                   for i in range(3)]
    assert "Rejected" not in all_text(rows)
    assert notes == [f"Imported the chosen answers of 3 pairs; {PREFERENCE_NOTE}"]


def test_ultrafeedback_style_chat_lists(tmp_path: Path) -> None:
    def chat(i: int, answer: str) -> list[dict]:
        return [{"role": "user", "content": f"Prompt {i}"}, {"role": "assistant", "content": answer}]

    records = [{"prompt": f"Prompt {i}", "prompt_id": str(i), "chosen": chat(i, f"Chosen {i}"),
                "rejected": chat(i, f"Rejected {i}"), "messages": chat(i, f"Chosen {i}"),
                "score_chosen": 8.0, "score_rejected": 3.5} for i in range(2)]
    rows, notes = read(write_jsonl(tmp_path / "ultrafeedback.jsonl", records))
    assert [(r.prompt, r.completion) for r in rows] == [("Prompt 0", "Chosen 0"), ("Prompt 1", "Chosen 1")]
    assert "Rejected" not in all_text(rows)
    assert notes == [f"Imported the chosen answers of 2 pairs; {PREFERENCE_NOTE}"]


def test_hh_style_transcripts_become_turns(tmp_path: Path) -> None:
    records = [{"chosen": "\n\nHuman: Hi there\n\nAssistant: Hello!\n\nHuman: Any tips?\n\nAssistant: Sleep well.",
                "rejected": "\n\nHuman: Hi there\n\nAssistant: Hello!\n\nHuman: Any tips?\n\nAssistant: Whatever."}]
    rows, notes = read(write_jsonl(tmp_path / "hh.jsonl", records))
    assert [(t.role, t.content) for t in rows[0].turns] == [
        ("user", "Hi there"), ("assistant", "Hello!"), ("user", "Any tips?"), ("assistant", "Sleep well.")]
    assert "Whatever" not in all_text(rows) and "Human:" not in all_text(rows)
    assert notes == [f"Imported the chosen answers of 1 pair; {PREFERENCE_NOTE}"]


def test_hh_style_prompt_column_with_text_answers(tmp_path: Path) -> None:
    records = [{"prompt": "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: A tip?\n\nAssistant:",
                "chosen": " Sleep well.", "rejected": " Whatever."}]
    rows, _ = read(write_jsonl(tmp_path / "full-hh.jsonl", records))
    assert [(t.role, t.content) for t in rows[0].turns] == [
        ("user", "Hi"), ("assistant", "Hello!"), ("user", "A tip?"), ("assistant", " Sleep well.")]
    assert "Human:" not in all_text(rows) and "Whatever" not in all_text(rows)


def test_sharegpt_pairs_with_one_chosen_message(tmp_path: Path) -> None:
    records = [{"conversations": [{"from": "human", "value": "Name a fruit."}],
                "chosen": {"from": "gpt", "value": "An apple."}, "rejected": {"from": "gpt", "value": "A chair."}}]
    path = tmp_path / "dpo_en_demo.json"
    path.write_text(json.dumps(records), encoding="utf-8")
    rows, _ = read(path)
    assert [(r.prompt, r.completion) for r in rows] == [("Name a fruit.", "An apple.")]


def test_a_bad_chosen_message_names_row_and_field(tmp_path: Path) -> None:
    records = [{"prompt": "Q?", "chosen": [{"role": "user", "content": "Q?"}, {"role": "assistant", "content": 7}],
                "rejected": []}]
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(records), encoding="utf-8")
    with pytest.raises(FormatError) as caught:
        read_dataset(path)
    assert str(caught.value).startswith("broken.json, row 1: field 'chosen[1].content' must be text")


def test_text_answers_without_a_prompt_column_ask_for_a_mapping(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "bare.jsonl", [{"task": "Q?", "chosen": "Yes.", "rejected": "No."}])
    answer = read_import(ImportRequest.file(path))
    assert isinstance(answer, NeedsMapping) and answer.columns == ["task", "chosen", "rejected"]
    mapped = read_import(answer.request.with_mapping({"prompt": "task", "completion": "chosen"}))
    assert isinstance(mapped, Imported) and [(r.prompt, r.completion) for r in mapped.rows] == [("Q?", "Yes.")]


def test_a_label_column_does_not_stop_the_column_question(tmp_path: Path) -> None:
    records = [{"text": "Classify: great film", "label": 2}, {"text": "Classify: dull", "label": 0}]
    answer = read_import(ImportRequest.file(write_jsonl(tmp_path / "cls.jsonl", records)))
    assert isinstance(answer, NeedsMapping) and answer.columns == ["text", "label"]


def test_only_rejected_answers_are_refused(tmp_path: Path) -> None:
    with pytest.raises(FormatError) as caught:
        read_dataset(write_jsonl(tmp_path / "rejected.jsonl", [{"prompt": "Q?", "rejected": "Bad."}]))
    assert str(caught.value) == ("rejected.jsonl: the file holds only rejected answers (field 'rejected'), no "
                                 "chosen ones; LoRA Desk trains on answers to learn")


# --- images ----------------------------------------------------------------------------------------------
def test_llava_style_rows_import_their_text_with_a_note(tmp_path: Path) -> None:
    records = [{"id": "1", "image": "coco/000000033471.jpg",
                "conversations": [{"from": "human", "value": "<image>\nWhat colour is the bus?"},
                                  {"from": "gpt", "value": "White and red."}]},
               {"id": "2", "conversations": [{"from": "human", "value": "Say hi."}, {"from": "gpt", "value": "Hi!"}]}]
    path = tmp_path / "llava.json"
    path.write_text(json.dumps(records), encoding="utf-8")
    rows, notes = read(path)
    assert [r.prompt for r in rows] == ["<image>\nWhat colour is the bus?", "Say hi."]  # the tag is kept
    assert notes == ["1 row references images ('<image>' tags, field 'image'); LoRA Desk trains on text only, "
                     "the images are not used"]


def test_image_parts_of_chat_messages_are_left_out(tmp_path: Path) -> None:
    records = [{"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "cat.png"}},
                                                          {"type": "text", "text": "What is this?"}]},
                             {"role": "assistant", "content": "A cat."}], "images": ["cat.png"]},
               {"messages": [{"role": "user", "content": "Plain?"}, {"role": "assistant", "content": "Yes."}],
                "images": []}]
    rows, notes = read(write_jsonl(tmp_path / "vision.jsonl", records))
    assert [(r.prompt, r.completion) for r in rows] == [("What is this?", "A cat."), ("Plain?", "Yes.")]
    assert notes == ["1 row references images (field 'images', image parts in 'messages'); LoRA Desk trains on "
                     "text only, the images are not used"]


def test_a_plain_file_has_no_notes(tmp_path: Path) -> None:
    rows, notes = read(write_jsonl(tmp_path / "plain.jsonl", [{"prompt": "Q?", "completion": "A picture."}]))
    assert len(rows) == 1 and notes == []


# --- through the import pipeline, the Hub path and the command line --------------------------------------
def test_read_import_carries_the_notes(tmp_path: Path) -> None:
    answer = read_import(ImportRequest.file(write_jsonl(tmp_path / "kto.jsonl", kto_records()), mode="replace"))
    assert isinstance(answer, Imported)
    assert len(answer.rows) == 6 and answer.notes == (SKIP_NOTE,)


@pytest.mark.parametrize("limit", [None, 5])
def test_a_hugging_face_dataset_goes_through_the_same_screening(tmp_path: Path, limit: int | None) -> None:
    folder = tmp_path / "pairs-with-images"
    write_jsonl(folder / "train.jsonl", [{"prompt": f"Q{i}?", "chosen": f"Chosen {i}.", "rejected": f"Rejected {i}.",
                                          "image": f"img/{i}.png" if i < 2 else ""} for i in range(5)])
    answer = read_import(ImportRequest.hub_split(str(folder), "train", limit=limit, mode="replace"))
    assert isinstance(answer, Imported)
    assert [r.completion for r in answer.rows] == [f"Chosen {i}." for i in range(5)]
    assert answer.notes == ("2 rows reference images (field 'image'); LoRA Desk trains on text only, the images "
                            "are not used", f"Imported the chosen answers of 5 pairs; {PREFERENCE_NOTE}")


def test_a_hugging_face_dataset_with_labels(tmp_path: Path) -> None:
    folder = tmp_path / "kto-folder"
    write_jsonl(folder / "train.jsonl", kto_records())
    answer = read_import(ImportRequest.hub_split(str(folder), "train"))
    assert isinstance(answer, Imported) and len(answer.rows) == 6 and answer.notes == (SKIP_NOTE,)


def test_the_command_line_prints_the_note_and_trains_on_the_good_rows(tmp_path: Path, tiny_model_dir: Path) -> None:
    data = write_jsonl(tmp_path / "kto.jsonl", kto_records())
    out = tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "loradesk", "train", str(data), "--model", str(tiny_model_dir),
                           "--max-steps", "1", "--batch-size", "2", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"kto.jsonl: {SKIP_NOTE}" in done.stderr.splitlines()
    trained = load_dataset_snapshot(out)
    assert len(trained) == 6 and "Bad" not in all_text(trained)


def test_image_columns_of_a_parquet_dataset_are_noted(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    picture = {"bytes": b"\x89PNG not really", "path": None}  # the shape of a datasets Image column
    folder = tmp_path / "vision-parquet"
    folder.mkdir()
    pq.write_table(pa.Table.from_pylist([
        {"prompt": "What is it?", "completion": "A fox.", "images": [picture], "image": picture},
        {"prompt": "Hi?", "completion": "Hello.", "images": [], "image": None},
        {"prompt": "And these?", "completion": "Two owls.", "images": [picture, picture], "image": None}]),
        folder / "train.parquet")
    answer = read_import(ImportRequest.hub_split(str(folder), "train"))
    assert isinstance(answer, Imported) and [r.completion for r in answer.rows] == ["A fox.", "Hello.", "Two owls."]
    assert answer.notes == ("2 rows reference images (field 'images', field 'image'); LoRA Desk trains on text "
                            "only, the images are not used",)
