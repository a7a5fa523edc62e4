"""The real window, offscreen, in a child process: SIGTERM while a tiny-model training runs stops it (the adapter
is kept), writes the unsaved project to the recovery file and quits with 143."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from loradesk.core import runs
from loradesk.core.project import find_recovery, recover

ROOT = Path(__file__).resolve().parents[2]
WAIT_S = 120

DRIVER = """
import sys
from PySide6.QtCore import QTimer
from loradesk.ui import app

build = app.build_window

def build_and_train(*args, **kwargs):
    window = build(*args, **kwargs)
    config = window.project.config
    config.model.kind, config.model.name = "local", sys.argv[1]
    config.training.max_steps, config.training.batch_size = 5000, 4
    window.project.config_changed()  # unsaved settings: they must survive in the recovery file
    QTimer.singleShot(0, window.start_training)
    return window

app.build_window = build_and_train
sys.exit(app.run_gui([]))
"""


def test_sigterm_stops_training_keeps_unsaved_work_and_exits_143(tiny_model_dir: Path, loradesk_home: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "QT_QPA_PLATFORM": "offscreen", "LORADESK_HOME": str(loradesk_home)}
    proc = subprocess.Popen([sys.executable, "-c", DRIVER, str(tiny_model_dir)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    runs_dir = runs.default_runs_dir()
    deadline = time.monotonic() + WAIT_S
    while not any(p.stat().st_size for p in runs_dir.glob(f"*/{runs.METRICS_FILE}")):
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        assert time.monotonic() < deadline, "no training step logged"
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _out, err = proc.communicate(timeout=WAIT_S)
    assert proc.returncode == 143, err[-2000:]
    (info,) = runs.list_runs()
    assert info.status == "stopped" and 1 <= info.steps < 5000
    assert info.checkpoint is not None and info.checkpoint.name == f"checkpoint-{info.steps}"
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), info.path)
    recovery = find_recovery()
    assert recovery is not None and recovery.rows > 0
    assert recover().config.model.name == str(tiny_model_dir)  # the unsaved setting
    last = err.strip().splitlines()[-1]
    assert last.startswith("SIGTERM: quit; kept the run stopped") and "recovery file" in last
    assert "Traceback" not in err and "QThread: Destroyed" not in err


BUSY_DRIVER = """
import sys, time
from pathlib import Path
from PySide6.QtCore import QTimer
from loradesk.ui import app

build = app.build_window

def build_and_start_a_slow_task(*args, **kwargs):
    window = build(*args, **kwargs)

    def slow_write() -> None:  # like the one-time model conversion: it cannot stop half-way
        Path(sys.argv[1]).write_text("started")
        time.sleep(3)
        Path(sys.argv[1]).write_text("finished")

    window.jobs.start(slow_write)
    return window

app.build_window = build_and_start_a_slow_task
sys.exit(app.run_gui([]))
"""


def test_quitting_waits_for_a_background_task_instead_of_aborting(tmp_path: Path, loradesk_home: Path) -> None:
    marker = tmp_path / "task.txt"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "QT_QPA_PLATFORM": "offscreen", "LORADESK_HOME": str(loradesk_home)}
    proc = subprocess.Popen([sys.executable, "-c", BUSY_DRIVER, str(marker)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + WAIT_S
    while not marker.exists():
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        assert time.monotonic() < deadline, "the task did not start"
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _out, err = proc.communicate(timeout=WAIT_S)
    assert proc.returncode == 143, err[-2000:]  # not -6 (a QThread destroyed while running aborts)
    assert marker.read_text() == "finished"
    assert "QThread: Destroyed" not in err and "Traceback" not in err
