"""The worker process behind ``ui/jobs.py``: calls into it from a thread job, rows sent in chunks (lost ones
sent again), a killed process replaced, Ctrl+C ignored, a lower priority."""

from __future__ import annotations

import operator

from pytestqt.qtbot import QtBot

from loradesk.ui import worker_process
from loradesk.ui.jobs import Jobs, TaskState


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
    shutdown_process_pool()  # started by a (lower-priority) job thread: still the window's + BACKGROUND_NICE
    jobs.start(lambda *, state: state.in_process(os.nice, 0), state=True, on_result=niceness.append)
    qtbot.waitUntil(lambda: len(niceness) == 2, timeout=60_000)
    assert niceness[1] == niceness[0]


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
