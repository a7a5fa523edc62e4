"""Interrupts are a stop: real ``loradesk train`` processes on the tiny model get real signals.

SIGINT / SIGTERM: the step finishes, a checkpoint and a loadable adapter are kept, the run says "stopped",
exit 130 / 143. A second signal aborts at once and the run says "interrupted". ``kill -9`` leaves a run file
that says "running": ``read_run`` reports it interrupted and it resumes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from loradesk.core import interrupts, runs, training
from loradesk.core.config import RunConfig
from loradesk.core.wording import plural

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "data" / "sample.json"
WAIT_S = 120


def start_train(tiny_model_dir: Path, out: Path, *extra: str, config: dict | None = None) -> subprocess.Popen:
    """``loradesk train`` on the tiny model in a child process (this checkout's code), many steps."""
    args = [sys.executable, "-m", "loradesk", "train", str(DATA), "--model", str(tiny_model_dir),
            "--max-steps", "5000", "--batch-size", "4", "--out", str(out), *extra]
    if config is not None:
        path = out.parent / f"{out.name}-config.json"
        cfg = RunConfig()
        for key, value in config.items():
            setattr(cfg.training, key, value)
        cfg.save(path)
        args += ["--config", str(path)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_until(proc: subprocess.Popen, ready, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not ready():
        if proc.poll() is not None:
            raise AssertionError(f"training ended before {what}: {proc.communicate()[1][-2000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"no {what} within {WAIT_S} s")
        time.sleep(0.05)


def metrics_logged(out: Path) -> bool:
    path = out / runs.METRICS_FILE
    return path.is_file() and bool(path.read_text(encoding="utf-8").strip())


def finish(proc: subprocess.Popen) -> tuple[int, str]:
    _out, err = proc.communicate(timeout=WAIT_S)
    return proc.returncode, err


def assert_adapter_loads(run_dir: Path, tiny_model_dir: Path) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    model = PeftModel.from_pretrained(base, run_dir)
    trained = [p for n, p in model.named_parameters() if "lora_B" in n]
    assert trained and any(float(p.abs().sum()) > 0 for p in trained)  # trained weights, not a fresh init


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_stops_keeps_adapter_and_checkpoint(tiny_model_dir: Path, tmp_path: Path, signum: int,
                                                     code: int) -> None:
    out = tmp_path / "run"
    proc = start_train(tiny_model_dir, out)
    wait_until(proc, lambda: metrics_logged(out), "logged step")
    proc.send_signal(signum)
    rc, err = finish(proc)
    assert rc == code, err[-2000:]
    info = runs.read_run(out)
    assert info.status == "stopped" and 1 <= info.steps < 5000
    checkpoint = runs.latest_checkpoint(out)
    assert checkpoint is not None and checkpoint.name == f"checkpoint-{info.steps}"
    assert (checkpoint / runs.COMPLETE_MARKER).is_file()
    assert_adapter_loads(out, tiny_model_dir)
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"{signal.Signals(signum).name}: stopped after {plural(info.steps, 'step')}")
    assert str(out) in last and checkpoint.name in last
    assert "Traceback" not in err and "terminate called" not in err
    assert not list(out.glob(".saving-*"))


def test_a_second_signal_aborts_at_once_and_marks_the_run_interrupted(tiny_model_dir: Path,
                                                                      tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = start_train(tiny_model_dir, out)
    wait_until(proc, lambda: metrics_logged(out), "logged step")
    proc.send_signal(signal.SIGINT)
    assert proc.stderr is not None
    seen = []
    for line in proc.stderr:  # the first signal was handled: the stop is under way (a step, then the saves)
        seen.append(line)
        if "stopping after this step" in line:
            break
    proc.send_signal(signal.SIGINT)
    rc, err = finish(proc)
    err = "".join(seen) + err
    assert rc == 130, err[-2000:]
    assert "aborting now" in err and "Traceback" not in err
    recorded = runs.read_run_file(out)["result"]
    assert recorded["status"] == "interrupted"  # on disk, not only inferred from the dead pid
    assert runs.read_run(out).status == "interrupted"


def test_a_signal_while_the_model_loads_ends_cleanly(tiny_model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = start_train(tiny_model_dir, out)
    assert proc.stderr is not None
    for line in proc.stderr:  # the first status line: the model is being prepared
        if "Preparing the model" in line:
            break
    proc.send_signal(signal.SIGTERM)
    rc, err = finish(proc)
    assert rc == 143, err[-2000:]
    assert "Traceback" not in err
    if (out / runs.RUN_FILE).is_file():  # the signal came after the run started: it stopped cleanly
        assert runs.read_run(out).status == "stopped"
        assert (out / "adapter_model.safetensors").is_file()
    else:
        assert "nothing was written" in err


def test_kill_9_is_reported_interrupted_and_resumes(tiny_model_dir: Path, tmp_path: Path, stop_at: type) -> None:
    out = tmp_path / "run"
    proc = start_train(tiny_model_dir, out, config={"save_steps": 2, "max_steps": 5000, "batch_size": 4,
                                                     "learning_rate": 1e-2})
    wait_until(proc, lambda: runs.latest_checkpoint(out) is not None, "checkpoint")
    proc.kill()
    proc.wait(timeout=WAIT_S)
    assert runs.read_run_file(out)["result"]["status"] == "running"  # nobody could record anything
    info = runs.read_run(out)
    assert info.status == "interrupted" and info.checkpoint is not None and info.where == ""
    assert info.steps == runs.checkpoint_step(info.checkpoint)

    # Until it is resumed, the killed run's checkpoint is its adapter: Compare and export use it.
    from loradesk.core.generation import Answerer

    assert runs.adapter_source(out) == info.checkpoint
    exported = runs.export_adapter(out, tmp_path / "exported")
    assert (exported / "adapter_model.safetensors").is_file() and not (exported / "optimizer.pt").exists()
    assert_adapter_loads(exported, tiny_model_dir)
    assert Answerer.from_run(out, device="cpu").answer("Who is Tamsin?", tuned=True) is not None

    sink = stop_at(info.steps + 2)
    result = training.run(RunConfig(), [], sink, sink.stop, resume_from=out)
    assert result.status == "stopped" and result.steps >= info.steps + 2
    assert sink.steps[0] > info.steps  # continued from the checkpoint, not from step 1
    assert runs.read_run(out).status == "stopped"
    assert_adapter_loads(out, tiny_model_dir)


def test_resume_refuses_a_run_whose_process_is_alive(tmp_path: Path) -> None:
    run_dir = tmp_path / "live"
    run_dir.mkdir()
    from loradesk.core import liveness

    runs.write_run_file(run_dir, {"config": RunConfig().to_dict(), "result": {"status": "running"},
                                  "process": liveness.process_record()})
    with pytest.raises(training.TrainingError, match=r"still being trained \(pid \d+ on "):
        training.run(RunConfig(), [], resume_from=run_dir)


def test_first_signal_sets_the_stop_flag_and_a_quick_second_aborts() -> None:
    stop = threading.Event()
    stopped: list[int] = []
    aborted: list[int] = []
    handler = interrupts.Interrupts(stop, stopped.append, aborted.append, window_s=60)
    before = signal.getsignal(signal.SIGTERM)
    with handler.installed():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.01)  # the handler runs on this thread at the next bytecode
        assert stop.is_set() and stopped == [signal.SIGTERM] and aborted == []
        assert handler.exit_code == 143
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.01)
        assert aborted == [signal.SIGINT] and stopped == [signal.SIGTERM]
    assert signal.getsignal(signal.SIGTERM) == before


def test_a_repeat_after_the_window_is_a_new_stop_request() -> None:
    stopped: list[int] = []
    aborted: list[int] = []
    handler = interrupts.Interrupts(None, stopped.append, aborted.append, window_s=0.0)
    with handler.installed():
        for _ in range(2):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.01)
    assert stopped == [signal.SIGINT, signal.SIGINT] and aborted == []
    assert handler.exit_code == 130


def test_runs_lists_an_interrupted_run_with_its_resume_command(tiny_model_dir: Path, stop_at: type,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    from loradesk.cli import main
    from loradesk.core.formats import read_dataset
    from loradesk.core.paths import default_runs_dir

    cfg = RunConfig()
    cfg.model.kind, cfg.model.name = "local", str(tiny_model_dir)
    cfg.training.max_steps, cfg.training.batch_size = 50, 4
    sink = stop_at(2)
    result = training.run(cfg, read_dataset(DATA)[:16], sink, sink.stop)
    assert result.run_dir.parent == default_runs_dir()
    data = runs.read_run_file(result.run_dir)
    data["result"] = {"status": "running"}  # as a killed process leaves it
    data["process"] = {**data["process"], "pid": _dead_pid()}
    runs.write_run_file(result.run_dir, data)
    assert main(["runs"]) == 0
    out = capsys.readouterr().out
    assert " interrupted " in out
    assert f"resume from checkpoint-{result.steps}: {runs.resume_command(result.run_dir)}" in out


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_installing_off_the_main_thread_leaves_the_handlers_alone() -> None:
    before = signal.getsignal(signal.SIGINT)
    handler = interrupts.Interrupts(threading.Event())
    errors: list[Exception] = []

    def install() -> None:
        try:
            handler.install()
        except ValueError as exc:  # "signal only works in main thread of the main interpreter"
            errors.append(exc)

    worker = threading.Thread(target=install)
    worker.start()
    worker.join()
    assert errors == [] and signal.getsignal(signal.SIGINT) is before
    handler.uninstall()
    assert signal.getsignal(signal.SIGINT) is before


@pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="no SIGHUP on this platform")
def test_a_closed_terminal_is_a_stop_too() -> None:
    stop = threading.Event()
    stopped: list[int] = []
    handler = interrupts.Interrupts(stop, stopped.append, lambda _s: None, window_s=60)
    with handler.installed():
        os.kill(os.getpid(), signal.SIGHUP)
        time.sleep(0.01)
        assert stop.is_set() and stopped == [signal.SIGHUP] and handler.exit_code == 129
