"""Train more on the tiny model: a finished run continued as a new run that starts from its adapter, numbers
its steps after the parent's, trains its own or edited rows, and is listed with its parent."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from loradesk.core import runs, train_more, training
from loradesk.core.dataset import Example
from loradesk.core.formats import read_dataset

ROOT = Path(__file__).resolve().parents[2]
ADAPTER = "adapter_model.safetensors"


class Sink:
    def __init__(self) -> None:
        self.points: list[training.TrainProgress] = []

    def status(self, text: str) -> None:
        pass

    def log(self, text: str) -> None:
        pass

    def progress(self, p: training.TrainProgress) -> None:
        self.points.append(p)


def _config(model_dir: Path):
    from loradesk.core.config import RunConfig

    cfg = RunConfig()
    cfg.model.kind, cfg.model.name = "local", str(model_dir)
    cfg.lora.dropout, cfg.lora.r = 0.0, 8
    for key, value in {"max_steps": 12, "epochs": 2.0, "batch_size": 8, "learning_rate": 1e-2,
                       "warmup_ratio": 0.0, "precision": "fp32", "validation_fraction": 0.0}.items():
        setattr(cfg.training, key, value)
    return cfg


@pytest.fixture(scope="module")
def rows() -> list[Example]:
    return read_dataset(ROOT / "data" / "sample.json")[:48]


@pytest.fixture(scope="module")
def parent(tiny_model_dir: Path, rows: list[Example], tmp_path_factory: pytest.TempPathFactory) -> Path:
    result = training.run(_config(tiny_model_dir), rows, runs_dir=tmp_path_factory.mktemp("runs"))
    assert result.status == "completed" and result.steps == 12
    return result.run_dir


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _losses(run_dir: Path) -> list[tuple[int, float]]:
    return [(int(m["step"]), m["loss"]) for m in runs.read_metrics(run_dir) if "loss" in m]


@pytest.fixture(scope="module")
def child(parent: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[training.RunResult, Sink, str]:
    before = _digest(parent / ADAPTER)
    sink = Sink()
    result = train_more.continue_run(parent, sink, epochs=1, runs_dir=tmp_path_factory.mktemp("more"))
    return result, sink, before


def test_continuing_makes_a_new_run_linked_to_its_parent(parent: Path, child) -> None:
    result, _sink, before = child
    assert result.status == "completed" and result.run_dir != parent
    record = runs.read_run_file(result.run_dir)
    assert record["parent"] == str(parent.resolve()) and record["step_offset"] == 12
    info = runs.read_run(result.run_dir)
    assert info.parent == str(parent.resolve()) and info.step_offset == 12
    t, parent_t = info.config.training, runs.read_run(parent).config.training
    assert (t.epochs, t.max_steps) == (1.0, 0)  # one more epoch: 48 rows / batch 8
    assert result.steps == 6
    assert dataclasses.replace(t, epochs=parent_t.epochs, max_steps=parent_t.max_steps) == parent_t
    assert info.config.lora == runs.read_run(parent).config.lora
    assert _digest(parent / ADAPTER) == before  # the parent is left as it was
    assert runs.load_dataset_snapshot(result.run_dir) == runs.load_dataset_snapshot(parent)


def test_its_steps_follow_the_parents(parent: Path, child) -> None:
    result, sink, _ = child
    steps = [s for s, _ in _losses(result.run_dir)]
    assert steps[0] == _losses(parent)[-1][0] + 1 == 13
    assert steps == sorted(steps) and steps[-1] == 18
    first, last = sink.points[0], sink.points[-1]
    assert (first.step, first.start_step) == (13, 12)
    assert last.step == last.max_steps == 18 and last.fraction == 1.0
    assert "start_step" not in runs.read_metrics(result.run_dir)[0]
    merged = train_more.lineage_metrics(result.run_dir)
    assert [int(m["step"]) for m in merged if "loss" in m] == list(range(1, 19))


def test_it_starts_from_the_parents_adapter(parent: Path, child) -> None:
    """The first step's loss is measured before that step's update: with the parent's weights it is near the
    parent's last loss, far below the parent's own first step (a fresh adapter) on the same first batch."""
    result, _, _ = child
    parent_losses = [loss for _, loss in _losses(parent)]
    child_first = _losses(result.run_dir)[0][1]
    fall = parent_losses[0] - parent_losses[-1]
    assert fall > 0.5
    assert abs(child_first - parent_losses[-1]) < fall / 3


def test_the_loaded_adapter_equals_the_parents(parent: Path, tiny_model_dir: Path) -> None:
    from peft import get_peft_model_state_dict
    from transformers import AutoModelForCausalLM

    info = runs.read_run(parent)
    job = training.TrainingJob(info.config, [], training.NullSink(), __import__("threading").Event())
    model = job.wrap_lora(AutoModelForCausalLM.from_pretrained(tiny_model_dir))
    saved = load_file(parent / ADAPTER)
    fresh = get_peft_model_state_dict(model)
    assert any(not torch.equal(fresh[k], saved[k]) for k in saved)
    train_more.Start(parent, 12, parent).load_into(model)
    loaded = get_peft_model_state_dict(model)
    assert loaded.keys() == saved.keys()
    assert all(torch.equal(loaded[k], saved[k]) for k in saved)


def test_the_adapter_loads_and_differs_from_the_parents(parent: Path, child, tiny_model_dir: Path) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    result, _, _ = child
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), result.run_dir)
    assert model.active_adapter == "default"
    mine, theirs = load_file(result.run_dir / ADAPTER), load_file(parent / ADAPTER)
    assert mine.keys() == theirs.keys()
    assert any(not torch.equal(mine[k], theirs[k]) for k in mine)


def test_continuing_on_edited_rows_trains_those(parent: Path, rows: list[Example], tmp_path: Path) -> None:
    edited = [dataclasses.replace(r, completion=r.completion + " (edited)") for r in rows[:16]]
    sink = Sink()
    result = train_more.continue_run(parent, sink, epochs=1, rows=edited, out_dir=tmp_path / "edited")
    assert result.run_dir == tmp_path / "edited"
    assert runs.load_dataset_snapshot(result.run_dir) == edited
    assert result.train_rows == 16 and result.steps == 2
    assert [p.step for p in sink.points if p.loss is not None] == [13, 14]


def test_a_stopped_child_resumes_with_its_lineage(parent: Path, tmp_path: Path, stop_at) -> None:
    sink = stop_at(13)  # reported after step 13: it stops at the end of step 14
    stopped = train_more.continue_run(parent, sink, sink.stop, epochs=1, out_dir=tmp_path / "c")
    assert stopped.status == "stopped" and stopped.steps == 2
    assert runs.read_run(stopped.run_dir).checkpoint is not None
    resumed = training.run(None, [], resume_from=stopped.run_dir)  # type: ignore[arg-type]
    assert resumed.status == "completed" and resumed.steps == 6
    record = runs.read_run_file(stopped.run_dir)
    assert record["parent"] == str(parent.resolve()) and record["step_offset"] == 12
    steps = [s for s, _ in _losses(stopped.run_dir)]
    assert steps == list(range(13, 19))


def test_an_out_of_memory_retry_still_continues_the_parent(parent: Path, tmp_path: Path, small_gpu) -> None:
    """Batch 8 does not fit: each retry (batch 4, then 2) is again a new run from the parent's adapter."""
    with pytest.raises(training.OutOfMemory) as first:
        train_more.continue_run(parent, epochs=1, runs_dir=tmp_path)
    with pytest.raises(training.OutOfMemory) as second:
        training.retry_smaller(first.value.retry_config, first.value.run_dir, runs_dir=tmp_path)
    result = training.retry_smaller(second.value.retry_config, second.value.run_dir, runs_dir=tmp_path)
    assert result.status == "completed" and set(small_gpu[-3:]) == {2}
    record = runs.read_run_file(result.run_dir)
    assert record["parent"] == str(parent.resolve()) and record["step_offset"] == 12
    assert record["config"]["training"]["batch_size"] == 2 and record["config"]["training"]["grad_accum"] == 4
    assert _losses(result.run_dir)[0][0] == 13
    parent_last = _losses(parent)[-1][1]
    assert abs(_losses(result.run_dir)[0][1] - parent_last) < 0.3  # it started from the parent's adapter


def test_runs_that_cannot_be_continued_are_refused(parent: Path, tmp_path: Path) -> None:
    failed = tmp_path / "failed"
    failed.mkdir()
    record = runs.read_run_file(parent)
    runs.write_run_file(failed, {**record, "result": {"status": "failed", "error": "boom"}})
    with pytest.raises(training.TrainingError, match="failed: only a completed or stopped run"):
        train_more.continue_run(failed)
    with pytest.raises(training.TrainingError, match="is not a LoRA Desk run"):
        train_more.continue_run(tmp_path / "missing")
    no_adapter = tmp_path / "no-adapter"
    no_adapter.mkdir()
    runs.write_run_file(no_adapter, record)
    with pytest.raises(training.TrainingError, match="holds no final adapter"):
        train_more.continue_run(no_adapter)


def test_a_parent_whose_adapter_or_rows_went_missing_is_named(parent: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(parent, copy, ignore=shutil.ignore_patterns("checkpoints"))
    (copy / runs.DATASET_FILE).unlink()
    with pytest.raises(training.TrainingError, match=r"copy has no dataset.jsonl: give the rows to train on"):
        train_more.continue_run(copy, runs_dir=tmp_path / "runs")
    record = runs.read_run_file(copy)
    record["config"]["lora"]["r"] = 4  # the run file no longer matches its adapter (rank 8)
    runs.write_run_file(copy, record)
    with pytest.raises(training.TrainingError, match=r"copy: the adapter does not fit the model") as mismatch:
        train_more.continue_run(copy, rows=runs.load_dataset_snapshot(parent), runs_dir=tmp_path / "runs")
    message = str(mismatch.value)
    assert "\n" not in message and "size mismatch for " in message and "lora_A" in message
    assert not (tmp_path / "runs").exists()  # nothing was started


def test_lineage_follows_parents_moved_with_their_folder(tmp_path: Path) -> None:
    """A chain of three runs written by hand: each ancestor's curve up to the join, then the run's own; a parent
    recorded at a path that no longer exists is found beside its child by name."""
    def make(name: str, steps: range, parent: str = "", offset: int = 0) -> Path:
        folder = tmp_path / "runs" / name
        folder.mkdir(parents=True)
        record = {"result": {"status": "completed", "steps": len(steps)}, "config": {}}
        if parent:
            record.update(parent=parent, step_offset=offset)
        runs.write_run_file(folder, record)
        for step in steps:
            runs.append_metrics(folder, {"step": step, "loss": float(step)})
        return folder

    make("a", range(1, 11))
    make("b", range(6, 9), "/gone/elsewhere/a", 5)  # continued a at step 5 (a was later resumed further)
    c = make("c", range(9, 12), str(tmp_path / "runs" / "b"), 8)
    assert [p.name for p in train_more.lineage(c)] == ["a", "b", "c"]
    assert [m["step"] for m in train_more.lineage_metrics(c)] == list(range(1, 12))
    loop = make("d", range(1, 3), str(tmp_path / "runs" / "d"), 2)  # its own parent
    assert train_more.lineage(loop) == [loop]


def _cli(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LORADESK_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "loradesk", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)


def test_cli_continue_round_trip(parent: Path, tmp_path: Path) -> None:
    done = _cli("train", "--continue", str(parent), "--epochs", "1", home=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "Completed: 6 steps" in done.stdout
    out = Path(next(line for line in done.stdout.splitlines() if line.startswith("Adapter: ")).split(": ", 1)[1])
    assert runs.read_run_file(out)["parent"] == str(parent.resolve())
    assert _losses(out)[0][0] == 13
    listed = _cli("runs", home=tmp_path)
    assert listed.returncode == 0
    assert f"continues {parent.name} from step 12" in listed.stdout and str(out) in listed.stdout


def test_cli_explains_a_missing_dataset_and_refused_settings(parent: Path, tmp_path: Path) -> None:
    done = _cli("train", home=tmp_path)
    assert done.returncode == 1
    assert done.stderr.strip() == ("loradesk: error: train needs a dataset file (DATA); only --continue RUN "
                                   "can do without one")
    done = _cli("train", "--continue", str(parent), "--lr", "0.1", "--model", "x", home=tmp_path)
    assert done.returncode == 1
    assert done.stderr.strip() == ("loradesk: error: --continue trains with the run's own settings: drop "
                                   "--model, --lr")
    assert json.loads((parent / runs.RUN_FILE).read_text())["result"]["steps"] == 12
