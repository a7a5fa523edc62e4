"""Saves keep the user's permissions and symlinks; exports are all or nothing; kills leave no lasting debris;
a full disk or a file size limit is one line naming the file (RLIMIT_FSIZE makes writes fail with EFBIG)."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from loradesk.core import fileio
from loradesk.core.config import ConfigError, RunConfig
from loradesk.core.project import Project, ProjectError

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def umask_002():
    old = os.umask(0o002)
    yield
    os.umask(old)


def test_new_files_get_the_umask_mode_and_existing_ones_keep_theirs(tmp_path: Path, umask_002) -> None:
    new = tmp_path / "new.json"
    fileio.atomic_write_text(new, "{}")
    assert new.stat().st_mode & 0o777 == 0o664
    shared = tmp_path / "shared.loradesk"
    Project().save(shared)
    shared.chmod(0o664)
    Project().save(shared)
    assert shared.stat().st_mode & 0o777 == 0o664
    config = tmp_path / "run.json"
    config.write_text("{}")
    config.chmod(0o640)
    RunConfig().save(config)
    assert config.stat().st_mode & 0o777 == 0o640


def test_saving_through_a_symlink_replaces_its_target(tmp_path: Path) -> None:
    target = tmp_path / "real" / "project.loradesk"
    target.parent.mkdir()
    target.write_text("old")
    link = tmp_path / "project.loradesk"
    link.symlink_to(target)
    Project().save(link)
    assert link.is_symlink() and link.resolve() == target
    assert json.loads(target.read_text())["format"] == "loradesk-project"


def _age(path: Path, seconds: float) -> None:
    stamp = time.time() - seconds
    for p in [path, *path.rglob("*")] if path.is_dir() else [path]:
        os.utime(p, (stamp, stamp))


def test_stale_temporary_files_are_removed_at_project_open_and_run_listing(tmp_path: Path, make_run) -> None:
    from loradesk.core.runs import list_runs

    project = tmp_path / "p.loradesk"
    Project().save(project)
    stale_file = tmp_path / ".p.loradesk.ab12cd34.tmp"
    stale_file.write_text("half a save")
    stale_dir = tmp_path / ".export.xy98zz01.tmp"
    (stale_dir / "sub").mkdir(parents=True)
    (stale_dir / "sub" / "model.safetensors").write_bytes(b"x" * 10)
    fresh = tmp_path / ".q.loradesk.fresh123.tmp"  # a concurrent save in progress
    fresh.write_text("writing")
    others = [tmp_path / ".hidden", tmp_path / "notes.tmp"]
    for p in [*others]:
        p.write_text("user's")
    for p in (stale_file, stale_dir, *others):
        _age(p, 2 * 3600)
    Project.load(project)
    assert not stale_file.exists() and not stale_dir.exists()
    assert fresh.exists() and all(p.exists() for p in others)

    runs = tmp_path / "runs"
    run = make_run(runs / "r1")
    debris = run / ".dataset.jsonl.k3j4h5g6.tmp"
    debris.write_text("x")
    _age(debris, 2 * 3600)
    young = run / ".loradesk_run.json.aaaaaa11.tmp"
    young.write_text("x")
    assert [r.path for r in list_runs(runs)] == [run]
    assert not debris.exists() and young.exists()


def test_export_keeps_other_files_and_gives_normal_permissions(tmp_path: Path, make_run, umask_002) -> None:
    from loradesk.core.runs import export_adapter, export_merged

    run = make_run(tmp_path / "run")
    for name in os.listdir(run):
        (run / name).chmod(0o600)
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "notes.txt").write_text("mine")
    export_adapter(run, dest)
    assert (dest / "notes.txt").read_text() == "mine"
    assert (dest / "adapter_model.safetensors").stat().st_mode & 0o777 == 0o664
    merged = export_merged(run, tmp_path / "merged")
    assert (merged / "model.safetensors").stat().st_mode & 0o777 == 0o664
    assert merged.stat().st_mode & 0o777 == 0o775
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def _limited(limit: int):
    def preexec() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
    return preexec


def _cli_limited(limit: int, *args: str, home: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LORADESK_HOME": str(home), "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run([sys.executable, "-m", "loradesk", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300, preexec_fn=_limited(limit))


def test_merged_export_that_cannot_be_written_leaves_the_destination_unchanged(tmp_path: Path, make_run,
                                                                               loradesk_home: Path) -> None:
    run = make_run(tmp_path / "run")
    dest = tmp_path / "merged"
    dest.mkdir()
    (dest / "config.json").write_text("OLD")
    done = _cli_limited(100_000, "export", str(run), "--out", str(dest), "--merged", home=loradesk_home)
    assert done.returncode == 1
    assert done.stderr.strip() == f"loradesk: error: {dest}: file too large (a file size limit was reached)"
    assert sorted(os.listdir(dest)) == ["config.json"] and (dest / "config.json").read_text() == "OLD"
    assert sorted(os.listdir(tmp_path)) == ["merged", "run"]


def test_training_that_cannot_write_is_one_line_naming_the_run(tmp_path: Path, tiny_model_dir: Path,
                                                               loradesk_home: Path) -> None:
    out = tmp_path / "run"
    done = _cli_limited(50_000, "train", str(ROOT / "data" / "sample.json"), "--model", str(tiny_model_dir),
                        "--max-steps", "2", "--batch-size", "4", "--out", str(out), home=loradesk_home)
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last == f"loradesk: error: {out}: file too large (a file size limit was reached)"
    assert "Traceback" not in done.stderr


def test_project_save_that_cannot_be_written_names_the_file_and_keeps_the_old_one(tmp_path: Path) -> None:
    path = tmp_path / "big.loradesk"
    project = Project.new_default()
    project.save(path)
    before = path.read_bytes()
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1000, hard))
    try:
        with pytest.raises(OSError) as err:
            project.save(path)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, old_handler)
    assert str(err.value) == f"{path}: file too large (a file size limit was reached)"
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["big.loradesk"]


def test_config_errors_name_the_file_and_every_bad_key(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    path.write_text(json.dumps({"training": {"lr_magic": 1, "seed": "x", "learning_rat": 0.1},
                                "lora": {"rank": 4}, "extra": {}}))
    with pytest.raises(ConfigError) as err:
        RunConfig.load(path)
    text = str(err.value)
    assert text.startswith(f"{path}: ") and "\n" not in text
    for key in ("training.lr_magic", "training.seed", "training.learning_rat", "lora.rank", "extra"):
        assert key in text
    assert "did you mean learning_rate?" in text
    assert "allowed: epochs" in text  # lr_magic resembles nothing: the allowed keys are listed
    project = tmp_path / "p.loradesk"
    project.write_text(json.dumps({"format": "loradesk-project", "version": 1, "dataset": [],
                                   "config": {"training": {"lr_magic": 1}, "lora": {"r": "8"}}}))
    with pytest.raises(ProjectError) as err:
        Project.load(project)
    assert str(project) in str(err.value)
    assert "config.training.lr_magic" in str(err.value) and "config.lora.r" in str(err.value)


def test_storage_errors_from_any_library_become_one_line_naming_the_file(tmp_path: Path) -> None:
    """Permission denied cannot be provoked as root, so the mapping itself is checked here."""
    denied = PermissionError(13, "Permission denied", str(tmp_path / ".p.loradesk.ab12cd34.tmp"))
    assert str(fileio.storage_error(denied)) == f"{tmp_path / 'p.loradesk'}: permission denied"
    try:  # safetensors and torch say it only in their text, often as the cause of another error
        try:
            raise RuntimeError("Error while serializing: I/O error: No space left on device (os error 28)")
        except RuntimeError as exc:
            raise ValueError("saving failed") from exc
    except ValueError as exc:
        assert str(fileio.storage_error(exc, tmp_path / "out")) == f"{tmp_path / 'out'}: no space left on device"
    assert fileio.storage_error(ValueError("bad value")) is None
    assert fileio.storage_error(FileNotFoundError(2, "No such file", "x")) is None
