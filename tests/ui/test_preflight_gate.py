"""The Train tab's pre-flight check with the tiny model: Start runs it first and the run file records it,
an unchanged Start reuses it, the setting switches it off, Stop cancels it, and a run that will not fit
waits for "Start anyway" or "Cancel"."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PySide6.QtCore import Qt

from loradesk.core import preflight as core_preflight
from loradesk.core import runs
from loradesk.core.config import ModelSettings
from loradesk.ui import errors, preflight_gate
from loradesk.ui.training_tab import TrainingTab


@pytest.fixture
def tab(qtbot, project, tmp_path, tiny_model_dir) -> TrainingTab:
    project.config.model = ModelSettings(kind="local", name=str(tiny_model_dir))
    t = project.config.training
    t.max_steps, t.batch_size, t.logging_steps, t.precision = 2, 4, 1, "fp32"
    widget = TrainingTab(project)  # not shown: "shown" below means not hidden
    qtbot.addWidget(widget)
    widget.runs_dir = tmp_path / "runs"
    yield widget
    widget.shutdown()


@pytest.fixture
def checks(monkeypatch) -> list[int]:
    """One entry per pre-flight check the tab starts."""
    calls: list[int] = []
    real = preflight_gate.check

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(preflight_gate, "check", counted)
    return calls


def run_record(run_dir: str) -> dict:
    return json.loads((Path(run_dir) / runs.RUN_FILE).read_text())


def test_start_checks_first_records_the_check_and_reuses_it_until_a_setting_changes(qtbot, tab, project,
                                                                                   checks):
    changes: list[bool] = []
    tab.running_changed.connect(changes.append)
    with qtbot.waitSignal(tab.run_finished, timeout=120_000) as finished:
        qtbot.mouseClick(tab.start_button, Qt.MouseButton.LeftButton)
        assert tab.is_running() and tab.stop_button.isEnabled() and not tab.start_button.isEnabled()
    assert changes == [True, False] and checks == [1]
    summary = tab.preflight_panel.summary_label.text()
    assert "s/step x 2 steps" in summary and "peak memory" in summary and summary.endswith("fits")
    assert tab.preflight_panel.warning.isHidden()
    record = run_record(finished.args[0])["preflight"]
    assert record["steps"] == 2 and record["fits"] and record["seconds_per_step"] > 0

    with qtbot.waitSignal(tab.run_finished, timeout=120_000) as again:  # nothing changed: no new check
        tab.start()
    assert checks == [1] and run_record(again.args[0])["preflight"] == record

    project.config.training.learning_rate = 2e-3
    with qtbot.waitSignal(tab.run_finished, timeout=120_000) as changed:
        tab.start()
    assert checks == [1, 1] and run_record(changed.args[0])["preflight"]["steps"] == 2


def test_switched_off_the_run_starts_without_a_check(qtbot, tab, project, checks):
    project.config.training.preflight = False
    with qtbot.waitSignal(tab.run_finished, timeout=120_000) as finished:
        tab.start()
    assert checks == [] and "preflight" not in run_record(finished.args[0])
    assert tab.preflight_panel.isHidden()


def test_stop_cancels_the_check_and_starts_nothing(qtbot, tab, checks, shown_errors):
    changes: list[bool] = []
    tab.running_changed.connect(changes.append)
    tab.start()
    assert tab.is_running() and checks == [1]
    tab.stop()
    qtbot.waitUntil(lambda: not tab.is_running(), timeout=60_000)
    assert changes == [True, False] and shown_errors == [] and errors.open_box(tab) is None
    assert tab.preflight_panel.summary_label.text() == "Pre-flight check stopped; nothing was started."
    assert tab.phase_label.text() == "Check stopped" and tab.start_button.isEnabled()
    assert not tab.runs_dir.exists() or not any(tab.runs_dir.iterdir())


def test_a_run_that_will_not_fit_waits_for_start_anyway_or_cancel(qtbot, tab, monkeypatch, checks):
    monkeypatch.setattr(core_preflight, "available_memory", lambda device: 1024)
    panel = tab.preflight_panel
    with qtbot.waitSignal(tab.running_changed, timeout=120_000, check_params_cb=lambda running: not running):
        tab.start()
    assert not panel.warning.isHidden() and "will probably not fit" in panel.warning_label.text()
    assert "batch size 2 with gradient accumulation 2" in panel.warning_label.text()
    assert "1 MiB are available" in panel.warning_label.text() or "0 MiB are available" in panel.warning_label.text()
    assert tab.phase_label.text() == "Will not fit" and not tab.is_running()
    assert not tab.runs_dir.exists() or not any(tab.runs_dir.iterdir())  # nothing started

    qtbot.mouseClick(panel.cancel_button, Qt.MouseButton.LeftButton)
    assert panel.warning.isHidden() and not tab.is_running()

    tab.start()  # the same settings: the same answer, without checking again
    assert checks == [1] and not panel.warning.isHidden() and not tab.is_running()
    with qtbot.waitSignal(tab.run_finished, timeout=120_000) as finished:
        qtbot.mouseClick(panel.start_anyway_button, Qt.MouseButton.LeftButton)
    assert panel.warning.isHidden()
    record = run_record(finished.args[0])["preflight"]
    assert record["fits"] is False and record["available_memory"] == 1024


def test_a_check_that_fails_shows_the_error_and_starts_nothing(qtbot, tab, project, tmp_path, shown_errors):
    missing = tmp_path / "gone"
    project.config.model = ModelSettings(kind="local", name=str(missing))
    with qtbot.waitSignal(tab.running_changed, timeout=60_000, check_params_cb=lambda running: not running):
        tab.start()
    (report,) = shown_errors
    assert report.title == "The pre-flight check failed" and str(missing) in report.message
    assert report.note == errors.UNCHANGED
    assert tab.phase_label.text() == "Check failed" and tab.start_button.isEnabled()
    assert tab.preflight_panel.summary_label.text().startswith("Pre-flight check failed: ")
    assert not tab.runs_dir.exists() or not any(tab.runs_dir.iterdir())
