"""Training health: decide from each optimizer step's loss and gradient norm whether a run is dead.

Pure Python (no torch): :class:`HealthMonitor` is fed one ``(step, loss, grad_norm)`` per optimizer step
by the training loop (``core.health_watch``) and decides

* **broken** — the loss or the gradient norm is NaN or infinite: the weights are garbage from this step on,
  so the run must stop now (:meth:`HealthMonitor.step` returns the message to stop with);
* **diverged** — the smoothed loss rose far above where it started (a warning: the run goes on);
* **not learning** — the gradient is zero and the loss flat over many steps (a warning).

It also holds the advice for a run that ran out of device memory (:func:`smaller_batch`,
:func:`out_of_memory_message`), so the CLI and the GUI say the same thing.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from loradesk.core.config import RunConfig


@dataclass(frozen=True)
class HealthLimits:
    """Thresholds, with why they are where they are.

    ``window``: the smoothed loss is the mean of the last 3 steps, so one unlucky batch (a few hard rows)
    does not count as divergence, while a blow-up (3.8 -> 54 -> 19) shows within 3 steps.

    ``diverge_factor`` / ``diverge_margin``: the first step's loss is the untouched model's, the honest
    start. A working run only goes down from there; batch-to-batch noise moves a loss by tens of percent,
    not by 3x. The rise must also be at least 1 nat, so a run that starts near 0 (a resumed or already
    learnt task) is not flagged for a move from 0.05 to 0.2. When the vocabulary size is known the bar is
    lowered to ln(vocabulary) if that is below 3x the start: a loss above ln(V) is worse than guessing
    every token uniformly, which no working fine-tune reaches from a lower start.

    ``flat_steps`` / ``zero_grad`` / ``flat_spread``: 10 consecutive steps whose gradient norm is
    below 1e-8 (LoRA gradients of a learning run are 1e-3..1e+2; below 1e-8 nothing moves in fp32 or
    bf16) and whose losses lie within 1 % of each other (different batches of real text differ by more
    unless the output does not depend on the input at all).
    """

    window: int = 3
    diverge_factor: float = 3.0
    diverge_margin: float = 1.0
    flat_steps: int = 10
    zero_grad: float = 1e-8
    flat_spread: float = 0.01


def _number(value: float) -> str:
    return f"{value:g}"


class HealthMonitor:
    """Decides, step by step, whether a run is broken (stop now), diverging or not learning (warn).

    ``vocab_size`` sharpens the divergence bar (see :class:`HealthLimits`). ``overflow_skips`` is for fp16
    with a loss scaler: an infinite gradient norm with a finite loss there is the scaler probing its scale
    (it skips that step), not a broken run.
    """

    def __init__(self, config: RunConfig, vocab_size: int | None = None, overflow_skips: bool = False,
                 limits: HealthLimits | None = None) -> None:
        self.config = config
        self.limits = limits or HealthLimits()
        self.uniform_loss = math.log(vocab_size) if vocab_size and vocab_size > 1 else None
        self.overflow_skips = overflow_skips
        self.first: tuple[int, float] | None = None  # (step, loss) of the first step seen
        self.last_loss: float | None = None
        self._recent: deque[float] = deque(maxlen=self.limits.window)
        self._flat: deque[tuple[int, float, float]] = deque(maxlen=self.limits.flat_steps)
        self._warnings: dict[str, str] = {}  # kind -> message, in the order found

    @property
    def warnings(self) -> list[str]:
        """One message per problem found so far (diverged, not learning), each with its advice."""
        return list(self._warnings.values())

    def step(self, step: int, loss: float, grad_norm: float | None) -> str | None:
        """Feed one optimizer step; return the message to stop the run with, or None to go on."""
        lr = self.config.training.learning_rate
        if not math.isfinite(loss):
            what = "NaN" if math.isnan(loss) else "infinite"
            return (f"The loss became {what} at step {step}: the learning rate {_number(lr)} is probably too "
                    f"high; try {_number(lr / 10)} or lower{self._alpha_hint()}.")
        if grad_norm is not None and not math.isfinite(grad_norm):
            if self.overflow_skips:
                grad_norm = None  # the fp16 loss scaler skips this step and lowers its scale
            else:
                what = "NaN" if math.isnan(grad_norm) else "infinite"
                return (f"The gradient norm became {what} at step {step} (loss {loss:.4g}): the learning rate "
                        f"{_number(lr)} is probably too high; try {_number(lr / 10)} or lower"
                        f"{self._alpha_hint()}.")
        self.last_loss = loss
        if self.first is None:
            self.first = (step, loss)
        self._recent.append(loss)
        self._check_divergence(step)
        self._check_learning(step, loss, grad_norm)
        return None

    def divergence_bar(self) -> float | None:
        """The smoothed loss at or above which the run counts as diverged (None before the first step)."""
        if self.first is None:
            return None
        start = self.first[1]
        lim = self.limits
        bar = lim.diverge_factor * start
        if self.uniform_loss is not None and start < self.uniform_loss:
            bar = min(bar, self.uniform_loss)
        return max(bar, start + lim.diverge_margin)

    def _check_divergence(self, step: int) -> None:
        if "diverged" in self._warnings or len(self._recent) < self.limits.window or self.first is None:
            return
        smoothed = sum(self._recent) / len(self._recent)
        bar = self.divergence_bar()
        if bar is not None and smoothed >= bar:
            first_step, start = self.first
            lr = self.config.training.learning_rate
            self._warnings["diverged"] = (
                f"The loss diverged: it rose from {start:.3g} at step {first_step} to an average of "
                f"{smoothed:.3g} over steps {step - len(self._recent) + 1}-{step}. The learning rate "
                f"{_number(lr)} is probably too high: try {_number(lr / 10)}{self._alpha_hint()}.")

    def _check_learning(self, step: int, loss: float, grad_norm: float | None) -> None:
        lim = self.limits
        if grad_norm is None or grad_norm > lim.zero_grad:
            self._flat.clear()
            return
        self._flat.append((step, loss, grad_norm))
        if "not learning" in self._warnings or len(self._flat) < lim.flat_steps:
            return
        losses = [x[1] for x in self._flat]
        mean = sum(losses) / len(losses)
        if max(losses) - min(losses) > lim.flat_spread * max(abs(mean), 1e-6):
            return
        uniform = ""
        if self.uniform_loss is not None and abs(mean - self.uniform_loss) <= 0.01 * self.uniform_loss:
            uniform = (" (= ln of the vocabulary size: the model gives every token the same probability, "
                       "whatever the input)")
        self._warnings["not learning"] = (
            f"The model is not learning: from step {self._flat[0][0]} to {step} the gradient was zero and the "
            f"loss stayed at {mean:.4g}{uniform}. {self._dead_advice()}")

    def _scale(self) -> float:
        lora = self.config.lora
        return lora.alpha / (math.sqrt(lora.r) if lora.use_rslora else lora.r)

    def _alpha_hint(self) -> str:
        lora = self.config.lora
        if self._scale() > 8:
            return f", or lower the LoRA alpha {lora.alpha} (it scales the update by {self._scale():.4g})"
        return ""

    def _dead_advice(self) -> str:
        lora, lr = self.config.lora, self.config.training.learning_rate
        if self._scale() > 8:
            how = "alpha / sqrt(r) with rsLoRA" if lora.use_rslora else "alpha / r"
            return (f"The LoRA update is scaled by {self._scale():.4g} ({how}: alpha {lora.alpha}, rank "
                    f"{lora.r}), which can saturate the model: try alpha = 2 x rank ({2 * lora.r}) and a "
                    f"learning rate of {_number(min(lr, 1e-3))} or lower.")
        return (f"Try a lower learning rate than {_number(lr)}, and check that the rows' completions are not "
                f"empty or cut off by the max length.")


# --- out of memory ----------------------------------------------------------------------------------------
def smaller_batch(config: RunConfig) -> RunConfig | None:
    """The same run with a smaller batch and more accumulation, so the effective batch is unchanged.

    Halves the batch when it is even (8 x 1 -> 4 x 2); otherwise takes its largest divisor below half
    (6 -> 3 x 2, 5 -> 1 x 5). None when the batch is already 1 or the accumulation would exceed its limit.
    """
    t = config.training
    size = t.batch_size
    smaller = next((d for d in range(size // 2, 0, -1) if size % d == 0), None)
    if size <= 1 or smaller is None:
        return None
    accum = t.grad_accum * (size // smaller)
    if accum > 1024:
        return None
    out = RunConfig.from_dict(config.to_dict())
    out.training.batch_size, out.training.grad_accum = smaller, accum
    return out


def out_of_memory_message(config: RunConfig, step: int, suggested: RunConfig | None) -> str:
    """What happened and what to change, in one paragraph."""
    t = config.training
    where = f"at step {step}" if step else "before the first step"
    text = (f"The device ran out of memory {where} (batch size {t.batch_size}, gradient accumulation "
            f"{t.grad_accum}, max length {t.max_length}).")
    if suggested is not None:
        s = suggested.training
        text += (f" Retry with batch size {s.batch_size} and gradient accumulation {s.grad_accum}: the same "
                 f"effective batch of {s.batch_size * s.grad_accum} rows, in smaller pieces.")
    else:
        text += " The batch size is already as small as it goes."
    text += (" A shorter max length (rows over it are cut) or a smaller model also needs less memory; "
             "closing other programs that use the GPU frees some too.")
    return text
