"""Shared fixtures: an isolated LoRA Desk home, and a tiny real model built from a config in seconds.

The tiny model is a real ``LlamaForCausalLM`` (2 layers, hidden 64) with a real byte-level BPE tokenizer
trained on the sample data and a ChatML chat template, saved as a normal Hugging Face folder. Everything
the app does to a real model (tokenize, LoRA, train, save, load, generate) works on it offline.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "data"

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content']"
    " + '<|im_end|>' + '\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


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


def build_tiny_model(folder: Path, vocab_size: int = 512) -> Path:
    """Write a tiny random-weight Llama model and a trained BPE tokenizer to ``folder``."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(sample_texts(), trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=None, eos_token="<|im_end|>",
                                   pad_token="<|endoftext|>", unk_token=None)
    fast.chat_template = CHATML
    fast.save_pretrained(folder)

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(fast), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                      eos_token_id=fast.eos_token_id, pad_token_id=fast.pad_token_id, bos_token_id=None,
                      tie_word_embeddings=True)
    model = LlamaForCausalLM(cfg)
    model.generation_config.eos_token_id = fast.eos_token_id
    model.generation_config.pad_token_id = fast.pad_token_id
    model.save_pretrained(folder)
    return folder


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
