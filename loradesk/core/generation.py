"""Answers from the base and the tuned model, out of ONE loaded model.

The base model is loaded once and the run's adapter is put on top with peft; ``disable_adapter()`` gives
the base model's answer without a second copy in memory. Prompts are rendered exactly as in training
(the chat template, or prompt + newline). A conversation row is asked with its turns up to (not including)
its last assistant turn, and its answer is compared with that turn.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loradesk.core.dataset import Example


@dataclass
class GenerationSettings:
    """Decoding settings. ``temperature`` 0 means greedy (deterministic)."""

    max_new_tokens: int = 96
    temperature: float = 0.0
    top_p: float = 0.95
    repetition_penalty: float = 1.0

    def generate_kwargs(self) -> dict[str, Any]:
        kw: dict[str, Any] = {"max_new_tokens": self.max_new_tokens,
                              "repetition_penalty": self.repetition_penalty,
                              "use_cache": True}  # also for a model the Trainer set use_cache=False on
        if self.temperature > 0:
            kw.update(do_sample=True, temperature=self.temperature, top_p=self.top_p)
        else:
            kw.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        return kw


@dataclass(frozen=True)
class Tally:
    """Held-out answers that hold their expected phrase: ``passed`` of ``total``; ``complete`` False when asking
    stopped once the outcome was known (see :meth:`Answerer.tally`), so ``passed`` may be fewer than in full."""

    passed: int
    total: int
    complete: bool = True


def contains_phrase(answer: str, expected: str) -> bool:
    """Whether ``answer`` contains ``expected``, ignoring case and runs of whitespace."""
    def norm(s: str) -> str:
        return " ".join(s.casefold().split())

    return bool(expected.strip()) and norm(expected) in norm(answer)


def base_model_folder(path: Path) -> Path:
    """The base model an adapter folder (a run folder or an exported adapter) was trained on."""
    import json

    from loradesk.core.runs import RUN_FILE, read_run

    path = Path(path)
    config = path / "adapter_config.json"
    if not config.is_file():
        raise ValueError(f"{path} is not an adapter folder (no adapter_config.json)")
    if (path / RUN_FILE).is_file():
        return Path(read_run(path).base_model_dir)
    try:
        return Path(json.loads(config.read_text(encoding="utf-8"))["base_model_name_or_path"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{config}: no base_model_name_or_path ({exc})") from None


class Answerer:
    """A loaded model (plus an optional adapter) that answers prompts as the base or the tuned model."""

    def __init__(self, model_dir: Path, adapter_dir: Path | None = None, device: str | None = None,
                 use_chat_template: bool = True, trust_remote_code: bool = False) -> None:
        from loradesk.core import models

        self.device = device or models.pick_device()
        dtype = models.weights_dtype(self.device, models.resolve_precision(self.device))
        # Read the tokenizer the run saved (same template as training); else the base model's.
        self.tokenizer = models.load_tokenizer(Path(adapter_dir or model_dir), trust_remote_code)
        model = models.load_model(Path(model_dir), self.device, dtype, trust_remote_code)
        self.has_adapter = adapter_dir is not None
        if adapter_dir is not None:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, str(adapter_dir))
        model.eval()
        self.model = model
        self.use_chat_template = use_chat_template
        self.tools_as_text = False  # a run's setting: tool calls written as text (chat_render)

    @classmethod
    def from_loaded(cls, model: Any, tokenizer: Any, use_chat_template: bool = True) -> Answerer:
        """An answerer around a model and tokenizer already loaded (a merged model, a reloaded GGUF file)."""
        answerer = cls.__new__(cls)
        answerer.model, answerer.tokenizer = model.eval(), tokenizer
        answerer.device, answerer.has_adapter = str(model.device), False
        answerer.use_chat_template, answerer.tools_as_text = use_chat_template, False
        return answerer

    @classmethod
    def from_run(cls, run_dir: Path, device: str | None = None) -> Answerer:
        """Base model and adapter of a run folder, with the template setting it trained with.

        Nothing in the run folder enables the model's own code: it runs only for a model (and files)
        the user trusted (:func:`loradesk.core.trust.remote_code_allowed`).
        """
        from loradesk.core.runs import RunError, adapter_source, read_run

        info = read_run(Path(run_dir))
        source = adapter_source(Path(run_dir))  # a killed run's latest checkpoint when it has no final adapter
        if source is None:
            raise RunError(f"{run_dir} holds no adapter yet")
        # The run file's own trust_remote_code is ignored: only the user's trust store lets code run.
        answerer = cls(Path(info.base_model_dir), source, device,
                       use_chat_template=info.config.training.use_chat_template, trust_remote_code=True)
        answerer.tools_as_text = info.config.training.tools_as_text
        return answerer

    @classmethod
    def from_adapter(cls, path: Path, device: str | None = None) -> Answerer:
        """A run folder, or any peft adapter folder (e.g. an exported one) on top of the base model it names."""
        from loradesk.core.runs import RUN_FILE

        path = Path(path)
        if (path / RUN_FILE).is_file():
            return cls.from_run(path, device)
        return cls(base_model_folder(path), path, device, trust_remote_code=True)  # the trust store decides

    def _prompt_text(self, prompt: str | Example) -> str:
        from loradesk.core.tokenize import render_prompt

        return render_prompt(self.tokenizer, prompt, self.use_chat_template, self.tools_as_text)

    def _adapter_context(self, tuned: bool) -> Any:
        import contextlib

        if tuned and not self.has_adapter:
            raise ValueError("no adapter is loaded: there is no tuned model to ask")
        return contextlib.nullcontext() if tuned or not self.has_adapter else self.model.disable_adapter()

    def answer(self, prompt: str | Example, tuned: bool = True, settings: GenerationSettings | None = None,
               on_text: Callable[[str], None] | None = None, stop: threading.Event | None = None) -> str:
        """Generate one answer; ``on_text`` receives each new piece of text as it is produced."""
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList, TextStreamer

        settings = settings or GenerationSettings()
        text = self._prompt_text(prompt)
        templated = self.use_chat_template and bool(getattr(self.tokenizer, "chat_template", None))
        inputs = self.tokenizer(text, return_tensors="pt", add_special_tokens=not templated).to(self.device)
        kwargs: dict[str, Any] = {}
        if on_text is not None:
            class _Streamer(TextStreamer):
                def on_finalized_text(self, piece: str, stream_end: bool = False) -> None:
                    if piece:
                        on_text(piece)

            kwargs["streamer"] = _Streamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        if stop is not None:
            class _Stop(StoppingCriteria):
                def __call__(self, input_ids: Any, scores: Any, **kw: Any) -> bool:
                    return stop.is_set()

            kwargs["stopping_criteria"] = StoppingCriteriaList([_Stop()])
        with torch.inference_mode(), self._adapter_context(tuned):
            out = self.model.generate(**inputs, **settings.generate_kwargs(), **kwargs,
                                      pad_token_id=self.tokenizer.pad_token_id)
        new = out[0, inputs["input_ids"].shape[1]:]
        return self.tokenizer.decode(new, skip_special_tokens=True).strip()

    def answer_many(self, prompts: Sequence[str | Example], tuned: bool = True,
                    settings: GenerationSettings | None = None, batch_size: int = 8,
                    expected: Sequence[str] | None = None) -> list[str]:
        """Answers for many prompts, generated in left-padded batches of ``batch_size``.

        With ``expected`` (one phrase per prompt), each answer ends as soon as it contains its phrase
        (:func:`contains_phrase`): enough to score it, and quick for a model that knows the answers.
        """
        return self._ask(prompts, tuned, settings, batch_size, expected)[0]

    def tally(self, prompts: Sequence[str | Example], expected: Sequence[str], needed: int, tuned: bool = True,
              settings: GenerationSettings | None = None, batch_size: int = 8) -> Tally:
        """How many answers hold their ``expected`` phrase, asked only until it is known whether ``needed`` can.

        Each answer ends once it holds its phrase, as in :meth:`answer_many`; and asking stops altogether once
        more answers have ended without their phrase than ``len(prompts) - needed``: the rest cannot change the
        outcome. The count is then what was answered so far (``complete`` False), never more than a full count.
        """
        if not 0 <= needed <= len(prompts):
            raise ValueError(f"needed must be 0-{len(prompts)}, not {needed}")
        answers, complete = self._ask(prompts, tuned, settings, batch_size, expected, len(prompts) - needed)
        passed = sum(contains_phrase(a, e) for a, e in zip(answers, expected, strict=True))
        return Tally(passed, len(prompts), complete)

    def _ask(self, prompts: Sequence[str | Example], tuned: bool, settings: GenerationSettings | None,
             batch_size: int, expected: Sequence[str] | None = None,
             may_miss: int | None = None) -> tuple[list[str], bool]:
        """``(answers, complete)``: :meth:`answer_many`'s answers; with ``may_miss``, asking ends (``complete``
        False, the answers not yet finished cut short, those not asked "") once more than that many answers
        have ended without their phrase."""
        import torch
        from transformers import StoppingCriteriaList

        settings = settings or GenerationSettings()
        templated = self.use_chat_template and bool(getattr(self.tokenizer, "chat_template", None))
        answers: list[str] = []
        missed = 0  # answers ended without their phrase, in the batches before this one
        side = self.tokenizer.padding_side
        self.tokenizer.padding_side = "left"
        try:
            for start in range(0, len(prompts), batch_size):
                if may_miss is not None and missed > may_miss:
                    answers.extend("" for _ in prompts[start:])
                    return answers, False
                chunk = [self._prompt_text(p) for p in prompts[start:start + batch_size]]
                inputs = self.tokenizer(chunk, return_tensors="pt", padding=True,
                                        add_special_tokens=not templated).to(self.device)
                kwargs: dict[str, Any] = {}
                stop = None
                if expected is not None:
                    phrases = expected[start:start + batch_size]
                    budget = None if may_miss is None else may_miss - missed
                    stop = _phrase_stop_class()(self.tokenizer, inputs["input_ids"].shape[1], phrases,
                                                self._eos_ids(), budget)
                    kwargs["stopping_criteria"] = StoppingCriteriaList([stop])
                with torch.inference_mode(), self._adapter_context(tuned):
                    out = self.model.generate(**inputs, **settings.generate_kwargs(), **kwargs,
                                              pad_token_id=self.tokenizer.pad_token_id)
                width = inputs["input_ids"].shape[1]
                batch = [self.tokenizer.decode(row[width:], skip_special_tokens=True).strip() for row in out]
                answers.extend(batch)
                if stop is not None and stop.decided:
                    answers.extend("" for _ in prompts[start + len(batch):])
                    return answers, False
                if expected is not None:
                    missed += sum(not contains_phrase(a, e) for a, e in zip(batch, phrases, strict=True))
        finally:
            self.tokenizer.padding_side = side
        return answers, True

    def _eos_ids(self) -> list[int]:
        """The token ids that end an answer (the generation config's, else the tokenizer's)."""
        eos = getattr(getattr(self.model, "generation_config", None), "eos_token_id", None)
        if eos is None:
            eos = self.tokenizer.eos_token_id
        return [] if eos is None else [int(eos)] if isinstance(eos, int) else [int(e) for e in eos]


@functools.cache
def _phrase_stop_class() -> type:
    """A StoppingCriteria that ends each row once its new text contains its phrase (built on first use, so
    importing this module does not load transformers)."""
    from transformers import StoppingCriteria

    class PhraseStop(StoppingCriteria):
        """``may_miss``: end every row (and set ``decided``) once more rows than that have ended (an end-of-text
        token among ``eos_ids``) without their phrase."""

        def __init__(self, tokenizer: Any, width: int, phrases: Sequence[str], eos_ids: Sequence[int] = (),
                     may_miss: int | None = None) -> None:
            self.tokenizer, self.width, self.phrases = tokenizer, width, list(phrases)
            self.eos_ids, self.may_miss = list(eos_ids), may_miss
            self.decided = False

        def __call__(self, input_ids: Any, scores: Any, **kw: Any) -> Any:
            import torch

            new = input_ids[:, self.width:]
            texts = self.tokenizer.batch_decode(new, skip_special_tokens=True)
            found = torch.tensor([contains_phrase(text, phrase) for text, phrase in zip(texts, self.phrases,
                                                                                          strict=True)],
                                 dtype=torch.bool, device=input_ids.device)
            if self.may_miss is not None and self.eos_ids:
                ended = torch.isin(new, torch.tensor(self.eos_ids, device=new.device)).any(dim=1)
                if int((ended & ~found).sum()) > self.may_miss:
                    self.decided = True
                    return torch.ones_like(found)
            return found

    return PhraseStop


# --- asking both models ---------------------------------------------------------------------------------
BASE, TUNED = "base", "tuned"


@dataclass(frozen=True)
class AnswerPiece:
    """A piece of text one side (``"base"`` or ``"tuned"``) just produced."""

    side: str
    text: str


@dataclass(frozen=True)
class SideAnswered:
    """One side's whole answer (stripped), once it is complete or stopped."""

    side: str
    text: str


@dataclass(frozen=True)
class BothAnswers:
    """The answers to one prompt; ``tuned`` is None without an adapter (or when stopped before it)."""

    base: str | None
    tuned: str | None
    stopped: bool
    seconds: float


def answer_both(answerer: Answerer, prompt: str | Example, settings: GenerationSettings | None = None,
                on_event: Callable[[AnswerPiece | SideAnswered], None] | None = None,
                stop: threading.Event | None = None) -> BothAnswers:
    """The base model's answer, then the tuned one's (when an adapter is loaded), streamed through ``on_event``.

    ``stop`` ends the current answer early and skips the next one.
    """
    started = time.perf_counter()
    answers: dict[str, str | None] = {BASE: None, TUNED: None}
    for side in (BASE, TUNED) if answerer.has_adapter else (BASE,):
        if stop is not None and stop.is_set():
            break
        on_text = None
        if on_event is not None:
            def on_text(piece: str, side: str = side) -> None:
                on_event(AnswerPiece(side, piece))

        answers[side] = answerer.answer(prompt, tuned=side == TUNED, settings=settings, on_text=on_text, stop=stop)
        if on_event is not None:
            on_event(SideAnswered(side, answers[side] or ""))
    return BothAnswers(answers[BASE], answers[TUNED], stop is not None and stop.is_set(),
                       time.perf_counter() - started)


# --- scoring held-out questions ----------------------------------------------------------------------------
@dataclass(frozen=True)
class ScoredRow:
    """One held-out question answered by both models; a mark says whether the answer contains the phrase."""

    index: int
    prompt: str  # a conversation's last question before the answer compared
    expected: str
    base: str
    tuned: str | None  # None without an adapter
    base_ok: bool
    tuned_ok: bool | None


@dataclass(frozen=True)
class CompareSummary:
    """The score of one comparison: how many answers contain the expected phrase."""

    total: int
    answered: int
    base_correct: int
    tuned_correct: int | None  # None without an adapter
    stopped: bool
    seconds: float

    def text(self) -> str:
        """``tuned 14/16 vs base 0/16`` (or just the base score without an adapter)."""
        base = f"base {self.base_correct}/{self.answered}"
        if self.tuned_correct is None:
            return base
        return f"tuned {self.tuned_correct}/{self.answered} vs {base}"

    @property
    def complete(self) -> bool:
        """Every question was answered by both models (a score worth recording)."""
        return self.tuned_correct is not None and self.answered > 0 and not self.stopped


def question_text(prompt: str | Example) -> str:
    """The question as people read it: the prompt, or a conversation's last user message before its answer."""
    if isinstance(prompt, str):
        return prompt
    if not prompt.turns:
        return prompt.prompt
    from loradesk.core.chat_render import question_text as last_question

    return last_question(prompt)


def compare_all(answerer: Answerer, questions: Sequence[tuple[str | Example, str]],
                settings: GenerationSettings | None = None, on_row: Callable[[ScoredRow], None] | None = None,
                stop: threading.Event | None = None, batch_size: int = 8,
                on_status: Callable[[str, float], None] | None = None) -> CompareSummary:
    """Ask every held-out ``(prompt, expected)`` pair to both models, scoring each answer as it comes. A
    prompt may be a dataset row (a conversation is asked up to its last assistant turn).

    Each scored row goes to ``on_row`` in order; ``on_status(text, fraction done)`` before each batch.
    ``stop`` is looked at between batches: the summary then counts the questions answered so far.
    """
    started = time.perf_counter()
    total = len(questions)
    base_correct, answered = 0, 0
    tuned_correct: int | None = 0 if answerer.has_adapter else None
    batch_size = max(1, batch_size)
    for start in range(0, total, batch_size):
        if stop is not None and stop.is_set():
            break
        chunk = list(questions[start:start + batch_size])
        if on_status is not None:
            on_status(f"Answering {start + 1}–{start + len(chunk)} of {total}…", start / total)
        prompts = [prompt for prompt, _ in chunk]
        base = answerer.answer_many(prompts, tuned=False, settings=settings, batch_size=batch_size)
        tuned: list[str | None] = [None] * len(chunk)
        if answerer.has_adapter:
            tuned = list(answerer.answer_many(prompts, tuned=True, settings=settings, batch_size=batch_size))
        for offset, ((prompt, expected), b, t) in enumerate(zip(chunk, base, tuned, strict=True)):
            row = ScoredRow(start + offset, question_text(prompt), expected, b, t, contains_phrase(b, expected),
                            None if t is None else contains_phrase(t, expected))
            base_correct += row.base_ok
            if tuned_correct is not None and row.tuned_ok:
                tuned_correct += 1
            if on_row is not None:
                on_row(row)
        answered += len(chunk)
    return CompareSummary(total, answered, base_correct, tuned_correct, stop is not None and stop.is_set(),
                          time.perf_counter() - started)


def record_compare_score(run_dir: Path | None, summary: CompareSummary, heldout: Path | None = None) -> bool:
    """Store a complete comparison's tuned score in its run folder; False when there is nothing to record.

    Nothing is recorded for a stopped comparison, one without an adapter, or a folder that is not a run
    (an exported adapter).
    """
    from loradesk.core.runs import RUN_FILE, record_score

    if run_dir is None or not summary.complete or not (Path(run_dir) / RUN_FILE).is_file():
        return False
    assert summary.tuned_correct is not None
    detail: dict[str, Any] = {"tuned": summary.tuned_correct, "base": summary.base_correct,
                              "total": summary.answered}
    if heldout is not None:
        detail["heldout"] = str(heldout)
    record_score(Path(run_dir), summary.tuned_correct / summary.answered, detail)
    return True
