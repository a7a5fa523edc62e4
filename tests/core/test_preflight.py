"""The pre-flight check on the tiny model: what it reports, that the run after it trains exactly as without
it, the CLI's ``--check`` (no run folder, exit code), and the advice for a run that will not fit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from loradesk.cli import main
from loradesk.core import preflight as pf
from loradesk.core import runs, training
from loradesk.core.config import RunConfig
from loradesk.core.dataset import Example
from loradesk.core.formats import read_dataset

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "data" / "sample.json"


def tiny_config(model_dir: Path, **values) -> RunConfig:
    cfg = RunConfig()
    cfg.model.kind, cfg.model.name = "local", str(model_dir)
    cfg.training.precision = "fp32"
    for k, v in values.items():
        setattr(cfg.training, k, v)
    return cfg


@pytest.fixture(scope="module")
def rows() -> list[Example]:
    return read_dataset(SAMPLE)[:30]


def test_the_report_measures_and_counts_the_runs_steps(tiny_model_dir, rows, tmp_path) -> None:
    cfg = tiny_config(tiny_model_dir, epochs=1.5, batch_size=4, grad_accum=2, validation_fraction=0.1)
    seen: list[str] = []
    report = pf.preflight(cfg, rows, progress=lambda text, _f: seen.append(text))

    assert report.peak_memory > 0 and report.needed_memory >= 0 and report.available_memory > 0
    assert report.peak_memory == report.check_peak_memory + report.shape_memory * report.new_shapes
    assert report.new_shapes >= 1  # 27 rows of many lengths: more batch shapes than the check's two
    assert report.seconds_per_step > 0 and report.longest_step_seconds > 0
    assert report.estimated_seconds == pytest.approx(report.steps * report.seconds_per_step)
    assert report.fits and report.advice == [] and report.device == "cpu"
    assert report.batch_rows == 4 and report.longest_tokens >= report.typical_tokens > 0
    assert "Measuring 3 training steps…" in seen
    block = "\n".join(report.lines())
    assert "Peak memory:" in block and "resident memory (RSS)" in block and "Verdict:         fits" in block

    result = training.run(cfg, rows, runs_dir=tmp_path, preflight=report.to_dict())
    assert report.steps == result.steps == 6  # 27 training rows: 7 batches of 4, 4 steps an epoch, 1.5 epochs
    record = runs.read_run_file(result.run_dir)["preflight"]
    assert record["steps"] == 6 and record["seconds_per_step"] == report.seconds_per_step
    assert record["estimated_seconds"] == pytest.approx(report.estimated_seconds)


def test_the_run_after_a_check_trains_the_same_adapter(tiny_model_dir, rows, tmp_path) -> None:
    cfg = tiny_config(tiny_model_dir, max_steps=3, batch_size=4, learning_rate=1e-2)
    torch.manual_seed(7)
    alone = training.run(cfg, rows, runs_dir=tmp_path / "alone")
    torch.manual_seed(7)
    pf.preflight(cfg, rows)
    checked = training.run(cfg, rows, runs_dir=tmp_path / "checked")

    a = load_file(alone.run_dir / "adapter_model.safetensors")
    b = load_file(checked.run_dir / "adapter_model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert alone.final_loss == checked.final_loss


def test_a_run_that_cannot_fit_says_so_with_advice(tiny_model_dir, rows, monkeypatch, capsys) -> None:
    monkeypatch.setattr(pf, "available_memory", lambda device: 1024)
    cfg = tiny_config(tiny_model_dir, max_steps=2, batch_size=4, max_length=64)
    report = pf.preflight(cfg, rows)
    assert not report.fits and report.available_memory == 1024
    assert report.advice[0] == ("batch size 2 with gradient accumulation 2 (the same effective batch of 4 rows "
                                "in smaller pieces)")
    assert report.advice[1].startswith(f"max length {report.longest_tokens // 2 // 8 * 8} (now 64; ")
    assert "will NOT fit" in report.summary() and "Verdict:         will NOT fit" in "\n".join(report.lines())

    assert main(["train", str(SAMPLE), "--model", str(tiny_model_dir), "--max-steps", "2", "--batch-size", "4",
                 "--check"]) == 1
    out = capsys.readouterr().out
    assert "Verdict:         will NOT fit" in out and "Try:             batch size 2 with gradient" in out


def test_check_on_the_command_line_prints_the_block_and_writes_no_run(tiny_model_dir, tmp_path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "loradesk", "train", str(SAMPLE), "--model", str(tiny_model_dir),
                           "--max-steps", "4", "--batch-size", "4", "--check"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    assert lines[0].startswith(f"Pre-flight check: {tiny_model_dir.name} on CPU")
    assert any(line.startswith("  Steps:           4 (on 185 training rows)") for line in lines)
    assert lines[-1] == "  Verdict:         fits"
    assert not runs.default_runs_dir().exists() or not any(runs.default_runs_dir().iterdir())
    assert list(tmp_path.iterdir()) == []


def test_a_stop_during_the_check_raises_and_leaves_the_generators_alone(tiny_model_dir, rows) -> None:
    stop = threading.Event()
    torch.manual_seed(3)
    state = torch.random.get_rng_state()

    def progress(text: str, _fraction: float | None) -> None:
        if text.startswith("Measuring"):
            stop.set()

    with pytest.raises(pf.CheckStopped):
        pf.preflight(tiny_config(tiny_model_dir, max_steps=5, batch_size=4), rows, stop, progress)
    assert torch.equal(torch.random.get_rng_state(), state)


def test_the_check_batches_follow_the_runs_batching() -> None:
    cfg = RunConfig()
    cfg.training.batch_size = 2
    lengths = [5, 50, 7, 40, 9, 30]
    longest, typical = pf.check_batches(lengths, cfg)
    assert longest == [1, 3]
    assert pf.run_batches(lengths, cfg) == [[1, 3], [5, 4], [2, 0]]  # group by length: longest first
    assert typical == [5, 4]  # padded tokens 100, 60, 14: the median batch
    assert pf.batch_shapes(lengths, cfg) == {(2, 50), (2, 30), (2, 7)}
    cfg.training.group_by_length = False
    assert sorted(i for b in pf.run_batches(lengths, cfg) for i in b) == list(range(6))
    assert json.loads(json.dumps(pf.duration(3725))) == "1 h 02 min" and pf.duration(200) == "3 min 20 s"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallinfo2")
def test_allocated_bytes_follow_what_the_process_holds() -> None:
    """The check reads what a step kept from the allocator's bytes in use: 100 MiB held shows, and goes."""
    import numpy as np

    from loradesk.core.preflight import allocated_bytes

    before = allocated_bytes()
    assert before is not None and before > 0
    held = np.ones(100 * 2**20, dtype=np.uint8)
    during = allocated_bytes()
    del held
    after = allocated_bytes()
    assert during - before >= 100 * 2**20 and during - after >= 100 * 2**20
