"""The observable dataset: mutations emit events, validation names rows."""

from __future__ import annotations

import pytest

from loradesk.core.dataset import Dataset, DatasetEvent, Example


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
    assert events == [DatasetEvent("inserted", 1, 2), DatasetEvent("removed", 1, 2),
                      DatasetEvent("changed", 0, 1, "completion")]


def test_unsubscribe_and_copy_is_independent() -> None:
    ds, events = make()
    snapshot = ds.copy()
    ds.set_field(0, "prompt", "changed")
    assert snapshot[0].prompt == "a"
    assert len(events) == 1


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
