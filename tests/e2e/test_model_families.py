"""The model families users scale up to, end to end through the CLI on tiny random-weight models.

Llama 3, Qwen2, Mistral, Gemma and Phi-3 (built from their transformers config classes, with their instruct
models' chat templates) each train a few steps with ``loradesk train``, answer with ``loradesk ask`` and
``loradesk eval`` (base and tuned, checked against plain transformers + peft), and export with
``loradesk export --merged`` (and ``--gguf`` where the exporter supports the family; a clear refusal
elsewhere). Target modules are discovered per family (Phi-3's fused ``qkv_proj`` / ``gate_up_proj``) and are
the ones in the adapter. Templates without a system role (Gemma, Mistral) get the system prompt at the start
of the first user message. GPT-2's ``Conv1D`` layers are adapted too, and a family that cannot generate text
is refused in one line.
"""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path
from typing import Any

import pytest

from loradesk.cli import main, side_by_side
from loradesk.core import models, system_role, tokenize
from loradesk.core.conversation import Turn
from loradesk.core.dataset import Example
from loradesk.core.generation import contains_phrase
from loradesk.core.tiny_model import CHATML, FAMILIES, build_family_model, build_tokenizer

ROOT = Path(__file__).resolve().parents[2]
ATTENTION_MLP = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
TARGETS = {"llama": ATTENTION_MLP, "qwen2": ATTENTION_MLP, "mistral": ATTENTION_MLP, "gemma": ATTENTION_MLP,
           "phi3": ["o_proj", "qkv_proj", "gate_up_proj", "down_proj"]}
ARCHITECTURES = {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM", "mistral": "MistralForCausalLM",
                 "gemma": "GemmaForCausalLM", "phi3": "Phi3ForCausalLM"}
NO_SYSTEM_ROLE = {"gemma", "mistral"}
SYSTEM = "You are the archivist of Vaelmoor."
QUESTION = "Who is Tamsin Quillfeather?"


def training_rows() -> list[dict[str, str]]:
    """Eight sample pairs, every other one with a system prompt."""
    rows = json.loads((ROOT / "data" / "sample.json").read_text(encoding="utf-8"))[:8]
    return [{**row, "system": SYSTEM} if n % 2 == 0 else row for n, row in enumerate(rows)]


@pytest.fixture(scope="module")
def family_models(tmp_path_factory: pytest.TempPathFactory, tiny_texts: list[str]) -> dict[str, Path]:
    """One tiny model folder per family, built once for the module."""
    texts = [*tiny_texts, SYSTEM]
    folder = tmp_path_factory.mktemp("families")
    return {name: build_family_model(folder / name, name, texts) for name in FAMILIES}


@pytest.fixture(scope="module")
def data_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("family-data") / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in training_rows()), encoding="utf-8")
    return path


def logits(model: Any, tokenizer: Any, text: str) -> Any:
    import torch

    with torch.inference_mode():
        return model(**tokenizer(text, return_tensors="pt", add_special_tokens=False)).logits


@pytest.mark.parametrize("family", list(FAMILIES))
def test_family_trains_answers_and_exports_through_the_cli(family: str, family_models: dict[str, Path],
                                                           data_file: Path, tmp_path: Path, capsys,
                                                           monkeypatch, reference_answer) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model_dir, run = family_models[family], tmp_path / "run"
    assert models.discover_target_modules(model_dir) == TARGETS[family]

    assert main(["train", str(data_file), "--model", str(model_dir), "--max-steps", "6", "--batch-size", "4",
                 "--lr", "0.01", "--out", str(run)]) == 0
    out = capsys.readouterr()
    assert "Completed: 6 steps" in out.out, out.err[-2000:]
    adapter = json.loads((run / "adapter_config.json").read_text(encoding="utf-8"))
    assert sorted(adapter["target_modules"]) == sorted(TARGETS[family])
    losses = [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines()
              if '"loss"' in line]
    assert losses and losses[-1] < losses[0], losses
    assert ("has no system role" in out.err) == (family in NO_SYSTEM_ROLE), out.err[-2000:]

    monkeypatch.setenv("COLUMNS", "100")  # side_by_side's width
    assert main(["ask", "--adapter", str(run), "--max-new-tokens", "6", QUESTION]) == 0
    base = reference_answer(model_dir, QUESTION, 6)
    tuned = reference_answer(model_dir, QUESTION, 6, adapter_dir=run)
    assert side_by_side("Base model", base, "Tuned model", tuned, 100) in capsys.readouterr().out

    heldout = tmp_path / "heldout.jsonl"  # the tuned answer's first word is expected: eval must find it
    expected = (tuned.split() or ["Vaelmoor"])[0]
    heldout.write_text(json.dumps({"prompt": QUESTION, "expected": expected}) + "\n", encoding="utf-8")
    assert main(["eval", "--adapter", str(run), "--heldout", str(heldout), "--max-new-tokens", "6"]) == 0
    assert textwrap.indent(textwrap.fill(f"tuned: {tuned}", 100), "      ") in capsys.readouterr().out
    score = json.loads((run / "loradesk_run.json").read_text(encoding="utf-8"))["score_detail"]
    assert score["total"] == 1 and score["tuned"] == int(contains_phrase(tuned, expected))

    merged_dir = tmp_path / "merged"
    assert main(["export", str(run), "--out", str(merged_dir), "--merged"]) == 0
    merged = AutoModelForCausalLM.from_pretrained(merged_dir, dtype=torch.float32)
    assert type(merged).__name__ == ARCHITECTURES[family]
    assert not any("lora" in name for name in merged.state_dict())
    tokenizer = AutoTokenizer.from_pretrained(merged_dir)
    assert tokenizer.chat_template == FAMILIES[family].template and tokenizer.eos_token == FAMILIES[family].eos
    prompt = tokenize.render_prompt(tokenizer, QUESTION)
    base_model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    base_logits = logits(base_model, tokenizer, prompt)
    tuned_logits = logits(PeftModel.from_pretrained(base_model, str(run)), tokenizer, prompt)
    merged_logits = logits(merged, tokenizer, prompt)
    assert torch.allclose(merged_logits, tuned_logits, atol=1e-4)
    assert not torch.allclose(merged_logits, base_logits, atol=1e-3)  # training changed the model

    gguf = tmp_path / "model.gguf"
    code = main(["export", str(run), "--out", str(gguf), "--gguf"])
    err = capsys.readouterr().err
    if family == "llama":  # the file reloads (untied output layer, Llama 3 template) and computes the same
        assert code == 0, err
        g_model = AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file=gguf.name, dtype=torch.float32)
        g_tokenizer = AutoTokenizer.from_pretrained(tmp_path, gguf_file=gguf.name)
        assert g_tokenizer.chat_template == tokenizer.chat_template
        assert g_tokenizer(prompt, add_special_tokens=False)["input_ids"] == \
            tokenizer(prompt, add_special_tokens=False)["input_ids"]
        assert torch.allclose(logits(g_model, g_tokenizer, prompt), merged_logits, atol=2e-3)
    else:
        assert code == 1 and not gguf.exists()
        assert err.count("\n") == 1 and "GGUF export supports the llama family only" in err
        assert ARCHITECTURES[family] in err


@pytest.mark.parametrize("family", list(FAMILIES))
def test_system_prompt_and_conversations_through_each_template(family: str, family_models: dict[str, Path]) -> None:
    """A pair and a two-question conversation with a system prompt: the system text reaches the model (in
    the first user message for a template without a system role) and only the answers carry loss."""
    tokenizer = models.load_tokenizer(family_models[family])
    assert system_role.has_system_role(tokenizer) == (family not in NO_SYSTEM_ROLE)

    pair = Example("Who is Tamsin?", "A cartographer.", system=SYSTEM)
    prompt = tokenize.render_prompt(tokenizer, pair)
    assert prompt.count(SYSTEM) == 1
    if family in NO_SYSTEM_ROLE:
        assert f"{SYSTEM}\n\nWho is Tamsin?" in prompt

    turns = (Turn("user", "Who is Tamsin?"), Turn("assistant", "A cartographer."),
             Turn("user", "Where from?"), Turn("assistant", "Vaelmoor."))
    encoded = tokenize.encode(tokenizer, Example.conversation(turns, SYSTEM), 512)
    trained = tokenizer.decode([t for t in encoded.labels if t != tokenize.IGNORE_INDEX])
    text = tokenizer.decode(encoded.input_ids)
    assert SYSTEM in text and "Who is Tamsin?" in text and "Where from?" in text
    assert "A cartographer." in trained and "Vaelmoor." in trained
    assert SYSTEM not in trained and "Where from?" not in trained
    assert trained.rstrip().endswith(tokenizer.eos_token)


def test_a_template_that_drops_the_system_message_gets_it_folded(tiny_model_dir: Path) -> None:
    tokenizer = models.load_tokenizer(tiny_model_dir)
    tokenizer.chat_template = ("{% for m in messages %}{% if m['role'] != 'system' %}<{{ m['role'] }}>"
                               "{{ m['content'] }}</s>{% endif %}{% endfor %}{% if add_generation_prompt %}"
                               "<assistant>{% endif %}")
    assert not system_role.has_system_role(tokenizer)
    prompt = tokenize.render_prompt(tokenizer, Example("Hi?", "Hello.", system="Be brief."))
    assert prompt == "<user>Be brief.\n\nHi?</s><assistant>"
    note = system_role.folded_note(tokenizer, [Example("a", "b"), Example("c", "d", system="Be brief.")])
    assert note is not None and "1 row (row 2 first)" in note


def test_a_template_that_refuses_a_pair_names_the_row(tiny_model_dir: Path, tmp_path: Path, capsys) -> None:
    """A template's own refusal (jinja's raise_exception) of one pair is one line naming the row, not a
    traceback; nothing is trained."""
    from transformers import AutoTokenizer

    model_dir, data, run = tmp_path / "model", tmp_path / "rows.jsonl", tmp_path / "run"
    shutil.copytree(tiny_model_dir, model_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tokenizer.chat_template = ("{% for m in messages %}{% if 'Vaelmoor' in m['content'] %}"
                               "{{ raise_exception('no place names') }}{% endif %}{% endfor %}" + CHATML)
    tokenizer.save_pretrained(model_dir)
    rows = [{"prompt": "Who?", "completion": "Tamsin."}, {"prompt": "Where?", "completion": "Vaelmoor."}]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    assert main(["train", str(data), "--model", str(model_dir), "--max-steps", "1", "--out", str(run)]) == 1
    err = capsys.readouterr().err
    assert err.endswith("loradesk: error: Row 2: the chat template refuses these messages (no place names)\n"), err
    assert not (run / "adapter_model.safetensors").exists()


def test_gpt2_conv1d_layers_are_found_trained_and_merged(tmp_path: Path, data_file: Path, tiny_texts: list[str],
                                                        capsys) -> None:
    """GPT-2's attention and MLP are transposed Conv1D layers, not Linear ones: they are the targets, and the
    merged model computes what the adapter on the base model does."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, GPT2Config, GPT2LMHeadModel

    model_dir, run, merged_dir = tmp_path / "gpt2", tmp_path / "run", tmp_path / "merged"
    tokenizer = build_tokenizer(tiny_texts)
    tokenizer.save_pretrained(model_dir)
    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=64, n_head=4, n_positions=512, vocab_size=len(tokenizer),
                               eos_token_id=tokenizer.eos_token_id)).save_pretrained(model_dir)
    assert models.discover_target_modules(model_dir) == ["c_attn", "c_proj", "c_fc"]

    assert main(["train", str(data_file), "--model", str(model_dir), "--max-steps", "2", "--batch-size", "4",
                 "--lr", "0.01", "--out", str(run)]) == 0
    adapter = json.loads((run / "adapter_config.json").read_text(encoding="utf-8"))
    assert sorted(adapter["target_modules"]) == ["c_attn", "c_fc", "c_proj"]
    assert main(["export", str(run), "--out", str(merged_dir), "--merged"]) == 0
    capsys.readouterr()
    prompt = tokenize.render_prompt(tokenizer, QUESTION)
    base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    tuned_logits = logits(PeftModel.from_pretrained(base, str(run)), tokenizer, prompt)
    merged = AutoModelForCausalLM.from_pretrained(merged_dir, dtype=torch.float32)
    assert torch.allclose(logits(merged, tokenizer, prompt), tuned_logits, atol=1e-4)


def test_a_family_that_cannot_generate_text_is_refused_in_one_line(tmp_path: Path, data_file: Path,
                                                                   tiny_texts: list[str], capsys) -> None:
    from transformers import T5Config

    model_dir = tmp_path / "t5"
    build_tokenizer(tiny_texts).save_pretrained(model_dir)
    T5Config(d_model=32, d_ff=64, num_layers=1, num_heads=2, vocab_size=600,
             architectures=["T5ForConditionalGeneration"]).save_pretrained(model_dir)
    with pytest.raises(models.ModelError) as caught:
        models.discover_target_modules(model_dir)
    message = str(caught.value)
    assert "\n" not in message and "T5ForConditionalGeneration model (t5)" in message
    assert "cannot run as a text generator" in message and str(model_dir) in message

    run = tmp_path / "run"
    assert main(["train", str(data_file), "--model", str(model_dir), "--max-steps", "2", "--out", str(run)]) == 1
    assert capsys.readouterr().err.endswith(f"loradesk: error: {message}\n")
    assert not (run / "adapter_model.safetensors").exists()
