"""How much of the hardware training uses: achieved FLOP/s against a plain matmul's on the same device.

Achieved FLOP/s = 4 x N x tokens/s, where N counts the weights of the Linear layers in the model's blocks
(embeddings, lm_head and the LoRA matrices excluded) and tokens are the real (non-pad) tokens trained on:
2N for the forward pass and 2N for the backward pass through the frozen weights (LoRA computes no weight
gradients for them). The peak is the fastest plain ``torch.matmul`` of the same dtype, measured in the
same run; achieved / peak is the model-FLOPs utilisation (MFU).

Two studies:

* ``settings`` (the default on a CPU): LoRA Desk's recipe on the built-in model and data/sample.json,
  one setting changed at a time: bf16 autocast vs fp32, thread count, group_by_length on/off.
* ``recipes`` (the default with ``--device cuda``): a randomly initialised model of Qwen1.5-1.8B's shape
  on synthetic rows, the tutorial's recipe against LoRA Desk's (bf16, SDPA attention, length-grouped
  batches, dynamic padding, fused AdamW), plus Liger kernels when importable and torch.compile on request.
  ``--shape small`` runs the same study with a small model anywhere.

Both studies run their variants in rounds, A B C ... A B C ... (``--repeat`` rounds; default 3 on a CPU, 1
on CUDA), so a slow moment of a shared machine falls on every variant alike, and report the median and the
range (min-max) of s/step and tokens/s. A variant whose tokens/s range overlaps the first line's is marked
"no difference".

    python benchmarks/utilisation.py                            # CPU settings study
    python benchmarks/utilisation.py --device cuda              # GPU recipes study (H200: a few minutes)
    python benchmarks/utilisation.py --study recipes --shape small
    python benchmarks/utilisation.py --quick                    # both studies, tiny sizes (a smoke run)
"""

from __future__ import annotations

import argparse
import copy
import gc
import random
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import _common as C

from loradesk.core.wording import plural

MFU_TARGET = 0.40
SHAPES: dict[str, dict[str, int]] = {
    # Qwen1.5-1.8B (Qwen2 architecture): multi-head attention, untied embeddings.
    "qwen1.5-1.8b": {"hidden_size": 2048, "num_hidden_layers": 24, "num_attention_heads": 16,
                     "num_key_value_heads": 16, "intermediate_size": 5504, "vocab_size": 151936},
    "small": {"hidden_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 4,
              "intermediate_size": 344, "vocab_size": 4096},
}


@dataclass
class Line:
    """One measured configuration: its repeats' s/step and tokens/s, the other figures from their medians."""

    name: str
    dtype: str
    threads: int
    steps: C.Spread
    tokens: C.Spread
    padding: float
    n_params: int
    peak: float
    bf16_peak: float | None = None
    memory_gib: float | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def seconds_per_step(self) -> float:
        return self.steps.median

    @property
    def tokens_per_s(self) -> float:
        return self.tokens.median

    @property
    def achieved(self) -> float:
        return 4 * self.n_params * self.tokens_per_s

    @property
    def mfu(self) -> float:
        return self.achieved / self.peak


Measured = tuple[dict[str, float], str, int, int, float | None]  # figures, dtype, threads, N, GPU GiB


def rounds(variants: list[tuple[str, Callable[[], Measured]]], repeat: int, peaks: Peaks) -> list[Line]:
    """Run every variant once per round, ``repeat`` rounds (A B C ... A B C ...); one Line per variant."""
    seen: dict[str, list[Measured]] = {name: [] for name, _ in variants}
    for round_ in range(1, repeat + 1):
        for name, run in variants:
            m = run()
            seen[name].append(m)
            where = f"round {round_}/{repeat}: " if repeat > 1 else ""
            print(f"  {where}{name}: {m[0]['step']:.3f} s/step, {m[0]['tokens_s']:,.0f} tokens/s", flush=True)
    lines = []
    for name, runs in seen.items():
        first, dtype, threads, n_params, _memory = runs[0]
        memory = [r[4] for r in runs if r[4] is not None]
        lines.append(Line(name, dtype, threads, C.spread([r[0]["step"] for r in runs]),
                          C.spread([r[0]["tokens_s"] for r in runs]), first["padding"], n_params,
                          peaks.get(dtype, threads), memory_gib=max(memory) if memory else None))
    return lines


class Peaks:
    """Matmul peaks, measured once per (device, dtype, threads)."""

    def __init__(self, device: str, size: int, reps: int) -> None:
        self.device, self.size, self.reps = device, size, reps
        self.cache: dict[tuple[str, int], float] = {}

    def get(self, dtype_name: str, threads: int | None = None) -> float:
        import torch

        key = (dtype_name, threads or torch.get_num_threads())
        if key not in self.cache:
            dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[dtype_name]
            current = torch.get_num_threads()
            torch.set_num_threads(key[1])
            self.cache[key] = C.matmul_peak(self.device, dtype, self.size, self.reps)
            torch.set_num_threads(current)
        return self.cache[key]

    def settle(self, lines: list[Line]) -> None:
        """Measure every peak again (the best of both counts: a busy moment only lowers a peak) and
        update the lines' peaks."""
        import torch

        threads = torch.get_num_threads()
        for dtype_name, n in list(self.cache):
            torch.set_num_threads(n)
            dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[dtype_name]
            again = C.matmul_peak(self.device, dtype, self.size, self.reps)
            self.cache[dtype_name, n] = max(self.cache[dtype_name, n], again)
        torch.set_num_threads(threads)
        for ln in lines:
            ln.peak = self.cache[ln.dtype, ln.threads]
            if ln.bf16_peak is not None:
                ln.bf16_peak = self.cache["bf16", ln.threads]


def measure(trainer: Any, model: Any, device: str, warmup: int,
            steps: int) -> dict[str, float]:
    """Train ``warmup + steps`` steps, time the last ``steps``; tokens/s counts real tokens."""
    counter = C.TokenCounter()
    counter.attach(model)
    timer = C.make_step_timer(counter, device, warmup, steps)
    trainer.add_callback(timer)
    trainer.train()
    r = timer.result()
    return {"step": r["seconds"] / steps, "tokens_s": r["real"] / r["seconds"],
            "padding": 1 - r["real"] / r["tokens"] if r["tokens"] else 0.0}


def free(device: str) -> None:
    gc.collect()
    if device == "cuda":
        import torch

        torch.cuda.empty_cache()


# --- the settings study (LoRA Desk's recipe, one setting changed at a time) -------------------------------
def settings_study(model_dir: Path | None, rows_limit: int | None, steps: int, warmup: int,
                   thread_counts: list[int], peaks: Peaks, work: Path, repeat: int,
                   every: bool = True) -> list[Line]:
    """One line per setting; ``every=False`` leaves out dropout 0 and batch 16 (a smoke run's budget)."""
    import torch
    from transformers import set_seed

    from loradesk.core import models
    from loradesk.core.config import RunConfig

    device = peaks.device
    base = RunConfig()
    if model_dir is not None:
        base.model.kind, base.model.name = "local", str(model_dir)
    resolved = models.resolve_model(base.model)
    tokenizer = models.load_tokenizer(resolved)
    rows = C.sample_rows(rows_limit)
    default_threads = torch.get_num_threads()
    auto = models.resolve_precision(device, "auto")
    other = "fp32" if auto != "fp32" else "bf16"
    changes: list[tuple[str, dict[str, Any]]] = [
        (f"LoRA Desk defaults ({auto}, {default_threads} threads, grouped)", {}),
        (f"{other} instead of {auto}", {"precision": other}),
        *[(plural(n, "thread"), {"threads": n})
          for n in thread_counts if n != default_threads],
        ("group_by_length off", {"group_by_length": False}),
        *([("LoRA dropout 0", {"lora.dropout": 0.0}), ("batch 16", {"batch_size": 16})] if every else []),
    ]
    encoded: dict[int, Any] = {}
    runs = 0

    def setting(i: int, change: dict[str, Any]) -> Callable[[], Measured]:
        cfg = copy.deepcopy(base)
        for key, value in change.items():
            section, _, field_name = key.rpartition(".")
            setattr(getattr(cfg, section or "training"), field_name, value)
        cfg.training.max_steps = warmup + steps

        def run() -> Measured:
            nonlocal runs
            runs += 1
            torch.set_num_threads(cfg.training.threads or default_threads)
            precision = models.resolve_precision(device, cfg.training.precision)
            job = C.loradesk_job(cfg, rows)
            if i not in encoded:
                encoded[i] = job.encode(tokenizer, rows)[0]
            set_seed(42)
            model = job.load_base(resolved, device, precision, max(encoded[i]["length"]))
            n_params = C.matmul_params(model)
            model = job.wrap_lora(model)
            trainer = C.loradesk_trainer(job, model, tokenizer, encoded[i], work / f"settings-{runs}", device,
                                         precision)
            m = measure(trainer, model, device, warmup, steps)
            threads = torch.get_num_threads()
            del trainer, model
            free(device)
            torch.set_num_threads(default_threads)
            return m, precision, threads, n_params, None

        return run

    lines = rounds([(name, setting(i, change)) for i, (name, change) in enumerate(changes)], repeat, peaks)
    print(f"  N (block matmul weights) = {lines[0].n_params:,}; model {resolved.name}; "
          f"{steps} timed steps after {warmup} warm-up steps, {plural(repeat, 'round')}")
    return lines


# --- the recipes study (tutorial vs LoRA Desk on a model of a given shape) -------------------------------
def synthetic_rows(n: int, min_len: int, max_len: int, vocab: int,
                   seed: int = 0) -> list[tuple[list[int], int]]:
    """``n`` rows of random token ids, lengths uniform in [min_len, max_len]; each with its prompt length."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        length = rng.randint(min_len, max_len)
        rows.append(([rng.randrange(3, vocab) for _ in range(length)], max(1, length // 3)))
    return rows


def recipes_study(shape: str, rows_n: int, min_len: int, max_len: int, batch: int, steps: int, warmup: int,
                  use_compile: bool, use_liger: bool, peaks: Peaks, work: Path, repeat: int) -> list[Line]:
    import importlib.util

    import torch
    from datasets import Dataset as HFDataset
    from transformers import AutoModelForCausalLM, Qwen2Config

    from loradesk.core import models
    from loradesk.core.config import RunConfig

    device = peaks.device
    config = Qwen2Config(**SHAPES[shape], max_position_embeddings=max(4096, max_len),
                         attn_implementation="sdpa", tie_word_embeddings=False)
    from loradesk.core.tiny_model import build_tokenizer

    tokenizer = build_tokenizer([r.prompt + " " + r.completion for r in C.sample_rows()], 512)
    eos = tokenizer.eos_token_id
    rows = synthetic_rows(rows_n, min_len, max_len, config.vocab_size)
    if rows_n < batch * (warmup + steps + 1):
        raise SystemExit(f"--rows {rows_n} is too few for {warmup + steps} steps of batch {batch}")
    runs = 0

    def make_model(dtype: Any) -> tuple[Any, int]:
        torch.manual_seed(0)
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        with torch.device(device):
            model = AutoModelForCausalLM.from_config(config, dtype=dtype)
        return model, C.matmul_params(model)

    def finish(trainer: Any, model: Any, warm: int, dtype: str, n_params: int) -> Measured:
        nonlocal runs
        runs += 1
        m = measure(trainer, model, device, warm, steps)
        memory = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None
        del trainer, model
        free(device)
        return m, dtype, torch.get_num_threads(), n_params, memory

    # The tutorial: fixed-length padding (to the longest row, so nothing is cut), labels = input_ids, fp32.
    tutorial_data = HFDataset.from_dict({
        "input_ids": [ids + [eos] * (max_len - len(ids)) for ids, _ in rows],
        "attention_mask": [[1] * len(ids) + [0] * (max_len - len(ids)) for ids, _ in rows],
        "labels": [ids + [eos] * (max_len - len(ids)) for ids, _ in rows],
    })

    def tutorial() -> Measured:
        model, n_params = make_model(torch.float32)
        model = C.tutorial_lora(model)
        trainer = C.tutorial_trainer(model, tutorial_data, work / f"tutorial-{runs}", device,
                                     max_steps=warmup + steps, batch_size=batch, save_strategy="no")
        return finish(trainer, model, warmup, "fp32", n_params)

    # LoRA Desk: RunConfig() defaults on this device, built by training.run's own pieces.
    cfg = RunConfig()
    cfg.training.batch_size = batch
    precision = models.resolve_precision(device, cfg.training.precision)
    ours_data = HFDataset.from_dict({
        "input_ids": [ids for ids, _ in rows],
        "labels": [[-100] * p + ids[p:] for ids, p in rows],
        "length": [len(ids) for ids, _ in rows],
    })

    def ours(extra: dict[str, Any]) -> Callable[[], Measured]:
        def run() -> Measured:
            variant_warmup = warmup + (3 if "torch_compile" in extra else 0)  # compiling takes a few steps
            variant_cfg = copy.deepcopy(cfg)
            variant_cfg.training.max_steps = variant_warmup + steps
            job = C.loradesk_job(variant_cfg, [])
            model, n_params = make_model(models.weights_dtype(device, precision))
            model = job.wrap_lora(model)
            trainer = C.loradesk_trainer(job, model, tokenizer, ours_data, work / f"ours-{runs}", device,
                                         precision, **extra)
            return finish(trainer, model, variant_warmup, precision, n_params)

        return run

    variants: list[tuple[str, Callable[[], Measured]]] = [("Tutorial recipe (fp32, fixed padding)", tutorial)]
    variants.append((f"LoRA Desk defaults ({precision}, dynamic padding, grouped)", ours({})))
    liger_ok = importlib.util.find_spec("liger_kernel") is not None and device == "cuda"
    if use_liger and liger_ok:
        variants.append((f"LoRA Desk + Liger kernels ({precision}, dynamic padding, grouped)",
                         ours({"use_liger_kernel": True})))
    if use_compile:
        variants.append((f"LoRA Desk + torch.compile ({precision}, dynamic padding, grouped)",
                         ours({"torch_compile": True})))
    lines = rounds(variants, repeat, peaks)
    if device == "cuda":
        for line in lines:
            line.bf16_peak = peaks.get("bf16")
    if use_liger and not liger_ok:
        print("  (Liger kernels skipped: liger_kernel is not importable or the device is not CUDA)")
    print(f"  N (block matmul weights) = {lines[0].n_params:,}; shape {shape}; {rows_n} synthetic rows of "
          f"{min_len}-{max_len} tokens, batch {batch}; {steps} timed steps after {warmup} warm-up steps, "
          f"{plural(repeat, 'round')}")
    return lines


# --- output ------------------------------------------------------------------------------------------------
def print_table(title: str, lines: list[Line], device: str) -> None:
    unit, scale = ("TFLOP/s", 1e12) if device == "cuda" else ("GFLOP/s", 1e9)
    header = ["Setting", "s/step", "tokens/s", "padding", f"achieved {unit}", f"matmul peak {unit}", "MFU"]
    if any(line.bf16_peak for line in lines):
        header.append("MFU vs bf16 peak")
    if any(line.memory_gib for line in lines):
        header.append("peak GPU memory")
    header.append(f"tokens/s vs {lines[0].name.split(' (')[0]}")
    print(f"\n{title}\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for ln in lines:
        where = f"{ln.dtype}, {ln.threads} thr" if device == "cpu" else ln.dtype
        cells = [ln.name, ln.steps.text(".3f"), ln.tokens.text(",.0f"),
                 f"{100 * ln.padding:.1f} %", f"{ln.achieved / scale:,.2f}",
                 f"{ln.peak / scale:,.1f} ({where})", f"{100 * ln.mfu:.1f} %"]
        if ln.bf16_peak:
            cells.append(f"{100 * ln.achieved / ln.bf16_peak:.1f} %")
        if ln.memory_gib:
            cells.append(f"{ln.memory_gib:.1f} GiB")
        ratio, says = C.verdict(ln.tokens, lines[0].tokens)
        cells.append("—" if ln is lines[0] else f"{C.ratio_text(ratio)} ({says})")
        print("| " + " | ".join(cells) + " |")
    print("\ns/step and tokens/s: median (min-max) of the rounds; the other figures from the medians.")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=("cpu", "cuda"), default=None,
                   help="default: cuda if present, else cpu")
    p.add_argument("--study", choices=("settings", "recipes"), default=None,
                   help="default: recipes on cuda, settings on cpu (--quick runs both)")
    p.add_argument("--shape", choices=tuple(SHAPES), default=None,
                   help="model shape for the recipes study (default: qwen1.5-1.8b on cuda, small on cpu)")
    p.add_argument("--quick", action="store_true",
                   help="both studies on tiny models, a few steps, fewer settings (a smoke run)")
    p.add_argument("--steps", type=int, default=None, help="timed optimizer steps (default 12; 10 on cuda)")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 2; 3 on cuda)")
    p.add_argument("--repeat", type=int, default=None,
                   help="rounds of all variants, interleaved (default 3; 1 on cuda; 2 with --quick)")
    p.add_argument("--threads", default="1,2", help="CPU thread counts to compare (settings study)")
    p.add_argument("--rows", type=int, default=None, help="rows: sample rows (settings) or synthetic rows")
    p.add_argument("--model-dir", type=Path, default=None, help="a local model folder instead of the default")
    p.add_argument("--batch-size", type=int, default=8, help="rows per step in the recipes study (default 8)")
    p.add_argument("--min-len", type=int, default=None, help="shortest synthetic row (default 128)")
    p.add_argument("--max-len", type=int, default=None, help="longest synthetic row (default 1024)")
    p.add_argument("--compile", action="store_true", help="add a LoRA Desk + torch.compile line (recipes)")
    p.add_argument("--no-liger", action="store_true", help="skip the Liger kernels line (recipes, CUDA)")
    p.add_argument("--matmul-size", type=int, default=None, help="peak matmul size (default 2048; 8192 cuda)")
    args = p.parse_args(argv)

    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA GPU is available here")
    cuda = device == "cuda"
    studies = ["settings", "recipes"] if args.quick else [args.study or
                                                         ("recipes" if cuda or args.shape else "settings")]
    steps = args.steps or (3 if args.quick else 10 if cuda else 12)
    warmup = args.warmup if args.warmup is not None else (1 if args.quick else 3 if cuda else 2)
    if args.repeat is not None and args.repeat < 1:
        p.error(f"--repeat {args.repeat}: give 1 or more rounds")
    repeat = args.repeat or (2 if args.quick else 1 if cuda else 3)
    size = args.matmul_size or (256 if args.quick else 8192 if cuda else 2048)
    peaks = Peaks(device, size, 3 if args.quick else 10 if cuda else 5)
    if cuda:
        from loradesk.core.models import device_description

        print(f"Device: {device_description('cuda')}, torch {torch.__version__}")
    else:
        print(f"Device: CPU ({torch.get_num_threads()} threads); {C.machine()}")

    with tempfile.TemporaryDirectory(prefix="loradesk-util-") as tmp:
        work = Path(tmp)
        if "settings" in studies:
            model_dir = args.model_dir
            if args.quick and model_dir is None:
                model_dir = C.build_tiny_model(work / "tiny-model")
            threads = [int(t) for t in args.threads.split(",") if t.strip()]
            print("\nSettings study: LoRA Desk's recipe, one setting changed at a time", flush=True)
            lines = settings_study(model_dir, args.rows or (32 if args.quick else None), steps, warmup,
                                   threads, peaks, work, repeat, every=not args.quick)
            peaks.settle(lines)
            print_table("Utilisation by setting (MFU = 4 x N x tokens/s / matmul peak of the same dtype "
                        "and threads)", lines, device)
        if "recipes" in studies:
            shape = args.shape or ("qwen1.5-1.8b" if cuda and not args.quick else "small")
            min_len = args.min_len or (16 if args.quick else 128)
            max_len = args.max_len or (64 if args.quick else 1024)
            # enough rows that no timed step crosses an epoch end (LoRA Desk checkpoints there)
            rows_n = args.rows or max(64, args.batch_size * (warmup + steps + 10))
            print(f"\nRecipes study: tutorial vs LoRA Desk on a random {shape} model", flush=True)
            lines = recipes_study(shape, rows_n, min_len, max_len, args.batch_size, steps, warmup,
                                  args.compile, not args.no_liger, peaks, work, repeat)
            peaks.settle(lines)
            print_table("Utilisation by recipe (MFU = 4 x N x tokens/s / matmul peak of the recipe's dtype)",
                        lines, device)
            ours = [ln for ln in lines if ln.name.startswith("LoRA Desk")]
            best = max(ours, key=lambda ln: ln.mfu)
            verdict = "met" if best.mfu >= MFU_TARGET else "NOT met"
            print(f"\nLoRA Desk MFU: {100 * ours[0].mfu:.1f} % as shipped, best {100 * best.mfu:.1f} % "
                  f"({best.name}); target >= {100 * MFU_TARGET:.0f} %: {verdict}")
            tut = lines[0]
            print(f"LoRA Desk vs tutorial tokens/s: {ours[0].tokens_per_s / tut.tokens_per_s:.2f}x")
    unit, scale = ("TFLOP/s", 1e12) if cuda else ("GFLOP/s", 1e9)
    measured = sorted(peaks.cache.items())
    print(f"\nmatmul peaks ({size}x{size}): "
          + ", ".join(f"{dtype} {threads} thr {v / scale:,.1f} {unit}" for (dtype, threads), v in measured))
    return 0


if __name__ == "__main__":
    sys.exit(main())
