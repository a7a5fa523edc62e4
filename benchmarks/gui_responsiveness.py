"""How responsive the window stays: launch time, and event-loop lateness from pressing Train to the end.

1. Launch: a fresh interpreter starts LoRA Desk (``loradesk.ui.app.build_window``, as ``loradesk`` does) and
   prints when the event loop first runs with the main window shown; the parent times it from before the
   process started. Repeated, median and worst reported. Target <= 1.5 s.
2. Lateness: in one process, the real main window on the sample project; a 10 ms precise QTimer records
   how late each tick fires while the Start button is clicked and a whole CPU run trains (model loading,
   training, saving). Reported per phase and overall. Targets: p99 <= 16 ms, max <= 100 ms.
3. Start to trained: the time from the Start click until that run has ended by itself (its adapter saved;
   with the default settings, or a run that stops once it has learned, that is the time to a tuned model).
   After the window measurements the saved adapter is scored on the project's held-out questions with the
   Compare tab's own code (``core.generation`` ``Answerer.from_run`` + ``compare_all``, greedy, default
   answer length): "Start → trained: 52.3 s; held-out 15/16".
4. Stop: a second run is started and, after its second logged step, the Train tab is shut down as closing
   the window does (stop after the current step, save the adapter and a checkpoint); timed from the call
   until the run has ended. Target <= 15 s.

    python benchmarks/gui_responsiveness.py                 # the built-in model, default settings
    python benchmarks/gui_responsiveness.py --max-steps 24  # a shorter run
    python benchmarks/gui_responsiveness.py --quick         # tiny model, a few steps (smoke run)
    python benchmarks/gui_responsiveness.py --stalls 60 --stall-file stalls.txt  # where every thread was in stalls
    python benchmarks/gui_responsiveness.py --taskset 0     # everything (the launches too) on core 0 only

With ``--stalls MS``, each tick re-arms :func:`faulthandler.dump_traceback_later`: when the event loop is
more than MS late, a C watchdog (it does not need the interpreter lock) writes every thread's Python stack to
the stall file, followed by how late that tick was. Whichever thread is inside a long call holding the lock
shows there.
"""

from __future__ import annotations

import argparse
import faulthandler
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
if not os.environ.get("DISPLAY"):
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

TICK_MS = 10


def child_launch() -> None:
    """Run inside the timed child: start the app, print when the shown window's event loop runs."""
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from loradesk.ui.app import build_window

    window = build_window([], restore=lambda info: False)
    app = QApplication.instance()

    def shown() -> None:
        print(f"SHOWN {int(window.isVisible())} torch={'torch' in sys.modules}", flush=True)
        app.quit()

    QTimer.singleShot(0, shown)
    app.exec()


def cpu_list(text: str) -> set[int]:
    """The processors of a taskset-style list: ``0``, ``0,2``, ``0-3``."""
    cpus: set[int] = set()
    for part in text.split(","):
        first, _, last = part.strip().partition("-")
        cpus.update(range(int(first), int(last or first) + 1))
    return cpus


def measure_launch(repeats: int, env: dict[str, str]) -> list[float]:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, __file__, "--child-launch"], stdout=subprocess.PIPE, text=True,
                                env=env)
        line = proc.stdout.readline() if proc.stdout else ""
        elapsed = time.perf_counter() - t0
        proc.wait(timeout=60)
        if not line.startswith("SHOWN 1"):
            raise SystemExit(f"the window did not show: {line!r}")
        if "torch=True" in line:
            print("warning: torch was imported before the window showed")
        times.append(elapsed)
    return times


def spin(ms: int) -> None:
    """Run the real event loop for ``ms`` milliseconds.

    Not ``QTest.qWait``: PySide6 keeps the GIL while qWait sleeps between event batches, which starves the
    training thread (measured here: 8 s per step instead of 1.2 s).
    """
    from PySide6.QtCore import QEventLoop, QTimer

    loop = QEventLoop()
    QTimer.singleShot(ms, loop.quit)
    loop.exec()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def measure_stop(tab: Any) -> float:
    """Start a run, and once it has logged two steps time the tab's shutdown (what closing the window does)."""
    tab.start()
    started = time.perf_counter()
    while tab.plot.point_count() < 2:
        spin(50)
        if time.perf_counter() - started > 3600:
            raise SystemExit("the second run logged no steps within an hour")
    t0 = time.perf_counter()
    tab.shutdown(-1)
    elapsed = time.perf_counter() - t0
    spin(300)  # the run's queued end reaches the tab
    print(f"stop: the run {tab.last_result.status} after {tab.last_result.steps} steps, {elapsed:.1f} s after the call")
    return elapsed


class Trained:
    """The first run, timed from the Start click to its end, and where its adapter was saved."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.first_step_s: float | None = None
        self.launched_s: float | None = None  # when the run itself started (after the pre-flight check, if any)
        self.run_dir: Path | None = None
        self.steps = 0
        self.status = ""
        self.heldout: Path | None = None


def measure_lateness(quick: bool, max_steps: int | None, work: Path, stalls: tuple[float, Any] | None = None,
                     screenshot: Path | None = None) -> tuple[dict[str, list[float]], float, Trained]:
    from PySide6.QtCore import QElapsedTimer, Qt, QTimer
    from PySide6.QtTest import QTest

    from loradesk.core.project import Project
    from loradesk.ui.app import create_app
    from loradesk.ui.main_window import MainWindow

    app = create_app()  # noqa: F841  (kept alive for the whole measurement)
    project = Project.new_default()
    config = project.config.to_dict()
    if quick:
        from loradesk.core.tiny_model import build_tiny_model

        texts = [t for r in project.dataset for t in (r.prompt, r.completion)]
        config["model"] = {**config["model"], "kind": "local", "name": str(build_tiny_model(work / "tiny", texts))}
        config["training"]["max_steps"] = max_steps or 8
    elif max_steps:
        config["training"]["max_steps"] = max_steps
    from loradesk.core.config import RunConfig

    project.config = RunConfig.from_dict(config)
    window = MainWindow(project)
    window.resize(1280, 860)
    window.show()
    tab = window.training_tab
    window.tabs.setCurrentWidget(tab)
    trained = Trained()
    trained.heldout = project.heldout_path
    clicked = [0.0]

    samples: dict[str, list[float]] = {}
    clock = QElapsedTimer()
    clock.start()
    last = [clock.nsecsElapsed()]
    state = {"recording": False}

    def tick() -> None:
        now = clock.nsecsElapsed()
        late = (now - last[0]) / 1e6 - TICK_MS
        last[0] = now
        if not state["recording"]:
            phase = "start-up (warm-up, before Train)"
        else:
            phase = "training" if tab.progress_bar.value() > 0 else "loading (after Train)"
            if phase == "training" and trained.first_step_s is None:
                trained.first_step_s = time.perf_counter() - clicked[0]
            if not tab.is_running():
                phase = "finishing"
        samples.setdefault(phase, []).append(max(0.0, late))
        if stalls is not None:
            limit_ms, fh = stalls
            if late > limit_ms:
                fh.write(f"=== the tick above was {late:.0f} ms late ({phase})\n\n")
                fh.flush()
            faulthandler.dump_traceback_later((limit_ms + TICK_MS) / 1000, file=fh)

    timer = QTimer()
    timer.setTimerType(Qt.TimerType.PreciseTimer)
    timer.setInterval(TICK_MS)
    timer.timeout.connect(tick)
    timer.start()

    done = {"flag": False}

    def finished(run_dir: str) -> None:
        if not done["flag"]:
            trained.seconds = time.perf_counter() - clicked[0]
            trained.run_dir = Path(run_dir)
        done["flag"] = True

    tab.run_finished.connect(finished)

    def launched(_request: Any) -> None:
        if trained.launched_s is None:
            trained.launched_s = time.perf_counter() - clicked[0]

    gate = getattr(tab, "preflight", None)
    if gate is not None and hasattr(gate, "go"):
        gate.go.connect(launched)

    def press() -> None:
        state["recording"] = True
        clicked[0] = time.perf_counter()
        QTest.mouseClick(tab.start_button, Qt.MouseButton.LeftButton)

    # Like a user who looks at the window first: press Train once the start-up warm-up (device check and
    # ML imports on a worker thread) is done. Its lateness is reported as its own phase.
    warm = time.perf_counter()
    while window.device_label.text().endswith("…") and time.perf_counter() - warm < 120:
        spin(50)
    spin(300)
    print(f"start-up warm-up took {time.perf_counter() - warm:.1f} s")
    press()
    while not done["flag"]:  # the run ends by itself: its steps, its epochs, or once it has learned
        spin(50)  # runs the real event loop; the ticks are measured inside it
        if time.perf_counter() - clicked[0] > 3600:
            raise SystemExit("training did not finish within an hour")
    spin(300)
    timer.stop()
    if screenshot is not None:  # the Train tab as the run left it (after the measured stretch)
        window.grab().save(str(screenshot))
        print(f"screenshot of the Train tab: {screenshot}")
    if stalls is not None:
        faulthandler.cancel_dump_traceback_later()
    trained.steps, trained.status = tab.last_result.steps, tab.last_result.status
    print(f"run: {trained.steps} steps, {trained.status}, {trained.seconds:.1f} s from the click")
    stop_s = measure_stop(tab)
    window.hide()  # not close(): that would ask whether to save the (changed) project
    return samples, stop_s, trained


def score(trained: Trained, quick: bool) -> str:
    """The trained run's held-out score with the Compare tab's code: ``15/16`` (the tuned model's)."""
    from loradesk.core.formats import read_heldout
    from loradesk.core.generation import Answerer, GenerationSettings, compare_all

    if trained.run_dir is None or trained.heldout is None:
        return "no held-out questions"
    settings = GenerationSettings(max_new_tokens=8) if quick else None  # a smoke run: short answers
    summary = compare_all(Answerer.from_run(trained.run_dir), read_heldout(trained.heldout), settings)
    print(f"held-out questions answered in {summary.seconds:.1f} s: {summary.text()}")
    return f"{summary.tuned_correct}/{summary.answered}"


def machine(load_before: float) -> str:
    """The processor, how many of its processors this run could use, and how busy the machine was: a
    figure measured while other work ran (load average above the processors in use) is not the app's."""
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), "unknown") if Path("/proc/cpuinfo").is_file() else "unknown"
    used = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = f"; load average {load_before:.1f} at the start, {os.getloadavg()[0]:.1f} at the end" \
        if hasattr(os, "getloadavg") else ""
    return f"Machine: {model}, {used} of {os.cpu_count()} processors used{load}"


#: Top frames of threads that wait (for work, a lock, a process): not what keeps the window waiting.
IDLE_FRAMES = ("threading.py", "selectors.py", "queues.py", "_monitor.py", "concurrent/futures/")


def stall_summary(text: str) -> list[str]:
    """One line per stall in a ``--stalls`` file: how late, the phase, and for each busy thread its innermost
    frame and the first LoRA Desk frame that led there (a thread inside one long call shows its call)."""
    lines: list[str] = []
    dump: list[str] = []
    for line in text.splitlines():
        if not line.startswith("=== the tick above was"):
            dump.append(line)
            continue
        late = line.removeprefix("=== the tick above was ")
        busy = []
        for block in "\n".join(dump).split("\nThread ")[1:]:
            frames = [f.strip() for f in block.splitlines() if f.strip().startswith("File ")
                      and "frozen importlib" not in f]
            if not frames or any(idle in frames[0] for idle in IDLE_FRAMES) or "gui_responsiveness" in frames[0]:
                continue
            ours = next((f for f in frames if "loradesk" in f and "site-packages" not in f), "")
            busy.append(f"{_frame(frames[0])}{' ← ' + _frame(ours) if ours and ours != frames[0] else ''}")
        if any("Timeout" in d for d in dump):
            lines.append(f"{late}: " + ("; ".join(busy) or "no thread in Python (Qt's own work, or no free core)"))
        dump = []
    return lines


def _frame(line: str) -> str:
    """``File "/x/site-packages/a/b.py", line 3 in f`` → ``a/b.py:3 f``."""
    path, _, rest = line.removeprefix('File "').partition('", line ')
    path = re.sub(r"^.*(site-packages/|/lib/python3\.\d+/)", "", path)
    path = re.sub(r"^.*/(loradesk/)", r"\1", path)
    number, _, func = rest.partition(" in ")
    return f"{path}:{number} {func}"


def report(samples: dict[str, list[float]], launch: list[float], stop_s: float, trained: Trained,
           heldout: str | None, load_before: float) -> None:
    print(f"\n{machine(load_before)}")
    print(f"\nLaunch to main window shown: median {statistics.median(launch):.2f} s, worst {max(launch):.2f} s "
          f"over {len(launch)} launches (target <= 1.5 s; each: {', '.join(f'{t:.2f}' for t in launch)} s)")
    first = "" if trained.first_step_s is None else f"; first step logged after {trained.first_step_s:.1f} s"
    if trained.launched_s is not None:
        first = f"; the run started after {trained.launched_s:.1f} s (the pre-flight check, when on){first}"
    print(f"\nStart → trained: {trained.seconds:.1f} s; held-out {heldout or 'not scored'}"
          f"  [{trained.steps} steps, {trained.status}{first}]")
    print(f"\nEvent-loop lateness of a {TICK_MS} ms timer (ms):")
    print(f"{'phase':<34}{'ticks':>8}{'p50':>8}{'p99':>8}{'max':>8}")
    everything = [v for phase, vs in samples.items() if not phase.startswith("start-up") for v in vs]
    for phase, values in [*samples.items(), ("Train to end", everything)]:
        if values:
            print(f"{phase:<34}{len(values):>8}{percentile(values, 50):>8.1f}{percentile(values, 99):>8.1f}"
                  f"{max(values):>8.1f}")
    if everything:
        p99, worst = percentile(everything, 99), max(everything)
        print(f"\nTargets: p99 {p99:.1f} ms (<= 16: {'met' if p99 <= 16 else 'MISSED'}), "
              f"max {worst:.1f} ms (<= 100: {'met' if worst <= 100 else 'MISSED'})")
    print(f"Stop while training (as closing the window does): {stop_s:.1f} s "
          f"(<= 15 s: {'met' if stop_s <= 15 else 'MISSED'})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny model, a few steps (a smoke run)")
    parser.add_argument("--max-steps", type=int, help="train this many steps instead of the default epochs")
    parser.add_argument("--launches", type=int, default=5, help="how many launches to time")
    parser.add_argument("--home", type=Path, help="keep the run in this LoRA Desk home (default: a temporary one)")
    parser.add_argument("--stalls", type=float, metavar="MS",
                        help="dump every thread's stack when the event loop is more than MS late")
    parser.add_argument("--stall-file", type=Path, default=Path("stalls.txt"), help="where --stalls writes")
    parser.add_argument("--taskset", metavar="CPULIST", help="run the app (this process and the launches) on "
                        "these processors only, e.g. 0 (one core, as a stand-in for a slower machine)")
    parser.add_argument("--no-score", action="store_true", help="do not score the trained run's held-out answers")
    parser.add_argument("--screenshot", type=Path, help="save the window (the Train tab) here once the run ends")
    parser.add_argument("--child-launch", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_launch:
        child_launch()
        return 0
    if args.taskset:
        os.sched_setaffinity(0, cpu_list(args.taskset))  # inherited by the launched processes and all threads
    with tempfile.TemporaryDirectory() as tmp:
        # a fresh home: no recovery prompt, no recent project
        os.environ["LORADESK_HOME"] = str(args.home or Path(tmp) / "home")
        env = {**os.environ}
        load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
        launch = measure_launch(2 if args.quick else args.launches, env)
        if args.stalls is not None:
            with args.stall_file.open("w") as fh:
                samples, stop_s, trained = measure_lateness(args.quick, args.max_steps, Path(tmp),
                                                            (args.stalls, fh), args.screenshot)
            print(f"stall stacks written to {args.stall_file}; the stalls (busy threads):")
            for line in stall_summary(args.stall_file.read_text()):
                print(f"  {line}")
        else:
            samples, stop_s, trained = measure_lateness(args.quick, args.max_steps, Path(tmp),
                                                        screenshot=args.screenshot)
        heldout = None if args.no_score else score(trained, args.quick)  # after the window measurement
    report(samples, launch, stop_s, trained, heldout, load_before)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
