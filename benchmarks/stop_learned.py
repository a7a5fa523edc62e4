"""Stop when learned on the sample: at which step a default run stops, what its checks cost, and its score.

Trains ``data/sample.json`` with the default settings and the sample's held-out questions (as
``loradesk train data/sample.json`` does), prints each check as it happens, then asks the stopped adapter every
held-out question as Compare does (``core.generation.compare_all``, greedy, 96 new tokens).

    LORADESK_MODELS=/tmp/models python benchmarks/stop_learned.py
    python benchmarks/stop_learned.py --quick          # tiny model, a target of 0: stops at the first check
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import _common as C


class Sink:
    """Prints the checks and the learned line with the time since the run began."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.checks: list[str] = []

    def status(self, text: str) -> None:
        pass

    def progress(self, p: object) -> None:
        pass

    def log(self, text: str) -> None:
        if text.startswith(("Check at", "Learned", "Stop when learned")):
            print(f"[{time.monotonic() - self.started:6.1f} s] {text}", flush=True)
            if text.startswith("Check at"):
                self.checks.append(text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny model, target 0, a check every 2 steps")
    args = parser.parse_args()

    from loradesk.core import training
    from loradesk.core.config import ModelSettings, RunConfig
    from loradesk.core.formats import read_heldout
    from loradesk.core.generation import Answerer, compare_all

    heldout = C.DATA / "sample_heldout.json"
    with tempfile.TemporaryDirectory(prefix="loradesk-stop-learned-") as scratch:
        config = RunConfig()
        if args.quick:
            config.model = ModelSettings(kind="local", name=str(C.build_tiny_model(Path(scratch) / "tiny")))
            config.training.max_steps, config.training.learned_target = 6, 0.0
            config.training.learned_check_steps = 2
        sink = Sink()
        started = time.monotonic()
        result = training.run(config, C.sample_rows(), sink, out_dir=Path(scratch) / "run", heldout=heldout)
        wall = time.monotonic() - started
        checks = len(sink.checks)
        print(f"\nRun: {result.status}, {result.steps} steps in {wall:.1f} s wall (training.run), "
              f"{result.tokens_per_second or 0:.0f} trained tokens/s without the checks")
        print(f"Checks: {checks}, {result.check_seconds:.1f} s in total, "
              f"{result.check_seconds / max(checks, 1):.1f} s per check")
        print(f"Learned line: {result.learned or '(not learned: trained every step)'}")
        summary = compare_all(Answerer.from_run(result.run_dir), read_heldout(heldout))
        print(f"Score of the stopped adapter (as loradesk eval): {summary.text()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
