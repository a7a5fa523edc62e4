"""Training health: the pure monitor on loss sequences, then real tiny-model runs that break, diverge, stop
learning or run out of memory, and what the run folder, the result and the CLI say about them."""

from __future__ import annotations

import io
import json
import math
import shutil
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from loradesk.cli import main
from loradesk.core import health, runs, training
from loradesk.core.config import RunConfig
from loradesk.core.dataset import Example
from loradesk.core.formats import read_dataset

DATA = Path(__file__).resolve().parents[2] / "data" / "sample.json"


def config(lr: float = 1e-3, **lora: object) -> RunConfig:
    cfg = RunConfig()
    cfg.training.learning_rate = lr
    for k, v in lora.items():
        setattr(cfg.lora, k, v)
    return cfg


def feed(monitor: health.HealthMonitor, losses: list[float], grads: list[float | None] | None = None) -> list[str]:
    stops = []
    for i, loss in enumerate(losses):
        stop = monitor.step(i + 1, loss, grads[i] if grads else 1.0)
        if stop:
            stops.append(stop)
    return stops


# --- the monitor alone -------------------------------------------------------------------------------------
def test_the_reported_blow_up_is_flagged_as_diverged_with_advice() -> None:
    monitor = health.HealthMonitor(config(lr=1.0), vocab_size=49152)
    assert feed(monitor, [3.8, 54.0, 19.0, 18.5, 19.2]) == []
    (warning,) = monitor.warnings
    assert "diverged" in warning and "3.8 at step 1" in warning
    assert "learning rate 1 is probably too high: try 0.1" in warning


def test_nan_and_inf_stop_at_their_step() -> None:
    m = health.HealthMonitor(config(lr=0.5))
    assert m.step(1, 2.0, 1.0) is None
    message = m.step(2, float("nan"), 1.0)
    assert message is not None and message.startswith("The loss became NaN at step 2")
    assert "learning rate 0.5 is probably too high; try 0.05" in message
    assert "infinite at step 3" in health.HealthMonitor(config()).step(3, float("inf"), 1.0)
    assert "gradient norm became NaN at step 4" in health.HealthMonitor(config()).step(4, 2.0, float("nan"))


def test_fp16_overflow_steps_are_the_loss_scalers_business() -> None:
    m = health.HealthMonitor(config(), overflow_skips=True)
    assert m.step(1, 2.0, float("inf")) is None
    assert m.step(2, float("nan"), 1.0) is not None  # a NaN loss is still fatal


def test_a_zero_gradient_with_a_flat_loss_is_not_learning() -> None:
    m = health.HealthMonitor(config(lr=1.0, r=1, alpha=4096, use_rslora=True), vocab_size=512)
    ln_v = math.log(512)
    feed(m, [6.30, 6.22, 6.19] + [ln_v] * 9, [400.0, 0.07, 0.03] + [0.0] * 9)
    assert m.warnings == []  # 9 dead steps: not yet
    m.step(13, ln_v, 0.0)
    (warning,) = m.warnings
    assert "not learning: from step 4 to 13" in warning and "ln of the vocabulary size" in warning
    assert "scaled by 4096" in warning and "alpha = 2 x rank (2)" in warning


def test_a_zero_gradient_with_a_moving_loss_or_an_unknown_gradient_is_not_judged() -> None:
    m = health.HealthMonitor(config())
    feed(m, [3.0 + (i % 3) * 0.2 for i in range(15)], [0.0] * 15)
    feed(m, [3.0] * 15, [None] * 15)
    assert m.warnings == []


@pytest.mark.parametrize("losses", [
    [3.1, 2.9, 3.3, 2.6, 2.4, 2.7, 2.2, 2.0, 2.3, 1.9, 1.7, 1.8],  # a noisy but healthy run
    [0.05, 0.2, 0.25, 0.22, 0.3],  # a learnt task: 5x, but only a fraction of a nat
    [6.3, 6.1, 6.2, 6.0, 5.8],  # random init at ln(V)
    [2.0, 9.0, 2.1, 2.0, 1.9],  # one hard batch
])
def test_healthy_sequences_raise_no_warning(losses: list[float]) -> None:
    m = health.HealthMonitor(config(), vocab_size=512)
    assert feed(m, losses) == [] and m.warnings == []


def test_the_divergence_bar() -> None:
    assert health.HealthMonitor(config()).divergence_bar() is None
    m = health.HealthMonitor(config(), vocab_size=512)
    m.step(1, 2.5, 1.0)
    assert m.divergence_bar() == pytest.approx(math.log(512))  # below 3 x 2.5: worse than uniform counts
    m = health.HealthMonitor(config(), vocab_size=512)
    m.step(1, 0.1, 1.0)
    assert m.divergence_bar() == pytest.approx(1.1)  # 3x would be noise-sized: at least a nat higher


@pytest.mark.parametrize(("batch", "accum", "expected"), [(8, 1, (4, 2)), (4, 3, (2, 6)), (6, 1, (3, 2)),
                                                          (5, 1, (1, 5)), (1, 1, None), (8, 1000, None)])
def test_smaller_batch_keeps_the_effective_batch(batch: int, accum: int, expected: tuple[int, int] | None) -> None:
    cfg = config()
    cfg.training.batch_size, cfg.training.grad_accum = batch, accum
    smaller = health.smaller_batch(cfg)
    if expected is None:
        assert smaller is None
    else:
        assert smaller is not None and smaller.check()
        assert (smaller.training.batch_size, smaller.training.grad_accum) == expected
        assert smaller.training.learning_rate == cfg.training.learning_rate
        assert (cfg.training.batch_size, cfg.training.grad_accum) == (batch, accum)  # the original is untouched


# --- real runs on the tiny model ---------------------------------------------------------------------------
class Sink:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def status(self, text: str) -> None:
        pass

    def progress(self, p: training.TrainProgress) -> None:
        pass

    def log(self, text: str) -> None:
        self.lines.append(text)


def tiny(model_dir: Path, **values: object) -> RunConfig:
    cfg = RunConfig()
    cfg.model.kind, cfg.model.name = "local", str(model_dir)
    cfg.lora.dropout = 0.0
    t = cfg.training
    t.max_steps, t.batch_size, t.learning_rate, t.warmup_ratio, t.precision = 10, 4, 1e-2, 0.0, "fp32"
    for key, value in values.items():
        section, name = key.split("__") if "__" in key else ("training", key)
        setattr(getattr(cfg, section), name, value)
    return cfg


@pytest.fixture(scope="module")
def rows() -> list[Example]:
    return read_dataset(DATA)[:16]


def dead_config(model_dir: Path) -> RunConfig:
    """The reported setup that trains nothing: rank 1, alpha 4096, rsLoRA (scale 4096), here with lr 1.0."""
    return tiny(model_dir, max_steps=20, learning_rate=1.0, lora__r=1, lora__alpha=4096, lora__use_rslora=True)


def test_a_healthy_run_has_no_warnings(tiny_model_dir, rows, tmp_path) -> None:
    result = training.run(tiny(tiny_model_dir), rows, Sink(), runs_dir=tmp_path)
    assert result.status == "completed" and result.warnings == []
    info = runs.read_run(result.run_dir)
    assert info.warnings == [] and info.status_label == "completed"


def test_a_run_that_does_not_learn_completes_with_warnings(tiny_model_dir, rows, tmp_path) -> None:
    sink = Sink()
    result = training.run(dead_config(tiny_model_dir), rows, sink, runs_dir=tmp_path)
    metrics = [m for m in runs.read_metrics(result.run_dir) if "loss" in m]
    tail = metrics[-10:]
    assert all(m["grad_norm"] == 0.0 for m in tail)  # the evidence, from the Trainer's own logs
    assert max(m["loss"] for m in tail) - min(m["loss"] for m in tail) < 1e-3
    assert result.status == "completed"
    (warning,) = result.warnings
    assert warning.startswith("The model is not learning")
    assert f"Warning: {warning}" in sink.lines  # said live, when found
    info = runs.read_run(result.run_dir)
    assert info.warnings == [warning] and info.status_label == "completed with warnings"
    assert json.loads((result.run_dir / runs.RUN_FILE).read_text())["result"]["warnings"] == [warning]


@pytest.fixture(scope="module")
def trained_tiny_model(tiny_model_dir: Path, tmp_path_factory) -> Path:
    """The tiny model after 25 full fine-tuning steps on 4 rows: a model with something to lose (~7 s)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from loradesk.core.tokenize import encode

    out = tmp_path_factory.mktemp("trained-tiny")
    shutil.copytree(tiny_model_dir, out, dirs_exist_ok=True)
    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    encoded = [encode(tokenizer, r, 256, True, True) for r in read_dataset(DATA)[:4]]
    length = max(len(e.input_ids) for e in encoded)
    ids = torch.zeros((len(encoded), length), dtype=torch.long)
    labels = torch.full((len(encoded), length), -100)
    mask = torch.zeros((len(encoded), length), dtype=torch.long)
    for i, e in enumerate(encoded):
        ids[i, :len(e.input_ids)] = torch.tensor(e.input_ids)
        labels[i, :len(e.labels)] = torch.tensor(e.labels)
        mask[i, :len(e.input_ids)] = 1
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-2)
    for _ in range(25):
        model(input_ids=ids, attention_mask=mask, labels=labels).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.save_pretrained(out)
    return out


def test_a_huge_learning_rate_is_caught(trained_tiny_model, tmp_path) -> None:
    """lr 1.0 on a model that knows its 4 rows: the loss jumps several-fold (or goes NaN): never a plain
    'completed'. Which of the two happens is checked against the run's own metrics, not assumed."""
    cfg = tiny(trained_tiny_model, learning_rate=1.0)
    try:
        result = training.run(cfg, read_dataset(DATA)[:4], Sink(), runs_dir=tmp_path)
    except training.RunBroke as exc:
        assert "probably too high" in str(exc)
        return
    losses = [m["loss"] for m in runs.read_metrics(result.run_dir) if "loss" in m]
    assert max(losses) > 3 * losses[0]
    assert result.status == "completed" and len(result.warnings) == 1
    assert result.warnings[0].startswith("The loss diverged") and "try 0.1" in result.warnings[0]
    assert runs.read_run(result.run_dir).status_label == "completed with warnings"


@pytest.fixture
def nan_at_step(monkeypatch):
    """Make one LoRA weight NaN just before the forward pass of a given step: a real NaN that flows through
    the real loss and backward pass."""
    from transformers import Trainer

    original = Trainer.training_step
    target: dict[str, int] = {}

    def training_step(self, model, inputs, *args, **kwargs):
        if self.state.global_step + 1 == target.get("step"):
            with torch.no_grad():
                next(p for n, p in model.named_parameters() if "lora_A" in n).fill_(float("nan"))
        return original(self, model, inputs, *args, **kwargs)

    monkeypatch.setattr(Trainer, "training_step", training_step)
    return target


def adapter_tensors(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "adapter_model.safetensors"))


def test_nan_stops_the_run_and_keeps_the_last_good_checkpoint(tiny_model_dir, rows, tmp_path, nan_at_step) -> None:
    nan_at_step["step"] = 7
    cfg = tiny(tiny_model_dir, max_steps=12, save_steps=3)
    with pytest.raises(training.RunBroke, match=r"^The loss became NaN at step 7: the learning rate 0\.01") as err:
        training.run(cfg, rows, Sink(), runs_dir=tmp_path)
    assert err.value.step == 7
    (run_dir,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    checkpoints = sorted(p.name for p in (run_dir / runs.CHECKPOINTS).iterdir())
    assert checkpoints == ["checkpoint-3", "checkpoint-6"]  # the broken state was never saved
    kept = adapter_tensors(run_dir)
    good = adapter_tensors(run_dir / runs.CHECKPOINTS / "checkpoint-6")
    assert kept.keys() == good.keys() and all(torch.equal(kept[k], good[k]) for k in kept)
    assert all(torch.isfinite(t).all() for t in kept.values())
    assert "checkpoint-6" in str(err.value)
    info = runs.read_run(run_dir)
    assert info.status == "failed"
    assert runs.read_run_file(run_dir)["result"]["error"] == str(err.value)
    assert max(m["step"] for m in runs.read_metrics(run_dir)) == 6  # the NaN step is not plotted

    from loradesk.core.generation import Answerer

    assert isinstance(Answerer.from_run(run_dir).answer("Who is Tamsin?", settings=None), str)  # still usable
    nan_at_step.clear()
    resumed = training.run(RunConfig(), [], Sink(), resume_from=run_dir)  # and resumable
    assert resumed.status == "completed" and resumed.steps == 12


def test_nan_before_any_checkpoint_leaves_no_adapter(tiny_model_dir, rows, tmp_path, nan_at_step) -> None:
    nan_at_step["step"] = 2
    with pytest.raises(training.RunBroke, match="no adapter"):
        training.run(tiny(tiny_model_dir, max_steps=6, save_steps=100), rows, Sink(), runs_dir=tmp_path)
    (run_dir,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert not (run_dir / "adapter_model.safetensors").exists()
    assert runs.read_run(run_dir).status == "failed"


def test_out_of_memory_explains_and_the_retry_halves_the_batch(tiny_model_dir, rows, tmp_path, small_gpu) -> None:
    cfg = tiny(tiny_model_dir, max_steps=4, batch_size=4)
    with pytest.raises(training.OutOfMemory) as err:
        training.run(cfg, rows, Sink(), runs_dir=tmp_path)
    message = str(err.value)
    assert message.startswith("The device ran out of memory before the first step (batch size 4")
    assert "Retry with batch size 2 and gradient accumulation 2" in message and "max length" in message
    failed = err.value.run_dir
    assert runs.read_run(failed).status == "failed" and runs.read_run_file(failed)["result"]["error"] == message
    retry = err.value.retry_config
    del err

    result = training.retry_smaller(retry, failed, Sink(), runs_dir=tmp_path)
    assert result.status == "completed" and result.steps == 4 and result.run_dir != failed
    t = runs.read_run(result.run_dir).config.training
    assert (t.batch_size, t.grad_accum, t.learning_rate) == (2, 2, cfg.training.learning_rate)
    assert small_gpu[-8:] == [2] * 8  # 4 steps x 2 micro-batches of 2 rows
    assert runs.load_dataset_snapshot(result.run_dir) == runs.load_dataset_snapshot(failed)
    assert runs.read_run(failed).status == "failed"  # the failed run is kept as it was


# --- the command line --------------------------------------------------------------------------------------
def test_cli_prints_one_line_per_warning_and_runs_lists_the_label(tiny_model_dir, tmp_path, capsys) -> None:
    settings = tmp_path / "dead.json"
    dead_config(tiny_model_dir).save(settings)
    assert main(["train", str(DATA), "--config", str(settings), "--out", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Completed with warnings: 20 steps")
    warnings = [line for line in out.splitlines() if line.startswith("Warning: ")]
    assert len(warnings) == 1 and "not learning" in warnings[0]
    assert main(["runs"]) == 0  # nothing listed: the run went to --out, not the runs folder
    shutil.copytree(tmp_path / "run", runs.default_runs_dir() / "run")
    capsys.readouterr()
    assert main(["runs"]) == 0
    assert "completed with warnings" in capsys.readouterr().out


def test_cli_nan_is_one_line_and_non_zero(tiny_model_dir, tmp_path, capsys, nan_at_step) -> None:
    nan_at_step["step"] = 2
    code = main(["train", str(DATA), "--model", str(tiny_model_dir), "--max-steps", "4", "--batch-size", "4",
                 "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert err[-1].startswith("loradesk: error: The loss became NaN at step 2")


def test_cli_out_of_memory_without_a_terminal_says_how_to_retry(tiny_model_dir, tmp_path, capsys,
                                                                small_gpu) -> None:
    code = main(["train", str(DATA), "--model", str(tiny_model_dir), "--max-steps", "2", "--batch-size", "4",
                 "--out", str(tmp_path / "run")])
    assert code == 1
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("loradesk: error: The device ran out of memory") and last.endswith("--retry-oom to "
                                                                                            "retry that way.")


def test_cli_retry_oom_trains_with_half_the_batch(tiny_model_dir, tmp_path, capsys, small_gpu) -> None:
    out = tmp_path / "run"
    assert main(["train", str(DATA), "--model", str(tiny_model_dir), "--max-steps", "2", "--batch-size", "4",
                 "--out", str(out), "--retry-oom"]) == 0
    captured = capsys.readouterr()
    assert "ran out of memory" in captured.err
    assert f"Adapter: {tmp_path / 'run-retry'}" in captured.out
    assert runs.read_run(out).status == "failed"
    t = runs.read_run(tmp_path / "run-retry").config.training
    assert (t.batch_size, t.grad_accum) == (2, 2)


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(("answer", "code"), [("n\n", 1), ("\n", 0)])
def test_cli_out_of_memory_asks_at_a_terminal(tiny_model_dir, tmp_path, capsys, monkeypatch, small_gpu,
                                              answer: str, code: int) -> None:
    monkeypatch.setattr(sys, "stdin", Terminal(answer))
    assert main(["train", str(DATA), "--model", str(tiny_model_dir), "--max-steps", "1", "--batch-size", "4",
                 "--out", str(tmp_path / "run")]) == code
    captured = capsys.readouterr()
    assert captured.err.count("ran out of memory") == 1  # said once, before the question
    assert "Retry with batch size 2 and gradient accumulation 2? [Y/n]" in captured.out
    assert (tmp_path / "run-retry").is_dir() == (code == 0)
