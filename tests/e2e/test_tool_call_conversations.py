"""Acceptance: a multi-turn ShareGPT file with tool calls, start to end on the real built-in model.

It imports as whole conversations, exports back byte for byte, is refused by ``loradesk train`` with one
clear line (the built-in model's chat template has no tool support), trains with ``--tools-as-text`` with
the loss on assistant turns only (every trained token checked against :func:`explain`), and leaves an
adapter that loads. A feedback-labelled file is not imported as plain SFT data. About a minute on a CPU.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from loradesk.core.formats import FormatError, read_dataset, write_dataset

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "data" / "examples" / "tool_calls.sharegpt.json"
pytestmark = pytest.mark.slow


def test_tool_call_conversations_import_train_on_assistant_turns_and_export_back(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from loradesk.core import models, runs
    from loradesk.core.config import RunConfig
    from loradesk.core.tokenize import encode, explain

    rows = read_dataset(EXAMPLE)
    assert rows and all(r.is_conversation for r in rows)
    assert sum(len(t.tool_calls) for r in rows for t in r.turns) >= len(rows) - 1
    assert any(t.role == "tool" for r in rows for t in r.turns) and all(r.tools for r in rows)
    back = tmp_path / "back.json"
    write_dataset(back, rows, "sharegpt")
    assert back.read_bytes() == EXAMPLE.read_bytes()

    models_dir = Path(os.environ.get("LORADESK_MODELS") or tmp_path / "models")
    monkeypatch.setenv("LORADESK_MODELS", str(models_dir))
    tokenizer = models.load_tokenizer(models.ensure_default_model())
    env = {**os.environ, "LORADESK_MODELS": str(models_dir), "PYTHONPATH": str(ROOT)}
    cli = [sys.executable, "-m", "loradesk", "train", str(EXAMPLE)]

    refused = subprocess.run([*cli, "--out", str(tmp_path / "refused")], env=env, capture_output=True, text=True,
                             timeout=600)
    assert refused.returncode == 1
    error = refused.stderr.strip().splitlines()[-1]
    assert "leaves out tool calls" in error and "--tools-as-text" in error, refused.stderr[-2000:]
    assert not (tmp_path / "refused" / "adapter_model.safetensors").exists()

    too_short = subprocess.run([*cli, "--tools-as-text", "--out", str(tmp_path / "short")], env=env,
                               capture_output=True, text=True, timeout=600)
    assert too_short.returncode == 1  # the tools block alone is ~350 tokens: over the default max length
    assert "a max length of 576 would keep them" in too_short.stderr, too_short.stderr[-2000:]

    settings = RunConfig().to_dict()
    settings["training"]["max_length"] = 576
    (tmp_path / "run.json").write_text(json.dumps(settings), encoding="utf-8")
    run_dir = tmp_path / "tools-run"
    trained = subprocess.run([*cli, "--tools-as-text", "--config", str(tmp_path / "run.json"), "--max-steps", "6",
                              "--lr", "1e-3", "--out", str(run_dir)], env=env, capture_output=True, text=True,
                             timeout=1500)
    assert trained.returncode == 0, trained.stderr[-2000:]
    losses = [m["loss"] for m in runs.read_metrics(run_dir) if "loss" in m]
    assert len(losses) >= 5 and losses[-1] < losses[0], losses

    config = RunConfig.from_dict(runs.read_run_file(run_dir)["config"])
    t = config.training
    assert t.tools_as_text and t.assistant_turns == "all" and t.completion_only_loss
    for row in runs.load_dataset_snapshot(run_dir):
        encoded = encode(tokenizer, row, t.max_length, t.completion_only_loss, t.use_chat_template,
                         t.assistant_turns, t.tools_as_text)
        shown = explain(tokenizer, row, t.max_length, t.completion_only_loss, t.use_chat_template,
                        t.assistant_turns, t.tools_as_text)
        assert [p.token_id for p in shown.pieces if not p.cut] == encoded.input_ids
        assert [p.trained for p in shown.pieces if not p.cut] == [x != -100 for x in encoded.labels]
        trained_turns = {p.turn for p in shown.pieces if p.trained}
        assert all(p.role == "assistant" for p in shown.pieces if p.trained)
        assert trained_turns == {i for i, turn in enumerate(row.turns) if turn.has_output}
        trained_text = "".join(p.text for p in shown.pieces if p.trained)
        assert ("<tool_call>" in trained_text) == any(turn.tool_calls for turn in row.turns)
        assert "<tool_response>" not in trained_text and "<tools>" not in trained_text

    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(runs.read_run_file(run_dir)["base_model_dir"])
    tuned = PeftModel.from_pretrained(base, runs.adapter_source(run_dir))
    assert any("lora_A" in name for name, _ in tuned.named_parameters())


def test_a_feedback_labelled_file_is_not_imported_as_plain_answers(tmp_path: Path) -> None:
    path = tmp_path / "kto.jsonl"
    records = [{"prompt": f"Where is map {i}?", "completion": f"Case {i}." if i % 2 else "No idea.",
                "label": bool(i % 2)} for i in range(10)]
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    notes: list[str] = []
    rows = read_dataset(path, notes=notes)
    assert [r.completion for r in rows] == [f"Case {i}." for i in range(1, 10, 2)]
    assert len(notes) == 1 and "Skipped 5 of 10 rows" in notes[0] and "'label'" in notes[0]
    bad_only = tmp_path / "bad.jsonl"
    bad_only.write_text("".join(json.dumps({**r, "label": False}) + "\n" for r in records), encoding="utf-8")
    with pytest.raises(FormatError, match="label"):
        read_dataset(bad_only)
