"""Rendering, label masking (exact positions), truncation and the dynamic-padding collator."""

from __future__ import annotations

from pathlib import Path

import pytest

from loradesk.core.dataset import Example
from loradesk.core.models import load_tokenizer
from loradesk.core.tokenize import IGNORE_INDEX, DataCollator, encode, render, token_count


@pytest.fixture(scope="module")
def tok(tiny_model_dir: Path):
    return load_tokenizer(tiny_model_dir)


def ids(tok, text: str) -> list[int]:
    return tok(text, add_special_tokens=False)["input_ids"]


def test_chat_template_split_is_exact_and_ends_with_eos(tok) -> None:
    row = Example("Who is Tamsin?", "A sky-cartographer.", system="Be brief.")
    prompt, completion = render(tok, row)
    assert prompt == ("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nWho is Tamsin?<|im_end|>\n"
                      "<|im_start|>assistant\n")
    assert completion == "A sky-cartographer.<|im_end|>\n"


def test_completion_only_labels_mask_exactly_the_prompt(tok) -> None:
    row = Example("Who is Tamsin?", "A sky-cartographer.")
    prompt, completion = render(tok, row)
    p_ids, c_ids = ids(tok, prompt), ids(tok, completion)
    enc = encode(tok, row, max_length=512)
    assert enc.input_ids == p_ids + c_ids
    assert enc.labels == [IGNORE_INDEX] * len(p_ids) + c_ids
    assert tok.eos_token_id in [t for t in enc.labels if t != IGNORE_INDEX]
    assert enc.cut == 0 and enc.trained_tokens == len(c_ids)


def test_full_loss_when_completion_only_is_off(tok) -> None:
    enc = encode(tok, Example("Who?", "Her."), max_length=512, completion_only=False)
    assert enc.labels == enc.input_ids


def test_plain_format_without_template(tok) -> None:
    row = Example("Who is Tamsin?", "A mapmaker.")
    prompt, completion = render(tok, row, use_chat_template=False)
    assert (prompt, completion) == ("Who is Tamsin?\n", "A mapmaker.<|im_end|>")
    enc = encode(tok, row, 512, use_chat_template=False)
    assert enc.input_ids[-1] == tok.eos_token_id == enc.labels[-1]


def test_truncation_is_counted(tok) -> None:
    row = Example("Who is Tamsin?", "word " * 60)
    full = token_count(tok, row)
    enc = encode(tok, row, max_length=20)
    assert len(enc.input_ids) == len(enc.labels) == 20
    assert enc.cut == full - 20 > 0


def test_collator_pads_to_the_longest_in_the_batch_only(tok) -> None:
    a = encode(tok, Example("Hi", "Hello."), 512)
    b = encode(tok, Example("Who is Tamsin Quillfeather?", "A sky-cartographer from Vaelmoor."), 512)
    collate = DataCollator(pad_token_id=tok.pad_token_id)
    batch = collate([{"input_ids": a.input_ids, "labels": a.labels}, {"input_ids": b.input_ids, "labels": b.labels}])
    width = max(len(a.input_ids), len(b.input_ids))
    assert tuple(batch["input_ids"].shape) == (2, width)
    short = 0 if len(a.input_ids) < len(b.input_ids) else 1
    n = min(len(a.input_ids), len(b.input_ids))
    assert batch["attention_mask"][short].tolist() == [1] * n + [0] * (width - n)
    assert batch["labels"][short].tolist()[n:] == [IGNORE_INDEX] * (width - n)
    assert batch["input_ids"][short].tolist()[n:] == [tok.pad_token_id] * (width - n)
    assert collate.trained_tokens == a.trained_tokens + b.trained_tokens
    assert collate.padded_tokens == width - n


def test_collator_pad_multiple(tok) -> None:
    a = encode(tok, Example("Hi", "Hello."), 512)
    batch = DataCollator(tok.pad_token_id, pad_to_multiple_of=8)([{"input_ids": a.input_ids, "labels": a.labels}])
    assert batch["input_ids"].shape[1] % 8 == 0
