"""A last project that won't open (truncated, deeply nested, wrong types): a clear message, the autosaved copy
offered, the file left alone, and the app starts, never a silent sample or a crash on every launch."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from PySide6.QtWidgets import QMessageBox

from loradesk.core.dataset import Dataset, Example
from loradesk.core.paths import sample_data_dir
from loradesk.core.project import Project, RecoveryInfo, discard_recovery, recovery_path
from loradesk.ui import window_state
from loradesk.ui.app import startup_project
from loradesk.ui.errors import ErrorReport

ROOT = Path(__file__).resolve().parents[2]
SAMPLE_ROWS = len(json.loads((sample_data_dir() / "sample.json").read_text(encoding="utf-8")))


def broken_projects(folder: Path) -> dict[str, tuple[Path, str]]:
    """Project files that cannot be opened, each with what the message must say."""
    good = folder / "good.loradesk"
    Project(Dataset([Example("Q?", "A.")])).save(good)
    text = good.read_text(encoding="utf-8")
    files = {
        "truncated": (text[: len(text) // 2], "invalid JSON at line"),
        "deep": ('{"format": "loradesk-project", "version": 1, "dataset": ' + "[" * 100_000 + "]" * 100_000
                 + "}", "nested too deeply"),
        "types": (json.dumps({"format": "loradesk-project", "version": 1,
                              "dataset": [{"prompt": 3, "completion": "A."}]}), "row 1, field 'prompt'"),
    }
    out = {}
    for name, (content, expected) in files.items():
        path = folder / f"{name}.loradesk"
        path.write_text(content, encoding="utf-8")
        out[name] = (path, expected)
    return out


@pytest.mark.parametrize("kind", ["truncated", "deep", "types"])
def test_broken_last_project_says_why_and_opens_the_sample(tmp_path: Path, shown_errors: list[ErrorReport],
                                                           kind: str) -> None:
    path, expected = broken_projects(tmp_path)[kind]
    before = path.read_bytes()
    window_state.window_settings().setValue("recentProjects", [str(path)])
    offered: list[RecoveryInfo] = []
    project, message = startup_project([], restore=lambda info: offered.append(info) or True)
    assert len(shown_errors) == 1
    title, text = shown_errors[0].title, shown_errors[0].message
    assert title == "Cannot open the last project"
    lead, error, rest = text.split("\n\n")
    assert lead == f"LoRA Desk could not open the last project, {path.name}."
    assert error.startswith(f"{path}") and expected in error and "left as it is" in rest
    assert "Traceback" not in text and len(error.splitlines()[0]) < 300
    assert offered == []  # no autosaved copy of this project exists
    assert project.path is None and len(project.dataset) == SAMPLE_ROWS and message.startswith("A sample")
    assert path.read_bytes() == before


def test_the_autosaved_copy_of_the_broken_project_is_offered(tmp_path: Path, shown_errors: list[ErrorReport]
                                                             ) -> None:
    path, _ = broken_projects(tmp_path)["truncated"]
    work = Project(Dataset([Example("Unsaved?", "Kept.")]), path=path)
    work.mark_dirty()
    work.autosave()
    discard_recovery()  # the user said no once: the copy is now the backup
    assert recovery_path(backup=True).is_file()
    window_state.window_settings().setValue("recentProjects", [str(path)])

    offered: list[RecoveryInfo] = []
    project, _ = startup_project([], restore=lambda info: offered.append(info) or False)
    assert [(i.path, i.source, i.rows) for i in offered] == [(recovery_path(backup=True), path, 1)]
    assert len(project.dataset) == SAMPLE_ROWS

    project, message = startup_project([], restore=lambda info: True)
    assert message == "Restored the autosaved copy" and project.dirty and project.path == path
    assert project.dataset.rows == (Example("Unsaved?", "Kept."),)
    assert [e.title for e in shown_errors] == ["Cannot open the last project"] * 2


def test_app_starts_with_a_deeply_nested_last_project(tmp_path: Path) -> None:
    """The real start-up (build_window) in a fresh interpreter, twice: it shows the message and the window."""
    path, _ = broken_projects(tmp_path)["deep"]
    before = path.read_bytes()
    window_state.window_settings().setValue("recentProjects", [str(path)])
    window_state.window_settings().sync()
    script = textwrap.dedent("""
        import json
        from loradesk.ui import errors
        shown = []
        errors.reporter.reported.connect(lambda report: shown.append([report.title, report.message]))
        from loradesk.ui.app import build_window
        window = build_window([])
        print(json.dumps({"shown": shown, "visible": window.isVisible(),
                          "rows": window.dataset_tab.model.rowCount()}))
        window.close()
    """)
    for _launch in range(2):
        out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=120)
        assert out.returncode == 0, out.stderr
        result = json.loads(out.stdout.strip().splitlines()[-1])
        assert result["visible"] and result["rows"] == SAMPLE_ROWS
        assert [title for title, _ in result["shown"]] == ["Cannot open the last project"]
        assert "nested too deeply" in result["shown"][0][1]
    assert path.read_bytes() == before


def test_the_offer_says_which_copy_it_is(monkeypatch: pytest.MonkeyPatch) -> None:
    from loradesk.ui.app import ask_restore

    asked: list[str] = []
    monkeypatch.setattr(QMessageBox, "question", lambda _p, _t, text, *a, **k: asked.append(text)
                        or QMessageBox.StandardButton.No)
    source = Path("/somewhere/last.loradesk")
    assert not ask_restore(RecoveryInfo(recovery_path(backup=True), "2026-11-30T10:00:00", source, 3))
    assert not ask_restore(RecoveryInfo(recovery_path(), "", None, 1))
    assert asked[0].startswith("The last autosaved copy of changes to last.loradesk (3 rows, saved 2026-11-30 10:00)")
    assert asked[1].startswith("LoRA Desk did not close normally. Unsaved changes to an untitled project (1 row,")


def test_the_warm_up_loads_a_local_models_shared_tokenizer(tiny_model_dir: Path) -> None:
    """Pressing Train must not pay the tokenizer load (~120 ms holding the GIL): the start-up warm-up does."""
    from loradesk.core import models
    from loradesk.core.config import ModelSettings
    from loradesk.ui.app import warm_up_training_stack

    folder = str(Path(tiny_model_dir).resolve())
    models._SHARED_TOKENIZERS.clear()
    warm_up_training_stack(ModelSettings(kind="local", name=str(tiny_model_dir)))
    assert [key[0] for key in models._SHARED_TOKENIZERS] == [folder]
    from loradesk.core import tokenize

    tokenizer, _lock = models.shared_tokenizer(Path(folder), False)
    known = tokenize._LONGEST.get(id(tokenizer))  # the vocabulary walk Start would do is done and kept
    assert known is not None and known[0] is tokenizer and known[1] >= tokenize.MIN_TOKEN_CHARS
    models._SHARED_TOKENIZERS.clear()
    warm_up_training_stack(ModelSettings(kind="local", name=str(Path(tiny_model_dir) / "missing")))
    assert models._SHARED_TOKENIZERS == {}  # nothing to load: nothing is downloaded or converted here


def test_the_warm_up_imports_what_start_would(tiny_model_dir) -> None:
    """In a fresh interpreter: after the warm-up, the training modules and the model's modelling code are
    already imported (Start would otherwise import them with the GIL, in the seconds after the click)."""
    import os

    code = (
        "import sys\n"
        "from loradesk.core.config import ModelSettings\n"
        "from loradesk.ui.app import warm_up_training_stack\n"
        "before = {m for m in ('loradesk.core.training', 'transformers.models.llama.modeling_llama')"
        " if m in sys.modules}\n"
        f"warm_up_training_stack(ModelSettings(kind='local', name={str(tiny_model_dir)!r}))\n"
        "print(sorted(before), 'loradesk.core.training' in sys.modules,"
        " 'transformers.models.llama.modeling_llama' in sys.modules)\n"
    )
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": str(root), "QT_QPA_PLATFORM": "offscreen"})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split("\n")[-2] == "[] True True"
