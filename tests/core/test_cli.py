"""The command line on a tiny model: train, ask, eval, export (adapter and merged), runs, and errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loradesk.cli import main, side_by_side


@pytest.fixture(scope="module")
def trained_run(tiny_model_dir: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "my-lora"
    data = Path(__file__).resolve().parents[2] / "data" / "sample.json"
    assert main(["train", str(data), "--model", str(tiny_model_dir), "--max-steps", "4", "--batch-size", "4",
                 "--out", str(out)]) == 0
    return out


def test_train_writes_the_run_where_asked(trained_run: Path, capsys) -> None:
    assert (trained_run / "adapter_model.safetensors").is_file()
    assert json.loads((trained_run / "loradesk_run.json").read_text())["result"]["steps"] == 4


def test_ask_prints_base_and_tuned_side_by_side(lively_adapter: tuple[Path, Path], capsys,
                                                reference_answer) -> None:
    model_dir, adapter = lively_adapter
    assert main(["ask", "--adapter", str(adapter), "--max-new-tokens", "6", "Who", "is", "Tamsin?"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Q: Who is Tamsin?\n")
    # the answers are the base model's and the base model's with this adapter, as transformers gives them
    base = reference_answer(model_dir, "Who is Tamsin?", 6)
    tuned = reference_answer(model_dir, "Who is Tamsin?", 6, adapter_dir=adapter)
    assert base and tuned and base != tuned
    assert side_by_side("Base model", base, "Tuned model", tuned) in out


def test_eval_scores_and_records(trained_run: Path, capsys) -> None:
    from loradesk.core.formats import read_heldout
    from loradesk.core.paths import sample_data_dir

    questions = read_heldout(sample_data_dir() / "sample_heldout.json")
    assert main(["eval", "--adapter", str(trained_run), "--max-new-tokens", "4"]) == 0
    out = capsys.readouterr().out
    marks = [line[:5] for line in out.splitlines() if line.startswith("[")]
    assert len(marks) == len(questions)
    base_ok = sum(m[1] == "x" for m in marks)
    tuned_ok = sum(m[3] == "x" for m in marks)
    assert f"Base {base_ok}/{len(questions)}, tuned {tuned_ok}/{len(questions)} contain the expected phrase" in out
    record = json.loads((trained_run / "loradesk_run.json").read_text())
    assert record["score"] == pytest.approx(tuned_ok / len(questions))
    assert record["score_detail"] == {"tuned": tuned_ok, "base": base_ok, "total": len(questions),
                                      "heldout": str(sample_data_dir() / "sample_heldout.json")}


def test_eval_scores_answers_that_contain_the_phrase(lively_adapter: tuple[Path, Path], tmp_path: Path,
                                                     capsys) -> None:
    """Held-out questions whose expected phrase is (part of) what the tuned model says, in other case."""
    from loradesk.core.generation import Answerer, GenerationSettings

    model_dir, adapter = lively_adapter
    answerer = Answerer(model_dir, adapter)
    settings = GenerationSettings(max_new_tokens=4)
    tuned = answerer.answer("Who?", settings=settings)
    assert tuned and tuned not in answerer.answer("Who?", tuned=False, settings=settings)
    heldout = tmp_path / "held.jsonl"
    heldout.write_text(json.dumps({"prompt": "Who?", "expected": tuned.upper()}) + "\n"
                       + json.dumps({"prompt": "Where?", "expected": "Tamsin Quillfeather"}) + "\n", encoding="utf-8")
    before = sorted(p.name for p in adapter.iterdir())
    assert main(["eval", "--adapter", str(adapter), "--max-new-tokens", "4", "--heldout", str(heldout)]) == 0
    out = capsys.readouterr().out
    assert "Base 0/2, tuned 1/2 contain the expected phrase" in out
    assert out.startswith("[ |x] Who?")
    assert sorted(p.name for p in adapter.iterdir()) == before  # not a run folder: no score written into it


def test_train_with_config_uses_its_settings(tiny_model_dir: Path, tmp_path: Path, capsys) -> None:
    config = tmp_path / "run.json"
    assert main(["train", "x.json", "--max-steps", "2", "--lr", "0.002", "--batch-size", "2",
                 "--save-config", str(config)]) == 0
    data = Path(__file__).resolve().parents[2] / "data" / "sample.json"
    out = tmp_path / "run"
    assert main(["train", str(data), "--model", str(tiny_model_dir), "--config", str(config),
                 "--out", str(out)]) == 0
    record = json.loads((out / "loradesk_run.json").read_text())
    assert record["config"]["training"]["learning_rate"] == 0.002
    assert record["config"]["training"]["batch_size"] == 2
    assert record["result"]["steps"] == 2


def test_train_resume_finishes_a_stopped_run(tiny_model_dir: Path, tmp_path: Path, stop_at, capsys) -> None:
    from loradesk.core import runs, training
    from loradesk.core.config import ModelSettings, RunConfig
    from loradesk.core.formats import read_dataset

    config = RunConfig(model=ModelSettings(kind="local", name=str(tiny_model_dir)))
    config.training.max_steps, config.training.batch_size, config.training.logging_steps = 6, 4, 1
    sink = stop_at(2)
    data = Path(__file__).resolve().parents[2] / "data" / "sample.json"
    stopped = training.run(config, read_dataset(data), sink, sink.stop, out_dir=tmp_path / "run")
    assert stopped.status == "stopped" and stopped.steps < 6
    kept = runs.latest_checkpoint(stopped.run_dir)
    assert kept is not None

    assert main(["train", "ignored.json", "--resume", str(stopped.run_dir)]) == 0
    assert f"Adapter: {stopped.run_dir}" in capsys.readouterr().out
    info = runs.read_run(stopped.run_dir)
    assert info.status == "completed" and info.steps == 6
    steps = [row["step"] for row in runs.read_metrics(stopped.run_dir) if "loss" in row]
    assert steps == sorted(set(steps)) and steps[-1] == 6  # continued from the checkpoint, no step twice


def test_export_adapter_and_merged(trained_run: Path, tmp_path: Path, tiny_model_dir: Path) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    assert main(["export", str(trained_run), "--out", str(tmp_path / "adapter")]) == 0
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()
    assert not (tmp_path / "adapter" / "checkpoints").exists()
    (tmp_path / "adapter" / "loradesk_run.json").unlink()  # a plain peft folder: the base comes from its config
    assert main(["ask", "--adapter", str(tmp_path / "adapter"), "--max-new-tokens", "4", "Who?"]) == 0
    assert main(["export", str(trained_run), "--out", str(tmp_path / "merged"), "--merged"]) == 0
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged")
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    tuned = PeftModel.from_pretrained(base, str(tmp_path / "adapter"))
    x = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        assert torch.allclose(merged(x).logits, tuned(x).logits, atol=1e-4)
    assert (tmp_path / "merged" / "tokenizer.json").is_file()
    assert not any(p.name.startswith("adapter_") for p in (tmp_path / "merged").iterdir())


def test_runs_lists_nothing_in_a_fresh_home(capsys) -> None:
    assert main(["runs"]) == 0
    assert "No runs yet" in capsys.readouterr().out


def test_errors_are_one_line_and_non_zero(tmp_path: Path, capsys) -> None:
    assert main(["train", str(tmp_path / "missing.json")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("loradesk: error:") and "missing.json" in err[0]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a", "completion": "b"}\n{"prompt": "c", "completion": 3}\n')
    assert main(["train", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "line 2" in err and "completion" in err
    assert main(["ask", "--adapter", str(tmp_path), "hi"]) == 1
    assert "not an adapter folder" in capsys.readouterr().err


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="missing.json"):
        main(["--debug", "train", str(tmp_path / "missing.json")])


def test_save_config_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "run.json"
    assert main(["train", "x.json", "--lr", "0.002", "--epochs", "2", "--save-config", str(path)]) == 0
    cfg = json.loads(path.read_text())
    assert cfg["training"]["learning_rate"] == 0.002 and cfg["training"]["epochs"] == 2


def test_side_by_side_columns() -> None:
    text = side_by_side("Base", "short", "Tuned", "a much longer answer " * 5, width=60)
    lines = text.splitlines()
    assert lines[0].startswith("Base") and "| Tuned" in lines[0]
    assert len(lines) > 3 and all(len(line) <= 60 for line in lines)


def test_train_stops_when_learned_and_prints_the_learned_line(tiny_model_dir: Path, tmp_path: Path,
                                                              capsys) -> None:
    """DATA is the shipped sample: its held-out questions are asked by default; a target of 0 is met at once."""
    from loradesk.core.config import RunConfig
    from loradesk.core.paths import sample_data_dir

    config = RunConfig()
    config.training.learned_target, config.training.learned_check_steps = 0.0, 2
    config.save(tmp_path / "run.json")
    data = Path(__file__).resolve().parents[2] / "data" / "sample.json"
    common = ["train", str(data), "--model", str(tiny_model_dir), "--max-steps", "5", "--batch-size", "4",
              "--config", str(tmp_path / "run.json")]
    assert main([*common, "--out", str(tmp_path / "learned")]) == 0
    out = capsys.readouterr().out
    learned = [line for line in out.splitlines() if line.startswith("Learned: ")]
    assert learned and "held-out questions answered at step 2 (" in learned[0]
    assert learned[0].endswith("; stopped early") and out.startswith("Completed: 2 steps")
    record = json.loads((tmp_path / "learned" / "loradesk_run.json").read_text())
    assert record["heldout"] == str((sample_data_dir() / "sample_heldout.json").resolve())

    assert main([*common, "--no-stop-when-learned", "--out", str(tmp_path / "all")]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Completed: 5 steps") and "Learned" not in out

    bad = tmp_path / "questions.json"
    bad.write_text('[{"prompt": "Who?"}]', encoding="utf-8")
    assert main([*common, "--heldout", str(bad), "--out", str(tmp_path / "bad")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "questions.json" in err[0] and "expected" in err[0]
    assert not (tmp_path / "bad").exists()
