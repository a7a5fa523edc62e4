"""How the Dataset tab copes with a big file: open, filter, scroll, edit, token statistics and checks.

A seeded JSONL file of ``--rows`` rows (100,000 by default: prompts of 5-40 words, completions of 10-120,
a few duplicated and empty rows) is imported into the real main window (offscreen unless a display is
set, 1320x820). A 10 ms precise QTimer runs throughout and records how late each tick fires: a late tick
is a moment the window could not react. GUI-thread figures time the synchronous call plus a repaint of
the table.

1. Open: ``import_file`` until the rows are in the table and the table has painted. Target <= 2 s.
2. Filter: a word typed into the filter box one character at a time, then erased with backspace; each
   keystroke applies the filter at once (no debounce) and repaints. Target <= 100 ms per keystroke.
   Also the "Problems only" switch.
3. Scroll: jumps to 20 places in the table, each repainted.
4. Edit: cells changed through the model (undoable), then undone and redone.
5. Token statistics: "Count tokens" in the worker process until every row has a count, with its progress bar.
6. Checks: from a change to the rows until the checks panel shows fresh results.
7. Find: Find and Replace over every row (in the worker process), typed word by word, until the count shows.

A stall is a GUI-thread call, or a late tick, over 100 ms (the limit ``gui_responsiveness.py`` uses).

    python benchmarks/dataset_scale.py                     # 100,000 rows, counted with the built-in model
    LORADESK_MODELS=~/models python benchmarks/dataset_scale.py   # reuse an already converted built-in model
    python benchmarks/dataset_scale.py --model tiny        # count with a tiny tokenizer instead
    python benchmarks/dataset_scale.py --rows 250000       # another size
    python benchmarks/dataset_scale.py --markdown          # also print the summary as a Markdown table
    python benchmarks/dataset_scale.py --stalls            # also show where the GUI thread was in each stall
    python benchmarks/dataset_scale.py --quick             # 2,000 rows, tiny model (a smoke run)
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import _common as C
from gui_responsiveness import TICK_MS, percentile, spin

STALL_MS = 100.0
OPEN_TARGET_S = 2.0
KEYSTROKE_TARGET_MS = 100.0
FILTER_WORDS = ("lantern", "harbour")  # mid-frequency words: the first letters match most rows, the word a few %
TYPING_GAP_MS = 150  # a brisk typist

# A Zipf-like vocabulary: early words are common, late ones rare (a filter narrows as in real text).
_WORDS = """
the of and a to in is it that for on was with as by at be this from or an are which you not but have one
all they we can more their will there about when so what if some into time would only other use how
these two may then like new first way could after now most people over well where also years made
each work through back much before called part need place help show long great small every found old
answer question wizard tower river harbour lantern bridge compass storm map north city owl ink stone
garden forest castle village market bakery library teacher student recipe kitchen bread coffee tea
train ticket station engine signal winter summer autumn spring mountain valley island ocean shore
boat sail anchor captain sailor fisherman lighthouse keeper letter parcel courier window door key
lock candle mirror clock bell song poem story chapter author reader painter canvas colour blue green
red golden silver copper iron glass paper feather quill scroll archive record ledger merchant guild
council mayor festival harvest orchard apple pear plum cherry honey bee hive meadow field fence gate
path road journey traveller guide inn tavern supper breakfast morning evening night moon star comet
planet telescope observatory astronomer chart measure weight balance scale coin price trade route
caravan desert oasis camel tent rope knot net hook line lake pond frog heron swan reed marsh mill
wheel gear lever spring hinge nail hammer saw plank beam roof chimney smoke fire hearth kettle
"""
VOCABULARY = _WORDS.split()
OPENERS = ("What is", "How does", "Explain why", "Describe", "Who built", "Where is", "Summarise",
           "Write a short note on", "Why would", "Tell me about", "List three facts about", "Compare")


# --- the data ------------------------------------------------------------------------------------------------
def write_dataset(path: Path, rows: int, seed: int = 0) -> dict[str, int]:
    """Write ``rows`` JSONL records to ``path``; returns how many of each planted problem it holds."""
    rng = random.Random(seed)
    cum = list(itertools.accumulate(1 / (i + 1) for i in range(len(VOCABULARY))))

    def words(low: int, high: int) -> list[str]:
        return rng.choices(VOCABULARY, cum_weights=cum, k=rng.randint(low, high))

    def sentences(ws: list[str]) -> str:
        parts = [" ".join(ws[i:i + 12]) for i in range(0, len(ws), 12)]
        return " ".join(p[0].upper() + p[1:] + "." for p in parts)

    planted = {"duplicate": 0, "empty": 0, "odd spaces": 0}
    records: list[dict[str, str]] = []
    for i in range(rows):
        roll = rng.random()
        if records and roll < 0.005:  # the same row again (an exact duplicate)
            records.append(dict(rng.choice(records)))
            planted["duplicate"] += 1
            continue
        opener = rng.choice(OPENERS)
        prompt = f"{opener} {' '.join(words(3, 38))} (case {i})?"
        completion = sentences(words(10, 120))
        if roll < 0.007:
            completion = ""
            planted["empty"] += 1
        elif roll < 0.008:
            prompt = f"  {prompt} "
            planted["odd spaces"] += 1
        records.append({"prompt": prompt, "completion": completion})
    with path.open("w", encoding="utf-8") as f:
        for rec in records:
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
    return planted


def child_tiny_model(folder: str) -> None:
    """In a child process, so the measured process loads the ML stack only when the tab asks for it."""
    C.build_tiny_model(Path(folder))


# --- measuring -----------------------------------------------------------------------------------------------
class Lateness:
    """A 10 ms precise timer on the GUI thread; every tick records how late it fired (ms)."""

    def __init__(self) -> None:
        from PySide6.QtCore import QElapsedTimer, Qt, QTimer

        self.samples: list[float] = []
        self.watch: Callable[[], None] | None = None  # also called on every tick
        self.phase = ""  # what is being measured (for the stall sampler)
        self.last_tick = time.perf_counter()
        self._clock = QElapsedTimer()
        self._clock.start()
        self._last = self._clock.nsecsElapsed()
        self._timer = QTimer()
        self._timer.setTimerType(Qt.TimerType.PreciseTimer)
        self._timer.setInterval(TICK_MS)
        self._timer.timeout.connect(self._tick)
        self._timer.start()

    def _tick(self) -> None:
        now = self._clock.nsecsElapsed()
        self.samples.append(max(0.0, (now - self._last) / 1e6 - TICK_MS))
        self._last = now
        self.last_tick = time.perf_counter()
        if self.watch is not None:
            self.watch()

    def mark(self) -> int:
        return len(self.samples)

    def since(self, mark: int) -> list[float]:
        return self.samples[mark:]

    def forgive(self) -> None:
        """Do not count the call just timed (it is reported on its own) as lateness of the next tick."""
        self._last = self._clock.nsecsElapsed()
        self.last_tick = time.perf_counter()

    def stop(self) -> None:
        self._timer.stop()


class StallSampler(threading.Thread):
    """With ``--stalls``: every 10 ms while a tick is overdue by more than the stall limit, note where the
    GUI thread is (its innermost frames in this repository), to show what a stall is made of; and where the
    app's other threads are that are not waiting (one of them may hold the interpreter lock meanwhile)."""

    def __init__(self, probe: Lateness, limit_ms: float = STALL_MS) -> None:
        super().__init__(daemon=True)
        self.probe = probe
        self.limit_ms = limit_ms
        self.samples: Counter[tuple[str, str]] = Counter()
        self.others: Counter[tuple[str, str]] = Counter()
        self._gui = threading.main_thread().ident
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.wait(0.01):
            if (time.perf_counter() - self.probe.last_tick) * 1000 - TICK_MS > self.limit_ms:
                frames = sys._current_frames()
                self.samples[(self.probe.phase, where(frames.get(self._gui)))] += 1
                for ident, frame in frames.items():
                    if ident not in (self._gui, self.ident) and not waiting(frame):
                        self.others[(self.probe.phase, innermost(frame))] += 1

    def stop(self) -> None:
        self._done.set()
        self.join()

    def report(self) -> None:
        print(f"\nWhere the GUI thread was while a tick was over {self.limit_ms:.0f} ms late (10 ms samples; "
              "'event loop' = inside Qt, or waiting for the GIL):")
        if not self.samples:
            print("  no stalls")
        for phase in dict.fromkeys(p for p, _ in self.samples):
            print(f"  {phase}:")
            top = sorted(((n, w) for (p, w), n in self.samples.items() if p == phase), reverse=True)[:5]
            for n, place in top:
                print(f"    {n * 10:>6} ms  {place}")
            others = sorted(((n, w) for (p, w), n in self.others.items() if p == phase), reverse=True)[:3]
            for n, place in others:
                print(f"    {n * 10:>6} ms  meanwhile another thread was in {place}")


#: Where a thread sits while it waits (it does not hold the interpreter lock there).
_WAITS = {"wait", "_wait_for_tstate_lock", "get", "recv_bytes", "_recv_bytes", "_recv", "select", "poll",
          "result", "_wait_for_updates", "acquire"}


def waiting(frame: Any) -> bool:
    return frame is not None and frame.f_code.co_name in _WAITS


def innermost(frame: Any) -> str:
    """The innermost two frames of ``frame``'s stack, wherever they are."""
    places = []
    while frame is not None and len(places) < 2:
        places.append(f"{Path(frame.f_code.co_filename).name}:{frame.f_lineno} {frame.f_code.co_name}")
        frame = frame.f_back
    return " <- ".join(places)


def where(frame: Any) -> str:
    """The innermost three frames of ``frame``'s stack that are in this repository."""
    places = []
    while frame is not None and len(places) < 3:
        path = Path(frame.f_code.co_filename)
        if path.is_relative_to(C.ROOT):
            if frame.f_code.co_name == "spin":
                return " <- ".join(places) if places else "event loop"
            places.append(f"{path.name}:{frame.f_lineno} {frame.f_code.co_name}")
        frame = frame.f_back
    return " <- ".join(places) or "outside this repository"


def make_paint_watch(widget: Any, ready: Callable[[], bool]) -> Any:
    """An event filter noting when ``widget`` has finished its first paint once ``ready()`` holds."""
    from PySide6.QtCore import QEvent, QObject, QTimer

    class PaintWatch(QObject):
        def __init__(self) -> None:
            super().__init__()
            self.done: float | None = None

        def eventFilter(self, obj: Any, event: Any) -> bool:
            if event.type() == QEvent.Type.Paint and self.done is None and ready():
                QTimer.singleShot(0, self._painted)  # runs once the paint is over
            return False

        def _painted(self) -> None:
            if self.done is None:
                self.done = time.perf_counter()

    watch = PaintWatch()
    widget.installEventFilter(watch)
    return watch


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str) -> float:
    """Run the event loop until ``condition()``; returns the seconds waited."""
    start = time.perf_counter()
    while not condition():
        if time.perf_counter() - start > timeout_s:
            raise SystemExit(f"gave up after {timeout_s:.0f} s waiting for {what}")
        spin(5)
    return time.perf_counter() - start


def timed(fn: Callable[[], Any], view: Any) -> float:
    """Milliseconds the GUI thread spends in ``fn()`` and a repaint of ``view``'s viewport."""
    start = time.perf_counter()
    fn()
    view.viewport().repaint()
    return (time.perf_counter() - start) * 1000


def ms_stats(values: list[float]) -> str:
    return f"median {statistics.median(values):.1f} ms, max {max(values):.1f} ms ({len(values)})"


def late_stats(values: list[float]) -> str:
    if not values:
        return "no ticks"
    return f"p99 {percentile(values, 99):.1f} ms, max {max(values):.1f} ms over {len(values):,} ticks"


class Summary:
    """The final table: figure, measured, target, met."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, str, str, str]] = []

    def add(self, figure: str, measured: str, target: str = "—", met: bool | None = None) -> None:
        self.rows.append((figure, measured, target, "—" if met is None else ("yes" if met else "NO")))

    def lateness(self, figure: str, values: list[float]) -> None:
        worst = max(values, default=0.0)
        self.add(figure, f"max {worst:.0f} ms", f"max <= {STALL_MS:.0f} ms", worst <= STALL_MS)

    def gui_calls(self, figure: str, values: list[float], limit: float = STALL_MS) -> None:
        self.add(figure, f"{statistics.median(values):.0f} / {max(values):.0f} ms", f"max <= {limit:.0f} ms",
                 max(values) <= limit)

    def print(self, markdown: bool) -> None:
        head = ("Figure", "Measured", "Target", "Met")
        widths = [max(len(r[i]) for r in [head, *self.rows]) for i in range(4)]
        print("\nSummary")
        for row in [head, *self.rows]:
            print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
        if markdown:
            print("\n| " + " | ".join(head) + " |\n| --- | --- | --- | --- |")
            for row in self.rows:
                print("| " + " | ".join(row) + " |")


# --- the run -------------------------------------------------------------------------------------------------
def run(args: argparse.Namespace, work: Path) -> Summary:
    from PySide6.QtCore import qVersion

    from loradesk.core.config import RunConfig
    from loradesk.core.project import Project
    from loradesk.ui.app import create_app
    from loradesk.ui.dataset_model import COMPLETION, PROMPT
    from loradesk.ui.main_window import MainWindow

    quick, n = args.quick, args.rows
    summary = Summary()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    cpu = platform.processor() or platform.machine()
    print(f"{n:,} rows, model for token counts: {args.model}; {os.cpu_count()} CPU cores ({cpu}), "
          f"load average {load:.2f}; Python {platform.python_version()}, Qt {qVersion()}")
    if load > (os.cpu_count() or 1) / 2:
        print("warning: the machine is busy; the figures will be slower than on a quiet machine")

    start = time.perf_counter()
    data = work / f"dataset-{n}.jsonl"
    planted = write_dataset(data, n, args.seed)
    print(f"wrote {data.name} ({data.stat().st_size / 1e6:.1f} MB) in {time.perf_counter() - start:.1f} s; planted: "
          + ", ".join(f"{v:,} {k}" for k, v in planted.items()))

    project = Project.new_default()
    if args.model == "tiny":
        start = time.perf_counter()
        folder = work / "tiny-model"
        subprocess.run([sys.executable, __file__, "--child-tiny-model", str(folder)], check=True)
        config = project.config.to_dict()
        config["model"] = {**config["model"], "kind": "local", "name": str(folder)}
        project.config = RunConfig.from_dict(config)
        print(f"built the tiny model in {time.perf_counter() - start:.1f} s")
    elif not os.environ.get("LORADESK_MODELS"):
        print("note: LORADESK_MODELS is not set, so the built-in model is converted first (inside the "
              "token-statistics time)")

    app = create_app()  # noqa: F841  (kept alive for the whole run)
    window = MainWindow(project, probe_device=False, count_tokens=False)
    window.resize(1320, 820)
    window.show()
    tab = window.dataset_tab
    view = tab.view
    spin(500)
    probe = Lateness()
    sampler = StallSampler(probe, args.stalls) if args.stalls is not None else None
    if sampler is not None:
        sampler.start()
    spin(200)
    rng = random.Random(args.seed)
    reps = 1 if quick else 2

    def background_idle() -> bool:
        return tab.checks.is_current() and window.autosaver.idle()

    # 1. open
    probe.phase = "open"
    paint = make_paint_watch(view.viewport(), lambda: tab.model.rowCount() == n)
    mark = probe.mark()
    start = time.perf_counter()
    window.import_file(data, mode="replace")
    wait_until(lambda: paint.done is not None, 300, "the imported rows to be painted")
    open_s = paint.done - start
    view.viewport().removeEventFilter(paint)
    spin(20)
    open_late = probe.since(mark)
    mark = probe.mark()
    spin(3000)  # checks, the filter's text cache and the recovery file start in the background
    wait_until(background_idle, 300, "the checks and the recovery file after the open")
    settle_late = probe.since(mark)
    print(f"\n1. Open {n:,} rows: {open_s:.2f} s to the first paint (target <= {OPEN_TARGET_S:.0f} s); "
          f"longest GUI freeze {max(open_late):.0f} ms")
    print(f"   the next {len(settle_late) * TICK_MS / 1000:.0f} s (checks, filter cache, recovery file): "
          f"{late_stats(settle_late)}")
    summary.add(f"Open {n:,} rows (import to first paint)", f"{open_s:.2f} s", f"<= {OPEN_TARGET_S:.0f} s",
                open_s <= OPEN_TARGET_S)
    summary.add("Longest GUI freeze while opening", f"{max(open_late):.0f} ms")
    summary.lateness("GUI lateness after the open", settle_late)

    # 2. filter keystrokes
    probe.phase = "filter"
    print("\n2. Filter keystrokes (apply the filter + repaint, ms; rows shown):")
    keys: list[float] = []
    key_late: list[float] = []
    for word in FILTER_WORDS[:reps]:
        texts = [word[:i] for i in range(1, len(word) + 1)] + [word[:i] for i in range(len(word) - 1, -1, -1)]
        line = []
        for text in texts:
            def press(text: str = text) -> None:
                tab.filter_edit.setText(text)
                tab._apply_filter()  # at once, instead of after the 150 ms debounce

            keys.append(timed(press, view))
            line.append(f"{text or '∅'}:{keys[-1]:.0f}({tab.proxy.rowCount():,})")
            probe.forgive()
            mark = probe.mark()
            spin(TYPING_GAP_MS)  # the footer and the row heights follow after the keystroke
            key_late += probe.since(mark)
        print("   " + "  ".join(line))
    print(f"   keystrokes: {ms_stats(keys)}; between keystrokes: {late_stats(key_late)}")
    summary.gui_calls(f"Filter keystroke, median / max of {len(keys)}", keys, KEYSTROKE_TARGET_MS)
    summary.lateness("GUI lateness between keystrokes", key_late)

    toggles: list[float] = []
    shown = 0
    for _ in range(reps):
        for on in (True, False):
            toggles.append(timed(lambda on=on: tab.problems_only.setChecked(on), view))
            shown = tab.proxy.rowCount() if on else shown
            probe.forgive()
            spin(200)
    print(f"   'Problems only' on/off ({shown:,} rows shown): {ms_stats(toggles)}")
    summary.gui_calls("'Problems only' on/off, median / max", toggles)

    # 3. scroll
    probe.phase = "scroll"
    bar = view.verticalScrollBar()
    scrolls = []
    for _ in range(20):
        fraction = rng.random()
        scrolls.append(timed(lambda f=fraction: bar.setValue(int(bar.maximum() * f)), view))
        probe.forgive()
        spin(30)
    print(f"\n3. Scroll to 20 places (+ repaint): {ms_stats(scrolls)}")
    summary.gui_calls("Scroll jump, median / max of 20", scrolls)

    # 4. edit, undo, redo
    probe.phase = "edit"
    edits: list[float] = []
    undos: list[float] = []
    edit_late: list[float] = []
    rows = rng.sample(range(n), 2 if quick else 4)

    def settle_after() -> None:
        nonlocal edit_late
        probe.forgive()
        mark = probe.mark()
        spin(1000)  # the checks and the footer catch up; the recovery file follows 2 s after a change
        edit_late += probe.since(mark)

    for k, row in enumerate(rows):
        tab.show_row(row)
        spin(50)
        column = PROMPT if k % 2 == 0 else COMPLETION
        edits.append(timed(lambda r=row, c=column: tab.model.setData(tab.model.index(r, c), f"Edited row {r + 1}."),
                           view))
        settle_after()
    for step in (window.undo_stack.undo, window.undo_stack.redo):
        for _ in rows:
            undos.append(timed(step, view))
            settle_after()
    mark = probe.mark()
    wait_until(background_idle, 300, "the checks and the recovery file after the edits")
    edit_late += probe.since(mark)
    print(f"\n4. Edit a cell (setData + repaint): {ms_stats(edits)}; undo / redo: {ms_stats(undos)}")
    print(f"   after the edits (checks, recovery file): {late_stats(edit_late)}")
    summary.gui_calls("Edit a cell, median / max", edits)
    summary.gui_calls("Undo / redo, median / max", undos)
    summary.lateness("GUI lateness after edits", edit_late)

    # 5. token statistics
    probe.phase = "token statistics"
    bar_seen = {"shown": False, "updates": 0, "last": -1}

    def watch_bar() -> None:
        progress = tab.token_progress
        if progress.isVisible():
            bar_seen["shown"] = True
            if progress.maximum() > 0 and progress.value() != bar_seen["last"]:
                bar_seen["updates"] += 1
                bar_seen["last"] = progress.value()

    def counted() -> bool:
        if tab.token_label.text().startswith("Cannot count tokens"):
            raise SystemExit(tab.token_label.text())
        return tab.model.has_token_counts() and not tab.token_counter.busy()

    probe.watch = watch_bar
    mark = probe.mark()
    start = time.perf_counter()
    tab.count_tokens()
    wait_until(counted, 900, "the token counts")
    count_s = time.perf_counter() - start
    wait_until(background_idle, 300, "the checks after the token counts")
    count_late = probe.since(mark)
    probe.watch = None
    missing = len(tab.model.rows_without_token_count())
    probe.forgive()  # that look-up is the benchmark's, not the app's
    print(f"\n5. Token statistics ({args.model} model): counted {n - missing:,} of {n:,} rows in {count_s:.1f} s "
          f"({n / count_s:,.0f} rows/s, tokenizer loading included); progress bar shown: "
          f"{'yes' if bar_seen['shown'] else 'NO'} ({bar_seen['updates']} updates)")
    print(f"   during the count and the checks after it: {late_stats(count_late)}")
    summary.add("Token statistics: wall time", f"{count_s:.1f} s ({n / count_s:,.0f} rows/s)")
    summary.add("Token statistics: progress bar shown", "yes" if bar_seen["shown"] else "no", "yes",
                bar_seen["shown"])
    summary.add("Token statistics: GUI lateness p99", f"{percentile(count_late, 99):.0f} ms")
    summary.lateness("Token statistics: GUI lateness", count_late)

    # 6. checks
    probe.phase = "checks"
    checked: list[float] = []
    tab.checks.checked.connect(lambda: checked.append(time.perf_counter()))
    check_s: list[float] = []
    check_late: list[float] = []
    for k in range(reps):
        row = rng.randrange(n)
        for change in (lambda r=row, k=k: tab.model.setData(tab.model.index(r, COMPLETION), f"Changed {k}."),
                       window.undo_stack.undo):
            mark = probe.mark()
            start = time.perf_counter()
            change()
            probe.forgive()  # the edit itself is timed in step 4
            wait_until(lambda s=start: bool(checked) and checked[-1] > s and tab.checks.is_current(), 300,
                       "the checks")
            check_s.append(checked[-1] - start)
            check_late += probe.since(mark)
    found = ", ".join(f"{r.title.lower()} {len(r.rows):,}" for r in tab.checks.results()) or "nothing"
    print(f"\n6. Checks, from a change to fresh results: median {statistics.median(check_s):.2f} s, "
          f"max {max(check_s):.2f} s ({len(check_s)} changes; the first 300 ms is the wait for typing to pause)")
    print(f"   found (rows): {found}; during the checks: {late_stats(check_late)}")
    summary.add("Checks: change to fresh results", f"{statistics.median(check_s):.2f} / {max(check_s):.2f} s")
    summary.lateness("Checks: GUI lateness", check_late)

    # 7. find and replace
    probe.phase = "find"
    tab.show_find_replace()
    dialog = tab.row_actions.find_dialog
    spin(300)
    found: list[tuple[int, int]] = []
    dialog.searched.connect(lambda matches, rows: found.append((matches, rows)))
    find_s: list[float] = []
    find_late: list[float] = []
    for word in FILTER_WORDS[:reps]:
        mark = probe.mark()
        start = time.perf_counter()
        dialog.find_edit.setText(word)
        dialog.search_now()
        wait_until(lambda: not dialog.is_searching(), 300, "the search")
        find_s.append(time.perf_counter() - start)
        find_late += probe.since(mark)
    print(f"\n7. Find over {n:,} rows: median {statistics.median(find_s):.2f} s, max {max(find_s):.2f} s "
          f"({', '.join(f'{m:,} matches in {r:,} rows' for m, r in found)}); during the searches: "
          f"{late_stats(find_late)}")
    summary.add("Find: search to count shown", f"{statistics.median(find_s):.2f} / {max(find_s):.2f} s")
    summary.lateness("Find: GUI lateness", find_late)
    dialog.close()

    probe.stop()
    if sampler is not None:
        sampler.stop()
        sampler.report()
    tab.shutdown()
    window.wait_for_autosave()
    window.hide()  # not close(): that would ask whether to save the imported rows
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, help="rows in the generated file (default 100,000; --quick: 2,000)")
    parser.add_argument("--model", choices=("default", "tiny"),
                        help="tokenizer for the token statistics: the built-in model or a tiny one built here "
                             "(default: default; --quick: tiny)")
    parser.add_argument("--quick", action="store_true", help="2,000 rows, tiny model, fewer repetitions")
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated rows and the measured places")
    parser.add_argument("--markdown", action="store_true", help="also print the summary as a Markdown table")
    parser.add_argument("--stalls", nargs="?", type=float, const=STALL_MS, default=None, metavar="MS",
                        help="also sample where the GUI thread is while a tick is over MS late (default "
                             f"{STALL_MS:.0f}; for finding a stall's cause)")
    parser.add_argument("--child-tiny-model", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_tiny_model:
        child_tiny_model(args.child_tiny_model)
        return 0
    args.rows = args.rows or (2_000 if args.quick else 100_000)
    args.model = args.model or ("tiny" if args.quick else "default")
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["LORADESK_HOME"] = str(Path(tmp) / "home")  # no recovery prompt, no recent files
        started = time.perf_counter()
        summary = run(args, Path(tmp))
        summary.print(args.markdown)
        print(f"\n(total {time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
