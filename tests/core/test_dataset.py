"""The observable dataset: mutations emit events, validation names rows."""

from __future__ import annotations

import pytest

from loradesk.core.dataset import (
    Dataset,
    DatasetEvent,
    Example,
    RowsChanged,
    RowsInserted,
    RowsRemoved,
    draw_split,
    split_rows,
)


def make() -> tuple[Dataset, list[DatasetEvent]]:
    ds = Dataset([Example("a", "1"), Example("b", "2")])
    events: list[DatasetEvent] = []
    ds.subscribe(events.append)
    return ds, events


def test_insert_remove_set_emit_events() -> None:
    ds, events = make()
    ds.insert(1, [Example("x", "y"), Example("z", "w")])
    assert [r.prompt for r in ds] == ["a", "x", "z", "b"]
    removed = ds.remove(1, 2)
    assert [r.prompt for r in removed] == ["x", "z"]
    old = ds.set_field(0, "completion", "one")
    assert old == "1" and ds[0].completion == "one"
    ds.set_field(0, "completion", "one")  # no change, no event
    assert events == [RowsInserted(1, 2), RowsRemoved(1, 2), RowsChanged(0, 1, "completion")]


def test_unsubscribe_and_copy_is_independent() -> None:
    ds = Dataset([Example("a", "1"), Example("b", "2")])
    events: list[DatasetEvent] = []
    unsubscribe = ds.subscribe(events.append)
    snapshot = ds.copy()
    ds.set_field(0, "prompt", "changed")
    assert snapshot[0].prompt == "a"
    snapshot.append(Example("only", "in the copy"))  # the copy has no listeners: nothing reaches ours
    assert events == [RowsChanged(0, 1, "prompt")]
    unsubscribe()
    ds.set_field(1, "prompt", "changed too")
    ds.append(Example("c", "3"))
    ds.remove(0)
    ds.reset([])
    assert events == [RowsChanged(0, 1, "prompt")]  # no event after unsubscribing
    unsubscribe()  # a second call is harmless
    assert [r.prompt for r in snapshot] == ["a", "b", "only"]


def test_bad_field_and_split_rejected() -> None:
    ds, _ = make()
    with pytest.raises(KeyError):
        ds.set_field(0, "answer", "x")
    with pytest.raises(ValueError, match="split"):
        ds.set_field(0, "split", "test")


def test_problems_empty_duplicate_and_too_long() -> None:
    ds = Dataset([Example("q", "a"), Example(" ", "a"), Example("q", "a "), Example("long " * 50, "x")])
    found = {(p.row, p.kind) for p in ds.problems(count_tokens=lambda e: len(e.prompt.split()), max_tokens=10)}
    assert found == {(1, "empty"), (2, "duplicate"), (3, "too_long")}
    msg = next(p.message for p in ds.problems() if p.kind == "duplicate")
    assert "row 3" in msg and "row 1" in msg


def test_set_fields_changes_many_cells_with_one_event_and_returns_old_values() -> None:
    ds = Dataset([Example(f"p{i}", f"c{i}") for i in range(5)])
    events: list[DatasetEvent] = []
    ds.subscribe(events.append)
    old = ds.set_fields([(1, "prompt", "P1"), (3, "completion", "C3")])
    assert [r.prompt for r in ds] == ["p0", "P1", "p2", "p3", "p4"]
    assert ds[3].completion == "C3"
    assert old == [(1, "prompt", "p1"), (3, "completion", "c3")]
    assert events == [RowsChanged(1, 3, None)]
    ds.set_fields(old)
    assert ds[1].prompt == "p1" and ds[3].completion == "c3"
    ds.set_fields([(0, "split", "validation")])
    assert ds[0].split == "validation"
    with pytest.raises(KeyError):
        ds.set_fields([(0, "tokens", "3")])
    with pytest.raises(ValueError, match="split must be one of"):
        ds.set_fields([(0, "split", "test")])


def test_draw_split_is_seeded_by_text_and_respects_pinned_rows() -> None:
    rows = [Example(f"question {i}", f"answer {i}") for i in range(400)]
    train, val = split_rows(rows, 0.25, seed=7)
    assert 60 < len(val) < 140 and len(train) + len(val) == 400
    # Same rows in another order: the same rows are drawn (the draw follows the text, not the position).
    _, val_shuffled = split_rows(list(reversed(rows)), 0.25, seed=7)
    assert {r.prompt for r in val_shuffled} == {r.prompt for r in val}
    _, val_other_seed = split_rows(rows, 0.25, seed=8)
    assert {r.prompt for r in val_other_seed} != {r.prompt for r in val}
    pinned = Example("pinned", "x", split="validation")
    assert draw_split(pinned, 0.0, 7) == "validation"
    assert draw_split(Example("a", "b", split="train"), 1.0, 7) == "train"
    assert draw_split(Example("a", "b"), 0.0, 7) == "train"
