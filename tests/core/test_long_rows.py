"""Very long rows are cut before tokenizing: the tokenizer never sees more than the max length needs, rows that
fit are tokenized exactly as before, and a cut row is reported as over the max length."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from loradesk.core import checks, tokenize
from loradesk.core.dataset import Example
from loradesk.core.models import load_tokenizer


@pytest.fixture(scope="module")
def tok(tiny_model_dir: Path) -> Any:
    return load_tokenizer(tiny_model_dir)


class Spy:
    """A tokenizer that records the length of every text it is handed."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.lengths = inner, []

    def __call__(self, text: str, **kwargs: Any) -> Any:
        self.lengths.append(len(text))
        return self.inner(text, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def full_ids(tok: Any, example: Example) -> list[int]:
    """The row's token ids with nothing cut beforehand (what encode did before)."""
    prompt_part, completion_part = tokenize.render(tok, example)
    return [*tok(prompt_part, add_special_tokens=False)["input_ids"],
            *tok(completion_part, add_special_tokens=False)["input_ids"]]


def test_the_bound_is_the_longest_vocabulary_entry(tok: Any) -> None:
    longest = tokenize.longest_token_chars(tok)
    assert longest == max(tokenize.MIN_TOKEN_CHARS, max(map(len, tok.get_vocab())))
    words = "The wizard lives in the tower by the sea. " * 50
    ids = tok(words, add_special_tokens=False)["input_ids"]
    assert max(len(tok.decode([i])) for i in ids) <= longest


def test_rows_that_fit_are_tokenized_whole_and_exactly(tok: Any) -> None:
    limit = 33 * tokenize.longest_token_chars(tok)
    row = Example("w " * (limit // 2), "answer")
    assert tokenize.clip(tok, row, 32) == (row, False)
    enc = tokenize.encode(tok, row, 32)
    ids = full_ids(tok, row)
    assert not enc.clipped and enc.input_ids == ids[:32] and enc.cut == len(ids) - 32
    assert tokenize.token_count(tok, row) == len(ids)


def test_a_long_field_is_cut_before_the_tokenizer_and_the_kept_tokens_are_the_same(tok: Any) -> None:
    longest = tokenize.longest_token_chars(tok)
    row = Example("The wizard lives in the tower by the sea. " * 400, "An answer.", "Be brief. " * 300)
    spy = Spy(tok)
    enc = tokenize.encode(spy, row, 32)
    template = len("".join(tokenize.render(tok, Example("", "", "x"))))
    assert max(spy.lengths) <= 2 * 33 * longest + template  # system and prompt, each cut to 33 tokens' worth
    assert enc.clipped and enc.cut > 0
    assert enc.input_ids == full_ids(tok, row)[:32]
    explained = tokenize.explain(tok, row, 32)
    assert explained.clipped and [p.token_id for p in explained.pieces[:32]] == enc.input_ids


def test_counts_beyond_the_limit_say_over(tok: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tokenize, "COUNT_LIMIT", 64)
    monkeypatch.setattr(checks, "COUNT_LIMIT", 64)
    row = Example(("The wizard lives in the tower by the sea. " * 2000).strip(), "An answer.")
    spy = Spy(tok)
    count = tokenize.token_count(spy, row)
    assert max(spy.lengths) <= 65 * tokenize.longest_token_chars(tok) + 200
    assert count > 64 and tokenize.count_text(count) == "over 64" and tokenize.count_text(count, 32) == "over 32"
    assert tokenize.count_text(64) == "64"
    (result,) = checks.run_checks([row], lambda _row: count, 32)
    assert result.notes == ("over 64 tokens, over 32 cut",)
    assert "longest: over 64" in result.message and [f.label for f in result.fixes] == ["Delete 1 long row"]
