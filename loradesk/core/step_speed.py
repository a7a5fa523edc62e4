"""What makes a CPU training step cheaper without changing what it computes.

Three measures, each chosen by figures in docs/benchmarks.md ("A CPU step near the hardware"):

* **Frozen weights stored in bf16** (:func:`store_frozen_in_bf16`): under bf16 autocast every frozen Linear
  weight is cast to bf16 at every forward pass, and the copy is kept for the backward pass. Storing those weights
  in bf16 once gives bit-identical matmuls, half the weight memory and no per-step copies. Embeddings, norms and
  anything tied to the embeddings stay fp32, so the residual stream keeps its precision.
* **Logits only where the loss is** (:func:`loss_at_labels`): completion-only training has no loss on the prompt,
  yet a causal LM computes its vocabulary-wide head for every position. The hooks hand the head only the hidden
  states whose next token carries a label and compute the same token-mean cross entropy the model would.
* **Each layer input cast to bf16 once** (:func:`cast_inputs_once`): under autocast, a LoRA layer casts its fp32
  input for the frozen weight and again for the adapter, and q, k and v (or gate and up) each cast the same
  norm output: six copies of one tensor. The hooks make one bf16 copy per input tensor and hand it to all of
  them; the matmuls see the same bf16 values as before.
* **Batch lengths padded to a multiple of 16 on the CPU** (:func:`pad_multiple`): oneDNN builds and keeps
  kernels for every batch shape it meets (about 18 MiB each in bf16); rounding lengths up turns the sample's
  ~29 shapes into 4, for a few padding tokens per row.
* **Eager attention for short rows** (:func:`attention_for`): torch's CPU flash attention pays a fixed cost per
  call that dominates on rows of a few dozen tokens; plain matmul + softmax attention is faster there.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

IGNORE_INDEX = -100
EAGER_MAX_TOKENS = 512  # longest training row for which eager attention beats SDPA on the CPU


def pad_multiple(device: str) -> int | None:
    """What batch lengths are rounded up to: 8 on CUDA (tensor cores), 16 on the CPU (fewer kernel shapes)."""
    return {"cuda": 8, "cpu": 16}.get(device)


def attention_for(device: str, longest_row: int) -> str | None:
    """The attention implementation to train with: ``"eager"`` on the CPU for short rows, else the model's default."""
    return "eager" if device == "cpu" and 0 < longest_row <= EAGER_MAX_TOKENS else None


def store_frozen_in_bf16(model: Any) -> int:
    """Cast the weights (and biases) of ``model``'s Linear layers to bf16 in place, except a layer whose weight is
    shared with an embedding; returns how many bytes that saved. Call before the adapter is added.

    The tensors that stay fp32 are copied out of the weights file too: ``from_pretrained`` maps the file into
    memory, and while any tensor still points into it, every page the cast read stays resident (about the
    model's fp32 size, counted in the process's memory although it is only file cache).
    """
    import torch

    shared = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Embedding)}
    saved = 0
    for module in model.modules():
        if not isinstance(module, torch.nn.Linear) or id(module.weight) in shared:
            continue
        for name in ("weight", "bias"):
            param = getattr(module, name)
            if param is not None and param.dtype == torch.float32:
                saved += param.numel() * 2
                param.data = param.data.to(torch.bfloat16)
    for tensor in (*model.parameters(), *model.buffers()):
        if tensor.dtype != torch.bfloat16:
            tensor.data = tensor.data.clone()
    return saved


def asking_format(model: Any, device: str, half: Any = None) -> Any:
    """The autocast context in which to ask (generate with) a model that trains or has trained here: the run's
    half precision ``half`` (``torch.bfloat16`` / ``torch.float16``; None for fp32), and on the CPU bf16 whenever
    the model holds bf16 weights (:func:`store_frozen_in_bf16`), whose matmuls with fp32 inputs need autocast."""
    import torch

    if half is None and device == "cpu" and any(p.dtype == torch.bfloat16 for p in model.parameters()):
        half = torch.bfloat16
    return torch.autocast(device, dtype=half or torch.bfloat16, enabled=half is not None)


def loss_at_labels(model: Any) -> Callable[[], None]:
    """Hooks on ``model`` (the module the Trainer calls) so that a training forward pass with ``labels`` computes
    the LM head and the loss only at the positions whose next token is a label. Returns a function that removes
    the hooks. Evaluation (``model.eval()``) and calls without labels go the model's usual way.

    The loss is the one ``transformers`` computes (sum of token cross entropies over ``num_items_in_batch``, or
    their mean without it), so curves and gradient accumulation stay as they were.
    """
    import torch

    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    head = inner.get_output_embeddings() if hasattr(inner, "get_output_embeddings") else None
    if head is None:
        return lambda: None
    pending: dict[str, Any] = {}

    def before(module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        labels = kwargs.get("labels")
        if not module.training or labels is None or args or kwargs.get("logits_to_keep"):
            return None
        kwargs = dict(kwargs)
        del kwargs["labels"]
        targets = labels[:, 1:]
        keep = targets != IGNORE_INDEX
        pending.update(keep=keep, targets=targets[keep], items=kwargs.pop("num_items_in_batch", None))
        return args, kwargs

    def select(module: Any, args: tuple[Any, ...]) -> Any:
        keep = pending.get("keep")
        if keep is None:
            return None
        hidden = args[0]
        return (hidden[:, :-1][keep], *args[1:])

    def after(module: Any, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any) -> Any:
        if "keep" not in pending:
            return None
        targets, items = pending["targets"], pending["items"]
        pending.clear()
        logits = output["logits"] if isinstance(output, dict) else output[0]
        loss = torch.nn.functional.cross_entropy(logits.float(), targets, reduction="sum")
        denominator = items if items is not None else max(1, targets.numel())
        if torch.is_tensor(denominator):
            denominator = denominator.to(loss.device)
        output["loss"] = loss / denominator
        return output

    handles = [model.register_forward_pre_hook(before, with_kwargs=True),
               head.register_forward_pre_hook(select),
               model.register_forward_hook(after, with_kwargs=True)]

    def remove() -> None:
        for handle in handles:
            handle.remove()
        pending.clear()

    return remove


def cast_inputs_once(model: Any, dtype: Any = None) -> Callable[[], None]:
    """Under CPU autocast, give every LoRA layer of ``model`` its input already cast to the autocast dtype, one
    copy per input tensor shared by the layers that read it (and by each layer's frozen and adapter halves).
    Returns a function that removes the hooks and restores peft's own input casting."""
    import torch

    layers = [m for m in model.modules() if hasattr(m, "cast_input_dtype_enabled") and hasattr(m, "base_layer")]

    def before(module: Any, args: tuple[Any, ...]) -> Any:
        if not args or not torch.is_autocast_enabled("cpu"):
            return None
        x = args[0]
        if not torch.is_tensor(x) or x.dtype != torch.float32:
            return None
        target = dtype or torch.get_autocast_dtype("cpu")
        cast = getattr(x, "_loradesk_cast", None)
        if cast is None or cast.dtype != target:
            cast = x.to(target)
            x._loradesk_cast = cast  # lives as long as the input tensor; no reference back to it
        return (cast, *args[1:])

    handles = [layer.register_forward_pre_hook(before) for layer in layers]
    for layer in layers:
        layer.cast_input_dtype_enabled = False

    def remove() -> None:
        for handle in handles:
            handle.remove()
        for layer in layers:
            layer.cast_input_dtype_enabled = True

    return remove
