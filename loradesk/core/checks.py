"""Dataset checks that explain what is wrong, list the rows, and offer a fix.

:func:`run_checks` looks at a snapshot of rows (it never edits them) and returns one
:class:`CheckResult` per problem found, most serious first. Each result carries :class:`Fix` objects:
plain data (rows to delete, cells to rewrite, or a new max length) that the UI turns into one undoable
step. Everything here is linear in the number of rows, so 100,000 rows take well under a second, and
no single step holds the GIL for long (no whole-dataset sorts, few long-lived containers, big temporaries
freed in slices), so the GUI thread stays responsive while the checks run on a worker thread.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from loradesk.core.conversation import signature
from loradesk.core.dataset import CompactRow, Example, expand_rows
from loradesk.core.tokenize import COUNT_LIMIT, LONE_SURROGATE, NO_ANSWER, count_text
from loradesk.core.wording import plural, plural_word

SEVERITIES = ("error", "warning", "info")
#: Check keys in the order they are shown within one severity.
CHECK_ORDER = ("control", "empty", "duplicate", "near_duplicate", "echo", "untrained", "too_long", "whitespace",
               "same_answer")
TEXT_FIELDS = ("prompt", "completion", "system")

#: An answer given to this many different prompts (or to this share of all rows) is reported.
SAME_ANSWER_MIN_PROMPTS = 3
SAME_ANSWER_MIN_SHARE = 0.2
#: "Raise max length" rounds the longest row up to a multiple of this.
LENGTH_STEP = 64
#: Rows, pairs or answers quoted in a message before "…".
QUOTE_LIMIT = 3
#: Big temporary containers are freed this many items at a time (see :func:`_release`).
RELEASE_CHUNK = 5_000

#: A row's token count (``None``: unknown): a function of the row, or a sequence parallel to the rows.
TokenCounts = Callable[[Example], "int | None"] | Sequence["int | None"]


@dataclass(frozen=True)
class Fix:
    """One way to fix a check: delete rows, rewrite cells (of pairs) and rows (conversations, whose turns
    change), or set a new max length (exactly one of the three).

    ``label`` is both the button text and the name of the undo step, e.g. "Delete 3 duplicate rows".
    """

    label: str
    description: str
    remove_rows: tuple[int, ...] = ()
    changes: tuple[tuple[int, str, str], ...] = ()  # (row, field, new value)
    max_length: int | None = None
    rows: tuple[tuple[int, Example], ...] = ()  # (row, new row): conversations

    def __post_init__(self) -> None:
        kinds = bool(self.remove_rows) + bool(self.changes or self.rows) + (self.max_length is not None)
        if kinds != 1:
            raise ValueError("a fix removes rows, changes cells or sets a max length: exactly one of them")


@dataclass(frozen=True)
class CheckResult:
    """What one check found. ``rows`` are 0-based; ``notes`` (if any) say per row what is wrong."""

    key: str
    title: str
    severity: str  # "error" | "warning" | "info"
    message: str
    rows: tuple[int, ...]
    fixes: tuple[Fix, ...]
    notes: tuple[str, ...] = ()  # parallel to ``rows``, e.g. "same as row 3"



def _rows_text(rows: Sequence[int]) -> str:
    """'row 3', 'rows 3 and 8', 'rows 3, 8, 9 and 2 more' (1-based)."""
    shown = [str(r + 1) for r in rows[:QUOTE_LIMIT]]
    if len(rows) == 1:
        return f"row {shown[0]}"
    if len(rows) <= QUOTE_LIMIT:
        return f"rows {', '.join(shown[:-1])} and {shown[-1]}"
    return f"rows {', '.join(shown)} and {len(rows) - QUOTE_LIMIT:,} more"


def _release(*containers: list | set | dict) -> None:
    """Free big temporary containers a slice at a time.

    Checks run on a worker thread while the GUI thread waits for the GIL. Freeing 100,000 objects at once
    (a dict of tuples going out of scope) is one C call that holds the GIL for 10-15 ms; freed in slices of
    :data:`RELEASE_CHUNK`, the GIL changes hands in between.
    """
    for container in containers:
        if isinstance(container, list):
            items = container
        else:  # the keys and values live on in ``items``, so clearing only drops references
            items = [*container, *container.values()] if isinstance(container, dict) else [*container]
            container.clear()
        while items:
            del items[-RELEASE_CHUNK:]


def _quote(text: str, limit: int = 60) -> str:
    text = " ".join(text.split())
    return f"'{text if len(text) <= limit else text[:limit - 1].rstrip() + '…'}'"


# --- normalising ---------------------------------------------------------------------------------------------
_END_PUNCTUATION = ".,;:!?…。！？、，" + " \t\n\r\f\v\xa0"


def normalise(text: str) -> str:
    """Text as a reader compares it: case-folded, whitespace collapsed, final punctuation dropped."""
    if not text:
        return ""
    return " ".join(text.casefold().split()).rstrip(_END_PUNCTUATION)


# --- whitespace ----------------------------------------------------------------------------------------------
#: Characters that look like a space (or nothing) but are not one; tabs are handled per line.
_WIDE_SPACES = {ord(c): " " for c in "\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009"
                "\u200a\u202f\u205f\u3000"}
_ZERO_WIDTH = {ord(c): None for c in "\u200b\u2060"}  # U+FEFF (a byte order mark) is a control character
_ODD_SPACES = _WIDE_SPACES | _ZERO_WIDTH
_ODD_CLASS = "".join(chr(c) for c in _ODD_SPACES)
_ODD_CHARS = re.compile(rf"[\t\r{_ODD_CLASS}]")
_TABS = re.compile(r"[ ]*\t[ \t]*")
_SPACE_RUN = re.compile(r" {2,}")
_BLANK_LINES = re.compile(r"\n{3,}")


def _suspect(text: str) -> bool:
    """Could :func:`tidy_whitespace` change ``text``? Cheap, so clean text (most of it) skips the real work."""
    return (text[0].isspace() or text[-1].isspace() or "  " in text or " \n" in text or "\n\n\n" in text
            or _ODD_CHARS.search(text) is not None)


def tidy_whitespace(text: str) -> tuple[str, list[str]]:
    """Tidied text and what was untidy, e.g. ``["double spaces"]`` (empty when the text is already tidy).

    Strips the ends, turns Windows line breaks into plain ones, odd spaces (non-breaking, zero-width) into
    plain ones or nothing, tabs and runs of spaces inside a line into one space, drops spaces before line
    breaks and keeps at most one blank line. Single line breaks, paragraphs and line indentation stay.
    """
    if not text or not _suspect(text):
        return text, []
    found: list[str] = []
    t = text
    if "\r" in t:
        t = t.replace("\r\n", "\n").replace("\r", "\n")
        found.append("Windows line breaks")
    for table, name in ((_WIDE_SPACES, "non-breaking spaces"), (_ZERO_WIDTH, "zero-width characters")):
        plain = t.translate(table)
        if plain != t:
            t = plain
            found.append(name)
    stripped = t.strip()
    if stripped != t:
        t = stripped
        found.append("space at start or end")
    line_ends = tabs = doubles = False
    lines = t.split("\n")
    for n, line in enumerate(lines):
        trimmed = line.rstrip()
        line_ends |= trimmed != line
        body = trimmed.lstrip(" \t")
        untabbed = _TABS.sub(" ", body)
        tabs |= untabbed != body
        single = _SPACE_RUN.sub(" ", untabbed)
        doubles |= single != untabbed
        lines[n] = trimmed[:len(trimmed) - len(body)] + single if single else ""
    t = "\n".join(lines)
    found += [name for flag, name in ((line_ends, "spaces at line ends"), (tabs, "tabs"),
                                      (doubles, "double spaces")) if flag]
    fewer = _BLANK_LINES.sub("\n\n", t)
    if fewer != t:
        t = fewer
        found.append("extra blank lines")
    return t, found


# --- control characters -------------------------------------------------------------------------------------
#: C0 and C1 control characters except tab, line feed and carriage return (the whitespace check tidies those),
#: DEL, U+FEFF (a byte order mark pasted into the middle of text) and lone surrogates (a broken ``\ud800``
#: escape in a JSON file: no tokenizer or UTF-8 file can hold one).
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ufeff\ud800-\udfff]")
_CONTROL_NAMES = {"\x00": "NUL", "\ufeff": "byte order mark U+FEFF"}


def control_characters(text: str) -> list[str]:
    """The control characters in ``text``, named (``"NUL"``, ``"U+0007"``, ``"lone surrogate U+D800"``),
    each once, in order of appearance; empty for clean text."""
    found = dict.fromkeys(_CONTROL.findall(text)) if _CONTROL.search(text) else {}
    return [_CONTROL_NAMES.get(c) or (f"lone surrogate U+{ord(c):04X}" if 0xD800 <= ord(c) <= 0xDFFF
                                      else f"U+{ord(c):04X}") for c in found]


def remove_control_characters(text: str) -> str:
    """``text`` without the characters :func:`control_characters` names."""
    return _CONTROL.sub("", text)


def has_lone_surrogate(text: str) -> bool:
    """True when ``text`` holds a lone surrogate, which cannot be encoded as UTF-8 (nor tokenized)."""
    return LONE_SURROGATE.search(text) is not None


def control_rows(rows: Sequence[Example]) -> list[int]:
    """The rows (0-based) holding a control character in any text field (any turn of a conversation)."""
    search = _CONTROL.search
    return [i for i, row in enumerate(rows) if search(row.prompt) or search(row.completion) or search(row.system)
            or (row.turns and any(search(t.content) for t in row.turns))]


def _texts(row: Example) -> list[tuple[str, str]]:
    """The texts the tidying checks look at, named: a pair's fields, a conversation's system prompt and turns."""
    if not row.turns:
        return [(name, getattr(row, name)) for name in TEXT_FIELDS]
    return [("system", row.system), *((f"turn {n}", t.content) for n, t in enumerate(row.turns, 1))]


def _fixed(i: int, row: Example, fixed: dict[str, str], changes: list[tuple[int, str, str]],
           rows: list[tuple[int, Example]]) -> None:
    """Add the ``fixed`` texts of row ``i`` (named as :func:`_texts` names them) to a fix's changes."""
    if not fixed:
        return
    if not row.turns:
        changes += [(i, name, text) for name, text in fixed.items()]
        return
    turns = [dataclasses.replace(t, content=fixed.get(f"turn {n}", t.content)) for n, t in enumerate(row.turns, 1)]
    rows.append((i, Example.conversation(turns, fixed.get("system", row.system), row.split, row.tools)))


# --- the checks ----------------------------------------------------------------------------------------------
def _check_empty(rows: Sequence[Example]) -> CheckResult | None:
    found: list[int] = []
    notes: list[str] = []
    for i, row in enumerate(rows):
        if row.turns:  # a conversation is empty when no assistant turn says or calls anything
            blank = [] if any(t.has_output for t in row.turns) else ["completion"]
        else:
            blank = [name for name in ("prompt", "completion") if not getattr(row, name).strip()]
        if blank:
            found.append(i)
            notes.append(f"empty {' and '.join(blank)}")
    if not found:
        return None
    n = len(found)
    message = (f"{_rows_text(found).capitalize()} {plural_word(n, 'has', 'have')} an empty prompt or completion. "
               "Training needs both: such rows teach nothing or teach the model to answer with nothing.")
    fix = Fix(f"Delete {plural(n, 'empty row')}", "Deletes the rows with an empty prompt or completion.",
              remove_rows=tuple(found))
    return CheckResult("empty", "Empty fields", "error", message, tuple(found), (fix,), tuple(notes))


def _check_duplicates(rows: Sequence[Example], norm: Sequence[tuple[str, str, str]]) -> list[CheckResult]:
    exact_first: dict[tuple[str, str, str], int] = {}
    near_first: dict[tuple[str, str, str], int] = {}
    exact: list[tuple[int, int]] = []
    near: list[tuple[int, int]] = []
    for i, row in enumerate(rows):
        prompt, completion = row.prompt.strip(), row.completion.strip()
        near_key = norm[i]
        if row.turns:  # every turn counts: two conversations that share their first and last message differ
            completion = signature(row.turns, row.tools)
            near_key = (near_key[0], near_key[1], "\x1e".join(normalise(t) for t in row.texts()[1:]))
        if not prompt and not completion:
            continue  # an empty row is reported (and fixed) as empty
        key = (row.system.strip(), prompt, completion)
        first = exact_first.setdefault(key, i)
        near_of = near_first.setdefault(near_key, i)
        if first != i:
            exact.append((i, first))
        elif near_of != i:
            near.append((i, near_of))
    _release(exact_first, near_first)
    out: list[CheckResult] = []
    if exact:
        found = tuple(i for i, _ in exact)
        n = len(found)
        pairs = ", ".join(f"row {i + 1} = row {f + 1}" for i, f in exact[:QUOTE_LIMIT])
        more = f" and {n - QUOTE_LIMIT:,} more" if n > QUOTE_LIMIT else ""
        message = (f"{plural(n, 'row repeats', 'rows repeat')} an earlier row word for word "
                   f"({pairs}{more}). Copies weigh those examples more and leak between the training and "
                   "validation splits.")
        fix = Fix(f"Delete {plural(n, 'duplicate row')}", "Deletes the later copies and keeps the first "
                  "of each.", remove_rows=found)
        out.append(CheckResult("duplicate", "Exact duplicates", "warning", message, found, (fix,),
                               tuple(f"same as row {f + 1}" for _, f in exact)))
    if near:
        found = tuple(i for i, _ in near)
        n = len(found)
        pairs = ", ".join(f"row {i + 1} ≈ row {f + 1}" for i, f in near[:QUOTE_LIMIT])
        more = f" and {n - QUOTE_LIMIT:,} more" if n > QUOTE_LIMIT else ""
        message = (f"{plural(n, 'row differs', 'rows differ')} from an earlier row only in case, "
                   f"spacing or final punctuation ({pairs}{more}).")
        fix = Fix(f"Delete {plural(n, 'near-duplicate row')}", "Deletes the later rows and keeps the first "
                  "of each group.", remove_rows=found)
        out.append(CheckResult("near_duplicate", "Near duplicates", "warning", message, found, (fix,),
                               tuple(f"like row {f + 1}" for _, f in near)))
    _release(exact, near)
    return out


def _check_echo(norm: Sequence[tuple[str, str, str]]) -> CheckResult | None:
    found = tuple(i for i, (_, prompt, completion) in enumerate(norm) if prompt and prompt == completion)
    if not found:
        return None
    n = len(found)
    message = (f"In {_rows_text(found)} the answer is the prompt itself, so the model learns to repeat "
               "the question instead of answering it.")
    fix = Fix(f"Delete {plural(n, 'echo row')}", "Deletes the rows whose answer repeats the prompt.",
              remove_rows=found)
    return CheckResult("echo", "Answer repeats the prompt", "warning", message, found, (fix,))


def _check_control(rows: Sequence[Example]) -> CheckResult | None:
    found = control_rows(rows)
    if not found:
        return None
    notes: list[str] = []
    changes: list[tuple[int, str, str]] = []
    new_rows: list[tuple[int, Example]] = []
    tally: dict[str, int] = {}
    broken = False
    for i in found:
        row_notes: list[str] = []
        fixed: dict[str, str] = {}
        for name, text in _texts(rows[i]):
            names = control_characters(text)
            if names:
                fixed[name] = remove_control_characters(text)
                row_notes.append(f"{name}: {', '.join(names)}")
                broken |= has_lone_surrogate(text)
                for kind in names:
                    tally[kind] = tally.get(kind, 0) + 1
        _fixed(i, rows[i], fixed, changes, new_rows)
        notes.append("; ".join(row_notes))
    n = len(found)
    kinds = sorted(tally.items(), key=lambda kv: -kv[1])
    kinds_text = ", ".join(kind for kind, _ in kinds[:QUOTE_LIMIT]) + (" and more" if len(kinds) > QUOTE_LIMIT
                                                                         else "")
    message = (f"{_rows_text(found).capitalize()} {plural_word(n, 'holds', 'hold')} invisible control characters "
               f"({kinds_text}), usually debris from a conversion or a binary file. The model would learn them.")
    if broken:
        message += " Lone surrogates cannot be tokenized or saved as UTF-8: training stops at them."
    fix = Fix(f"Remove control characters from {plural(n, 'row')}",
              "Deletes the control characters; tabs and line breaks stay.", changes=tuple(changes),
              rows=tuple(new_rows))
    return CheckResult("control", "Control characters", "error" if broken else "warning", message, tuple(found),
                       (fix,), tuple(notes))


def _check_whitespace(rows: Sequence[Example]) -> CheckResult | None:
    found: list[int] = []
    notes: list[str] = []
    changes: list[tuple[int, str, str]] = []
    new_rows: list[tuple[int, Example]] = []
    tally: dict[str, int] = {}
    for i, row in enumerate(rows):
        row_notes: list[str] = []
        row_kinds: set[str] = set()
        fixed: dict[str, str] = {}
        for name, text in _texts(row):
            if not text or not _suspect(text):
                continue
            tidy, kinds = tidy_whitespace(text)
            if tidy != text and (tidy or name == "system"):  # a blank prompt/completion counts as empty
                fixed[name] = tidy
                row_notes.append(f"{name}: {', '.join(kinds)}")
                row_kinds.update(kinds)
        _fixed(i, row, fixed, changes, new_rows)
        if row_notes:
            found.append(i)
            notes.append("; ".join(row_notes))
            for kind in row_kinds:
                tally[kind] = tally.get(kind, 0) + 1
    if not found:
        return None
    n = len(found)
    kinds_text = ", ".join(f"{kind} ({count:,})" for kind, count in sorted(tally.items(), key=lambda kv: -kv[1]))
    message = (f"{plural(n, 'row has', 'rows have')} stray whitespace: {kinds_text}. The model "
               "learns it too, e.g. to end answers with a space.")
    fix = Fix(f"Tidy whitespace in {plural(n, 'row')}",
              "Trims the ends, makes line breaks plain, turns tabs, odd and repeated spaces into one space and "
              "keeps at most one blank line. Line breaks, paragraphs and indentation stay.",
              changes=tuple(changes), rows=tuple(new_rows))
    return CheckResult("whitespace", "Stray whitespace", "warning", message, tuple(found), (fix,), tuple(notes))


def _check_too_long(rows: Sequence[Example], token_counts: TokenCounts, max_length: int) -> CheckResult | None:
    counts = (token_counts(row) for row in rows) if callable(token_counts) else token_counts
    over = [(i, count) for i, count in enumerate(counts) if count is not None and count > max_length]
    if not over:
        return None
    found = tuple(i for i, _ in over)
    notes = tuple(f"{count_text(c)} tokens, {count_text(c, max_length)} cut" for _, c in over)
    n = len(found)
    cut = sum(c - max_length for _, c in over)
    longest = max(c for _, c in over)
    cut_words = plural(cut, "token") if longest <= COUNT_LIMIT else f"over {plural(cut, 'token')}"
    message = (f"{plural(n, 'row is', 'rows are')} longer than the max length of {max_length:,} "
               f"tokens (longest: {count_text(longest)}); training cuts {cut_words} off their ends, so the model "
               "never sees how those answers finish.")
    fixes: list[Fix] = []
    target = math.ceil(longest / LENGTH_STEP) * LENGTH_STEP
    if target <= COUNT_LIMIT:
        fixes.append(Fix(f"Raise max length to {target:,}",
                         f"Sets the max length to {target:,} tokens so every row fits. Memory and time per "
                         "step grow with it.", max_length=target))
    fixes.append(Fix(f"Delete {plural(n, 'long row')}", "Deletes the rows that do not fit.", remove_rows=found))
    _release(over)
    return CheckResult("too_long", "Longer than the max length", "warning", message, found, tuple(fixes), notes)


def _check_untrained(rows: Sequence[Example], answer_starts: TokenCounts | Mapping[int, int],
                     max_length: int) -> CheckResult | None:
    """Rows whose first trained token lies beyond the max length: the cut leaves them nothing to learn."""
    if isinstance(answer_starts, Mapping):  # only some rows' (those longer than the max length)
        starts = sorted(answer_starts.items())
    else:
        starts = enumerate((answer_starts(row) for row in rows) if callable(answer_starts) else answer_starts)
    over = [(i, start) for i, start in starts if start is not None and max_length <= start < NO_ANSWER]
    if not over:
        return None
    found = tuple(i for i, _ in over)
    n = len(found)
    latest = max(start for _, start in over)
    message = (f"In {_rows_text(found)} every trained token lies beyond the max length of {max_length:,} tokens "
               f"(the first one at token {latest + 1:,} at the latest), so the cut leaves "
               f"{plural_word(n, 'it', 'them')} nothing to learn: training skips {plural_word(n, 'it', 'them')}.")
    notes = tuple(f"answer starts at token {start + 1:,}" for _, start in over)
    fixes: list[Fix] = []
    target = math.ceil((latest + LENGTH_STEP // 2) / LENGTH_STEP) * LENGTH_STEP
    if target <= COUNT_LIMIT:
        fixes.append(Fix(f"Raise max length to {target:,}", f"Sets the max length to {target:,} tokens so every "
                         "answer starts within it. Memory and time per step grow with it.", max_length=target))
    fixes.append(Fix(f"Delete {plural(n, 'row')}", "Deletes the rows with nothing to train.", remove_rows=found))
    return CheckResult("untrained", "Nothing left to train", "warning", message, found, tuple(fixes), notes)


def _check_same_answer(norm: Sequence[tuple[str, str, str]], rows: Sequence[Example]) -> CheckResult | None:
    # For each answer given more than once, its prompts with their number of rows, in small dicts of strings
    # and ints that the garbage collector does not track. 100,000 lists of rows (one per answer) would outlive
    # the young generations and set off full collections, each holding the GIL for tens of milliseconds.
    first: dict[str, int] = {}
    prompts_of: dict[str, dict[str, int]] = {}
    for i, (_, prompt, completion) in enumerate(norm):
        if not completion:
            continue
        head = first.setdefault(completion, i)
        if head == i:
            continue
        counts = prompts_of.get(completion)
        if counts is None:
            prompts_of[completion] = counts = {norm[head][1]: 1}
        counts[prompt] = counts.get(prompt, 0) + 1
    share = SAME_ANSWER_MIN_SHARE * len(norm)
    shared = {answer: len(counts) for answer, counts in prompts_of.items() if len(counts) >= SAME_ANSWER_MIN_PROMPTS
              or (len(counts) >= 2 and sum(counts.values()) >= share)}
    _release(prompts_of)
    if not shared:
        return None
    top = min(shared, key=lambda answer: (-shared[answer], first[answer]))
    prompts = shared[top]
    answer = _quote(rows[first[top]].completion)
    if len(shared) == 1:
        message = (f"{prompts:,} prompts share the answer {answer} — fine for a fixed reply, but the model will "
                   "learn to give it often.")
    else:
        message = (f"{len(shared):,} answers are each given to several prompts, most often {answer} "
                   f"({prompts:,} prompts) — fine for fixed replies or paraphrased questions, but the model will "
                   "learn to give them often.")
    found = tuple(i for i, (_, _, completion) in enumerate(norm) if completion in shared)
    extra = tuple(i for i in found if first[norm[i][2]] != i)
    quotes = {answer: _quote(rows[first[answer]].completion, 40) for answer in shared}
    fix = Fix(f"Delete {plural(len(extra), 'row')}, keeping one per answer",
              "Optional: keeps the first row of each shared answer and deletes the others. Only if the repeats "
              "are not on purpose (several phrasings of one question are a good way to teach a fact).",
              remove_rows=extra)
    return CheckResult("same_answer", "Shared answers", "info", message, found, (fix,),
                       tuple(quotes[norm[i][2]] for i in found))


def run_checks(rows: Sequence[Example], token_counts: TokenCounts | None = None,
               max_length: int | None = None,
               answer_starts: TokenCounts | Mapping[int, int] | None = None) -> list[CheckResult]:
    """Run every check over ``rows``; returns the ones that found something, errors first.

    ``token_counts`` gives each row's length in tokens (``None`` when unknown): a function of the row, or
    a sequence parallel to ``rows``; with ``max_length`` it enables the "too long" check. ``answer_starts``
    (the same kinds, or a mapping of some rows' indexes) gives where each row's first trained token lies
    (:func:`loradesk.core.tokenize.answer_start`) and enables the "nothing left to train" check. ``rows`` are
    only read.
    """
    norm = [(normalise(r.system) if r.system else "", normalise(r.prompt), normalise(r.completion)) for r in rows]
    found: list[CheckResult | None] = [
        _check_control(rows),
        _check_empty(rows),
        *_check_duplicates(rows, norm),
        _check_echo(norm),
        _check_whitespace(rows),
        _check_same_answer(norm, rows),
    ]
    _release(norm)
    if token_counts is not None and max_length is not None:
        found.append(_check_too_long(rows, token_counts, max_length))
    if answer_starts is not None and max_length is not None:
        found.append(_check_untrained(rows, answer_starts, max_length))
    results = [r for r in found if r is not None]
    results.sort(key=lambda r: (SEVERITIES.index(r.severity), CHECK_ORDER.index(r.key)))
    return results


def check_records(records: Sequence[CompactRow], token_counts: Sequence[int | None] | None = None,
                  max_length: int | None = None, answer_starts: Mapping[int, int] | None = None) -> list[CheckResult]:
    """:func:`run_checks` over rows in the compact form the worker process receives them in
    (:func:`~loradesk.core.dataset.compact_row`)."""
    return run_checks(expand_rows(records), token_counts, max_length, answer_starts)
