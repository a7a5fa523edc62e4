"""NUL and other control characters: imported as they are, reported by the checks with a fix that removes them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loradesk.core.checks import control_characters, remove_control_characters, run_checks
from loradesk.core.dataset import Dataset, Example
from loradesk.core.formats import read_dataset
from loradesk.core.project import Project, recover


def test_control_characters_are_named_and_removed() -> None:
    text = "a\x00b\x07c\ufeffd\x85e\x7f\ud800\tf\ng\r\n"
    assert control_characters(text) == ["NUL", "U+0007", "byte order mark U+FEFF", "U+0085", "U+007F",
                                        "lone surrogate U+D800"]
    assert remove_control_characters(text) == "abcde\tf\ng\r\n"  # tab and line breaks stay
    assert control_characters("Plain text, tabs\tand\nlines, é ü 中文 😀") == []


def test_the_check_lists_rows_and_fixes_every_field() -> None:
    rows = [Example("Clean?", "Yes."), Example("N\x00UL", "ok", system="\x1b[1mBold"),
            Example("Fine", "BOM\ufeff inside")]
    result = {r.key: r for r in run_checks(rows)}["control"]
    assert result.severity == "warning" and result.rows == (1, 2)
    assert result.notes == ("prompt: NUL; system: U+001B", "completion: byte order mark U+FEFF")
    assert result.message.startswith("Rows 2 and 3 hold invisible control characters (NUL,")
    (fix,) = result.fixes
    assert fix.label == "Remove control characters from 2 rows"
    dataset = Dataset(rows)
    dataset.set_fields(fix.changes)
    assert [(r.prompt, r.completion, r.system) for r in dataset] == [
        ("Clean?", "Yes.", ""), ("NUL", "ok", "[1mBold"), ("Fine", "BOM inside", "")]
    assert "control" not in {r.key for r in run_checks(dataset.rows)}


def test_lone_surrogates_are_an_error_and_survive_save_and_recovery(tmp_path: Path) -> None:
    path = tmp_path / "escapes.json"
    path.write_text('[{"prompt": "half \\ud83d emoji", "completion": "ok"}]', encoding="utf-8")
    rows = read_dataset(path)
    assert rows[0].prompt == "half \ud83d emoji"
    result = {r.key: r for r in run_checks(rows)}["control"]
    assert result.severity == "error" and "cannot be tokenized" in result.message
    project = Project(Dataset(rows))
    project.save(tmp_path / "p.loradesk")  # nothing the user has is lost, even this
    assert Project.load(tmp_path / "p.loradesk").dataset.rows == tuple(rows)
    project.mark_dirty()
    project.autosave()
    assert recover().dataset.rows == tuple(rows)


@pytest.mark.parametrize(("name", "content"), [
    ("nul.csv", b"prompt,completion\r\nN\x00UL,ok\r\n"),
    ("nul.json", json.dumps([{"prompt": "N\x00UL", "completion": "ok"}]).encode()),
    ("nul.jsonl", b'{"prompt": "N\\u0000UL", "completion": "ok"}\n'),
])
def test_files_with_nul_import_and_are_flagged(tmp_path: Path, name: str, content: bytes) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    rows = read_dataset(path)
    assert rows == [Example("N\x00UL", "ok")]
    assert {r.key: r for r in run_checks(rows)}["control"].rows == (0,)


def test_training_says_when_rows_hold_control_characters(tiny_model_dir: Path, tmp_path: Path) -> None:
    from loradesk.core import training
    from loradesk.core.config import RunConfig

    class Lines:
        def __init__(self) -> None:
            self.lines: list[str] = []

        def status(self, text: str) -> None: ...

        def progress(self, _p: object) -> None: ...

        def log(self, text: str) -> None:
            self.lines.append(text)

    config = RunConfig()
    config.model.kind, config.model.name = "local", str(tiny_model_dir)
    config.training.max_steps, config.training.validation_fraction = 1, 0.0
    rows = [Example("Clean?", "Yes."), Example("N\x00UL?", "Kept as it is.")] * 2
    sink = Lines()
    training.run(config, rows, sink, runs_dir=tmp_path)
    assert ("2 rows (row 2 first) hold control characters such as NUL; they are trained as they are "
            "(the Checks panel removes them)") in sink.lines


def test_lone_surrogates_are_counted_but_not_trained(tiny_model_dir: Path, tmp_path: Path) -> None:
    from loradesk.core import tokenize, training
    from loradesk.core.config import RunConfig
    from loradesk.core.models import load_tokenizer

    row = Example("half \ud83d emoji", "ok")
    tok = load_tokenizer(tiny_model_dir)
    assert tokenize.token_count(tok, row) == tokenize.token_count(tok, Example("half \ufffd emoji", "ok"))
    config = RunConfig()
    config.model.kind, config.model.name = "local", str(tiny_model_dir)
    config.training.validation_fraction = 0.0
    with pytest.raises(training.TrainingError, match=r"^Row 2 holds a lone surrogate"):
        training.run(config, [Example("Fine?", "Yes."), row], runs_dir=tmp_path)
