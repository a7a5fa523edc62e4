"""GGUF export round trip: does the exported file answer like the merged model?

Trains a short run on the built-in model (or takes ``--run``), exports it as GGUF, reloads the file with
transformers (``from_pretrained(folder, gguf_file=...)``, model and tokenizer) and asks it and the merged
model (base + adapter folded in) every held-out question of ``data/sample_heldout.json``, greedily, as the
app answers (``core.generation.Answerer.answer``). Prints how many answers match token for token, the file
size and the export time.

    LORADESK_MODELS=/tmp/models python benchmarks/gguf_roundtrip.py --max-steps 12
    python benchmarks/gguf_roundtrip.py --run RUN_FOLDER --quant q8_0
    python benchmarks/gguf_roundtrip.py --quick          # tiny model, 2 steps (a smoke run)
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import _common as C


def machine() -> str:
    """The CPU model name (``lscpu``'s), else the platform's processor string."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def train(folder: Path, max_steps: int, model_dir: Path | None) -> Path:
    from loradesk.core import training
    from loradesk.core.config import ModelSettings, RunConfig

    config = RunConfig(model=ModelSettings(kind="local", name=str(model_dir)) if model_dir else ModelSettings())
    config.training.max_steps = max_steps
    result = training.run(config, C.sample_rows(), out_dir=folder / "run")
    print(f"Trained {result.steps} steps in {result.seconds:.0f} s, final loss {result.final_loss:.3f}")
    return result.run_dir


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", help="an existing run folder (default: train a short run first)")
    parser.add_argument("--max-steps", type=int, default=12)
    parser.add_argument("--quant", choices=("f16", "q8_0"), default="f16")
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.add_argument("--quick", action="store_true", help="tiny model, 2 steps, 16 new tokens")
    args = parser.parse_args()

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from loradesk.core import runs
    from loradesk.core.formats import read_heldout
    from loradesk.core.generation import Answerer, GenerationSettings
    from loradesk.core.gguf_export import export_gguf

    with tempfile.TemporaryDirectory(prefix="gguf-roundtrip-") as tmp:
        folder = Path(tmp)
        model_dir = C.build_tiny_model(folder / "tiny") if args.quick else None
        run_dir = Path(args.run) if args.run else train(folder, 2 if args.quick else args.max_steps, model_dir)
        out = folder / "export" / f"{run_dir.name}.gguf"
        started = time.perf_counter()
        result = export_gguf(run_dir, out, args.quant)
        export_s = time.perf_counter() - started
        merged = Answerer.from_loaded(*runs.merged_model(run_dir))
        reloaded = Answerer.from_loaded(AutoModelForCausalLM.from_pretrained(out.parent, gguf_file=out.name),
                                        AutoTokenizer.from_pretrained(out.parent, gguf_file=out.name))
        settings = GenerationSettings(max_new_tokens=16 if args.quick else args.max_new_tokens)
        questions = read_heldout(C.DATA / "sample_heldout.json")
        same = 0
        for question, _expected in questions:  # tuned=False: the model as loaded (the adapter is merged in)
            a, b = (m.answer(question, tuned=False, settings=settings) for m in (merged, reloaded))
            same += a == b
            print(f"{'same' if a == b else 'DIFFERENT'}: {question}\n  merged: {a!r}" +
                  ("" if a == b else f"\n  gguf:   {b!r}"))
        print(f"\nModelfile:\n{result.modelfile.read_text(encoding='utf-8')}")
    every = same == len(questions)
    exact = result.quant == "f16"  # q8_0 rounds the weights: its answers may differ, so it has no target
    table = [["Figure", "Measured", "Target", "Met"],
             ["Every answer identical to the merged model's", "yes" if every else "no", "yes" if exact else "—",
              ("yes" if every else "NO") if exact else "—"],
             ["Answers identical", f"{same}/{len(questions)}", "—", "—"],
             [f"GGUF file size ({result.quant})", f"{result.size / 1e6:.1f} MB", "—", "—"],
             ["Export time (merge + write)", f"{export_s:.1f} s", "—", "—"]]
    widths = [max(len(row[i]) for row in table) for i in range(4)]
    print(f"Machine: {machine()}\n\nSummary")
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
