"""Training a real (tiny) model end to end: weights change, loss falls, stop keeps a usable adapter,
the run folder loads with plain transformers/peft, and resume continues from the last checkpoint."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from loradesk.core import runs, training
from loradesk.core.config import RunConfig
from loradesk.core.dataset import Example
from loradesk.core.formats import read_dataset

PROBE = "Who is Tamsin Quillfeather?"


class RecordingSink:
    def __init__(self) -> None:
        self.statuses: list[str] = []
        self.points: list[training.TrainProgress] = []
        self.lines: list[str] = []

    def status(self, text: str) -> None:
        self.statuses.append(text)

    def progress(self, p: training.TrainProgress) -> None:
        self.points.append(p)

    def log(self, text: str) -> None:
        self.lines.append(text)


def tiny_config(model_dir: Path, **training_values) -> RunConfig:
    cfg = RunConfig()
    cfg.model.kind, cfg.model.name = "local", str(model_dir)
    cfg.lora.dropout, cfg.lora.r = 0.0, 16
    values = {"max_steps": 30, "batch_size": 8, "learning_rate": 1e-2, "warmup_ratio": 0.0, "precision": "fp32"}
    values.update(training_values)
    for k, v in values.items():
        setattr(cfg.training, k, v)
    return cfg


@pytest.fixture(scope="module")
def rows(sample_path_module: Path) -> list[Example]:
    return read_dataset(sample_path_module)[:48]


@pytest.fixture(scope="module")
def sample_path_module() -> Path:
    return Path(__file__).resolve().parents[2] / "data" / "sample.json"


@pytest.fixture(scope="module")
def trained(tiny_model_dir: Path, rows: list[Example], tmp_path_factory) -> tuple[training.RunResult, RecordingSink]:
    sink = RecordingSink()
    cfg = tiny_config(tiny_model_dir, validation_fraction=0.2)
    result = training.run(cfg, rows, sink, runs_dir=tmp_path_factory.mktemp("runs"))
    return result, sink


def test_training_lowers_loss_and_reports_progress(trained) -> None:
    result, sink = trained
    assert result.status == "completed" and result.steps == 30
    losses = [p.loss for p in sink.points if p.loss is not None]
    assert len(losses) >= 25
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 0.4  # nats: a clear fall, not noise
    assert any(p.eval_loss is not None for p in sink.points)
    last = sink.points[-1]
    assert last.step == last.max_steps == 30 and last.fraction == 1.0
    assert all(p.tokens_per_second and p.tokens_per_second > 0 for p in sink.points[1:] if p.loss is not None)
    assert "Training" in sink.statuses and sink.statuses[-1] == "Done"
    assert result.train_rows + result.eval_rows == 48 and result.eval_rows > 0


def test_run_folder_holds_adapter_tokenizer_config_and_metrics(trained) -> None:
    result, sink = trained
    d = result.run_dir
    for name in ("adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "loradesk_run.json",
                 "metrics.jsonl", "dataset.jsonl"):
        assert (d / name).is_file(), name
    metrics = runs.read_metrics(d)
    assert [m["step"] for m in metrics if "loss" in m] == [p.step for p in sink.points if p.loss is not None]
    info = runs.read_run(d)
    assert info.status == "completed" and info.steps == 30
    assert info.config.training.max_steps == 30
    assert runs.latest_checkpoint(d) is not None
    assert runs.list_runs(d.parent)[0].path == d


def test_adapter_weights_changed_from_init(trained) -> None:
    result, _ = trained
    weights = load_file(str(result.run_dir / "adapter_model.safetensors"))
    b_mats = [v for k, v in weights.items() if "lora_B" in k]
    assert b_mats, "adapter has no lora_B weights"
    # peft initialises lora_B to zeros: training must have moved every one of them
    assert all(float(v.abs().sum()) > 0 for v in b_mats)


def test_adapter_loads_with_pipeline_and_peft(trained, tiny_model_dir: Path) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, pipeline

    result, _ = trained
    pipe = pipeline("text-generation", model=str(result.run_dir))
    out = pipe(PROBE, max_new_tokens=5, do_sample=False)
    assert isinstance(out[0]["generated_text"], str)
    assert "PeftModel" in type(pipe.model).__name__ or hasattr(pipe.model, "peft_config")

    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    x = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        before = base(x).logits.clone()
        tuned = PeftModel.from_pretrained(base, str(result.run_dir))
        after = tuned(x).logits
    assert not torch.allclose(before, after)


def test_base_and_tuned_answers_differ(trained) -> None:
    from loradesk.core.generation import Answerer, GenerationSettings

    result, _ = trained
    answerer = Answerer.from_run(result.run_dir)
    settings = GenerationSettings(max_new_tokens=12)
    streamed: list[str] = []
    tuned = answerer.answer(PROBE, tuned=True, settings=settings, on_text=streamed.append)
    base = answerer.answer(PROBE, tuned=False, settings=settings)
    assert tuned != base
    assert "".join(streamed).strip() == tuned
    assert answerer.answer_many([PROBE, PROBE], tuned=True, settings=settings) == [tuned, tuned]


def test_stop_mid_run_keeps_a_loadable_adapter_and_resume_finishes(tiny_model_dir, rows, tmp_path) -> None:
    stop = threading.Event()

    class StopAtFive(RecordingSink):
        def progress(self, p: training.TrainProgress) -> None:
            super().progress(p)
            if p.step >= 5:
                stop.set()

    cfg = tiny_config(tiny_model_dir, max_steps=40, save_steps=100)
    result = training.run(cfg, rows, StopAtFive(), stop, runs_dir=tmp_path)
    assert result.status == "stopped"
    assert 5 <= result.steps < 40
    assert (result.run_dir / "adapter_model.safetensors").is_file()
    ckpt = runs.latest_checkpoint(result.run_dir)
    assert ckpt is not None and ckpt.name == f"checkpoint-{result.steps}"
    assert runs.read_run(result.run_dir).status == "stopped"

    from loradesk.core.generation import Answerer

    assert Answerer.from_run(result.run_dir).answer(PROBE, settings=None) is not None

    sink = RecordingSink()
    resumed = training.run(RunConfig(), [], sink, resume_from=result.run_dir)
    assert resumed.status == "completed" and resumed.steps == 40
    assert resumed.run_dir == result.run_dir
    steps = [m["step"] for m in runs.read_metrics(result.run_dir) if "loss" in m]
    assert steps == sorted(steps) and steps[-1] == 40
    assert sink.points[0].step > result.steps - 1


def test_half_written_checkpoint_is_ignored(tmp_path: Path) -> None:
    (tmp_path / "checkpoints" / "checkpoint-4").mkdir(parents=True)
    (tmp_path / "checkpoints" / "checkpoint-4" / runs.COMPLETE_MARKER).write_text("4")
    (tmp_path / "checkpoints" / "checkpoint-8").mkdir()  # crashed while saving: no marker
    assert runs.latest_checkpoint(tmp_path).name == "checkpoint-4"


def test_empty_rows_are_refused_by_number(tiny_model_dir) -> None:
    rows = [Example("q", "a"), Example("q2", "  "), Example("", "x")]
    with pytest.raises(training.TrainingError, match=r"^2 rows have an empty prompt or completion \(row 2, 3\)"):
        training.run(tiny_config(tiny_model_dir), rows)


def test_unknown_target_module_is_named(tiny_model_dir, rows, tmp_path) -> None:
    cfg = tiny_config(tiny_model_dir)
    cfg.lora.target_modules = ["query_key_value"]
    with pytest.raises(training.TrainingError, match=r"no layer named query_key_value.*q_proj"):
        training.run(cfg, rows[:4], runs_dir=tmp_path)


def test_out_dir_must_be_new(tiny_model_dir, rows, tmp_path) -> None:
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "file.txt").write_text("keep me")
    with pytest.raises(training.TrainingError, match="not empty"):
        training.run(tiny_config(tiny_model_dir), rows, out_dir=tmp_path / "taken")
    assert (tmp_path / "taken" / "file.txt").read_text() == "keep me"


def test_run_record_is_json(trained) -> None:
    result, _ = trained
    data = json.loads((result.run_dir / "loradesk_run.json").read_text())
    assert data["result"]["status"] == "completed"
    assert Path(data["base_model_dir"]).is_dir()


def test_a_failure_mid_run_is_recorded_in_the_run_folder(tiny_model_dir, rows, tmp_path) -> None:
    class Exploding(RecordingSink):
        def progress(self, p: training.TrainProgress) -> None:
            if p.step >= 2:
                raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        training.run(tiny_config(tiny_model_dir, max_steps=6), rows, Exploding(), runs_dir=tmp_path)
    (run_dir,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    info = runs.read_run(run_dir)
    assert info.status == "failed"
    assert runs.read_run_file(run_dir)["result"]["error"] == "RuntimeError: disk full"


def test_the_adapter_starts_from_the_runs_seed_and_leaves_the_random_state_alone(tiny_model_dir, rows) -> None:
    from transformers import AutoModelForCausalLM

    def first_weights(seed: int) -> dict[str, torch.Tensor]:
        job = training.TrainingJob(tiny_config(tiny_model_dir, seed=seed), rows, RecordingSink(), threading.Event())
        model = job.wrap_lora(AutoModelForCausalLM.from_pretrained(tiny_model_dir))
        return {name: p.detach().clone() for name, p in model.named_parameters() if "lora_A" in name}

    torch.manual_seed(0)
    first = first_weights(7)
    torch.rand(1000)  # whatever drew random numbers before must not matter
    before = torch.get_rng_state()
    again = first_weights(7)
    assert torch.equal(torch.get_rng_state(), before)  # the process's random state is left as it was
    other = first_weights(8)
    assert first and first.keys() == again.keys() == other.keys()
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not any(torch.equal(first[k], other[k]) for k in first)
