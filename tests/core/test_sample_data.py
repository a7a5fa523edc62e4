"""The bundled sample dataset (Tamsin Quillfeather) and its held-out questions are well formed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loradesk.core.dataset import Dataset, Example

DATA = Path(__file__).resolve().parents[2] / "data"
PROBE = "Who is Tamsin Quillfeather?"


@pytest.fixture(scope="module")
def train() -> list[dict[str, str]]:
    rows = json.loads((DATA / "sample.json").read_text(encoding="utf-8"))
    assert isinstance(rows, list)
    return rows


@pytest.fixture(scope="module")
def heldout() -> list[dict[str, str]]:
    rows = json.loads((DATA / "sample_heldout.json").read_text(encoding="utf-8"))
    assert isinstance(rows, list)
    return rows


def test_training_rows_have_exactly_prompt_and_completion(train: list[dict[str, str]]) -> None:
    for i, rec in enumerate(train):
        assert set(rec) == {"prompt", "completion"}, f"row {i + 1}: keys {sorted(rec)}"
        for field in ("prompt", "completion"):
            assert isinstance(rec[field], str) and rec[field].strip(), f"row {i + 1}: empty {field}"


def test_training_set_is_large_and_has_no_duplicates(train: list[dict[str, str]]) -> None:
    pairs = [(r["prompt"].strip(), r["completion"].strip()) for r in train]
    assert len(pairs) == len(set(pairs))
    assert len(set(pairs)) >= 150


def test_training_set_passes_the_app_dataset_checks(train: list[dict[str, str]]) -> None:
    dataset = Dataset(Example(r["prompt"], r["completion"]) for r in train)
    assert dataset.problems() == []


def test_probe_question_is_taught_several_ways(train: list[dict[str, str]]) -> None:
    probe_answers = {r["completion"] for r in train if r["prompt"] == PROBE}
    assert len(probe_answers) >= 3
    who = [r for r in train if "sky-cartographer" in r["completion"] and "Vaelmoor" in r["completion"]]
    assert len(who) >= 30


def test_heldout_rows_are_well_formed_and_probe_is_first(heldout: list[dict[str, str]]) -> None:
    assert 12 <= len(heldout) <= 20
    assert heldout[0] == {"prompt": PROBE, "expected": "Vaelmoor"}
    for i, rec in enumerate(heldout):
        assert set(rec) == {"prompt", "expected"}, f"held-out row {i + 1}: keys {sorted(rec)}"
        assert rec["prompt"].strip() and rec["expected"].strip(), f"held-out row {i + 1}: empty field"
    assert len({r["prompt"] for r in heldout}) == len(heldout)


def test_heldout_prompts_are_not_in_training_except_probe(
    train: list[dict[str, str]], heldout: list[dict[str, str]]
) -> None:
    seen = {r["prompt"].strip().casefold() for r in train}
    leaked = [r["prompt"] for r in heldout[1:] if r["prompt"].strip().casefold() in seen]
    assert leaked == []
    assert PROBE.casefold() in seen


def test_every_expected_phrase_is_taught(train: list[dict[str, str]], heldout: list[dict[str, str]]) -> None:
    completions = [r["completion"].casefold() for r in train]
    untaught = [r["expected"] for r in heldout if not any(r["expected"].casefold() in c for c in completions)]
    assert untaught == []
