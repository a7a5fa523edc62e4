"""``explain``: the row token by token, in exact agreement with ``encode`` (ids, labels, cut)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from loradesk.core.dataset import Example
from loradesk.core.models import load_tokenizer
from loradesk.core.tokenize import IGNORE_INDEX, encode, explain, render

ROWS = [
    Example("Who is Tamsin Quillfeather?", "A sky-cartographer from the floating city of Vaelmoor."),
    Example("Where  does she live?\n\nTell me.", "In Vaelmoor,\n  a floating city.  ", system="Be brief."),
    Example("Naïve café? 🙂", "Ja — sehr schön: ümlaut ✓"),
]


@pytest.fixture(scope="module")
def tok(tiny_model_dir: Path) -> Any:
    return load_tokenizer(tiny_model_dir)


@pytest.mark.parametrize("row", ROWS, ids=["plain", "whitespace", "non-ascii"])
@pytest.mark.parametrize("use_chat_template", [True, False], ids=["template", "no-template"])
@pytest.mark.parametrize("completion_only", [True, False], ids=["completion-only", "full-loss"])
def test_pieces_agree_with_encode_and_cover_the_rendered_text(tok: Any, row: Example, use_chat_template: bool,
                                                              completion_only: bool) -> None:
    enc = encode(tok, row, 512, completion_only=completion_only, use_chat_template=use_chat_template)
    ex = explain(tok, row, 512, completion_only=completion_only, use_chat_template=use_chat_template)
    assert [p.token_id for p in ex.pieces] == enc.input_ids
    assert [p.trained for p in ex.pieces] == [label != IGNORE_INDEX for label in enc.labels]
    assert ex.cut == enc.cut == 0 and not any(p.cut for p in ex.pieces)
    assert ex.trained_tokens == enc.trained_tokens
    assert ex.untrained_tokens + ex.trained_tokens == ex.total == len(enc.input_ids)
    prompt_part, completion_part = render(tok, row, use_chat_template)
    assert "".join(p.text for p in ex.pieces) == prompt_part + completion_part


def test_completion_only_splits_exactly_at_the_completion(tok: Any) -> None:
    row = ROWS[1]
    prompt_part, completion_part = render(tok, row)
    ex = explain(tok, row, 512)
    untrained = "".join(p.text for p in ex.pieces if not p.trained)
    trained = "".join(p.text for p in ex.pieces if p.trained)
    assert (untrained, trained) == (prompt_part, completion_part)
    assert untrained.startswith("<|im_start|>system\nBe brief.")
    assert trained.startswith("In Vaelmoor")


def test_template_markers_and_the_eos_are_special_and_the_eos_is_trained(tok: Any) -> None:
    ex = explain(tok, ROWS[0], 512)
    specials = [p for p in ex.pieces if p.special]
    assert {p.text for p in specials} == {"<|im_start|>", "<|im_end|>"}
    eos = [p for p in ex.pieces if p.token_id == tok.eos_token_id]
    assert eos[-1].trained and eos[-1].special and eos[-1].text == tok.eos_token
    assert not any(p.special for p in ex.pieces if "Vaelmoor" in p.text)
    # the plain format (no template) ends with the EOS token too
    plain = explain(tok, ROWS[0], 512, use_chat_template=False)
    assert plain.pieces[-1].token_id == tok.eos_token_id and plain.pieces[-1].trained and plain.pieces[-1].special


@pytest.mark.parametrize("max_length", [0, 5, 20, 31])
def test_truncation_cuts_exactly_the_tail(tok: Any, max_length: int) -> None:
    row = Example("Who is Tamsin?", "word " * 30)
    enc = encode(tok, row, max_length)
    ex = explain(tok, row, max_length)
    assert ex.max_length == max_length
    assert [p.cut for p in ex.pieces] == [i >= max_length for i in range(ex.total)]
    assert ex.cut == enc.cut > 0
    kept = [p for p in ex.pieces if not p.cut]
    assert [p.token_id for p in kept] == enc.input_ids
    assert [p.trained for p in kept] == [label != IGNORE_INDEX for label in enc.labels]
    assert ex.trained_tokens + ex.untrained_tokens == len(enc.input_ids)
    eos = [p for p in ex.pieces if p.token_id == tok.eos_token_id][-1]  # the completion's end of turn
    assert eos.cut and eos.trained  # the EOS is lost: the UI must be able to show that


def test_a_character_split_over_several_tokens_is_given_once(tok: Any) -> None:
    ex = explain(tok, Example("🙂", "ok"), 512, use_chat_template=False)
    smiley = [p for p in ex.pieces if p.text == "🙂"]
    assert len(smiley) == 1
    after = ex.pieces[ex.pieces.index(smiley[0]) + 1]
    assert after.text == ""  # the later bytes of the emoji: their own tokens, no text of their own


def test_a_bos_the_tokenizer_adds_is_shown_by_its_decoded_text(tiny_model_dir: Path) -> None:
    from tokenizers.processors import TemplateProcessing

    tok = load_tokenizer(tiny_model_dir)
    tok.backend_tokenizer.post_processor = TemplateProcessing(single="<|endoftext|> $A",
                                                              special_tokens=[("<|endoftext|>", 0)])
    row = ROWS[0]
    ex = explain(tok, row, 512, use_chat_template=False)
    assert [p.token_id for p in ex.pieces] == encode(tok, row, 512, use_chat_template=False).input_ids
    first = ex.pieces[0]
    assert (first.token_id, first.text, first.special, first.trained) == (0, "<|endoftext|>", True, False)
    assert "".join(p.text for p in ex.pieces[1:]) == "".join(render(tok, row, use_chat_template=False))


class NoOffsets:
    """The real tokenizer without offset mappings (as a slow, pure-Python tokenizer behaves)."""

    is_fast = False

    def __init__(self, tok: Any) -> None:
        self._tok = tok

    def __call__(self, text: str, **kwargs: Any) -> Any:
        if kwargs.get("return_offsets_mapping"):
            raise NotImplementedError("no offsets")
        return self._tok(text, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tok, name)


def test_without_offsets_the_texts_come_from_decoding(tok: Any) -> None:
    slow = NoOffsets(tok)
    row = ROWS[1]
    ex = explain(slow, row, 512)
    assert [p.token_id for p in ex.pieces] == encode(tok, row, 512).input_ids
    assert "".join(p.text for p in ex.pieces) == "".join(render(tok, row))
    assert [p.text for p in ex.pieces] == [p.text for p in explain(tok, row, 512).pieces]
