"""The CPU step's shortcuts compute what the plain step computes (core/step_speed.py)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM

from loradesk.core import step_speed


def _lora(model_dir: Path, bf16: bool = False, **load: object) -> torch.nn.Module:
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, **load)
    if bf16:
        step_speed.store_frozen_in_bf16(model)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "up_proj"], init_lora_weights=False)
    return get_peft_model(model, config)


def _batch() -> dict[str, torch.Tensor]:
    """Two rows of different lengths, right-padded; loss only on each row's answer part."""
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(5, 400, (2, 12), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 9:] = 0
    labels = ids.clone()
    labels[0, :7] = -100  # prompt of row 1
    labels[1, :4] = -100  # prompt of row 2
    labels[mask == 0] = -100
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def _loss_and_grads(model: torch.nn.Module, batch: dict[str, torch.Tensor],
                    **extra: object) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    model.zero_grad(set_to_none=True)
    loss = model(**batch, **extra)["loss"]
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("items", [None, 9])
def test_loss_at_labels_matches_the_models_own_loss_and_gradients(tiny_model_dir: Path, items: int | None) -> None:
    model = _lora(tiny_model_dir)
    model.train()
    batch = _batch()
    extra = {"num_items_in_batch": torch.tensor(items)} if items else {}
    plain_loss, plain_grads = _loss_and_grads(model, batch, **extra)

    remove = step_speed.loss_at_labels(model)
    seen: list[tuple[int, ...]] = []
    head = model.get_base_model().get_output_embeddings()
    watch = head.register_forward_pre_hook(lambda _m, args: seen.append(tuple(args[0].shape)))
    fast_loss, fast_grads = _loss_and_grads(model, batch, **extra)

    trained = int((batch["labels"][:, 1:] != -100).sum())
    assert seen == [(trained, head.in_features)]  # the head saw only the positions that carry loss
    assert trained < batch["input_ids"].numel() / 2
    torch.testing.assert_close(fast_loss, plain_loss, rtol=1e-5, atol=1e-6)
    assert fast_grads.keys() == plain_grads.keys()
    for name, grad in plain_grads.items():
        torch.testing.assert_close(fast_grads[name], grad, rtol=1e-4, atol=1e-6, msg=name)

    remove()
    seen.clear()
    again, _ = _loss_and_grads(model, batch, **extra)
    assert seen[0][:2] == tuple(batch["input_ids"].shape)  # hooks gone: the whole sequence again
    torch.testing.assert_close(again, plain_loss)
    watch.remove()


def test_loss_at_labels_leaves_evaluation_and_generation_alone(tiny_model_dir: Path) -> None:
    model = _lora(tiny_model_dir)
    step_speed.loss_at_labels(model)
    batch = _batch()
    model.eval()
    with torch.no_grad():
        out = model(**batch)
    assert out.logits.shape == (*batch["input_ids"].shape, model.config.vocab_size)
    assert torch.isfinite(out.loss)
    model.train()
    with torch.no_grad():
        unlabelled = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    assert unlabelled.logits.shape == out.logits.shape and unlabelled.loss is None


def test_bf16_storage_changes_no_autocast_result_and_halves_the_linear_weights(tiny_model_dir: Path) -> None:
    plain = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    stored = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    linear_bytes = sum(m.weight.numel() * 4 for m in plain.modules() if isinstance(m, torch.nn.Linear)
                       and m is not plain.get_output_embeddings())
    saved = step_speed.store_frozen_in_bf16(stored)

    head = stored.get_output_embeddings()
    tied = head.weight is stored.get_input_embeddings().weight
    assert saved == linear_bytes // 2 + (0 if tied else head.weight.numel() * 2)
    assert stored.model.layers[0].self_attn.q_proj.weight.dtype == torch.bfloat16
    assert stored.get_input_embeddings().weight.dtype == torch.float32  # the residual stream stays fp32
    assert stored.model.norm.weight.dtype == torch.float32
    batch = _batch()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        a = plain(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        b = stored(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    assert torch.equal(a, b)  # autocast casts fp32 weights to bf16 the same way

    # asking the stored model: bf16 autocast, found from its weights, gives the plain model's answer under autocast
    with torch.no_grad(), step_speed.asking_format(stored, "cpu"):
        assert torch.equal(stored(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits, b)
    with pytest.raises(RuntimeError):  # without it, fp32 inputs meet bf16 weights
        stored(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    with step_speed.asking_format(plain, "cpu"):
        assert not torch.is_autocast_enabled("cpu")  # an fp32 model is asked in fp32...
    with step_speed.asking_format(plain, "cpu", torch.bfloat16):
        assert torch.is_autocast_enabled("cpu")  # ... unless its run trains in bf16


def test_tied_head_stays_fp32(tiny_model_dir: Path) -> None:
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    model.get_output_embeddings().weight = model.get_input_embeddings().weight
    step_speed.store_frozen_in_bf16(model)
    assert model.get_output_embeddings().weight.dtype == torch.float32
    assert model.model.layers[0].mlp.down_proj.weight.dtype == torch.bfloat16


def test_eager_attention_only_for_short_rows_on_the_cpu(tiny_model_dir: Path) -> None:
    assert step_speed.attention_for("cpu", 72) == "eager"
    assert step_speed.attention_for("cpu", step_speed.EAGER_MAX_TOKENS + 1) is None
    assert step_speed.attention_for("cuda", 72) is None
    eager = _lora(tiny_model_dir, attn_implementation="eager")
    sdpa = _lora(tiny_model_dir, attn_implementation="sdpa")
    batch = _batch()
    with torch.no_grad():
        torch.testing.assert_close(eager(**batch).loss, sdpa(**batch).loss, rtol=1e-4, atol=1e-5)


def _casts(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[int, torch.Tensor]:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof, torch.autocast("cpu", dtype=torch.bfloat16):
        loss = model(**batch)["loss"]
    return sum(e.count for e in prof.key_averages() if e.key == "aten::_to_copy"), loss.detach()


def test_cast_inputs_once_shares_one_bf16_copy_and_keeps_the_result(tiny_model_dir: Path) -> None:
    model = _lora(tiny_model_dir, bf16=True)
    assert model.base_model.model.model.layers[0].self_attn.q_proj.lora_A["default"].weight.dtype == torch.float32
    batch = _batch()
    before, plain = _casts(model, batch)
    remove = step_speed.cast_inputs_once(model)
    after, once = _casts(model, batch)
    assert after < before
    torch.testing.assert_close(once, plain)  # the matmuls saw the same bf16 values
    remove()
    assert _casts(model, batch)[0] == before
    assert all(m.cast_input_dtype_enabled for m in model.modules() if hasattr(m, "cast_input_dtype_enabled"))


def test_a_compiled_run_trains_and_saves_an_adapter_that_loads(tiny_model_dir: Path, tmp_path: Path) -> None:
    from peft import PeftModel

    from loradesk.core import training
    from loradesk.core.config import RunConfig
    from loradesk.core.dataset import Example

    cfg = RunConfig()
    cfg.model.kind, cfg.model.name = "local", str(tiny_model_dir)
    cfg.training.max_steps, cfg.training.batch_size, cfg.training.compile = 4, 4, True
    cfg.training.preflight, cfg.training.save_steps = False, 0
    rows = [Example(f"What is fact number {n}?", f"Fact {n} is {'abc'[n % 3] * (n % 5 + 1)}.") for n in range(16)]
    logs: list[str] = []

    class Sink(training.NullSink):
        def log(self, text: str) -> None:
            logs.append(text)

    from torch._dynamo.utils import counters

    counters.clear()
    result = training.run(cfg, rows, Sink(), runs_dir=tmp_path)
    assert result.status == "completed" and result.steps == 4
    assert counters["stats"]["unique_graphs"] >= 1  # the steps ran through compiled graphs
    assert any("Compiling the model" in line for line in logs)
    losses = [json.loads(line)["loss"] for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()
              if "loss" in json.loads(line)]
    assert losses and all(math.isfinite(v) for v in losses)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    tuned = PeftModel.from_pretrained(base, result.run_dir)
    assert any("lora_" in name for name, _ in tuned.named_parameters())
