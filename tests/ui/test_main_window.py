"""The main window and start-up: sample data without torch, files, import/export, autosave, closing."""

from __future__ import annotations

import gc
import json
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent, QKeySequence
from PySide6.QtWidgets import QDialog, QFileDialog, QMessageBox
from pytestqt.qtbot import QtBot

from loradesk.core.dataset import Example
from loradesk.core.paths import default_runs_dir, sample_data_dir
from loradesk.core.project import Project, find_recovery, recovery_path
from loradesk.ui import autosave, errors, window_state
from loradesk.ui.app import FREEZE_ROWS, startup_project
from loradesk.ui.compare_tab import CompareTab
from loradesk.ui.dataset_model import COMPLETION, PROMPT
from loradesk.ui.errors import ErrorReport
from loradesk.ui.import_dialogs import ColumnMappingDialog, HubImportDialog
from loradesk.ui.main_window import MainWindow
from loradesk.ui.runs_tab import RunsTab
from loradesk.ui.training_tab import TrainingTab

ROOT = Path(__file__).resolve().parents[2]
SAMPLE_ROWS = len(json.loads((sample_data_dir() / "sample.json").read_text(encoding="utf-8")))


def make_window(qtbot: QtBot, project: Project | None = None) -> MainWindow:
    window = MainWindow(project or Project.new_default(), probe_device=False, count_tokens=False)
    qtbot.addWidget(window, before_close_func=save_before_teardown)
    window.show()
    return window


def save_before_teardown(window: MainWindow) -> None:
    """Closing a window with unsaved changes asks first: save them so the test's teardown cannot block."""
    if window.isVisible() and window.project.dirty:
        window.project.save(Path(tempfile.mkdtemp()) / "teardown.loradesk")


def test_window_opens_with_the_sample_before_torch_is_imported(loradesk_home: Path) -> None:
    """The real start-up path, in a fresh interpreter so no other test's imports count."""
    script = textwrap.dedent("""
        import json, sys
        from PySide6.QtCore import QTimer
        from PySide6.QtWidgets import QApplication
        from loradesk.ui.app import build_window
        window = build_window([])
        heavy_at_show = [m for m in ("torch", "transformers", "peft") if m in sys.modules]
        visible = window.isVisible()
        QTimer.singleShot(300, QApplication.quit)  # paint and settle; the device probe starts later
        QApplication.instance().exec()
        heavy = sorted(set(heavy_at_show) | {m for m in ("torch", "transformers", "peft") if m in sys.modules})
        model = window.dataset_tab.model
        print(json.dumps({"heavy": heavy, "rows": model.rowCount(), "first": model.index(0, 0).data(),
                          "title": window.windowTitle(), "visible": visible,
                          "tabs": [window.tabs.tabText(i) for i in range(window.tabs.count())],
                          "status": window.rows_label.text()}))
        window.close()
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    sample = json.loads((sample_data_dir() / "sample.json").read_text(encoding="utf-8"))
    assert result["heavy"] == []
    assert result["rows"] == len(sample) and result["first"] == sample[0]["prompt"]
    assert result["title"] == "Untitled[*] — LoRA Desk" and result["visible"]
    assert result["tabs"] == ["Dataset", "Train", "Compare", "Runs"]
    assert result["status"] == f"{len(sample)} rows"


def test_menus_and_standard_shortcuts(qtbot: QtBot) -> None:
    window = make_window(qtbot)
    menus = [a.text() for a in window.menuBar().actions()]
    assert menus == ["&File", "&Edit", "&Run", "&Help"]
    key = QKeySequence.StandardKey
    assert window.act_save.shortcut() == QKeySequence(key.Save)
    assert window.act_open.shortcut() == QKeySequence(key.Open)
    assert window.act_undo.shortcut() == QKeySequence(key.Undo)
    assert window.dataset_tab.act_find.shortcut() == QKeySequence(key.Find)
    edit = window.menuBar().actions()[1].menu()
    assert window.dataset_tab.act_delete in edit.actions() and window.act_redo in edit.actions()
    assert window.act_train.isEnabled() and not window.act_stop.isEnabled()


def test_title_tracks_dirty_state_and_undo(qtbot: QtBot) -> None:
    window = make_window(qtbot)
    assert window.windowTitle() == "Untitled[*] — LoRA Desk" and not window.isWindowModified()
    model = window.dataset_tab.model
    model.setData(model.index(0, COMPLETION), "Changed.")
    assert window.isWindowModified()
    assert window.act_undo.isEnabled()
    window.act_undo.trigger()
    assert window.project.dataset[0].completion != "Changed."


def test_save_and_open_through_the_file_menu(qtbot: QtBot, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    window = make_window(qtbot)
    window.dataset_tab.model.setData(window.dataset_tab.model.index(0, PROMPT), "Who is she?")
    target = tmp_path / "fact"  # the suffix is added
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(target), ""))
    window.act_save.trigger()
    saved = tmp_path / "fact.loradesk"
    assert json.loads(saved.read_text(encoding="utf-8"))["dataset"][0]["prompt"] == "Who is she?"
    assert window.windowTitle() == "fact[*] — LoRA Desk" and not window.isWindowModified()
    assert window_state.recent_projects()[0] == str(saved.resolve())

    window.new_project()
    assert len(window.project.dataset) == 0 and window.project.path is None
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(saved), ""))
    window.act_open.trigger()
    assert window.project.dataset[0].prompt == "Who is she?" and window.project.path == saved
    assert window.undo_stack.count() == 0


def test_open_error_names_file_and_row(qtbot: QtBot, tmp_path: Path, shown_errors: list[ErrorReport]) -> None:
    window = make_window(qtbot)
    broken = tmp_path / "broken.loradesk"
    broken.write_text('{"format": "loradesk-project", "version": 1, "dataset": [{"prompt": "a"}]}')
    assert not window.open_project(broken)
    assert [(e.title, e.message) for e in shown_errors] == [
        ("Cannot open the project", f"{broken}, row 1, field 'completion': missing")]
    assert errors.open_box(window) is not None  # over the window, without blocking it
    assert len(window.project.dataset) == SAMPLE_ROWS  # nothing lost


def test_import_in_the_background_then_undo(qtbot: QtBot, tmp_path: Path) -> None:
    window = make_window(qtbot)
    csv = tmp_path / "more.csv"
    csv.write_text("prompt,completion\nWhat colour is Bramble?,Copper.\nWhere is Vaelmoor?,In the sky.\n",
                   encoding="utf-8")
    window.import_file(csv, mode="append")
    assert window.is_importing() and window.busy_bar.isVisible()
    qtbot.waitUntil(lambda: not window.is_importing(), timeout=60_000)
    assert not window.busy_bar.isVisible()
    assert len(window.project.dataset) == SAMPLE_ROWS + 2
    assert window.project.dataset[SAMPLE_ROWS + 1] == Example("Where is Vaelmoor?", "In the sky.")
    window.import_file(csv, mode="replace")
    qtbot.waitUntil(lambda: not window.is_importing(), timeout=60_000)
    assert len(window.project.dataset) == 2
    window.undo_stack.undo()
    window.undo_stack.undo()
    assert len(window.project.dataset) == SAMPLE_ROWS


def test_import_asks_for_columns_it_cannot_guess(qtbot: QtBot, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    window = make_window(qtbot, Project())
    csv = tmp_path / "odd.csv"
    csv.write_text("q,a,note\nWho is Tamsin?,A cartographer.,x\n", encoding="utf-8")
    asked: list[list[str]] = []

    def choose(dialog: ColumnMappingDialog) -> int:
        asked.append([dialog.prompt.itemText(i) for i in range(dialog.prompt.count())])
        return QDialog.DialogCode.Accepted  # the first two columns, as proposed

    monkeypatch.setattr(ColumnMappingDialog, "exec", choose)
    window.import_file(csv)
    qtbot.waitUntil(lambda: len(window.project.dataset) == 1, timeout=60_000)
    assert asked == [["q", "a", "note"]]
    assert window.project.dataset[0] == Example("Who is Tamsin?", "A cartographer.")


def test_a_big_import_leaves_the_garbage_collectors_full_passes(qtbot: QtBot, tmp_path: Path) -> None:
    window = make_window(qtbot)
    data = tmp_path / "big.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"Q{i}?", "completion": f"A{i}."}) + "\n"
                            for i in range(FREEZE_ROWS)), encoding="utf-8")
    gc.unfreeze()
    try:
        window.import_file(data, mode="replace")
        qtbot.waitUntil(lambda: len(window.project.dataset) == FREEZE_ROWS, timeout=30_000)
        assert gc.get_freeze_count() >= FREEZE_ROWS  # the rows (and their texts) are frozen out of its view
    finally:
        gc.unfreeze()


@pytest.fixture
def hf_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The datasets cache of this test (never the user's)."""
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))
    return tmp_path / "hf-cache"


def hub_folder(tmp_path: Path) -> Path:
    """A local Hugging Face dataset folder: train and test splits with columns no reader recognises."""
    folder = tmp_path / "lore"
    folder.mkdir()
    for split, rows in (("train", [("Who is Tamsin?", "A cartographer."), ("Who is Bramble?", "A copper fox.")]),
                        ("test", [("Where is Vaelmoor?", "In the sky.")])):
        folder.joinpath(f"{split}.jsonl").write_text(
            "".join(json.dumps({"problem": p, "solution": s, "id": i}) + "\n" for i, (p, s) in enumerate(rows)),
            encoding="utf-8")
    return folder


def test_import_from_hugging_face_maps_columns_then_undo(qtbot: QtBot, tmp_path: Path, hf_cache: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    window = make_window(qtbot)
    folder = hub_folder(tmp_path)
    file_menu = window.menuBar().actions()[0].menu()
    assert window.act_import_hub in file_menu.actions() and window.act_import_hub.shortcut().toString()
    previews: list[tuple[list[str], int, str]] = []

    def fill(dialog: HubImportDialog) -> int:
        dialog.source_edit.setText(str(folder))
        return QDialog.DialogCode.Accepted

    def choose(dialog: ColumnMappingDialog) -> int:
        previews.append((dialog.columns, dialog.preview.rowCount(), dialog.preview.item(1, 0).text()))
        return QDialog.DialogCode.Accepted  # the guess: problem -> prompt, solution -> completion

    monkeypatch.setattr(HubImportDialog, "exec", fill)
    monkeypatch.setattr(ColumnMappingDialog, "exec", choose)
    monkeypatch.setattr(window.importer, "ask_mode", lambda name, count: "append" if name == "lore (train)" else None)
    window.act_import_hub.trigger()
    assert window.is_importing() and window.busy_bar.isVisible() and not window.act_import.isEnabled()
    qtbot.waitUntil(lambda: len(window.project.dataset) == SAMPLE_ROWS + 2, timeout=60_000)
    assert previews == [(["problem", "solution", "id"], 2, "Who is Bramble?")]
    assert window.project.dataset[SAMPLE_ROWS:] == [Example("Who is Tamsin?", "A cartographer."),
                                                    Example("Who is Bramble?", "A copper fox.")]
    assert not window.is_importing() and not window.busy_bar.isVisible() and window.act_import_hub.isEnabled()
    assert window.undo_stack.undoText() == "Append lore (train)"
    window.undo_stack.undo()
    assert len(window.project.dataset) == SAMPLE_ROWS


def test_hub_import_with_a_mode_split_and_limit(qtbot: QtBot, tmp_path: Path, hf_cache: Path) -> None:
    window = make_window(qtbot)
    mapping = {"prompt": "problem", "completion": "solution"}
    window.importer.import_hub(str(hub_folder(tmp_path)), "test", mode="replace", mapping=mapping)
    qtbot.waitUntil(lambda: not window.is_importing(), timeout=60_000)
    assert window.project.dataset.rows == (Example("Where is Vaelmoor?", "In the sky."),)
    assert any(hf_cache.iterdir())  # prepared in the test's own cache
    window.importer.import_hub(str(tmp_path / "lore"), "train", limit=1, mode="append", mapping=mapping)
    qtbot.waitUntil(lambda: not window.is_importing(), timeout=60_000)
    assert [r.prompt for r in window.project.dataset] == ["Where is Vaelmoor?", "Who is Tamsin?"]
    window.undo_stack.undo()
    window.undo_stack.undo()
    assert len(window.project.dataset) == SAMPLE_ROWS


def test_hub_import_unknown_split_asks_again_with_the_splits(qtbot: QtBot, tmp_path: Path, hf_cache: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    window = make_window(qtbot)
    folder = hub_folder(tmp_path)
    asked: list[tuple[list[str], str, str]] = []

    def answer(dialog: HubImportDialog) -> int:
        combo = dialog.split_combo
        asked.append(([combo.itemText(i) for i in range(combo.count())], combo.currentText(),
                      dialog.error_label.text()))
        if len(asked) == 1:
            dialog.source_edit.setText(str(folder))
            combo.setCurrentText("validation")
            return QDialog.DialogCode.Accepted
        return QDialog.DialogCode.Rejected

    monkeypatch.setattr(HubImportDialog, "exec", answer)
    window.importer.hub_dialog()
    qtbot.waitUntil(lambda: len(asked) == 2, timeout=60_000)
    assert asked[0] == (["train", "validation", "test"], "train", "")
    assert asked[1] == (["train", "test"], "train",
                        "lore: there is no split 'validation'; available splits: train, test")
    assert not window.is_importing() and len(window.project.dataset) == SAMPLE_ROWS


def test_hub_import_offline_is_explained(qtbot: QtBot, shown_errors: list[ErrorReport]) -> None:
    window = make_window(qtbot)
    window.importer.import_hub("tatsu-lab/alpaca")
    qtbot.waitUntil(lambda: bool(shown_errors), timeout=60_000)
    assert shown_errors[0].title == "Cannot import the dataset"
    assert shown_errors[0].message.startswith("tatsu-lab/alpaca: can't reach the Hugging Face Hub: offline mode is on")
    assert shown_errors[0].note == errors.UNCHANGED
    assert len(window.project.dataset) == SAMPLE_ROWS and window.act_import_hub.isEnabled()


def test_import_error_is_reported(qtbot: QtBot, tmp_path: Path, shown_errors: list[ErrorReport]) -> None:
    window = make_window(qtbot)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a", "completion": "b"}\n{"prompt": 3, "completion": "c"}\n', encoding="utf-8")
    window.import_file(bad, mode="append")
    qtbot.waitUntil(lambda: bool(shown_errors), timeout=60_000)
    (shown,) = [e.message for e in shown_errors]
    assert shown.startswith("bad.jsonl") and "2" in shown and "prompt" in shown
    assert not window.is_importing() and window.act_import.isEnabled()
    assert len(window.project.dataset) == SAMPLE_ROWS


def test_the_notes_of_an_import_show_above_the_table_until_dismissed(qtbot: QtBot, tmp_path: Path,
                                                                    shown_errors: list[ErrorReport]) -> None:
    window = make_window(qtbot, Project())
    notes = window.dataset_tab.import_notes
    assert not notes.isVisible()
    kto = tmp_path / "kto.jsonl"
    kto.write_text("".join(json.dumps({"prompt": f"Q{i}?", "completion": f"A{i}.", "label": i % 2 == 0}) + "\n"
                           for i in range(4)), encoding="utf-8")
    window.import_file(kto, mode="replace")
    qtbot.waitUntil(lambda: not window.is_importing(), timeout=60_000)

    assert [r.prompt for r in window.project.dataset.rows] == ["Q0?", "Q2?"]
    assert notes.isVisible()
    assert notes.text() == "kto.jsonl: Skipped 2 of 4 rows whose label marks an answer not to learn (field 'label')"
    assert "see the note" in window.statusBar().currentMessage()
    assert shown_errors == []  # a note, not an error

    vision = tmp_path / "vision.json"
    vision.write_text(json.dumps([{"image": "a.png", "prompt": "<image>\nWhat is it?", "completion": "A fox."}]),
                      encoding="utf-8")
    window.import_file(vision, mode="append")
    qtbot.waitUntil(lambda: not window.is_importing(), timeout=60_000)
    assert notes.text() == ("vision.json: 1 row references images ('<image>' tags, field 'image'); LoRA Desk trains "
                            "on text only, the images are not used")  # shown as plain text: the tag is visible

    notes.dismiss_button.click()
    assert not notes.isVisible()

    plain = tmp_path / "plain.csv"
    plain.write_text("prompt,completion\nQ?,A.\n", encoding="utf-8")
    window.dataset_tab.import_notes.show_notes("old.json", ["an earlier note"])
    window.import_file(plain, mode="append")
    qtbot.waitUntil(lambda: not window.is_importing(), timeout=60_000)
    assert not notes.isVisible()  # a clean import clears the last one's notes


def test_a_dataset_opened_at_start_says_what_it_skipped(tmp_path: Path) -> None:
    kto = tmp_path / "kto.jsonl"
    kto.write_text("".join(json.dumps({"prompt": f"Q{i}?", "completion": f"A{i}.", "label": i != 0}) + "\n"
                           for i in range(3)), encoding="utf-8")
    project, message = startup_project([str(kto)])
    assert len(project.dataset) == 2
    assert message == ("Imported 2 rows from kto.jsonl; Skipped 1 of 3 rows whose label marks an answer not to "
                       "learn (field 'label')")


def test_dropping_a_dataset_file_imports_it(qtbot: QtBot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    window = make_window(qtbot)
    data = tmp_path / "dropped.jsonl"
    data.write_text('{"prompt": "Dropped?", "completion": "Yes."}\n', encoding="utf-8")
    asked: list[tuple[str, int]] = []
    monkeypatch.setattr(window.importer, "ask_mode", lambda name, count: asked.append((name, count)) or "append")
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(data))])
    event = QDropEvent(QPointF(50, 50), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                       Qt.KeyboardModifier.NoModifier)
    window.dropEvent(event)
    qtbot.waitUntil(lambda: len(window.project.dataset) == SAMPLE_ROWS + 1, timeout=60_000)
    assert asked == [("dropped.jsonl", 1)] and window.project.dataset[-1].prompt == "Dropped?"


def test_export_writes_a_snapshot_in_the_background(qtbot: QtBot, tmp_path: Path) -> None:
    window = make_window(qtbot)
    target = tmp_path / "out.jsonl"
    window.importer.export_file(target, "jsonl")
    qtbot.waitUntil(lambda: not window.busy_bar.isVisible(), timeout=60_000)
    lines = target.read_text(encoding="utf-8").splitlines()
    assert len(lines) == SAMPLE_ROWS
    assert json.loads(lines[0])["prompt"] == window.project.dataset[0].prompt


def test_a_failed_export_is_shown_and_the_window_is_not_left_busy(qtbot: QtBot, tmp_path: Path,
                                                                   shown_errors: list[ErrorReport]) -> None:
    window = make_window(qtbot)
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the folder should be", encoding="utf-8")
    window.importer.export_file(blocker / "out.jsonl", "jsonl")
    qtbot.waitUntil(lambda: bool(shown_errors), timeout=60_000)
    (report,) = shown_errors
    assert report.title == "Cannot export the dataset" and "not-a-folder" in report.message
    assert report.details  # the traceback, behind the details button
    assert not window.busy_bar.isVisible() and blocker.read_text(encoding="utf-8").startswith("a file")


def test_unsaved_work_is_autosaved_for_recovery(qtbot: QtBot, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(autosave, "AUTOSAVE_MS", 50)
    window = make_window(qtbot)
    window.dataset_tab.model.insert_examples(0, [Example("Autosaved?", "Yes.")])
    qtbot.waitUntil(recovery_path().exists, timeout=5000)
    info = find_recovery()
    assert info is not None and info.rows == SAMPLE_ROWS + 1

    project, message = startup_project([], restore=lambda found: found.rows == SAMPLE_ROWS + 1)
    assert message == "Restored unsaved work" and project.dirty
    assert project.dataset[0].prompt == "Autosaved?"


def test_startup_opens_given_file_or_last_project(tmp_path: Path) -> None:
    saved = tmp_path / "last.loradesk"
    Project(config=None).save(saved)
    project, _ = startup_project([str(saved)])
    assert project.path == saved
    window_state.window_settings().setValue("recentProjects", [str(saved)])
    project, message = startup_project([])
    assert project.path == saved and message == f"Opened {saved}"
    window_state.window_settings().setValue("recentProjects", [])
    project, _ = startup_project([])
    assert project.path is None and len(project.dataset) == SAMPLE_ROWS

    data = tmp_path / "rows.jsonl"
    data.write_text('{"prompt": "From the command line?", "completion": "Yes."}\n', encoding="utf-8")
    project, message = startup_project([str(data)])
    assert project.dataset.rows == (Example("From the command line?", "Yes."),) and project.dirty
    assert message == "Imported 1 row from rows.jsonl"


def test_close_asks_to_save_unsaved_changes(qtbot: QtBot, monkeypatch: pytest.MonkeyPatch) -> None:
    window = make_window(qtbot)
    window.dataset_tab.model.insert_examples(0, [Example("Keep me?", "Yes.")])
    window.autosave()
    answers = [QMessageBox.StandardButton.Cancel, QMessageBox.StandardButton.Discard]
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: answers.pop(0))
    assert not window.close() and window.isVisible()
    assert window.close() and not window.isVisible()
    assert find_recovery() is None  # discarded on purpose, but kept once as a backup
    assert recovery_path().with_name(recovery_path().name + ".bak").is_file()
    assert window_state.window_settings().value("geometry") is not None


def test_train_is_blocked_with_the_reason(qtbot: QtBot) -> None:
    window = make_window(qtbot)
    form = window.settings_form
    form.source_combo.setCurrentIndex(form.source_combo.findData("hub"))
    assert not window.act_train.isEnabled()
    assert "needs a name" in window.train_blocked_reason()
    assert window.training_tab.blocked_label.text() == window.train_blocked_reason()
    window.undo_stack.undo()
    assert window.act_train.isEnabled() and not window.training_tab.blocked_label.isVisibleTo(window)
    window.dataset_tab.model.replace_examples([])
    assert window.train_blocked_reason() == "The dataset is empty: add some prompt/completion rows first"
    qtbot.waitUntil(lambda: not window.act_train.isEnabled())  # follows the (coalesced) row count


def test_about_lists_versions(qtbot: QtBot) -> None:
    window = make_window(qtbot)
    text = window.about_text()
    for name in ("LoRA Desk", "Python", "Qt", "Torch", "Transformers", "PEFT", "Device"):
        assert f"<b>{name}</b>" in text
    window._on_device("CPU (2 threads)")
    assert "CPU (2 threads)" in window.about_text() and window.device_label.text() == "Device: CPU (2 threads)"


def test_device_is_probed_in_the_background(qtbot: QtBot) -> None:
    window = make_window(qtbot)
    window.probe_device()
    qtbot.waitUntil(lambda: window.device_label.text() != "Device: …", timeout=60_000)
    assert window.device_label.text().startswith("Device: ")
    assert "unknown" not in window.device_label.text()


def test_closing_during_training_stops_it_and_keeps_the_adapter(qtbot: QtBot, tiny_model_dir: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    project = Project.new_default()
    project.config.model.kind = "local"
    project.config.model.name = str(tiny_model_dir)
    project.config.training.max_steps = 1000
    project.config_changed()
    window = make_window(qtbot, project)
    window.act_train.trigger()
    assert window.tabs.currentWidget() is window.training_tab
    qtbot.waitUntil(window.act_stop.isEnabled, timeout=60_000)
    assert not window.act_train.isEnabled()
    runs = default_runs_dir()
    qtbot.waitUntil(lambda: any(p.stat().st_size for p in runs.glob("*/metrics.jsonl")), timeout=60_000)
    asked: list[str] = []

    def answer(parent: object, title: str, *args: object, **kwargs: object) -> QMessageBox.StandardButton:
        asked.append(title)
        running = title == "Training is running"
        return QMessageBox.StandardButton.Yes if running else QMessageBox.StandardButton.Discard

    monkeypatch.setattr(QMessageBox, "question", answer)
    assert window.close()
    assert asked == ["Training is running", "Save changes?"]  # the project had unsaved settings
    assert not window.training_tab.is_running()
    (run_dir,) = [p.parent for p in runs.glob("*/metrics.jsonl")]
    assert (run_dir / "adapter_model.safetensors").is_file()


def test_the_tabs_talk_to_the_window_through_their_signals(qtbot: QtBot, tmp_path: Path) -> None:
    window = make_window(qtbot)
    assert [type(window.tabs.widget(i)) for i in range(1, 4)] == [TrainingTab, CompareTab, RunsTab]
    run_dir = tmp_path / "run-1"
    window.runs_tab.run_selected.emit(str(run_dir))  # "Compare this run" on the Runs tab
    assert window.tabs.currentWidget() is window.compare_tab
