"""Checkpoints and adapter saves that survive a kill at any moment.

* :func:`verify_checkpoint` tells whether a checkpoint folder was written completely, from its files alone
  (for a checkpoint whose completion marker was never written because the process died just before).
* :func:`save_due` decides when a time-based checkpoint is due; :func:`timed_save_callback` applies it in
  the Trainer loop by setting ``control.should_save``.
* :func:`save_adapter` writes the run's final adapter and tokenizer to a temporary folder inside the run
  folder, then renames each file into place, so a kill during the save never leaves a half-written adapter
  (:func:`save_adapter_from` does the same for a run of several ranks); :func:`remove_stale_saves` clears what
  such a kill left behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import struct
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from loradesk.core import distributed

#: Files the Trainer writes into every checkpoint of a LoRA run (besides the weights and trainer_state.json).
CHECKPOINT_FILES = ("adapter_config.json", "optimizer.pt", "scheduler.pt", "rng_state.pth", "training_args.bin")
WEIGHTS = "adapter_model.safetensors"
TRAINER_STATE = "trainer_state.json"
TRAINING_ARGS = "training_args.bin"
RNG_STATE = "rng_state.pth"
#: Prefix of the temporary folder a final save writes into (inside the run folder).
SAVE_PREFIX = ".saving-"


def safetensors_problem(path: Path) -> str | None:
    """Why ``path`` is not a whole safetensors file (None when its header parses and its length matches)."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            head = fh.read(8)
            if len(head) < 8:
                return "shorter than a safetensors header"
            (length,) = struct.unpack("<Q", head)
            if length > size - 8:
                return "header runs past the end of the file"
            header = json.loads(fh.read(length))
    except FileNotFoundError:
        return "missing"
    except (OSError, ValueError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        return f"unreadable header ({exc})"
    if not isinstance(header, dict):
        return "header is not a JSON object"
    ends = [v["data_offsets"][1] for k, v in header.items()
            if k != "__metadata__" and isinstance(v, dict) and isinstance(v.get("data_offsets"), list)]
    expected = 8 + length + max(ends, default=0)
    if size != expected:
        return f"{size} bytes, the header says {expected}"
    return None


def verify_checkpoint(folder: Path) -> str | None:
    """Why the checkpoint ``folder`` is incomplete, or None when every file the Trainer writes is whole:
    trainer_state.json parses (the Trainer writes it last), the adapter weights are a complete safetensors
    file, and the optimizer, scheduler, RNG and config files exist and are not empty."""
    folder = Path(folder)
    try:
        json.loads((folder / TRAINER_STATE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return f"{TRAINER_STATE} is missing"
    except (OSError, ValueError) as exc:
        return f"{TRAINER_STATE} does not parse ({exc})"
    problem = safetensors_problem(folder / WEIGHTS)
    if problem:
        return f"{WEIGHTS}: {problem}"
    for name in CHECKPOINT_FILES:
        path = folder / name
        if name == RNG_STATE and not path.exists():  # a run of several ranks: rng_state_<rank>.pth each
            path = next(folder.glob("rng_state_*.pth"), path)
        if not path.is_file() or path.stat().st_size == 0:
            return f"{name} is missing or empty"
    return None


# --- time-based checkpoints ------------------------------------------------------------------------------
def save_due(now: float, last_save: float, minutes: float) -> bool:
    """Whether a time-based checkpoint is due: ``minutes`` (0 = off) have passed since ``last_save``."""
    return minutes > 0 and now - last_save >= minutes * 60.0


def timed_save_callback(minutes: float, clock: Callable[[], float] = time.monotonic) -> Any:
    """A TrainerCallback that asks for a checkpoint every ``minutes`` of training (any save restarts the clock)."""
    from transformers import TrainerCallback

    class TimedSave(TrainerCallback):
        def __init__(self) -> None:
            self.last_save = clock()

        def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.last_save = clock()

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            due = save_due(clock(), self.last_save, minutes)
            if args.world_size > 1:  # the ranks' clocks differ: all save at the same step, or none does
                due = distributed.any_rank(due, args.device)
            if due:
                control.should_save = True

        def on_save(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.last_save = clock()

    return TimedSave()


# --- the final save ----------------------------------------------------------------------------------------
def save_adapter(model: Any, tokenizer: Any, run_dir: Path, tokenizer_lock: threading.Lock | None = None) -> None:
    """Save the adapter and tokenizer into ``run_dir`` through a temporary folder beside them: every file is
    written whole first, then renamed into place (the adapter's config and weights are each atomic)."""
    run_dir = Path(run_dir)
    temp = Path(tempfile.mkdtemp(prefix=SAVE_PREFIX, dir=run_dir))
    try:
        model.save_pretrained(temp, safe_serialization=True)
        with tokenizer_lock or contextlib.nullcontext():
            tokenizer.save_pretrained(temp)
        _move_into(temp, run_dir)
    finally:
        shutil.rmtree(temp, ignore_errors=True)


def save_adapter_from(trainer: Any, run_dir: Path, main: bool) -> None:
    """The final save of a run of several ranks: every rank calls this (``trainer.save_model`` gathers weights
    that FSDP or ZeRO-3 shard; only the main process writes), into one temporary folder that the main process
    then moves into place file by file, as :func:`save_adapter` does. The files are those of a local run (the
    Trainer's pickled ``training_args.bin`` is left out)."""
    run_dir = Path(run_dir)
    temp = run_dir / f"{SAVE_PREFIX}ranks"  # the same path on every rank
    fsdp = getattr(trainer.accelerator.state, "fsdp_plugin", None) if trainer.is_fsdp_enabled else None
    if fsdp is not None:  # checkpoints may stay sharded; the adapter is gathered whole (peft's FSDP recipe)
        fsdp.set_state_dict_type("FULL_STATE_DICT")
    try:
        trainer.save_model(str(temp))
        if main:
            if not (temp / WEIGHTS).is_file():
                raise RuntimeError(f"the trainer saved no adapter weights into {temp}")
            (temp / TRAINING_ARGS).unlink(missing_ok=True)
            _move_into(temp, run_dir)
    finally:
        if main:
            shutil.rmtree(temp, ignore_errors=True)


def _move_into(temp: Path, run_dir: Path) -> None:
    """Rename every file of ``temp`` into ``run_dir`` once all are on disk, the adapter weights last."""
    names = sorted(p.name for p in temp.iterdir() if p.is_file())
    names.sort(key=lambda n: n == WEIGHTS)  # the weights last: their config is in place first
    for name in names:
        _fsync(temp / name)
    for name in names:
        os.replace(temp / name, run_dir / name)
    _fsync(run_dir)


def remove_stale_saves(run_dir: Path) -> list[Path]:
    """Delete temporary save folders a killed save left in ``run_dir`` (only call when no process trains it)."""
    removed = []
    for child in Path(run_dir).glob(f"{SAVE_PREFIX}*"):
        if child.is_dir():
            shutil.rmtree(child, ignore_errors=True)
            removed.append(child)
    return removed


def _fsync(path: Path) -> None:
    with contextlib.suppress(OSError):  # some file systems refuse fsync on folders
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
