"""``loradesk train`` under torchrun and ``accelerate launch``: two real CPU ranks (gloo) on the tiny model.

Each test starts the launcher in a child process with this checkout's code and checks the shared run folder:
one adapter that loads with peft, each logged step once (one writer), the effective batch recorded, and a
signal that stops every rank at the same step with the adapter kept.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from loradesk.core import distributed, runs, training
from loradesk.core.config import RunConfig
from loradesk.core.formats import read_dataset

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "data" / "sample.json"
WAIT_S = 240
STEPS = 6


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_config(tiny_model_dir: Path, tmp_path: Path, max_steps: int = STEPS) -> tuple[RunConfig, Path]:
    """The run's settings (the tiny model, a few steps of batch 4) and the run.json holding them."""
    config = RunConfig()
    config.model.kind, config.model.name = "local", str(tiny_model_dir)
    t = config.training
    t.max_steps, t.batch_size, t.grad_accum, t.learning_rate, t.logging_steps = max_steps, 4, 1, 1e-3, 1
    t.validation_fraction, t.save_minutes = 0.0, 0.0
    path = tmp_path / "run.json"
    config.save(path)
    return config, path


def launch(launcher: list[str], config: Path, out: Path, *extra: str) -> subprocess.Popen:
    """``LAUNCHER -m loradesk train DATA --config CONFIG --out OUT`` with this checkout on the path."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("WORLD_SIZE", None)
    args = [sys.executable, *launcher, "-m", "loradesk", "train", str(DATA), "--config", str(config),
            "--out", str(out), *extra]
    return subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def torchrun() -> list[str]:
    return ["-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
            "--master_port", str(free_port())]


def finish(proc: subprocess.Popen) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=WAIT_S)
    except subprocess.TimeoutExpired:
        kill_tree(proc)
        raise
    return proc.returncode, out, err


def kill_tree(proc: subprocess.Popen) -> None:
    with_children = [*psutil.Process(proc.pid).children(recursive=True), psutil.Process(proc.pid)]
    for p in with_children:
        p.kill()
    proc.communicate()


def logged_steps(out: Path) -> list[int]:
    return [int(m["step"]) for m in runs.read_metrics(out) if "loss" in m]


def assert_adapter_loads(run_dir: Path, tiny_model_dir: Path) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), run_dir)
    trained = [p for n, p in model.named_parameters() if "lora_B" in n]
    assert trained and any(float(p.abs().sum()) > 0 for p in trained)  # trained weights, not a fresh init


def adapter_layout(run_dir: Path) -> tuple[set[str], dict, list[str]]:
    """The files of a run folder's adapter, its config (minus the base model's path) and its tensor names."""
    from safetensors import safe_open

    config = json.loads((run_dir / "adapter_config.json").read_text(encoding="utf-8"))
    config.pop("base_model_name_or_path", None)
    config["target_modules"] = sorted(config["target_modules"])  # peft keeps a set: its order varies by process
    with safe_open(str(run_dir / "adapter_model.safetensors"), "pt") as fh:
        keys = sorted(fh.keys())
    files = {p.name for p in run_dir.iterdir() if p.is_file()}
    return files, config, keys


def test_torchrun_two_ranks_train_one_adapter_with_twice_the_batch(tiny_model_dir: Path, tmp_path: Path) -> None:
    config, config_path = run_config(tiny_model_dir, tmp_path)
    out = tmp_path / "ddp"
    proc = launch(torchrun(), config_path, out)
    local = training.run(config, read_dataset(DATA), out_dir=tmp_path / "local")  # meanwhile, the same locally
    rc, stdout, stderr = finish(proc)
    assert rc == 0, stderr[-3000:]

    assert stdout.count("Completed") == 1 and stdout.count("Adapter:") == 1  # only the main process prints
    assert " on 2 × CPU" in stdout
    assert stderr.count("Preparing the model") == 1 and "Effective batch 8" in stderr
    info = runs.read_run(out)
    assert info.status == "completed" and info.steps == STEPS
    steps = logged_steps(out)
    assert steps == list(range(1, STEPS + 1))  # one writer: each step once
    losses = [m["loss"] for m in runs.read_metrics(out) if "loss" in m]
    assert losses[-1] < losses[0]
    recorded, here = runs.read_run_file(out), runs.read_run_file(local.run_dir)
    assert (here["world_size"], here["effective_batch"]) == (1, 4)
    assert (recorded["world_size"], recorded["effective_batch"]) == (2, 2 * here["effective_batch"])

    assert_adapter_loads(out, tiny_model_dir)
    assert adapter_layout(out) == adapter_layout(local.run_dir)  # the same files, config and tensors
    assert not list(out.glob(".saving-*"))
    checkpoint = runs.latest_checkpoint(out)
    assert checkpoint is not None and checkpoint.name == f"checkpoint-{STEPS}"
    assert {p.name for p in checkpoint.glob("rng_state_*.pth")} == {"rng_state_0.pth", "rng_state_1.pth"}
    (checkpoint / runs.COMPLETE_MARKER).unlink()  # a kill just before the marker: the files still verify
    assert runs.latest_checkpoint(out) == checkpoint


def test_accelerate_launch_with_a_cpu_config_file(tiny_model_dir: Path, tmp_path: Path) -> None:
    _config, config_path = run_config(tiny_model_dir, tmp_path)
    accelerate_config = tmp_path / "ddp.yaml"
    accelerate_config.write_text("compute_environment: LOCAL_MACHINE\ndistributed_type: MULTI_GPU\n"
                                 "mixed_precision: 'no'\nnum_machines: 1\nmachine_rank: 0\nnum_processes: 2\n"
                                 "use_cpu: true\n", encoding="utf-8")
    out = tmp_path / "run"
    proc = launch(["-m", "accelerate.commands.launch", "--config_file", str(accelerate_config),
                   "--main_process_ip", "127.0.0.1", "--main_process_port", str(free_port())], config_path, out)
    rc, stdout, stderr = finish(proc)
    assert rc == 0, stderr[-3000:]
    assert stdout.count("Completed") == 1
    recorded = runs.read_run_file(out)
    assert recorded["result"]["status"] == "completed"
    assert (recorded["world_size"], recorded["effective_batch"]) == (2, 8)
    assert logged_steps(out) == list(range(1, STEPS + 1))
    assert_adapter_loads(out, tiny_model_dir)


def wait_for_steps(proc: subprocess.Popen, out: Path, n: int) -> None:
    deadline = time.monotonic() + WAIT_S
    while len(logged_steps(out)) < n:
        if proc.poll() is not None:
            raise AssertionError(f"training ended early: {proc.communicate()[1][-3000:]}")
        if time.monotonic() > deadline:
            kill_tree(proc)
            raise AssertionError(f"no {n} logged steps within {WAIT_S} s")
        time.sleep(0.1)


def workers(proc: subprocess.Popen) -> list[psutil.Process]:
    """The launcher's training processes (torchrun starts each rank in its own session)."""
    found = [p for p in psutil.Process(proc.pid).children(recursive=True) if "loradesk" in " ".join(p.cmdline())]
    assert len(found) == 2, found
    return found


def assert_stopped_together(out: Path, tiny_model_dir: Path) -> int:
    """The run says "stopped", both ranks saved the checkpoint of the step it stopped at, the adapter loads."""
    info = runs.read_run(out)
    assert info.status == "stopped" and 1 <= info.steps < 5000
    checkpoint = runs.latest_checkpoint(out)
    assert checkpoint is not None and checkpoint.name == f"checkpoint-{info.steps}"
    assert {p.name for p in checkpoint.glob("rng_state_*.pth")} == {"rng_state_0.pth", "rng_state_1.pth"}
    steps = logged_steps(out)
    assert steps == sorted(set(steps)) and steps[-1] == info.steps
    assert_adapter_loads(out, tiny_model_dir)
    assert not list(out.glob(".saving-*"))
    return info.steps


def test_ctrl_c_to_torchrun_stops_every_rank_and_keeps_the_adapter(tiny_model_dir: Path, tmp_path: Path) -> None:
    _config, config_path = run_config(tiny_model_dir, tmp_path, max_steps=5000)
    out = tmp_path / "run"
    proc = launch(torchrun(), config_path, out)
    wait_for_steps(proc, out, 2)
    ranks = workers(proc)
    proc.send_signal(signal.SIGINT)  # torchrun passes it on to every rank
    _rc, _stdout, stderr = finish(proc)
    _gone, alive = psutil.wait_procs(ranks, timeout=30)
    assert not alive, stderr[-3000:]
    assert "stopping after this step" in stderr and stderr.count("stopped after") == 1
    assert_stopped_together(out, tiny_model_dir)


def test_a_signal_to_one_rank_stops_them_all_at_the_same_step(tiny_model_dir: Path, tmp_path: Path) -> None:
    _config, config_path = run_config(tiny_model_dir, tmp_path, max_steps=5000)
    out = tmp_path / "run"
    proc = launch(torchrun(), config_path, out)
    wait_for_steps(proc, out, 2)
    other = next(p for p in workers(proc) if p.environ().get("RANK") == "1")
    other.send_signal(signal.SIGTERM)  # the main process gets no signal: it stops by the ranks' agreement
    finish(proc)
    assert_stopped_together(out, tiny_model_dir)


def test_a_plain_process_is_rank_0_of_1_without_accelerate(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert not distributed.launched()
    assert distributed.any_rank(True) and not distributed.any_rank(False)
    assert distributed.from_main(lambda: 7) == 7


@pytest.mark.parametrize("world_size", ["2", "1"])
def test_a_launched_rank_leaves_with_its_code_and_its_output_flushed(world_size: str) -> None:
    script = ("import sys; from loradesk.core import distributed; print('written', end=''); "
              "print('to stderr', end='', file=sys.stderr); distributed.leave(3); print(' and returned', end='')")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "WORLD_SIZE": world_size}
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    if world_size == "2":  # launched: it ends there, with the run's code, nothing lost from the buffered output
        assert (proc.returncode, proc.stdout, proc.stderr) == (3, "written", "to stderr")
    else:  # a plain process goes on
        assert (proc.returncode, proc.stdout) == (0, "written and returned")
