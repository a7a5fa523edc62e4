"""How close is the pre-flight check to the run it predicts? Check first, then the real run, and compare.

Each of the two runs in its own fresh process, as a user runs ``loradesk train DATA --check`` and then
``loradesk train DATA``: a process that has already run the check keeps some of its memory in the
allocator, so the real run's peak resident memory would not be its own. The real run's peak is the
kernel's high-water mark of its process (``ru_maxrss`` from ``os.wait4``), not a sample; its time per step
is the median of the differences between consecutive steps in its ``metrics.jsonl`` (every step is
logged by default), the first step left out (it includes the warm-up).

    LORADESK_MODELS=<folder with the converted built-in model> python benchmarks/preflight_accuracy.py
    python benchmarks/preflight_accuracy.py --quick   # a tiny model, 12 steps: only shows the script works
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from _common import DATA, build_tiny_model, cpu_name, run_child, step_times

TARGET = 0.25  # both estimates within 25 % of the measured figure
CHECK = """
import json, sys
from pathlib import Path
from loradesk.core.config import RunConfig
from loradesk.core.formats import read_dataset
from loradesk.core.preflight import preflight
config = RunConfig.from_dict(json.loads(sys.argv[1]))
report = preflight(config, read_dataset(Path(sys.argv[2])))
Path(sys.argv[3]).write_text(json.dumps(report.to_dict()))
"""


def error(estimate: float, measured: float) -> float:
    return (estimate - measured) / measured


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny model, 12 steps (a smoke run)")
    ap.add_argument("--data", default=str(DATA / "sample.json"))
    ap.add_argument("--keep", action="store_true", help="keep the run folder and the check's report")
    args = ap.parse_args()

    from loradesk.core.config import RunConfig

    config = RunConfig()
    work = Path(tempfile.mkdtemp(prefix="preflight-accuracy-"))
    if args.quick:
        tiny = build_tiny_model(work / "tiny")
        config.model.kind, config.model.name = "local", str(tiny)
        config.training.max_steps = 12
    config_json = json.dumps(config.to_dict())
    (work / "config.json").write_text(config_json)
    report_file, run_dir = work / "report.json", work / "run"

    load_before = os.getloadavg()
    check_wall, check_rss = run_child([sys.executable, "-c", CHECK, config_json, args.data, str(report_file)])
    report: dict[str, Any] = json.loads(report_file.read_text())
    load_between = os.getloadavg()
    run_wall, run_rss = run_child([sys.executable, "-m", "loradesk", "train", args.data, "--config",
                                   str(work / "config.json"), "--out", str(run_dir)])
    load_after = os.getloadavg()
    times = step_times(run_dir)
    result = json.loads((run_dir / "loradesk_run.json").read_text())["result"]
    median = statistics.median(times)
    train_seconds = sum(times) + (times[0] if times else 0)  # the first step counted as a typical one

    s_err = error(report["seconds_per_step"], median)
    m_err = error(report["peak_memory"], run_rss)
    mib = 2**20
    print(f"Machine: {cpu_name()}, {os.cpu_count()} CPUs; {report['device_label']}, {report['precision']}")
    print(f"Load average (1 min) before / between / after: {load_before[0]:.1f} / {load_between[0]:.1f} / "
          f"{load_after[0]:.1f}")
    print(f"Model: {report['model']}; {report['train_rows']} rows; longest batch {report['batch_rows']} x "
          f"{report['longest_tokens']} tokens, typical batch {report['typical_tokens']} tokens")
    print()
    print("| Figure | Pre-flight estimate | Real run | Error |")
    print("| --- | --- | --- | --- |")
    print(f"| Time per step (run: median of steps 2-{len(times) + 1}) | {report['seconds_per_step']:.3g} s | "
          f"{median:.3g} s | {s_err:+.0%} |")
    print(f"| Peak memory (run: kernel peak RSS) | {report['peak_memory'] / mib:,.0f} MiB | "
          f"{run_rss / mib:,.0f} MiB | {m_err:+.0%} |")
    same = "same" if report["steps"] == result["steps"] else "DIFFERENT"
    print(f"| Steps | {report['steps']} | {result['steps']} | {same} |")
    print(f"| Training time (run: its step times) | {report['estimated_seconds']:.1f} s | {train_seconds:.1f} s | "
          f"{error(report['estimated_seconds'], train_seconds):+.0%} |")
    print()
    print(f"Check: {check_wall:.0f} s wall; its sampled peak RSS {report['check_peak_memory'] / mib:,.0f} MiB against "
          f"its process's kernel peak {check_rss / mib:,.0f} MiB; {report['shape_memory'] / mib:,.0f} MiB kept per new "
          f"batch shape x {report['new_shapes']} new shapes in the run. Longest batch step "
          f"{report['longest_step_seconds']:.2f} s.")
    print(f"Run: {run_wall:.0f} s wall, {result['steps']} steps, step times min {min(times):.2f} s / "
          f"max {max(times):.2f} s.")
    for name, value in (("time per step", s_err), ("peak memory", m_err)):
        verdict = "met" if round(abs(value) * 100) <= TARGET * 100 else "NOT met"  # as printed
        print(f"{name}: error {value:+.0%} (target within ±{TARGET:.0%}: {verdict})")
    if args.keep:
        print(f"Kept: {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
