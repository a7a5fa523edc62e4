"""``core.readiness.can_train``: the one answer to "can this config train on these rows, and why not"."""

from __future__ import annotations

import pytest

from loradesk.core.config import ConfigError, RunConfig
from loradesk.core.dataset import Example
from loradesk.core.readiness import DataNotReady, can_train


def rows(*pairs: tuple[str, str]) -> list[Example]:
    return [Example(p, c) for p, c in pairs]


def test_good_settings_and_rows_can_train() -> None:
    answer = can_train(RunConfig(), rows(("Who is Zorblax?", "A wizard.")))
    assert answer.ok and bool(answer) and answer.reason() == ""
    answer.raise_for_problems()  # nothing to raise


def test_bad_settings_name_every_field() -> None:
    config = RunConfig()
    config.lora.r = 0
    config.training.learning_rate = -1
    answer = can_train(config, rows(("q", "a")))
    assert not answer.ok
    paths = [path for path, _ in answer.settings]
    assert "lora.r" in paths and "training.learning_rate" in paths
    assert answer.reason().startswith("lora.r: ")
    with pytest.raises(ConfigError):
        answer.raise_for_problems()


def test_an_empty_dataset_cannot_train() -> None:
    answer = can_train(RunConfig(), [])
    assert answer.data == "The dataset is empty: add some prompt/completion rows first"
    with pytest.raises(DataNotReady, match="empty"):
        answer.raise_for_problems()


def test_rows_missing_a_side_are_named_and_settings_come_first() -> None:
    data = rows(("q", "a"), ("", "a"), ("q", "  "), ("q", "a"))
    assert can_train(RunConfig(), data).data.startswith("2 rows have an empty prompt or completion (row 2, 3)")
    config = RunConfig()
    config.lora.r = 0
    answer = can_train(config, data)
    assert answer.reason().startswith("lora.r")  # the settings are named first
    assert answer.data  # and the data problem is still known


def test_many_bad_rows_are_cut_after_ten() -> None:
    data = rows(*[("", "a")] * 12)
    assert "(row 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 …)" in can_train(RunConfig(), data).data


def test_settings_alone_when_rows_are_not_given() -> None:
    assert can_train(RunConfig(), None).ok
