"""GGUF export on a tiny llama: the file reloads in transformers and answers like the merged model."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from loradesk.cli import main
from loradesk.core import runs
from loradesk.core.gguf_export import ExportStopped, GgufExportError, export_gguf, llama_permute, modelfile_text

DATA = Path(__file__).resolve().parents[2] / "data"
NEW_TOKENS = 12


def _write_run_file(run_dir: Path, base: Path) -> Path:
    from loradesk.core.config import RunConfig

    cfg = RunConfig().to_dict()
    cfg["model"].update(kind="local", name=str(base))
    (run_dir / runs.RUN_FILE).write_text(json.dumps({
        "created": "2026-12-01T10:00:00", "model": base.name, "base_model_dir": str(base), "config": cfg,
        "result": {"status": "completed", "steps": 1}}), encoding="utf-8")
    return run_dir


@pytest.fixture(scope="module")
def run_dir(lively_adapter: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run on the tiny llama whose base weights and (non-zero) LoRA on q_proj/v_proj make every prompt's answer
    its own: a mistake in the query/key layout or the merge changes the tokens."""
    model_dir, adapter_dir = lively_adapter
    run = tmp_path_factory.mktemp("gguf") / "run"
    shutil.copytree(adapter_dir, run)
    return _write_run_file(run, model_dir)


@pytest.fixture(scope="module")
def merged(run_dir: Path) -> tuple[Any, Any]:
    return runs.merged_model(run_dir)


@pytest.fixture(scope="module")
def f16_export(run_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    reports: list[tuple[str, float | None]] = []
    result = export_gguf(run_dir, tmp_path_factory.mktemp("out") / "tiny.gguf", "f16",
                         progress=lambda text, fraction: reports.append((text, fraction)))
    return SimpleNamespace(result=result, reports=reports)


def _reload(path: Path) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return (AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name),
            AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name))


def _prompts(tokenizer: Any, count: int = 4) -> list[Any]:
    """The first held-out questions, rendered as the app renders them (the chat template), as input ids."""
    from loradesk.core.tokenize import render_prompt

    questions = [row["prompt"] for row in json.loads((DATA / "sample_heldout.json").read_text("utf-8"))[:count]]
    return [tokenizer(render_prompt(tokenizer, q, True), return_tensors="pt", add_special_tokens=False)
            for q in questions]


def _greedy(model: Any, inputs: Any) -> list[int]:
    import torch

    with torch.inference_mode():
        out = model.generate(**inputs, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, do_sample=False,
                             pad_token_id=0)
    return out[0, inputs["input_ids"].shape[1]:].tolist()


def test_f16_gguf_reloads_and_answers_token_for_token_like_the_merged_model(f16_export, merged) -> None:
    import torch

    model, tokenizer = merged
    path = f16_export.result.path
    assert path.is_file() and f16_export.result.size == path.stat().st_size
    assert sorted(p.name for p in path.parent.iterdir()) == ["Modelfile", "tiny.gguf"]  # no temporary file left
    g_model, g_tokenizer = _reload(path)
    assert g_tokenizer.chat_template == tokenizer.chat_template
    assert g_tokenizer.eos_token == tokenizer.eos_token
    for ours, theirs in zip(_prompts(tokenizer), _prompts(g_tokenizer), strict=True):
        assert torch.equal(ours["input_ids"], theirs["input_ids"])
        answer = _greedy(model, ours)
        assert _greedy(g_model, theirs) == answer
        assert len(set(answer)) > 1  # a real answer, not one token repeated
    texts = [text for text, _ in f16_export.reports]
    assert texts[0].startswith("Merging") and "Writing the GGUF file…" in texts
    fractions = [f for _, f in f16_export.reports if f is not None]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0


def test_f16_gguf_metadata_is_what_llama_cpp_reads(f16_export, merged) -> None:
    import gguf

    model, tokenizer = merged
    fields = gguf.GGUFReader(f16_export.result.path).fields
    value = {name: fields[name].contents() for name in (
        "general.architecture", "general.file_type", "llama.block_count", "llama.embedding_length",
        "llama.attention.head_count", "llama.attention.head_count_kv", "llama.context_length",
        "llama.feed_forward_length", "llama.vocab_size", "tokenizer.ggml.model", "tokenizer.ggml.pre",
        "tokenizer.ggml.eos_token_id")}
    c = model.config
    assert value == {
        "general.architecture": "llama", "general.file_type": gguf.LlamaFileType.MOSTLY_F16,
        "llama.block_count": c.num_hidden_layers, "llama.embedding_length": c.hidden_size,
        "llama.attention.head_count": c.num_attention_heads, "llama.attention.head_count_kv": c.num_key_value_heads,
        "llama.context_length": c.max_position_embeddings, "llama.feed_forward_length": c.intermediate_size,
        "llama.vocab_size": c.vocab_size, "tokenizer.ggml.model": "gpt2", "tokenizer.ggml.pre": "gpt-2",
        "tokenizer.ggml.eos_token_id": tokenizer.eos_token_id}
    assert len(fields["tokenizer.ggml.merges"].data) > 0
    types = gguf.GGUFReader(f16_export.result.path).tensors
    assert {t.tensor_type.name for t in types if len(t.shape) == 2} == {"F16"}
    assert {t.tensor_type.name for t in types if len(t.shape) == 1} == {"F32"}


def test_the_permutation_is_the_one_transformers_undoes() -> None:
    import numpy as np
    from transformers.modeling_gguf_pytorch_utils import LlamaTensorProcessor

    weights = np.arange(96 * 3, dtype=np.float32).reshape(96, 3)
    processor = LlamaTensorProcessor(config={"num_attention_heads": 6, "num_key_value_heads": 2})
    for name, n_kv in (("blk.0.attn_q.weight", 6), ("blk.0.attn_k.weight", 2)):
        permuted = llama_permute(weights, 6, n_kv)
        assert not np.array_equal(permuted, weights)
        assert np.array_equal(processor.process(permuted, name).weights, weights)


def test_the_modelfile_has_the_template_and_the_stops(f16_export) -> None:
    text = f16_export.result.modelfile.read_text(encoding="utf-8")
    assert text.startswith("FROM ./tiny.gguf\n")
    assert "<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>" in text
    assert text.rstrip().endswith('PARAMETER stop "<|im_end|>"\nPARAMETER stop "<|im_start|>"')
    assert "SYSTEM" not in text  # the tiny model's template has no default system prompt


def test_a_default_system_prompt_becomes_system_and_other_templates_are_left_to_ollama() -> None:
    smol = ("{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
            "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM<|im_end|>\n' }}{% endif %}"
            "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}")
    text, notes = modelfile_text("m.gguf", SimpleNamespace(chat_template=smol, eos_token="<|im_end|>"))
    assert 'SYSTEM """You are a helpful AI assistant named SmolLM"""' in text and notes == []
    llama2 = "{% for m in messages %}[INST] {{ m['content'] }} [/INST]{% endfor %}"
    text, notes = modelfile_text("m.gguf", SimpleNamespace(chat_template=llama2, eos_token="</s>"))
    assert "TEMPLATE" not in text and 'PARAMETER stop "</s>"' in text
    assert notes == ["the chat template was not translated for Ollama (only ChatML-style templates are)"]


def test_q8_0_reloads_with_close_logits_and_is_smaller(run_dir: Path, merged, f16_export, tmp_path: Path) -> None:
    import torch

    model, tokenizer = merged
    result = export_gguf(run_dir, tmp_path / "tiny-q8.gguf", "q8_0")
    assert result.size < f16_export.result.size
    g_model, g_tokenizer = _reload(result.path)
    for ours_in, theirs_in in zip(_prompts(tokenizer, 2), _prompts(g_tokenizer, 2), strict=True):
        with torch.inference_mode():
            ours, theirs = model(**ours_in).logits[0], g_model(**theirs_in).logits[0]
        cosine = torch.nn.functional.cosine_similarity(ours, theirs, dim=-1)
        # 8-bit weights: close, not equal (this model's large random weights magnify the rounding)
        assert cosine.mean() > 0.98 and cosine.min() > 0.9, cosine
        assert (ours.argmax(-1) == theirs.argmax(-1)).float().mean() >= 0.75


def test_cli_writes_the_gguf_and_names_it(run_dir: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "cli.gguf"
    assert main(["export", str(run_dir), "--gguf", "--quant", "q8_0", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"GGUF (q8_0, {out.stat().st_size / 1e6:.1f} MB) written to {out}" in printed
    assert f"Ollama Modelfile: {tmp_path / 'Modelfile'}" in printed


def test_an_unsupported_architecture_gets_one_clear_line_before_any_work(tmp_path: Path, tiny_model_dir: Path,
                                                                        monkeypatch, capsys) -> None:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    base, run = tmp_path / "gpt2", tmp_path / "run"
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=len(tokenizer)))
    model.save_pretrained(base)
    get_peft_model(model, LoraConfig(r=2, target_modules=["c_attn"])).save_pretrained(run)
    tokenizer.save_pretrained(run)
    _write_run_file(run, base)
    monkeypatch.setattr(runs, "merged_model", lambda *a, **k: pytest.fail("the model was loaded"))
    out = tmp_path / "out"
    with pytest.raises(GgufExportError) as caught:
        export_gguf(run, out / "model.gguf")
    message = str(caught.value)
    assert "\n" not in message and "llama family" in message and "LlamaForCausalLM" in message
    assert "GPT2LMHeadModel" in message and str(base) in message
    assert not out.exists()
    capsys.readouterr()  # what building the models printed
    assert main(["export", str(run), "--gguf", "--out", str(out / "model.gguf")]) == 1
    assert capsys.readouterr().err == f"loradesk: error: {message}\n"


@pytest.mark.parametrize("how", ["stop flag", "Ctrl+C"])
def test_a_stopped_export_leaves_no_file_and_keeps_an_existing_one(run_dir: Path, tmp_path: Path, how: str) -> None:
    dest = tmp_path / "model.gguf"
    dest.write_bytes(b"the user's older export")
    stop = threading.Event()

    def progress(text: str, fraction: float | None) -> None:
        if fraction is not None and fraction > 0.3:  # half-way through the tensors
            if how == "Ctrl+C":
                raise KeyboardInterrupt
            stop.set()

    with pytest.raises(KeyboardInterrupt if how == "Ctrl+C" else ExportStopped):
        export_gguf(run_dir, dest, progress=progress, stop=stop)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.gguf"]
    assert dest.read_bytes() == b"the user's older export"


def test_bad_requests_are_refused_in_one_line(run_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(GgufExportError, match="unknown GGUF weight type 'q4_k': choose one of f16, q8_0"):
        export_gguf(run_dir, tmp_path / "m.gguf", "q4_k")
    folder = tmp_path / "folder"
    folder.mkdir()
    with pytest.raises(GgufExportError, match=f"^{folder} is a folder: give the path of the .gguf file to write$"):
        export_gguf(run_dir, folder)
    moved = tmp_path / "moved-run"
    shutil.copytree(run_dir, moved)
    _write_run_file(moved, tmp_path / "gone")
    with pytest.raises(GgufExportError, match=f"^the run's base model is missing: {tmp_path / 'gone'} has no "):
        export_gguf(moved, tmp_path / "m.gguf")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder", "moved-run"] and not any(folder.iterdir())


def test_a_file_that_cannot_be_written_is_one_line_naming_it_and_leaves_nothing(run_dir: Path, tmp_path: Path,
                                                                               capsys) -> None:
    """RLIMIT_FSIZE (SIGXFSZ ignored) makes the write fail with EFBIG part-way, as a full disk would."""
    import resource
    import signal

    dest = tmp_path / "model.gguf"
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, hard))
    try:
        code = main(["export", str(run_dir), "--gguf", "--out", str(dest)])
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, old_handler)
    assert code == 1
    err = capsys.readouterr().err.splitlines()
    assert err[-1] == f"loradesk: error: {dest}: file too large (a file size limit was reached)"
    assert err[:-1] == ["Merging the adapter into the base model…", "Writing the GGUF file…"]
    assert list(tmp_path.iterdir()) == []
