"""Run folders: what a finished (or stopped) training run leaves on disk, and how to export it.

A run folder is itself a loadable adapter folder, so the tutorial's own code works on it::

    run_dir/
      adapter_config.json, adapter_model.safetensors   the LoRA adapter (peft)
      tokenizer files, chat_template.jinja              the tokenizer the run trained with
      loradesk_run.json                                 config, base model, result, score, training process
      dataset.jsonl                                     the rows it trained on (for resume)
      metrics.jsonl                                     one JSON object per logged step / eval
      checkpoints/checkpoint-N/                         resumable states (complete ones carry a marker)
      .saving-XXXX/                                     only while the final adapter is being saved

A run's status is "completed", "stopped" (by the user or a signal, adapter kept), "failed", "running", or
"interrupted" (its process ended without a final save; resumable from its latest complete checkpoint).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple

from loradesk.core import checkpoints, liveness, opened_runs
from loradesk.core.config import RunConfig
from loradesk.core.dataset import Example, row_from_record
from loradesk.core.fileio import (
    atomic_open,
    atomic_write_text,
    move_into_place,
    remove_stale_temps,
    storage_errors_named,
    temp_dir_beside,
)
from loradesk.core.paths import default_runs_dir

RUN_FILE = "loradesk_run.json"
METRICS_FILE = "metrics.jsonl"
DATASET_FILE = "dataset.jsonl"
CHECKPOINTS = "checkpoints"
COMPLETE_MARKER = "loradesk_complete"

__all__ = ["RunInfo", "default_runs_dir", "export_adapter", "export_merged", "latest_checkpoint",
           "list_runs", "mark_interrupted", "new_run_dir", "read_metrics", "read_new_metrics", "read_run",
           "record_score", "resume_command"]


class RunError(RuntimeError):
    """A run folder is missing or unreadable."""


@dataclass
class RunInfo:
    """Summary of one run folder, as shown in the Runs list."""

    path: Path
    name: str
    created: str
    model: str
    status: str
    final_loss: float | None
    steps: int
    config: RunConfig
    score: float | None
    base_model_dir: str
    seconds: float | None = None
    device: str = ""
    checkpoint: Path | None = None  # the latest complete checkpoint (interrupted and stopped runs)
    where: str = ""  # the training process ("pid 12 on host") of a run that says "running"
    warnings: list[str] = field(default_factory=list)  # diverged / not learning, with advice
    error: str = ""  # why a failed run failed
    parent: str = ""  # the run this one continues ("Train more"), as recorded
    step_offset: int = 0  # the parent's last global step: this run's steps are numbered after it

    @property
    def resumable(self) -> bool:
        """A stopped or interrupted run with a complete checkpoint to continue from."""
        return self.status in ("stopped", "interrupted") and self.checkpoint is not None

    @property
    def status_label(self) -> str:
        """The status as shown to the user: ``completed with warnings`` when the run had any."""
        return status_label(self.status, self.warnings)


def status_label(status: str, warnings: Sequence[str]) -> str:
    """``completed``, or ``completed with warnings`` (likewise ``stopped``) when there are any."""
    return f"{status} with warnings" if warnings else status


def new_run_dir(runs_dir: Path, model_label: str) -> Path:
    """A fresh, uniquely named folder under ``runs_dir``: ``20261130-141502-SmolLM2-135M-Instruct``."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", model_label.split("/")[-1]).strip("-") or "model"
    runs_dir.mkdir(parents=True, exist_ok=True)
    for i in range(1000):
        path = runs_dir / (f"{stamp}-{slug}" + (f"-{i}" if i else ""))
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise RunError(f"could not create a run folder in {runs_dir}")


def write_run_file(run_dir: Path, data: dict[str, Any]) -> None:
    atomic_write_text(run_dir / RUN_FILE, json.dumps(data, indent=2) + "\n")


def read_run_file(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / RUN_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunError(f"{run_dir} is not a LoRA Desk run (no {RUN_FILE})") from None
    except json.JSONDecodeError as exc:
        raise RunError(f"{path}: line {exc.lineno}: {exc.msg}") from None


def read_run(run_dir: Path) -> RunInfo:
    """The :class:`RunInfo` of one run folder.

    A run whose file says "running" but whose training process is gone (same host) is reported as
    "interrupted", with its latest complete checkpoint; on another host it stays "running" and ``where``
    names the process. A recorded base model folder that is not on this machine is replaced by the one the
    user chose for the run (:mod:`loradesk.core.opened_runs`), if any.
    """
    run_dir = Path(run_dir)
    data = read_run_file(run_dir)
    result = data.get("result", {})
    status = result.get("status", "running")
    where = ""
    checkpoint = None
    offset = int(data.get("step_offset") or 0)
    if status == "running":
        state = liveness.process_state(data.get("process"))
        if state == "gone":
            checkpoint = latest_checkpoint(run_dir)
            status, result = "interrupted", {**result, **_interrupted_result(run_dir, checkpoint, offset)}
        elif state in ("alive", "elsewhere"):
            where = liveness.describe(data.get("process"))
    elif status in ("stopped", "interrupted"):
        checkpoint = latest_checkpoint(run_dir)
    return RunInfo(
        path=run_dir, name=run_dir.name, created=data.get("created", ""), model=data.get("model", ""),
        status=status, final_loss=result.get("final_loss"),
        steps=int(result.get("steps", 0)), config=RunConfig.from_dict(data.get("config", {})),
        score=data.get("score"), base_model_dir=_base_model_dir(run_dir, str(data.get("base_model_dir") or "")),
        seconds=result.get("seconds"), device=result.get("device", ""), checkpoint=checkpoint, where=where,
        warnings=[str(w) for w in result.get("warnings") or []], error=str(result.get("error") or ""),
        parent=str(data.get("parent") or ""), step_offset=offset,
    )


def _base_model_dir(run_dir: Path, recorded: str) -> str:
    """``recorded`` when that folder is here, else the folder chosen for this run instead (if any)."""
    if recorded and Path(recorded).is_dir():
        return recorded
    return opened_runs.base_model(run_dir) or recorded


def base_model_missing(info: RunInfo) -> bool:
    """Whether the run's base model folder is not on this machine (a run trained elsewhere)."""
    return not info.base_model_dir or not Path(info.base_model_dir).is_dir()


def _interrupted_result(run_dir: Path, checkpoint: Path | None, step_offset: int = 0) -> dict[str, Any]:
    """What an interrupted run kept: its latest complete checkpoint, the steps and loss up to it (a continued
    run's metrics are numbered after ``step_offset``)."""
    steps = checkpoint_step(checkpoint) if checkpoint else 0
    losses = [m["loss"] for m in read_metrics(run_dir)
              if "loss" in m and int(m.get("step", 0)) <= steps + step_offset]
    return {"status": "interrupted", "steps": steps, "final_loss": losses[-1] if losses else None,
            "checkpoint": checkpoint.name if checkpoint else None}


def mark_interrupted(run_dir: Path) -> bool:
    """Record a run whose training process is ending without a final save as "interrupted" (only while its
    file still says "running"); True when it was marked."""
    data = read_run_file(run_dir)
    if data.get("result", {}).get("status", "running") != "running":
        return False
    result = {**data.get("result", {}), **_interrupted_result(run_dir, latest_checkpoint(run_dir),
                                                              int(data.get("step_offset") or 0))}
    write_run_file(Path(run_dir), {**data, "result": result})
    return True


def resume_command(run_dir: Path) -> str:
    """The command line that continues ``run_dir`` (its rows come from the run's own dataset snapshot)."""
    run_dir = Path(run_dir)
    return f'loradesk train "{run_dir / DATASET_FILE}" --resume "{run_dir}"'


def list_runs(runs_dir: Path | None = None, also: Iterable[Path] = ()) -> list[RunInfo]:
    """Every readable run under ``runs_dir``, newest first (unreadable folders are skipped); with ``also``,
    those run folders too (runs opened from elsewhere: only read, never cleaned up)."""
    runs_dir = Path(runs_dir) if runs_dir else default_runs_dir()
    out = []
    remove_stale_temps(runs_dir)  # temporary files and folders a killed write left (an hour old at least)
    for child in runs_dir.iterdir() if runs_dir.is_dir() else ():
        if (child / RUN_FILE).is_file():
            remove_stale_temps(child)
            try:
                info = read_run(child)
            except (RunError, ValueError):
                continue
            if info.status != "running":  # nothing is saving into it: a temporary save folder is stale
                checkpoints.remove_stale_saves(child)
            out.append(info)
    listed = {os.path.abspath(info.path) for info in out}
    for folder in also:
        if os.path.abspath(folder) not in listed and (Path(folder) / RUN_FILE).is_file():
            try:
                out.append(read_run(Path(folder)))
            except (RunError, ValueError):
                continue
            listed.add(os.path.abspath(folder))
    return sorted(out, key=lambda r: (r.created, r.name), reverse=True)


def record_score(run_dir: Path, score: float, detail: dict[str, Any] | None = None) -> None:
    """Store a compare score (fraction of held-out answers containing the expected phrase)."""
    data = read_run_file(run_dir)
    data["score"] = float(score)
    if detail is not None:
        data["score_detail"] = detail
    write_run_file(Path(run_dir), data)


def append_metrics(run_dir: Path, row: dict[str, Any]) -> None:
    with open(Path(run_dir) / METRICS_FILE, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(row) + "\n")


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """The logged metrics of a run; a line torn by a crash is skipped."""
    path = Path(run_dir) / METRICS_FILE
    rows = []
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return rows


class NewMetrics(NamedTuple):
    """What :func:`read_new_metrics` found: the new rows and where the next read starts."""

    rows: list[dict[str, Any]]
    offset: int  # the byte after the last complete line read
    file_id: tuple[int, int] | None  # (device, inode) of the file read; None: no file yet
    restarted: bool  # the file was replaced or cut shorter: ``rows`` are all of it, from the start
    more: bool = False  # ``limit`` stopped the read: more complete lines may follow at ``offset``


def read_new_metrics(run_dir: Path, offset: int = 0, file_id: tuple[int, int] | None = None,
                     limit: int | None = None) -> NewMetrics:
    """The metrics rows logged since byte ``offset`` of the file ``file_id`` (from an earlier read), for
    following a run that is still being written; with ``limit``, about that many bytes at most (a long
    backlog comes in pieces, ``more`` says so).

    Only complete lines are read: a half-written last line is left for the next read. A torn or foreign line
    in between is skipped, as in :func:`read_metrics`. A file that was replaced (resume rewrites it) or is
    now shorter than ``offset`` is read again from its start.
    """
    path = Path(run_dir) / METRICS_FILE
    try:
        with open(path, "rb") as fh:
            stat = os.fstat(fh.fileno())
            found = (stat.st_dev, stat.st_ino)
            restarted = offset > 0 and (stat.st_size < offset or (file_id is not None and found != file_id))
            start = 0 if restarted else offset
            fh.seek(start)
            size = max(0, stat.st_size - start)
            data = fh.read(size if limit is None else min(size, limit))
            more = len(data) < size
            if more and b"\n" not in data:  # one line longer than the limit: read it whole
                data += fh.readline()
                more = len(data) < size
    except FileNotFoundError:
        return NewMetrics([], 0, None, offset > 0)
    end = data.rfind(b"\n")
    rows = []
    for line in data[:end + 1].splitlines():
        try:
            row = json.loads(line)
        except ValueError:  # a torn line (JSON or UTF-8): skipped
            continue
        if isinstance(row, dict):
            rows.append(row)
    return NewMetrics(rows, start + end + 1, found, restarted, more)


def truncate_metrics(run_dir: Path, last_step: int) -> None:
    """Drop metric rows after ``last_step`` (used when resuming from an earlier checkpoint)."""
    rows = [r for r in read_metrics(run_dir) if int(r.get("step", 0)) <= last_step]
    with atomic_open(Path(run_dir) / METRICS_FILE) as fh:
        fh.writelines(json.dumps(r) + "\n" for r in rows)


def save_dataset_snapshot(run_dir: Path, rows: list[Example]) -> None:
    with atomic_open(Path(run_dir) / DATASET_FILE) as fh:
        fh.writelines(json.dumps({**r.to_record(), "split": r.split}, ensure_ascii=False) + "\n" for r in rows)


def load_dataset_snapshot(run_dir: Path) -> list[Example]:
    rows = []
    with open(Path(run_dir) / DATASET_FILE, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                rows.append(row_from_record(json.loads(line)))
    return rows


def checkpoint_step(folder: Path) -> int:
    """The global step of ``checkpoint-N``."""
    return int(Path(folder).name.rsplit("-", 1)[-1])


def latest_checkpoint(run_dir: Path, repair: bool = False) -> Path | None:
    """The newest checkpoint that was completely written (half-written ones are ignored).

    A checkpoint counts when it carries the completion marker, or when its files verify
    (:func:`loradesk.core.checkpoints.verify_checkpoint`: the process died between the last file and the
    marker); with ``repair`` the missing marker is then written.
    """
    folder = Path(run_dir) / CHECKPOINTS
    found = []
    for child in folder.glob("checkpoint-*") if folder.is_dir() else ():
        if re.fullmatch(r"checkpoint-(\d+)", child.name) and child.is_dir():
            found.append((checkpoint_step(child), child))
    for step, child in sorted(found, reverse=True):
        if (child / COMPLETE_MARKER).is_file():
            return child
        if checkpoints.verify_checkpoint(child) is None:
            if repair:
                atomic_write_text(child / COMPLETE_MARKER, str(step))
            return child
    return None


ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


#: Trainer's own files in a checkpoint (optimizer, scheduler, RNG and progress state): not part of an adapter.
_TRAINER_STATE_SUFFIXES = (".pt", ".pth", ".bin")
_TRAINER_STATE_FILES = ("trainer_state.json", COMPLETE_MARKER)


def adapter_source(run_dir: Path) -> Path | None:
    """The folder holding a run's adapter: the run folder once its final adapter is saved; for a run that ended
    before that (killed, or failed), its latest complete checkpoint, whose adapter loads the same way; None
    when the run has neither."""
    run_dir = Path(run_dir)
    if _holds_adapter(run_dir):
        return run_dir
    checkpoint = latest_checkpoint(run_dir)
    return checkpoint if checkpoint is not None and _holds_adapter(checkpoint) else None


def _holds_adapter(folder: Path) -> bool:
    return all((folder / name).is_file() for name in ADAPTER_FILES)


def restore_checkpoint_adapter(run_dir: Path) -> Path | None:
    """Make the run folder's adapter the latest complete checkpoint's; return that checkpoint (None: none)."""
    checkpoint = latest_checkpoint(run_dir)
    if checkpoint is None or not _holds_adapter(checkpoint):
        return None
    for name in ADAPTER_FILES:  # each file whole or not at all; a kill leaves a .tmp the next start clears
        with open(checkpoint / name, "rb") as src, atomic_open(Path(run_dir) / name, "wb") as dst:
            shutil.copyfileobj(src, dst)
    return checkpoint


def export_adapter(run_dir: Path, dest: Path) -> Path:
    """Copy the adapter and tokenizer (no checkpoints) to ``dest``; loadable with peft or ``pipeline``.

    Written into a temporary folder beside ``dest`` and moved into place at the end: on any error
    ``dest`` is unchanged and nothing is left behind.
    """
    run_dir, dest = Path(run_dir), Path(dest)
    source = adapter_source(run_dir)
    if source is None:
        raise RunError(f"{run_dir} holds no adapter yet")
    skip = {METRICS_FILE, DATASET_FILE, *_TRAINER_STATE_FILES}

    def write(tmp: Path) -> None:
        for child in source.iterdir():
            if (child.is_file() and child.name not in skip and not child.name.startswith(".")
                    and not child.name.endswith(_TRAINER_STATE_SUFFIXES)):
                shutil.copyfile(child, tmp / child.name)
        if source != run_dir and (run_dir / RUN_FILE).is_file():
            shutil.copyfile(run_dir / RUN_FILE, tmp / RUN_FILE)

    return _export(dest, write)


def export_merged(run_dir: Path, dest: Path, dtype: str = "auto") -> Path:
    """Fold the adapter into the base weights and save a plain transformers model (safetensors) to ``dest``.

    Like :func:`export_adapter`, all or nothing. The model's own code runs only if the user trusted the
    base model (the run file's setting is ignored).
    """
    import torch

    run_dir, dest = Path(run_dir), Path(dest)
    torch_dtype = {"auto": torch.float32, "fp32": torch.float32, "bf16": torch.bfloat16,
                   "fp16": torch.float16}[dtype]
    model, tokenizer = merged_model(run_dir, torch_dtype)

    def write(tmp: Path) -> None:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)

    return _export(dest, write)


def merged_model(run_dir: Path, torch_dtype: Any = None) -> tuple[Any, Any]:
    """``(model, tokenizer)``: the run's base model on the CPU with its adapter folded in (float32 unless
    ``torch_dtype`` says otherwise), and the tokenizer the run trained with.

    The model's own code runs only if the user trusted the base model (the run file's setting is ignored).
    """
    from peft import PeftModel

    from loradesk.core.models import load_model, load_tokenizer

    run_dir = Path(run_dir)
    info = read_run(run_dir)
    source = adapter_source(run_dir)
    if source is None:
        raise RunError(f"{run_dir} holds no adapter yet")
    base = load_model(Path(info.base_model_dir), "cpu", torch_dtype, trust_remote_code=True)
    model = PeftModel.from_pretrained(base, source).merge_and_unload()
    return model, load_tokenizer(source, trust_remote_code=True)


def _export(dest: Path, write: Callable[[Path], None]) -> Path:
    """Run ``write(tmp)`` on a temporary folder beside ``dest``, then move it into place (or remove it)."""
    remove_stale_temps(dest.parent)
    with storage_errors_named(dest):
        tmp = temp_dir_beside(dest)
        try:
            write(tmp)
            return move_into_place(tmp, dest)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
