"""Deep, huge and odd files give one line naming the file, never RecursionError or MemoryError."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from loradesk.core.formats import FormatError, read_dataset, read_heldout
from loradesk.core.project import Project, ProjectError, find_recovery, recover, recovery_path

ROOT = Path(__file__).resolve().parents[2]
DEEP = 100_000


def deep(depth: int = DEEP) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize(("name", "text", "where"), [
    ("deep.json", deep(), "deep.json: "),
    ("deep.jsonl", '{"prompt": "a", "completion": "b"}\n{"prompt": ' + deep() + "}\n", "deep.jsonl, line 2: "),
    ("value.json", '[{"prompt": ' + deep(5000) + ', "completion": "b"}]', "value.json: "),
])
def test_deep_dataset_is_one_clear_error(tmp_path: Path, name: str, text: str, where: str) -> None:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    for read in (read_dataset, read_heldout):
        with pytest.raises(FormatError) as info:
            read(path)
        assert str(info.value).startswith(where) and "nested too deeply" in str(info.value)


def test_a_number_with_thousands_of_digits_is_a_format_error(tmp_path: Path) -> None:
    path = tmp_path / "digits.json"
    path.write_text('[{"prompt": "a", "completion": ' + "7" * 5000 + "}]", encoding="utf-8")
    with pytest.raises(FormatError, match=r"^digits\.json: .*thousands of digits"):
        read_dataset(path)


def test_long_bad_values_are_quoted_briefly(tmp_path: Path) -> None:
    path = tmp_path / "split.json"
    path.write_text(json.dumps([{"prompt": "a", "completion": "b", "split": "x" * 100_000}]), encoding="utf-8")
    with pytest.raises(FormatError) as info:
        read_dataset(path)
    assert str(info.value).startswith("split.json, row 1: field 'split' is 'xxx") and len(str(info.value)) < 200


def test_deep_project_and_recovery_files(tmp_path: Path) -> None:
    path = tmp_path / "deep.loradesk"
    path.write_text('{"format": "loradesk-project", "version": 1, "dataset": ' + deep() + "}", encoding="utf-8")
    with pytest.raises(ProjectError, match=r"deep\.loradesk: the JSON is nested too deeply"):
        Project.load(path)
    recovery_path().parent.mkdir(parents=True, exist_ok=True)
    recovery_path().write_text(deep(), encoding="utf-8")
    info = find_recovery()
    assert info is not None and info.rows == 0  # still offered, so the user decides
    with pytest.raises(ProjectError, match="nested too deeply"):
        recover()


def test_project_with_wrong_types_names_the_field(tmp_path: Path) -> None:
    path = tmp_path / "types.loradesk"
    base = {"format": "loradesk-project", "version": 1}
    cases = [({"version": "1" * 100_000}, "field 'version'"),
             ({"config": {"training": {"learning_rate": "x" * 100_000}}}, "config.training.learning_rate"),
             ({"config": {"training": {"learning_rate": 10**400}}}, "config.training.learning_rate"),
             ({"config": {"training": {"learning_rate": float("nan")}}}, "config.training.learning_rate"),
             ({"dataset": [{"prompt": None, "completion": "b"}]}, "row 1, field 'prompt'")]
    for extra, where in cases:
        path.write_text(json.dumps({**base, **extra}), encoding="utf-8")
        with pytest.raises(ProjectError) as info:
            Project.load(path)
        assert where in str(info.value) and len(str(info.value)) < 300


def test_project_file_with_bom_and_bad_utf8(tmp_path: Path) -> None:
    path = tmp_path / "bom.loradesk"
    Project().save(path)
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    assert Project.load(path).path == path
    path.write_bytes(b'{"format":\n"loradesk-project", "x": "\xff"}')
    with pytest.raises(ProjectError, match=r"not UTF-8 text \(byte 0xff on line 2\)"):
        Project.load(path)


def test_file_bigger_than_memory_allows(tmp_path: Path) -> None:
    """A real MemoryError: the reader runs with an address-space limit below the file's size."""
    path = tmp_path / "big.json"
    path.write_text('[{"prompt": "' + "a" * 40_000_000 + '", "completion": "b"}]', encoding="utf-8")
    script = textwrap.dedent("""
        import os, resource, sys
        from loradesk.core.formats import FormatError, read_dataset
        from loradesk.core.project import Project, ProjectError
        size = os.path.getsize(sys.argv[1])
        vm = int(open("/proc/self/statm").read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        resource.setrlimit(resource.RLIMIT_AS, (vm + size // 2, resource.RLIM_INFINITY))
        for read, error in ((read_dataset, FormatError), (Project.load, ProjectError)):
            try:
                read(sys.argv[1])
            except error as exc:
                print(exc)
    """)
    out = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, text=True, cwd=ROOT,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["big.json: the file is too big to load into memory",
                                       f"{path}: the file is too big to load into memory"]


def test_settings_file_deep_or_not_utf8(tmp_path: Path) -> None:
    from loradesk.core.config import ConfigError, RunConfig

    path = tmp_path / "settings.json"
    for content, expected in ((deep().encode(), "the JSON is nested too deeply"),
                              (b'{"name": "\xff"}', "not UTF-8 text (byte 0xff)")):
        path.write_bytes(content)
        with pytest.raises(ConfigError) as info:
            RunConfig.load(path)
        assert str(info.value).startswith(f"{path}: invalid settings: file: {expected}")
