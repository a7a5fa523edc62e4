"""Run folders: what a finished (or stopped) training run leaves on disk, and how to export it.

A run folder is itself a loadable adapter folder, so the tutorial's own code works on it::

    run_dir/
      adapter_config.json, adapter_model.safetensors   the LoRA adapter (peft)
      tokenizer files, chat_template.jinja              the tokenizer the run trained with
      loradesk_run.json                                 config, base model, result, score
      dataset.jsonl                                     the rows it trained on (for resume)
      metrics.jsonl                                     one JSON object per logged step / eval
      checkpoints/checkpoint-N/                         resumable states (complete ones carry a marker)
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from loradesk.core.config import RunConfig
from loradesk.core.dataset import Example
from loradesk.core.fileio import atomic_open, atomic_write_text
from loradesk.core.paths import default_runs_dir

RUN_FILE = "loradesk_run.json"
METRICS_FILE = "metrics.jsonl"
DATASET_FILE = "dataset.jsonl"
CHECKPOINTS = "checkpoints"
COMPLETE_MARKER = "loradesk_complete"

__all__ = ["RunInfo", "default_runs_dir", "export_adapter", "export_merged", "latest_checkpoint",
           "list_runs", "new_run_dir", "read_metrics", "read_run", "record_score"]


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
    warnings: list[str] = field(default_factory=list)  # diverged / not learning, with advice

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
    """The :class:`RunInfo` of one run folder."""
    run_dir = Path(run_dir)
    data = read_run_file(run_dir)
    result = data.get("result", {})
    return RunInfo(
        path=run_dir, name=run_dir.name, created=data.get("created", ""), model=data.get("model", ""),
        status=result.get("status", "running"), final_loss=result.get("final_loss"),
        steps=int(result.get("steps", 0)), config=RunConfig.from_dict(data.get("config", {})),
        score=data.get("score"), base_model_dir=data.get("base_model_dir", ""),
        seconds=result.get("seconds"), device=result.get("device", ""),
        warnings=[str(w) for w in result.get("warnings") or []],
    )


def list_runs(runs_dir: Path | None = None) -> list[RunInfo]:
    """Every readable run under ``runs_dir``, newest first (unreadable folders are skipped)."""
    runs_dir = Path(runs_dir) if runs_dir else default_runs_dir()
    out = []
    for child in runs_dir.iterdir() if runs_dir.is_dir() else ():
        if (child / RUN_FILE).is_file():
            try:
                out.append(read_run(child))
            except (RunError, ValueError):
                continue
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
                rec = json.loads(line)
                rows.append(Example(rec["prompt"], rec["completion"], rec.get("system", ""),
                                    rec.get("split", "auto")))
    return rows


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest checkpoint that was completely written (half-written ones are ignored)."""
    folder = Path(run_dir) / CHECKPOINTS
    best: tuple[int, Path] | None = None
    for child in folder.glob("checkpoint-*") if folder.is_dir() else ():
        m = re.fullmatch(r"checkpoint-(\d+)", child.name)
        if m and (child / COMPLETE_MARKER).is_file() and (best is None or int(m.group(1)) > best[0]):
            best = (int(m.group(1)), child)
    return best[1] if best else None


ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


def restore_checkpoint_adapter(run_dir: Path) -> Path | None:
    """Make the run folder's adapter the latest complete checkpoint's; return that checkpoint (None: none)."""
    checkpoint = latest_checkpoint(run_dir)
    if checkpoint is None or not all((checkpoint / name).is_file() for name in ADAPTER_FILES):
        return None
    for name in ADAPTER_FILES:
        partial = Path(run_dir) / f".{name}.partial"
        shutil.copyfile(checkpoint / name, partial)
        partial.replace(Path(run_dir) / name)
    return checkpoint


def export_adapter(run_dir: Path, dest: Path) -> Path:
    """Copy the adapter and tokenizer (no checkpoints) to ``dest``; loadable with peft or ``pipeline``."""
    run_dir, dest = Path(run_dir), Path(dest)
    if not (run_dir / ADAPTER_FILES[0]).is_file():
        raise RunError(f"{run_dir} holds no adapter yet")
    dest.mkdir(parents=True, exist_ok=True)
    for child in run_dir.iterdir():
        if child.is_file() and child.name not in (METRICS_FILE, DATASET_FILE) and not child.name.startswith("."):
            shutil.copy2(child, dest / child.name)
    return dest


def export_merged(run_dir: Path, dest: Path, dtype: str = "auto") -> Path:
    """Fold the adapter into the base weights and save a plain transformers model (safetensors) to ``dest``."""
    import torch
    from peft import PeftModel

    from loradesk.core.models import load_model, load_tokenizer

    run_dir, dest = Path(run_dir), Path(dest)
    info = read_run(run_dir)
    torch_dtype = {"auto": torch.float32, "fp32": torch.float32, "bf16": torch.bfloat16,
                   "fp16": torch.float16}[dtype]
    base = load_model(Path(info.base_model_dir), "cpu", torch_dtype, info.config.model.trust_remote_code)
    model = PeftModel.from_pretrained(base, run_dir).merge_and_unload()
    tokenizer = load_tokenizer(run_dir)
    dest.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(dest, safe_serialization=True)
    tokenizer.save_pretrained(dest)
    return dest
