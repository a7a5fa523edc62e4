"""An exported job, run for real on this machine's CPU: ``launch.sh`` with torchrun and two processes (gloo), and
the same through ``accelerate launch`` with the exported DDP config. The tiny model keeps each run to seconds.

What must hold: one adapter that peft loads, a loss that fell, a metrics file written by one process only (each
step once), and a run file that records twice the per-process batch as the effective batch.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from loradesk.core.config import ModelSettings, RunConfig
from loradesk.core.formats import read_dataset
from loradesk.core.job_export import export_job

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "data" / "sample.json"
STEPS = 6


@pytest.fixture
def job(tmp_path: Path, tiny_model_dir: Path) -> tuple[Path, RunConfig]:
    config = RunConfig(model=ModelSettings(kind="local", name=str(tiny_model_dir)), name="tiny")
    t = config.training
    t.max_steps, t.batch_size, t.grad_accum, t.learning_rate, t.logging_steps = STEPS, 2, 1, 5e-3, 1
    t.validation_fraction, t.save_minutes, t.preflight = 0.0, 0.0, False
    export_job(read_dataset(SAMPLE)[:48], config, tmp_path / "job")
    return tmp_path / "job", config


def _start(job_dir: Path, **env: str) -> subprocess.Popen[str]:
    """``bash launch.sh 2`` in the job folder, with this interpreter's torchrun and accelerate and this code."""
    run_env = {k: v for k, v in os.environ.items()
               if k not in ("NPROC", "OUT", "NNODES", "NODE_RANK", "MASTER_ADDR", "MASTER_PORT")}
    run_env.update(PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", PYTHON=sys.executable,
                   PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", **env)
    return subprocess.Popen(["bash", "launch.sh", "2"], cwd=job_dir, env=run_env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _launch(job_dir: Path, **env: str) -> subprocess.CompletedProcess[str]:
    proc = _start(job_dir, **env)
    try:
        out, err = proc.communicate(timeout=600)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _find(record: Any, key: str) -> list[Any]:
    """Every value stored under ``key`` anywhere in a JSON record."""
    if isinstance(record, dict):
        return [v for k, v in record.items() if k == key] + [x for v in record.values() for x in _find(v, key)]
    if isinstance(record, list):
        return [x for v in record for x in _find(v, key)]
    return []


def _check_run(run_dir: Path, config: RunConfig, model_dir: Path) -> None:
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text("utf-8").splitlines()]
    losses = [(m["step"], m["loss"]) for m in metrics if "loss" in m]
    assert [step for step, _ in losses] == list(range(1, STEPS + 1))  # one writer: every step once
    assert losses[-1][1] < losses[0][1]

    record = json.loads((run_dir / "loradesk_run.json").read_text("utf-8"))
    assert record["result"]["status"] == "completed" and record["result"]["steps"] == STEPS
    local_batch = config.training.batch_size * config.training.grad_accum
    assert _find(record, "effective_batch") == [2 * local_batch]
    assert _find(record, "world_size") == [2]

    _check_adapter(run_dir, model_dir)


def _check_adapter(run_dir: Path, model_dir: Path) -> None:
    """peft loads the run's adapter onto the base model, with trained weights (lora_B starts at zero)."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(model_dir), run_dir)
    trained = [p for name, p in model.named_parameters() if "lora_B" in name]
    assert trained and any(p.abs().sum() > 0 for p in trained)


def test_launch_sh_trains_with_torchrun_on_two_cpu_processes(job: tuple[Path, RunConfig],
                                                             tiny_model_dir: Path) -> None:
    job_dir, config = job
    done = _launch(job_dir)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "torchrun --standalone --nproc_per_node 2 -m loradesk train" in done.stderr
    _check_run(job_dir / "runs" / "tiny", config, tiny_model_dir)


def test_launch_sh_trains_with_accelerate_launch_and_the_ddp_config(job: tuple[Path, RunConfig],
                                                                    tiny_model_dir: Path) -> None:
    job_dir, config = job
    done = _launch(job_dir, LAUNCHER="accelerate", ACCELERATE_CONFIG="accelerate/ddp.yaml")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "launch --config_file accelerate/ddp.yaml --num_machines 1 --num_processes 2" in done.stderr
    _check_run(job_dir / "runs" / "tiny", config, tiny_model_dir)


def test_sigterm_to_launch_sh_stops_every_rank_and_keeps_the_adapter(job: tuple[Path, RunConfig],
                                                                    tiny_model_dir: Path) -> None:
    """launch.sh hands its process to the launcher, so a SIGTERM (kill, scancel) reaches torchrun and the ranks."""
    import psutil

    from loradesk.core import runs

    job_dir, _config = job
    settings = json.loads((job_dir / "run.json").read_text("utf-8"))
    settings["training"]["max_steps"] = 5000
    (job_dir / "run.json").write_text(json.dumps(settings), encoding="utf-8")
    proc = _start(job_dir)
    run_dir = job_dir / "runs" / "tiny"
    deadline = time.monotonic() + 300
    while not run_dir.is_dir() or len(runs.read_metrics(run_dir)) < 2:
        assert proc.poll() is None and time.monotonic() < deadline, "no steps logged"
        time.sleep(0.2)
    ranks = [p for p in psutil.Process(proc.pid).children(recursive=True) if "loradesk" in " ".join(p.cmdline())]
    assert len(ranks) == 2
    proc.send_signal(signal.SIGTERM)
    _out, err = proc.communicate(timeout=300)
    _gone, alive = psutil.wait_procs(ranks, timeout=30)
    assert not alive, err[-3000:]
    info = runs.read_run(run_dir)
    assert info.status == "stopped" and 2 <= info.steps < 5000
    steps = [m["step"] for m in runs.read_metrics(run_dir) if "loss" in m]
    assert steps == list(range(1, info.steps + 1))
    _check_adapter(run_dir, tiny_model_dir)
