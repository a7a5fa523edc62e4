"""Stop when learned: end a run early, as a completed run, once it has learned (the ``stop_when_learned`` setting).

Two ways to tell, checked every ``learned_check_steps`` optimizer steps on the training thread:

- **held-out questions** ``(prompt, expected)``: the model answers them greedily in left-padded batches, each
  answer ending as soon as it contains its phrase, prompts built and answers scored exactly as Compare does
  (``contains_phrase``). The run has learned when the share answered reaches ``learned_target``. A check stops
  asking once more answers have ended without their phrase than the target allows
  (:meth:`~loradesk.core.generation.Answerer.tally`): it can no longer pass, and its count is shown as "at least".
- **a validation split only**: the Trainer's own evaluation runs at the check; the run has learned (stopped
  improving) when the eval loss has not improved by :data:`MIN_DELTA` for ``learned_patience`` checks.

A check must not change the run: it answers in eval mode without gradients, then restores train mode and every
random generator, so the loss curve is the same step for step as without checks. Its time is handed to the
reporting callback (``pause``), which leaves it out of tokens/s and the ETA; when a check costs more than
:data:`COST_SHARE` of the training time since the last one, the next check waits longer (up to
:data:`MAX_SPACING` times the setting).
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loradesk.core.config import RunConfig
from loradesk.core.generation import Tally

MIN_DELTA = 1e-3  # an eval loss lower than the best by less than this is no improvement
COST_SHARE = 0.2  # checks may take about this share of the training time between them...
MAX_SPACING = 3  # ...but are never more than this many times the setting's steps apart
MAX_NEW_TOKENS = 48  # long enough for an answer that states its fact; a learned model stops far sooner
BATCH = 16  # questions answered together


@dataclass(frozen=True)
class Check:
    """One check's outcome: held-out questions answered (``passed`` of ``total``) or an eval loss."""

    step: int  # the run's step (a continued run counts after its parent)
    elapsed: float  # seconds since the run started
    seconds: float  # what the check itself took
    passed: int | None = None
    total: int | None = None
    eval_loss: float | None = None
    complete: bool = True  # False: the questions were asked only until the check could no longer pass

    def score(self) -> str:
        """``held-out 9/16``, ``held-out at least 2/16`` (asked only until it could not pass) or ``eval loss
        1.234``."""
        if self.total is not None:
            return f"held-out {'' if self.complete else 'at least '}{self.passed}/{self.total}"
        return f"eval loss {self.eval_loss:.4f}"


class LearnedWatch:
    """Decides when to check and whether the run has learned; knows nothing about the Trainer (see
    :func:`callback_class` for the part that does)."""

    def __init__(self, config: RunConfig, questions: Sequence[tuple[str, str]] = (), has_eval: bool = False,
                 step_offset: int = 0, started: float | None = None) -> None:
        t = config.training
        self.config, self.questions = config, list(questions)
        self.mode = ""  # "heldout", "eval" or "" (off)
        if t.stop_when_learned:
            self.mode = "heldout" if self.questions else "eval" if has_eval else ""
        self.every, self.target, self.patience = t.learned_check_steps, t.learned_target, t.learned_patience
        self.step_offset = step_offset
        self.started = time.monotonic() if started is None else started
        self.next_step = self.every  # the Trainer's global step of the next check
        self.checks: list[Check] = []
        self.learned: Check | None = None
        self.cost = 0.0  # seconds spent checking
        self.best: float | None = None  # the lowest eval loss so far
        self.stale = 0  # checks in a row without an improvement

    @property
    def needed(self) -> int:
        """How many held-out questions must pass: ``ceil(target x total)``."""
        return math.ceil(self.target * len(self.questions) - 1e-9)

    def describe(self, heldout: Path | None = None) -> str:
        """The log line that says how this run will tell it has learned."""
        if self.mode == "heldout":
            source = f" ({heldout.name})" if heldout else ""
            return (f"Stop when learned: every {self.every} steps, {self.needed}/{len(self.questions)} held-out "
                    f"questions{source} answered with their expected phrase")
        if self.mode == "eval":
            return (f"Stop when learned: every {self.every} steps, the eval loss; stop once it has not improved "
                    f"for {self.patience} checks")
        return ""

    def due(self, step: int) -> bool:
        """Whether a check is due after the Trainer's global step ``step``."""
        return bool(self.mode) and self.learned is None and step >= self.next_step

    def plan_next(self, step: int, check_seconds: float, train_seconds: float, steps: int) -> None:
        """Schedule the next check: ``every`` steps on, or further (up to :data:`MAX_SPACING` times that) when
        this one cost more than :data:`COST_SHARE` of the ``train_seconds`` the last ``steps`` steps took."""
        wait = self.every
        if steps > 0 and train_seconds > 0:
            per_step = train_seconds / steps
            wait = min(max(wait, math.ceil(check_seconds / (COST_SHARE * per_step))), MAX_SPACING * self.every)
        self.next_step = step + wait

    def record(self, check: Check) -> bool:
        """Note a check's outcome; True when the run has learned."""
        self.checks.append(check)
        self.cost += check.seconds
        if check.total is not None:
            done = bool(check.total) and check.passed is not None and check.passed >= self.needed
        else:
            assert check.eval_loss is not None
            if self.best is None or check.eval_loss < self.best - MIN_DELTA:
                self.best, self.stale = check.eval_loss, 0
            else:
                self.stale += 1
            done = self.stale >= self.patience
        if done:
            self.learned = check
        return done

    def learned_text(self) -> str:
        """``Learned: 15/16 held-out questions answered at step 40 (38 s); stopped early`` (empty until learned)."""
        c = self.learned
        if c is None:
            return ""
        if c.total is not None:
            what = f"{c.passed}/{c.total} held-out questions answered"
        else:
            what = (f"the eval loss has not improved for {self.patience} checks (best {self.best:.4f}, "
                    f"{c.eval_loss:.4f} now)")
        return f"Learned: {what} at step {c.step} ({c.elapsed:.0f} s); stopped early"

    def cost_text(self) -> str:
        """What the checks cost in total, for the log."""
        n = len(self.checks)
        return f"Learned checks: {n} took {self.cost:.1f} s in total (left out of the speed)" if n else ""

    def score_record(self, heldout: Path | None) -> dict[str, Any] | None:
        """The last held-out check as the run file's ``score``/``score_detail`` (Compare's format)."""
        last = next((c for c in reversed(self.checks) if c.total), None)
        if last is None or last.passed is None or last.total is None:
            return None
        detail: dict[str, Any] = {"tuned": last.passed, "total": last.total, "step": last.step,
                                  "source": "training check"}
        if not last.complete:
            detail["at_least"] = True  # asked only until the check could no longer pass
        if heldout is not None:
            detail["heldout"] = str(heldout)
        return {"score": last.passed / last.total, "score_detail": detail}


def watch_for(config: RunConfig, heldout: Path | None, has_eval: bool, step_offset: int = 0,
              started: float | None = None, log: Callable[[str], None] | None = None) -> LearnedWatch:
    """The run's :class:`LearnedWatch`. The questions of ``heldout`` are read now, before the model loads; a file
    that cannot be read is logged (``log``) and left out, as is the held-out check in a run of several processes
    (the eval loss, which the Trainer gathers from every rank, still counts)."""
    from loradesk.core import distributed
    from loradesk.core.formats import read_heldout

    questions: list[tuple[str, str]] = []
    if config.training.stop_when_learned and heldout is not None:
        if distributed.current().distributed:
            note = "the held-out questions are not asked in a run of several processes"
        else:
            try:
                questions, note = read_heldout(heldout), ""
            except (OSError, ValueError) as exc:
                note = f"the held-out questions are left out: {exc}"
        if note and log is not None:
            log(f"Stop when learned: {note}")
    return LearnedWatch(config, questions, has_eval, step_offset, started)


def answered(model: Any, tokenizer: Any, questions: Sequence[tuple[str, str]], use_chat_template: bool,
             tools_as_text: bool = False, needed: int | None = None) -> Tally:
    """How many ``questions`` the model answers with their expected phrase (greedy, as Compare asks them).

    With ``needed``, asking stops once fewer than that can pass (see
    :meth:`~loradesk.core.generation.Answerer.tally`): a check that cannot pass costs less.
    The model is left in eval mode; the caller restores training mode.
    """
    from loradesk.core.generation import Answerer, GenerationSettings

    answerer = Answerer.from_loaded(model, tokenizer, use_chat_template)
    answerer.tools_as_text = tools_as_text
    # ``tuned=False`` asks the model as it is: the adapter being trained is on (no adapter is "loaded" here)
    return answerer.tally([prompt for prompt, _ in questions], [expected for _, expected in questions],
                          0 if needed is None else needed, tuned=False,
                          settings=GenerationSettings(max_new_tokens=MAX_NEW_TOKENS), batch_size=BATCH)


@functools.cache
def callback_class() -> type:
    """The TrainerCallback that runs a :class:`LearnedWatch`, built on first use (transformers loads late).

    ``LearnedCallback(watch, sink, pause, tokenizer_lock, use_chat_template, tools_as_text)``: ``pause(seconds)``
    hands the time of checks and evaluations to whoever reports the speed.
    """
    from transformers import TrainerCallback

    class LearnedCallback(TrainerCallback):
        def __init__(self, watch: LearnedWatch, sink: Any, pause: Callable[[float], None], tokenizer_lock: Any,
                     use_chat_template: bool, tools_as_text: bool) -> None:
            self.watch, self.sink, self.pause, self.lock = watch, sink, pause, tokenizer_lock
            self.use_chat_template, self.tools_as_text = use_chat_template, tools_as_text
            self.eval_started: float | None = None
            self.last_mark: tuple[float, int] = (time.monotonic(), 0)  # (time, step) after the last check

        def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.last_mark = (time.monotonic(), state.global_step)
            if self.watch.next_step <= state.global_step:  # a resumed run: the next check after where it was
                self.watch.next_step = state.global_step + self.watch.every

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            watch = self.watch
            if watch.due(state.global_step):
                if watch.mode == "heldout":
                    self._check_heldout(args, state, control, kw["model"], kw["processing_class"])
                else:  # the Trainer evaluates after this step; on_evaluate reads its loss
                    watch.next_step = state.global_step + watch.every
                    control.should_evaluate = True
            self._mark_eval(control)

        def on_epoch_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self._mark_eval(control)

        def _mark_eval(self, control: Any) -> None:
            if control.should_evaluate and self.eval_started is None:
                self.eval_started = time.monotonic()

        def on_evaluate(self, args: Any, state: Any, control: Any, metrics: dict[str, float] | None = None,
                        **kw: Any) -> None:
            seconds = time.monotonic() - self.eval_started if self.eval_started is not None else 0.0
            self.eval_started = None
            self.pause(seconds)
            watch = self.watch
            loss = (metrics or {}).get("eval_loss")
            step = watch.step_offset + state.global_step
            if watch.mode != "eval" or loss is None or watch.learned is not None:
                return
            if watch.checks and watch.checks[-1].step == step:  # the epoch's evaluation right after a check
                return
            self._report(state, control, Check(step,
                                               time.monotonic() - watch.started, seconds, eval_loss=float(loss)),
                         seconds)

        def _check_heldout(self, args: Any, state: Any, control: Any, model: Any, tokenizer: Any) -> None:
            import torch

            from loradesk.core.preflight import rng_preserved
            from loradesk.core.step_speed import asking_format

            began = time.monotonic()
            was_training = model.training
            # the same number format as the training steps (frozen weights may be stored in bf16 on the CPU)
            half = torch.bfloat16 if args.bf16 else torch.float16 if args.fp16 else None
            autocast = asking_format(model, args.device.type, half)
            try:
                with rng_preserved(), self.lock, autocast:  # the tokenizer is shared with the Dataset tab
                    tally = answered(model, tokenizer, self.watch.questions, self.use_chat_template,
                                     self.tools_as_text, self.watch.needed)
            finally:
                model.train(was_training)
            seconds = time.monotonic() - began
            self.pause(seconds)
            watch = self.watch
            self._report(state, control, Check(watch.step_offset + state.global_step, began - watch.started,
                                               seconds, tally.passed, tally.total, complete=tally.complete),
                         seconds)

        def _report(self, state: Any, control: Any, check: Check, seconds: float) -> None:
            watch = self.watch
            now, step = time.monotonic(), state.global_step
            mark_time, mark_step = self.last_mark
            watch.plan_next(step, seconds, now - mark_time - seconds, step - mark_step)
            self.last_mark = (now, step)
            learned = watch.record(check)
            self.sink.log(f"Check at step {check.step}: {check.score()} ({check.seconds:.1f} s)")
            self.sink.status(f"Training: {check.score()} at step {check.step}")
            if learned:
                control.should_training_stop = True
                self.sink.log(watch.learned_text())

    return LearnedCallback
