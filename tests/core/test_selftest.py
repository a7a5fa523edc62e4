"""``loradesk self-test`` on the tiny model: a pass, a failure naming its stage, and the adapter checks."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from loradesk.cli import main
from loradesk.core.config import RunConfig
from loradesk.core.selftest import SelfTestError, check_adapter_files


def test_self_test_passes_on_the_tiny_model_and_cleans_up(tiny_model_dir: Path, loradesk_home: Path,
                                                           tmp_path: Path, monkeypatch, capsys) -> None:
    import tempfile

    monkeypatch.chdir(tmp_path)
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    assert main(["self-test", "--model", str(tiny_model_dir)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1
    summary = lines[0]
    assert summary.startswith("Self-test passed in ")
    assert "3 steps" in summary and "on CPU" in summary
    assert ", fp32, " in summary or ", bf16, " in summary
    run_dir = Path(re.search(r"run written to (.+?) \(removed\)", summary).group(1))
    assert run_dir.is_relative_to(tmp_path / "tmp")
    assert not run_dir.exists() and not run_dir.parent.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tmp"]  # nothing in the working folder
    assert list((tmp_path / "tmp").iterdir()) == []


def test_self_test_keep_leaves_a_loadable_run(tiny_model_dir: Path, capsys) -> None:
    assert main(["self-test", "--model", str(tiny_model_dir), "--keep"]) == 0
    summary = capsys.readouterr().out.strip()
    run_dir = Path(re.search(r"run kept in (.+?);", summary).group(1))
    record = json.loads((run_dir / "loradesk_run.json").read_text())
    assert record["result"]["status"] == "completed" and record["result"]["steps"] == 3
    assert (run_dir / "adapter_model.safetensors").is_file()


def test_self_test_failure_names_the_stage_and_exits_non_zero(tmp_path: Path, capsys) -> None:
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "config.json").write_text("{not json", encoding="utf-8")
    assert main(["self-test", "--model", str(broken)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    err = captured.err.strip().splitlines()[-1]
    assert err.startswith("loradesk: error: self-test failed while loading the model and training: ")
    assert str(broken) in err


def test_adapter_check_refuses_untrained_weights(tmp_path: Path) -> None:
    import torch
    from safetensors.torch import save_file

    config = RunConfig()
    (tmp_path / "adapter_config.json").write_text(json.dumps({"r": config.lora.r}), encoding="utf-8")
    (tmp_path / "tokenizer_config.json").write_text("{}", encoding="utf-8")
    save_file({"q.lora_A.weight": torch.ones(8, 4), "q.lora_B.weight": torch.zeros(4, 8)},
              str(tmp_path / "adapter_model.safetensors"))
    with pytest.raises(SelfTestError, match="every lora_B tensor is still zero"):
        check_adapter_files(tmp_path, config)
    save_file({"q.lora_A.weight": torch.ones(8, 4), "q.lora_B.weight": torch.full((4, 8), float("nan"))},
              str(tmp_path / "adapter_model.safetensors"))
    with pytest.raises(SelfTestError, match="NaN or infinite"):
        check_adapter_files(tmp_path, config)
    (tmp_path / "adapter_config.json").write_text(json.dumps({"r": config.lora.r + 1}), encoding="utf-8")
    with pytest.raises(SelfTestError, match="rank r is"):
        check_adapter_files(tmp_path, config)
