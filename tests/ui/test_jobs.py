"""The one background-job mechanism (``ui/jobs.py``) and the one error path (``ui/errors.py``)."""

from __future__ import annotations

import operator
import threading
import time

from PySide6.QtCore import QThread
from PySide6.QtWidgets import QMessageBox, QWidget
from pytestqt.qtbot import QtBot

from loradesk.ui import errors, worker_process
from loradesk.ui.errors import ErrorReport, show_error
from loradesk.ui.jobs import Jobs, TaskState, wait_for_jobs


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


def test_jobs_of_a_deleted_owner_are_stopped_and_deliver_nothing(qtbot: QtBot) -> None:
    owner = QWidget()
    jobs = Jobs(owner)
    gate = threading.Event()
    delivered: list[object] = []
    job = jobs.start(count, 1000, gate, state=True, on_event=delivered.append, on_result=delivered.append)
    gate.set()
    owner.deleteLater()
    qtbot.waitUntil(lambda: not job.is_running())
    qtbot.wait(50)
    assert job.state.stop_requested
    count_after = len(delivered)
    qtbot.wait(50)
    assert len(delivered) == count_after < 1000


def test_wait_for_jobs_stops_and_joins_every_running_job(qtbot: QtBot) -> None:
    jobs = Jobs()
    job = jobs.start(count, 100_000, state=True)
    assert wait_for_jobs(5_000)
    assert not job.is_running()


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


def lose_an_upload(items: list[int], *, state: TaskState) -> tuple[int, int]:
    """Sum ``items`` in the worker process; then again after the process dropped the uploaded chunks."""
    first = state.upload(items, channel="test-lost", chunk=3)
    total = state.in_process(sum, first)
    state.in_process(worker_process.forget, "test-lost")  # as if dropped for space, or a new process
    again = state.upload(items, channel="test-lost", chunk=3)  # the same objects: nothing is sent now
    return total, state.in_process(sum, again)  # the lost chunks are sent again and the call retried


def test_uploaded_items_reach_the_process_and_lost_chunks_are_sent_again(qtbot: QtBot) -> None:
    jobs = Jobs()
    results: list[tuple[int, int]] = []
    jobs.start(lose_an_upload, list(range(10)), state=True, on_result=results.append)
    qtbot.waitUntil(lambda: bool(results), timeout=60_000)
    assert results == [(45, 45)]


def test_an_error_in_the_process_reaches_the_job_with_its_message(qtbot: QtBot) -> None:
    jobs = Jobs()
    errors_seen: list[str] = []

    def job(*, state: TaskState) -> object:
        return state.in_process(operator.truediv, 1, 0)

    jobs.start(job, state=True, on_error=lambda message, _details: errors_seen.append(message))
    qtbot.waitUntil(lambda: bool(errors_seen), timeout=60_000)
    assert errors_seen == ["division by zero"]


def test_ctrl_c_in_the_terminal_leaves_the_worker_process_running(qtbot: QtBot) -> None:
    import os
    import signal

    jobs = Jobs()
    pids: list[int] = []
    jobs.start(os.getpid, process=True, on_result=pids.append)
    qtbot.waitUntil(lambda: bool(pids), timeout=60_000)
    os.kill(pids[0], signal.SIGINT)  # what Ctrl+C sends to the whole process group
    jobs.start(os.getpid, process=True, on_result=pids.append)
    qtbot.waitUntil(lambda: len(pids) == 2, timeout=60_000)
    assert pids[1] == pids[0]  # the same warm process answered: it was not interrupted


def test_the_worker_process_runs_at_a_lower_priority_than_the_window(qtbot: QtBot) -> None:
    import os

    from loradesk.ui.jobs import shutdown_process_pool

    shutdown_process_pool()  # a fresh worker: its start-up sets the priority
    jobs = Jobs()
    niceness: list[int] = []
    jobs.start(os.nice, 0, process=True, on_result=niceness.append)
    qtbot.waitUntil(lambda: bool(niceness), timeout=60_000)
    assert niceness[0] == min(19, os.nice(0) + worker_process.BACKGROUND_NICE)


def pid_before_and_after_a_kill(*, state: TaskState) -> tuple[int, int]:
    import os
    import signal

    first = state.in_process(os.getpid)
    os.kill(first, signal.SIGKILL)  # the worker process dies (killed, out of memory)
    return first, state.in_process(os.getpid)


def test_a_killed_worker_process_is_replaced_and_the_call_retried(qtbot: QtBot) -> None:
    jobs = Jobs()
    results: list[tuple[int, int]] = []
    jobs.start(pid_before_and_after_a_kill, state=True, on_result=results.append)
    qtbot.waitUntil(lambda: bool(results), timeout=60_000)
    first, second = results[0]
    assert second != first  # a fresh process answered, and the job did not fail
