"""The Compare tab with a real tiny run: streamed answers side by side, Compare all, score, CSV."""

from __future__ import annotations

import csv
import json
import threading
from pathlib import Path

import pytest
from PySide6.QtCore import Qt

from loradesk.core import runs, training
from loradesk.core.config import ModelSettings, RunConfig
from loradesk.core.formats import read_dataset, read_heldout
from loradesk.core.generation import contains_phrase
from loradesk.ui.answering import AnswererCache
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
    with qtbot.waitSignal(tab.busy_changed, timeout=30_000, check_params_cb=lambda busy: not busy):
        action()
    assert not tab.is_busy()


def test_ask_streams_base_and_tuned_side_by_side(qtbot, tab, runs_dir, tiny_model_dir, reference_answer,
                                                 shown_errors):
    (run_dir,) = [p for p in runs_dir.iterdir()]
    assert tab.current_run() == run_dir
    assert tab.prompt_edit.toPlainText() == DEFAULT_PROBE
    tuned_updates: list[int] = []
    tab.tuned_pane.view.textChanged.connect(lambda: tuned_updates.append(1))

    wait_idle(qtbot, tab, lambda: qtbot.mouseClick(tab.ask_button, Qt.MouseButton.LeftButton))

    answers = tab.last_answers
    # the base model's answer (empty: the tiny model only repeats whitespace) and this run's adapter's answer
    assert answers["base"] == reference_answer(tiny_model_dir, DEFAULT_PROBE, 16)
    assert answers["tuned"] == reference_answer(tiny_model_dir, DEFAULT_PROBE, 16, adapter_dir=run_dir)
    assert answers["tuned"] and not answers["stopped"]
    assert tab.base_pane.text() == (answers["base"] or EMPTY_ANSWER)
    assert tab.tuned_pane.text() == answers["tuned"]
    assert len(tuned_updates) > 2  # streamed piece by piece, not set once
    assert run_dir.name in tab.tuned_pane.title()
    assert tab.status_label.text().startswith("Answered in")
    assert shown_errors == []
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


def test_compare_all_scores_the_heldout_file_records_it_and_exports_csv(qtbot, tab, runs_dir, tmp_path,
                                                                         shown_errors):
    run_dir = tab.current_run()
    pairs = read_heldout(DATA / "sample_heldout.json")
    box = tab.all_box
    assert box.source_combo.currentText() == "Held-out file: sample_heldout.json"
    wait_idle(qtbot, tab, lambda: qtbot.mouseClick(box.compare_button, Qt.MouseButton.LeftButton))

    rows = box.table_rows()
    assert [(r[0], r[1]) for r in rows] == pairs
    for shown, (_prompt, expected, base, tuned, base_ok, tuned_ok) in zip(rows, box.raw_rows(), strict=True):
        assert isinstance(base, str) and isinstance(tuned, str)  # the raw answers (both models answered)
        assert base_ok == contains_phrase(base, expected) and tuned_ok == contains_phrase(tuned, expected)
        assert shown[4] == ("✓" if base_ok else "✗") and shown[5] == ("✓" if tuned_ok else "✗")
    tuned_ok = sum(r[5] == "✓" for r in rows)
    base_ok = sum(r[4] == "✓" for r in rows)
    assert box.summary_label.text() == f"tuned {tuned_ok}/{len(pairs)} vs base {base_ok}/{len(pairs)}"
    assert tab.last_summary.tuned_correct == tuned_ok and tab.last_summary.base_correct == base_ok
    assert runs.read_run(run_dir).score == pytest.approx(tuned_ok / len(pairs))
    detail = json.loads((run_dir / runs.RUN_FILE).read_text())["score_detail"]
    assert detail == {"tuned": tuned_ok, "base": base_ok, "total": len(pairs),
                      "heldout": str(DATA / "sample_heldout.json")}
    assert shown_errors == []

    assert box.export_button.isEnabled()
    out = tab.export_csv(tmp_path / "compare.csv")
    with open(out, encoding="utf-8", newline="") as fh:
        table = list(csv.reader(fh))
    assert table[0] == ["prompt", "expected", "base", "tuned", "base_ok", "tuned_ok"]
    assert len(table) == len(pairs) + 1
    raw = box.raw_rows()
    assert [row[:4] for row in table[1:]] == [[str(v) for v in r[:4]] for r in raw]  # raw answers, not "—"
    assert [row[4:] for row in table[1:]] == [[str(r[4]).lower(), str(r[5]).lower()] for r in raw]
    assert EMPTY_ANSWER not in {row[2] for row in table[1:]}  # raw answers, not the placeholder
    assert tab.status_label.text() == f"Exported {len(pairs)} rows to {out}"


def test_compare_all_uses_validation_rows(qtbot, tab, project):
    project.dataset.set_field(0, "split", "validation")
    project.dataset.set_field(3, "split", "validation")
    tab.refresh_runs()
    combo = tab.all_box.source_combo
    index = combo.findData("validation")
    assert "(2)" in combo.itemText(index)
    combo.setCurrentIndex(index)
    wait_idle(qtbot, tab, tab.compare_all)
    assert [r[0] for r in tab.all_box.table_rows()] == [project.dataset[0].prompt, project.dataset[3].prompt]


def test_a_broken_questions_file_shows_an_error(qtbot, tab, tmp_path, shown_errors):
    bad = tmp_path / "held.json"
    bad.write_text('[{"prompt": "Who?", "expected": "x"}, {"expected": "y"}]', encoding="utf-8")
    tab.all_box.load_questions_file(bad)
    assert tab.all_box.source_combo.currentText() == "File: held.json"
    wait_idle(qtbot, tab, tab.compare_all)
    (report,) = shown_errors
    assert report.title == "Generation failed"
    assert "held.json" in report.message and "row 2" in report.message and "prompt" in report.message
    assert "Traceback" in report.details
    assert tab.all_box.results.rowCount() == 0
    assert tab.status_label.text() == f"Failed: {report.message}"


def test_no_questions_is_an_error_and_starts_nothing(tab, shown_errors):
    tab.all_box.source_combo.setCurrentIndex(tab.all_box.source_combo.findData("validation"))
    assert tab.all_box.questions() == []
    tab.compare_all()
    assert [r.title for r in shown_errors] == ["No questions to compare"]
    assert not tab.is_busy()


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
    combo = tab.all_box.source_combo
    assert f"({len(expected):,})" in combo.itemText(combo.findData("validation"))
    combo.setCurrentIndex(combo.findData("validation"))
    assert tab.all_box.questions() == [(r.prompt, r.completion) for r in expected]


# --- the tab's own behaviour, on a stand-in model (the model is not the point here) -------------------------
class FakeAnswerer:
    """Answers ``"<side> says <prompt>"`` word by word; the prompt ``slow`` waits after each word until stopped,
    and every batch waits for ``batch_gate``."""

    has_adapter = True

    def __init__(self) -> None:
        self.batch_gate = threading.Event()
        self.batch_gate.set()
        self.batches = 0

    def answer(self, prompt, tuned=True, settings=None, on_text=None, stop=None) -> str:
        words: list[str] = []
        for word in f"{'tuned' if tuned else 'base'} says {prompt}".split():
            if stop is not None and stop.is_set():
                break
            words.append(word)
            if on_text is not None:
                on_text(word + " ")
            if prompt == "slow" and stop is not None:
                stop.wait(30)
        return " ".join(words)

    def answer_many(self, prompts, tuned=True, settings=None, batch_size=8) -> list[str]:
        self.batches += 1
        assert self.batch_gate.wait(30)
        return [self.answer(p, tuned, settings) for p in prompts]


class FakeCache(AnswererCache):
    def __init__(self) -> None:
        super().__init__()
        self.answerer = FakeAnswerer()

    def _plan(self, request, report):  # one stand-in model whatever the request
        return ("fake",), lambda: self.answerer


@pytest.fixture
def fake_tab(qtbot, project, tmp_path) -> CompareTab:
    widget = CompareTab(project, cache=FakeCache())
    widget.runs_dir = tmp_path / "no-runs"
    qtbot.addWidget(widget)
    widget.show()
    yield widget
    widget.shutdown()


def test_a_new_question_replaces_the_running_answer(qtbot, fake_tab, shown_errors):
    tab = fake_tab
    tab.prompt_edit.setPlainText("slow")
    tab.ask()
    qtbot.waitUntil(lambda: tab.base_pane.text() == "base ", timeout=10_000)
    assert tab.is_busy() and not tab.ask_button.isEnabled() and tab.stop_button.isEnabled()
    assert tab.status_label.text() == "Answering (base)…"

    tab.prompt_edit.setPlainText("quick")
    wait_idle(qtbot, tab, tab.ask)  # Ctrl+Enter while an answer streams: the new question wins

    assert tab.last_answers["base"] == "base says quick" and tab.last_answers["tuned"] == "tuned says quick"
    assert not tab.last_answers["stopped"]
    assert tab.base_pane.text() == "base says quick" and tab.tuned_pane.text() == "tuned says quick"
    assert tab.cache.loads == 1 and shown_errors == []
    assert tab.ask_button.isEnabled() and not tab.stop_button.isEnabled() and tab.busy.isHidden()


def test_stop_ends_the_answer_and_skips_the_tuned_side(qtbot, fake_tab):
    tab = fake_tab
    tab.prompt_edit.setPlainText("slow")
    tab.ask()
    qtbot.waitUntil(lambda: tab.base_pane.text() == "base ", timeout=10_000)
    wait_idle(qtbot, tab, lambda: qtbot.mouseClick(tab.stop_button, Qt.MouseButton.LeftButton))
    assert tab.last_answers["stopped"] and tab.last_answers["base"] == "base"
    assert tab.last_answers["tuned"] is None and tab.tuned_pane.text() == ""
    assert tab.base_pane.text() == "base"
    assert tab.status_label.text().startswith("Stopped in")


def test_stopping_compare_all_keeps_the_answered_rows(qtbot, fake_tab, tmp_path):
    tab = fake_tab
    questions = [(f"q{i}", f"says q{i}" if i % 2 else "nowhere") for i in range(10)]
    held = tmp_path / "held.jsonl"
    held.write_text("".join(json.dumps({"prompt": p, "expected": e}) + "\n" for p, e in questions), encoding="utf-8")
    tab.all_box.load_questions_file(held)
    gate = tab.cache.answerer.batch_gate
    gate.clear()
    tab.compare_all()
    qtbot.waitUntil(lambda: tab.cache.answerer.batches == 1, timeout=10_000)  # the first batch is being answered
    assert tab.is_busy() and not tab.all_box.compare_button.isEnabled()
    tab.stop()
    with qtbot.waitSignal(tab.busy_changed, timeout=10_000, check_params_cb=lambda busy: not busy):
        gate.set()

    rows = tab.all_box.table_rows()
    assert [r[0] for r in rows] == [f"q{i}" for i in range(8)]
    assert [r[5] for r in rows] == ["✓" if i % 2 else "✗" for i in range(8)]
    assert tab.all_box.summary_label.text() == "tuned 4/8 vs base 4/8 (stopped after 8 of 10)"
    assert tab.last_summary.stopped and not tab.last_summary.complete
    assert tab.all_box.export_button.isEnabled()


def test_a_failed_export_shows_an_error_and_writes_nothing(qtbot, fake_tab, tmp_path, shown_errors):
    tab = fake_tab
    tab.all_box.source_combo.setCurrentIndex(tab.all_box.source_combo.findData("heldout"))
    wait_idle(qtbot, tab, tab.compare_all)
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x", encoding="utf-8")
    assert tab.export_csv(blocker / "compare.csv") is None
    (report,) = shown_errors
    assert report.title == "Export failed" and "not-a-folder" in report.message
    assert blocker.read_text(encoding="utf-8") == "x" and tab.all_box.results.rowCount() > 0
