"""Answers and scores on a real tiny run: the phrase test, batched vs single answers, both sides streamed,
held-out rows scored one by one, and the score recorded with the run."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import pytest

from loradesk.core import runs, training
from loradesk.core.config import ModelSettings, RunConfig
from loradesk.core.formats import read_dataset, read_heldout
from loradesk.core.generation import (
    Answerer,
    AnswerPiece,
    CompareSummary,
    GenerationSettings,
    ScoredRow,
    SideAnswered,
    Tally,
    answer_both,
    compare_all,
    contains_phrase,
    record_compare_score,
)

DATA = Path(__file__).resolve().parents[2] / "data"
PROBE = "Who is Tamsin Quillfeather?"


@pytest.mark.parametrize(("answer", "expected", "ok"), [
    ("Tamsin is a CARTOGRAPHER of note.", "cartographer", True),  # case
    ("She is a cartographer.", "cartographer", True),  # punctuation around the phrase
    ("She is a cartographer.", "cartographer.", True),  # ... and inside it, when the answer has it too
    ("She is a cartographer", "cartographer!", False),  # punctuation the answer lacks counts
    ("an owl   called\n\tPip", "owl called pip", True),  # runs of whitespace
    ("an owl called Pip", "owlcalled", False),  # but whitespace is not ignored altogether
    ("a bowl of soup", "owl", True),  # a partial word matches: the phrase is a substring test
    ("Pip", "Pip the owl", False),  # the whole phrase must be there
    ("anything at all", "", False),  # an empty expected phrase never matches
    ("anything at all", "   ", False),
    ("", "owl", False),
])
def test_contains_phrase(answer: str, expected: str, ok: bool) -> None:
    assert contains_phrase(answer, expected) is ok


@pytest.fixture(scope="module")
def run_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    config = RunConfig(model=ModelSettings(kind="local", name=str(tiny_model_dir)))
    t = config.training
    t.max_steps, t.batch_size, t.logging_steps, t.learning_rate = 8, 4, 1, 5e-3
    return training.run(config, read_dataset(DATA / "sample.json"), runs_dir=tmp_path_factory.mktemp("runs")).run_dir


@pytest.fixture(scope="module")
def answerer(run_dir: Path) -> Answerer:
    return Answerer.from_run(run_dir)


@pytest.fixture(scope="module")
def lively(lively_adapter: tuple[Path, Path]) -> Answerer:
    model_dir, adapter_dir = lively_adapter
    return Answerer(model_dir, adapter_dir)


def test_answer_many_with_mixed_lengths_matches_single_answers(lively: Answerer) -> None:
    prompts = ["Who?", "Where does Tamsin Quillfeather live, and what is the name of her owl?", PROBE,
               "Name the river that runs past the lighthouse at the end of the northern road, please."]
    settings = GenerationSettings(max_new_tokens=10)
    side = lively.tokenizer.padding_side
    answers = {}
    for tuned in (False, True):
        singles = [lively.answer(p, tuned=tuned, settings=settings) for p in prompts]
        assert len(set(singles)) == len(prompts) and all(singles)  # each prompt its own answer
        # batches of 3 pad the shorter prompts on the left; the answers must not change
        assert lively.answer_many(prompts, tuned=tuned, settings=settings, batch_size=3) == singles
        answers[tuned] = singles
    assert answers[False] != answers[True]  # the adapter is on for tuned answers only
    assert lively.tokenizer.padding_side == side  # restored after the batches


TALLY_PROMPTS = ["Who?", "Where does Tamsin Quillfeather live, and what is the name of her owl?", PROBE,
                 "Name the river that runs past the lighthouse at the end of the northern road, please."]


def test_tally_counts_the_phrases_and_stops_asking_once_too_many_are_missed(lively: Answerer) -> None:
    settings = GenerationSettings(max_new_tokens=10)
    full = lively.answer_many(TALLY_PROMPTS, settings=settings)
    # rows 0 and 2 say their phrase (their first word), rows 1 and 3 never do
    expected = [full[0].split()[0], "a phrase never said", full[2].split()[0], "nor this one"]

    def tally(needed: int) -> Tally:
        return lively.tally(TALLY_PROMPTS, expected, needed, settings=settings, batch_size=2)

    assert tally(0) == Tally(2, 4, complete=True)  # every question asked: the full count
    assert tally(2) == Tally(2, 4, complete=True)  # two may be missed: still every question asked
    # all four needed: row 1 missed it, so the second batch is never asked (it could not change the outcome)
    assert tally(4) == Tally(1, 4, complete=False)
    with pytest.raises(ValueError, match="needed must be 0-4"):
        tally(5)


def test_tally_ends_every_answer_once_an_ended_answer_decides_the_outcome(lively: Answerer,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    prompts, settings = TALLY_PROMPTS[:2], GenerationSettings(max_new_tokens=10)
    inputs = lively.tokenizer(lively._prompt_text(prompts[1]), return_tensors="pt")
    with torch.inference_mode():
        ids = lively.model.generate(**inputs, **settings.generate_kwargs(),
                                    pad_token_id=lively.tokenizer.pad_token_id)[0, inputs["input_ids"].shape[1]:]
    full = lively.answer_many(prompts, settings=settings)
    # make a token of row 1 that neither row produced before (nor row 0 at all) its end of text: row 1 ends there,
    # its phrase unsaid
    row0 = lively.tokenizer(full[0], add_special_tokens=False)["input_ids"]
    end = next(int(t) for k, t in enumerate(ids.tolist()) if k >= 2 and t not in row0 and t not in ids[:k].tolist())
    monkeypatch.setattr(lively.model.generation_config, "eos_token_id", end)
    expected = ["a phrase never said", "nor this one"]

    assert lively.tally(prompts, expected, 0, settings=settings, batch_size=2) == Tally(0, 2, complete=True)
    answers, complete = lively._ask(prompts, True, settings, 2, expected, may_miss=0)
    assert not complete
    # row 0 was cut when row 1 ended, short of its full answer
    assert full[0].startswith(answers[0]) and len(answers[0]) < len(full[0])
    assert lively.tally(prompts, expected, 2, settings=settings, batch_size=2) == Tally(0, 2, complete=False)
    assert lively.tally(prompts, expected, 1, settings=settings, batch_size=2) == Tally(0, 2, complete=True)


def test_answer_both_streams_base_then_the_runs_adapter(answerer: Answerer, run_dir: Path, tiny_model_dir: Path,
                                                        reference_answer) -> None:
    events: list[AnswerPiece | SideAnswered] = []
    answers = answer_both(answerer, PROBE, GenerationSettings(max_new_tokens=12), on_event=events.append)

    assert not answers.stopped
    # what the two sides are: the plain base model, and the base model with THIS run's adapter on top
    assert answers.base == reference_answer(tiny_model_dir, PROBE, 12)
    assert answers.tuned == reference_answer(tiny_model_dir, PROBE, 12, adapter_dir=run_dir)
    finals = [e for e in events if isinstance(e, SideAnswered)]
    assert finals == [SideAnswered("base", answers.base), SideAnswered("tuned", answers.tuned)]
    for side, answer in (("base", answers.base), ("tuned", answers.tuned)):
        streamed = "".join(e.text for e in events if isinstance(e, AnswerPiece) and e.side == side)
        assert streamed.strip() == answer
    assert events.index(finals[0]) < min(i for i, e in enumerate(events) if getattr(e, "side", "") == "tuned")


def test_answer_both_stop_ends_the_answer_and_skips_the_tuned_side(lively: Answerer) -> None:
    stop = threading.Event()
    events: list[AnswerPiece | SideAnswered] = []

    def on_event(event: AnswerPiece | SideAnswered) -> None:
        events.append(event)
        stop.set()

    settings = GenerationSettings(max_new_tokens=40)
    answers = answer_both(lively, PROBE, settings, on_event, stop)
    assert answers.stopped and answers.tuned is None
    full = lively.answer(PROBE, tuned=False, settings=settings)
    assert answers.base and full.startswith(answers.base) and len(answers.base) < len(full) / 2
    assert {e.side for e in events} == {"base"}


def test_compare_all_streams_scored_rows_in_order(answerer: Answerer, heldout_path: Path) -> None:
    questions = read_heldout(heldout_path)
    rows: list[ScoredRow] = []
    statuses: list[tuple[str, float]] = []
    summary = compare_all(answerer, questions, GenerationSettings(max_new_tokens=6), on_row=rows.append,
                          batch_size=5, on_status=lambda text, f: statuses.append((text, f)))

    assert [(r.index, r.prompt, r.expected) for r in rows] == [(i, p, e) for i, (p, e) in enumerate(questions)]
    for r in rows:
        assert r.tuned is not None
        assert r.base_ok == contains_phrase(r.base, r.expected)
        assert r.tuned_ok == contains_phrase(r.tuned, r.expected)
    assert summary.total == summary.answered == len(questions) and not summary.stopped and summary.complete
    assert summary.base_correct == sum(r.base_ok for r in rows)
    assert summary.tuned_correct == sum(bool(r.tuned_ok) for r in rows)
    assert statuses[0] == (f"Answering 1–5 of {len(questions)}…", 0.0)
    assert len(statuses) == -(-len(questions) // 5)
    # the rows are the single answers the models give to each question
    settings = GenerationSettings(max_new_tokens=6)
    assert rows[-1].tuned == answerer.answer(rows[-1].prompt, tuned=True, settings=settings)
    assert rows[-1].base == answerer.answer(rows[-1].prompt, tuned=False, settings=settings)


def test_compare_all_stops_between_batches(answerer: Answerer, heldout_path: Path) -> None:
    questions = read_heldout(heldout_path)
    stop = threading.Event()
    rows: list[ScoredRow] = []

    def on_row(row: ScoredRow) -> None:
        rows.append(row)
        stop.set()

    summary = compare_all(answerer, questions, GenerationSettings(max_new_tokens=4), on_row, stop, batch_size=3)
    assert len(rows) == summary.answered == 3 < summary.total == len(questions)
    assert summary.stopped and not summary.complete
    assert "stopped" not in summary.text() and summary.text().startswith("tuned ")


def test_record_compare_score_writes_a_complete_score_only(run_dir: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    heldout = tmp_path / "held.json"
    assert not record_compare_score(run, CompareSummary(8, 4, 1, 2, stopped=True, seconds=1.0))
    assert not record_compare_score(run, CompareSummary(8, 8, 1, None, stopped=False, seconds=1.0))
    assert not record_compare_score(run, CompareSummary(0, 0, 0, 0, stopped=False, seconds=0.0))
    assert not record_compare_score(None, CompareSummary(8, 8, 1, 2, stopped=False, seconds=1.0))
    assert runs.read_run(run).score is None

    assert record_compare_score(run, CompareSummary(8, 8, 1, 6, stopped=False, seconds=1.0), heldout)
    assert runs.read_run(run).score == pytest.approx(0.75)
    detail = json.loads((run / runs.RUN_FILE).read_text())["score_detail"]
    assert detail == {"tuned": 6, "base": 1, "total": 8, "heldout": str(heldout)}

    exported = runs.export_adapter(run, tmp_path / "exported")  # an adapter folder, not a run: nothing written
    (exported / runs.RUN_FILE).unlink(missing_ok=True)
    assert not record_compare_score(exported, CompareSummary(8, 8, 1, 6, stopped=False, seconds=1.0))
    assert not (exported / runs.RUN_FILE).exists()


def test_a_conversation_row_is_asked_up_to_its_last_answer_and_compared_with_it(lively: Answerer) -> None:
    from loradesk.core.conversation import Turn
    from loradesk.core.dataset import Example

    row = Example.conversation([Turn("user", "Hi"), Turn("assistant", "Hello."), Turn("user", PROBE),
                                Turn("assistant", "A sky-cartographer.")], system="Be brief.")
    text = lively._prompt_text(row)
    assert text.endswith(f"<|im_start|>user\n{PROBE}<|im_end|>\n<|im_start|>assistant\n")
    assert "Hello.<|im_end|>" in text and "sky-cartographer" not in text
    settings = GenerationSettings(max_new_tokens=6)
    rows: list[ScoredRow] = []
    compare_all(lively, [(row, row.completion)], settings, on_row=rows.append)
    assert (rows[0].prompt, rows[0].expected) == (PROBE, "A sky-cartographer.")
    assert rows[0].base == lively.answer(row, tuned=False, settings=settings)
    assert rows[0].tuned == lively.answer(row, tuned=True, settings=settings)
