"""Each row's token count and the over-long rows, kept by events, against a full rescan after random edits."""

from __future__ import annotations

import random

from pytestqt.qtbot import QtBot

from loradesk.core.dataset import Dataset, Example
from loradesk.ui import row_lengths
from loradesk.ui.dataset_model import DatasetTableModel, token_key
from loradesk.ui.row_lengths import UNKNOWN, RowLengths

WORDS = ["lantern", "harbour", "owl", "map", "", "storm"]


def rescan(dataset: Dataset, tokens: dict, limit: int | None) -> tuple[list[int], list[int]]:
    """What a pass over every row says: each row's count, and the rows over ``limit``."""
    counts = [tokens.get(token_key(r), UNKNOWN) for r in dataset]
    return counts, [i for i, n in enumerate(counts) if limit is not None and n > limit]


def random_row(rng: random.Random) -> Example:
    return Example(" ".join(rng.choices(WORDS, k=2)), " ".join(rng.choices(WORDS, k=2)),
                   split=rng.choice(["auto", "train"]))


def random_edit(rng: random.Random, dataset: Dataset) -> None:
    roll = rng.random()
    if roll < 0.4 and len(dataset):
        field = rng.choice(["prompt", "completion", "system", "split"])
        value = rng.choice(["auto", "validation"]) if field == "split" else random_row(rng).prompt
        dataset.set_field(rng.randrange(len(dataset)), field, value)
    elif roll < 0.6:
        dataset.insert(rng.randrange(len(dataset) + 1), [random_row(rng) for _ in range(rng.randint(1, 4))])
    elif roll < 0.8 and len(dataset):
        dataset.remove(rng.randrange(len(dataset)), rng.randint(1, 3))
    elif roll < 0.85:
        dataset.reset([random_row(rng) for _ in range(rng.randint(0, 30))])
    else:
        changes = [(i, "completion", random_row(rng).completion) for i in range(len(dataset)) if rng.random() < 0.3]
        dataset.set_fields(changes)


def test_counts_follow_every_change_and_agree_with_a_rescan() -> None:
    rng = random.Random(7)
    dataset = Dataset([random_row(rng) for _ in range(40)])
    tokens: dict = {}
    lengths = RowLengths(dataset, tokens)
    dataset.subscribe(lambda event: lengths.apply(event))
    limit: int | None = None
    for step in range(600):
        roll = rng.random()
        if roll < 0.6:
            random_edit(rng, dataset)
        elif roll < 0.75:  # new counts arrive for some rows (a count never changes for the same texts)
            tokens.update({token_key(r): len(token_key(r)[1] + token_key(r)[2]) for r in dataset
                           if rng.random() < 0.5})
            lengths.refill()
        elif roll < 0.8:  # another model: every count is forgotten
            tokens.clear()
            lengths.refill()
        elif roll < 0.9:
            limit = rng.choice([None, 5, 10, 15])
            lengths.set_limit(limit)
        else:
            lengths.fill(rng.randint(1, 12))  # a slice of a refill, between edits
        counts, too_long = rescan(dataset, tokens, limit)
        got = lengths.counts().tolist()
        assert len(got) == len(dataset), step
        if lengths.filling():  # rows not read yet may not know their count yet, but never a wrong one
            assert all(n in (UNKNOWN, want) for n, want in zip(got, counts, strict=True)), step
            continue
        assert got == counts, step
        assert lengths.too_long().tolist() == too_long, step
        assert lengths.known().tolist() == [n for n in counts if n != UNKNOWN], step
        assert all(lengths.is_too_long(i) == (i in too_long) for i in range(len(dataset))), step
    while not lengths.fill(5):
        pass
    assert lengths.counts().tolist() == rescan(dataset, tokens, limit)[0]


def test_rows_between_and_count() -> None:
    dataset = Dataset([Example("a", "b"), Example("c", "d"), Example("e", "f")])
    tokens = {token_key(dataset[0]): 4, token_key(dataset[2]): 9}
    lengths = RowLengths(dataset, tokens)
    assert lengths.filling() is False and lengths.counts().tolist() == [UNKNOWN] * 3  # read on refill only
    lengths.refill()
    assert lengths.fill(2) is False and lengths.fill(2) is True
    assert lengths.rows_between(3, 9) == [0, 2] and lengths.rows_between(5, 8) == []
    assert (lengths.count(0), lengths.count(1)) == (4, None)


def test_the_table_reads_new_counts_a_slice_at_a_time_and_then_agrees_with_a_rescan(qtbot: QtBot,
                                                                                      monkeypatch) -> None:
    monkeypatch.setattr(row_lengths, "FILL_SLICE", 7)
    rng = random.Random(11)
    dataset = Dataset([random_row(rng) for _ in range(50)])
    model = DatasetTableModel(dataset)
    model.set_max_length(10)
    tokens = {token_key(r): len(r.prompt + r.completion) for r in dataset}
    with qtbot.waitSignal(model.lengths_changed):
        model.set_token_counts(tokens)
        assert model._lengths.filling()  # only the first slice was read at once: the rest follows on a timer
    for step in range(120):
        random_edit(rng, dataset)
        if rng.random() < 0.2:
            new = {token_key(r): len(r.prompt + r.completion) for r in dataset}
            tokens.update(new)
            model.set_token_counts(new)
        qtbot.waitUntil(lambda: not model._lengths.filling())
        _, too_long = rescan(dataset, tokens, 10)
        assert model.too_long_rows() == too_long, step
        problems = sorted(set(too_long) | {i for i in range(len(dataset)) if model._index.has_problem(i)})
        assert model.problem_rows() == problems, step
        assert model.problem_row_count() == len(problems), step
        assert [model.has_problem(i) for i in range(len(dataset))] == [i in problems for i in range(len(dataset))]
