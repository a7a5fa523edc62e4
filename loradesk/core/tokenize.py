"""Turn rows into training tensors: chat template (or plain text), completion-only labels, dynamic padding.

A pair is rendered as two strings whose concatenation is the full training text: the *prompt part*
(system + user turn + the assistant header) and the *completion part* (the answer and the end-of-turn /
EOS token). They are tokenized separately, so the boundary between "no loss" and "loss" is exact. A
conversation row is rendered whole and cut into one segment per turn the same way
(:mod:`loradesk.core.chat_render`): the loss goes on its assistant turns, never on user, tool or system text.

Very long fields are cut *before* tokenizing (a 50 MB cell took minutes and gigabytes in the tokenizer):
no token spans more characters than the tokenizer's longest vocabulary entry (81 for the built-in model),
so a field longer than ``(n + 1) x`` that many characters surely makes more than ``n`` tokens. Cutting
it there keeps every token within ``n`` as it was; rows that fit are tokenized whole, so their counts
are exact. A cut row is known only to be longer than ``n`` tokens (:func:`count_text` says so).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from loradesk.core import chat_render, system_role
from loradesk.core.config import describe_fields
from loradesk.core.dataset import CompactRow, Example, expand_rows

IGNORE_INDEX = -100
#: The largest max length the settings allow: token counts (which do not depend on the max length) are
#: exact up to here; a longer row is counted only as far as needed to know it is longer.
COUNT_LIMIT = int(next(f for f in describe_fields("training") if f.name == "max_length").maximum or 131_072)
#: The fewest characters per token assumed even for a tokenizer whose vocabulary is all short pieces.
MIN_TOKEN_CHARS = 16


@dataclass
class Encoded:
    """One tokenized row: ``labels`` is -100 where no loss is taken; ``cut`` counts tokens lost to max_length."""

    input_ids: list[int]
    labels: list[int]
    cut: int = 0  # at least this many when ``clipped``
    clipped: bool = False  # a field was so long that it was cut before tokenizing
    note: str = ""  # how the chat template made the row fall back (chat_render.TEMPLATE_FALLBACK_NOTE)

    @property
    def trained_tokens(self) -> int:
        return sum(1 for t in self.labels if t != IGNORE_INDEX)


def has_chat_template(tokenizer: Any) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def chat_messages(example: Example | str, system: str = "") -> list[dict[str, str]]:
    """The chat messages for a row's prompt (or a bare prompt string)."""
    prompt = example.prompt if isinstance(example, Example) else example
    system = example.system if isinstance(example, Example) else system
    msgs = [{"role": "system", "content": system}] if system else []
    msgs.append({"role": "user", "content": prompt})
    return msgs


def render_prompt(tokenizer: Any, example: Example | str, use_chat_template: bool = True,
                  tools_as_text: bool = False) -> str:
    """The text the model sees before it answers (what generation feeds it too); for a conversation row,
    its turns before the last assistant turn (:func:`loradesk.core.chat_render.prompt_text`)."""
    if isinstance(example, Example) and example.turns:
        return chat_render.prompt_text(tokenizer, example, use_chat_template and has_chat_template(tokenizer),
                                       tools_as_text)
    if use_chat_template and has_chat_template(tokenizer):
        return _template_text(tokenizer, chat_messages(example), generation=True)
    prompt = example.prompt if isinstance(example, Example) else example
    system = example.system if isinstance(example, Example) else ""
    return (f"{system}\n" if system else "") + prompt + "\n"


def _template_text(tokenizer: Any, msgs: list[dict[str, str]], generation: bool = False) -> str:
    """A pair's messages through the chat template (a system prompt in the first user message where it has no
    system role); a template that refuses them raises :class:`~loradesk.core.chat_render.TemplateError`."""
    try:
        return tokenizer.apply_chat_template(system_role.template_messages(tokenizer, msgs), tokenize=False,
                                             add_generation_prompt=generation)
    except Exception as exc:  # jinja's errors and the template's own raise_exception() of all kinds
        raise chat_render.TemplateError(f"the chat template refuses these messages ({exc})") from None


def render(tokenizer: Any, example: Example, use_chat_template: bool = True) -> tuple[str, str]:
    """``(prompt_part, completion_part)``; the completion part always ends with the EOS token."""
    eos = tokenizer.eos_token or ""
    prompt_part = render_prompt(tokenizer, example, use_chat_template)
    if use_chat_template and has_chat_template(tokenizer):
        answer = {"role": "assistant", "content": example.completion}
        full = _template_text(tokenizer, [*chat_messages(example), answer])
        if full.startswith(prompt_part):
            completion_part = full[len(prompt_part):]
            if eos and eos not in completion_part:
                completion_part += eos
            return prompt_part, completion_part
    return prompt_part, example.completion + eos


#: A lone surrogate: a Python string can hold one (a JSON file's broken ``\\ud800`` escape), no UTF-8 file
#: or tokenizer can.
LONE_SURROGATE = re.compile("[\ud800-\udfff]")
_LONGEST: dict[int, tuple[Any, int]] = {}
_LONGEST_LOCK = threading.Lock()


def longest_token_chars(tokenizer: Any) -> int:
    """How many characters one token can cover at most: the longest vocabulary entry (cached per tokenizer).

    Vocabulary entries are written one character per byte (byte-level BPE) or per character
    (SentencePiece), so no token covers more characters of a text than its entry is long.
    """
    with _LONGEST_LOCK:
        known = _LONGEST.get(id(tokenizer))
        if known is not None and known[0] is tokenizer:
            return known[1]
    try:
        longest = _longest_entry(tokenizer)
    except (AttributeError, NotImplementedError, TypeError):
        longest = 0
    longest = max(longest, MIN_TOKEN_CHARS)
    with _LONGEST_LOCK:
        _LONGEST[id(tokenizer)] = (tokenizer, longest)
    return longest


def _longest_entry(tokenizer: Any) -> int:
    """The longest vocabulary entry's length. A Rust tokenizer's entries are read one by one: its
    ``get_vocab()`` builds the whole dictionary in one call that holds the interpreter lock (20 ms alone on
    a 49k vocabulary, over 130 ms measured in the window while a job thread at a low priority had to share
    the processor), whereas a loop lets a waiting thread (the window's) in between."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return max(map(len, tokenizer.get_vocab()), default=0)
    entry = backend.id_to_token
    return max((len(entry(i) or "") for i in range(backend.get_vocab_size(with_added_tokens=True))), default=0)


def clip(tokenizer: Any, example: Example, max_tokens: int) -> tuple[Example, bool]:
    """``example`` with each field cut to the characters that surely make more than ``max_tokens`` tokens;
    ``True`` when something was cut (the row is then longer than ``max_tokens`` tokens). Lone surrogates
    become U+FFFD, which tokenizers can read."""
    limit = (max(0, max_tokens) + 1) * longest_token_chars(tokenizer)
    if example.turns:
        return chat_render.clip_turns(example, limit, _readable)
    clipped = len(example.prompt) > limit or len(example.completion) > limit or len(example.system) > limit
    if clipped:
        example = replace(example, prompt=example.prompt[:limit], completion=example.completion[:limit],
                          system=example.system[:limit])
    if any(LONE_SURROGATE.search(t) for t in (example.prompt, example.completion, example.system)):
        # A lone surrogate (from a broken "\ud800" escape) makes tokenizers fail; shown as U+FFFD instead.
        # Training refuses such rows before it gets here; the Checks panel flags and removes them.
        example = replace(example, prompt=LONE_SURROGATE.sub("\ufffd", example.prompt),
                          completion=LONE_SURROGATE.sub("\ufffd", example.completion),
                          system=LONE_SURROGATE.sub("\ufffd", example.system))
    return example, clipped


def _readable(text: str) -> str:
    """``text`` with lone surrogates as U+FFFD (which tokenizers can read)."""
    return LONE_SURROGATE.sub("\ufffd", text) if LONE_SURROGATE.search(text) else text


def segments(tokenizer: Any, example: Example, completion_only: bool = True, use_chat_template: bool = True,
             assistant_turns: str = "all", tools_as_text: bool = False) -> chat_render.Rendered:
    """A row's training text as segments with their loss flag: a pair's two parts (the completion part is
    turn 1, the rest turn 0), or a conversation's turns (:func:`loradesk.core.chat_render.segments`)."""
    templated = use_chat_template and has_chat_template(tokenizer)
    if example.turns:
        return chat_render.segments(tokenizer, example, templated, completion_only, assistant_turns, tools_as_text)
    prompt_part, completion_part = render(tokenizer, example, use_chat_template)
    return chat_render.Rendered([chat_render.Segment(prompt_part, not completion_only),
                                 chat_render.Segment(completion_part, True)])


def _segment_ids(tokenizer: Any, rendered: chat_render.Rendered, templated: bool) -> list[list[int]]:
    """Each segment's token ids, tokenized on its own (the first with the tokenizer's usual special tokens
    in the plain format: a chat template writes its own BOS)."""
    return [tokenizer(seg.text, add_special_tokens=not templated and n == 0)["input_ids"]
            for n, seg in enumerate(rendered.segments)]


def count_text(count: int, minus: int = 0) -> str:
    """``count - minus`` tokens for people: ``"1,234"``, or ``"over 130,816"`` when ``count`` is beyond
    :data:`COUNT_LIMIT`, where :func:`token_count` stops counting a long row exactly."""
    return f"over {COUNT_LIMIT - minus:,}" if count > COUNT_LIMIT else f"{count - minus:,}"


def encode(tokenizer: Any, example: Example, max_length: int, completion_only: bool = True,
           use_chat_template: bool = True, assistant_turns: str = "all", tools_as_text: bool = False) -> Encoded:
    """Token ids and labels for one row, cut to ``max_length`` from the end. ``assistant_turns`` and
    ``tools_as_text`` matter for conversation rows only (see :mod:`loradesk.core.chat_render`)."""
    example, clipped = clip(tokenizer, example, max_length)
    if example.turns:
        templated = use_chat_template and has_chat_template(tokenizer)
        rendered = chat_render.segments(tokenizer, example, templated, completion_only, assistant_turns,
                                        tools_as_text)
        input_ids, labels = [], []
        for seg, ids in zip(rendered.segments, _segment_ids(tokenizer, rendered, templated), strict=True):
            input_ids += ids
            labels += ids if seg.trained else [IGNORE_INDEX] * len(ids)
        cut = max(0, len(input_ids) - max_length)
        return Encoded(input_ids[:max_length], labels[:max_length], cut, clipped, rendered.note)
    prompt_part, completion_part = render(tokenizer, example, use_chat_template)
    templated = use_chat_template and has_chat_template(tokenizer)
    # A chat template writes its own BOS; the plain format gets the tokenizer's usual special tokens.
    prompt_ids = tokenizer(prompt_part, add_special_tokens=not templated)["input_ids"]
    completion_ids = tokenizer(completion_part, add_special_tokens=False)["input_ids"]
    input_ids = [*prompt_ids, *completion_ids]
    prompt_labels = [IGNORE_INDEX] * len(prompt_ids) if completion_only else list(prompt_ids)
    labels = [*prompt_labels, *completion_ids]
    cut = max(0, len(input_ids) - max_length)
    if cut:
        input_ids, labels = input_ids[:max_length], labels[:max_length]
    return Encoded(input_ids, labels, cut, clipped)


#: :func:`answer_start` of a row with no token to train at all (the "empty" check reports such rows).
NO_ANSWER = 1 << 62


def answer_start(tokenizer: Any, example: Example, completion_only: bool = True, use_chat_template: bool = True,
                 assistant_turns: str = "all", tools_as_text: bool = False) -> int:
    """How many tokens come before a row's first trained token (:data:`NO_ANSWER` when none is trained): a
    row whose answer starts at or beyond the max length has nothing left to train once cut."""
    enc = encode(tokenizer, example, COUNT_LIMIT, completion_only, use_chat_template, assistant_turns, tools_as_text)
    return next((n for n, label in enumerate(enc.labels) if label != IGNORE_INDEX), NO_ANSWER)


def token_count(tokenizer: Any, example: Example, use_chat_template: bool = True,
                tools_as_text: bool = False) -> int:
    """How many tokens the full training text of a row takes, before any cut: exact up to
    :data:`COUNT_LIMIT`; beyond it, some number over it (see :func:`count_text`)."""
    example, _ = clip(tokenizer, example, COUNT_LIMIT)
    if example.turns:
        templated = use_chat_template and has_chat_template(tokenizer)
        rendered = chat_render.segments(tokenizer, example, templated, tools_as_text=tools_as_text)
        return sum(map(len, _segment_ids(tokenizer, rendered, templated)))
    prompt_part, completion_part = render(tokenizer, example, use_chat_template)
    templated = use_chat_template and has_chat_template(tokenizer)
    return (len(tokenizer(prompt_part, add_special_tokens=not templated)["input_ids"])
            + len(tokenizer(completion_part, add_special_tokens=False)["input_ids"]))


def _process_tokenizer(model_dir: str, trust_remote_code: bool) -> tuple[Any, threading.Lock]:
    from pathlib import Path

    from loradesk.core import models

    return models.shared_tokenizer(Path(model_dir), trust_remote_code)


def count_records(model_dir: str, trust_remote_code: bool, use_chat_template: bool,
                  rows: Sequence[Example | CompactRow], tools_as_text: bool = False) -> list[int]:
    """:func:`token_count` of ``rows`` (rows, or their :func:`~loradesk.core.dataset.compact_row` form), with
    the process's shared tokenizer of ``model_dir`` (loaded once per process and kept: the worker process counts
    chunk by chunk)."""
    tokenizer, lock = _process_tokenizer(model_dir, trust_remote_code)
    with lock:
        return [token_count(tokenizer, row, use_chat_template, tools_as_text) for row in expand_rows(rows)]


def answer_starts_records(model_dir: str, trust_remote_code: bool, rows: Sequence[Example],
                          **settings: Any) -> list[int]:
    """:func:`answer_start` of ``rows`` with the process's shared tokenizer; ``settings`` are its keyword
    arguments (``completion_only``, ``use_chat_template``, ``assistant_turns``, ``tools_as_text``)."""
    tokenizer, lock = _process_tokenizer(model_dir, trust_remote_code)
    out = []
    with lock:
        for row in rows:
            try:
                out.append(answer_start(tokenizer, row, **settings))
            except chat_render.TemplateError:  # training names such a row; the check has nothing to say
                out.append(NO_ANSWER)
    return out


def explain_record(model_dir: str, trust_remote_code: bool, row: Example, max_length: int,
                   **settings: Any) -> Explained:
    """:func:`explain` of ``row`` with the process's shared tokenizer; ``settings`` are :func:`explain`'s
    keyword arguments (``completion_only``, ``use_chat_template``, ``assistant_turns``, ``tools_as_text``)."""
    tokenizer, lock = _process_tokenizer(model_dir, trust_remote_code)
    with lock:
        return explain(tokenizer, row, max_length, **settings)


@dataclass
class TokenPiece:
    """One token of a row as the model sees it.

    ``text`` is the token's exact span of the rendered row (empty for the later pieces of a character that
    the tokenizer splits over several tokens; the decoded token for a token the tokenizer adds itself, such
    as a BOS). ``trained``: the token carries loss (for a cut token: it would, were it kept). ``cut``: it
    lies beyond ``max_length`` and is dropped. ``special``: one of the tokenizer's special tokens.
    ``turn``/``role``: the conversation turn the token belongs to (-1 and ``"system"`` for the system
    prompt, -1 and ``""`` for template text of no turn, and for every token of a pair).
    """

    text: str
    token_id: int
    trained: bool
    cut: bool
    special: bool
    turn: int = -1
    role: str = ""


@dataclass
class Explained:
    """A row's tokens in order, the cut ones (beyond ``max_length``) included at the end."""

    pieces: list[TokenPiece]
    max_length: int
    clipped: bool = False  # the row was too long to tokenize whole: more tokens are cut than ``pieces`` hold
    conversation: bool = False  # the pieces know their turns (a conversation row)
    note: str = ""  # something the row's text does not show (a template fallback, tool calls it drops)

    @property
    def total(self) -> int:
        """All tokens of the row, before the cut."""
        return len(self.pieces)

    @property
    def trained_tokens(self) -> int:
        """Kept tokens that carry loss (the completion and its EOS; everything with completion-only off)."""
        return sum(1 for p in self.pieces if p.trained and not p.cut)

    @property
    def untrained_tokens(self) -> int:
        """Kept tokens without loss (the prompt and the template around it)."""
        return sum(1 for p in self.pieces if not p.trained and not p.cut)

    @property
    def cut(self) -> int:
        """Tokens lost to ``max_length``."""
        return sum(1 for p in self.pieces if p.cut)


def special_token_ids(tokenizer: Any) -> set[int]:
    """The ids of the tokenizer's special tokens: BOS/EOS/pad and special added tokens (chat markers)."""
    ids = set(getattr(tokenizer, "all_special_ids", None) or [])
    added = getattr(tokenizer, "added_tokens_decoder", None) or {}
    ids.update(i for i, token in added.items() if getattr(token, "special", False))
    return ids


def _decode_one(tokenizer: Any, token_id: int) -> str:
    return tokenizer.decode([token_id], skip_special_tokens=False, clean_up_tokenization_spaces=False)


def _decoded_texts(tokenizer: Any, ids: list[int]) -> list[str]:
    """Each token's text by decoding it after a few tokens of context (keeps the leading spaces that a
    lone-token decode loses); a lone-token decode where that context trick does not apply."""
    out = []
    for i, token_id in enumerate(ids):
        lo = max(0, i - 4)
        before = tokenizer.decode(ids[lo:i], skip_special_tokens=False, clean_up_tokenization_spaces=False)
        upto = tokenizer.decode(ids[lo:i + 1], skip_special_tokens=False, clean_up_tokenization_spaces=False)
        out.append(upto[len(before):] if upto.startswith(before) else _decode_one(tokenizer, token_id))
    return out


def _token_texts(tokenizer: Any, text: str, add_special_tokens: bool) -> tuple[list[int], list[str]]:
    """Token ids of ``text`` (exactly as :func:`encode` gets them) and each token's piece of ``text``."""
    enc = None
    if getattr(tokenizer, "is_fast", False):
        try:
            enc = tokenizer(text, add_special_tokens=add_special_tokens, return_offsets_mapping=True)
        except (NotImplementedError, ValueError, TypeError):
            enc = None
    if enc is None or "offset_mapping" not in enc:
        ids = list(tokenizer(text, add_special_tokens=add_special_tokens)["input_ids"])
        return ids, _decoded_texts(tokenizer, ids)
    ids = list(enc["input_ids"])
    texts: list[str] = []
    pos = 0  # text up to here has been given to a token
    last_real = None
    for i, (token_id, (start, end)) in enumerate(zip(ids, enc["offset_mapping"], strict=True)):
        if end <= start:  # covers nothing of the text: a token the tokenizer adds itself (BOS)
            texts.append(_decode_one(tokenizer, token_id))
        elif end <= pos:  # a later byte of a character already given to the token before
            texts.append("")
        else:  # the token's span, plus any gap before it (whitespace the offsets leave out)
            texts.append(text[pos:end])
            pos, last_real = end, i
    if pos < len(text) and last_real is not None:
        texts[last_real] += text[pos:]
    return ids, texts


def explain(tokenizer: Any, example: Example, max_length: int, completion_only: bool = True,
            use_chat_template: bool = True, assistant_turns: str = "all", tools_as_text: bool = False) -> Explained:
    """What the model sees of one row, token by token, exactly as :func:`encode` tokenizes and labels it
    (a row too long to tokenize whole: its first ``max_length`` tokens and some of the cut ones)."""
    example, clipped = clip(tokenizer, example, max_length)
    templated = use_chat_template and has_chat_template(tokenizer)
    rendered = segments(tokenizer, example, completion_only, use_chat_template, assistant_turns, tools_as_text)
    specials = special_token_ids(tokenizer)
    pieces: list[TokenPiece] = []
    for n, seg in enumerate(rendered.segments):
        ids, texts = _token_texts(tokenizer, seg.text, not templated and n == 0)
        pieces.extend(TokenPiece(t, i, seg.trained, False, i in specials, seg.turn, seg.role)
                      for i, t in zip(ids, texts, strict=True))
    for piece in pieces[max(0, max_length):]:
        piece.cut = True
    note = rendered.note
    if (example.turns and templated and not tools_as_text and chat_render.has_tool_parts(example)
            and not chat_render.supports_tools(tokenizer)):
        note = TOOLS_DROPPED
    return Explained(pieces, max_length, clipped, bool(example.turns), note)


#: What the preview says of a tool row whose model's chat template ignores tool calls.
TOOLS_DROPPED = ("this model's chat template leaves out tool calls and results, so training refuses this row "
                 "unless 'Tool calls as text' is on")


class DataCollator:
    """Pads each batch to its own longest row (never to max_length); labels are padded with -100.

    It also counts the loss-bearing tokens it hands out, for the tokens-per-second figure.
    """

    def __init__(self, pad_token_id: int, pad_to_multiple_of: int | None = None) -> None:
        self.pad_token_id = pad_token_id
        self.pad_to_multiple_of = pad_to_multiple_of
        self.trained_tokens = 0
        self.padded_tokens = 0

    def __call__(self, features: Sequence[dict[str, Any]]) -> dict[str, Any]:
        import torch

        longest = max(len(f["input_ids"]) for f in features)
        if self.pad_to_multiple_of:
            m = self.pad_to_multiple_of
            longest = (longest + m - 1) // m * m
        ids, labels, mask = [], [], []
        for f in features:
            n = len(f["input_ids"])
            pad = longest - n
            ids.append([*f["input_ids"], *[self.pad_token_id] * pad])
            labels.append([*f["labels"], *[IGNORE_INDEX] * pad])
            mask.append([1] * n + [0] * pad)
            self.trained_tokens += sum(1 for t in f["labels"] if t != IGNORE_INDEX)
            self.padded_tokens += pad
        return {
            "input_ids": torch.tensor(ids, dtype=torch.long),
            "labels": torch.tensor(labels, dtype=torch.long),
            "attention_mask": torch.tensor(mask, dtype=torch.long),
        }
