"""Stop when learned, with the tiny model: the setting off trains every step; a met target ends the run at its
first check as a completed run with a loadable adapter; checks leave the loss curve exactly as it was; a
validation split alone stops once the eval loss stops improving; and the decisions themselves."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from loradesk.core import learned, runs, training
from loradesk.core.config import RunConfig
from loradesk.core.dataset import Example
from loradesk.core.formats import read_dataset

ROOT = Path(__file__).resolve().parents[2]


class Sink:
    def __init__(self) -> None:
        self.statuses: list[str] = []
        self.lines: list[str] = []
        self.steps: list[int] = []

    def status(self, text: str) -> None:
        self.statuses.append(text)

    def log(self, text: str) -> None:
        self.lines.append(text)

    def progress(self, p: training.TrainProgress) -> None:
        if p.loss is not None:
            self.steps.append(p.step)


def config(model_dir: Path, **values) -> RunConfig:
    cfg = RunConfig()
    cfg.model.kind, cfg.model.name = "local", str(model_dir)
    cfg.lora.r, cfg.lora.dropout = 8, 0.1  # dropout: a check that left the model in eval mode would show
    settings = {"max_steps": 10, "batch_size": 8, "learning_rate": 1e-2, "warmup_ratio": 0.0, "precision": "fp32",
                "learned_check_steps": 3, "save_minutes": 0.0}
    settings.update(values)
    for k, v in settings.items():
        setattr(cfg.training, k, v)
    return cfg


@pytest.fixture(scope="module")
def rows() -> list[Example]:
    return read_dataset(ROOT / "data" / "sample.json")[:40]  # 5 steps an epoch: the runs shuffle twice


@pytest.fixture(scope="module")
def heldout(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("heldout") / "questions.json"
    path.write_text(json.dumps([{"prompt": "Who is Tamsin Quillfeather?", "expected": "Vaelmoor"},
                                {"prompt": "Where does Tamsin live?", "expected": "floating city"}]),
                    encoding="utf-8")
    return path


def seeded_run(*args, **kwargs) -> training.RunResult:
    """``training.run`` from the same random state: peft draws the adapter's first weights before the Trainer
    seeds, so runs are compared from one seed."""
    from transformers import set_seed

    set_seed(1)
    return training.run(*args, **kwargs)


def losses(run_dir: Path) -> list[tuple[int, float]]:
    return [(m["step"], m["loss"]) for m in runs.read_metrics(run_dir) if "loss" in m]


@pytest.fixture(scope="module")
def plain_run(tiny_model_dir, rows, heldout, tmp_path_factory) -> tuple[training.RunResult, Sink]:
    """The setting off: held-out questions are given, but the run trains every step."""
    sink = Sink()
    result = seeded_run(config(tiny_model_dir, stop_when_learned=False), rows, sink,
                          runs_dir=tmp_path_factory.mktemp("runs"), heldout=heldout)
    return result, sink


def test_the_setting_off_trains_every_step(plain_run) -> None:
    result, sink = plain_run
    assert result.status == "completed" and result.steps == 10 and sink.steps[-1] == 10
    assert result.learned == "" and result.check_seconds == 0.0
    assert not any(line.startswith(("Check at", "Stop when learned")) for line in sink.lines)
    assert "learned" not in json.dumps(runs.read_run_file(result.run_dir)["result"]).lower().replace(
        '"learned": ""', "")


def test_a_met_target_ends_the_run_at_the_first_check_with_a_usable_adapter(
        plain_run, tiny_model_dir, rows, heldout, tmp_path) -> None:
    sink = Sink()
    result = seeded_run(config(tiny_model_dir, learned_target=0.0), rows, sink, runs_dir=tmp_path, heldout=heldout)

    assert result.status == "completed" and result.steps == 3
    assert result.learned.startswith("Learned: ") and "held-out questions answered at step 3" in result.learned
    assert result.learned.endswith("; stopped early")
    assert any(line.startswith("Check at step 3: held-out ") for line in sink.lines)
    assert result.learned in sink.lines and sink.statuses[-1] == result.learned
    assert any(s.startswith("Training: held-out ") and s.endswith(" at step 3") for s in sink.statuses)
    assert any(line.startswith("Learned checks: 1 took ") for line in sink.lines)
    record = runs.read_run_file(result.run_dir)
    assert record["result"]["status"] == "completed" and record["result"]["learned"] == result.learned
    assert record["heldout"] == str(heldout) and record["score_detail"]["total"] == 2
    assert record["score_detail"]["step"] == 3 and record["score"] == record["score_detail"]["tuned"] / 2
    assert runs.read_run(result.run_dir).status == "completed"
    # the checks did not change the curve: the same losses as the run without them, step for step
    assert losses(result.run_dir) == losses(plain_run[0].run_dir)[:3]

    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), str(result.run_dir))
    assert model.active_adapter == "default"


def test_checks_that_do_not_pass_leave_the_curve_as_it_was(plain_run, tiny_model_dir, rows, tmp_path) -> None:
    never = tmp_path / "never.json"  # a phrase no answer holds: every check runs, none passes
    never.write_text(json.dumps([{"prompt": "Who is Tamsin Quillfeather?", "expected": "zqxj never said"}]),
                     encoding="utf-8")
    sink = Sink()
    result = seeded_run(config(tiny_model_dir, learned_check_steps=2), rows, sink, runs_dir=tmp_path, heldout=never)
    checks = [line for line in sink.lines if line.startswith("Check at step ")]
    assert result.steps == 10 and not result.learned and checks and result.check_seconds > 0
    assert checks[0].startswith("Check at step 2: held-out 0/1 ")
    assert losses(result.run_dir) == losses(plain_run[0].run_dir)  # step for step, the same curve


def test_a_validation_split_alone_stops_once_the_eval_loss_stops_improving(tiny_model_dir, rows,
                                                                            tmp_path) -> None:
    sink = Sink()
    cfg = config(tiny_model_dir, validation_fraction=0.2, learning_rate=1e-7, max_steps=40, learned_check_steps=2,
                 learned_patience=2)
    result = training.run(cfg, rows, sink, runs_dir=tmp_path)  # no held-out questions: the eval loss decides
    checks = [line for line in sink.lines if line.startswith("Check at step ")]
    assert len(checks) == 3 and checks[0].startswith("Check at step 2: eval loss ")  # the best, then 2 no better
    assert result.status == "completed" and checks[-1].startswith(f"Check at step {result.steps}: ")
    assert result.steps < 40
    assert result.learned.startswith("Learned: the eval loss has not improved for 2 checks")
    assert "score" not in runs.read_run_file(result.run_dir)


def test_the_watch_counts_patience_and_spaces_costly_checks() -> None:
    cfg = RunConfig()
    watch = learned.LearnedWatch(cfg, has_eval=True)
    assert watch.mode == "eval" and watch.due(8) and not watch.due(7)
    assert not watch.record(learned.Check(8, 1.0, 0.1, eval_loss=2.0))
    assert not watch.record(learned.Check(16, 2.0, 0.1, eval_loss=1.9995))  # within MIN_DELTA: no better
    assert watch.record(learned.Check(24, 3.0, 0.1, eval_loss=1.5)) is False  # better: patience starts over
    assert not watch.record(learned.Check(32, 4.0, 0.1, eval_loss=1.6))
    assert watch.record(learned.Check(40, 5.0, 0.1, eval_loss=1.55))
    assert "best 1.5000" in watch.learned_text() and not watch.due(48)
    watch.plan_next(8, check_seconds=2.0, train_seconds=8.0, steps=8)  # 1 s steps: 2 s is 10 steps' 20 %
    assert watch.next_step == 18
    watch.plan_next(8, check_seconds=60.0, train_seconds=8.0, steps=8)  # never more than 3 x 8 steps on
    assert watch.next_step == 32
    watch.plan_next(8, check_seconds=0.1, train_seconds=8.0, steps=8)
    assert watch.next_step == 16

    held = learned.LearnedWatch(cfg, [("q", "a")] * 16)
    assert held.mode == "heldout" and held.needed == 15  # 0.9 of 16: 15/16 passes
    cut_short = learned.Check(4, 0.5, 0.1, passed=3, total=16, complete=False)  # asked until 2 were missed
    assert cut_short.score() == "held-out at least 3/16" and not held.record(cut_short)
    assert held.score_record(None)["score_detail"]["at_least"] is True
    assert not held.record(learned.Check(8, 1.0, 0.1, passed=14, total=16))
    assert held.record(learned.Check(16, 2.0, 0.1, passed=15, total=16))
    assert held.learned.score() == "held-out 15/16" and "at_least" not in held.score_record(None)["score_detail"]
    cfg.training.stop_when_learned = False
    assert learned.LearnedWatch(cfg, [("q", "a")], has_eval=True).mode == ""


def test_a_resumed_run_asks_the_questions_it_started_with(tiny_model_dir, rows, heldout, tmp_path, stop_at) -> None:
    sink = stop_at(1)
    cfg = config(tiny_model_dir, learned_target=0.0, learned_check_steps=4)
    first = training.run(cfg, rows, sink, sink.stop, runs_dir=tmp_path, heldout=heldout)
    assert first.status == "stopped" and first.steps < 4 and not first.learned  # stopped before the first check

    resumed_sink = Sink()
    resumed = training.run(RunConfig(), [], resumed_sink, resume_from=first.run_dir)  # no heldout given again
    assert resumed.status == "completed" and resumed.steps == 4
    assert "held-out questions answered at step 4" in resumed.learned
    assert any(line.startswith("Stop when learned: every 4 steps, 0/2 held-out questions (questions.json)")
               for line in resumed_sink.lines)
    assert runs.read_run_file(first.run_dir)["score_detail"]["step"] == 4


def test_the_benchmark_quick_prints_the_stop_its_checks_and_the_score() -> None:
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "stop_learned.py"), "--quick",
                           "--full-checks-too"], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "Run: completed, 2 steps in " in out and "Checks: 1, " in out
    assert "Learned line: Learned: 0/16 held-out questions answered at step 2 (" in out
    assert "Score of the stopped adapter (as loradesk eval): tuned " in out and "/16 vs base " in out
    # the check timed both ways on the same model: a target of 0 asks every question either way, same count
    assert re.search(r"as asked: 0/16 in [\d.]+ s; every answer to its end: 0/16 in [\d.]+ s", out), out
    assert re.search(r"Checks asked until decided: [\d.]+ s in total; every answer to its end: [\d.]+ s "
                     r"\([\d.]+x\) over 1 checks", out), out
