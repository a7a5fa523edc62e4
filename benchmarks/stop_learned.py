"""Stop when learned on the sample: at which step a default run stops, what its checks cost, and its score.

Trains ``data/sample.json`` with the default settings and the sample's held-out questions (as
``loradesk train data/sample.json`` does), prints each check as it happens, then asks the stopped adapter every
held-out question as Compare does (``core.generation.compare_all``, greedy, 96 new tokens).

    LORADESK_MODELS=/tmp/models python benchmarks/stop_learned.py
    LORADESK_MODELS=/tmp/models python benchmarks/stop_learned.py --full-checks-too
    python benchmarks/stop_learned.py --quick          # tiny model, a target of 0: stops at the first check

``--full-checks-too`` times each check twice on the same model state, in alternating order: as the run asks
(only until the check can no longer pass) and with every question answered to its end (as checks asked
before). The run's own check times then include both, so its stop time is not the app's.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import _common as C


class FullChecksToo:
    """Wraps ``learned.answered``: each check asked both ways (see the module doc), the times kept."""

    def __init__(self, learned: Any) -> None:
        self.learned, self.answered = learned, learned.answered
        self.rows: list[tuple[str, float, str, float]] = []  # (as asked, s, every answer, s)
        learned.answered = self

    def __call__(self, model: Any, tokenizer: Any, questions: Any, use_chat_template: bool,
                 tools_as_text: bool = False, needed: int | None = None) -> Any:
        from loradesk.core.generation import Answerer, GenerationSettings

        def full() -> str:
            answerer = Answerer.from_loaded(model, tokenizer, use_chat_template)
            answerer.tools_as_text = tools_as_text
            tally = answerer.tally([p for p, _ in questions], [e for _, e in questions], 0, tuned=False,
                                   settings=GenerationSettings(max_new_tokens=self.learned.MAX_NEW_TOKENS),
                                   batch_size=self.learned.BATCH)
            return f"{tally.passed}/{tally.total}"

        times: dict[str, float] = {}
        result: Any = None
        full_text = ""
        for way in ("asked", "full") if len(self.rows) % 2 == 0 else ("full", "asked"):
            began = time.monotonic()
            if way == "asked":
                result = self.answered(model, tokenizer, questions, use_chat_template, tools_as_text, needed)
            else:
                full_text = full()
            times[way] = time.monotonic() - began
        shown = f"{'' if result.complete else 'at least '}{result.passed}/{result.total}"
        self.rows.append((shown, times["asked"], full_text, times["full"]))
        print(f"    as asked: {shown} in {times['asked']:.2f} s; every answer to its end: {full_text} in "
              f"{times['full']:.2f} s", flush=True)
        return result

    def summary(self) -> str:
        asked, full = sum(r[1] for r in self.rows), sum(r[3] for r in self.rows)
        return (f"Checks asked until decided: {asked:.1f} s in total; every answer to its end: {full:.1f} s "
                f"({asked / full:.2f}x) over {len(self.rows)} checks, same model states, alternating order"
                if self.rows else "no checks")


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
    parser.add_argument("--full-checks-too", action="store_true",
                        help="time each check also with every answer to its end (see the module doc)")
    args = parser.parse_args()

    from loradesk.core import learned, training
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
        both = FullChecksToo(learned) if args.full_checks_too else None
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
        if both is not None:
            print(both.summary())
        summary = compare_all(Answerer.from_run(result.run_dir), read_heldout(heldout))
        print(f"Score of the stopped adapter (as loradesk eval): {summary.text()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
