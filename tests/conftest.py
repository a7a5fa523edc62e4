"""Shared fixtures: an isolated LoRA Desk home, and a tiny real model built from a config in seconds.

The tiny model is a real ``LlamaForCausalLM`` (2 layers, hidden 64) with a real byte-level BPE tokenizer
trained on the sample data and a ChatML chat template, saved as a normal Hugging Face folder. Everything
the app does to a real model (tokenize, LoRA, train, save, load, generate) works on it offline.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "data"

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# The Hub is never reached from the tests, whatever the shell says: a stray download would make a test slow,
# flaky, or pass only on a machine with a network.
for _name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ[_name] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# Property-based tests: in CI (CI=true) the same examples every run, a bounded number, each within a deadline,
# so the fuzz tests stay well under a minute on two slow cores; elsewhere fresh random examples each run.
settings.register_profile("ci", derandomize=True, database=None, max_examples=100, deadline=5000,
                          print_blob=True)
settings.register_profile("dev", max_examples=60, deadline=None)
settings.load_profile("ci" if os.environ.get("CI", "").lower() == "true" else "dev")

def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test under tests/ui as ``gui`` so ``pytest -m "not gui"`` runs the core alone."""
    for item in items:
        if "tests/ui" in Path(str(item.fspath)).as_posix():
            item.add_marker(pytest.mark.gui)


@pytest.fixture(autouse=True)
def loradesk_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own user data dir (runs, recovery files), never the real one.

    The converted default model is shared between tests through LORADESK_MODELS when set.
    """
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("LORADESK_HOME", str(home))
    return home


def sample_texts() -> list[str]:
    texts: list[str] = []
    for name in ("sample.json", "sample_heldout.json"):
        path = DATA / name
        if path.exists():
            for rec in json.loads(path.read_text(encoding="utf-8")):
                texts.extend(str(v) for v in rec.values())
    return texts or ["Who is the wizard? The wizard lives in the tower by the sea."]


def build_tiny_model(folder: Path) -> Path:
    """Write a tiny random-weight Llama model and a BPE tokenizer trained on the sample data to ``folder``."""
    from loradesk.core.tiny_model import build_tiny_model as build

    return build(folder, sample_texts())


@pytest.fixture(scope="session")
def tiny_texts() -> list[str]:
    """The texts the tiny models' tokenizers are trained on (the sample data's)."""
    return sample_texts()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Llama model folder (shared by the session; treat it as read-only)."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture
def sample_path() -> Path:
    return DATA / "sample.json"


@pytest.fixture
def heldout_path() -> Path:
    return DATA / "sample_heldout.json"


class StopAt:
    """A training sink that sets its ``stop`` flag once step ``step`` is reported; ``steps`` records them all."""

    def __init__(self, step: int) -> None:
        self.step = step
        self.stop = threading.Event()
        self.steps: list[int] = []

    def status(self, text: str) -> None:
        pass

    def log(self, text: str) -> None:
        pass

    def progress(self, p: Any) -> None:
        self.steps.append(p.step)
        if p.step >= self.step:
            self.stop.set()


@pytest.fixture(scope="session")
def stop_at() -> type[StopAt]:
    """``sink = stop_at(3); training.run(config, rows, sink, sink.stop)``: a run that stops after step 3."""
    return StopAt


@pytest.fixture
def small_gpu(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """A pretend GPU that fits at most 2 rows per batch: larger batches raise a real ``torch.OutOfMemoryError``
    from the Trainer's training step (there is no GPU here, so it is injected). Returns the batch sizes seen."""
    import torch
    from transformers import Trainer

    original = Trainer.training_step
    seen: list[int] = []

    def training_step(self, model, inputs, *args, **kwargs):
        seen.append(int(inputs["input_ids"].shape[0]))
        if seen[-1] > 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 8.00 GiB total)")
        return original(self, model, inputs, *args, **kwargs)

    monkeypatch.setattr(Trainer, "training_step", training_step)
    return seen


def plain_answer(model_dir: Path, prompt: str, max_new_tokens: int, adapter_dir: Path | None = None) -> str:
    """A greedy answer generated with transformers and peft directly, none of our loading or decoding code:
    what the app's answers are checked against (``adapter_dir``: the tuned model; else the base model)."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(adapter_dir or model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    if adapter_dir is not None:
        model = PeftModel.from_pretrained(model, str(adapter_dir))
    text = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                         add_generation_prompt=True)
    inputs = tokenizer(text, return_tensors="pt", add_special_tokens=False)
    with torch.inference_mode():
        out = model.eval().generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False,
                                    pad_token_id=tokenizer.pad_token_id)
    return tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True).strip()


@pytest.fixture(scope="session")
def reference_answer() -> Any:
    """``reference_answer(model_dir, prompt, max_new_tokens, adapter_dir=None)``: see :func:`plain_answer`."""
    return plain_answer


@pytest.fixture(scope="session")
def lively_adapter(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """``(model_dir, adapter_dir)``: the tiny model with large random weights, and a random (non-zero) LoRA
    adapter folder for it (with the tokenizer, as an exported adapter has).

    The plain tiny model only repeats the prompt's last token (a newline, stripped away), so every prompt
    gets the same empty answer; with larger weights each prompt gets its own answer, and the adapter
    changes it.
    """
    import shutil

    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = tmp_path_factory.mktemp("lively")
    model_dir, adapter_dir = folder / "model", folder / "adapter"
    shutil.copytree(tiny_model_dir, model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    torch.manual_seed(1)
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() == 2:
                param.normal_(0.0, 0.5)
    model.save_pretrained(model_dir)
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(model, lora).save_pretrained(adapter_dir)
    AutoTokenizer.from_pretrained(model_dir).save_pretrained(adapter_dir)
    return model_dir, adapter_dir
