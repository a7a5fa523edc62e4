"""The Compare tab with a real tiny run: streamed answers side by side, Compare all, score, CSV."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from PySide6.QtCore import Qt

from loradesk.core import runs, training
from loradesk.core.config import ModelSettings, RunConfig
from loradesk.core.formats import read_dataset, read_heldout
from loradesk.ui.compare_tab import DEFAULT_PROBE, EMPTY_ANSWER, CompareTab

DATA = Path(__file__).resolve().parents[2] / "data"


@pytest.fixture(scope="module")
def runs_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A runs folder holding one finished tiny run (trained once for this module)."""
    folder = tmp_path_factory.mktemp("runs")
    config = RunConfig(model=ModelSettings(kind="local", name=str(tiny_model_dir)))
    t = config.training
    t.max_steps, t.batch_size, t.logging_steps, t.learning_rate = 8, 4, 1, 5e-3
    training.run(config, read_dataset(DATA / "sample.json"), runs_dir=folder)
    return folder


@pytest.fixture
def tab(qtbot, project, tiny_model_dir, runs_dir) -> CompareTab:
    project.config.model = ModelSettings(kind="local", name=str(tiny_model_dir))
    widget = CompareTab(project)
    widget.runs_dir = runs_dir
    widget.max_tokens.setValue(16)
    qtbot.addWidget(widget)
    widget.resize(1000, 700)
    widget.show()
    yield widget
    widget.shutdown()


def wait_idle(qtbot, tab: CompareTab, action) -> None:
    with qtbot.waitSignal(tab.busy_changed, timeout=120_000, check_params_cb=lambda busy: not busy):
        action()
    assert not tab.is_busy()


def test_ask_streams_base_and_tuned_side_by_side(qtbot, tab, runs_dir):
    (run_dir,) = [p for p in runs_dir.iterdir()]
    assert tab.current_run() == run_dir
    assert tab.prompt_edit.toPlainText() == DEFAULT_PROBE
    tuned_updates: list[int] = []
    tab.tuned_pane.view.textChanged.connect(lambda: tuned_updates.append(1))

    wait_idle(qtbot, tab, lambda: qtbot.mouseClick(tab.ask_button, Qt.MouseButton.LeftButton))

    base, tuned = tab.base_pane.text(), tab.tuned_pane.text()
    assert base and tuned and base != tuned
    answers = tab.last_answers
    assert answers["tuned"] and answers["tuned"] != answers["base"]
    assert tuned == answers["tuned"]
    assert len(tuned_updates) > 2  # streamed piece by piece, not set once
    assert run_dir.name in tab.tuned_pane.title()
    assert tab.status_label.text().startswith("Answered in")
    assert tab.error_box is None
    assert tab.ask_button.isEnabled() and not tab.stop_button.isEnabled()

    loads = tab.cache.loads
    tab.prompt_edit.setPlainText("What is the name of Tamsin Quillfeather's owl?")
    wait_idle(qtbot, tab, tab.ask)
    assert tab.cache.loads == loads  # the model stays loaded between questions


def test_without_runs_only_the_base_model_answers(qtbot, tab, tmp_path):
    tab.runs_dir = tmp_path / "empty"
    assert tab.current_run() is None
    assert "No trained runs" in tab.run_combo.currentText()
    wait_idle(qtbot, tab, tab.ask)
    assert tab.base_pane.text()
    assert "No run selected" in tab.tuned_pane.text()


def test_compare_all_scores_the_heldout_file_records_it_and_exports_csv(qtbot, tab, runs_dir, tmp_path):
    run_dir = tab.current_run()
    pairs = read_heldout(DATA / "sample_heldout.json")
    assert tab.source_combo.currentText() == "Held-out file: sample_heldout.json"
    wait_idle(qtbot, tab, lambda: qtbot.mouseClick(tab.compare_button, Qt.MouseButton.LeftButton))

    rows = tab.table_rows()
    assert [(r[0], r[1]) for r in rows] == pairs
    assert all(r[4] in "✓✗" and r[5] in "✓✗" for r in rows)
    tuned_ok = sum(r[5] == "✓" for r in rows)
    base_ok = sum(r[4] == "✓" for r in rows)
    assert tab.summary_label.text() == f"tuned {tuned_ok}/{len(pairs)} vs base {base_ok}/{len(pairs)}"
    assert runs.read_run(run_dir).score == pytest.approx(tuned_ok / len(pairs))
    assert json.loads((run_dir / runs.RUN_FILE).read_text())["score_detail"]["total"] == len(pairs)

    assert tab.export_button.isEnabled()
    out = tab.export_csv(tmp_path / "compare.csv")
    with open(out, encoding="utf-8", newline="") as fh:
        table = list(csv.reader(fh))
    assert table[0] == ["prompt", "expected", "base", "tuned", "base_ok", "tuned_ok"]
    assert len(table) == len(pairs) + 1
    assert table[1][0] == pairs[0][0] and table[1][5] in ("true", "false")
    assert EMPTY_ANSWER not in {row[2] for row in table[1:]}  # raw answers, not the placeholder


def test_compare_all_uses_validation_rows(qtbot, tab, project):
    project.dataset.set_field(0, "split", "validation")
    project.dataset.set_field(3, "split", "validation")
    tab.refresh_runs()
    index = tab.source_combo.findData("validation")
    assert "(2)" in tab.source_combo.itemText(index)
    tab.source_combo.setCurrentIndex(index)
    wait_idle(qtbot, tab, tab.compare_all)
    assert [r[0] for r in tab.table_rows()] == [project.dataset[0].prompt, project.dataset[3].prompt]


def test_a_broken_questions_file_shows_an_error(qtbot, tab, tmp_path):
    bad = tmp_path / "held.json"
    bad.write_text('[{"prompt": "Who?", "expected": "x"}, {"expected": "y"}]', encoding="utf-8")
    tab.load_questions_file(bad)
    assert tab.source_combo.currentText() == "File: held.json"
    wait_idle(qtbot, tab, tab.compare_all)
    box = tab.error_box
    assert box is not None and box.isVisible()
    assert "held.json" in box.text() and "row 2" in box.text() and "prompt" in box.text()
    assert "Traceback" in box.detailedText()
    assert tab.results.rowCount() == 0
    box.close()


def test_greedy_switches_the_sampling_settings(tab):
    assert tab.generation_settings().temperature == 0.0
    assert not tab.temperature.isEnabled()
    tab.greedy.setChecked(False)
    assert tab.temperature.isEnabled() and tab.top_p.isEnabled()
    settings = tab.generation_settings()
    assert settings.temperature == pytest.approx(0.7) and settings.max_new_tokens == 16


def test_validation_rows_include_the_drawn_share(tab, project):
    from loradesk.core.dataset import split_rows

    config = project.config
    config.training.validation_fraction = 0.2
    project.config = config
    project.dataset.set_field(0, "split", "train")  # pinned rows are never drawn
    tab.refresh_runs()
    expected = split_rows(project.dataset, 0.2, config.training.seed)[1]
    assert 0 < len(expected) < len(project.dataset) and project.dataset[0] not in expected
    assert f"({len(expected):,})" in tab.source_combo.itemText(tab.source_combo.findData("validation"))
    tab.source_combo.setCurrentIndex(tab.source_combo.findData("validation"))
    assert tab._questions() == [(r.prompt, r.completion) for r in expected]
