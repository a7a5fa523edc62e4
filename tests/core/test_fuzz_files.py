"""Property-based: random and damaged dataset and project files import correctly or raise the one clear error
naming the file, never another exception, a hang or part of the rows (profiles in tests/conftest.py)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from hostile_files import dataset_files, examples, mutate, project_documents
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loradesk.core.dataset import Dataset, Example
from loradesk.core.formats import (
    WRITE_FORMATS,
    FormatError,
    detect_format,
    preview_records,
    read_dataset,
    read_heldout,
    write_dataset,
)
from loradesk.core.project import Project, ProjectError, find_recovery, recover, recovery_path

SUFFIX = {"json": ".json", "jsonl": ".jsonl", "csv": ".csv", "openai": ".jsonl", "alpaca": ".json",
          "sharegpt": ".json"}
NO_FIXTURE_CHECK = settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def folder() -> Path:
    return Path(tempfile.mkdtemp(prefix="fuzz-"))


@NO_FIXTURE_CHECK
@given(case=dataset_files())
def test_any_dataset_file_reads_whole_or_fails_naming_the_file(case: tuple[str, bytes]) -> None:
    name, content = case
    path = folder() / name
    path.write_bytes(content)
    for read in (read_dataset, detect_format, preview_records, read_heldout):
        try:
            result = read(path)
        except FormatError as exc:
            message = str(exc)
            assert message.startswith(f"{name}: ") or message.startswith(f"{name}, "), message
            assert "\n" not in message.split(": ", 1)[0] and len(message) < 2000
            continue
        if read is read_dataset:
            assert all(isinstance(t, str) for row in result for t in (row.prompt, row.completion, row.system))
            if result and not any("\ud800" <= c <= "\udfff" for row in result for c in row.prompt + row.completion
                                  + row.system):
                back = path.with_name("back.jsonl")
                write_dataset(back, result)
                assert read_dataset(back) == result


@NO_FIXTURE_CHECK
@given(rows=st.lists(examples, min_size=1, max_size=5), fmt=st.sampled_from(WRITE_FORMATS), data=st.data())
def test_written_files_read_back_the_same_in_every_format(rows: list[Example], fmt: str,
                                                          data: st.DataObject) -> None:
    path = folder() / f"rows{SUFFIX[fmt]}"
    write_dataset(path, rows, fmt)
    changes = ["none", "bom"] + (["crlf"] if fmt != "csv" else [])  # CSV cells may hold line breaks
    change = data.draw(st.sampled_from(changes))
    content = path.read_bytes()
    path.write_bytes({"none": content, "bom": b"\xef\xbb\xbf" + content,
                      "crlf": content.replace(b"\n", b"\r\n")}[change])
    assert detect_format(path) == fmt
    got = read_dataset(path)
    if fmt in ("alpaca", "sharegpt", "openai"):  # these formats have no split column
        rows = [Example(r.prompt, r.completion, r.system) for r in rows]
    assert got == rows


BASE = Project(Dataset([Example("Q\x00?", "A.", "Be brief.", "train"), Example("Q2?", "B.")])).to_dict()


@NO_FIXTURE_CHECK
@given(doc=project_documents(BASE), data=st.data())
def test_any_project_file_opens_or_fails_naming_the_file(doc: object, data: st.DataObject) -> None:
    path = folder() / "fuzz.loradesk"
    content = data.draw(mutate(json.dumps(doc, ensure_ascii=False).encode()))
    path.write_bytes(content)
    try:
        project = Project.load(path)
    except ProjectError as exc:
        assert str(exc).startswith(f"{path}: ") or str(exc).startswith(f"{path}, "), str(exc)
        assert len(str(exc)) < 2000
    else:
        project.save(path.with_name("again.loradesk"))
        again = Project.load(path.with_name("again.loradesk"))
        assert again.dataset.rows == project.dataset.rows and again.config == project.config

    recovery = {"format": "loradesk-recovery", "version": 1, "saved": "", "source": None, "project": doc}
    recovery_path().parent.mkdir(parents=True, exist_ok=True)
    recovery_path().write_bytes(data.draw(mutate(json.dumps(recovery, ensure_ascii=False).encode())))
    assert find_recovery() is not None
    try:
        recover()
    except ProjectError as exc:
        assert str(exc).startswith(str(recovery_path()))
