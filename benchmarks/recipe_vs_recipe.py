"""The tutorial's LoRA recipe against LoRA Desk's defaults: same machine, model and data, one run.

Each recipe trains in its own subprocess (so peak memory is its own) on ``data/sample.json`` with the
built-in model (SmolLM2-135M-Instruct). At every epoch end the training clock pauses, the model answers the
probe (``data/sample_heldout.json`` row 1) greedily, in the format it was trained on, and the clock resumes:
time-to-learn is training time only. Printed per recipe: wall time per epoch, rows/s, loss-bearing
tokens/s, padding fraction, peak memory and time-to-learn; then the ratios.

    python benchmarks/recipe_vs_recipe.py                 # the full measurement
    python benchmarks/recipe_vs_recipe.py --markdown      # plus a table for docs/benchmarks.md
    python benchmarks/recipe_vs_recipe.py --quick         # a smoke run on a tiny model (~30 s)
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import _common as C

from loradesk.core.wording import plural_word

RECIPES = ("loradesk", "tutorial")
TITLES = {"tutorial": "Tutorial", "loradesk": "LoRA Desk"}
TIME_TO_LEARN_TARGET = 5.0
TOKENS_TARGET = 2.0


# --- one recipe, in its own process -------------------------------------------------------------------------
def run_recipe(recipe: str, model_dir: Path | None, rows_limit: int | None, max_epochs: float | None,
               time_budget: float, stop_when_learned: bool, max_new_tokens: int) -> dict[str, Any]:
    """Train one recipe with the epoch-end probe; return its measurements."""
    import torch
    from transformers import set_seed

    from loradesk.core import models
    from loradesk.core.config import RunConfig
    from loradesk.core.dataset import split_rows
    from loradesk.core.tokenize import has_chat_template, render_prompt

    rows = C.sample_rows(rows_limit)
    question, expected = C.probe()
    counter = C.TokenCounter()
    work = Path(tempfile.mkdtemp(prefix=f"loradesk-bench-{recipe}-"))
    config = RunConfig()
    if model_dir is not None:
        config.model.kind, config.model.name = "local", str(model_dir)
    model_dir = models.resolve_model(config.model)
    device = models.pick_device()
    tokenizer = models.load_tokenizer(model_dir)
    set_seed(42)

    if recipe == "tutorial":
        precision = "fp32"
        data = C.tutorial_dataset(tokenizer, rows)
        model = C.tutorial_lora(models.load_model(model_dir, device, torch.float32))
        trainer = C.tutorial_trainer(model, data, work / "out", device)
        prompt_text, special = f"{question}\n", True
        epochs_cap, budget = max_epochs or C.TUTORIAL_EPOCHS, time_budget
    else:
        t = config.training
        precision = models.resolve_precision(device, t.precision)
        if t.threads:
            torch.set_num_threads(t.threads)
        job = C.loradesk_job(config, rows)
        train_rows, _ = split_rows(rows, t.validation_fraction, t.seed)
        data, _cut = job.encode(tokenizer, train_rows)
        model = job.wrap_lora(job.load_base(model_dir, device, precision, max(data["length"])))
        trainer = C.loradesk_trainer(job, model, tokenizer, data, work / "run", device, precision)
        prompt_text = render_prompt(tokenizer, question, t.use_chat_template)
        special = not (t.use_chat_template and has_chat_template(tokenizer))
        epochs_cap, budget = min(t.epochs, max_epochs or t.epochs), 0.0

    counter.attach(model)
    def ask() -> str:
        return C.greedy_answer(model, tokenizer, prompt_text, special, device, max_new_tokens)

    clock = C.make_clock_callback(model, counter, ask, expected, device, epochs_cap, budget,
                                  stop_when_learned, TITLES[recipe])
    trainer.add_callback(clock)
    print(f"[{TITLES[recipe]}] training on {len(rows)} rows, {models.device_description(device)}, "
          f"{precision}", flush=True)
    trainer.train()
    return {
        "recipe": recipe, "device": models.device_description(device), "precision": precision,
        "threads": torch.get_num_threads(), "rows": len(rows), "model": model_dir.name,
        "epochs": clock.epochs, "epochs_run": clock.final_epoch, "train_seconds": clock.final_seconds,
        "time_to_learn": clock.time_to_learn, "budget_hit": clock.budget_hit, "epochs_cap": epochs_cap,
        "time_budget": budget, "counts": counter.snapshot(), "peak_rss_mib": C.peak_rss_mib(),
        "answer": clock.epochs[-1]["answer"] if clock.epochs else "",
    }


# --- the comparison ---------------------------------------------------------------------------------------
def figures(r: dict[str, Any]) -> dict[str, float | None]:
    s, c = r["train_seconds"], r["counts"]
    return {
        "epoch": s / r["epochs_run"] if r["epochs_run"] else None,
        "rows": c["rows"] / s if s else None,
        "loss": c["loss"] / s if s else None,
        "loss_real": c["loss_real"] / s if s else None,
        "padding": 1 - c["real"] / c["tokens"] if c["tokens"] else None,
        "memory": r["peak_rss_mib"],
        "ttl": r["time_to_learn"],
    }


def learn_text(r: dict[str, Any]) -> str:
    if r["time_to_learn"] is not None:
        epoch = next(e["epoch"] for e in r["epochs"] if e["learned"])
        return f"{C.fmt_seconds(r['time_to_learn'])} (epoch {epoch:g})"
    epochs = r["epochs_run"]
    return f"not learned within {epochs:g} {plural_word(epochs, 'epoch')} / {C.fmt_seconds(r['train_seconds'])}"


def ratio(ours: float | None, theirs: float | None) -> float | None:
    return ours / theirs if ours and theirs else None


def ttl_ratio(tut: dict[str, Any], ours: dict[str, Any]) -> tuple[str, bool | None]:
    """Time-to-learn speed-up as text, and whether it meets the target (None: unknown)."""
    if ours["time_to_learn"] is None:
        return "n/a (LoRA Desk did not learn)", False
    if tut["time_to_learn"] is None:
        bound = tut["train_seconds"] / ours["time_to_learn"]
        return f">= {bound:.1f}x", True if bound >= TIME_TO_LEARN_TARGET else None
    x = tut["time_to_learn"] / ours["time_to_learn"]
    return f"{x:.1f}x", x >= TIME_TO_LEARN_TARGET


def x(v: float | None, what: str = "") -> str:
    return f"{v:.2f}x{what}" if v is not None else "n/a"


def table(tut: dict[str, Any], ours: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    ft, fo = figures(tut), figures(ours)

    def num(v: float | None, unit: str = "", digits: int = 0) -> str:
        return f"{v:,.{digits}f}{unit}" if v is not None else "n/a"

    ttl, _ = ttl_ratio(tut, ours)
    return [
        ("Wall time per epoch", C.fmt_seconds(ft["epoch"]), C.fmt_seconds(fo["epoch"]),
         x(ratio(ft["epoch"], fo["epoch"]), " faster")),
        ("Rows/s", num(ft["rows"], digits=2), num(fo["rows"], digits=2), x(ratio(fo["rows"], ft["rows"]))),
        ("Loss-bearing tokens/s (label != -100)", num(ft["loss"]), num(fo["loss"]),
         x(ratio(fo["loss"], ft["loss"]))),
        ("Loss-bearing non-pad tokens/s", num(ft["loss_real"]), num(fo["loss_real"]),
         x(ratio(fo["loss_real"], ft["loss_real"]))),
        ("Padding fraction", num(100 * ft["padding"], " %", 1) if ft["padding"] is not None else "n/a",
         num(100 * fo["padding"], " %", 1) if fo["padding"] is not None else "n/a", ""),
        ("Peak memory (RSS)", num(ft["memory"], " MiB"), num(fo["memory"], " MiB"),
         x(ratio(fo["memory"], ft["memory"]), " the memory")),
        ("Time-to-learn", learn_text(tut), learn_text(ours), ttl),
        ("Precision", tut["precision"], ours["precision"], ""),
    ]


def report(tut: dict[str, Any], ours: dict[str, Any], markdown: bool) -> str:
    rows = table(tut, ours)
    lines = [f"Recipe vs recipe: {tut['model']}, {tut['rows']} rows of data/sample.json, {tut['device']}, "
             f"torch {__import__('torch').__version__}, {platform.machine()}", ""]
    widths = [max(len(r[i]) for r in [*rows, ("", "Tutorial", "LoRA Desk", "")]) for i in range(3)]
    for a, b, c, d in [("", "Tutorial", "LoRA Desk", "LoRA Desk vs tutorial"), *rows]:
        lines.append(f"{a:<{widths[0]}}  {b:>{widths[1]}}  {c:>{widths[2]}}  {d}".rstrip())
    ft, fo = figures(tut), figures(ours)
    ttl, ok = ttl_ratio(tut, ours)
    tok = ratio(fo["loss"], ft["loss"])
    tok_real = ratio(fo["loss_real"], ft["loss_real"])
    verdict = {True: "met", False: "NOT met", None: "undecided (lower bound below target)"}
    lines += [
        "",
        f"time-to-learn ratio: {ttl} (target >= {TIME_TO_LEARN_TARGET:g}x: {verdict[ok]})",
        f"tokens/s ratio (loss-bearing): {x(tok)} (target >= {TOKENS_TARGET:g}x: "
        f"{verdict[None if tok is None else tok >= TOKENS_TARGET]})",
        f"tokens/s ratio (loss-bearing, non-pad): {x(tok_real)}",
        "The tutorial's labels are its input_ids, so its loss-bearing tokens include the padding "
        f"({100 * (1 - tut['counts']['loss_real'] / max(1, tut['counts']['loss'])):.0f} % of them).",
    ]
    if markdown:
        lines += ["", "| Figure | Tutorial recipe | LoRA Desk defaults | LoRA Desk vs tutorial |",
                  "| --- | --- | --- | --- |"]
        lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true",
                   help="tiny model, 32 rows, 2 tutorial epochs (a smoke run)")
    p.add_argument("--max-epochs", type=float, default=None,
                   help="cap on the tutorial's epochs (default 10, the recipe's own; 2 with --quick)")
    p.add_argument("--loradesk-max-epochs", type=float, default=None,
                   help="cap on LoRA Desk's epochs (default: its own setting, 3); for short checks only")
    p.add_argument("--time-budget", type=float, default=3600.0,
                   help="cap on the tutorial's training seconds (default 3600)")
    p.add_argument("--keep-training", action="store_true",
                   help="train every epoch even after the probe is answered")
    p.add_argument("--rows", type=int, default=None, help="use only the first N rows of data/sample.json")
    p.add_argument("--model-dir", type=Path, default=None, help="a local model folder instead of the default")
    p.add_argument("--max-new-tokens", type=int, default=40, help="length of the probe answers")
    p.add_argument("--markdown", action="store_true", help="also print a Markdown table")
    p.add_argument("--only", choices=RECIPES, help=argparse.SUPPRESS)
    p.add_argument("--result-json", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.only:  # the worker process
        result = run_recipe(args.only, args.model_dir, args.rows, args.max_epochs, args.time_budget,
                            not args.keep_training, args.max_new_tokens)
        args.result_json.write_text(json.dumps(result), encoding="utf-8")
        return 0

    with tempfile.TemporaryDirectory(prefix="loradesk-bench-") as tmp:
        model_dir = args.model_dir
        rows, max_epochs = args.rows, args.max_epochs
        if args.quick:
            model_dir = model_dir or C.build_tiny_model(Path(tmp) / "tiny-model")
            rows, max_epochs = rows or 32, max_epochs or 2
        results = {}
        for recipe in RECIPES:
            out = Path(tmp) / f"{recipe}.json"
            cmd = [sys.executable, str(Path(__file__).resolve()), "--only", recipe, "--result-json", str(out),
                   "--time-budget", str(args.time_budget), "--max-new-tokens", str(args.max_new_tokens)]
            cmd += ["--model-dir", str(model_dir)] if model_dir else []
            cmd += ["--rows", str(rows)] if rows else []
            cap = max_epochs if recipe == "tutorial" else args.loradesk_max_epochs
            cmd += ["--max-epochs", str(cap)] if cap else []
            cmd += ["--keep-training"] if args.keep_training else []
            subprocess.run(cmd, check=True)
            results[recipe] = json.loads(out.read_text(encoding="utf-8"))
    print()
    print(report(results["tutorial"], results["loradesk"], args.markdown))
    return 0


if __name__ == "__main__":
    sys.exit(main())
