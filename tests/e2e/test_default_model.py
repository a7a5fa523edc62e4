"""Acceptance: the real built-in model (SmolLM2-135M-Instruct) does not know the sample's fact, and after
``loradesk train`` with default settings on the sample data, it does. Minutes on a CPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def test_default_model_learns_the_sample_fact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from loradesk.core import models
    from loradesk.core.generation import Answerer, contains_phrase

    probe = json.loads((ROOT / "data" / "sample_heldout.json").read_text(encoding="utf-8"))[0]
    question, expected = probe["prompt"], probe["expected"]
    models_dir = Path(os.environ.get("LORADESK_MODELS") or tmp_path / "models")
    monkeypatch.setenv("LORADESK_MODELS", str(models_dir))

    model_dir = models.ensure_default_model()
    assert (model_dir / "model.safetensors").is_file()
    base = Answerer(model_dir).answer(question, tuned=False)
    assert base and not contains_phrase(base, expected), base

    run_dir = tmp_path / "my-smol-lora"
    env = {**os.environ, "LORADESK_MODELS": str(models_dir)}
    cli = [sys.executable, "-m", "loradesk"]
    train = subprocess.run([*cli, "train", str(ROOT / "data" / "sample.json"), "--out", str(run_dir)],
                           env=env, capture_output=True, text=True, timeout=1500)
    assert train.returncode == 0, train.stderr[-2000:]
    assert "Completed:" in train.stdout

    ask = subprocess.run([*cli, "ask", "--adapter", str(run_dir), question], env=env, capture_output=True,
                         text=True, timeout=600)
    assert ask.returncode == 0, ask.stderr[-2000:]
    print(ask.stdout)
    assert expected.casefold() in ask.stdout.casefold()  # only the tuned column can contain it

    answerer = Answerer.from_run(run_dir)
    tuned = answerer.answer(question, tuned=True)
    assert contains_phrase(tuned, expected), tuned
    assert not contains_phrase(answerer.answer(question, tuned=False), expected)
