"""Runs opened from elsewhere: reading a growing metrics file a piece at a time, and what is remembered of them."""

from __future__ import annotations

import json
import os
from pathlib import Path

from loradesk.core import opened_runs, runs


def _line(step: int, loss: float) -> bytes:
    return (json.dumps({"step": step, "max_steps": 10, "epoch": step / 10, "loss": loss}) + "\n").encode()


def test_the_incremental_reader_keeps_a_half_written_last_line_for_the_next_read(tmp_path: Path) -> None:
    metrics = tmp_path / runs.METRICS_FILE
    first = runs.read_new_metrics(tmp_path)
    assert first.rows == [] and first.offset == 0 and first.file_id is None  # no file yet

    whole, torn = _line(1, 2.5), _line(2, 2.25)
    metrics.write_bytes(whole + torn[:17])  # the writer is half-way through its second line
    got = runs.read_new_metrics(tmp_path, first.offset, first.file_id)
    assert [r["step"] for r in got.rows] == [1]
    assert got.offset == len(whole) and not got.restarted

    same = runs.read_new_metrics(tmp_path, got.offset, got.file_id)  # nothing complete was added
    assert same.rows == [] and same.offset == got.offset

    with open(metrics, "ab") as fh:
        fh.write(torn[17:] + _line(3, 2.0))
    more = runs.read_new_metrics(tmp_path, same.offset, same.file_id)
    assert [(r["step"], r["loss"]) for r in more.rows] == [(2, 2.25), (3, 2.0)]
    assert more.offset == metrics.stat().st_size


def test_a_replaced_or_shorter_metrics_file_is_read_again_from_its_start(tmp_path: Path) -> None:
    metrics = tmp_path / runs.METRICS_FILE
    metrics.write_bytes(_line(1, 3.0) + _line(2, 2.0) + _line(3, 1.0))
    got = runs.read_new_metrics(tmp_path)
    metrics.write_bytes(_line(1, 3.0))  # a resume cut it back to an earlier checkpoint
    again = runs.read_new_metrics(tmp_path, got.offset, got.file_id)
    assert again.restarted and [r["step"] for r in again.rows] == [1]

    tmp = tmp_path / "new.jsonl"
    tmp.write_bytes(_line(1, 3.0) + _line(2, 2.5) + _line(3, 2.0) + _line(4, 1.5))
    os.replace(tmp, metrics)  # same size or longer, but another file
    replaced = runs.read_new_metrics(tmp_path, again.offset, again.file_id)
    assert replaced.restarted and [r["step"] for r in replaced.rows] == [1, 2, 3, 4]


def test_a_torn_line_in_the_middle_is_skipped(tmp_path: Path) -> None:
    (tmp_path / runs.METRICS_FILE).write_bytes(_line(1, 3.0) + b'{"step": 2, "lo\n' + b"\xff\xfe\n" + _line(3, 1.0))
    assert [r["step"] for r in runs.read_new_metrics(tmp_path).rows] == [1, 3]


def _run_folder(folder: Path, base_model_dir: str, created: str = "2026-12-01T04:00:00") -> Path:
    folder.mkdir(parents=True)
    runs.write_run_file(folder, {"created": created, "model": "org/base", "base_model_dir": base_model_dir,
                                 "config": {}, "result": {"status": "completed", "steps": 3}})
    return folder


def test_opened_runs_are_listed_with_the_local_ones_and_gone_ones_are_forgotten(tmp_path: Path) -> None:
    local = _run_folder(tmp_path / "runs" / "local", "", "2026-12-01T03:00:00")
    mounted = _run_folder(tmp_path / "mnt" / "cluster-run", "", "2026-12-01T05:00:00")
    gone = _run_folder(tmp_path / "mnt" / "gone", "")
    for folder in (local, mounted, gone):
        opened_runs.remember(folder)
    (gone / runs.RUN_FILE).unlink()
    assert opened_runs.remembered() == [mounted, local]
    assert str(gone) not in opened_runs.store_path().read_text(encoding="utf-8")

    listed = runs.list_runs(tmp_path / "runs", also=opened_runs.remembered())
    assert [info.path for info in listed] == [mounted, local]  # newest first, the local one once
    opened_runs.forget(mounted)
    assert opened_runs.remembered() == [local]


def test_a_chosen_base_model_replaces_a_missing_one_without_touching_the_run_file(tmp_path: Path) -> None:
    here = tmp_path / "models" / "base"
    here.mkdir(parents=True)
    run = _run_folder(tmp_path / "mnt" / "run", "/cluster/hf-cache/org/base")
    before = (run / runs.RUN_FILE).read_bytes()
    info = runs.read_run(run)
    assert info.base_model_dir == "/cluster/hf-cache/org/base" and runs.base_model_missing(info)

    opened_runs.set_base_model(run, here)
    info = runs.read_run(run)
    assert info.base_model_dir == str(here) and not runs.base_model_missing(info)
    assert (run / runs.RUN_FILE).read_bytes() == before
    assert opened_runs.remembered() == [run]

    present = _run_folder(tmp_path / "mnt" / "present", str(here))  # a recorded folder that is here wins
    opened_runs.set_base_model(present, tmp_path)
    assert runs.read_run(present).base_model_dir == str(here)


def test_a_long_backlog_comes_in_pieces_of_whole_lines(tmp_path: Path) -> None:
    metrics = tmp_path / runs.METRICS_FILE
    metrics.write_bytes(b"".join(_line(step, 3.0 - step / 100) for step in range(1, 101)))
    steps, got, pieces = [], runs.NewMetrics([], 0, None, False, True), 0
    while got.more:
        got = runs.read_new_metrics(tmp_path, got.offset, got.file_id, limit=1000)
        steps += [r["step"] for r in got.rows]
        pieces += 1
    assert steps == list(range(1, 101)) and pieces > 5
    assert got.offset == metrics.stat().st_size

    long_line = (json.dumps({"step": 101, "loss": 0.5, "note": "x" * 3000}) + "\n").encode()
    with open(metrics, "ab") as fh:
        fh.write(long_line)
    last = runs.read_new_metrics(tmp_path, got.offset, got.file_id, limit=1000)  # one line over the limit
    assert [r["step"] for r in last.rows] == [101] and not last.more
