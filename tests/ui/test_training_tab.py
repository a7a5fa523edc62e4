"""The Train tab with the tiny real model: start, live progress, stop/shutdown, resume, failures, and run
health (the warnings banner, the out-of-memory question)."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox

from loradesk.core import runs
from loradesk.core.config import ModelSettings
from loradesk.ui import errors
from loradesk.ui.run_view import epoch_text, format_duration
from loradesk.ui.runs_tab import COLUMNS, RunsTab
from loradesk.ui.training_tab import TrainingTab


def use_tiny_model(project, model_dir: Path, steps: int, lr: float = 5e-3) -> None:
    project.config.model = ModelSettings(kind="local", name=str(model_dir))
    t = project.config.training
    t.max_steps, t.batch_size, t.logging_steps, t.learning_rate = steps, 4, 1, lr
    t.preflight = False  # these tests are about the run; tests/ui/test_preflight_gate.py covers the check


@pytest.fixture
def tab(qtbot, project, tmp_path) -> TrainingTab:
    widget = TrainingTab(project)
    widget.runs_dir = tmp_path / "runs"
    qtbot.addWidget(widget)
    widget.resize(900, 700)
    widget.show()
    yield widget
    widget.shutdown()


def test_a_run_fills_the_plot_progress_and_stats(qtbot, tab, project, tiny_model_dir):
    use_tiny_model(project, tiny_model_dir, steps=5)
    changes: list[bool] = []
    tab.running_changed.connect(changes.append)
    with qtbot.waitSignal(tab.run_finished, timeout=120_000) as finished:
        qtbot.mouseClick(tab.start_button, Qt.MouseButton.LeftButton)
        assert tab.is_running()
        assert not tab.start_button.isEnabled() and tab.stop_button.isEnabled()
    run_dir = Path(finished.args[0])

    assert changes == [True, False]
    assert not tab.is_running() and tab.start_button.isEnabled() and not tab.stop_button.isEnabled()
    x, y = tab.plot.raw_curve.getData()
    assert list(x) == [1, 2, 3, 4, 5] and all(v > 0 for v in y)
    sx, _ = tab.plot.smooth_curve.getData()
    assert len(sx) == 5
    lx, _ = tab.plot.lr_curve.getData()
    assert len(lx) == 5
    assert tab.progress_bar.value() == tab.progress_bar.maximum() == 5
    assert "step 5/5" in tab.progress_bar.text() and "100%" in tab.progress_bar.text()
    assert tab.phase_label.text() == "Completed"
    assert tab.device_stat.value.text().startswith("CPU")
    assert tab.speed_stat.value.text() != "—"
    assert str(run_dir) in tab.result_label.text()
    assert "Adapter saved" in tab.log_view.toPlainText()
    assert (run_dir / "adapter_model.safetensors").is_file()
    assert run_dir.parent == tab.runs_dir


def test_the_dataset_is_snapshot_at_start(qtbot, tab, project, tiny_model_dir):
    use_tiny_model(project, tiny_model_dir, steps=2)
    rows_before = len(project.dataset)
    with qtbot.waitSignal(tab.run_finished, timeout=120_000) as finished:
        tab.start()
        project.dataset.remove(0, 10)  # edits while training do not reach the run
        project.config.training.max_steps = 99
    trained = runs.load_dataset_snapshot(Path(finished.args[0]))
    assert len(trained) == rows_before
    assert runs.read_run(Path(finished.args[0])).config.training.max_steps == 2


def test_shutdown_while_training_stops_quickly_and_keeps_an_adapter(qtbot, tab, project, tiny_model_dir):
    use_tiny_model(project, tiny_model_dir, steps=2000)
    tab.start()
    qtbot.waitUntil(lambda: tab.plot.point_count() >= 2, timeout=60_000)
    tab.shutdown()  # how long it takes is measured by benchmarks/gui_responsiveness.py
    assert not tab.is_running()
    found = runs.list_runs(tab.runs_dir)
    assert len(found) == 1 and found[0].status == "stopped"
    assert (found[0].path / "adapter_model.safetensors").is_file()
    assert runs.latest_checkpoint(found[0].path) is not None
    qtbot.waitUntil(lambda: tab.resume_button.isEnabled(), timeout=5_000)  # the queued end arrives


def test_stop_then_resume_continues_the_same_run(qtbot, tab, project, tiny_model_dir):
    use_tiny_model(project, tiny_model_dir, steps=12)
    with qtbot.waitSignal(tab.run_finished, timeout=120_000) as stopped:
        tab.start()
        qtbot.waitUntil(lambda: tab.plot.point_count() >= 3, timeout=60_000)
        qtbot.mouseClick(tab.stop_button, Qt.MouseButton.LeftButton)
        assert tab.phase_label.text() == "Stopping…" and not tab.stop_button.isEnabled()
    run_dir = Path(stopped.args[0])
    assert tab.last_result.status == "stopped" and tab.phase_label.text() == "Stopped"
    assert tab.resume_dir == run_dir and tab.resume_button.isEnabled()
    stopped_at = tab.last_result.steps

    with qtbot.waitSignal(tab.run_finished, timeout=120_000) as finished:
        qtbot.mouseClick(tab.resume_button, Qt.MouseButton.LeftButton)
    assert Path(finished.args[0]) == run_dir
    assert tab.last_result.status == "completed" and tab.last_result.steps == 12
    x, _ = tab.plot.raw_curve.getData()
    assert list(x) == list(range(1, 13))  # earlier points reloaded, later ones streamed
    assert stopped_at < 12
    assert not tab.resume_button.isEnabled()


def test_a_new_tab_offers_to_resume_the_last_stopped_run(qtbot, tab, project, tiny_model_dir):
    use_tiny_model(project, tiny_model_dir, steps=500)
    with qtbot.waitSignal(tab.run_finished, timeout=120_000) as stopped:
        tab.start()
        qtbot.waitUntil(lambda: tab.plot.point_count() >= 1, timeout=60_000)
        tab.stop()
    again = TrainingTab(project)
    qtbot.addWidget(again)
    assert again.resume_dir is None  # the user's own runs folder is empty
    again.runs_dir = tab.runs_dir
    assert again.resume_button.isEnabled()
    assert again.resume_dir == Path(stopped.args[0])
    # the stopped run's curves and progress are back too
    logged = [m["step"] for m in runs.read_metrics(again.resume_dir) if "loss" in m]
    x, _ = again.plot.raw_curve.getData()
    assert list(x) == logged and logged
    assert again.phase_label.text() == "Last run: stopped"
    assert again.progress_bar.value() == tab.last_result.steps and again.progress_bar.maximum() == 500


def test_a_missing_model_folder_shows_the_failure(qtbot, tab, project, tmp_path, shown_errors):
    missing = tmp_path / "gone"
    project.config.model = ModelSettings(kind="local", name=str(missing))
    project.config.training.preflight = False  # the run's own failure (the check's: test_preflight_gate.py)
    rows = project.dataset.records()
    with qtbot.waitSignal(tab.running_changed, timeout=60_000, check_params_cb=lambda running: not running):
        tab.start()
    (report,) = shown_errors
    box = errors.open_box(tab)
    assert box is not None and box.isVisible() and report.title == "Training failed"
    assert str(missing) in box.text() and "ModelError" in box.detailedText()
    assert report.note == errors.UNCHANGED and box.informativeText() == errors.UNCHANGED
    assert tab.phase_label.text() == "Failed" and tab.progress_bar.text() == "Failed"
    assert str(missing) in tab.result_label.text()
    assert project.dataset.records() == rows and project.config.model.name == str(missing)
    assert tab.start_button.isEnabled() and tab.last_result is None


def test_invalid_settings_are_refused_before_starting(qtbot, tab, project, shown_errors):
    project.config.lora.r = 0
    tab.start()
    assert not tab.is_running()
    box = errors.open_box(tab)
    assert box is not None and "lora.r" in box.text() + box.informativeText()
    assert [r.title for r in shown_errors] == ["The settings need fixing before training"]


def test_rows_that_cannot_train_are_refused_before_starting(qtbot, tab, project, shown_errors):
    project.dataset.set_field(1, "prompt", "   ")
    tab.start()
    assert not tab.is_running() and not tab.runs_dir.exists()
    (report,) = shown_errors
    assert report.message.startswith("1 row has an empty prompt or completion (row 2)")
    assert "row 2" in errors.open_box(tab).text()


def test_set_blocked_disables_start_with_the_reason(qtbot, tab):
    tab.set_blocked("Learning rate: must be at most 1.0")
    assert not tab.start_button.isEnabled()
    assert tab.blocked_label.isVisible() and "Learning rate" in tab.blocked_label.text()
    tab.start()
    assert not tab.is_running()
    tab.set_blocked(None)
    assert tab.start_button.isEnabled() and not tab.blocked_label.isVisible()


def test_text_helpers():
    assert format_duration(None) == "—"
    assert format_duration(42) == "0:42"
    assert format_duration(3729) == "1:02:09"
    assert epoch_text(1.4, 20, 45, 3.0) == "epoch 2/3 · step 20/45"
    assert epoch_text(3.0, 45, 45, 3.0) == "epoch 3/3 · step 45/45"
    assert epoch_text(0.5, 5, 10, None) == "epoch 1/1 · step 5/10"


def test_plot_buffers_points_and_draws_them_on_a_timer(qtbot):
    from loradesk.ui.plots import FLUSH_MS, LossPlot

    plot = LossPlot()
    qtbot.addWidget(plot)
    curves = (plot.raw_curve, plot.smooth_curve, plot.eval_curve, plot.lr_curve)
    for step in range(1, 51):
        plot.add_point(step, loss=2.0 / step, learning_rate=1e-3, eval_loss=1.0 if step % 10 == 0 else None)
    x, _ = plot.raw_curve.getData()
    assert x is None or len(x) == 0  # nothing drawn per point
    qtbot.waitUntil(lambda: plot.raw_curve.getData()[0] is not None
                    and len(plot.raw_curve.getData()[0]) == 50, timeout=10 * FLUSH_MS)
    assert (plot.raw_curve, plot.smooth_curve, plot.eval_curve, plot.lr_curve) == curves  # created once
    ex, ey = plot.eval_curve.getData()
    assert list(ex) == [10, 20, 30, 40, 50] and list(ey) == [1.0] * 5
    _, smooth = plot.smooth_curve.getData()
    assert smooth[0] == 2.0 and smooth[-1] > 2.0 / 50  # EMA lags the raw loss, starting unbiased
    plot.add_point(51, loss=float("nan"))  # ignored, no crash
    plot.flush()
    assert plot.point_count() == 50


def test_the_legend_lists_eval_loss_only_while_the_plot_has_eval_points(qtbot):
    from loradesk.ui.plots import EVAL_NAME, LossPlot

    plot = LossPlot()
    qtbot.addWidget(plot)

    def names() -> list[str]:
        return [label.text for _, label in plot.legend.items]

    plot.set_metrics([{"step": s, "loss": 1.0 / s} for s in range(1, 9)])  # a run without a validation split
    assert names() == ["training loss", "smoothed"]
    plot.set_metrics([{"step": s, "loss": 1.0 / s, "eval_loss": 0.5 if s == 4 else None} for s in range(1, 9)])
    assert names() == ["training loss", "smoothed", EVAL_NAME]
    plot.clear()
    assert names() == ["training loss", "smoothed"]


def test_plot_axes_keep_their_range_until_a_value_passes_it(qtbot):
    from types import SimpleNamespace

    from loradesk.ui.plots import LossPlot, round_ceiling

    assert [round_ceiling(v) for v in (0.7, 1.0, 1.2, 2.6, 9.0, 11.0)] == [0.8, 1.0, 1.5, 3.0, 10.0, 15.0]
    assert round_ceiling(3e-4) == pytest.approx(3e-4)
    plot = LossPlot()
    qtbot.addWidget(plot)
    changes = []
    for item in (plot.loss_plot, plot.lr_plot):
        item.getViewBox().sigRangeChanged.connect(lambda *_a: changes.append(1))

    def logged(step: int, loss: float) -> None:
        plot.add_progress(SimpleNamespace(step=step, max_steps=40, loss=loss, learning_rate=1e-3, eval_loss=None))
        plot.flush()

    logged(1, 2.4)
    (x0, x1), (y0, y1) = plot.loss_plot.getViewBox().viewRange()
    assert x0 <= 0 and 40 <= x1 < 42 and y0 <= 0 and 2.5 <= y1 < 2.6  # the whole run's length, a round ceiling
    changes.clear()
    for step in range(2, 30):  # the loss falls: nothing moves, so the axes never rebuild their labels
        logged(step, 2.4 / step)
    assert changes == []
    x, _ = plot.raw_curve.getData()
    assert len(x) == 29
    logged(30, 2.7)  # a value above the ceiling moves it
    assert changes and 3.0 <= plot.loss_plot.getViewBox().viewRange()[1][1] < 3.1
    plot.set_metrics([{"step": s, "loss": 1.0 + s / 100} for s in range(1, 8)])  # a finished run: fitted
    plot.show()  # pyqtgraph fits the view as it paints

    def fitted() -> bool:
        (x0, x1), (y0, y1) = plot.loss_plot.getViewBox().viewRange()
        return 0.5 < x0 < 1 and 7 < x1 < 7.5 and 1.0 < y0 < 1.01 and 1.07 < y1 < 1.08

    qtbot.waitUntil(fitted)
    logged(8, 1.0)  # a live run again (e.g. Train more after its parent's curve): steady ranges
    assert plot.loss_plot.getViewBox().viewRange()[1] == pytest.approx([-0.03, 1.53], abs=0.01)


def test_stop_while_the_model_loads_writes_nothing_and_is_no_failure(qtbot, tab, project, tiny_model_dir,
                                                                     shown_errors):
    use_tiny_model(project, tiny_model_dir, steps=50)
    tab.start()
    tab.stop()  # long before the worker has loaded the model
    qtbot.waitUntil(lambda: not tab.is_running(), timeout=60_000)
    qtbot.waitUntil(lambda: tab.start_button.isEnabled(), timeout=5_000)
    assert runs.list_runs(tab.runs_dir) == [] and not list(tab.runs_dir.glob("*"))
    assert shown_errors == [] and errors.open_box(tab) is None and tab.last_result is None
    assert tab.phase_label.text() == "Stopped before training started: nothing was saved"
    assert tab.progress_bar.text() == "Not started"


# --- run health: warnings banner, status, out of memory -------------------------------------------------
def test_a_run_that_does_not_learn_shows_a_banner_and_a_status(qtbot, tab, project, tiny_model_dir):
    use_tiny_model(project, tiny_model_dir, steps=20, lr=1.0)
    project.config.training.warmup_ratio = 0.0
    project.config.lora.r, project.config.lora.alpha, project.config.lora.use_rslora = 1, 4096, True
    assert tab.warning_banner.isHidden()
    with qtbot.waitSignal(tab.run_finished, timeout=120_000) as finished:
        tab.start()
    run_dir = Path(finished.args[0])

    assert tab.last_result.warnings and tab.warning_banner.isVisible()
    banner = tab.warning_banner.text()
    assert "not learning" in banner and "alpha = 2 x rank (2)" in banner
    assert tab.phase_label.text() == "Completed with warnings"
    assert tab.result_label.text().startswith("<b>Completed with warnings</b>:")
    assert "WARNING: The model is not learning" in tab.log_view.toPlainText()

    runs_tab = RunsTab(project)
    qtbot.addWidget(runs_tab)
    runs_tab.runs_dir = tab.runs_dir
    status = runs_tab.model.item(0, COLUMNS.index("Status"))
    assert status.text() == "completed with warnings" and "not learning" in status.toolTip()

    again = TrainingTab(project)  # after a restart the last run still says so
    qtbot.addWidget(again)
    again.runs_dir = tab.runs_dir
    again.show()
    assert again.warning_banner.isVisible() and "not learning" in again.warning_banner.text()
    assert again.phase_label.text() == "Last run: completed with warnings"

    project.config.lora.r, project.config.lora.alpha, project.config.lora.use_rslora = 8, 16, False
    use_tiny_model(project, tiny_model_dir, steps=2)
    with qtbot.waitSignal(tab.run_finished, timeout=120_000):
        tab.start()
        assert tab.warning_banner.isHidden()  # a new run starts without the old warning
    assert tab.last_result.warnings == [] and tab.warning_banner.isHidden()
    assert tab.phase_label.text() == "Completed"
    assert runs.read_run(run_dir).status_label == "completed with warnings"


def test_out_of_memory_asks_and_retry_trains_with_half_the_batch(qtbot, tab, project, tiny_model_dir,
                                                                  small_gpu, shown_errors):
    use_tiny_model(project, tiny_model_dir, steps=3)
    with qtbot.waitSignal(tab.running_changed, timeout=60_000, check_params_cb=lambda running: not running):
        tab.start()
    box = errors.open_box(tab)
    assert box is not None and box.isVisible() and box.windowTitle() == "Out of memory"
    assert [r.title for r in shown_errors] == ["Out of memory"]
    assert "ran out of memory" in box.text() and "batch size 2 and gradient accumulation 2" in box.text()
    assert tab.phase_label.text() == "Failed"
    retry = box.button(QMessageBox.StandardButton.Retry)
    assert retry is not None and retry.text() == "Retry with batch size 2"
    assert project.config.training.batch_size == 4  # the user's settings are not changed behind their back

    with qtbot.waitSignal(tab.run_finished, timeout=120_000) as finished:
        qtbot.mouseClick(retry, Qt.MouseButton.LeftButton)
    result = tab.last_result
    assert result.status == "completed" and result.steps == 3
    t = runs.read_run(Path(finished.args[0])).config.training
    assert (t.batch_size, t.grad_accum) == (2, 2)
    assert small_gpu[-6:] == [2] * 6
    assert len(runs.list_runs(tab.runs_dir)) == 2  # the failed run is kept next to the retry


def test_the_tab_shows_what_a_fake_training_job_reports(qtbot, tab, project, tmp_path, monkeypatch):
    """No model: a stand-in for ``training_job.train`` emits the job's typed events and returns a stopped run."""
    from loradesk.core.training import RunResult, TrainProgress
    from loradesk.ui import training_tab
    from loradesk.ui.training_job import TrainDevice, TrainLog, TrainStatus

    run_dir = tmp_path / "runs" / "fake"
    requests = []

    def fake_train(request, *, state):
        requests.append(request)
        state.emit(TrainStatus("Training"))
        state.emit(TrainDevice("Pretend GPU"))
        for step in (1, 2, 3):
            state.emit(TrainProgress(step, 10, step / 10, loss=1.0 / step, learning_rate=1e-3, elapsed=step))
        state.emit(TrainLog("Adapter saved"))
        return RunResult(run_dir, "stopped", 3, 0.3333, 3.0, "Pretend GPU")

    monkeypatch.setattr(training_tab, "train", fake_train)
    project.config.training.preflight = False
    changes: list[bool] = []
    tab.running_changed.connect(changes.append)
    with qtbot.waitSignal(tab.run_finished, timeout=10_000) as finished:
        tab.start()
    assert finished.args == [str(run_dir)] and changes == [True, False]
    (request,) = requests
    assert len(request.rows) == len(project.dataset) and request.config is not project.config
    assert tab.progress_bar.value() == 3 and tab.progress_bar.maximum() == 10
    assert tab.progress_bar.text() == "epoch 1/3 · step 3/10 · 30%"  # the default settings plan 3 epochs
    tab.plot.flush()
    assert list(tab.plot.raw_curve.getData()[0]) == [1, 2, 3]
    assert tab.phase_label.text() == "Stopped" and tab.device_stat.value.text() == "Pretend GPU"
    assert tab.loss_stat.value.text().startswith("0.3333")
    assert "Adapter saved" in tab.log_view.toPlainText() and str(run_dir) in tab.result_label.text()
    assert tab.resume_dir == run_dir and tab.resume_button.isEnabled()


@pytest.mark.parametrize("preflight", [False, True])
def test_tool_calls_the_template_leaves_out_are_refused_with_an_offer_to_write_them_as_text(
        qtbot, tab, project, tiny_model_dir, shown_errors, preflight):
    from loradesk.core.conversation import ToolCall, Turn
    from loradesk.core.dataset import Example

    use_tiny_model(project, tiny_model_dir, steps=1)
    project.config.training.preflight = preflight
    call = ToolCall("get_weather", '{"city": "Oslo"}', "c1")
    tool_row = Example.conversation([Turn("user", "Weather?"), Turn("assistant", "", (call,)),
                                     Turn("tool", "sunny"), Turn("assistant", "Sunny.")])
    project.dataset.reset([*list(project.dataset)[:6], tool_row])
    tab.start()
    qtbot.waitUntil(lambda: errors.open_box(tab) is not None, timeout=60_000)
    box = errors.open_box(tab)
    assert [r.title for r in shown_errors] == ["The model's chat template has no tool calls"]
    assert "leaves out tool calls and results: 1 row (row 7 first) has them" in box.text()
    assert not project.config.training.tools_as_text  # not changed behind the user's back
    retry = box.button(QMessageBox.StandardButton.Retry)
    assert retry is not None and retry.text() == "Write tool calls as text and train"
    qtbot.waitUntil(lambda: not tab.is_running(), timeout=10_000)
    with qtbot.waitSignal(tab.run_finished, timeout=120_000) as finished:
        qtbot.mouseClick(retry, Qt.MouseButton.LeftButton)
    assert project.config.training.tools_as_text
    assert runs.read_run(Path(finished.args[0])).config.training.tools_as_text
    assert tab.last_result.status == "completed" and tab.last_result.train_rows == 7


def test_rows_skipped_for_having_nothing_to_train_show_in_the_result(qtbot, tab, project, tiny_model_dir):
    from loradesk.core.conversation import Turn
    from loradesk.core.dataset import Example

    use_tiny_model(project, tiny_model_dir, steps=1)
    project.config.training.max_length = 64
    long_row = Example.conversation([Turn("user", "Who is Tamsin Quillfeather of Vaelmoor? " * 12),
                                     Turn("assistant", "Her.")])
    project.dataset.reset([*list(project.dataset)[:6], long_row, long_row])
    with qtbot.waitSignal(tab.run_finished, timeout=120_000):
        tab.start()
    assert tab.last_result.skipped_rows == 2
    assert "2 rows skipped (nothing to train within the max length)" in tab.result_label.text()
    assert ("Skipped 2 training rows whose answers lie beyond the max length of 64 tokens (row 7 first)"
            in tab.log_view.toPlainText())


def test_the_tab_shows_the_learned_checks_and_a_run_that_stopped_once_learned(qtbot, tab, project, tiny_model_dir,
                                                                              monkeypatch):
    """The sample project's held-out questions are asked every 2 steps; a target of 0 is met at the first check."""
    use_tiny_model(project, tiny_model_dir, steps=6)
    project.config.training.learned_target, project.config.training.learned_check_steps = 0.0, 2
    phases: list[str] = []
    set_text = tab.phase_label.setText
    monkeypatch.setattr(tab.phase_label, "setText", lambda text: (phases.append(text), set_text(text)))
    with qtbot.waitSignal(tab.run_finished, timeout=120_000) as finished:
        tab.start()
    log = tab.log_view.toPlainText()
    assert "Stop when learned: every 2 steps, 0/16 held-out questions (sample_heldout.json)" in log
    assert "Check at step 2: held-out " in log and "Learned checks: 1 took " in log
    assert any(p.startswith("Training: held-out ") and p.endswith("/16 at step 2") for p in phases)
    assert tab.phase_label.text() == "Completed: learned"
    assert "Learned: " in tab.result_label.text() and "at step 2 (" in tab.result_label.text()
    assert tab.last_result.steps == 2 and tab.last_result.status == "completed"
    assert tab.progress_bar.value() == tab.progress_bar.maximum()
    assert runs.read_run(Path(finished.args[0])).status == "completed"
