"""Where a training run's memory goes: the peak resident memory of a real run, part by part.

Each measurement is one real ``loradesk.core.training.run`` (default settings, ``data/sample.json``, the
built-in model) in a fresh process: a process that has trained keeps memory, so every figure must come from
its own process. Inside it, a thread samples the resident memory (RSS) every 2 ms and the script marks the
run's moments: the ML stack imported (torch, transformers, peft, datasets, accelerate), the tokenizer and
rows ready, the base model loaded and wrapped with LoRA, the Trainer started, each step (forward and
backward, then the optimizer), each checkpoint, the final save. Attached to the run only from outside (a
TrainerCallback and hooks on the model; ``training.run`` itself is not changed), it also counts tensor
bytes: base weights by dtype, the LoRA adapter, its gradients and optimizer state, what each step saves for
the backward pass (weight copies made by autocast, logits-sized tensors, other activations) and the LM
head's output, plus the distinct batch shapes (on the CPU each new one leaves oneDNN kernels behind: read
from the C allocator's bytes in use, glibc ``mallinfo2``).

The peak is printed as a sum of parts: the RSS each stretch of the run added up to the stretch where the
peak happened, plus that stretch's own transient. The process's kernel high-water mark (``ru_maxrss`` from
``os.wait4``) is the figure the <= 1.8 GB goal is about.

``--env KEY=VALUE[,KEY=VALUE]`` adds a variant run with those environment variables (e.g.
``MALLOC_ARENA_MAX=2``, ``ONEDNN_PRIMITIVE_CACHE_CAPACITY=8``); variants run interleaved (A B A B ...)
``--repeat`` times, and each figure is printed as median (min-max); a difference to the first variant
within the spreads (or under 1 %) is printed as "no difference".

    LORADESK_MODELS=/tmp/heavy-models nice -n 10 python benchmarks/memory_parts.py --max-steps 24
    python benchmarks/memory_parts.py --quick      # a tiny model, 2 steps: only shows the script works
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import _common as C
from _common import DATA, build_tiny_model

MIB = 2**20
STACK = ("torch", "datasets", "accelerate", "transformers", "peft")  # each without what came before


# --- inside the measured process ---------------------------------------------------------------------------
def weights_file_rss() -> int:
    """Resident bytes of this process's mapped ``.safetensors`` files (Linux ``/proc/self/smaps``), else 0."""
    total, weights = 0, False
    try:
        lines = Path("/proc/self/smaps").read_text().splitlines()
    except OSError:
        return 0
    for line in lines:
        if line.startswith("Rss:"):
            total += int(line.split()[1]) * 1024 if weights else 0
        elif not line[:1].isupper():  # a mapping's header: address range, permissions, ..., path
            weights = line.rstrip().endswith(".safetensors")
    return total


def make_sampler(interval: float) -> Any:
    """The pre-flight check's RSS sampler, also keeping the file-backed part of its peak sample."""
    from loradesk.core.preflight import PeakRss

    class Sampler(PeakRss):
        def __init__(self) -> None:
            super().__init__(interval)
            self.shared = self.peak_shared = self._process.memory_info().shared

        def _sample(self) -> None:
            while not self._done.wait(self._interval):
                self.current()

        def current(self) -> int:
            info = self._process.memory_info()  # shared: file-backed resident pages (statm)
            if info.rss >= self.peak:
                self.peak, self.peak_shared = info.rss, info.shared
            self.shared = info.shared
            return info.rss

    return Sampler()


def storage_key(t: Any) -> tuple[int, int] | None:
    try:
        storage = t.untyped_storage()
    except (RuntimeError, NotImplementedError):
        return None
    return storage.data_ptr(), storage.nbytes()


class Recorder:
    """The run's moments (marks) with RSS, peak since the last mark and allocator figures, and per step the
    tensors it saved, its logits, batch shape and time."""

    def __init__(self, interval: float) -> None:
        self.sampler = make_sampler(interval)
        self.marks: list[dict[str, Any]] = []
        self.steps: list[dict[str, Any]] = []
        self.tensors: dict[str, int] = {}
        self.optimizer_bytes = 0
        self.shapes: set[tuple[int, ...]] = set()

    def mark(self, label: str, group: str, files: bool = True) -> None:
        """Start a stretch of the run; ``files=False`` skips reading the mapped files (20 ms) inside a step."""
        from loradesk.core.preflight import malloc_stats

        sampler = self.sampler
        rss, shared = sampler.current(), sampler.shared
        if self.marks:
            self.marks[-1].update(peak=sampler.peak, peak_shared=sampler.peak_shared)
        sampler.peak, sampler.peak_shared = rss, shared
        info = malloc_stats() or {}
        files = files or not self.marks
        weights = weights_file_rss() if files else self.marks[-1]["weights_file"]
        self.marks.append({"label": label, "group": group, "time": time.monotonic(), "rss": rss, "shared": shared,
                           "weights_file": weights, "files_read": files,
                           "in_use": info.get("uordblks", 0) + info.get("hblkhd", 0),
                           "free_kept": info.get("fordblks", 0), "peak": rss, "peak_shared": shared})

    # tensors of the model, once built
    def count_model(self, model: Any) -> None:
        seen: set[int] = set()
        for p in [*model.parameters(), *model.buffers()]:
            key = storage_key(p)
            if key is None or key[0] in seen:  # tied weights (embedding = LM head) count once
                continue
            seen.add(key[0])
            part = "LoRA adapter" if p.requires_grad else "base weights"
            kind = f"{part} ({str(p.dtype).removeprefix('torch.')})"
            self.tensors[kind] = self.tensors.get(kind, 0) + key[1]

    def attach(self, model: Any) -> None:
        """Hooks that see each training forward: its batch shape, loss positions and LM-head output."""
        params = [p for _n, p in model.named_parameters()]
        self._param_ptrs = {k[0] for p in params if (k := storage_key(p))}
        self._weight_shapes = {s for p in params if p.dim() == 2 and not p.requires_grad
                               for s in (tuple(p.shape), tuple(p.shape)[::-1])}
        self._vocab = int(getattr(model.config, "vocab_size", 0) or 0)
        model.register_forward_pre_hook(self._on_forward, with_kwargs=True)
        head = model.get_output_embeddings()
        if head is not None:
            head.register_forward_hook(self._on_head)

    def _on_forward(self, module: Any, args: Any, kwargs: dict[str, Any]) -> None:
        ids, labels = kwargs.get("input_ids"), kwargs.get("labels")
        if not module.training or ids is None or not self.steps:
            return
        step = self.steps[-1]
        step["shape"] = list(ids.shape)
        self.shapes.add(tuple(ids.shape))
        step["positions"] = int(ids.numel())
        step["loss_positions"] = int((labels != -100).sum()) if labels is not None else int(ids.numel())

    def _on_head(self, module: Any, args: Any, output: Any) -> None:
        if module.training and self.steps and hasattr(output, "nbytes"):
            self.steps[-1]["logits"] = max(self.steps[-1].get("logits", 0), int(output.nbytes))

    def _pack(self, t: Any) -> Any:
        key = storage_key(t)
        saved = self.steps[-1]["saved_keys"]
        if key is not None and key[0] not in saved:
            if key[0] in self._param_ptrs:
                kind = "parameters (no copy)"
            elif (not t.requires_grad and t.grad_fn is None and t.dtype in self._half
                  and tuple(t.shape) in self._weight_shapes):
                kind = "weight copies (autocast)"
            elif self._vocab and t.dim() and t.shape[-1] == self._vocab:
                kind = "logits-sized"
            else:
                kind = "other activations"
            saved[key[0]] = (kind, key[1])
        return t

    def callback(self) -> Any:
        import torch
        from transformers import TrainerCallback

        rec = self
        rec._half = (torch.bfloat16, torch.float16)

        class Marks(TrainerCallback):
            def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
                rec.mark("trainer started", "trainer")

            def on_step_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
                n = state.global_step + 1
                rec.mark(f"step {n}", "step 1" if n == 1 else "later steps")
                rec.steps.append({"step": n, "saved_keys": {}, "started": time.monotonic(),
                                  "rss_before": rec.marks[-1]["rss"]})
                self.hooks = torch.autograd.graph.saved_tensors_hooks(rec._pack, lambda t: t)
                self.hooks.__enter__()

            def on_pre_optimizer_step(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
                self.hooks.__exit__(None, None, None)
                step = rec.steps[-1]
                step["grads"] = sum(p.grad.nbytes for p in kw["model"].parameters() if p.grad is not None)
                rec.mark(f"step {step['step']} optimizer", rec.marks[-1]["group"], files=False)

            def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
                step = rec.steps[-1]
                step["seconds"] = time.monotonic() - step["started"]
                optimizer = kw.get("optimizer")
                if optimizer is not None:
                    rec.optimizer_bytes = sum(v.nbytes for s in optimizer.state.values() for v in s.values()
                                              if hasattr(v, "nbytes"))
                rec.mark(f"after step {step['step']}", "later steps")
                step["peak"] = max(rec.marks[-3]["peak"], rec.marks[-2]["peak"])
                step["rss_after"], step["in_use_after"] = rec.marks[-1]["rss"], rec.marks[-1]["in_use"]
                saved: dict[str, int] = {}
                for kind, nbytes in step.pop("saved_keys").values():
                    saved[kind] = saved.get(kind, 0) + nbytes
                step["saved"] = saved

            def on_save(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
                rec.marks[-1].update(label=f"checkpoint at step {state.global_step}", group="checkpoints")
                rec.mark(f"after the checkpoint at step {state.global_step}", "later steps")

            def on_train_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
                rec.mark("final save (adapter, run file)", "final save")

        return Marks()


def child(spec_file: str) -> None:
    """One measured run: the spec names the config, rows, steps and where to write the figures."""
    spec = json.loads(Path(spec_file).read_text())
    rec = Recorder(spec["interval"])
    with rec.sampler:
        for name in STACK:
            rec.mark(f"import {name}", "ML stack")
            __import__(name)
            if name == "transformers":  # the lazy modules a run loads
                from transformers import AutoModelForCausalLM, Trainer  # noqa: F401
        rec.mark("tokenizer, rows tokenized", "tokenizer + rows")
        from loradesk.core import training
        from loradesk.core.config import RunConfig
        from loradesk.core.formats import read_dataset

        config = RunConfig.from_dict(spec["config"])
        rows = read_dataset(Path(spec["data"]))
        build_model, build_trainer = training.TrainingJob.build_model, training.TrainingJob.build_trainer

        def measured_build_model(job: Any, prep: Any) -> Any:
            rec.mark("base model loaded, LoRA added", "model")
            model = build_model(job, prep)
            rec.count_model(model)
            rec.mark("run folder, Trainer built", "trainer")
            return model

        def measured_build_trainer(job: Any, model: Any, *args: Any, **kwargs: Any) -> Any:
            built = build_trainer(job, model, *args, **kwargs)
            rec.attach(model)
            built[0].add_callback(rec.callback())
            return built

        training.TrainingJob.build_model = measured_build_model  # type: ignore[method-assign]
        training.TrainingJob.build_trainer = measured_build_trainer  # type: ignore[method-assign]
        result = training.run(config, rows, out_dir=Path(spec["run_dir"]))
        rec.mark("end", "end")
    rec.marks[-1].update(peak=rec.sampler.peak, peak_shared=rec.sampler.peak_shared)
    import torch

    Path(spec["out"]).write_text(json.dumps({
        "marks": rec.marks, "steps": rec.steps, "tensors": rec.tensors, "optimizer": rec.optimizer_bytes,
        "shapes": sorted(rec.shapes), "precision": result.precision, "device": result.device,
        "torch": torch.__version__, "threads": torch.get_num_threads(), "run_steps": result.steps}))


# --- the figures of one run --------------------------------------------------------------------------------
PART_NAMES = {
    "interpreter": "Interpreter + loradesk, no ML stack (RSS at start)",
    "ML stack": "ML stack imported (torch, datasets, accelerate, transformers, peft)",
    "tokenizer + rows": "Tokenizer loaded, rows tokenized (heap)",
    "model": "Base model loaded + LoRA added (heap)",
    "weights file": "Base weights: mmapped .safetensors pages, as first used (file-backed)",
    "library code": "Library code and other files paged in after the imports (file-backed)",
    "trainer": "Run folder, Trainer built and started (heap)",
    "step 1": "Kept after step 1 (heap: optimizer state, kernels, freed memory the allocator keeps)",
    "later steps": "Growth over later steps (heap: new batch shapes)",
    "checkpoints": "Kept after checkpoint saves (heap)",
    "final save": "Final save (heap)",
    "transient": "Transient at the peak (heap: activations, logits, weight copies; freed after)",
}


def peak_parts(marks: list[dict[str, Any]], j: int) -> dict[str, int]:
    """The peak (of the stretch starting at mark ``j``) as the sum of what each stretch before it added to the
    RSS, heap and file-backed pages apart, plus the peak stretch's own growth."""
    parts = dict.fromkeys(PART_NAMES, 0)
    parts["interpreter"] = marks[0]["rss"]
    for i in range(j):
        a, b = marks[i], marks[i + 1]
        if a["group"] == "ML stack":
            parts["ML stack"] += b["rss"] - a["rss"]
            continue
        heap = (b["rss"] - b["shared"]) - (a["rss"] - a["shared"])
        parts[a["group"] if a["group"] in parts else "later steps"] += heap
        weights = b["weights_file"] - a["weights_file"]
        parts["weights file"] += weights
        parts["library code"] += b["shared"] - a["shared"] - weights
    a = marks[j]
    after = next((m["weights_file"] for m in marks[j + 1:] if m["files_read"]), a["weights_file"])
    files = a["peak_shared"] - a["shared"]
    weights = min(max(0, after - a["weights_file"]), max(0, files))  # its file pages stay: read at its end
    parts["weights file"] += weights
    parts["library code"] += files - weights
    parts["transient"] = (a["peak"] - a["peak_shared"]) - (a["rss"] - a["shared"])
    return parts


def figures(data: dict[str, Any], kernel_peak: int) -> dict[str, Any]:
    """Every printed figure of one run: MiB unless the name says otherwise."""
    marks, steps = data["marks"], data["steps"]
    out: dict[str, Any] = {}
    j = max(range(len(marks)), key=lambda i: marks[i]["peak"])
    for part, nbytes in peak_parts(marks, j).items():
        out[f"Peak part: {PART_NAMES[part]}"] = nbytes / MIB
    out["Peak (sampled RSS), sum of the parts"] = marks[j]["peak"] / MIB
    out["Peak (kernel high-water mark, ru_maxrss)"] = kernel_peak / MIB
    out["peak during"] = marks[j]["label"]

    imports = [i for i, m in enumerate(marks) if m["group"] == "ML stack"]
    for i in imports:
        out[f"ML stack: {marks[i]['label']} (RSS added)"] = (marks[i + 1]["rss"] - marks[i]["rss"]) / MIB
    out["ML stack: file-backed (library code)"] = (marks[imports[-1] + 1]["shared"] - marks[0]["shared"]) / MIB
    for kind, nbytes in sorted(data["tensors"].items()):
        out[f"Tensors: {kind}"] = nbytes / MIB
    grads = max((s.get("grads", 0) for s in steps), default=0)
    out["Tensors: LoRA gradients"] = grads / MIB
    out["Tensors: optimizer state (AdamW)"] = data["optimizer"] / MIB
    if steps:
        peak_step = max(steps, key=lambda s: sum(s["saved"].values()))
        for kind in ("weight copies (autocast)", "logits-sized", "other activations", "parameters (no copy)"):
            out[f"Saved for backward, biggest step: {kind}"] = peak_step["saved"].get(kind, 0) / MIB
        out["LM head output (logits), biggest step"] = max(s.get("logits", 0) for s in steps) / MIB
        out["biggest step's batch shape"] = "x".join(map(str, peak_step.get("shape", [])))
        first = steps[0]
        out["Step 1: transient (peak - RSS before)"] = (first["peak"] - first["rss_before"]) / MIB
        out["Step 1: kept (RSS after - before)"] = (first["rss_after"] - first["rss_before"]) / MIB
        out["Steps 2-N: RSS growth"] = (steps[-1]["rss_after"] - first["rss_after"]) / MIB
        out["Steps 2-N: allocator in-use growth"] = (steps[-1]["in_use_after"] - first["in_use_after"]) / MIB
        out["Distinct batch shapes (count)"] = len(data["shapes"])
        new = max(1, len(data["shapes"]) - 1)
        out["Allocator in-use growth per new shape"] = out["Steps 2-N: allocator in-use growth"] / new
        loss = sum(s.get("loss_positions", 0) for s in steps) / max(1, sum(s.get("positions", 0) for s in steps))
        out["Loss-bearing positions (%)"] = 100 * loss
        times = [s["seconds"] for s in steps[1:]] or [steps[0]["seconds"]]
        out["Time per step, median of steps 2-N (s)"] = statistics.median(times)
    saves = [i for i, m in enumerate(marks) if m["group"] == "checkpoints"]
    if saves:
        out["Checkpoint save: transient"] = max(marks[i]["peak"] - marks[i]["rss"] for i in saves) / MIB
    final = [i for i, m in enumerate(marks) if m["group"] == "final save"]
    if final:
        out["Final save: transient"] = (marks[final[0]]["peak"] - marks[final[0]]["rss"]) / MIB
    end = marks[-1]
    out["At the end: RSS"] = end["rss"] / MIB
    out["At the end: allocator in use"] = end["in_use"] / MIB
    out["At the end: allocator freed but kept"] = end["free_kept"] / MIB
    out["At the end: RSS file-backed (libraries, mapped files)"] = end["shared"] / MIB
    out["At the end: of which the base weights' .safetensors pages"] = end["weights_file"] / MIB
    return out


# --- the comparison ----------------------------------------------------------------------------------------
def parse_sets(pairs: list[str], config: Any) -> Any:
    """``section.field=value`` settings applied to a RunConfig (value as JSON, else as a string)."""
    from loradesk.core.config import ConfigError, RunConfig

    data = config.to_dict()
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        section, dot, name = key.partition(".")
        if not sep or not dot or section not in RunConfig.SECTIONS:
            raise SystemExit(f"--set {pair}: expected section.field=value with section model, lora or training")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        data[section][name] = value
    try:
        return RunConfig.from_dict(data, "--set")
    except ConfigError as exc:
        raise SystemExit(str(exc)) from None


def parse_env(text: str) -> dict[str, str]:
    env = {}
    for pair in filter(None, text.split(",")):
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise SystemExit(f"--env {text}: expected KEY=VALUE[,KEY=VALUE]")
        env[key.strip()] = value
    return env


def measure(config: Any, data: Path, env: dict[str, str], work: Path, n: int, interval: float) -> dict[str, Any]:
    run_dir, spec_file, out = work / f"run-{n}", work / f"spec-{n}.json", work / f"figures-{n}.json"
    spec_file.write_text(json.dumps({"config": config.to_dict(), "data": str(data), "out": str(out),
                                     "run_dir": str(run_dir), "interval": interval}))
    child = [sys.executable, str(Path(__file__).resolve()), "--child", str(spec_file)]
    wall, kernel_peak = C.run_child(child, extra_env=env)
    result = json.loads(out.read_text())
    shutil.rmtree(run_dir, ignore_errors=True)
    return {"figures": figures(result, kernel_peak) | {"Wall time of the process (s)": wall}, "raw": result}


def cell(values: list[float]) -> str:
    med = statistics.median(values)
    digits = 0 if abs(med) >= 10 or (all(isinstance(v, int) for v in values) and med == int(med)) else 2
    text = f"{med:,.{digits}f}"
    return text if len(values) == 1 else f"{text} ({min(values):,.{digits}f}-{max(values):,.{digits}f})"


def verdict(base: list[float], other: list[float]) -> str:
    """The other variant's median minus the first's, or "no difference" when the two spreads (min-max)
    overlap (``_common.verdict``) or the difference is under 1 % (a page or two of memory, a clock rounding)."""
    _ratio, word = C.verdict(C.spread(other), C.spread(base))
    diff = statistics.median(other) - statistics.median(base)
    ref = statistics.median(base)
    if word == "no difference" or abs(diff) < max(0.01 * abs(ref), 0.01):
        return "no difference"
    share = f" ({diff / ref:+.0%})" if ref else ""
    return f"{diff:+,.{2 if abs(diff) < 10 else 0}f}{share}" + (" (one run each)" if len(base) == 1 else "")


def print_table(names: list[str], results: dict[str, list[dict[str, Any]]], markdown: bool) -> None:
    variants = list(results)
    header = ["Figure (MiB unless noted)", *variants, *[f"{v} vs {variants[0]}" for v in variants[1:]]]
    rows = []
    for name in names:
        per = [[r[name] for r in results[v] if name in r] for v in variants]
        if not all(per):
            continue
        if isinstance(per[0][0], str):
            rows.append([name, *[" / ".join(dict.fromkeys(p)) for p in per], *[""] * (len(variants) - 1)])
        else:
            rows.append([name, *[cell(p) for p in per], *[verdict(per[0], p) for p in per[1:]]])
    if markdown:
        print("| " + " | ".join(header) + " |")
        print("|" + " --- |" * len(header))
        for row in rows:
            print("| " + " | ".join(row) + " |")
        return
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def estimates(f: dict[str, Any], raw: dict[str, Any]) -> list[str]:
    """What the usual memory cuts would save on this run, from its own figures (estimates, not measured)."""
    out = []
    fp32 = f.get("Tensors: base weights (float32)", 0)
    copies = f.get("Saved for backward, biggest step: weight copies (autocast)", 0)
    if fp32:
        out.append(f"base weights held in bf16: -{fp32 / 2:,.0f} MiB of weights"
                   + (f", and the step's {copies:,.0f} MiB of autocast weight copies go" if copies else ""))
    logits = f.get("Saved for backward, biggest step: logits-sized", 0)
    share = f.get("Loss-bearing positions (%)", 100) / 100
    if logits:
        out.append(f"logits only at the loss-bearing positions ({share:.0%} of all): the biggest step's "
                   f"{logits:,.0f} MiB of saved logits-sized tensors -> ~{logits * share:,.0f} MiB")
    kept = f.get("At the end: allocator freed but kept", 0)
    if kept > 64:
        out.append(f"the C allocator keeps {kept:,.0f} MiB freed at the end: compare --env MALLOC_TRIM_THRESHOLD_=0 "
                   "(which also fixes glibc's mmap threshold, so big tensors go back to the system when freed)")
    shapes = [tuple(s) for s in raw["shapes"]]
    per_shape = f.get("Allocator in-use growth per new shape", 0)
    for multiple in (32, 64):
        rounded = {(s[0], -(-s[1] // multiple) * multiple) for s in shapes}
        out.append(f"lengths padded to a multiple of {multiple}: {len(shapes)} -> {len(rounded)} batch shapes, "
                   f"~{per_shape * (len(shapes) - len(rounded)):,.0f} MiB less kept at "
                   f"{per_shape:,.0f} MiB per shape (longer batches cost more per step)")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--max-steps", type=int, default=0,
                    help="train this many steps (default 0: the whole run, 3 epochs, every batch shape)")
    ap.add_argument("--repeat", type=int, default=1, help="rounds of all variants, interleaved (default 1)")
    ap.add_argument("--env", action="append", default=[], metavar="KEY=VALUE[,KEY=VALUE]",
                    help="a variant with these environment variables (repeatable)")
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                    help="a RunConfig setting for every variant, e.g. training.precision=fp32 (repeatable)")
    ap.add_argument("--data", type=Path, default=DATA / "sample.json")
    ap.add_argument("--interval-ms", type=float, default=2.0, help="RSS sampling interval (default 2 ms)")
    ap.add_argument("--markdown", action="store_true", help="print the tables as Markdown")
    ap.add_argument("--quick", action="store_true", help="a tiny model, 2 steps (a smoke run)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child)
        return 0

    from loradesk.core.config import RunConfig
    from loradesk.core.wording import plural

    work = Path(tempfile.mkdtemp(prefix="memory-parts-"))
    config = parse_sets(args.set, RunConfig())
    if args.quick:
        tiny = build_tiny_model(work / "tiny")
        config.model.kind, config.model.name = "local", str(tiny)
        args.max_steps = args.max_steps or 2
    config.training.max_steps = args.max_steps
    config.training.preflight = False
    variants = {"as is": {}} | {text: parse_env(text) for text in args.env}
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in variants}
    raws: dict[str, list[dict[str, Any]]] = {name: [] for name in variants}
    load = [os.getloadavg()[0]]
    try:
        n = 0
        for round_ in range(args.repeat):
            for name, env in variants.items():
                n += 1
                print(f"round {round_ + 1}/{args.repeat}, {name}: training…", flush=True)
                measured = measure(config, args.data, env, work, n, args.interval_ms / 1000)
                results[name].append(measured["figures"])
                raws[name].append(measured["raw"])
                load.append(os.getloadavg()[0])
                print(f"  peak {measured['figures']['Peak (kernel high-water mark, ru_maxrss)']:,.0f} MiB, "
                      f"{measured['figures'].get('Time per step, median of steps 2-N (s)', 0):.2f} s/step",
                      flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    raw = raws["as is"][0]
    settings = ", ".join(args.set) or "default settings"
    print(f"\nMachine: {C.cpu_name()}, {os.cpu_count()} CPUs, {raw['device']}, torch {raw['torch']}; "
          f"{raw['precision']}; {settings}; {plural(raw['run_steps'], 'step')}; {args.data.name}")
    print(f"Load average (1 min) from {min(load):.1f} to {max(load):.1f}"
          + ("; a busy machine: time and peak figures vary with it" if max(load) > (os.cpu_count() or 1) / 2
             else ""))
    names = list(dict.fromkeys(k for runs in results.values() for r in runs for k in r))
    print("\nThe peak, part by part (each part: the RSS its stretch of the run added before the peak's stretch)")
    print_table([k for k in names if k.startswith("Peak") or k == "peak during"], results, args.markdown)
    print("\nWhat the parts hold (tensor bytes) and the rest of the run")
    print_table([k for k in names if not k.startswith("Peak") and k != "peak during"], results, args.markdown)
    shapes = raw["shapes"]
    print(f"\nBatch shapes seen ({len(shapes)}): {', '.join('x'.join(map(str, s)) for s in shapes)}")
    print("\nEstimates from these figures (not measured):")
    for line in estimates(results["as is"][0], raw):
        print(f"  {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
