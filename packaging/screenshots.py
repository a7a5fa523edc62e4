"""Save screenshots of the real main window, one per tab, for the docs.

Run it after a training run (it shows the newest run of the runs folder, or ``--run``)::

    xvfb-run -a python packaging/screenshots.py [--project FILE.loradesk] [--run RUN_DIR] [--out docs/screenshots]

It writes ``dataset.png`` (the current row token by token), ``lengths.png`` (the token-length histogram),
``checks.png``, ``train.png``, ``compare.png`` and ``runs.png``. On the Compare tab it asks the
sample probe and compares the held-out questions with the run's adapter, so the models really answer.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from loradesk.ui.main_window import MainWindow

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", type=Path, help="a .loradesk project to open (default: the sample project)")
    parser.add_argument("--run", type=Path, help="the run folder to show (default: the newest run)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots", help="where the PNGs go")
    parser.add_argument("--size", default="1320x820", help="window size, WIDTHxHEIGHT (default 1320x820)")
    parser.add_argument("--max-new-tokens", type=int, default=64, help="answer length on the Compare tab")
    parser.add_argument("--no-compare", action="store_true", help="do not generate answers on the Compare tab")
    parser.add_argument("--dataset-only", action="store_true", help="only the Dataset tab shots")
    parser.add_argument("--row", type=int, default=1, help="the dataset row shown token by token (1-based)")
    return parser.parse_args(argv)


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Let the event loop run until ``predicate()`` holds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        spin(50)


def settle(ms: int = 400) -> None:
    """Let layouts, the plot timer and repaints catch up before a grab."""
    spin(ms)


def spin(ms: int) -> None:
    """Run the real event loop for ``ms`` ms (QTest.qWait keeps the GIL while it sleeps, starving workers)."""
    from PySide6.QtCore import QEventLoop, QTimer

    loop = QEventLoop()
    QTimer.singleShot(ms, loop.quit)
    loop.exec()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    width, height = (int(v) for v in args.size.lower().split("x"))

    from loradesk.core import runs
    from loradesk.core.project import Project
    from loradesk.ui.app import create_app
    from loradesk.ui.main_window import MainWindow

    app = create_app([])
    project = Project.load(args.project) if args.project else Project.new_default()
    run_dir = args.run
    if run_dir is None:
        found = [r for r in runs.list_runs() if r.status in ("completed", "stopped")]
        run_dir = found[0].path if found else None
    if run_dir is None:
        print("no finished run found: the Train, Compare and Runs shots will be empty", file=sys.stderr)

    window = MainWindow(project)
    window.resize(width, height)
    window.show()
    try:
        take_shots(window, args, run_dir)
    finally:
        # Not window.close(): that would also clear a recovery file this script never offered to restore.
        for tab in (window.training_tab, window.compare_tab, window.runs_tab):
            tab.shutdown()
        window.hide()
        device_probed(window, 300)  # its background thread must end before the app does
        app.processEvents()
    return 0


def device_probed(window: MainWindow, timeout: float) -> bool:
    """Wait for the window's background device probe (it fills the status bar)."""
    try:
        wait_until(lambda: window.device_label.text() != "Device: …", timeout, "the device probe")
    except TimeoutError as exc:
        print(exc, file=sys.stderr)
        return False
    return True


def take_shots(window: MainWindow, args: argparse.Namespace, run_dir: Path | None) -> None:
    wait_until(lambda: window.isVisible(), 10, "the window")
    device_probed(window, 300)  # the shots are still worth taking without it
    args.out.mkdir(parents=True, exist_ok=True)

    def shoot(tab: object, name: str) -> None:
        window.tabs.setCurrentWidget(tab)
        settle()
        path = args.out / name
        if not window.grab().save(str(path)):
            raise OSError(f"could not write {path}")
        print(path)

    window.tabs.setCurrentIndex(0)
    tab = window.dataset_tab
    wait_until(lambda: tab.model.has_token_counts() and not tab.token_counter.busy(), 600, "the token counts")
    tab.select_source_rows([args.row - 1])
    wait_until(lambda: tab.token_preview.explained() is not None, 120, "the token preview")
    tab.inspector.setCurrentWidget(tab.token_preview)
    shoot(window.tabs.widget(0), "dataset.png")
    tab.inspector.setCurrentWidget(tab.length_histogram)
    shoot(window.tabs.widget(0), "lengths.png")
    wait_until(tab.checks.is_current, 60, "the checks")
    tab.inspector.setCurrentWidget(tab.checks)
    shoot(window.tabs.widget(0), "checks.png")
    # The same row with a max length that cuts it: the lost tokens and the over-long rows show in red.
    config = window.project.config
    original = config.training.max_length
    config.training.max_length = 64
    window.project.config = config
    tab.select_source_rows([1])  # a longer row: its answer and end-of-turn token are cut
    wait_until(lambda: getattr(tab.token_preview.explained(), "max_length", None) == 64
               and tab.token_preview.header_text().startswith("Row 2"), 60, "the cut preview")
    tab.inspector.setCurrentWidget(tab.token_preview)
    shoot(window.tabs.widget(0), "tokens-cut.png")
    tab.inspector.setCurrentWidget(tab.length_histogram)
    shoot(window.tabs.widget(0), "lengths-cut.png")
    config.training.max_length = original
    window.project.config = config
    tab.inspector.setCurrentWidget(tab.token_preview)
    if args.dataset_only:
        return

    train, compare, runs_tab = window.training_tab, window.compare_tab, window.runs_tab
    if run_dir is not None:
        train.show_run(run_dir)
    shoot(train, "train.png")

    window.tabs.setCurrentWidget(compare)
    if run_dir is not None:
        compare.set_run(str(run_dir))
        if not args.no_compare:
            compare.max_tokens.setValue(args.max_new_tokens)
            compare.ask()
            wait_until(lambda: bool(compare.last_answers) and not compare.is_busy(), 600, "the answers")
            compare.compare_all()
            wait_until(lambda: compare.last_summary is not None and not compare.is_busy(), 1800, "Compare all")
    shoot(compare, "compare.png")

    runs_tab.refresh()
    if run_dir is not None:
        runs_tab.select_run(run_dir)
    shoot(runs_tab, "runs.png")


if __name__ == "__main__":
    raise SystemExit(main())
