"""Fixtures for the core tests: a run folder made in a second, without training."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture
def make_run(tiny_model_dir: Path) -> Callable[..., Path]:
    """``make_run(run_dir, base_model_dir=tiny, **model_settings)``: a run folder with an untrained LoRA adapter,
    the tiny model's tokenizer and a run file, as training leaves it."""
    def make(run_dir: Path, base_model_dir: Path | None = None, **model: Any) -> Path:
        from peft import LoraConfig, get_peft_model
        from transformers import AutoModelForCausalLM

        from loradesk.core.config import RunConfig

        base = Path(base_model_dir or tiny_model_dir)
        peft_model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir),
                                    LoraConfig(r=2, target_modules=["q_proj"]))
        peft_model.save_pretrained(run_dir)
        for name in os.listdir(tiny_model_dir):
            if name.startswith(("tokenizer", "special_tokens", "chat_template")):
                shutil.copy(tiny_model_dir / name, run_dir / name)
        cfg = RunConfig().to_dict()
        cfg["model"].update(kind="local", name=str(base), **model)
        (run_dir / "loradesk_run.json").write_text(json.dumps({
            "created": "2026-11-30T10:00:00", "model": base.name, "base_model_dir": str(base), "config": cfg,
            "result": {"status": "completed", "steps": 1}}))
        return run_dir

    return make
