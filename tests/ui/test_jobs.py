"""The one background-job mechanism (``ui/jobs.py``) and the one error path (``ui/errors.py``)."""

from __future__ import annotations

import operator
import sys
import threading
import time

import pytest
from PySide6.QtCore import QThread
from PySide6.QtWidgets import QMessageBox, QWidget
from pytestqt.qtbot import QtBot

from loradesk.ui import errors
from loradesk.ui.errors import ErrorReport, show_error
from loradesk.ui.jobs import JOB_NICE, Jobs, TaskState, wait_for_jobs


def count(n: int, gate: threading.Event | None = None, *, state: TaskState) -> int:
    """Emit 0..n-1 as events, stopping when asked; returns how many it emitted."""
    for i in range(n):
        if gate is not None:
            gate.wait(5)
        state.check()
        state.emit(i)
        time.sleep(0.005)
    return n


def test_events_arrive_in_order_on_the_gui_thread_then_the_result(qtbot: QtBot) -> None:
    jobs = Jobs()
    seen: list[tuple[str, object, bool]] = []
    gui = QThread.currentThread()

    def note(kind: str) -> object:
        return lambda value=None: seen.append((kind, value, QThread.currentThread() is gui))

    jobs.start(count, 5, state=True, on_event=note("event"), on_result=note("result"), on_finished=note("done"))
    qtbot.waitUntil(lambda: bool(seen) and seen[-1][0] == "done")
    assert [(k, v) for k, v, _ in seen] == [("event", i) for i in range(5)] + [("result", 5), ("done", None)]
    assert all(on_gui for _, _, on_gui in seen)


def test_latest_request_wins(qtbot: QtBot) -> None:
    jobs = Jobs()
    gate = threading.Event()
    results: list[int] = []
    events: list[int] = []
    first = jobs.start(count, 3, gate, state=True, key="find", on_result=results.append, on_event=events.append)
    second = jobs.start(count, 4, state=True, key="find", on_result=results.append)
    gate.set()
    qtbot.waitUntil(lambda: not first.is_running() and not second.is_running())
    qtbot.wait(50)
    assert results == [4]  # the first was stopped and nothing it delivered reached the widget
    assert events == []
    assert first.superseded and not second.superseded


def test_a_job_counts_as_busy_until_its_result_was_handled(qtbot: QtBot) -> None:
    jobs = Jobs()
    seen: list[bool] = []
    job = jobs.start(operator.add, 1, 2, on_result=lambda _: seen.append(jobs.busy()))
    assert job.wait(5_000)  # the thread has ended, but its result is still queued for the GUI thread
    assert jobs.busy() and job.is_running()
    qtbot.waitUntil(lambda: not jobs.busy())
    assert seen == [True]  # while on_result runs, the job is still busy; afterwards it is not


def test_cancel_stops_the_function_at_its_next_check(qtbot: QtBot) -> None:
    jobs = Jobs()
    gate = threading.Event()
    outcome: list[str] = []
    job = jobs.start(count, 1000, gate, state=True, on_result=lambda _: outcome.append("result"),
                     on_cancelled=lambda: outcome.append("cancelled"))
    jobs.cancel()
    gate.set()
    qtbot.waitUntil(lambda: outcome == ["cancelled"])
    assert not job.is_running() and not jobs.busy()


def test_an_error_goes_to_the_error_path_with_its_title(qtbot: QtBot, shown_errors: list[ErrorReport]) -> None:
    owner = QWidget()
    jobs = Jobs(owner)
    jobs.start(operator.truediv, 1, 0, error_title="Cannot divide")
    qtbot.waitUntil(lambda: bool(shown_errors))
    report = shown_errors[0]
    assert report.title == "Cannot divide" and "division by zero" in report.message
    assert "ZeroDivisionError" in report.details  # the traceback sits behind "Show Details…"
    box = errors.open_box(owner)
    assert box is not None and box.isVisible() and box.text() == report.message


def test_a_given_error_handler_replaces_the_dialog(qtbot: QtBot, shown_errors: list[ErrorReport]) -> None:
    jobs = Jobs()
    got: list[str] = []
    jobs.start(operator.truediv, 1, 0, on_error=lambda message, _details: got.append(message))
    qtbot.waitUntil(lambda: bool(got))
    assert "division by zero" in got[0] and shown_errors == []


def test_a_process_job_runs_in_another_process(qtbot: QtBot) -> None:
    import os

    jobs = Jobs()
    pids: list[int] = []
    jobs.start(os.getpid, process=True, on_result=pids.append)
    qtbot.waitUntil(lambda: bool(pids), timeout=60_000)
    assert pids[0] != os.getpid()


def thread_niceness() -> tuple[int, int]:
    """The calling thread's niceness, and that of a thread it starts (which inherits it)."""
    import os

    def own() -> int:
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    child: list[int] = []
    t = threading.Thread(target=lambda: child.append(own()))
    t.start()
    t.join()
    return own(), child[0]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a thread has its own priority on Linux only")
def test_a_thread_job_runs_below_the_gui_threads_priority_and_so_do_threads_it_starts(qtbot: QtBot) -> None:
    import os

    gui = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    jobs = Jobs()
    got: list[tuple[int, int]] = []
    jobs.start(thread_niceness, on_result=got.append)
    qtbot.waitUntil(lambda: bool(got))
    assert got[0] == (min(19, gui + JOB_NICE),) * 2  # torch's worker threads, started by the job, inherit it
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == gui  # the GUI thread is untouched


def test_jobs_of_a_deleted_owner_are_stopped_and_deliver_nothing(qtbot: QtBot) -> None:
    owner = QWidget()
    jobs = Jobs(owner)
    gate = threading.Event()
    delivered: list[object] = []
    job = jobs.start(count, 1000, gate, state=True, on_event=delivered.append, on_result=delivered.append)
    gate.set()
    owner.deleteLater()
    qtbot.waitUntil(lambda: job.wait(0))
    qtbot.wait(50)
    assert job.state.stop_requested
    count_after = len(delivered)
    qtbot.wait(50)
    assert len(delivered) == count_after < 1000


def test_wait_for_jobs_stops_and_joins_every_running_job(qtbot: QtBot) -> None:
    jobs = Jobs()
    job = jobs.start(count, 100_000, state=True)
    assert wait_for_jobs(5_000)
    assert job.wait(0)  # the function has returned (its end is still to be handled on the GUI thread)


def test_a_new_error_of_the_same_widget_replaces_the_open_dialog(qtbot: QtBot,
                                                                  shown_errors: list[ErrorReport]) -> None:
    owner = QWidget()
    first = show_error(owner, "First", "one")
    second = show_error(owner, "Second", "two", note=errors.UNCHANGED)
    assert first is not None and second is not None
    qtbot.waitUntil(lambda: not first.isVisible())
    assert second.isVisible() and second.informativeText() == errors.UNCHANGED
    assert [r.title for r in shown_errors] == ["First", "Second"]


def test_retry_button_calls_back(qtbot: QtBot, shown_errors: list[ErrorReport]) -> None:
    calls: list[int] = []
    owner = QWidget()
    box = show_error(owner, "Out of memory", "too big", on_retry=lambda: calls.append(1),
                     retry_text="Retry with batch 2")
    assert box is not None
    retry = box.button(QMessageBox.StandardButton.Retry)
    assert retry.text() == "Retry with batch 2"
    retry.click()
    assert calls == [1]


def reports(state: TaskState) -> None:
    state.progress("Loading model…")
    state.progress("Answering 1–8…", 0.0)
    for i in range(1, 100):
        state.progress("Answering…", i / 100)
    state.progress("Done", 1.0)


def test_progress_is_thinned_but_a_new_stage_and_the_end_always_show(qtbot: QtBot) -> None:
    jobs = Jobs()
    seen: list[tuple[str, float | None]] = []
    job = jobs.start(reports, state=True, on_progress=lambda text, fraction: seen.append((text, fraction)))
    qtbot.waitUntil(lambda: not job.is_running())
    assert seen[:2] == [("Loading model…", None), ("Answering 1–8…", 0.0)]
    assert seen[-1] == ("Done", 1.0)
    assert len(seen) < 50  # 99 fast counted steps are thinned out


def test_a_job_started_without_interrupt_runs_on_when_superseded_but_delivers_nothing(qtbot: QtBot) -> None:
    jobs = Jobs()
    gate = threading.Event()
    results: list[int] = []
    first = jobs.start(count, 3, gate, state=True, key="load", interrupt=False, on_result=results.append)
    second = jobs.start(count, 2, state=True, key="load", on_result=results.append)
    gate.set()
    qtbot.waitUntil(lambda: not first.is_running() and not second.is_running())  # both ends were handled
    assert results == [2]
    assert first.superseded and not first.state.stop_requested  # it ran to the end: not stopped, only dropped
