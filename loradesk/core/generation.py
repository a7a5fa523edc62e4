"""Answers from the base and the tuned model, out of ONE loaded model.

The base model is loaded once and the run's adapter is put on top with peft; ``disable_adapter()`` gives
the base model's answer without a second copy in memory. Prompts are rendered exactly as in training
(the chat template, or prompt + newline).
"""

from __future__ import annotations

import threading
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
                              "repetition_penalty": self.repetition_penalty}
        if self.temperature > 0:
            kw.update(do_sample=True, temperature=self.temperature, top_p=self.top_p)
        else:
            kw.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        return kw


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
        return cls(Path(info.base_model_dir), source, device,
                   use_chat_template=info.config.training.use_chat_template, trust_remote_code=True)

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

        return render_prompt(self.tokenizer, prompt, self.use_chat_template)

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
                    on_done: Callable[[int, str], None] | None = None,
                    stop: threading.Event | None = None) -> list[str]:
        """Answers for many prompts, generated in left-padded batches; ``on_done(index, answer)`` per answer."""
        import torch

        settings = settings or GenerationSettings()
        templated = self.use_chat_template and bool(getattr(self.tokenizer, "chat_template", None))
        answers: list[str] = []
        side = self.tokenizer.padding_side
        self.tokenizer.padding_side = "left"
        try:
            for start in range(0, len(prompts), batch_size):
                if stop is not None and stop.is_set():
                    break
                chunk = [self._prompt_text(p) for p in prompts[start:start + batch_size]]
                inputs = self.tokenizer(chunk, return_tensors="pt", padding=True,
                                        add_special_tokens=not templated).to(self.device)
                with torch.inference_mode(), self._adapter_context(tuned):
                    out = self.model.generate(**inputs, **settings.generate_kwargs(),
                                              pad_token_id=self.tokenizer.pad_token_id)
                width = inputs["input_ids"].shape[1]
                for row in out:
                    answers.append(self.tokenizer.decode(row[width:], skip_special_tokens=True).strip())
                    if on_done is not None:
                        on_done(len(answers) - 1, answers[-1])
        finally:
            self.tokenizer.padding_side = side
        return answers


@dataclass
class CompareRow:
    prompt: str
    expected: str
    base: str
    tuned: str

    @property
    def base_ok(self) -> bool:
        return contains_phrase(self.base, self.expected)

    @property
    def tuned_ok(self) -> bool:
        return contains_phrase(self.tuned, self.expected)


def compare_all(answerer: Answerer, questions: Sequence[tuple[str, str]],
                settings: GenerationSettings | None = None) -> list[CompareRow]:
    """Base and tuned answers for every held-out ``(prompt, expected)`` pair."""
    prompts = [q for q, _ in questions]
    base = answerer.answer_many(prompts, tuned=False, settings=settings)
    tuned = answerer.answer_many(prompts, tuned=True, settings=settings)
    return [CompareRow(q, e, b, t) for (q, e), b, t in zip(questions, base, tuned, strict=True)]
