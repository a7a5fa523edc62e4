"""Conversation rows through ``core.training.run``: they train, rows cut to no trained token are skipped with
a count (a run with none left refuses), and tool rows meet a clear refusal or the text form."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from safetensors.torch import load_file
from test_conversation_tokens import TOOL_TEMPLATE, tool_chat
from test_training import RecordingSink, tiny_config

from loradesk.core import runs, training
from loradesk.core.conversation import ToolCall, Turn
from loradesk.core.dataset import Example
from loradesk.core.formats import read_dataset
from loradesk.core.models import load_tokenizer

DATA = Path(__file__).resolve().parents[2] / "data" / "sample.json"


def encode_row(model_dir: Path, row: Example) -> list[int]:
    """The row's whole training text as token ids, uncut."""
    from loradesk.core.tokenize import encode

    return encode(load_tokenizer(model_dir), row, 4096).input_ids


def conversations(n: int) -> list[Example]:
    """``n`` two-exchange conversations made of the sample pairs."""
    pairs = read_dataset(DATA)
    return [Example.conversation([Turn("user", a.prompt), Turn("assistant", a.completion),
                                  Turn("user", b.prompt), Turn("assistant", b.completion)])
            for a, b in zip(pairs[:n], pairs[n:2 * n], strict=True)]


def test_a_conversation_dataset_trains(tiny_model_dir: Path, tmp_path: Path) -> None:
    sink = RecordingSink()
    result = training.run(tiny_config(tiny_model_dir, max_steps=24), conversations(16), sink, runs_dir=tmp_path)
    assert result.status == "completed" and result.skipped_rows == 0
    losses = [p.loss for p in sink.points if p.loss is not None]
    assert sum(losses[-4:]) / 4 < sum(losses[:4]) / 4 - 0.4
    weights = load_file(str(result.run_dir / "adapter_model.safetensors"))
    assert all(float(v.abs().sum()) > 0 for k, v in weights.items() if "lora_B" in k)
    snapshot = runs.load_dataset_snapshot(result.run_dir)
    assert snapshot[0].turns == conversations(16)[0].turns


def test_rows_cut_to_no_trained_token_are_skipped_with_a_count(tiny_model_dir: Path, tmp_path: Path) -> None:
    long_question = "Who is Tamsin Quillfeather of Vaelmoor? " * 12
    rows = conversations(4) + [Example.conversation([Turn("user", long_question), Turn("assistant", "Her.")])
                               for _ in range(3)]
    sink = RecordingSink()
    result = training.run(tiny_config(tiny_model_dir, max_steps=1, max_length=64), rows, sink, runs_dir=tmp_path)
    assert result.skipped_rows == 3 and result.train_rows == 7
    skipped = [line for line in sink.lines if line.startswith("Skipped")]
    assert len(skipped) == 1 and re.fullmatch(
        r"Skipped 3 training rows whose answers lie beyond the max length of 64 tokens \(row 5 first\); "
        r"a max length of (\d+) would keep them", skipped[0])
    need = int(skipped[0].rsplit("of ", 1)[1].split()[0])
    assert need % 64 == 0 and need - 64 < len(encode_row(tiny_model_dir, rows[4])) <= need
    assert json.loads((result.run_dir / runs.RUN_FILE).read_text())["result"]["skipped_rows"] == 3
    with pytest.raises(training.TrainingError, match=r"No training row is left to train: all 3 rows whose answers "
                       r"lie beyond the max length of 64 tokens \(row 1 first\); a max length of \d+ would keep them"):
        training.run(tiny_config(tiny_model_dir, max_steps=1, max_length=64), rows[4:], runs_dir=tmp_path)


def test_tool_rows_and_a_template_without_tool_support(tiny_model_dir: Path, tmp_path: Path) -> None:
    rows = [*conversations(4), tool_chat(), tool_chat()]
    with pytest.raises(training.ToolsUnsupported) as caught:
        training.run(tiny_config(tiny_model_dir, max_steps=1), rows, runs_dir=tmp_path)
    message = str(caught.value)
    assert "\n" not in message
    assert (f"The chat template of {tiny_model_dir.name} leaves out tool calls and results: 2 rows (row 5 first) "
            "have them; turn on 'Tool calls as text'") in message
    assert not list(tmp_path.iterdir())  # refused before a run folder was made
    result = training.run(tiny_config(tiny_model_dir, max_steps=1, tools_as_text=True), rows, runs_dir=tmp_path)
    assert result.status == "completed" and result.train_rows == 6


def test_a_template_with_tool_support_trains_tool_rows(tiny_model_dir: Path, tmp_path: Path) -> None:
    model = tmp_path / "tool-model"
    shutil.copytree(tiny_model_dir, model)
    tok = load_tokenizer(model)
    tok.chat_template = TOOL_TEMPLATE
    tok.save_pretrained(model)
    call = ToolCall("get_weather", '{"city": "Bergen"}')
    rows = [tool_chat(), Example.conversation([Turn("user", "Bergen?"), Turn("assistant", "", (call,)),
                                               Turn("tool", "rain"), Turn("assistant", "Rain.")])]
    result = training.run(tiny_config(model, max_steps=1), rows, runs_dir=tmp_path / "runs")
    assert result.status == "completed" and result.train_rows == 2
