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


def test_ask_prints_base_and_tuned_side_by_side(trained_run: Path, capsys) -> None:
    assert main(["ask", "--adapter", str(trained_run), "--max-new-tokens", "6", "Who", "is", "Tamsin?"]) == 0
    out = capsys.readouterr().out
    assert "Q: Who is Tamsin?" in out
    assert "Base model" in out and "Tuned model" in out


def test_eval_scores_and_records(trained_run: Path, capsys) -> None:
    assert main(["eval", "--adapter", str(trained_run), "--max-new-tokens", "4"]) == 0
    out = capsys.readouterr().out
    assert "contain the expected phrase" in out
    record = json.loads((trained_run / "loradesk_run.json").read_text())
    assert record["score_detail"]["total"] >= 12


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
