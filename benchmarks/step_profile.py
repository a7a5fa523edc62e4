"""Where one LoRA Desk training step's time goes: torch.profiler over a few real CPU steps.

The run is built exactly as ``training.run`` builds it (``TrainingJob.prepare``, ``build_model``, the Trainer
of ``build_trainer``: its own step, length-grouped batches) from ``RunConfig()`` defaults, ``--set`` changes
and ``data/sample.json``. After ``--warmup`` steps, ``--steps`` steps run under ``torch.profiler``
(``record_shapes=True``); a step is the time from one optimizer step's end to the next one's, so it holds
everything the Trainer does per step (batch, forward, backward, clipping, optimizer, scheduler, logging).

Each op's *self* CPU time goes to one part, by its name, its input shapes and where it ran, in this order:

* the optimizer's part is what runs inside the Trainer's ``Optimizer.step#...`` / ``Optimizer.zero_grad#...``
  ranges, the gradient clipping and the callbacks just before the update (the app's gradient-norm check);
* casts (``_to_copy``, ``to`` and the copies they make, forward and backward) wherever they run;
* ranges the script adds while profiling (module hooks and a wrapper around the attention function) mark the
  frozen Linear layers, the LoRA layers (minus their base layer), the LM head and the attention function;
  a backward op goes where the forward op that made its autograd node ran (the node's sequence number);
* what no range places goes by name and shape: the loss (log_softmax, nll_loss, cross_entropy) and anything
  with a vocab-sized last dimension, attention kernels (SDPA, flash attention, softmax), matmuls with a
  dimension equal to the vocab size (LM head) or the LoRA rank (2-D, LoRA), other matmuls (base weights),
  the rest (norms, activations, rotary, elementwise).

"Python and framework overhead" is the step's wall time minus the self time of every op counted, so the
parts sum to the wall time. The profiler itself adds overhead (mostly to that part); the script also prints
the last warm-up step's wall time, taken without the profiler, for comparison.

    LORADESK_MODELS=<folder with the converted built-in model> python benchmarks/step_profile.py --markdown
    python benchmarks/step_profile.py --set training.precision=fp32 --set lora.r=16
    python benchmarks/step_profile.py --quick        # the tiny model, 1 step: only shows the script works
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import _common as C
from preflight_accuracy import cpu_name

BASE, LORA, CAST, HEAD = "Base-weight matmuls", "LoRA small ops", "Autocast / dtype casts", "LM head and loss"
ATTN, OTHER, OPTIM = "Attention", "Norms, activations, rotary, other elementwise", "Optimizer and gradient norms"
OVERHEAD = "Python and framework overhead"
PARTS = (BASE, LORA, CAST, HEAD, ATTN, OTHER, OPTIM, OVERHEAD)

# ranges the script opens around model parts while profiling
MARK = {BASE: "step_profile::base_linear", LORA: "step_profile::lora_layer", HEAD: "step_profile::lm_head",
        ATTN: "step_profile::attention", OPTIM: "step_profile::gradient_norms"}
PART_OF_MARK = {v: k for k, v in MARK.items()}
OPTIMIZER_RANGES = ("Optimizer.step#", "Optimizer.zero_grad#", MARK[OPTIM])
CASTS = {"aten::_to_copy", "aten::to", "aten::type_as", "aten::_autocast_to_reduced_precision",
         "aten::_autocast_to_full_precision"}
LOSS_WORDS = ("log_softmax", "logsoftmax", "nll_loss", "nllloss", "cross_entropy", "crossentropy")
ATTENTION_WORDS = ("attention", "attn")
MATMULS = {"aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::matmul", "aten::linear",
           "aten::_addmm_activation", "aten::addbmm", "aten::mkldnn_linear", "aten::_mkldnn_linear"}
FUNCTION, BACKWARD_FUNCTION = 0, 1  # torch.autograd.RecordScope values of ops and autograd nodes
ENGINE = "autograd::engine::evaluate_function: "  # the autograd engine's wrapper around each node it runs


# --- settings ----------------------------------------------------------------------------------------------
def apply_sets(config: Any, items: Sequence[str]) -> Any:
    """``config`` with each ``section.field=value`` of ``items`` applied and checked (JSON values, else text;
    a comma-separated list for a list field). Bad input exits with one line naming the setting."""
    from loradesk.core.config import ConfigError, RunConfig

    data = config.to_dict()
    for item in items:
        key, sep, raw = item.partition("=")
        section, _, name = key.strip().partition(".")
        if not sep or not name or section not in RunConfig.SECTIONS:
            raise SystemExit(f"--set {item}: expected SECTION.FIELD=VALUE with SECTION one of "
                             f"{', '.join(RunConfig.SECTIONS)} (e.g. lora.r=16)")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw.strip()
            if isinstance(data[section].get(name), list):
                value = [v.strip() for v in value.split(",") if v.strip()]
        data[section][name] = value
    try:
        return RunConfig.from_dict(data).check()
    except ConfigError as exc:
        raise SystemExit(f"--set: {exc}") from None


# --- marking model parts while profiling ---------------------------------------------------------------------
def _ranged(label: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    import torch

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with torch.profiler.record_function(label):
            return fn(*args, **kwargs)

    wrapper.__wrapped__ = fn  # type: ignore[attr-defined]
    return wrapper


@contextmanager
def marked(model: Any, trainer: Any) -> Iterator[None]:
    """Profiler ranges around the frozen Linear layers, LoRA layers, the LM head, the attention function,
    the gradient clipping and the callbacks before the optimizer step, removed again on exit."""
    import torch
    from peft.tuners.lora import LoraLayer

    undo: list[Callable[[], None]] = []

    def hook(module: Any, label: str) -> None:
        stack: list[Any] = []

        def enter(_m: Any, _args: Any) -> None:
            rf = torch.profiler.record_function(label)
            rf.__enter__()
            stack.append(rf)

        def leave(_m: Any, _args: Any, _out: Any) -> None:
            if stack:
                stack.pop().__exit__(None, None, None)

        handles = (module.register_forward_pre_hook(enter), module.register_forward_hook(leave))
        undo.append(lambda: [h.remove() for h in handles])

    def patch(owner: Any, name: str, label: str, mapping: bool = False) -> None:
        original = owner[name] if mapping else getattr(owner, name)
        wrapped = _ranged(label, original)
        if mapping:
            owner[name] = wrapped
            undo.append(lambda: owner.__setitem__(name, original))
        else:
            own = name in vars(owner)  # a module's function; else a method found on the class
            setattr(owner, name, wrapped)
            undo.append(lambda: setattr(owner, name, original) if own else delattr(owner, name))

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    head = base.get_output_embeddings() if hasattr(base, "get_output_embeddings") else None
    for name, module in model.named_modules():
        if isinstance(module, LoraLayer):
            hook(module, MARK[LORA])
        elif module is head:
            hook(module, MARK[HEAD])
        elif isinstance(module, torch.nn.Linear) and ".lora_" not in name:
            hook(module, MARK[BASE])
    try:  # every attention implementation transformers dispatches to, and each model file's eager one
        from transformers.modeling_utils import AttentionInterface

        for key in list(AttentionInterface._global_mapping):
            patch(AttentionInterface._global_mapping, key, MARK[ATTN], mapping=True)
    except (ImportError, AttributeError):
        pass
    for module_name in {type(m).__module__ for m in model.modules()}:
        owner = sys.modules.get(module_name)
        if callable(getattr(owner, "eager_attention_forward", None)):
            patch(owner, "eager_attention_forward", MARK[ATTN])
    if callable(getattr(trainer, "_clip_grad_norm", None)):
        patch(trainer, "_clip_grad_norm", MARK[OPTIM])
    handler = getattr(trainer, "callback_handler", None)  # callbacks between clipping and the update (checks)
    if callable(getattr(handler, "on_pre_optimizer_step", None)):
        patch(handler, "on_pre_optimizer_step", MARK[OPTIM])
    try:
        yield
    finally:
        for step in reversed(undo):
            step()


# --- profiling ---------------------------------------------------------------------------------------------
@dataclass
class Window:
    """What the profiler saw over the profiled steps."""

    events: Any = None
    wall: float = 0.0  # seconds, profiled steps together
    unprofiled_step: float | None = None  # seconds, the last warm-up step
    counts: dict[str, int] = field(default_factory=dict)  # rows and tokens of the profiled steps
    trace: Any = None


def make_profiler_callback(warmup: int, steps: int, counter: C.TokenCounter, window: Window) -> Any:
    """A TrainerCallback that profiles optimizer steps ``warmup+1 .. warmup+steps``."""
    from torch.profiler import ProfilerActivity, profile
    from transformers import TrainerCallback

    class StepProfiler(TrainerCallback):
        def __init__(self) -> None:
            self.prof: Any = None
            self.t0 = self.warm = 0.0
            self.before: dict[str, int] = {}

        def _start(self) -> None:
            self.before = counter.snapshot()
            self.prof = profile(activities=[ProfilerActivity.CPU], record_shapes=True)
            self.prof.start()
            self.t0 = time.perf_counter()

        def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.warm = time.perf_counter()
            if warmup == 0:
                self._start()

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            step = state.global_step
            if step == warmup - 1:
                self.warm = time.perf_counter()
            if step == warmup and warmup:
                window.unprofiled_step = time.perf_counter() - self.warm
                self._start()
            elif step == warmup + steps and self.prof is not None:
                window.wall = time.perf_counter() - self.t0
                self.prof.stop()
                after = counter.snapshot()
                window.counts = {k: after[k] - self.before[k] for k in after}
                print("Reading the profile (about a minute on the built-in model)…", flush=True)
                window.events, window.trace = self.prof.events(), self.prof

    return StepProfiler()


# --- attribution -------------------------------------------------------------------------------------------
@dataclass
class Attribution:
    """Self CPU time (µs) per part and per (op, part), over the profiled steps."""

    parts: dict[str, float]
    ops: dict[tuple[str, str], list[float]]  # (name, part) -> [self µs, calls]
    vocab_casts: float = 0.0  # µs of casts of vocab-sized tensors (logits), inside the casts part
    weight_casts: float = 0.0  # µs of casts of frozen weights in the forward pass, inside the casts part
    other_threads: float = 0.0  # µs of op self time on threads other than the step's


def _ancestors(event: Any) -> list[Any]:
    out = []
    parent = event.cpu_parent
    while parent is not None:
        out.append(parent)
        parent = parent.cpu_parent
    return out


def _mark_of(chain: Sequence[Any]) -> str | None:
    """The innermost of the script's model-part ranges in ``chain`` (innermost first), as a part."""
    return next((PART_OF_MARK[e.name] for e in chain if e.name in PART_OF_MARK), None)


def _node_name(node: Any) -> str:
    return node.name.rsplit(": ", 1)[-1] if node is not None else ""


def _dims(event: Any) -> list[list[int]]:
    return [list(s) for s in (event.input_shapes or []) if isinstance(s, list | tuple)]


def by_name_and_shape(name: str, node: str, dims: list[list[int]], vocab: int, rank: int) -> str:
    """The part of an op that no range places, from its name, its autograd node's name and input shapes."""
    low, node_low = name.lower(), node.lower()
    if any(w in low or w in node_low for w in LOSS_WORDS) or any(d and d[-1] == vocab for d in dims):
        return HEAD
    if any(w in low or w in node_low for w in ATTENTION_WORDS) or "softmax" in low or "softmax" in node_low:
        return ATTN
    if name in MATMULS:
        flat = {n for d in dims for n in d}
        if vocab in flat:
            return HEAD
        if all(len(d) <= 2 for d in dims) and rank in flat:
            return LORA
        if all(len(d) <= 2 for d in dims):
            return BASE
    if node == "torch::autograd::AccumulateGrad" or node.endswith("AccumulateGrad"):
        return LORA  # gradients of the trainable (adapter) weights
    return OTHER


def part_of(e: Any, chain: Sequence[Any], node: Any, origin: Sequence[Any], vocab: int, rank: int) -> str:
    """The part of op ``e``: ``chain`` is its ancestors (innermost first), ``node`` the autograd node it ran in
    (or the engine's wrapper) and ``origin`` the forward op that made that node, with its ancestors."""
    names = [a.name for a in chain]
    in_node = node is not None and node.scope == BACKWARD_FUNCTION
    if any(n.startswith(OPTIMIZER_RANGES) for n in names):
        return OPTIM
    if e.name in CASTS or any(n in CASTS for n in names) or (in_node and _node_name(node).startswith("ToCopy")):
        return CAST
    if node is not None and not in_node:  # the engine summing the gradients of an activation used twice
        return by_name_and_shape(e.name, "", _dims(e), vocab, rank)
    return _mark_of(chain) or _mark_of(origin) or by_name_and_shape(e.name, _node_name(node), _dims(e), vocab, rank)


def attribute(events: Sequence[Any], vocab: int, rank: int,
              weight_shapes: frozenset[tuple[int, ...]] = frozenset()) -> Attribution:
    """Each op's self CPU time in one part (see the module docstring); ``weight_shapes`` (of the frozen Linear
    weights) tell the casts of weights from those of activations."""
    ops = [e for e in events if e.scope == FUNCTION and not e.name.startswith(ENGINE)]
    per_thread: dict[Any, float] = defaultdict(float)
    for e in ops:
        per_thread[e.thread] += e.self_cpu_time_total
    main = max(per_thread, key=per_thread.__getitem__) if per_thread else None
    chains = {id(e): _ancestors(e) for e in events}

    def node_of(e: Any) -> Any:
        """The autograd node ``e`` ran in (or the engine's wrapper around it, for the gradient sums the engine
        does between nodes); None in the forward pass."""
        return next((a for a in chains[id(e)] if a.scope == BACKWARD_FUNCTION or a.name.startswith(ENGINE)), None)

    forward: dict[tuple[Any, int], Any] = {}  # (thread, sequence number) -> the op that made that node
    for e in ops:
        if e.sequence_nr >= 0 and node_of(e) is None:
            key = (e.thread, e.sequence_nr)
            if key not in forward or e.time_range.start >= forward[key].time_range.start:
                forward[key] = e

    result = Attribution({p: 0.0 for p in PARTS}, defaultdict(lambda: [0.0, 0]),
                         other_threads=sum(v for t, v in per_thread.items() if t != main))
    optimizer_code = [e for e in events if e.scope != FUNCTION and e.name.startswith(OPTIMIZER_RANGES)]
    for e in ops + optimizer_code:  # the optimizer's part includes the Python inside its ranges
        us = e.self_cpu_time_total
        if e.thread != main or us <= 0:
            continue
        node = node_of(e)
        origin = forward.get((node.fwd_thread, node.sequence_nr)) if node is not None else None
        origin_chain = [origin, *chains[id(origin)]] if origin is not None else []
        part = OPTIM if e.scope != FUNCTION else part_of(e, chains[id(e)], node, origin_chain, vocab, rank)
        dims = _dims(e) if part == CAST else []
        if any(d and d[-1] == vocab for d in dims):
            result.vocab_casts += us
        elif dims and node is None and tuple(dims[0]) in weight_shapes:
            result.weight_casts += us
        result.parts[part] += us
        entry = result.ops[e.name, part]
        entry[0] += us
        entry[1] += 1
    return result


# --- output ------------------------------------------------------------------------------------------------
def table(header: Sequence[str], rows: Sequence[Sequence[str]], markdown: bool) -> str:
    """A markdown table, or columns two spaces apart."""
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                     for r in [header, *rows])


def cpu_flags() -> str:
    """Whether the CPU has the native bf16 flags (amx_bf16, avx512_bf16), from /proc/cpuinfo."""
    try:
        line = next(ln for ln in Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("flags"))
        flags = set(line.split(":", 1)[1].split())
    except (OSError, StopIteration):
        return "flags unknown"
    return ", ".join(f"{f} {'yes' if f in flags else 'no'}" for f in ("amx_bf16", "avx512_bf16"))


def report(result: Attribution, window: Window, steps: int, top: int, markdown: bool) -> None:
    wall_us = window.wall * 1e6
    parts = dict(result.parts)
    parts[OVERHEAD] = wall_us - sum(v for k, v in parts.items() if k != OVERHEAD)
    print("\nWhere a step's time goes\n")
    rows = [[p, f"{100 * parts[p] / wall_us:.1f} %", f"{parts[p] / 1e3 / steps:,.1f}"] for p in PARTS]
    rows.append(["Step (wall time)", f"{100 * sum(parts.values()) / wall_us:.1f} %", f"{wall_us / 1e3 / steps:,.1f}"])
    print(table(["Part", "Share of step", "ms per step"], rows, markdown))
    if result.weight_casts or result.vocab_casts:
        print(f"\n(the casts include {result.weight_casts / 1e3 / steps:,.1f} ms per step on frozen weights and "
              f"{result.vocab_casts / 1e3 / steps:,.1f} ms on vocab-sized tensors, i.e. the logits)")
    if parts[OVERHEAD] < 0:
        print("\nwarning: the ops' self times add up to more than the wall time; the overhead is negative")
    if result.other_threads:
        print(f"\n(not counted: {result.other_threads / 1e3 / steps:,.1f} ms per step of ops on other threads)")
    print(f"\nTop {top} ops by self time\n")
    ranked = sorted(result.ops.items(), key=lambda kv: -kv[1][0])[:top]
    rows = [[name, part, f"{calls / steps:,.0f}", f"{us / 1e3 / steps:,.1f}", f"{100 * us / wall_us:.1f} %"]
            for (name, part), (us, calls) in ranked]
    print(table(["Op", "Part", "Calls per step", "ms per step", "Share of step"], rows, markdown))


# --- the run -----------------------------------------------------------------------------------------------
def profile_run(config: Any, rows: list[Any], warmup: int, steps: int, work: Path) -> tuple[Window, Any]:
    """Train ``warmup + steps`` steps as ``training.run`` would, profiling the last ``steps``; the window and
    the model."""
    import torch
    from transformers import set_seed

    from loradesk.core import training

    config.training.max_steps = warmup + steps
    job = training.TrainingJob(config, rows, training.NullSink(), threading.Event())
    prep = job.prepare()
    if prep.device != "cpu":
        raise SystemExit(f"this profiles CPU steps, but training would run on {prep.device}: "
                         "hide the GPU (CUDA_VISIBLE_DEVICES=) to profile the CPU")
    per_epoch = max(1, training.steps_per_epoch(config, len(prep.train_data)))
    if any(step % per_epoch == 0 for step in range(max(warmup, 1), warmup + steps)):
        print(f"note: an epoch ends within the profiled steps ({per_epoch} steps per epoch): its checkpoint save "
              "is profiled too")
    set_seed(config.training.seed)
    model = job.build_model(prep)
    trainer = C.loradesk_trainer(job, model, prep.tokenizer, prep.train_data, work / "run", prep.device,
                                 prep.precision)
    counter = C.TokenCounter()
    counter.attach(model)
    window = Window()
    trainer.add_callback(make_profiler_callback(warmup, steps, counter, window))
    with marked(model, trainer):
        trainer.train()
    if window.events is None:
        raise SystemExit("the profiled steps did not run: give the run more rows or fewer steps")
    print(f"Run: {prep.model_dir.name}, precision {prep.precision}, {torch.get_num_threads()} threads, "
          f"LoRA r {config.lora.r} on {len(model.peft_config['default'].target_modules)} module kinds, "
          f"batch {config.training.batch_size}, {len(prep.train_data)} training rows")
    return window, model


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=None, help="profiled optimizer steps (default 3; 1 with --quick)")
    p.add_argument("--warmup", type=int, default=None, help="steps before profiling (default 2; 1 with --quick)")
    p.add_argument("--model-dir", type=Path, default=None, help="a local model folder (default: the built-in model)")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                   help="change a run setting, e.g. training.precision=fp32 or lora.r=16 (repeatable)")
    p.add_argument("--quick", action="store_true", help="the tiny model, 1 profiled step (a smoke run)")
    p.add_argument("--markdown", action="store_true", help="print the tables as markdown")
    p.add_argument("--trace", type=Path, default=None, metavar="FILE", help="also write a chrome trace to FILE")
    p.add_argument("--top", type=int, default=15, help="ops listed by self time (default 15)")
    args = p.parse_args(argv)
    steps = args.steps if args.steps is not None else (1 if args.quick else 3)
    warmup = args.warmup if args.warmup is not None else (1 if args.quick else 2)
    if steps < 1 or warmup < 0:
        raise SystemExit("--steps must be at least 1 and --warmup at least 0")

    from loradesk.core.config import RunConfig

    config = apply_sets(RunConfig(), args.sets)
    import torch

    print(f"Machine: {cpu_name()} ({cpu_flags()}), torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    print(f"Settings: RunConfig() defaults{'; ' + ', '.join(args.sets) if args.sets else ''}; "
          f"data/sample.json; {steps} profiled steps after {warmup} warm-up steps", flush=True)
    with tempfile.TemporaryDirectory(prefix="loradesk-profile-") as tmp:
        work = Path(tmp)
        model_dir = args.model_dir
        if args.quick and model_dir is None:
            model_dir = C.build_tiny_model(work / "tiny-model")
        if model_dir is not None:
            config.model.kind, config.model.name = "local", str(model_dir)
        window, model = profile_run(config, C.sample_rows(), warmup, steps, work)
        counts = {k: v / steps for k, v in window.counts.items()}
        unprofiled = (f"; the last warm-up step, not profiled: {window.unprofiled_step:.2f} s"
                      if window.unprofiled_step is not None else "")
        print(f"Profiled: {steps} steps, {window.wall:.2f} s ({window.wall / steps:.3f} s per step){unprofiled}; "
              f"per step {counts.get('rows', 0):.0f} rows, {counts.get('tokens', 0):,.0f} tokens "
              f"({counts.get('real', 0):,.0f} not padding, {counts.get('loss', 0):,.0f} with loss)", flush=True)
        vocab = model.get_base_model().config.get_text_config().vocab_size
        weights = frozenset(tuple(m.weight.shape) for name, m in model.named_modules()
                            if isinstance(m, torch.nn.Linear) and ".lora_" not in name)
        result = attribute(window.events, vocab, config.lora.r, weights)
        report(result, window, steps, args.top, args.markdown)
        if args.trace:
            window.trace.export_chrome_trace(str(args.trace))
            print(f"\nchrome trace: {args.trace}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
