"""The one wording helper: counts with the right noun (and verb), and short reprs for one-line messages."""

from __future__ import annotations

from loradesk.core.wording import brief, plural, plural_word


def test_plural_agrees_with_the_count() -> None:
    assert plural(1, "row") == "1 row"
    assert plural(0, "row") == "0 rows"
    assert plural(1234, "row") == "1,234 rows"
    assert plural(2, "entry", "entries") == "2 entries"
    assert plural(1, "row has", "rows have") == "1 row has"
    assert plural(3, "row has", "rows have") == "3 rows have"


def test_plural_word_is_the_word_alone() -> None:
    assert plural_word(1, "holds", "hold") == "holds"
    assert plural_word(2, "holds", "hold") == "hold"
    assert plural_word(2.5, "epoch") == "epochs"
    assert plural_word(1, "epoch") == "epoch"


def test_brief_keeps_long_values_short() -> None:
    assert len(brief("x" * 10_000)) < 80
    assert brief(10**100) == "a number of 101 digits"
    assert brief([1, 2]) == "[1, 2]"
