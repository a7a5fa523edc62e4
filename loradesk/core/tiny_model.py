"""Tiny random-weight models for smoke tests and benchmarks: real transformers parts, built in seconds.

``build_tiny_model`` writes a normal Hugging Face folder (a 2-layer, hidden-64 ``LlamaForCausalLM``, a
byte-level BPE tokenizer trained on the given texts, and a ChatML chat template), so every step LoRA Desk
takes with a real model — tokenize, LoRA, train, save, load, generate — runs on it offline.

``build_family_model`` does the same for the families users scale up to (:data:`FAMILIES`: Llama 3,
Qwen2, Mistral, Gemma, Phi-3), each from its transformers config class, with its own special tokens, end
of turn tokens and its instruct models' chat template (Gemma's and Mistral's refuse a system message;
Qwen2's adds a default one; Phi-3 fuses its projections into ``qkv_proj`` and ``gate_up_proj``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content']"
    " + '<|im_end|>' + '\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# The chat templates of the families' instruct models, as their tokenizer_config.json files ship them.
LLAMA3_TEMPLATE = (  # Meta-Llama-3-8B-Instruct
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
    "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}"
    "{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)
QWEN2_TEMPLATE = (  # Qwen1.5-1.8B-Chat, Qwen2-*-Instruct: ChatML with a default system prompt
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
MISTRAL_TEMPLATE = (  # Mistral-7B-Instruct-v0.1/v0.2: user and assistant only, alternating
    "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}"
    "{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}"
)
GEMMA_TEMPLATE = (  # gemma-7b-it, gemma-2-*-it: no system role, "model" for the assistant
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
    "{% endif %}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if (message['role'] == 'assistant') %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}"
    "{% endif %}{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{'<start_of_turn>model\n'}}{% endif %}"
)
PHI3_TEMPLATE = (  # Phi-3-mini-4k-instruct
    "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'system') %}"
    "{{'<|system|>' + '\n' + message['content'] + '<|end|>' + '\n'}}{% elif (message['role'] == 'user') %}"
    "{{'<|user|>' + '\n' + message['content'] + '<|end|>' + '\n' + '<|assistant|>' + '\n'}}"
    "{% elif message['role'] == 'assistant' %}{{message['content'] + '<|end|>' + '\n'}}{% endif %}{% endfor %}"
)

#: The size every tiny model shares: seconds to build and to train a few steps on a CPU.
TINY_SIZE: dict[str, Any] = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
                             "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 512}


@dataclass(frozen=True)
class Family:
    """A model family as a tiny model of it is built: its config class and extra settings, its tokenizer's
    special tokens and its instruct models' chat template."""

    name: str  # transformers' model_type
    label: str  # what users call it
    config_class: str  # the transformers config class
    template: str
    eos: str  # the tokenizer's EOS token
    bos: str | None = None
    pad: str | None = None  # None: none (LoRA Desk pads with the EOS token then)
    stops: tuple[str, ...] = ()  # the end-of-turn tokens generation stops at (generation_config.eos_token_id)
    extra_specials: tuple[str, ...] = ()
    settings: dict[str, Any] = field(default_factory=dict)  # config settings beyond TINY_SIZE

    @property
    def specials(self) -> list[str]:
        tokens = [self.bos, self.eos, self.pad, *self.stops, *self.extra_specials]
        return list(dict.fromkeys(t for t in tokens if t))


#: The families users fine-tune at scale, keyed by transformers' ``model_type``.
FAMILIES: dict[str, Family] = {f.name: f for f in (
    Family("llama", "Llama 3", "LlamaConfig", LLAMA3_TEMPLATE, eos="<|eot_id|>", bos="<|begin_of_text|>",
           stops=("<|end_of_text|>", "<|eot_id|>"), extra_specials=("<|start_header_id|>", "<|end_header_id|>"),
           settings={"tie_word_embeddings": False}),
    Family("qwen2", "Qwen2 (Qwen1.5 chat)", "Qwen2Config", QWEN2_TEMPLATE, eos="<|im_end|>", pad="<|endoftext|>",
           stops=("<|endoftext|>", "<|im_end|>"), extra_specials=("<|im_start|>",),
           settings={"tie_word_embeddings": False, "use_sliding_window": False}),
    Family("mistral", "Mistral", "MistralConfig", MISTRAL_TEMPLATE, eos="</s>", bos="<s>", stops=("</s>",),
           extra_specials=("<unk>",), settings={"tie_word_embeddings": False, "sliding_window": 256}),
    Family("gemma", "Gemma", "GemmaConfig", GEMMA_TEMPLATE, eos="<eos>", bos="<bos>", pad="<pad>",
           stops=("<eos>", "<end_of_turn>"), extra_specials=("<start_of_turn>",),
           settings={"head_dim": 16, "hidden_act": "gelu_pytorch_tanh", "tie_word_embeddings": True}),
    Family("phi3", "Phi-3", "Phi3Config", PHI3_TEMPLATE, eos="<|endoftext|>", bos="<s>", pad="<|endoftext|>",
           stops=("<|endoftext|>", "<|assistant|>", "<|end|>"), extra_specials=("<|system|>", "<|user|>"),
           settings={"original_max_position_embeddings": 512, "tie_word_embeddings": False}),
)}


def build_tokenizer(texts: Sequence[str], vocab_size: int = 512, *, specials: Sequence[str] = (),
                    bos: str | None = None, eos: str = "<|im_end|>", pad: str | None = "<|endoftext|>",
                    template: str = CHATML) -> Any:
    """A byte-level BPE tokenizer trained on ``texts``, with ChatML special tokens and template by default
    (``specials``, ``bos``, ``eos``, ``pad`` and ``template`` make another family's)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokens = list(specials) or ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=tokens, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(list(texts), trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=bos, eos_token=eos, pad_token=pad,
                                   unk_token=None)
    fast.chat_template = template
    return fast


def build_tiny_model(folder: Path, texts: Sequence[str], vocab_size: int = 512, seed: int = 0) -> Path:
    """Write a tiny random Llama model and its tokenizer (ChatML template) to ``folder``; returns ``folder``."""
    from transformers import LlamaConfig, LlamaForCausalLM

    fast = build_tokenizer(texts, vocab_size)
    cfg = LlamaConfig(vocab_size=len(fast), **TINY_SIZE, eos_token_id=fast.eos_token_id,
                      pad_token_id=fast.pad_token_id, bos_token_id=None, tie_word_embeddings=True)
    return _save(Path(folder), fast, LlamaForCausalLM, cfg, [fast.eos_token_id], seed)


def build_family_model(folder: Path, family: str, texts: Sequence[str], vocab_size: int = 512,
                       seed: int = 0) -> Path:
    """Write a tiny random model of ``family`` (a key of :data:`FAMILIES`) and its tokenizer to ``folder``."""
    import transformers
    from transformers import AutoModelForCausalLM

    if family not in FAMILIES:
        raise ValueError(f"unknown model family {family!r}: choose one of {', '.join(FAMILIES)}")
    fam = FAMILIES[family]
    fast = build_tokenizer(texts, vocab_size, specials=fam.specials, bos=fam.bos, eos=fam.eos, pad=fam.pad,
                           template=fam.template)
    ids = fast.convert_tokens_to_ids
    config_class = getattr(transformers, fam.config_class)
    cfg = config_class(vocab_size=len(fast), **{**TINY_SIZE, **fam.settings},
                       bos_token_id=ids(fam.bos) if fam.bos else None, eos_token_id=fast.eos_token_id,
                       pad_token_id=ids(fam.pad) if fam.pad else None)
    stops = [ids(t) for t in fam.stops] or [fast.eos_token_id]
    return _save(Path(folder), fast, AutoModelForCausalLM.from_config, cfg, stops, seed)


def _save(folder: Path, tokenizer: Any, make: Any, config: Any, stops: list[int], seed: int) -> Path:
    """Build the model from ``config`` with seeded random weights and save it with ``tokenizer``."""
    import torch

    tokenizer.save_pretrained(folder)
    torch.manual_seed(seed)
    model = make(config)
    model.generation_config.eos_token_id = stops if len(stops) > 1 else stops[0]
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(folder)
    return folder
