"""Checkpoints and saves that survive a kill: marker-less but whole checkpoints resume (and the marker is
repaired), truncated ones are refused, time-based checkpoints are taken, the final save is all-or-nothing,
and run files tell a live training process from a dead one."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from loradesk.core import checkpoints, liveness, runs, training
from loradesk.core.config import RunConfig, describe_fields
from loradesk.core.formats import read_dataset

DATA = Path(__file__).resolve().parents[2] / "data" / "sample.json"


def tiny_config(model_dir: Path, **values: object) -> RunConfig:
    cfg = RunConfig()
    cfg.model.kind, cfg.model.name = "local", str(model_dir)
    settings = {"batch_size": 4, "learning_rate": 1e-2, "warmup_ratio": 0.0, "precision": "fp32", **values}
    for key, value in settings.items():
        setattr(cfg.training, key, value)
    return cfg


def resume_briefly(run_dir: Path, stop_at: type) -> tuple[training.RunResult, int]:
    """Resume ``run_dir``, stop at once; the result and the first step trained."""
    sink = stop_at(0)
    return training.run(RunConfig(), [], sink, sink.stop, resume_from=run_dir), sink.steps[0]


@pytest.fixture(scope="module")
def stopped_run(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory, stop_at: type) -> Path:
    """A run stopped at step 4 of 8 with checkpoints 3 and 4: the clock asks for one after every step (an interval
    far shorter than any step, so the outcome does not depend on the machine's speed), none by steps."""
    sink = stop_at(3)  # reported after step 3 ended: the run stops after step 4
    cfg = tiny_config(tiny_model_dir, max_steps=8, save_steps=1000, save_minutes=1e-9)
    result = training.run(cfg, read_dataset(DATA)[:16], sink, sink.stop, runs_dir=tmp_path_factory.mktemp("runs"))
    assert result.status == "stopped" and result.steps == 4
    return result.run_dir


@pytest.fixture
def run_copy(stopped_run: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(stopped_run, tmp_path / "run"))


def test_time_based_checkpoints_are_taken_and_bounded(stopped_run: Path) -> None:
    names = sorted(p.name for p in (stopped_run / runs.CHECKPOINTS).iterdir())
    # neither save_steps=1000 nor the stop asked for step 3: only the clock did; two are kept (save_total_limit)
    assert names == ["checkpoint-3", "checkpoint-4"]


def test_save_due_decides_on_the_interval() -> None:
    assert checkpoints.save_due(now=700.0, last_save=100.0, minutes=10)
    assert not checkpoints.save_due(now=699.0, last_save=100.0, minutes=10)
    assert not checkpoints.save_due(now=1e9, last_save=0.0, minutes=0)  # 0 = off


def test_save_minutes_is_a_setting_with_help() -> None:
    (info,) = [f for f in describe_fields("training") if f.name == "save_minutes"]
    assert info.default == 10.0 and info.minimum == 0.0 and "minutes" in info.help
    cfg = RunConfig()
    cfg.training.save_minutes = -1.0
    assert ("training.save_minutes", "must be at least 0.0 (got -1.0)") in cfg.problems()


def test_a_whole_checkpoint_without_its_marker_resumes_and_the_marker_is_repaired(run_copy: Path,
                                                                                    stop_at: type) -> None:
    newest = run_copy / runs.CHECKPOINTS / "checkpoint-4"
    (newest / runs.COMPLETE_MARKER).unlink()  # killed between the last file and the marker
    assert checkpoints.verify_checkpoint(newest) is None
    assert runs.latest_checkpoint(run_copy) == newest
    assert not (newest / runs.COMPLETE_MARKER).exists()  # reading repairs nothing
    assert runs.latest_checkpoint(run_copy, repair=True) == newest
    assert (newest / runs.COMPLETE_MARKER).read_text() == "4"
    (newest / runs.COMPLETE_MARKER).unlink()
    result, first_step = resume_briefly(run_copy, stop_at)
    assert first_step == 5  # it continued from the marker-less checkpoint-4
    assert result.status == "stopped" and result.steps > 4


@pytest.mark.parametrize("damage", ["truncate weights", "truncate state", "empty optimizer"])
def test_a_damaged_checkpoint_without_marker_is_refused(run_copy: Path, damage: str) -> None:
    ckpt_dir = run_copy / runs.CHECKPOINTS
    shutil.rmtree(ckpt_dir / "checkpoint-3")
    newest = ckpt_dir / "checkpoint-4"
    (newest / runs.COMPLETE_MARKER).unlink()
    target = {"truncate weights": checkpoints.WEIGHTS, "truncate state": checkpoints.TRAINER_STATE,
              "empty optimizer": "optimizer.pt"}[damage]
    path = newest / target
    size = path.stat().st_size
    with open(path, "r+b") as fh:
        fh.truncate(0 if damage == "empty optimizer" else size - 7)
    assert checkpoints.verify_checkpoint(newest) is not None
    assert runs.latest_checkpoint(run_copy, repair=True) is None
    assert not (newest / runs.COMPLETE_MARKER).exists()
    with pytest.raises(training.TrainingError, match="no complete checkpoint"):
        training.run(RunConfig(), [], resume_from=run_copy)


def test_safetensors_check_names_the_problem(tmp_path: Path, stopped_run: Path) -> None:
    good = stopped_run / checkpoints.WEIGHTS
    assert checkpoints.safetensors_problem(good) is None
    longer = tmp_path / "longer.safetensors"
    longer.write_bytes(good.read_bytes() + b"\0")
    assert "the header says" in (checkpoints.safetensors_problem(longer) or "")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x05\0\0\0\0\0\0\0{oops")
    assert "unreadable header" in (checkpoints.safetensors_problem(junk) or "")
    assert checkpoints.safetensors_problem(tmp_path / "none.safetensors") == "missing"


class FailingModel:
    """Writes part of an adapter, then fails: the save is interrupted half-way."""

    def save_pretrained(self, folder: Path, safe_serialization: bool = True) -> None:
        (Path(folder) / "adapter_config.json").write_text("{}")
        (Path(folder) / checkpoints.WEIGHTS).write_bytes(b"\x10\0\0")
        raise OSError("No space left on device")


def test_a_failed_final_save_leaves_the_previous_adapter_whole(run_copy: Path) -> None:
    before = {name: (run_copy / name).read_bytes() for name in ("adapter_config.json", checkpoints.WEIGHTS)}
    with pytest.raises(OSError, match="No space"):
        checkpoints.save_adapter(FailingModel(), None, run_copy)
    assert {name: (run_copy / name).read_bytes() for name in before} == before
    assert not list(run_copy.glob(f"{checkpoints.SAVE_PREFIX}*"))


def test_a_stale_save_folder_is_removed_when_listed_or_resumed(run_copy: Path, stop_at: type) -> None:
    stale = run_copy / f"{checkpoints.SAVE_PREFIX}killed"
    stale.mkdir()
    (stale / checkpoints.WEIGHTS).write_bytes(b"\0" * 10)
    (info,) = runs.list_runs(run_copy.parent)
    assert info.status == "stopped" and not stale.exists()
    stale.mkdir()
    resume_briefly(run_copy, stop_at)
    assert not stale.exists()


def test_listing_keeps_the_save_folder_of_a_live_run(run_copy: Path) -> None:
    data = runs.read_run_file(run_copy)
    runs.write_run_file(run_copy, {**data, "result": {"status": "running"}, "process": liveness.process_record()})
    saving = run_copy / f"{checkpoints.SAVE_PREFIX}now"
    saving.mkdir()
    (info,) = runs.list_runs(run_copy.parent)
    assert info.status == "running" and saving.is_dir()
    assert info.where == f"pid {os.getpid()} on {socket.gethostname()}"


def _with_process(run_dir: Path, process: dict) -> runs.RunInfo:
    data = runs.read_run_file(run_dir)
    runs.write_run_file(run_dir, {**data, "result": {"status": "running"}, "process": process})
    return runs.read_run(run_dir)


def test_a_running_run_whose_process_is_gone_reads_as_interrupted(run_copy: Path) -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    dead = {"pid": child.pid, "started": liveness.process_record()["started"], "host": socket.gethostname()}
    info = _with_process(run_copy, dead)
    assert info.status == "interrupted" and info.resumable
    assert info.checkpoint is not None and info.checkpoint.name == "checkpoint-4" and info.steps == 4
    # a live pid that started at another time is another process: the run's own is gone
    reused = {**liveness.process_record(), "started": liveness.process_record()["started"] - 3600}
    assert _with_process(run_copy, reused).status == "interrupted"
    assert json.loads((run_copy / runs.RUN_FILE).read_text())["result"]["status"] == "running"  # only reported


def test_a_run_on_another_host_stays_running_and_says_where(run_copy: Path) -> None:
    info = _with_process(run_copy, {"pid": 1, "started": 0.0, "host": "other-machine"})
    assert info.status == "running" and info.where == "pid 1 on other-machine" and not info.resumable


def test_mark_interrupted_only_changes_running_runs(run_copy: Path) -> None:
    assert not runs.mark_interrupted(run_copy)  # stopped stays stopped
    _with_process(run_copy, liveness.process_record())
    assert runs.mark_interrupted(run_copy)
    result = runs.read_run_file(run_copy)["result"]
    assert result["status"] == "interrupted" and result["checkpoint"] == "checkpoint-4" and result["steps"] == 4
