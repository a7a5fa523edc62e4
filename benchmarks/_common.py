"""Pieces shared by the benchmark scripts: paths, the tiny model, the two training recipes, token counting,
a training clock, peak memory, the matmul peak, the machine's name and the "median, spread, verdict" of
repeated measurements.

Two recipes are compared throughout:

* **tutorial** — the well-known LoRA tutorial: ``prompt + "\\n" + completion`` padded to a fixed
  ``max_length`` (pad = EOS), ``labels = input_ids`` (prompt and padding in the loss), LoRA r=8, alpha=32,
  dropout 0.05 on q/k/v/o, lr 1e-4 and the Trainer's defaults otherwise (batch 8, fp32, linear schedule,
  no warmup), 10 epochs.
* **LoRA Desk** — exactly what :func:`loradesk.core.training.run` builds from ``RunConfig()``: it is put
  together here from the same pieces ``training.run`` uses (encoding, LoRA wrapping, Trainer and its
  arguments), so the two never drift apart.
"""

from __future__ import annotations

import itertools
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "data"
if str(ROOT) not in sys.path:  # run from a source checkout without installing
    sys.path.insert(0, str(ROOT))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
warnings.filterwarnings("ignore", category=FutureWarning)  # library deprecation notices, not results

from loradesk.core.dataset import Example  # noqa: E402  (after the path set-up above)

TUTORIAL_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj"]
TUTORIAL_MAX_LENGTH = 128
TUTORIAL_EPOCHS = 10


# --- data and models ---------------------------------------------------------------------------------------
def sample_rows(limit: int | None = None) -> list[Example]:
    """The shipped training rows (``data/sample.json``), optionally only the first ``limit``."""
    from loradesk.core.formats import read_dataset

    rows = read_dataset(DATA / "sample.json")
    return rows[:limit] if limit else rows


def probe() -> tuple[str, str]:
    """The probe question and its expected phrase: the first row of ``data/sample_heldout.json``."""
    from loradesk.core.formats import read_heldout

    return read_heldout(DATA / "sample_heldout.json")[0]


def build_tiny_model(folder: Path, vocab_size: int = 512) -> Path:
    """A tiny random-weight Llama (2 layers, hidden 64) with a BPE tokenizer trained on the sample data."""
    import json

    from loradesk.core.tiny_model import build_tiny_model as build

    texts = [str(v) for name in ("sample.json", "sample_heldout.json")
             for rec in json.loads((DATA / name).read_text(encoding="utf-8")) for v in rec.values()]
    return build(folder, texts, vocab_size)


# --- the tutorial's recipe ---------------------------------------------------------------------------------
def tutorial_dataset(tokenizer: Any, rows: Sequence[Example], max_length: int = TUTORIAL_MAX_LENGTH) -> Any:
    """``prompt\\ncompletion`` padded to ``max_length`` (pad = EOS), ``labels = input_ids``."""
    from datasets import Dataset as HFDataset

    tokenizer.pad_token = tokenizer.eos_token
    enc = tokenizer([f"{r.prompt}\n{r.completion}" for r in rows], padding="max_length", truncation=True,
                    max_length=max_length)
    return HFDataset.from_dict({"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"],
                                "labels": [list(ids) for ids in enc["input_ids"]]})


def tutorial_lora(model: Any) -> Any:
    """The tutorial's adapter: r=8, alpha=32, dropout 0.05 on q/k/v/o."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=8, lora_alpha=32, lora_dropout=0.05, target_modules=TUTORIAL_TARGETS, bias="none",
                        task_type="CAUSAL_LM")
    return get_peft_model(model, config)


def tutorial_trainer(model: Any, data: Any, out_dir: Path, device: str, epochs: int = TUTORIAL_EPOCHS,
                     max_steps: int = -1, batch_size: int = 8, **extra: Any) -> Any:
    """The tutorial's Trainer: lr 1e-4, batch 8, 10 epochs, everything else the Trainer's default."""
    from transformers import PrinterCallback, Trainer, TrainingArguments

    args = TrainingArguments(output_dir=str(out_dir), num_train_epochs=epochs, max_steps=max_steps,
                             per_device_train_batch_size=batch_size, learning_rate=1e-4, report_to="none",
                             use_cpu=device == "cpu", disable_tqdm=True, **extra)
    trainer = Trainer(model=model, args=args, train_dataset=data)
    trainer.remove_callback(PrinterCallback)
    return trainer


# --- LoRA Desk's recipe, from training.run's own pieces --------------------------------------------------
def loradesk_job(config: Any, rows: Sequence[Example]) -> Any:
    """The job object ``training.run`` drives; its pieces encode, wrap and build the Trainer."""
    from loradesk.core import training

    return training.TrainingJob(config, list(rows), training.NullSink(), threading.Event())


def loradesk_trainer(job: Any, model: Any, tokenizer: Any, data: Any, run_dir: Path, device: str,
                     precision: str, **extra_args: Any) -> Any:
    """The Trainer ``training.run`` would build; ``extra_args`` overrides TrainingArguments (e.g. Liger)."""
    import dataclasses

    from transformers import PrinterCallback, Trainer

    run_dir.mkdir(parents=True, exist_ok=True)
    trainer, collator, callback = job.build_trainer(model, tokenizer, data, None, run_dir, device, precision,
                                               time.monotonic())
    if extra_args:
        args = dataclasses.replace(trainer.args, **extra_args)
        trainer = Trainer(model=model, args=args, data_collator=collator, train_dataset=data,
                          processing_class=tokenizer, callbacks=[callback])
        trainer.remove_callback(PrinterCallback)
    return trainer


# --- measuring ---------------------------------------------------------------------------------------------
class TokenCounter:
    """Counts what each training forward pass sees: rows, all tokens, real (non-pad) tokens,
    loss-bearing tokens (label != -100) and the loss-bearing ones that are not padding.
    Counts stay on the device until read, so counting adds no synchronisation."""

    def __init__(self) -> None:
        self.enabled = True
        self._sums: dict[str, Any] = {}

    def attach(self, model: Any) -> None:
        # first in line: training's own hooks take the labels out before the model sees them
        model.register_forward_pre_hook(self._hook, with_kwargs=True, prepend=True)

    def _hook(self, module: Any, args: Any, kwargs: dict[str, Any]) -> None:
        if not self.enabled or not module.training:
            return
        ids, mask, labels = kwargs.get("input_ids"), kwargs.get("attention_mask"), kwargs.get("labels")
        if ids is None:
            return
        self._add("rows", ids.shape[0])
        self._add("tokens", ids.numel())
        self._add("real", mask.sum() if mask is not None else ids.numel())
        loss = labels != -100 if labels is not None else None
        self._add("loss", loss.sum() if loss is not None else 0)
        self._add("loss_real", (loss & (mask == 1)).sum() if loss is not None and mask is not None
                  else (loss.sum() if loss is not None else 0))

    def _add(self, key: str, value: Any) -> None:
        self._sums[key] = self._sums.get(key, 0) + value

    def snapshot(self) -> dict[str, int]:
        return {k: int(self._sums.get(k, 0)) for k in ("rows", "tokens", "real", "loss", "loss_real")}


def peak_rss_mib() -> float:
    """This process's resident-memory high-water mark in MiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (2**20 if sys.platform == "darwin" else 1024)


def synchronize(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


def matmul_peak(device: str, dtype: Any, size: int = 2048, reps: int = 5) -> float:
    """FLOP/s of the fastest of ``reps`` plain ``torch.matmul`` calls on ``size`` x ``size`` matrices."""
    import torch

    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    for _ in range(2):
        torch.matmul(a, b)
    synchronize(device)
    best = float("inf")
    for _ in range(reps):
        start = time.perf_counter()
        torch.matmul(a, b)
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


def matmul_params(model: Any) -> int:
    """N: weights of the Linear layers in the blocks (embeddings, lm_head and LoRA matrices excluded)."""
    import torch

    skip = {"lm_head", "embed_out", "output"}
    return sum(module.weight.numel() for name, module in model.named_modules()
               if isinstance(module, torch.nn.Linear) and name.rsplit(".", 1)[-1] not in skip
               and "lora_" not in name)


def greedy_answer(model: Any, tokenizer: Any, text: str, add_special_tokens: bool, device: str,
                  max_new_tokens: int = 40) -> str:
    """The model's greedy continuation of ``text`` (as the Compare tab generates it)."""
    import torch

    from loradesk.core.generation import GenerationSettings
    from loradesk.core.step_speed import asking_format

    inputs = tokenizer(text, return_tensors="pt", add_special_tokens=add_special_tokens).to(device)
    kwargs = GenerationSettings(max_new_tokens=max_new_tokens).generate_kwargs()
    # a CPU run in bf16 stores its frozen weights in bf16: ask in the same number format as it trains
    with torch.inference_mode(), asking_format(model, device):
        out = model.generate(**inputs, **kwargs, pad_token_id=tokenizer.pad_token_id)
    return tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True).strip()


def make_clock_callback(model: Any, counter: TokenCounter, ask: Callable[[], str], expected: str,
                        device: str, max_epochs: float, time_budget: float, stop_when_learned: bool,
                        label: str) -> Any:
    """A TrainerCallback that runs a training clock, pauses it at each epoch end to ask the probe, and
    stops at ``max_epochs``, past ``time_budget`` training seconds, or (optionally) once learned."""
    from transformers import TrainerCallback

    from loradesk.core.generation import contains_phrase

    class EpochClock(TrainerCallback):
        def __init__(self) -> None:
            self.started = 0.0
            self.paused = 0.0
            self.epochs: list[dict[str, Any]] = []
            self.time_to_learn: float | None = None
            self.budget_hit = False
            self.final_seconds = 0.0
            self.final_epoch = 0.0

        def seconds(self) -> float:
            return time.monotonic() - self.started - self.paused

        def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            synchronize(device)
            self.started = time.monotonic()

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if time_budget and self.seconds() > time_budget:
                synchronize(device)
                self.budget_hit = True
                control.should_training_stop = True

        def on_epoch_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            synchronize(device)
            now = self.seconds()
            pause_start = time.monotonic()
            counts = counter.snapshot()
            previous = self.epochs[-1]["seconds"] if self.epochs else 0.0
            if abs(state.epoch - round(state.epoch)) > 1e-6:  # stopped part-way through an epoch
                self.final_seconds, self.final_epoch = now, float(state.epoch)
                self.paused += time.monotonic() - pause_start
                return
            counter.enabled = False
            model.eval()
            answer = ask()
            model.train()
            counter.enabled = True
            learned = contains_phrase(answer, expected)
            self.epochs.append({"epoch": round(float(state.epoch), 3), "seconds": now,
                                "epoch_seconds": now - previous, "answer": answer, "learned": learned,
                                **counts})
            print(f"[{label}] epoch {state.epoch:.2f}: {now - previous:.1f} s "
                  f"(training {now:.1f} s), answer: {answer[:90]!r}{'  <- learned' if learned else ''}",
                  flush=True)
            self.final_seconds, self.final_epoch = now, float(state.epoch)
            if learned and self.time_to_learn is None:
                self.time_to_learn = now
                if stop_when_learned:
                    control.should_training_stop = True
            if state.epoch >= max_epochs - 1e-6:
                control.should_training_stop = True
            self.paused += time.monotonic() - pause_start

    return EpochClock()


def make_step_timer(counter: TokenCounter, device: str, warmup: int, steps: int) -> Any:
    """A TrainerCallback timing optimizer steps ``warmup+1 .. warmup+steps`` and the tokens they saw."""
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self) -> None:
            self.start: tuple[float, dict[str, int]] | None = None
            self.end: tuple[float, dict[str, int]] | None = None

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if state.global_step in (warmup, warmup + steps):
                synchronize(device)
                mark = (time.perf_counter(), counter.snapshot())
                if state.global_step == warmup:
                    self.start = mark
                else:
                    self.end = mark

        def result(self) -> dict[str, float]:
            if self.start is None or self.end is None:
                raise RuntimeError("the timed steps did not run: give the run more rows or fewer steps")
            seconds = self.end[0] - self.start[0]
            counts = {k: self.end[1][k] - self.start[1][k] for k in self.end[1]}
            return {"seconds": seconds, "steps": steps, **counts}

    return StepTimer()


def fmt_seconds(s: float | None) -> str:
    if s is None:
        return "n/a"
    return f"{s:.1f} s" if s < 120 else f"{s / 60:.1f} min"


# --- child processes and the run folders they leave --------------------------------------------------------
def run_child(cmd: list[str], cwd: Path = ROOT, output: Path | None = None,
              extra_env: dict[str, str] | None = None) -> tuple[float, int]:
    """Run ``cmd`` in ``cwd`` with that tree's code first on the path (and ``extra_env`` added to the
    environment); ``(wall seconds, peak RSS in bytes)``, the peak from the kernel (``ru_maxrss`` of
    ``os.wait4``). Its output goes to ``output`` when given (the last lines are quoted when it fails), else
    stdout is dropped."""
    env = {**os.environ, **(extra_env or {}), "PYTHONPATH": str(cwd)}
    started = time.monotonic()
    with open(output, "w", encoding="utf-8") if output else open(os.devnull, "w") as out:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out,
                                stderr=subprocess.STDOUT if output else None)
        _pid, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        tail = "\n".join(output.read_text(encoding="utf-8", errors="replace").splitlines()[-15:]) if output else ""
        raise SystemExit(f"{' '.join(cmd[:4])}… (in {cwd}) failed with exit code {proc.returncode}"
                         + (f"; its last lines:\n{tail}" if tail else ""))
    return time.monotonic() - started, usage.ru_maxrss * 1024  # KiB on Linux


def step_times(run_dir: Path) -> list[float]:
    """Seconds of each step after the first, from consecutive logged steps of a run's ``metrics.jsonl``."""
    points = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    points = [p for p in points if "loss" in p]
    return [b["elapsed"] - a["elapsed"] for a, b in itertools.pairwise(points) if b["step"] == a["step"] + 1]


# --- the machine, and repeated measurements ---------------------------------------------------------------
def cpu_name() -> str:
    """The CPU's model name as lscpu gives it."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, subprocess.CalledProcessError, StopIteration):
        return platform.processor() or "unknown CPU"


def machine() -> str:
    """One line naming the machine: CPU model, its bf16 matrix features, cores usable here, torch version."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        flags = next((line.split(":", 1)[1].split() for line in Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("flags")), [])
    except OSError:
        flags = []
    bf16 = [f for f in ("amx_bf16", "avx512_bf16") if f in flags]
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    try:
        torch_version = version("torch")
    except PackageNotFoundError:
        torch_version = "not installed"
    return (f"{cpu_name()}; bf16 matrix units: {', '.join(bf16) or 'none'}; {usable} of {os.cpu_count()} "
            f"cores usable; torch {torch_version}")


@dataclass(frozen=True)
class Spread:
    """Repeated measurements of one figure: their median and range."""

    values: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    @property
    def low(self) -> float:
        return min(self.values)

    @property
    def high(self) -> float:
        return max(self.values)

    def overlaps(self, other: Spread) -> bool:
        return self.low <= other.high and other.low <= self.high

    def text(self, fmt: str = ",.2f") -> str:
        """``median (min-max)``, or the one value when there is one."""
        if len(self.values) == 1:
            return format(self.values[0], fmt)
        return f"{self.median:{fmt}} ({self.low:{fmt}}-{self.high:{fmt}})"


def spread(values: Sequence[float]) -> Spread:
    if not values:
        raise ValueError("no measurements")
    return Spread(tuple(float(v) for v in values))


def verdict(new: Spread, base: Spread) -> tuple[float | None, str]:
    """``(new median / base median, verdict)``: "no difference" when the two ranges overlap, "higher" or
    "lower" when they do not, "one run each: no verdict" without repeats to give a spread."""
    ratio = new.median / base.median if base.median else None
    if len(new.values) < 2 or len(base.values) < 2:
        return ratio, "one run each: no verdict"
    if new.overlaps(base):
        return ratio, "no difference"
    return ratio, "higher" if new.median > base.median else "lower"


def ratio_text(ratio: float | None) -> str:
    """``1.23x``; three decimals near 1 so a small real difference does not print as ``1.00x``."""
    if ratio is None:
        return "n/a"
    return f"{ratio:.3f}x" if abs(ratio - 1) < 0.01 else f"{ratio:.2f}x"
