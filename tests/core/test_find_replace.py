"""Find and replace in the core: matching options, replacement text, counts, preview segments."""

from __future__ import annotations

from pathlib import Path

import pytest

from loradesk.core.conversation import ToolCall, Turn
from loradesk.core.dataset import Dataset, Example, compact_row
from loradesk.core.find_replace import (
    NEW,
    OLD,
    TEXT,
    FindSpec,
    apply_cells,
    find_matches,
    preview_segments,
    search_records,
)
from loradesk.core.formats import read_dataset

ROWS = [
    Example("Who is Tamsin?", "Tamsin is a sky-cartographer. TAMSIN!", system="You know tamsin."),
    Example("Where does she live?", "In Vaelmoor."),
    Example("Who are the Tamsins?", "Tamsin's cousins, the Tamsins."),
]


def after(spec: FindSpec, text: str) -> str:
    result = find_matches([Example(text, "")], spec)
    return result.cells[0].after if result.cells else text


def test_plain_search_is_case_insensitive_by_default_and_counts_every_occurrence() -> None:
    result = find_matches(ROWS, FindSpec("tamsin", "Mira"))
    assert result.matches == 7
    assert result.rows == [0, 2]
    assert [(c.row, c.field, c.count) for c in result.cells] == [
        (0, "prompt", 1), (0, "completion", 2), (0, "system", 1), (2, "prompt", 1), (2, "completion", 2)]
    assert result.cells[1].before == "Tamsin is a sky-cartographer. TAMSIN!"
    assert result.cells[1].after == "Mira is a sky-cartographer. Mira!"
    assert result.cell_count == 5 and result.more == 0


def test_match_case_finds_only_the_exact_capitalisation() -> None:
    result = find_matches(ROWS, FindSpec("Tamsin", "Mira", case_sensitive=True))
    assert result.matches == 5  # not "TAMSIN" nor "tamsin"
    assert "TAMSIN" in result.cells[1].after


def test_whole_words_skip_longer_words_but_not_possessives() -> None:
    result = find_matches(ROWS, FindSpec("Tamsin", "Mira", whole_word=True))
    assert result.matches == 5
    assert result.changes()[-1] == (2, "completion", "Mira's cousins, the Tamsins.")
    assert (2, "prompt") not in {(c.row, c.field) for c in result.cells}  # "the Tamsins?" only
    # words that start or end with punctuation work too
    assert after(FindSpec("Mr.", "Dr.", whole_word=True), "Mr. Smith, Mr.X, aMr.") == "Dr. Smith, Mr.X, aMr."


def test_regex_with_numbered_and_named_groups() -> None:
    spec = FindSpec(r"(\w+) is (?P<what>a [\w-]+)", r"\g<what> called \1", regex=True)
    assert after(spec, "Tamsin is a sky-cartographer.") == "a sky-cartographer called Tamsin."
    # ^ and $ match at every line of a multi-line cell
    assert after(FindSpec("^", "> ", regex=True), "one\ntwo") == "> one\n> two"


def test_plain_mode_replacement_is_literal() -> None:
    assert after(FindSpec("a.b", r"\1\n"), "a.b axb") == r"\1\n axb"
    assert after(FindSpec("(x)", "[y]"), "f(x) = (x)") == "f[y] = [y]"


@pytest.mark.parametrize(("pattern", "message"), [
    ("Tams(in", "Invalid pattern at position 5: missing ), unterminated subpattern"),
    ("[abc", "Invalid pattern at position 1: unterminated character set"),
    ("a**", "Invalid pattern at position 3: multiple repeat"),
])
def test_a_bad_regex_says_what_and_where(pattern: str, message: str) -> None:
    with pytest.raises(ValueError, match="^Invalid pattern") as info:
        FindSpec(pattern, regex=True).compile()
    assert str(info.value) == message
    with pytest.raises(ValueError):
        find_matches(ROWS, FindSpec(pattern, regex=True))
    assert find_matches([Example(pattern, "")], FindSpec(pattern)).matches == 1  # as plain text it is fine


def test_a_bad_group_reference_in_the_replacement_is_reported() -> None:
    with pytest.raises(ValueError, match=r"^Invalid replacement at position 2: invalid group reference 2"):
        FindSpec("(Tamsin)", r"\2", regex=True).compile()
    with pytest.raises(ValueError, match="^Invalid replacement: unknown group name 'who'"):
        FindSpec("(Tamsin)", r"\g<who>", regex=True).compile()


@pytest.mark.parametrize(("found", "expected"), [
    ("Tamsin", "Mira"), ("TAMSIN", "MIRA"), ("tamsin", "mira"), ("tAmSiN", "mira"),
])
def test_keep_capitalisation(found: str, expected: str) -> None:
    assert after(FindSpec("tamsin", "mira", preserve_case=True), f"Hi {found}!") == f"Hi {expected}!"


def test_keep_capitalisation_with_several_words_and_regex_groups() -> None:
    spec = FindSpec("tamsin quillfeather", "mira stone", preserve_case=True)
    assert after(spec, "Tamsin Quillfeather; TAMSIN QUILLFEATHER; tamsin quillfeather") == \
        "Mira Stone; MIRA STONE; mira stone"
    # a capitalised match keeps the replacement's own inner capitals
    assert after(FindSpec("smith", "mcKay", preserve_case=True), "Smith and smith") == "McKay and mckay"
    assert after(FindSpec(r"(\w+)son", r"\1sen", regex=True, preserve_case=True), "JOHNSON Johnson") == \
        "JOHNSEN Johnsen"


def test_fields_restrict_where_it_looks() -> None:
    result = find_matches(ROWS, FindSpec("tamsin", "Mira", fields=("system",)))
    assert [(c.row, c.field) for c in result.cells] == [(0, "system")]
    assert result.changes() == [(0, "system", "You know Mira.")]
    assert find_matches(ROWS, FindSpec("tamsin", fields=())).matches == 0
    with pytest.raises(ValueError, match="Unknown field 'split'"):
        find_matches(ROWS, FindSpec("auto", fields=("split",)))


def test_empty_find_text_matches_nothing() -> None:
    result = find_matches(ROWS, FindSpec("", "x"))
    assert (result.matches, result.cells, result.rows, result.changes()) == (0, [], [], [])
    assert find_matches(ROWS, FindSpec("", "x", regex=True)).matches == 0


def test_replacing_with_the_same_text_changes_nothing() -> None:
    result = find_matches(ROWS, FindSpec("Tamsin", "Tamsin", case_sensitive=True))
    assert result.matches == 5
    assert result.changes() == [] and result.change_count == 0
    # case-insensitive: only the cells whose text differs change
    result = find_matches(ROWS, FindSpec("tamsin", "Tamsin"))
    assert [(r, f) for r, f, _ in result.changes()] == [(0, "completion"), (0, "system")]


def test_changes_apply_to_the_dataset_and_a_second_search_finds_nothing(sample_path: Path) -> None:
    dataset = Dataset(read_dataset(sample_path))
    spec = FindSpec("Tamsin", "Mira", whole_word=True, case_sensitive=True)
    result = find_matches(dataset.rows, spec)
    assert result.matches > 100 and len(result.rows) > 50
    dataset.set_fields(result.changes())
    assert find_matches(dataset.rows, spec).matches == 0
    assert find_matches(dataset.rows, FindSpec("Mira", case_sensitive=True, whole_word=True)).matches == result.matches


def test_preview_limit_keeps_the_counts_and_all_changes() -> None:
    rows = [Example(f"Tamsin {i}", "Tamsin") for i in range(50)]
    result = find_matches(rows, FindSpec("Tamsin", "Mira"), limit_preview=7)
    assert len(result.cells) == 7 and result.cell_count == 100 and result.more == 93
    assert result.matches == 100 and len(result.rows) == 50 and len(result.changes()) == 100


def test_progress_is_reported_on_big_inputs_and_can_stop_the_search() -> None:
    rows = [Example("Tamsin", "x")] * 12_000
    seen: list[float | None] = []
    find_matches(rows, FindSpec("tamsin"), progress=lambda _text, fraction: seen.append(fraction))
    assert seen and all(0 < f < 1 for f in seen if f is not None)

    class Stop(Exception):
        pass

    def stop(_text: str, _fraction: float | None) -> None:
        raise Stop

    with pytest.raises(Stop):
        find_matches(rows, FindSpec("tamsin"), progress=stop)


def test_preview_segments_mark_old_and_new_text() -> None:
    spec = FindSpec("tamsin", "Mira")
    assert preview_segments("Who is Tamsin? tamsin.", spec) == [
        (TEXT, "Who is "), (OLD, "Tamsin"), (NEW, "Mira"), (TEXT, "? "), (OLD, "tamsin"), (NEW, "Mira"), (TEXT, ".")]
    # a replacement equal to the match shows the match only
    assert preview_segments("a Tamsin", FindSpec("Tamsin", "Tamsin")) == [(TEXT, "a "), (OLD, "Tamsin")]
    # removing: the old text with no new text
    assert preview_segments("a Tamsin b", FindSpec("Tamsin ")) == [(TEXT, "a "), (OLD, "Tamsin "), (TEXT, "b")]


def test_preview_of_a_long_text_shows_the_context_around_the_first_match() -> None:
    text = "word " * 200 + "Tamsin drew the map. " + "more " * 200
    segments = preview_segments(text, FindSpec("Tamsin", "Mira"), context=30, max_chars=120)
    shown = "".join(piece for _, piece in segments)
    assert shown.startswith("…word ") and shown.endswith("…")
    assert (OLD, "Tamsin") in segments and (NEW, "Mira") in segments
    before = segments[0][1]
    assert 30 <= len(before) - 1 <= 50  # about `context` characters, cut at a word
    assert len(shown) < 160


def test_search_records_answers_as_find_matches_with_the_previews() -> None:
    spec = FindSpec("tamsin", "Mira", preserve_case=True)
    (result, previews), changes = search_records([(r.system, r.prompt, r.completion) for r in ROWS], spec, 2)
    expected = find_matches(ROWS, spec, 2)
    assert result.changes() == [] and changes == expected.changes()  # handed apart: the long part
    assert result.with_changes(changes) == expected and len(result.cells) == 2 and result.matches > 2
    assert previews == [preview_segments(cell.before, spec) for cell in expected.cells]


def weather_chat() -> Example:
    return Example.conversation([
        Turn("user", "Is it raining in Oslo?"),
        Turn("assistant", "", (ToolCall("get_weather", '{"city": "Oslo"}', "c1"),)),
        Turn("tool", '{"sky": "rain over Oslo"}', name="get_weather", tool_call_id="c1"),
        Turn("user", "And in Bergen?"),
        Turn("assistant", "Oslo has rain; Bergen too."),
    ], system="You report the weather in Oslo.", split="validation", tools='[{"type":"function"}]')


def test_every_turn_of_a_conversation_is_searched_and_replaced_as_a_new_row() -> None:
    rows = [Example("Oslo?", "Oslo."), weather_chat()]
    result = find_matches(rows, FindSpec("oslo", "Tromsø", preserve_case=True))
    assert result.rows == [0, 1] and result.matches == 2 + 5
    places = [(c.row, c.where) for c in result.cells]
    assert places == [(0, "Prompt"), (0, "Completion"), (1, "System"), (1, "Turn 1 (user)"),
                      (1, "Turn 2 call 1 (assistant)"), (1, "Turn 3 (tool)"), (1, "Turn 5 (assistant)")]
    assert result.changes() == [(0, "prompt", "Tromsø?"), (0, "completion", "Tromsø.")]
    assert result.change_count == 2 + 5
    [(index, new)] = result.row_changes()
    assert index == 1 and new.is_conversation and (new.split, new.tools) == ("validation", rows[1].tools)
    assert new.system == "You report the weather in Tromsø."
    assert [t.content for t in new.turns] == ["Is it raining in Tromsø?", "", '{"sky": "rain over Tromsø"}',
                                              "And in Bergen?", "Tromsø has rain; Bergen too."]
    assert new.turns[1].tool_calls == (ToolCall("get_weather", '{"city": "Tromsø"}', "c1"),)
    assert (new.prompt, new.completion) == ("Is it raining in Tromsø?", "Tromsø has rain; Bergen too.")
    assert (new.turns[2].name, new.turns[2].tool_call_id) == ("get_weather", "c1")  # the rest is kept


def test_prompt_means_user_and_tool_turns_completion_means_assistant_turns() -> None:
    rows = [weather_chat()]
    user_side = find_matches(rows, FindSpec("oslo", fields=("prompt",)))
    assert [c.where for c in user_side.cells] == ["Turn 1 (user)", "Turn 3 (tool)"]
    answers = find_matches(rows, FindSpec("oslo", fields=("completion",)))
    assert [c.where for c in answers.cells] == ["Turn 2 call 1 (assistant)", "Turn 5 (assistant)"]
    # a word only in a middle turn is found there
    middle = find_matches(rows, FindSpec("bergen", "Molde"))
    assert [c.where for c in middle.cells] == ["Turn 4 (user)", "Turn 5 (assistant)"]


def test_a_replacement_never_breaks_the_json_of_call_arguments() -> None:
    result = find_matches([weather_chat()], FindSpec('"', "'", fields=("completion",)))
    [cell] = [c for c in result.cells if c.call is not None]
    assert cell.count == 4 and cell.after == cell.before  # listed, but left as it is
    assert result.change_count == 0 and result.row_changes() == []


def test_apply_cells_replaces_only_the_chosen_places() -> None:
    row = weather_chat()
    result = find_matches([row], FindSpec("oslo", "Tromsø"))
    chosen = [c for c in result.cells if c.where in ("System", "Turn 2 call 1 (assistant)")]
    new = apply_cells(row, chosen)
    assert new.system == "You report the weather in Tromsø."
    assert new.turns[1].tool_calls[0].arguments == '{"city": "Tromsø"}'
    assert new.turns[0].content == "Is it raining in Oslo?" and new.split == "validation"


def test_search_records_carries_conversations_to_the_worker_and_back() -> None:
    rows = [*ROWS, weather_chat()]
    spec = FindSpec("oslo", "Tromsø")
    (result, previews), changes = search_records([compact_row(r) for r in rows], spec, 50)
    expected = find_matches(rows, spec, 50)
    assert result.with_changes(changes) == expected and expected.row_changes()
    assert result.row_changes() == expected.row_changes() and len(previews) == len(expected.cells)
