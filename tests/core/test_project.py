"""Project files: round trip, precise errors, dirty tracking, recovery after a crash."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loradesk.core.config import RunConfig
from loradesk.core.dataset import Dataset, Example
from loradesk.core.paths import app_home, sample_data_dir
from loradesk.core.project import (
    PROJECT_FORMAT,
    ConfigChanged,
    DirtyChanged,
    HeldoutChanged,
    PathChanged,
    Project,
    ProjectError,
    ProjectEvent,
    ProjectLoaded,
    discard_recovery,
    find_recovery,
    recover,
    recovery_path,
)


def make_project() -> Project:
    rows = [Example("Who is Tamsin?", "A sky-cartographer."),
            Example("Where?", "Vaelmoor", system="Be brief.", split="validation")]
    config = RunConfig()
    config.lora.r = 16
    config.training.learning_rate = 2e-4
    config.model.kind = "local"
    config.model.name = "/models/tiny"
    return Project(Dataset(rows), config, heldout_path="/data/heldout.json")


def test_save_load_round_trip(tmp_path: Path) -> None:
    project = make_project()
    target = tmp_path / "fact.loradesk"
    assert project.save(target) == target
    data = json.loads(target.read_text(encoding="utf-8"))
    assert data["format"] == PROJECT_FORMAT and data["version"] == 1
    assert data["dataset"][1] == {"prompt": "Where?", "completion": "Vaelmoor", "system": "Be brief.",
                                  "split": "validation"}
    assert data["heldout"] == "/data/heldout.json"

    loaded = Project.load(target)
    assert loaded.path == target and loaded.name == "fact" and not loaded.dirty
    assert loaded.dataset.records() == project.dataset.records()
    assert loaded.config == project.config
    assert loaded.heldout_path == Path("/data/heldout.json")
    assert [p.name for p in tmp_path.iterdir()] == ["fact.loradesk"]  # no temporary files left


def test_relative_heldout_resolves_next_to_project(tmp_path: Path) -> None:
    target = tmp_path / "p.loradesk"
    target.write_text(json.dumps({"format": PROJECT_FORMAT, "version": 1, "dataset": [],
                                  "config": {}, "heldout": "questions.json"}))
    assert Project.load(target).heldout_path == tmp_path / "questions.json"


def test_dirty_tracking_and_events(tmp_path: Path) -> None:
    project = make_project()
    events: list[ProjectEvent] = []
    project.subscribe(events.append)
    assert not project.dirty
    project.dataset.set_field(0, "completion", "A cartographer of the sky.")
    assert project.dirty and events == [DirtyChanged(True)]
    project.save(tmp_path / "a.loradesk")
    assert not project.dirty and events == [DirtyChanged(True), PathChanged(tmp_path / "a.loradesk"),
                                            DirtyChanged(False)]

    events.clear()
    project.config.training.epochs = 5.0
    project.config_changed()
    assert project.dirty and events == [DirtyChanged(True), ConfigChanged()]
    project.save()
    project.heldout_path = tmp_path / "h.json"
    assert project.dirty and HeldoutChanged(tmp_path / "h.json") in events
    assert Project.load(tmp_path / "a.loradesk").config.training.epochs == 5.0


def test_save_without_path_is_refused() -> None:
    with pytest.raises(ValueError, match="no file"):
        Project().save()


@pytest.mark.parametrize(("content", "expected"), [
    ('{"format": "loradesk-project", "version": 1,\n "dataset": [}', "line 2"),
    ('[1, 2]', "expected a JSON object"),
    ('{"format": "something-else", "version": 1}', "field 'format'"),
    ('{"format": "loradesk-project", "version": 9}', "unsupported version 9"),
    ('{"format": "loradesk-project", "version": 1, "dataset": [{"prompt": "a", "completion": "b"},'
     ' {"prompt": "c"}]}', "row 2, field 'completion': missing"),
    ('{"format": "loradesk-project", "version": 1, "dataset": [{"prompt": "a", "completion": 3}]}',
     "row 1, field 'completion': expected text, got int"),
    ('{"format": "loradesk-project", "version": 1, "dataset": [], "config": {"lora": {"r": "big"}}}',
     "field 'config.lora.r'"),
    ('{"format": "loradesk-project", "version": 1, "extra": 1}', "field 'extra': unknown key"),
])
def test_load_errors_name_file_row_and_field(tmp_path: Path, content: str, expected: str) -> None:
    target = tmp_path / "broken.loradesk"
    target.write_text(content, encoding="utf-8")
    with pytest.raises(ProjectError) as info:
        Project.load(target)
    assert str(target) in str(info.value)
    assert expected in str(info.value)


def test_load_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ProjectError, match="file not found"):
        Project.load(tmp_path / "nope.loradesk")


def test_new_default_holds_the_sample_data() -> None:
    project = Project.new_default()
    sample = json.loads((sample_data_dir() / "sample.json").read_text(encoding="utf-8"))
    assert len(project.dataset) == len(sample) > 0
    assert project.dataset[0].prompt == sample[0]["prompt"]
    assert project.heldout_path == sample_data_dir() / "sample_heldout.json"
    assert project.path is None and project.name == "Untitled" and not project.dirty


def test_recovery_file_brings_back_unsaved_work(tmp_path: Path, loradesk_home: Path) -> None:
    assert app_home() == loradesk_home and recovery_path().parent == loradesk_home
    project = make_project()
    project.save(tmp_path / "work.loradesk")
    assert project.autosave() is None  # nothing unsaved
    project.dataset.append(Example("New question?", "New answer."))
    assert project.autosave() == recovery_path()

    info = find_recovery()
    assert info is not None and info.rows == 3 and info.source == tmp_path / "work.loradesk" and info.saved
    restored = recover()
    assert restored.dirty and restored.path == tmp_path / "work.loradesk"
    assert restored.dataset[2].completion == "New answer."
    assert restored.config == project.config

    restored.save()  # a clean save removes the recovery file
    assert find_recovery() is None and not recovery_path().exists()


def test_discard_recovery_keeps_one_backup() -> None:
    project = make_project()
    project.mark_dirty()
    project.autosave()
    discard_recovery()
    assert find_recovery() is None
    backup = recovery_path().with_name(recovery_path().name + ".bak")
    saved = json.loads(backup.read_text(encoding="utf-8"))
    assert saved["project"]["dataset"][0]["prompt"] == "Who is Tamsin?"


def test_replace_with_keeps_listeners(tmp_path: Path) -> None:
    project = Project.new_default()
    seen: list[ProjectEvent] = []
    rows_seen: list[str] = []
    project.subscribe(seen.append)
    project.dataset.subscribe(lambda e: rows_seen.append(type(e).__name__))
    other = make_project()
    other.save(tmp_path / "other.loradesk")
    project.replace_with(Project.load(tmp_path / "other.loradesk"))
    assert len(project.dataset) == 2 and project.config.lora.r == 16
    assert project.path == tmp_path / "other.loradesk" and not project.dirty
    assert rows_seen == ["DatasetReset"] and seen[-1] == ProjectLoaded() and ConfigChanged() in seen
    assert PathChanged(tmp_path / "other.loradesk") in seen


def test_iter_json_encodes_like_dumps_in_pieces() -> None:
    import json

    from loradesk.core.fileio import iter_json

    value = {"a": [{"prompt": f"é{i}", "n": i} for i in range(2500)], "b": {"c": [1, 2], "d": None}, "e": "x"}
    pieces = list(iter_json(value, chunk=1000))
    assert "".join(pieces) == json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    assert len(pieces) > 5  # the long list really was split
    assert "".join(iter_json([], chunk=1)) == "[]"
