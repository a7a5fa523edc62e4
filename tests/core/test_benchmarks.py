"""The benchmark scripts still run end to end (quick mode, tiny models) and print the figures they promise."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BENCHMARKS = ROOT / "benchmarks"


def run_script(name: str, *args: str) -> str:
    proc = subprocess.run([sys.executable, str(BENCHMARKS / name), *args], capture_output=True, text=True,
                          timeout=300, cwd=ROOT)
    assert proc.returncode == 0, f"{name} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return proc.stdout


def markdown_row(out: str, first_cell: str) -> list[str]:
    line = next(ln for ln in out.splitlines() if ln.startswith(f"| {first_cell}"))
    return [cell.strip() for cell in line.strip("|").split("|")]


def percent(cell: str) -> float:
    return float(re.match(r"([\d.]+) %", cell).group(1))


def test_recipe_vs_recipe_quick_prints_every_figure() -> None:
    out = run_script("recipe_vs_recipe.py", "--quick", "--markdown")
    for figure in ("Wall time per epoch", "Rows/s", "Loss-bearing tokens/s", "Padding fraction",
                   "Peak memory (RSS)", "Time-to-learn", "time-to-learn ratio:",
                   "tokens/s ratio (loss-bearing):",
                   "| Figure | Tutorial recipe | LoRA Desk defaults | LoRA Desk vs tutorial |"):
        assert figure in out
    assert "[Tutorial] epoch 1.00" in out and "[LoRA Desk] epoch 1.00" in out  # the probe ran at epoch ends
    _, tutorial, ours, _ = markdown_row(out, "Padding fraction")
    assert percent(tutorial) > 50 > percent(ours)  # fixed 128-token padding vs per-batch padding
    for cell in markdown_row(out, "Peak memory (RSS)")[1:3]:
        assert float(cell.split()[0].replace(",", "")) > 100  # MiB: a real, per-process high-water mark
    for cell in markdown_row(out, "Loss-bearing tokens/s")[1:3]:
        assert float(cell.replace(",", "")) > 0


def test_utilisation_quick_prints_both_studies() -> None:
    out = run_script("utilisation.py", "--quick")
    assert "Utilisation by setting" in out and "Utilisation by recipe" in out
    for setting in ("LoRA Desk defaults", "1 thread", "group_by_length off", "Tutorial recipe"):
        row = markdown_row(out, setting)
        assert 0 < percent(row[6]) < 100  # MFU against a peak measured in the same run
    assert re.search(r"LoRA Desk MFU: [\d.]+ % as shipped", out)
    assert re.search(r"matmul peaks \(\d+x\d+\): .*bf16 1 thr", out)


def test_dataset_scale_quick_prints_every_figure() -> None:
    out = run_script("dataset_scale.py", "--quick")
    assert "planted: 12 duplicate, 4 empty, 2 odd spaces" in out  # the seeded file
    for figure in ("Open 2,000 rows (import to first paint)", "Filter keystroke, median / max of 14",
                   "GUI lateness between keystrokes", "'Problems only' on/off", "Scroll jump, median / max of 20",
                   "Edit a cell", "Undo / redo", "Token statistics: wall time", "Checks: change to fresh results"):
        assert re.search(rf"^{re.escape(figure)}.*\s(yes|NO|—)$", out, re.MULTILINE), figure
    assert re.search(r"^Token statistics: progress bar shown\s+yes\s+yes\s+yes$", out, re.MULTILINE)
    assert "counted 2,000 of 2,000 rows" in out
    assert "lantern:" in out and "∅:" in out  # typed, then erased to an empty filter
    found = re.search(r"found \(rows\): (.*);", out).group(1)
    assert "exact duplicates 12" in found and "empty fields 4" in found  # the checks saw the planted rows
