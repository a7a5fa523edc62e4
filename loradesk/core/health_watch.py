"""Feeds a transformers ``Trainer``'s every optimizer step into a :class:`~loradesk.core.health.HealthMonitor`.

The Trainer logs only every ``logging_steps`` and, by default (``logging_nan_inf_filter``), replaces a NaN/inf
loss in that logged average with the mean of the finite ones, so its logs can hide a NaN. This watch sees
each step instead: it wraps the trainer's ``training_step`` to add up the step's micro-batch losses (as the
Trainer does for its own logs), takes the gradient norm of the trainable (LoRA) weights after clipping in
``on_pre_optimizer_step`` (NaN stays NaN and zero stays zero under clipping), and judges the step in
``on_step_end``. On CPU that is free; on a GPU it is one device sync per optimizer step, and the Trainer's
own NaN filter already syncs once per micro-batch.

A broken step raises :class:`~loradesk.core.training.RunBroke` from ``on_step_end``, before the Trainer
logs, evaluates or saves that step, so no checkpoint ever holds the broken weights.
"""

from __future__ import annotations

import functools
from typing import Any

import torch
from transformers import TrainerCallback

from loradesk.core.config import RunConfig
from loradesk.core.health import HealthMonitor
from loradesk.core.training import RunBroke, Sink


class HealthWatch(TrainerCallback):
    """The callback half; :func:`attach` also wraps the trainer's ``training_step``."""

    def __init__(self, monitor: HealthMonitor, sink: Sink) -> None:
        self.monitor, self.sink = monitor, sink
        self._loss: torch.Tensor | None = None
        self._grad_norm: torch.Tensor | None = None
        self._params: list[torch.Tensor] = []
        self._reported = 0

    @property
    def warnings(self) -> list[str]:
        return self.monitor.warnings

    def add_loss(self, loss: torch.Tensor) -> None:
        loss = loss.detach().float()
        self._loss = loss if self._loss is None else self._loss + loss

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kw: Any) -> None:
        self._params = [p for p in model.parameters() if p.requires_grad] if model is not None else []

    def on_pre_optimizer_step(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        grads = [p.grad for p in self._params if p.grad is not None]
        self._grad_norm = torch.nn.utils.get_total_norm(grads) if grads else None

    def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        if self._loss is None:
            return
        values = [self._loss] + ([self._grad_norm.to(self._loss.device)] if self._grad_norm is not None else [])
        numbers = torch.stack(values).tolist()  # one device sync per optimizer step
        self._loss = self._grad_norm = None
        fatal = self.monitor.step(state.global_step, numbers[0], numbers[1] if len(numbers) > 1 else None)
        if fatal is not None:
            raise RunBroke(fatal, state.global_step)
        for message in self.monitor.warnings[self._reported:]:
            self.sink.log(f"Warning: {message}")
        self._reported = len(self.monitor.warnings)


def attach(trainer: Any, sink: Sink, config: RunConfig, precision: str) -> HealthWatch:
    """Watch every optimizer step of ``trainer`` (a transformers ``Trainer``); return the watch."""
    vocab_size = getattr(getattr(trainer.model, "config", None), "vocab_size", None)
    watch = HealthWatch(HealthMonitor(config, vocab_size, overflow_skips=precision == "fp16"), sink)
    trainer.add_callback(watch)
    step = trainer.training_step

    @functools.wraps(step)
    def training_step(*args: Any, **kwargs: Any) -> Any:
        loss = step(*args, **kwargs)
        watch.add_loss(loss)
        return loss

    trainer.training_step = training_step
    return watch
