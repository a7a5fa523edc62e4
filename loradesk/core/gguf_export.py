"""Export a run as one GGUF file (llama.cpp, Ollama, LM Studio), with an Ollama ``Modelfile`` beside it.

The adapter is folded into the base weights (:func:`loradesk.core.runs.merged_model`), then written with
the ``gguf`` package the way llama.cpp's ``convert_hf_to_gguf.py`` writes a llama-family model: its
hyperparameters, tensors renamed by ``gguf.get_tensor_name_map`` (with the query/key rows reordered for
llama.cpp's rotary embedding), the byte-level BPE tokenizer (tokens, types, merges, pre-tokenizer), the
special tokens and the chat template. Weights are f16 (as exact as f16 gets) or q8_0 (about half the size);
norms stay f32. The file is written to a temporary name and renamed at the end: stopped or failed, nothing
is left.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loradesk.core.fileio import atomic_path, atomic_write_text, remove_stale_temps, storage_errors_named

if TYPE_CHECKING:
    import numpy as np

QUANTS = ("f16", "q8_0")
#: transformers ``model_type`` values this exporter writes, with what users know them as.
SUPPORTED = {"llama": "LlamaForCausalLM (SmolLM2, TinyLlama, Llama 2 and other llama-family models)"}
MODELFILE = "Modelfile"

ProgressFn = Callable[[str, "float | None"], None]


class GgufExportError(RuntimeError):
    """The run cannot be exported as GGUF; the message says why (one line)."""


class ExportStopped(RuntimeError):
    """The export was stopped before it finished; nothing was written."""

    def __init__(self) -> None:
        super().__init__("GGUF export stopped: nothing was written")


@dataclass(frozen=True)
class GgufExport:
    """What :func:`export_gguf` wrote."""

    path: Path
    modelfile: Path
    quant: str
    size: int  # bytes of the .gguf file
    seconds: float
    notes: tuple[str, ...] = ()  # what the user should know (an untranslated chat template, ...)


def export_gguf(run_dir: Path, out_file: Path, quant: str = "f16", progress: ProgressFn | None = None,
                stop: threading.Event | None = None) -> GgufExport:
    """Merge the run's adapter into its base model and write ``out_file`` (GGUF) and an Ollama Modelfile.

    ``quant`` is ``"f16"`` or ``"q8_0"``. Only the llama family is supported; any other base model is
    refused before any work is done. ``progress(text, fraction)`` is called along the way; when ``stop``
    is set the export ends with :class:`ExportStopped` and leaves no file.
    """
    started = time.monotonic()
    run_dir, out_file = Path(run_dir), Path(out_file)
    if quant not in QUANTS:
        raise GgufExportError(f"unknown GGUF weight type {quant!r}: choose one of {', '.join(QUANTS)}")
    if out_file.is_dir():
        raise GgufExportError(f"{out_file} is a folder: give the path of the .gguf file to write")
    config = _check_supported(run_dir)

    def step(text: str, fraction: float | None = None) -> None:
        if stop is not None and stop.is_set():
            raise ExportStopped()
        if progress is not None:
            progress(text, fraction)

    from loradesk.core.runs import merged_model

    step("Merging the adapter into the base model…")
    model, tokenizer = merged_model(run_dir)
    step("Writing the GGUF file…", 0.0)
    tensors = dict(_gguf_tensors(model, config))
    remove_stale_temps(out_file.parent)
    with storage_errors_named(out_file), atomic_path(out_file) as tmp:
        writer = _writer(tmp, model.config, tokenizer, quant, run_dir)
        try:
            _write_tensors(writer, tensors, quant, step)
        finally:
            writer.close()
        step("Writing the GGUF file…", 1.0)
    template, notes = modelfile_text(out_file.name, tokenizer)
    modelfile = _modelfile_path(out_file)
    atomic_write_text(modelfile, template)
    return GgufExport(out_file, modelfile, quant, out_file.stat().st_size, time.monotonic() - started,
                      tuple(notes))


# --- what can be exported -------------------------------------------------------------------------------------
def _check_supported(run_dir: Path) -> Any:
    """The base model's config when this exporter supports it; else one clear line naming what is."""
    from transformers import AutoConfig

    from loradesk.core.runs import RunError, adapter_source, read_run

    info = read_run(run_dir)
    if adapter_source(run_dir) is None:
        raise RunError(f"{run_dir} holds no adapter yet")
    if not Path(info.base_model_dir, "config.json").is_file():
        raise GgufExportError(f"the run's base model is missing: {info.base_model_dir} has no config.json")
    config = AutoConfig.from_pretrained(info.base_model_dir)
    model_type = getattr(config, "model_type", "")
    if model_type not in SUPPORTED:
        arch = ", ".join(getattr(config, "architectures", None) or []) or model_type
        supported = "; ".join(SUPPORTED.values())
        raise GgufExportError(f"GGUF export supports the llama family only: {supported}. "
                              f"This run's base model is {arch} ({info.base_model_dir}).")
    rope = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {}
    if rope.get("rope_type", "default") not in ("default", "linear"):
        raise GgufExportError(f"GGUF export does not support the base model's rope scaling "
                              f"{rope.get('rope_type')!r} (supported: none, linear).")
    return config


# --- tensors -------------------------------------------------------------------------------------------------
def llama_permute(weights: np.ndarray, n_head: int, n_head_kv: int | None = None) -> np.ndarray:
    """Reorder the rows of a query (or key) projection from the Hugging Face layout to llama.cpp's.

    The same reordering as ``convert_hf_to_gguf.py``; transformers' GGUF loader undoes it.
    """
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return (weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
            .swapaxes(1, 2).reshape(weights.shape))


def _gguf_tensors(model: Any, config: Any) -> Iterator[tuple[str, np.ndarray]]:
    """``(gguf name, float32 array)`` for every weight of the merged model, in llama.cpp's layout."""
    import gguf
    import torch

    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, config.num_hidden_layers)
    n_head, n_kv = config.num_attention_heads, config.num_key_value_heads or config.num_attention_heads
    tied = bool(getattr(config, "tie_word_embeddings", False))
    for hf_name, tensor in model.state_dict().items():
        if tied and hf_name == "lm_head.weight":
            continue  # one copy: llama.cpp and transformers use the embeddings as the output layer
        name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise GgufExportError(f"no GGUF name for the model's tensor {hf_name!r}")
        data = tensor.detach().to(torch.float32).numpy()
        if ".self_attn.q_proj." in hf_name:
            data = llama_permute(data, n_head, n_head)
        elif ".self_attn.k_proj." in hf_name:
            data = llama_permute(data, n_head, n_kv)
        yield name, data


def _tensor_type(data: np.ndarray, quant: str) -> Any:
    """F32 for vectors (norms), else f16 or q8_0 (f16 when a row does not split into q8_0 blocks)."""
    import gguf

    kind = gguf.GGMLQuantizationType
    if data.ndim <= 1:
        return kind.F32
    if quant == "q8_0" and data.shape[-1] % gguf.GGML_QUANT_SIZES[kind.Q8_0][0] == 0:
        return kind.Q8_0
    return kind.F16


def _converted(data: np.ndarray, qtype: Any) -> np.ndarray:
    import gguf
    import numpy as np

    kind = gguf.GGMLQuantizationType
    if qtype == kind.F32:
        return data.astype(np.float32)
    if qtype == kind.F16:
        return data.astype(np.float16)
    return gguf.quants.quantize(data, qtype)


def _write_tensors(writer: Any, tensors: dict[str, np.ndarray], quant: str,
                   step: Callable[[str, float | None], None]) -> None:
    """Declare every tensor, write the header, then convert and write them one at a time."""
    import gguf
    import numpy as np

    types = {name: _tensor_type(data, quant) for name, data in tensors.items()}
    for name, data in tensors.items():
        qtype = types[name]
        nbytes = int(np.prod(gguf.quants.quant_shape_to_byte_shape(data.shape, qtype)))
        writer.add_tensor_info(name, data.shape, np.dtype(np.float32), nbytes, raw_dtype=qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    total = sum(data.size for data in tensors.values()) or 1
    done = 0
    for name, data in tensors.items():
        step("Writing the GGUF file…", done / total)
        try:
            writer.write_tensor_data(_converted(data, types[name]))
        except OSError as exc:
            _raise_reason(writer, exc)
        done += data.size
    for fh in writer.fout or ():
        fh.flush()


def _raise_reason(writer: Any, exc: OSError) -> None:
    """Re-raise a short write with its reason: numpy's ``tofile`` says only "N requested and M written", so
    one more byte is written through the file object, which raises the system's error (disk full, file too
    large) for :func:`storage_errors_named` to word."""
    if exc.errno is None:
        for fh in writer.fout or ():
            try:
                fh.write(b"\0")
                fh.flush()
            except OSError as reason:
                raise reason from exc
    raise exc


# --- metadata ------------------------------------------------------------------------------------------------
def _writer(path: Path, config: Any, tokenizer: Any, quant: str, run_dir: Path) -> Any:
    """A ``GGUFWriter`` for ``path`` holding the model's hyperparameters and tokenizer."""
    import gguf

    writer = gguf.GGUFWriter(path, gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.LLAMA])
    writer.add_type(gguf.GGUFType.MODEL)
    writer.add_name(run_dir.name)
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    rope = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {}
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads or config.num_attention_heads)
    writer.add_rope_freq_base(float(rope.get("rope_theta") or getattr(config, "rope_theta", 10000.0)))
    if rope.get("rope_type") == "linear":
        writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(float(rope["factor"]))
    writer.add_layer_norm_rms_eps(float(config.rms_norm_eps))
    writer.add_vocab_size(config.vocab_size)
    writer.add_rope_dimension_count(head_dim)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16 if quant == "f16" else gguf.LlamaFileType.MOSTLY_Q8_0)
    if quant != "f16":
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    _add_tokenizer(writer, tokenizer, config.vocab_size, run_dir)
    return writer


def _add_tokenizer(writer: Any, tokenizer: Any, vocab_size: int, run_dir: Path) -> None:
    """Tokens, their types, merges, pre-tokenizer, special tokens and chat template (a byte-level BPE)."""
    import tempfile

    import gguf

    backend = json.loads(tokenizer.backend_tokenizer.to_str())
    if backend.get("model", {}).get("type") != "BPE" or not _byte_level(backend):
        raise GgufExportError("GGUF export supports byte-level BPE tokenizers (GPT-2 style, as SmolLM2's); "
                              "this model's tokenizer is another kind")
    vocab = tokenizer.get_vocab()
    if max(vocab.values()) >= vocab_size:
        raise GgufExportError(f"the tokenizer has token ids beyond the model's vocabulary size {vocab_size}")
    by_id = {i: token for token, i in vocab.items()}
    added = tokenizer.added_tokens_decoder
    tokens, types = [], []
    for i in range(vocab_size):
        token = by_id.get(i)
        if token is None:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
        elif i in added:
            tokens.append(token)
            special = added[i].special or (token.startswith("<|") and token.endswith("|>"))
            types.append(gguf.TokenType.CONTROL if special else gguf.TokenType.USER_DEFINED)
        else:
            tokens.append(token)
            types.append(gguf.TokenType.NORMAL)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(_pre_tokenizer(backend, run_dir, len(tokens)))
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    with tempfile.TemporaryDirectory(prefix="loradesk-gguf-") as folder:
        tokenizer.save_pretrained(folder)  # SpecialVocab reads merges, special tokens and template from files
        gguf.SpecialVocab(folder, load_merges=True, n_vocab=vocab_size).add_to_gguf(writer, quiet=True)


def _byte_level(backend: dict[str, Any]) -> bool:
    return '"ByteLevel"' in json.dumps(backend.get("pre_tokenizer")) or \
        '"ByteLevel"' in json.dumps(backend.get("decoder"))


#: The split patterns llama.cpp knows, by the name its ``tokenizer.ggml.pre`` gives them.
_LLAMA3_SPLIT = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}"
_QWEN2_SPLIT = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}|"


def _pre_tokenizer(backend: dict[str, Any], run_dir: Path, n_tokens: int) -> str:
    """The name llama.cpp gives this tokenizer's way of splitting text before BPE (``tokenizer.ggml.pre``).

    A model that LoRA Desk converted from a GGUF file keeps that file's name (transformers rebuilds only
    some of them); otherwise it is read from the tokenizer's own pre-tokenizer.
    """
    source = _source_gguf_pre(run_dir, n_tokens)
    if source:
        return source
    pre = backend.get("pre_tokenizer") or {}
    parts = pre.get("pretokenizers", [pre]) if pre.get("type") == "Sequence" else [pre]
    kinds = [p.get("type") for p in parts]
    if kinds == ["ByteLevel"] and parts[0].get("use_regex", True):
        return "gpt-2"
    if kinds == ["Digits", "ByteLevel"] and parts[0].get("individual_digits"):
        return "smollm"
    if kinds and kinds[0] == "Split":
        pattern = str(parts[0].get("pattern", {}).get("Regex", ""))
        if pattern.startswith(_LLAMA3_SPLIT):
            return "llama-bpe"
        if pattern.startswith(_QWEN2_SPLIT):
            return "qwen2"
    return "default"


def _source_gguf_pre(run_dir: Path, n_tokens: int) -> str | None:
    """``tokenizer.ggml.pre`` of the GGUF file the run's base model was converted from (same vocabulary)."""
    import gguf

    from loradesk.core.models import MARKER
    from loradesk.core.runs import read_run

    try:
        marker = Path(read_run(run_dir).base_model_dir) / MARKER
        source = Path(json.loads(marker.read_text(encoding="utf-8"))["source"])
        fields = gguf.GGUFReader(source).fields
        if len(fields["tokenizer.ggml.tokens"].data) != n_tokens:
            return None
        return str(fields["tokenizer.ggml.pre"].contents())
    except (OSError, ValueError, KeyError, TypeError):
        return None


# --- the Ollama Modelfile ------------------------------------------------------------------------------------
_CHATML_TEMPLATE = """{{- range .Messages }}<|im_start|>{{ .Role }}
{{ .Content }}<|im_end|>
{{ end }}<|im_start|>assistant
"""
_DEFAULT_SYSTEM = re.compile(r"<\|im_start\|>system\\n(.+?)<\|im_end\|>")


def modelfile_text(gguf_name: str, tokenizer: Any) -> tuple[str, list[str]]:
    """An Ollama Modelfile for ``gguf_name`` (in the same folder), and notes for the user.

    A ChatML-style chat template (``<|im_start|>role ... <|im_end|>``, as SmolLM2's and Qwen's) is
    translated to Ollama's template language, with its default system prompt as ``SYSTEM``; for other
    templates Ollama picks one from the chat template stored in the GGUF file.
    """
    template = getattr(tokenizer, "chat_template", None) or ""
    if isinstance(template, dict):
        template = template.get("default", "")
    lines = [f"FROM ./{gguf_name}", ""]
    notes: list[str] = []
    stops: list[str] = []
    if "<|im_start|>" in template and "<|im_end|>" in template:
        lines += [f'TEMPLATE """{_CHATML_TEMPLATE}"""', ""]
        system = _DEFAULT_SYSTEM.search(template.replace("\n", "\\n"))
        if system and "{{" not in system.group(1):
            lines += [f'SYSTEM """{system.group(1).replace(chr(92) + "n", chr(10))}"""', ""]
        stops += ["<|im_end|>", "<|im_start|>"]
    else:
        lines += ["# The chat template is not ChatML-style: Ollama takes it from the GGUF file's metadata.", ""]
        notes.append("the chat template was not translated for Ollama (only ChatML-style templates are)")
    eos = getattr(tokenizer, "eos_token", None)
    if eos and eos not in stops:
        stops.append(eos)
    lines += [f'PARAMETER stop "{stop}"' for stop in stops]
    return "\n".join(lines) + "\n", notes


def _modelfile_path(out_file: Path) -> Path:
    """``Modelfile`` beside the GGUF file, unless one there belongs to another file: then ``NAME.Modelfile``."""
    plain = out_file.parent / MODELFILE
    try:
        first = plain.read_text(encoding="utf-8").splitlines()[:1]
    except (OSError, UnicodeDecodeError):
        first = None
    if first is None or first == [f"FROM ./{out_file.name}"]:
        return plain
    return out_file.parent / f"{out_file.stem}.{MODELFILE}"
