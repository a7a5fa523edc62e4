"""The whole training job as one headless function: ``run(config, dataset, sink, stop) -> RunResult``.

It resolves the model, tokenizes the rows, wraps the model with a peft LoRA adapter and trains it with the
transformers ``Trainer``. A callback forwards each logged step to a small :class:`Sink` and watches a
``threading.Event``: when it is set the run saves a checkpoint and a usable adapter, then returns. The GUI's
job (`ui/training_job.py`) only turns the sink's calls into typed events; the CLI prints them.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from loradesk import __version__
from loradesk.core import checkpoints, distributed, interrupts, liveness, runs, system_role, train_more
from loradesk.core.checks import control_rows, has_lone_surrogate
from loradesk.core.config import RunConfig
from loradesk.core.dataset import Dataset, Example, split_rows
from loradesk.core.fileio import storage_errors_named
from loradesk.core.paths import default_runs_dir
from loradesk.core.readiness import can_train
from loradesk.core.wording import plural, plural_word


class TrainingError(RuntimeError):
    """Training cannot start or failed; the message says what to fix."""


class ToolsUnsupported(TrainingError):
    """Rows with tool calls meet a chat template that leaves them out; the ``tools_as_text`` setting helps."""


class TrainingStopped(TrainingError):
    """The stop flag was set before training started: nothing was written (a resumed run is unchanged)."""


class RunBroke(TrainingError):
    """The loss or the gradients became NaN/inf at ``step``: the run stopped without saving that state."""

    def __init__(self, message: str, step: int) -> None:
        super().__init__(message)
        self.step = step


class OutOfMemory(TrainingError):
    """The device ran out of memory while training ``run_dir``; ``retry_config`` is the same run with a smaller
    batch and more accumulation (None when the batch cannot shrink). See :func:`retry_smaller`."""

    def __init__(self, message: str, run_dir: Path, retry_config: RunConfig | None) -> None:
        super().__init__(message)
        self.run_dir, self.retry_config = run_dir, retry_config


@dataclass
class TrainProgress:
    """One progress report: sent after every logged step and every evaluation."""

    step: int
    max_steps: int
    epoch: float
    loss: float | None = None
    learning_rate: float | None = None
    grad_norm: float | None = None
    eval_loss: float | None = None
    tokens_per_second: float | None = None
    elapsed: float = 0.0
    eta: float | None = None
    start_step: int = 0  # a continued run's steps are numbered after its parent's last step

    @property
    def fraction(self) -> float:
        span = self.max_steps - self.start_step
        return (self.step - self.start_step) / span if span > 0 else 0.0


class Sink(Protocol):
    """Where a run reports. All methods are called on the training thread."""

    def status(self, text: str) -> None: ...
    def progress(self, p: TrainProgress) -> None: ...
    def log(self, text: str) -> None: ...


class NullSink:
    """A sink that ignores everything."""

    def status(self, text: str) -> None:
        pass

    def progress(self, p: TrainProgress) -> None:
        pass

    def log(self, text: str) -> None:
        pass


@dataclass
class Prepared:
    """What a run knows before it loads the model: :meth:`TrainingJob.prepare`'s answer."""

    model_dir: Path
    device: str
    precision: str
    tokenizer: Any
    tokenizer_lock: Any
    train_rows: list[Example]
    eval_rows: list[Example]
    train_data: Any
    eval_data: Any
    cut_rows: int
    skipped_rows: int = 0  # training rows left out: no token of theirs carries loss (within max_length)


@dataclass
class RunResult:
    """What a finished or stopped run produced."""

    run_dir: Path
    status: str  # "completed" | "stopped" (a broken run raises RunBroke instead)
    steps: int
    final_loss: float | None
    seconds: float
    device: str
    cut_rows: int = 0
    skipped_rows: int = 0
    precision: str = ""
    train_rows: int = 0
    eval_rows: int = 0
    tokens_per_second: float | None = None
    warnings: list[str] = dataclasses.field(default_factory=list)  # diverged / not learning, with advice
    learned: str = ""  # "Learned: 15/16 held-out questions answered at step 40 (38 s); stopped early"
    check_seconds: float = 0.0  # what the stop-when-learned checks took (left out of tokens_per_second)


# --- the run -----------------------------------------------------------------------------------------------
def run(config: RunConfig, dataset: Dataset | Sequence[Example], sink: Sink | None = None,
        stop: threading.Event | None = None, runs_dir: Path | None = None,
        resume_from: Path | None = None, out_dir: Path | None = None,
        start: train_more.Start | None = None, preflight: dict[str, Any] | None = None,
        heldout: Path | None = None) -> RunResult:
    """Train a LoRA adapter; return when done or stopped. Raises on errors, leaving earlier runs untouched.

    With ``resume_from`` (an earlier run folder), the run continues in that folder from its latest complete
    checkpoint, with the config and rows it was started with (``config`` and ``dataset`` are ignored).
    ``out_dir`` names the run folder exactly (it must be empty or new); by default a new folder is made
    under ``runs_dir``. ``start`` makes the run continue another run (see :mod:`loradesk.core.train_more`).
    ``preflight`` (a pre-flight check's report, ``core.preflight``) is recorded in the run file under that key.
    ``heldout`` (a file of held-out questions) lets the run stop once it has learned them (the
    ``stop_when_learned`` setting, :mod:`loradesk.core.learned`); a resumed run uses the file it recorded.

    Started by torchrun or ``accelerate launch`` (see :mod:`loradesk.core.distributed`), every rank calls this
    with the same arguments: they train one adapter together, only the main process writes the run folder and
    reports to ``sink`` (the other ranks report nothing), and a stop on any rank stops all at the same step.
    """
    ranks = distributed.current()  # under a launcher: joins the process group
    sink = (sink or NullSink()) if ranks.is_main else NullSink()
    stop = stop or threading.Event()
    if resume_from is not None:
        run_dir = Path(resume_from)
        info = runs.read_run(run_dir)
        if info.status == "running" and info.where:
            raise TrainingError(f"{run_dir} is still being trained ({info.where}): stop it there first")
        if ranks.is_main:
            checkpoints.remove_stale_saves(run_dir)
        checkpoint = runs.latest_checkpoint(run_dir, repair=ranks.is_main)
        if checkpoint is None:
            raise TrainingError(f"{run_dir} has no complete checkpoint to resume from")
        data = runs.read_run_file(run_dir)
        config = RunConfig.from_dict(data["config"])
        start = train_more.start_of(data)
        heldout = Path(data["heldout"]) if data.get("heldout") else None
        rows = runs.load_dataset_snapshot(run_dir)
    else:
        rows = [dataclasses.replace(r) for r in dataset]
        checkpoint = None
        run_dir = None
        if out_dir is not None:
            run_dir = Path(out_dir)
            if run_dir.exists() and any(run_dir.iterdir()):
                raise TrainingError(f"{run_dir} already exists and is not empty: choose a new folder")
    readiness = can_train(config, rows)
    if readiness.settings:
        readiness.raise_for_problems()  # ConfigError naming every bad field
    if readiness.data:
        raise TrainingError(readiness.data)
    distributed.barrier()  # every rank has read and checked the run folder before the main process writes to it
    job = TrainingJob(config, rows, sink, stop, start)
    job.preflight, job.heldout = preflight, Path(heldout).expanduser().resolve() if heldout else None
    # disk full, read-only, no permission: one line naming the run folder
    with storage_errors_named(lambda: job.run_dir or run_dir or runs_dir or default_runs_dir()):
        return job.run(runs_dir or default_runs_dir(), run_dir, checkpoint)


def steps_per_epoch(config: RunConfig, train_rows: int) -> int:
    """Optimizer steps in one pass over ``train_rows`` rows (the Trainer's count: the last batch may be short)."""
    t = config.training
    return max(1, math.ceil(math.ceil(train_rows / t.batch_size) / t.grad_accum))


def planned_steps(config: RunConfig, train_rows: int) -> int:
    """How many optimizer steps a run on ``train_rows`` training rows takes (max steps, else the epochs')."""
    t = config.training
    return t.max_steps if t.max_steps > 0 else math.ceil(t.epochs * steps_per_epoch(config, train_rows))


def retry_smaller(config: RunConfig, failed_run: Path, sink: Sink | None = None,
                  stop: threading.Event | None = None, runs_dir: Path | None = None,
                  out_dir: Path | None = None) -> RunResult:
    """Train the rows of ``failed_run`` (a run that ran out of memory) again with ``config`` (its error's
    ``retry_config``) in a new run folder; the failed run stays as it was."""
    import gc

    import torch

    gc.collect()  # the failed run's model and optimizer state
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return run(config, runs.load_dataset_snapshot(failed_run), sink, stop, runs_dir=runs_dir, out_dir=out_dir,
               start=train_more.restart_of(failed_run))


class TrainingJob:
    """One training run's steps. :func:`run` drives them; the benchmarks reuse the same pieces
    (``encode``, ``wrap_lora``, ``build_trainer``) so what they measure is exactly what the app runs."""

    def __init__(self, config: RunConfig, rows: list[Example], sink: Sink, stop: threading.Event,
                 start: train_more.Start | None = None) -> None:
        self.config, self.rows, self.sink, self.stop = config, rows, sink, stop
        self.start = start  # the run this one continues, if any
        self.step_offset = start.step_offset if start else 0
        self.run_dir: Path | None = None  # the run folder, once there is one
        self.preflight: dict[str, Any] | None = None  # a pre-flight check's report, recorded in the run file
        self.heldout: Path | None = None  # held-out questions that tell when the run has learned
        self.skipped, self.skipped_why, self.skipped_first = 0, "", 0  # rows the last encode() left out
        self.skipped_hint = ""

    def run(self, runs_dir: Path, run_dir: Path | None, checkpoint: Path | None) -> RunResult:
        from loradesk.core import learned, models

        cfg = self.config
        sink = self.sink
        started = time.monotonic()
        prep = self.prepare()
        watch = learned.watch_for(cfg, self.heldout, prep.eval_data is not None, self.step_offset, started, sink.log)
        model_dir, device, precision = prep.model_dir, prep.device, prep.precision
        tokenizer, tokenizer_lock = prep.tokenizer, prep.tokenizer_lock
        train_rows, eval_rows, cut_rows = prep.train_rows, prep.eval_rows, prep.cut_rows
        skipped_rows = prep.skipped_rows
        train_data, eval_data = prep.train_data, prep.eval_data
        self._check_stop()
        model = self.build_model(prep)
        if self.start is not None and checkpoint is None:
            self.start.load_into(model)  # the parent's final adapter (a checkpoint brings its own weights)
        self._check_stop()

        main = distributed.current().is_main  # the Trainer's own answer takes over once it exists
        if checkpoint is None:
            if run_dir is None:  # one new folder, named by the main process, for every rank
                run_dir = distributed.from_main(lambda: runs.new_run_dir(runs_dir, self._model_label(model_dir)))
            self.run_dir = run_dir
            if main:
                run_dir.mkdir(parents=True, exist_ok=True)
                runs.save_dataset_snapshot(run_dir, self.rows)
        elif main:
            runs.truncate_metrics(run_dir, self.step_offset + runs.checkpoint_step(checkpoint))

        trainer, _collator, callback = self.build_trainer(model, tokenizer, train_data, eval_data, run_dir,
                                                          device, precision, started)
        main = trainer.is_world_process_zero()
        t = cfg.training
        world_size = trainer.args.world_size
        if watch.mode:
            trainer.add_callback(learned.callback_class()(watch, sink, callback.add_pause, tokenizer_lock,
                                                          t.use_chat_template, t.tools_as_text))
            sink.log(watch.describe(self.heldout))
        effective_batch = t.batch_size * t.grad_accum * world_size
        if world_size > 1:
            sink.log(f"Effective batch {effective_batch}: {t.batch_size} per device × {t.grad_accum} accumulation "
                     f"× {world_size} processes")
        base_record = {
            "app": f"LoRA Desk {__version__}", "created": datetime.now().isoformat(timespec="seconds"),
            "model": self._model_label(model_dir), "base_model_dir": str(model_dir),
            "config": cfg.to_dict(), "result": {"status": "running"}, "process": liveness.process_record(),
            "world_size": world_size, "effective_batch": effective_batch,
            **(self.start.record() if self.start else {}),
        }
        if self.preflight is not None:
            base_record["preflight"] = self.preflight
        if self.heldout is not None:
            base_record["heldout"] = str(self.heldout)
        if checkpoint is not None:
            previous = runs.read_run_file(run_dir)
            base_record["created"] = previous.get("created", base_record["created"])
            if "preflight" in previous and self.preflight is None:
                base_record["preflight"] = previous["preflight"]
            base_record["score"] = None
        if main:
            runs.write_run_file(run_dir, base_record)
            interrupts.register_run(run_dir)

        status = "completed"
        if distributed.any_rank(self.stop.is_set(), trainer.args.device) and checkpoint is None:
            status = "stopped"
        else:
            sink.status("Training")
            try:
                trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
            except Exception as exc:  # record the failure in the run folder, then let the caller report it
                failure = self._explain_failure(exc, run_dir, trainer, tokenizer_lock) if main else exc
                error = str(failure) if failure is not exc else f"{type(exc).__name__}: {exc}"
                if main:
                    with interrupts.finishing(run_dir):
                        runs.write_run_file(run_dir, {**base_record, "result": {
                            "status": "failed", "error": error,
                            "steps": trainer.state.global_step, "seconds": time.monotonic() - started}})
                if failure is exc:
                    raise
                raise failure from None
            if callback.stopped:
                status = "stopped"

        sink.status("Saving the adapter…")
        if world_size > 1:  # every rank takes part (sharded weights are gathered); the main process writes
            checkpoints.save_adapter_from(trainer, run_dir, main)
        else:
            checkpoints.save_adapter(model, tokenizer, run_dir, tokenizer_lock)
        seconds = time.monotonic() - started
        devices = (f"{world_size} × " if world_size > 1 else "") + models.device_description(device)
        result = RunResult(
            run_dir=run_dir, status=status, steps=trainer.state.global_step, final_loss=callback.last_loss,
            seconds=seconds, device=devices, cut_rows=cut_rows, skipped_rows=skipped_rows, precision=precision,
            train_rows=len(train_rows), eval_rows=len(eval_rows),
            tokens_per_second=callback.tokens_per_second(), warnings=self.health.warnings,
            learned=watch.learned_text(), check_seconds=watch.cost,
        )
        record = {**base_record, "result": {k: (str(v) if isinstance(v, Path) else v)
                                            for k, v in dataclasses.asdict(result).items()},
                  **(watch.score_record(self.heldout) or {})}
        if main:
            with interrupts.finishing(run_dir):
                runs.write_run_file(run_dir, record)
        if watch.checks:
            sink.log(watch.cost_text())
        sink.status("Stopped: adapter saved" if status == "stopped" else result.learned or "Done")
        sink.log(f"Adapter saved to {run_dir}")
        return result

    def _explain_failure(self, exc: Exception, run_dir: Path, trainer: Any, tokenizer_lock: Any) -> Exception:
        """The error to report for ``exc``: a broken run falls back to its last good checkpoint's adapter,
        running out of memory comes with a smaller-batch config to retry with, anything else stays as it is."""
        import torch

        from loradesk.core import health

        if isinstance(exc, RunBroke):
            kept = runs.restore_checkpoint_adapter(run_dir)
            if kept:
                with tokenizer_lock:  # the folder loads on its own, as after a stop
                    trainer.processing_class.save_pretrained(run_dir)
            note = (f" The run folder keeps the adapter of its last good checkpoint, {kept.name}." if kept
                    else " No checkpoint had been saved yet, so the run has no adapter.")
            return RunBroke(str(exc) + note, exc.step)
        if isinstance(exc, torch.OutOfMemoryError):
            smaller = health.smaller_batch(self.config)
            message = health.out_of_memory_message(self.config, trainer.state.global_step, smaller)
            return OutOfMemory(message, run_dir, smaller)
        return exc

    # -- pieces --
    def prepare(self) -> Prepared:
        """Resolve the model, pick the device and precision, load the tokenizer, split and tokenize the rows."""
        import torch

        from loradesk.core import models

        cfg, t, sink = self.config, self.config.training, self.sink
        sink.status("Preparing the model…")
        model_dir = models.resolve_model(cfg.model, lambda text, _f: sink.status(text))
        device = models.pick_device()
        precision = models.resolve_precision(device, t.precision)
        if t.threads:
            torch.set_num_threads(t.threads)
        sink.log(f"Model: {model_dir}")
        sink.log(f"Device: {models.device_description(device)}, precision {precision}")

        sink.status("Loading the tokenizer…")
        tokenizer, tokenizer_lock = models.shared_tokenizer(model_dir, cfg.model.trust_remote_code)
        train_rows, eval_rows = split_rows(self.rows, t.validation_fraction, t.seed)
        if not train_rows:
            raise TrainingError("Every row is in the validation split: lower the validation fraction")
        if odd := control_rows(self.rows):
            broken = next((i for i in odd if any(has_lone_surrogate(text) for text in (
                self.rows[i].prompt, self.rows[i].completion, self.rows[i].system))), None)
            if broken is not None:
                raise TrainingError(f"Row {broken + 1} holds a lone surrogate (a broken \\ud800 escape) that no "
                                    "tokenizer can read: remove the control characters (Checks panel) first")
            sink.log(f"{plural(len(odd), 'row')} (row {odd[0] + 1} first) {plural_word(len(odd), 'holds', 'hold')} "
                     "control characters such as NUL; they are trained as they are (the Checks panel removes them)")
        self._check_tool_template(tokenizer, model_dir)
        if note := system_role.folded_note(tokenizer, self.rows, t.use_chat_template):
            sink.log(note)
        with tokenizer_lock:  # shared with the Dataset tab's token counts
            train_data, cut_rows = self.encode(tokenizer, train_rows)
            skipped_rows = self.skipped
            if not len(train_data):
                raise TrainingError(f"No training row is left to train: all {plural(len(train_rows), 'row')} "
                                    f"{self.skipped_why} (row {self.skipped_first} first){self.skipped_hint}")
            eval_data, _ = self.encode(tokenizer, eval_rows, "validation row") if eval_rows else (None, 0)
            if eval_data is not None and not len(eval_data):
                eval_data = None
        if cut_rows:
            sink.log(f"{plural(cut_rows, 'training row is', 'training rows are')} longer than max length "
                     f"{t.max_length} and {plural_word(cut_rows, 'was', 'were')} cut")
        sink.log(f"{plural(len(train_rows), 'training row')}, {plural(len(eval_rows), 'validation row')}")
        return Prepared(model_dir, device, precision, tokenizer, tokenizer_lock, train_rows, eval_rows,
                        train_data, eval_data, cut_rows, skipped_rows)

    def _check_tool_template(self, tokenizer: Any, model_dir: Path) -> None:
        """Refuse rows with tool calls that the model's chat template would silently leave out."""
        from loradesk.core.chat_render import has_tool_parts, supports_tools
        from loradesk.core.tokenize import has_chat_template

        t = self.config.training
        if not t.use_chat_template or t.tools_as_text or not has_chat_template(tokenizer):
            return
        tool_rows = [i for i, row in enumerate(self.rows) if row.turns and has_tool_parts(row)]
        if tool_rows and not supports_tools(tokenizer):
            n = len(tool_rows)
            raise ToolsUnsupported(
                f"The chat template of {self._model_label(model_dir)} leaves out tool calls and results: "
                f"{plural(n, 'row')} (row {tool_rows[0] + 1} first) {plural_word(n, 'has', 'have')} them; turn "
                "on 'Tool calls as text' to train them written as <tool_call> text")

    def build_model(self, prep: Prepared) -> Any:
        """The base model on the run's device in the run's dtype, wrapped with a fresh LoRA adapter."""
        self.sink.status("Loading the model…")
        lengths = [*prep.train_data["length"], *(prep.eval_data["length"] if prep.eval_data is not None else [])]
        return self.wrap_lora(self.load_base(prep.model_dir, prep.device, prep.precision, max(lengths)))

    def load_base(self, model_dir: Path, device: str, precision: str, longest_row: int) -> Any:
        """The base model as this run trains it: frozen Linear weights stored in bf16 where the CPU trains in
        bf16 (autocast would cast them at every step), eager attention on the CPU for short rows
        (see ``core.step_speed``)."""
        from loradesk.core import models, step_speed

        attention = step_speed.attention_for(device, longest_row)
        model = models.load_model(model_dir, device, models.weights_dtype(device, precision),
                                  self.config.model.trust_remote_code, attention)
        if device == "cpu" and precision == "bf16":
            step_speed.store_frozen_in_bf16(model)
        return model

    def _check_stop(self) -> None:
        if self.stop.is_set():
            raise TrainingStopped("Stopped before training started: nothing was saved")

    def encode(self, tokenizer: Any, rows: list[Example], kind: str = "training row") -> tuple[Any, int]:
        """Rows as a tokenized datasets.Dataset (input_ids, labels, length) and how many were cut. Rows with no
        token to train (every answer beyond the max length, or none at all) are left out and logged;
        ``self.skipped`` counts them."""
        from datasets import Dataset as HFDataset

        from loradesk.core.chat_render import TemplateError
        from loradesk.core.tokenize import encode

        t = self.config.training
        encoded = []
        for row in rows:
            try:
                encoded.append(encode(tokenizer, row, t.max_length, t.completion_only_loss, t.use_chat_template,
                                      t.assistant_turns, t.tools_as_text))
            except TemplateError as exc:
                raise TrainingError(f"Row {self._row_number(row)}: {exc}") from None
        cut = sum(1 for e in encoded if e.cut)
        self._report_notes(rows, encoded, kind)
        empty = [n for n, e in enumerate(encoded) if not e.trained_tokens]
        self.skipped = len(empty)
        if empty:
            beyond = f"the max length of {t.max_length} tokens"
            self.skipped_why = (f"whose answers lie beyond {beyond}" if all(encoded[n].cut for n in empty)
                                else f"with no token to train (no answer, or answers beyond {beyond})")
            self.skipped_first = self._row_number(rows[empty[0]])
            self.skipped_hint = ""
            if all(encoded[n].cut and not encoded[n].clipped for n in empty):  # what would keep their answers
                need = max(len(encoded[n].input_ids) + encoded[n].cut for n in empty)
                self.skipped_hint = f"; a max length of {-(-need // 64) * 64} would keep them"
            if len(empty) < len(rows):
                self.sink.log(f"Skipped {plural(len(empty), kind)} {self.skipped_why} "
                              f"(row {self.skipped_first} first){self.skipped_hint}")
            dropped = set(empty)
            encoded = [e for n, e in enumerate(encoded) if n not in dropped]
        data = HFDataset.from_dict({
            "input_ids": [e.input_ids for e in encoded],
            "labels": [e.labels for e in encoded],
            "length": [len(e.input_ids) for e in encoded],
        })
        return data, cut

    def _row_number(self, row: Example) -> int:
        """The 1-based number of ``row`` in the run's rows (found by identity: rows are not copied by the split)."""
        return next((n + 1 for n, r in enumerate(self.rows) if r is row), 0)

    def _report_notes(self, rows: list[Example], encoded: list[Any], kind: str) -> None:
        """Log the rows whose chat template made them fall back (see ``chat_render``), with the first one."""
        noted = [n for n, e in enumerate(encoded) if e.note]
        if noted:
            self.sink.log(f"{plural(len(noted), kind)} (row {self._row_number(rows[noted[0]])} first): "
                          f"{encoded[noted[0]].note}")

    def wrap_lora(self, model: Any) -> Any:
        """The model with a fresh LoRA adapter from the config ('auto' targets every block Linear layer), its first
        weights drawn from the run's seed."""
        from peft import LoraConfig, get_peft_model

        from loradesk.core.models import linear_module_names

        lora = self.config.lora
        targets = lora.target_modules
        if targets == ["auto"] or "auto" in targets:
            targets = linear_module_names(model)
        else:
            present = set(linear_module_names(model))
            missing = [m for m in targets if m not in present]
            if missing:
                raise TrainingError(f"The model has no layer named {', '.join(missing)}; "
                                    f"its linear layers are: {', '.join(sorted(present))}")
        peft_config = LoraConfig(
            r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=targets,
            bias=lora.bias, use_rslora=lora.use_rslora, use_dora=lora.use_dora, task_type="CAUSAL_LM",
        )
        import torch

        # the adapter's first weights come from the run's seed, and the process's random state stays as it was
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.config.training.seed)
            model = get_peft_model(model, peft_config)
        trainable, total = model.get_nb_trainable_parameters()
        self.sink.log(f"LoRA on {', '.join(targets)}: {trainable:,} trainable of {total:,} parameters "
                      f"({100 * trainable / total:.2f} %)")
        return model

    @staticmethod
    def _model_label(model_dir: Path) -> str:
        from loradesk.core.models import DEFAULT_MODEL_NAME, default_model_dir

        if model_dir == default_model_dir():
            return DEFAULT_MODEL_NAME
        parts = model_dir.parts
        if "snapshots" in parts:  # HF cache: models--org--name/snapshots/<rev>
            repo = parts[parts.index("snapshots") - 1]
            return repo.removeprefix("models--").replace("--", "/")
        return model_dir.name

    def build_trainer(self, model: Any, tokenizer: Any, train_data: Any, eval_data: Any, run_dir: Path,
                      device: str, precision: str, started: float) -> tuple[Any, Any, Any]:
        """The transformers Trainer for this run, with its collator and the reporting callback."""
        from transformers import PrinterCallback, Trainer, TrainingArguments

        from loradesk.core import step_speed
        from loradesk.core.tokenize import DataCollator

        t = self.config.training
        has_eval = eval_data is not None and len(eval_data) > 0
        per_epoch = steps_per_epoch(self.config, len(train_data))
        interval = "steps" if t.save_steps else "epoch"
        args = TrainingArguments(
            output_dir=str(run_dir / runs.CHECKPOINTS),
            per_device_train_batch_size=t.batch_size,
            per_device_eval_batch_size=t.batch_size,
            gradient_accumulation_steps=t.grad_accum,
            num_train_epochs=t.epochs,
            max_steps=t.max_steps if t.max_steps > 0 else -1,
            learning_rate=t.learning_rate,
            lr_scheduler_type=t.scheduler,
            warmup_steps=t.warmup_ratio,
            weight_decay=t.weight_decay,
            seed=t.seed,
            data_seed=t.seed,
            bf16=precision == "bf16",
            fp16=precision == "fp16",
            use_cpu=device == "cpu",
            logging_steps=t.logging_steps,
            logging_first_step=True,
            eval_strategy=("steps" if t.eval_steps else "epoch") if has_eval else "no",
            eval_steps=t.eval_steps or None,
            save_strategy=interval,
            save_steps=t.save_steps or per_epoch,
            save_total_limit=2,
            train_sampling_strategy="group_by_length" if t.group_by_length else "random",
            optim="adamw_torch_fused" if device == "cuda" else "adamw_torch",
            report_to="none",
            disable_tqdm=True,
            dataloader_num_workers=0,
            dataloader_pin_memory=device == "cuda",
            remove_unused_columns=False,
            ddp_find_unused_parameters=False,  # under a launcher: every LoRA weight takes part in each step
            torch_compile=t.compile,
        )
        collator = DataCollator(tokenizer.pad_token_id, pad_to_multiple_of=step_speed.pad_multiple(device))
        callback = _make_callback_class()(self.sink, self.stop, run_dir, collator, started, self.step_offset)
        timed = [checkpoints.timed_save_callback(t.save_minutes)] if t.save_minutes > 0 else []
        trainer = Trainer(model=model, args=args, data_collator=collator, train_dataset=train_data,
                          eval_dataset=eval_data if has_eval else None, processing_class=tokenizer,
                          callbacks=[callback, *timed])
        trainer.remove_callback(PrinterCallback)  # progress goes to the sink, not stdout
        step_speed.loss_at_labels(trainer.model)
        if device == "cpu" and not t.compile:  # compiled code fuses the casts itself
            step_speed.cast_inputs_once(trainer.model)
        if t.compile:
            self.sink.log("Compiling the model (torch.compile): the first steps wait for it, a few minutes on a "
                          "CPU the first time")
        from loradesk.core import health_watch

        self.health = health_watch.attach(trainer, self.sink, self.config, precision)
        return trainer, collator, callback


@functools.cache
def _make_callback_class() -> type:
    """The TrainerCallback subclass, built on first use so importing this module stays cheap."""
    from transformers import TrainerCallback

    class ReportingCallback(TrainerCallback):
        """Forwards logs to the sink and metrics.jsonl; honours the stop flag; marks complete checkpoints."""

        def __init__(self, sink: Sink, stop: threading.Event, run_dir: Path, collator: Any,
                     started: float, step_offset: int = 0) -> None:
            self.sink, self.stop, self.run_dir, self.collator = sink, stop, run_dir, collator
            self.started, self.step_offset = started, step_offset
            self.train_started: float | None = None
            self.tokens_at_start = 0
            self.paused = 0.0  # seconds of checks and evaluations, left out of the speed and the ETA
            self.last_loss: float | None = None
            self.stopped = False
            self.device: Any = "cpu"

        def tokens_per_second(self) -> float | None:
            """Trained tokens per second since training began, of every rank together (under a launcher every
            rank must ask at the same point: the ranks add up their counts)."""
            if self.train_started is None:
                return None
            elapsed = time.monotonic() - self.train_started - self.paused
            tokens = distributed.total(self.collator.trained_tokens - self.tokens_at_start, self.device)
            return tokens / elapsed if elapsed > 0 and tokens else None

        def add_pause(self, seconds: float) -> None:
            """Leave ``seconds`` (a check or an evaluation, not training) out of the speed and the ETA."""
            self.paused += seconds

        def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.device = args.device
            self.train_started = time.monotonic()
            self.tokens_at_start = self.collator.trained_tokens
            self.first_step = state.global_step

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            # under a launcher the ranks agree every step (a signal may reach one rank first): all stop together
            stop = self.stop.is_set() if args.world_size == 1 else distributed.any_rank(self.stop.is_set(),
                                                                                          args.device)
            if stop and not self.stopped:
                self.stopped = True
                control.should_training_stop = True
                control.should_save = True

        def on_save(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            distributed.barrier()  # every rank has written its part of the checkpoint
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if args.should_save and folder.is_dir():
                (folder / runs.COMPLETE_MARKER).write_text(str(state.global_step), encoding="utf-8")

        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, float] | None = None,
                   **kw: Any) -> None:
            logs = logs or {}
            if "loss" not in logs and "eval_loss" not in logs:
                return
            now = time.monotonic()
            elapsed = now - self.started
            steps_done = state.global_step - getattr(self, "first_step", 0)
            eta = None
            if self.train_started and steps_done > 0 and state.max_steps:
                trained = now - self.train_started - self.paused
                eta = trained / steps_done * (state.max_steps - state.global_step)
            if "loss" in logs:
                self.last_loss = float(logs["loss"])
            offset = self.step_offset  # a continued run's steps follow its parent's
            p = TrainProgress(
                step=offset + state.global_step, max_steps=offset + state.max_steps, start_step=offset,
                epoch=float(state.epoch or 0.0),
                loss=logs.get("loss"), learning_rate=logs.get("learning_rate"),
                grad_norm=logs.get("grad_norm"), eval_loss=logs.get("eval_loss"),
                tokens_per_second=self.tokens_per_second(), elapsed=elapsed, eta=eta,
            )
            if not state.is_world_process_zero:  # one writer: the logged loss is already the ranks' mean
                return
            runs.append_metrics(self.run_dir, {k: v for k, v in dataclasses.asdict(p).items()
                                               if v is not None and k != "start_step"})
            self.sink.progress(p)

    return ReportingCallback
