"""Two (or more) source trees of LoRA Desk trained on the same machine in one interleaved run: A B A B ...

Each variant is a folder holding a LoRA Desk checkout. Every run is a fresh process,
``python -m loradesk train DATA --out RUN [train args]``, started in that folder with that folder first on
``PYTHONPATH`` and this interpreter, so the only difference between variants is their code. Rounds of all
variants are repeated ``--repeat`` times, so slow moments of a shared machine fall on every variant alike.
From each run it reads:

* step time: the median of the differences between consecutive logged steps in ``metrics.jsonl``, the first
  step left out (it includes the warm-up);
* trained tokens/s: what the run recorded in ``loradesk_run.json`` (loss-bearing tokens per second of
  training, first step included);
* real tokens/s: trained tokens/s x (all non-pad tokens / trained tokens) of the rows the run trained on,
  encoded by that variant's own code from the run folder's ``dataset.jsonl`` and tokenizer (exact over whole
  epochs; over part of an epoch it takes the batches seen to be typical);
* the loss at each logged step, the wall time from the process's start to the adapter on disk, and the
  process's peak resident memory (``ru_maxrss`` from ``os.wait4``);
* with ``--eval HELDOUT``: ``python -m loradesk eval`` of the adapter in the same tree, n right out of N.

It prints, per figure and variant, the median and range over the repeats, the ratio to the first variant and
"no difference" where the two ranges overlap; then the loss curves side by side.

    python benchmarks/ab_runs.py --variant old=/path/to/old/checkout -- --max-steps 24
    python benchmarks/ab_runs.py --variant old=../old --variant new=. --repeat 5 --eval data/sample_heldout.json
    python benchmarks/ab_runs.py --quick    # the tiny model, 2 steps, this tree twice (a smoke run)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import _common as C

from loradesk.core.wording import plural

ENCODE = """
import json, sys, threading
from pathlib import Path
from loradesk.core import models, runs, training
from loradesk.core.config import RunConfig
from loradesk.core.dataset import split_rows
run = Path(sys.argv[1])
config = RunConfig.from_dict(runs.read_run_file(run)["config"])
rows = runs.load_dataset_snapshot(run)
train_rows, _ = split_rows(rows, config.training.validation_fraction, config.training.seed)
job = training.TrainingJob(config, rows, training.NullSink(), threading.Event())
data, _cut = job.encode(models.load_tokenizer(run), train_rows)
counts = {"real": sum(data["length"]), "trained": sum(sum(t != -100 for t in ids) for ids in data["labels"])}
Path(sys.argv[2]).write_text(json.dumps(counts))
"""
MIB = 2**20


@dataclass
class Run:
    """What one training process left behind."""

    step_s: float
    trained_tps: float
    wall_to_adapter: float
    process_wall: float
    peak_rss: int
    losses: dict[int, float]
    run_dir: Path
    real_tps: float | None = None
    score: tuple[int, int] | None = None


@dataclass
class Variant:
    name: str
    tree: Path
    runs: list[Run] = field(default_factory=list)
    real_per_trained: float | None = None  # the rows' non-pad tokens per trained token, by this tree's code


def parse_variant(text: str) -> tuple[str, Path]:
    name, sep, folder = text.partition("=")
    if not sep or not name or not folder:
        raise argparse.ArgumentTypeError(f"--variant {text!r}: give NAME=FOLDER, e.g. old=../old-checkout")
    tree = Path(folder).expanduser().resolve()
    if not (tree / "loradesk" / "__main__.py").is_file():
        raise argparse.ArgumentTypeError(f"--variant {text!r}: {tree} holds no LoRA Desk checkout "
                                         "(no loradesk/__main__.py)")
    return name, tree


def train_once(variant: Variant, data: Path, train_args: list[str], run_dir: Path, log: Path) -> Run:
    cmd = [sys.executable, "-m", "loradesk", "train", str(data), "--out", str(run_dir), *train_args]
    started = time.time()
    wall, peak = C.run_child(cmd, variant.tree, log)
    record = json.loads((run_dir / "loradesk_run.json").read_text(encoding="utf-8"))
    result = record["result"]
    if result.get("status") != "completed":
        raise SystemExit(f"{variant.name}: the run in {run_dir} ended {result.get('status')!r}, not completed")
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    losses = {int(m["step"]): float(m["loss"]) for m in metrics if "loss" in m}
    times = C.step_times(run_dir)
    adapter = run_dir / "adapter_model.safetensors"
    return Run(step_s=statistics.median(times) if times else float("nan"),
               trained_tps=float(result.get("tokens_per_second") or 0.0),
               wall_to_adapter=adapter.stat().st_mtime - started if adapter.is_file() else wall,
               process_wall=wall, peak_rss=peak, losses=losses, run_dir=run_dir)


def real_per_trained(variant: Variant, run_dir: Path, log: Path) -> float | None:
    """Non-pad tokens per trained token of the rows a run trained on, encoded by the variant's own code."""
    out = log.with_suffix(".json")
    try:
        C.run_child([sys.executable, "-c", ENCODE, str(run_dir), str(out)], variant.tree, log)
    except SystemExit as exc:
        print(f"  {variant.name}: real tokens not counted ({str(exc).splitlines()[0]})", flush=True)
        return None
    counts = json.loads(out.read_text())
    return counts["real"] / counts["trained"] if counts["trained"] else None


def score(variant: Variant, run: Run, heldout: Path, eval_args: list[str], log: Path) -> tuple[int, int]:
    C.run_child([sys.executable, "-m", "loradesk", "eval", "--adapter", str(run.run_dir), "--heldout",
                 str(heldout), *eval_args], variant.tree, log)
    detail = json.loads((run.run_dir / "loradesk_run.json").read_text(encoding="utf-8")).get("score_detail") or {}
    if "tuned" not in detail:
        raise SystemExit(f"{variant.name}: eval recorded no score in {run.run_dir}")
    return int(detail["tuned"]), int(detail["total"])


# --- output ------------------------------------------------------------------------------------------------
FIGURES: list[tuple[str, str, str]] = [  # (label, Run attribute, format)
    ("Step time (median, first left out), s", "step_s", ".3f"),
    ("Trained tokens/s", "trained_tps", ",.0f"),
    ("Real (non-pad) tokens/s", "real_tps", ",.0f"),
    ("Wall, start to adapter saved, s", "wall_to_adapter", ".1f"),
    ("Peak RSS, MiB", "peak_mib", ",.0f"),
    ("Final loss", "final_loss", ".4f"),
    ("Held-out right", "right", ".0f"),
]


def figure_values(variant: Variant, attr: str) -> list[float]:
    values = []
    for run in variant.runs:
        if attr == "peak_mib":
            values.append(run.peak_rss / MIB)
        elif attr == "final_loss":
            values.append(run.losses[max(run.losses)] if run.losses else float("nan"))
        elif attr == "right":
            if run.score is not None:
                values.append(run.score[0])
        elif getattr(run, attr) is not None:
            values.append(getattr(run, attr))
    return [v for v in values if v == v]  # NaN: nothing measured


def print_table(variants: list[Variant]) -> None:
    base = variants[0]
    header = ["Figure", *(f"{v.name} median (min-max)" for v in variants),
              *(f"{v.name}/{base.name}" for v in variants[1:])]
    print("| " + " | ".join(header) + " |")
    print("|" + " --- |" * len(header))
    for label, attr, fmt in FIGURES:
        values = [figure_values(v, attr) for v in variants]
        if not all(values):
            continue
        spreads = [C.spread(v) for v in values]
        if attr == "right":
            total = variants[0].runs[0].score[1]  # type: ignore[index]
            label = f"Held-out right (of {total})"
        cells = [label, *(s.text(fmt) for s in spreads)]
        for s in spreads[1:]:
            ratio, says = C.verdict(s, spreads[0])
            cells.append(f"{C.ratio_text(ratio)} ({says})")
        print("| " + " | ".join(cells) + " |")


def print_losses(variants: list[Variant]) -> None:
    """The loss at each step, the median of each variant's repeats, and how far the medians lie apart
    against how far one variant's own repeats lie apart."""
    steps = sorted(set.intersection(*(set(r.losses) for v in variants for r in v.runs)))
    if not steps:
        print("\nNo logged step is common to every run: no loss curves to compare.")
        return
    print("\nLoss at each logged step (median of the repeats)\n")
    print("| Step | " + " | ".join(v.name for v in variants) + " | max - min of the medians |")
    print("|" + " --- |" * (len(variants) + 2))
    between = within = 0.0
    for step in steps:
        medians = [statistics.median(r.losses[step] for r in v.runs) for v in variants]
        gap = max(medians) - min(medians)
        between = max(between, gap)
        within = max(within, *(max(r.losses[step] for r in v.runs) - min(r.losses[step] for r in v.runs)
                               for v in variants))
        print(f"| {step} | " + " | ".join(f"{m:.4f}" for m in medians) + f" | {gap:.4f} |")
    repeats = min(len(v.runs) for v in variants)
    print(f"\nLoss curves: largest difference between the variants' medians {between:.4f}; largest spread "
          f"between repeats of one variant {within:.4f}.")
    if repeats < 2:
        print("Loss curves: one run per variant, no spread to judge against: no verdict.")
    elif between <= within:
        print("Loss curves: no difference (the variants differ by no more than one variant's repeats do).")
    else:
        print("Loss curves: DIFFERENT (the variants differ by more than one variant's repeats do).")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                epilog="Arguments after -- go to every 'loradesk train' run.")
    p.add_argument("--variant", action="append", type=parse_variant, default=[], metavar="NAME=FOLDER",
                   help="a LoRA Desk checkout to run; the first is the baseline; 'new=' this tree is added "
                        "when only one is given")
    p.add_argument("--repeat", type=int, default=None, help="rounds of all variants (default 3)")
    p.add_argument("--data", type=Path, default=C.DATA / "sample.json", help="training rows (default: the sample)")
    p.add_argument("--eval", type=Path, default=None, metavar="HELDOUT",
                   help="score each adapter on these held-out questions (e.g. data/sample_heldout.json)")
    p.add_argument("--eval-args", default="", help="extra arguments for 'loradesk eval', e.g. "
                                                   "'--max-new-tokens 32'")
    p.add_argument("--keep", action="store_true", help="keep the run folders and logs")
    p.add_argument("--quick", action="store_true", help="the tiny model, 2 steps, 2 rounds of this tree twice")
    p.add_argument("train_args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.repeat is not None and args.repeat < 1:
        p.error(f"--repeat {args.repeat}: give 1 or more rounds")
    train_args = args.train_args[1:] if args.train_args[:1] == ["--"] else args.train_args
    eval_args = args.eval_args.split()
    repeat = args.repeat or (2 if args.quick else 3)
    work = Path(tempfile.mkdtemp(prefix="loradesk-ab-"))
    if args.quick:
        specs = args.variant or [("a", C.ROOT), ("b", C.ROOT)]
        train_args = ["--model", str(C.build_tiny_model(work / "tiny-model")), "--max-steps", "2", *train_args]
        eval_args = eval_args or ["--max-new-tokens", "8"]
    else:
        specs = args.variant if len(args.variant) != 1 else [*args.variant, ("new", C.ROOT)]
    if len(specs) < 2:
        p.error("give at least one --variant NAME=FOLDER to compare this tree with")
    variants = [Variant(name, tree) for name, tree in specs]
    if len({v.name for v in variants}) < len(variants):
        p.error("each --variant needs its own name")
    data = args.data.resolve()
    heldout = args.eval.resolve() if args.eval else None

    print(f"Machine: {C.machine()}")
    for v in variants:
        print(f"  {v.name}: {v.tree}")
    print(f"Train: {data.name} {' '.join(train_args)}; {plural(repeat, 'round')} of {len(variants)} variants, "
          "interleaved", flush=True)
    load_before = os.getloadavg()[0]
    for round_ in range(1, repeat + 1):
        for v in variants:
            tag = f"{v.name}-{round_}"
            run = train_once(v, data, train_args, work / tag, work / f"{tag}.log")
            if v.real_per_trained is None:  # the same tree, rows and settings give the same count
                same = next((o.real_per_trained for o in variants if o.tree == v.tree and o.real_per_trained), None)
                v.real_per_trained = same or real_per_trained(v, run.run_dir, work / f"{tag}-encode.log")
            if v.real_per_trained is not None:
                run.real_tps = run.trained_tps * v.real_per_trained
            if heldout is not None:
                run.score = score(v, run, heldout, eval_args, work / f"{tag}-eval.log")
            v.runs.append(run)
            right = f", {run.score[0]}/{run.score[1]} right" if run.score else ""
            print(f"  round {round_} {v.name}: {run.step_s:.3f} s/step, {run.trained_tps:,.0f} trained tokens/s, "
                  f"{run.wall_to_adapter:.1f} s to the adapter, peak RSS {run.peak_rss / MIB:,.0f} MiB{right}",
                  flush=True)
    print(f"Load average (1 min) before / after: {load_before:.1f} / {os.getloadavg()[0]:.1f}\n")
    print_table(variants)
    print_losses(variants)
    if args.keep:
        print(f"\nKept: {work}")
    else:
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
