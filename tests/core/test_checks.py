"""Dataset checks: each finds exactly its rows, and each fix, applied to a real Dataset, gives the tidy rows."""

from __future__ import annotations

import random

import pytest

from loradesk.core.checks import (
    RELEASE_CHUNK,
    CheckResult,
    Fix,
    _release,
    check_records,
    normalise,
    run_checks,
    tidy_whitespace,
)
from loradesk.core.dataset import Dataset, Example


def crafted() -> list[Example]:
    return [
        Example("Who is Tamsin?", "A sky-cartographer."),        # 0 clean
        Example("", "Nothing was asked"),                         # 1 empty prompt
        Example("Who is Tamsin?", "A sky-cartographer."),        # 2 exact copy of 0
        Example("who is TAMSIN", "a sky-cartographer"),           # 3 near copy of 0
        Example("Where does she live?", "In Vaelmoor.  "),        # 4 trailing spaces
        Example("Line one\r\nLine two", "Para one.\n\nPara two."),  # 5 Windows line break (paragraph is fine)
        Example("Say hello", "say hello."),                       # 6 echo
        Example("What is the owl called?", "   "),                # 7 blank completion
        Example("Name her  owl", "Bramble", system="\tBe brief"),  # 8 double space, tab in system
        Example("What does she map?", "Sky currents and islands."),  # 9 clean
    ]


def by_key(results: list[CheckResult]) -> dict[str, CheckResult]:
    return {r.key: r for r in results}


def apply(dataset: Dataset, fix: Fix) -> None:
    """What the UI does with a fix, on the core Dataset."""
    if fix.changes:
        dataset.set_fields(fix.changes)
    for row in sorted(fix.remove_rows, reverse=True):
        dataset.remove(row)


def test_each_check_finds_exactly_its_rows() -> None:
    results = by_key(run_checks(crafted()))
    assert set(results) == {"empty", "duplicate", "near_duplicate", "echo", "whitespace"}
    assert results["empty"].rows == (1, 7)
    assert results["empty"].notes == ("empty prompt", "empty completion")
    assert results["duplicate"].rows == (2,)
    assert results["near_duplicate"].rows == (3,)
    assert results["echo"].rows == (6,)
    assert results["whitespace"].rows == (4, 5, 8)  # not the blank completion of row 8: that one is "empty"
    assert results["empty"].severity == "error"
    assert all(r.fixes for r in results.values())


def test_results_come_in_severity_order_and_only_when_something_is_found() -> None:
    order = [r.severity for r in run_checks(crafted() + [Example(f"q{i}", "same") for i in range(3)])]
    assert order == sorted(order, key=("error", "warning", "info").index)
    assert order[0] == "error" and order[-1] == "info"
    assert run_checks([Example("Who?", "Her."), Example("Where?", "There.")]) == []
    assert run_checks([]) == []


def test_messages_name_rows_one_based() -> None:
    results = by_key(run_checks(crafted()))
    assert "rows 2 and 8" in results["empty"].message.lower()
    assert "row 3 = row 1" in results["duplicate"].message
    assert "row 4 ≈ row 1" in results["near_duplicate"].message  # says which row each near copy resembles
    assert results["near_duplicate"].notes == ("like row 1",)
    assert "row 7" in results["echo"].message


def test_near_duplicates_exclude_exact_copies_and_keep_the_first() -> None:
    rows = [Example("Hello there", "Hi!"), Example("hello  THERE.", "hi"), Example("Hello there", "Hi!"),
            Example("Hello there", "Hi! Welcome")]
    results = by_key(run_checks(rows))
    assert results["duplicate"].rows == (2,)
    assert results["near_duplicate"].rows == (1,)  # row 3 differs in words, not only in form
    assert normalise("  Hello,   WORLD!?  ") == "hello, world"
    ds = Dataset(rows)
    apply(ds, results["near_duplicate"].fixes[0])
    apply(ds, by_key(run_checks(ds.rows))["duplicate"].fixes[0])
    assert [(r.prompt, r.completion) for r in ds] == [("Hello there", "Hi!"), ("Hello there", "Hi! Welcome")]


def test_system_prompt_is_part_of_the_duplicate_key() -> None:
    rows = [Example("Q", "A", system="Be brief"), Example("Q", "A", system="Be verbose"), Example("Q", "A")]
    assert run_checks(rows) == []


@pytest.mark.parametrize(("text", "tidy"), [
    ("  hi  ", "hi"),
    ("a  b", "a b"),
    ("a\r\nb\rc", "a\nb\nc"),
    ("a\tb", "a b"),
    ("x\u00a0y\u200b", "x y"),
    ("Para one.\n\n\n\nPara two. \nLast", "Para one.\n\nPara two.\nLast"),
    ("def f():\n    return  1\n", "def f():\n    return 1"),  # indentation stays, inner runs collapse
])
def test_tidy_whitespace(text: str, tidy: str) -> None:
    new, kinds = tidy_whitespace(text)
    assert new == tidy and kinds
    assert tidy_whitespace(new) == (new, [])  # tidy text stays as it is


def test_tidy_is_stable_on_random_text() -> None:
    rng = random.Random(7)
    alphabet = ["a", "b", " ", "  ", "\n", "\t", "\r\n", "\u00a0", ".", "\u200b"]
    for _ in range(2000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
        once, _ = tidy_whitespace(text)
        assert tidy_whitespace(once) == (once, [])
        assert once == once.strip() and "\r" not in once and "\n\n\n" not in once
        assert all("  " not in line.lstrip(" \t") and line == line.rstrip() for line in once.split("\n"))


def test_whitespace_fix_tidies_and_leaves_clean_rows_untouched() -> None:
    rows = crafted()
    ds = Dataset(rows)
    fix = by_key(run_checks(ds.rows))["whitespace"].fixes[0]
    assert fix.label == "Tidy whitespace in 3 rows"
    assert {(r, f) for r, f, _ in fix.changes} == {(4, "completion"), (5, "prompt"), (8, "prompt"), (8, "system")}
    before = [(r.prompt, r.completion, r.system) for r in ds]
    apply(ds, fix)
    assert ds[4].completion == "In Vaelmoor."
    assert ds[5].prompt == "Line one\nLine two" and ds[5].completion == "Para one.\n\nPara two."
    assert (ds[8].prompt, ds[8].system) == ("Name her owl", "Be brief")
    untouched = [i for i in range(len(ds)) if i not in (4, 5, 8)]
    assert all((ds[i].prompt, ds[i].completion, ds[i].system) == before[i] for i in untouched)
    assert "whitespace" not in by_key(run_checks(ds.rows))


def test_delete_fixes_remove_exactly_their_rows() -> None:
    rows = crafted()
    results = by_key(run_checks(rows))
    for key, gone in (("empty", {1, 7}), ("duplicate", {2}), ("near_duplicate", {3}), ("echo", {6})):
        ds = Dataset(crafted())
        apply(ds, results[key].fixes[0])
        assert [(r.prompt, r.completion) for r in ds] == [(r.prompt, r.completion) for i, r in enumerate(rows)
                                                           if i not in gone]
        assert key not in by_key(run_checks(ds.rows))
    assert results["duplicate"].fixes[0].label == "Delete 1 duplicate row"
    assert results["empty"].fixes[0].label == "Delete 2 empty rows"


def test_too_long_uses_the_token_counts() -> None:
    rows = [Example(f"question {i}", "answer") for i in range(5)]
    counts = {"question 0": 100, "question 1": 300, "question 2": 257, "question 3": None, "question 4": 256}
    results = by_key(run_checks(rows, lambda e: counts[e.prompt], max_length=256))
    long = results["too_long"]
    assert long.rows == (1, 2)  # 256 fits; an unknown count is not reported
    assert "45 tokens" in long.message  # 44 + 1 cut in total
    assert long.notes == ("300 tokens, 44 cut", "257 tokens, 1 cut")
    raise_fix, delete_fix = long.fixes
    assert raise_fix.max_length == 320 and raise_fix.label == "Raise max length to 320"
    assert delete_fix.remove_rows == (1, 2)
    assert "too_long" not in by_key(run_checks(rows, lambda e: counts[e.prompt], max_length=320))
    assert "too_long" not in by_key(run_checks(rows))  # no counts: no check


def test_same_answer_threshold() -> None:
    two = [Example("Is it raining?", "I don't know."), Example("Will it snow?", "I don't know.")]
    others = [Example(f"What is {i} + {i}?", str(2 * i)) for i in range(20)]
    assert "same_answer" not in by_key(run_checks(two + others))  # 2 of 22 rows: fine
    three = [*two, Example("Who won?", "i don't know")]
    shared = by_key(run_checks(three + others))["same_answer"]
    assert shared.severity == "info" and shared.rows == (0, 1, 2)
    assert shared.message.startswith("3 prompts share the answer 'I don't know.'")
    assert "fine for a fixed reply" in shared.message
    # two prompts but a fifth of all rows
    small = [*two, *others[:6]]
    assert by_key(run_checks(small))["same_answer"].rows == (0, 1)
    # the same prompt asked three times is a duplicate, not a shared answer
    assert "same_answer" not in by_key(run_checks([two[0]] * 3 + others))


def test_keep_one_per_answer_deletes_all_but_the_first_of_each_group() -> None:
    rows = [Example(f"Weather {i}?", "I don't know.") for i in range(4)]
    rows += [Example(f"Greeting {i}", "Hello!") for i in range(3)]
    rows += [Example(f"What is {i} + {i}?", str(2 * i)) for i in range(30)]
    result = by_key(run_checks(rows))["same_answer"]
    assert result.rows == tuple(range(7))
    assert "2 answers" in result.message and "'I don't know.' (4 prompts)" in result.message
    fix = result.fixes[0]
    assert fix.remove_rows == (1, 2, 3, 5, 6) and "keeping one per answer" in fix.label
    assert fix.description.startswith("Optional")
    ds = Dataset(rows)
    apply(ds, fix)
    assert [r.prompt for r in ds][:3] == ["Weather 0?", "Greeting 0", "What is 0 + 0?"]


def test_shared_answers_match_grouping_rows_by_answer() -> None:
    """Random small datasets (many ties) against a plain grouping of the rows by their normalised answer."""
    rng = random.Random(11)
    prompts = ["Rain?", "rain", "Snow?", "Wind?", "Sun?", "Fog?", ""]
    answers = ["I don't know.", "i don't know", "Yes.", "No!", "Maybe", ""]
    for _ in range(300):
        rows = [Example(rng.choice(prompts), rng.choice(answers)) for _ in range(rng.randint(0, 25))]
        groups: dict[str, list[int]] = {}
        for i, row in enumerate(rows):
            if normalise(row.completion):
                groups.setdefault(normalise(row.completion), []).append(i)
        shared = []
        for members in groups.values():
            distinct = len({normalise(rows[i].prompt) for i in members})
            if distinct >= 3 or (distinct >= 2 and len(members) >= 0.2 * len(rows)):
                shared.append((members, distinct))
        result = by_key(run_checks(rows)).get("same_answer")
        if not shared:
            assert result is None
            continue
        assert result is not None
        top, distinct = min(shared, key=lambda g: (-g[1], g[0][0]))  # most prompts, then the earliest answer
        assert f"'{rows[top[0]].completion.strip()}'" in result.message and f"{distinct:,} prompts" in result.message
        assert result.rows == tuple(sorted(i for members, _ in shared for i in members))
        assert result.fixes[0].remove_rows == tuple(sorted(i for members, _ in shared for i in members[1:]))
        first = {i: members[0] for members, _ in shared for i in members}
        assert result.notes == tuple(f"'{rows[first[i]].completion.strip()}'" for i in result.rows)


def test_release_empties_containers_bigger_than_a_chunk() -> None:
    n = 2 * RELEASE_CHUNK + 7
    items, table, seen = [(i, str(i)) for i in range(n)], {(i, "k"): i for i in range(n)}, {(i, "s") for i in range(n)}
    kept = items[:10]
    _release(items, table, seen, [])
    assert items == [] and table == {} and seen == set()
    assert kept == [(i, str(i)) for i in range(10)]  # only the containers are emptied, not what they held


def test_fix_has_exactly_one_kind() -> None:
    with pytest.raises(ValueError):
        Fix("Nothing", "does nothing")
    with pytest.raises(ValueError):
        Fix("Both", "two kinds", remove_rows=(1,), max_length=64)


def test_a_hundred_thousand_rows() -> None:
    rows = [Example(f"Question number {i}?", f"Answer {i % 997}.") for i in range(100_000)]
    rows[5] = Example("Question number 0?", "Answer 0.")
    rows[99_999] = Example(" padded ", "Answer 1.")
    results = by_key(run_checks(rows, lambda e: len(e.prompt), max_length=19))
    assert results["duplicate"].rows == (5,)
    assert results["whitespace"].rows == (99_999,)
    assert results["too_long"].rows == tuple(range(100, 99_999))  # from "Question number 100?" (20 characters)
    assert len(results["same_answer"].rows) == 100_000  # 997 answers, each to about 100 prompts


def test_check_records_answers_as_run_checks_on_the_rows() -> None:
    rows = [*crafted(), Example("Tell me a long story", "word " * 40, system="Be kind.")]
    counts = [len((r.prompt + r.completion).split()) for r in rows]
    records = [(r.system, r.prompt, r.completion) for r in rows]
    expected = run_checks(rows, lambda r: len((r.prompt + r.completion).split()), 20)
    assert check_records(records, counts, 20) == expected
    assert any(r.key == "too_long" for r in expected)  # the counts were used
    assert check_records(records) == run_checks(rows)
