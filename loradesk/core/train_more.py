"""Train more: continue a finished or stopped run as a NEW run linked to it (its parent).

The new run starts from the parent's final adapter, with the parent's settings (model, LoRA, learning rate,
...) for N more epochs, on the parent's own rows (its dataset snapshot) or on rows the caller gives. Its run
file records ``parent`` (the parent's folder) and ``step_offset`` (the parent's last global step); its
metrics continue the parent's step numbering, so the two curves join. This differs from resume, which
finishes an interrupted or stopped run in its own folder from a checkpoint (with its optimizer state); a
continued run starts a fresh optimizer and learning-rate schedule.

    continue_run(parent, sink, stop, epochs=1)    -> RunResult of the new run
    lineage_metrics(run_dir)                      -> the ancestors' metrics up to each join, then the run's
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loradesk.core import runs
from loradesk.core.config import RunConfig
from loradesk.core.dataset import Example

if TYPE_CHECKING:
    from loradesk.core.training import RunResult, Sink

#: How many ancestors :func:`lineage` follows (a guard against a hand-edited loop of parents).
MAX_DEPTH = 100


@dataclass(frozen=True)
class Start:
    """Where a continued run starts: its ``parent`` folder, the parent's last global step, and the adapter
    folder whose weights it starts from (None when it resumes from its own checkpoint instead)."""

    parent: Path
    step_offset: int
    adapter: Path | None = None

    def record(self) -> dict[str, Any]:
        """The fields the run file keeps."""
        return {"parent": str(self.parent), "step_offset": self.step_offset}

    def load_into(self, model: Any) -> None:
        """Set the LoRA weights of ``model`` (a peft model wrapped with the parent's settings) to the parent's
        adapter; raises ``TrainingError`` naming the adapter when they do not fit."""
        from peft import set_peft_model_state_dict
        from peft.utils import load_peft_weights

        from loradesk.core.training import TrainingError

        if self.adapter is None:
            return
        try:
            weights = load_peft_weights(str(self.adapter), device="cpu")
            result = set_peft_model_state_dict(model, weights)
        except (OSError, RuntimeError, ValueError) as exc:  # torch lists every mismatch: name the first
            lines = [line.strip() for line in str(exc).splitlines() if line.strip()] or [type(exc).__name__]
            first = next((line for line in lines if line.startswith("size mismatch")), lines[-1])
            raise TrainingError(f"{self.adapter}: the adapter does not fit the model: {first}") from None
        missing = [k for k in result.missing_keys if "lora_" in k]
        if result.unexpected_keys or missing:
            odd = (result.unexpected_keys or missing)[0]
            raise TrainingError(f"{self.adapter}: the adapter does not fit the model ({odd})")


def start_of(record: dict[str, Any]) -> Start | None:
    """The :class:`Start` a run file records (None: the run is not a continuation); no adapter to load."""
    parent = record.get("parent")
    if not parent:
        return None
    return Start(Path(parent), int(record.get("step_offset") or 0))


def restart_of(run_dir: Path) -> Start | None:
    """How to start ``run_dir`` over in a new folder (an out-of-memory retry): from its parent's adapter again."""
    start = start_of(runs.read_run_file(run_dir))
    return Start(start.parent, start.step_offset, start.parent) if start else None


def parent_of(run_dir: Path) -> Path | None:
    """The parent folder of ``run_dir`` (None: not a continuation, or its parent is gone). A parent moved
    together with its runs folder is found beside ``run_dir`` by name."""
    try:
        start = start_of(runs.read_run_file(run_dir))
    except (runs.RunError, OSError, ValueError):
        return None
    if start is None:
        return None
    for candidate in (start.parent, Path(run_dir).parent / start.parent.name):
        if (candidate / runs.RUN_FILE).is_file():
            return candidate
    return None


def last_step(info: runs.RunInfo) -> int:
    """The last global step of a run: its own steps after the steps of its ancestors."""
    return info.step_offset + info.steps


def cannot_continue(info: runs.RunInfo) -> str:
    """Why ``info`` cannot be trained more ("" when it can: a completed or stopped run with its adapter)."""
    if info.status == "running":
        return f"{info.name} is still being trained: wait until it ends"
    if info.status == "interrupted":
        return f"{info.name} was interrupted: resume it first, then train it more"
    if info.status not in ("completed", "stopped"):
        return f"{info.name} {info.status}: only a completed or stopped run can be trained more"
    if runs.adapter_source(info.path) != info.path:
        return f"{info.name} holds no final adapter to continue from"
    return ""


def child_config(config: RunConfig, epochs: float | None = None, max_steps: int = 0) -> RunConfig:
    """The parent's settings for ``epochs`` more epochs (default: the parent's epochs), or ``max_steps``."""
    data = config.to_dict()
    if epochs is not None:
        data["training"]["epochs"] = float(epochs)
    data["training"]["max_steps"] = int(max_steps)
    return RunConfig.from_dict(data)


def continue_run(parent: Path, sink: Sink | None = None, stop: threading.Event | None = None, *,
                 epochs: float | None = None, max_steps: int = 0, rows: Sequence[Example] | None = None,
                 runs_dir: Path | None = None, out_dir: Path | None = None) -> RunResult:
    """Train ``parent``'s adapter more in a new run folder (``out_dir``, or a new folder in ``runs_dir``);
    ``rows`` None trains on the parent's own rows. The parent is left as it is."""
    from loradesk.core import training

    parent = Path(parent)
    try:
        info = runs.read_run(parent)
    except runs.RunError as exc:
        raise training.TrainingError(str(exc)) from None
    if reason := cannot_continue(info):
        raise training.TrainingError(reason)
    if rows is None:
        try:
            rows = runs.load_dataset_snapshot(parent)
        except FileNotFoundError:
            raise training.TrainingError(f"{parent} has no {runs.DATASET_FILE}: give the rows to train on") from None
    config = child_config(info.config, epochs, max_steps)
    start = Start(parent.resolve(), last_step(info), parent)
    return training.run(config, rows, sink, stop, runs_dir=runs_dir, out_dir=out_dir, start=start)


def lineage(run_dir: Path) -> list[Path]:
    """``run_dir`` and its ancestors, oldest first (as far as their folders are found)."""
    chain = [Path(run_dir)]
    seen = {Path(run_dir).resolve()}
    while len(chain) <= MAX_DEPTH and (parent := parent_of(chain[0])) is not None:
        if parent.resolve() in seen:
            break
        seen.add(parent.resolve())
        chain.insert(0, parent)
    return chain


def lineage_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """The metrics to draw for ``run_dir``: each ancestor's up to where its child took over, then its own."""
    chain = lineage(run_dir)
    rows: list[dict[str, Any]] = []
    for older, newer in itertools.pairwise(chain):
        start = start_of(runs.read_run_file(newer))
        until = start.step_offset if start else 0
        rows = [r for r in rows if int(r.get("step", 0)) <= until]
        rows += [r for r in runs.read_metrics(older) if int(r.get("step", 0)) <= until]
    return rows + runs.read_metrics(chain[-1])
