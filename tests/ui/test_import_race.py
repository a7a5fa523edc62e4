"""A run started while the window still imports the training stack at start-up: both succeed.

Two threads importing transformers for the first time at once made one of them fail with "cannot import
name 'AutoModel' from 'transformers'" (the status bar said "Device: unknown", or the run failed). Each case
runs in a fresh interpreter, where nothing is imported yet.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent("""
    import json, sys, threading
    from pathlib import Path
    from loradesk.core.config import ModelSettings, RunConfig
    from loradesk.core.dataset import Example
    from loradesk.ui.app import warm_up_training_stack
    from loradesk.ui.training_job import TrainRequest, train

    model_dir, runs_dir = sys.argv[1], Path(sys.argv[2])
    config = RunConfig(model=ModelSettings(kind="local", name=model_dir))
    config.training.max_steps, config.training.batch_size = 1, 2
    rows = [Example(f"Question {i}?", f"Answer {i}.") for i in range(4)]
    out = {"failed": [], "finished": [], "device": None}

    class State:  # what the training job sees of its TaskState: the stop flag and typed events
        stop = threading.Event()

        def emit(self, event):
            pass

    def run():
        try:
            out["finished"].append(train(TrainRequest(config, rows, runs_dir), state=State()).status)
        except Exception as exc:
            out["failed"].append(str(exc))

    def probe():
        try:
            out["device"] = warm_up_training_stack()
        except Exception as exc:
            out["device"] = f"failed: {exc}"

    threads = [threading.Thread(target=probe), threading.Thread(target=run)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print(json.dumps(out))
""")


def test_a_run_started_during_the_start_up_import_and_the_device_probe_both_succeed(tiny_model_dir: Path,
                                                                                     tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "QT_QPA_PLATFORM": "offscreen"}
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(tiny_model_dir), str(tmp_path / "runs")],
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["failed"] == [] and out["finished"] == ["completed"]
    assert out["device"].startswith(("CPU", "NVIDIA", "Apple")), out["device"]
