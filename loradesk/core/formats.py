"""Read and write datasets (pairs and whole conversations): JSON, JSONL, CSV, Alpaca, ShareGPT and OpenAI chat.

Files are recognised by their content, not their name. The first non-blank character decides the
container (``[`` a JSON array, ``{`` one JSON object per line, anything else CSV) and the keys of the
first records decide the record shape:

* ``conversations`` → ShareGPT, ``messages`` → OpenAI chat, ``instruction`` + ``output`` → Alpaca;
* otherwise a column pair: ``prompt``/``completion``, or one unambiguous alias pair
  (``question``/``answer``, ``input``/``output``, ``instruction``/``response``, ``input``/``target``,
  ``query``/``response``, ``prompt``/``response``, ``prompt``/``answer``), or an explicit ``mapping``.
  An optional ``system`` (or ``system_prompt``) column becomes the row's system prompt and a ``split``
  column pins the row to a split. Column names match case-insensitively; other columns are ignored.

Alpaca: prompt = ``instruction``, plus a blank line and ``input`` when ``input`` is non-empty.
(``instruction``/``response`` data with an ``input`` or ``context`` column is folded the same way.)

Conversations (ShareGPT and OpenAI chat) come in whole: one conversation row per record, with every user,
assistant and tool turn, tool calls (ShareGPT ``function_call``/``observation``, OpenAI ``tool_calls``/``tool``),
the system prompt and the ``tools`` list; ``conversations="pairs"`` cuts them into prompt/completion pairs
instead (the rules: :mod:`loradesk.core.chat_formats`). Inside a file the record shape is decided per
record where its keys say so: a JSON/JSONL file may mix pair records and ``messages`` records (what this
module writes for conversation rows), unless a format is forced.

Records that come from elsewhere (a Hugging Face dataset) go through the same rules with
:func:`read_records`; :func:`preview_records` shows a file's columns and first records before mapping.

Every problem raises one :class:`FormatError` naming the file, the record (``row N``, 1-based; ``line N``
for JSONL) and the field. Reading is all or nothing: a complete list of rows, or an error.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loradesk.core import chat_formats, screening
from loradesk.core.chat_formats import Conversations
from loradesk.core.conversation import ConversationError
from loradesk.core.dataset import SPLITS, Example
from loradesk.core.fileio import atomic_open
from loradesk.core.jsonsafe import TOO_BIG, JSONLimitError, loads, syntax_error
from loradesk.core.wording import brief, plural
from loradesk.core.wording import kind as _kind

FORMATS = ("json", "jsonl", "csv", "alpaca", "sharegpt", "openai")
WRITE_FORMATS = FORMATS

IMPORT_FILTER = ("Datasets (*.json *.jsonl *.ndjson *.csv);;JSON (*.json);;JSON Lines (*.jsonl *.ndjson);;"
                 "CSV (*.csv);;All files (*)")
#: File-dialog filter label → write format (``";;".join`` of the labels is :data:`EXPORT_FILTER`).
EXPORT_FORMATS: dict[str, str] = {
    "JSON (*.json)": "json",
    "JSON Lines (*.jsonl)": "jsonl",
    "CSV (*.csv)": "csv",
    "OpenAI chat JSONL (*.jsonl)": "openai",
    "Alpaca JSON (*.json)": "alpaca",
    "ShareGPT JSON (*.json)": "sharegpt",
}
EXPORT_FILTER = ";;".join(EXPORT_FORMATS)

_SUFFIXES = {".json": "json", ".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv"}
_PAIR_ALIASES = (("prompt", "completion"), ("question", "answer"), ("input", "output"),
                 ("instruction", "response"), ("input", "target"), ("query", "response"),
                 ("prompt", "response"), ("prompt", "answer"))
_SYSTEM_NAMES = ("system", "system_prompt")
_SPLIT_VALUES = {"": "auto", **{s: s for s in SPLITS}, "val": "validation", "valid": "validation",
                 "eval": "validation", "dev": "validation"}
_SNIFF_RECORDS = 20
#: Columns named in a message before "and N more".
_LISTED = 12
#: How many records a preview (and an unrecognised-columns error's ``preview``) holds.
PREVIEW_ROWS = 50
MAPPING_FIELDS = ("prompt", "completion", "system", "split")


class FormatError(ValueError):
    """A dataset file could not be read: ``path``, ``row`` (1-based record, or JSONL line) and ``field``.

    ``columns`` lists the columns found when they could not be matched (so a caller can offer a mapping),
    and ``preview`` then holds the first records (up to :data:`PREVIEW_ROWS`) to show beside the choice.
    ``label`` names the source in the message instead of the file name (e.g. a Hub dataset and split).
    """

    def __init__(self, path: str | os.PathLike[str], message: str, row: int | None = None,
                 field: str | None = None, *, unit: str = "row", line: int | None = None,
                 column: int | None = None, columns: Sequence[str] | None = None,
                 preview: Sequence[Mapping[str, Any]] | None = None, label: str | None = None) -> None:
        self.path = Path(path)
        self.message = message
        self.row = row
        self.field = field
        self.unit = unit
        self.line = line
        self.column = column
        self.columns = list(columns) if columns is not None else None
        self.preview = [dict(r) for r in preview] if preview is not None else None
        self.label = label
        super().__init__(str(self))

    def __str__(self) -> str:
        where = [self.label or self.path.name]
        if self.row is not None:
            where.append(f"{self.unit} {self.row}")
        elif self.line is not None:
            where.append(f"line {self.line}" + (f", column {self.column}" if self.column else ""))
        message = self.message
        if self.field and brief(self.field) not in message:
            message = f"field {brief(self.field)}: {message}"
        return f"{', '.join(where)}: {message}"


@dataclass
class _Source:
    """Parsed records of one file, each with its number (record for JSON/CSV, line for JSONL)."""

    path: Path
    container: str  # "json" | "jsonl" | "csv" | "records"
    records: list[tuple[int, Mapping[str, Any]]]
    header: list[str] | None = None  # CSV (and given records): the columns, known even when there are no rows
    label: str | None = None

    @property
    def unit(self) -> str:
        return "line" if self.container == "jsonl" else "row"

    def error(self, number: int | None, message: str, field: str | None = None) -> FormatError:
        return FormatError(self.path, message, number, field, unit=self.unit, label=self.label)

    def column_error(self, message: str, field: str | None = None) -> FormatError:
        """The columns could not be matched: the error lists them and previews the first records."""
        return FormatError(self.path, message, field=field, columns=self.columns(), label=self.label,
                           preview=[rec for _, rec in self.records[:PREVIEW_ROWS]])

    def columns(self, first: int | None = None) -> list[str]:
        """Column names in order of appearance (in the ``first`` records only, when given)."""
        if self.header is not None:
            return self.header
        seen: dict[str, None] = {}
        for _, rec in self.records[:first]:
            seen.update(dict.fromkeys(rec))
        return list(seen)


# --- public API ------------------------------------------------------------------------------------------
def detect_format(path: str | os.PathLike[str]) -> str:
    """Which of :data:`FORMATS` the file holds, judged from its content (container and first records)."""
    src = _load(Path(path), None, limit=_SNIFF_RECORDS)
    shape = _shape(src.columns(_SNIFF_RECORDS))
    return src.container if shape == "pairs" else shape


def read_dataset(path: str | os.PathLike[str], fmt: str | None = None,
                 mapping: dict[str, str] | None = None, notes: list[str] | None = None, *,
                 conversations: Conversations = "whole") -> list[Example]:
    """Read every row of ``path``; raises :class:`FormatError` on the first problem (nothing partial).

    ``fmt`` forces a format (``json``/``jsonl``/``csv`` pin the container, ``alpaca``/``sharegpt``/``openai``
    the record shape). ``mapping`` names the columns explicitly: ``{"prompt": "colA", "completion": "colB",
    "system": "colC"}`` (``system`` and ``split`` optional). ``conversations``: ``"whole"`` (one row per
    conversation) or ``"pairs"`` (each user message and its reply one row). ``notes`` receives one line for
    each thing the user should know about a read that succeeded (rows skipped, answers or images not used:
    see :mod:`loradesk.core.screening`).
    """
    if fmt is not None and fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    _check_mapping(mapping, fmt)
    chat_formats.check_mode(conversations)
    src = _load(Path(path), fmt if fmt in ("json", "jsonl", "csv") else None)
    return _read_source(src, fmt, mapping, notes, conversations)


def read_records(records: Iterable[Mapping[str, Any]], columns: Sequence[str] | None = None,
                 mapping: dict[str, str] | None = None, *, source: str = "records",
                 notes: list[str] | None = None, conversations: Conversations = "whole") -> list[Example]:
    """Rows from records that are already parsed (e.g. a Hugging Face dataset), by the same rules as files.

    ``columns`` are all the columns (known even when there are no records; default: the records' keys).
    ``source`` names the records in errors (``"tatsu-lab/alpaca (train), row 3: ..."``); ``notes`` as in
    :func:`read_dataset`.
    """
    _check_mapping(mapping, None)
    chat_formats.check_mode(conversations)
    return _read_source(_records_source(records, columns, source), None, mapping, notes, conversations)


def columns_used(columns: Sequence[str], mapping: dict[str, str] | None = None, *,
                 source: str = "records") -> list[str]:
    """The columns :func:`read_records` reads for these ``columns`` (raises :class:`FormatError` like it)."""
    _check_mapping(mapping, None)
    src = _records_source([], columns, source)
    screened = screening.columns_needed(columns, mapping)
    if screened.complete:
        return screened.columns
    shape = "pairs" if mapping else _shape(columns)
    if shape in ("sharegpt", "openai"):
        wanted = [_find(columns, name) for name in (chat_formats.CHAT_KEYS[shape], "system", "tools", "split")]
    else:
        wanted = list(_resolve_columns(src, shape, mapping).values())
    return [c for c in columns if c in wanted or c in screened.columns]


def preview_records(path: str | os.PathLike[str], limit: int = PREVIEW_ROWS) -> tuple[list[str], list[dict[str, Any]]]:
    """The columns and the first ``limit`` records of a JSON, JSONL or CSV file, as they are (no mapping)."""
    src = _load(Path(path), None, limit=limit)
    return src.columns(), [dict(rec) for _, rec in src.records]


def write_dataset(path: str | os.PathLike[str], rows: Sequence[Example], fmt: str | None = None) -> None:
    """Write ``rows`` atomically; the format comes from the suffix (.json, .jsonl, .csv) unless ``fmt`` says.

    ``openai`` writes chat JSONL (``messages``); ``alpaca`` and ``sharegpt`` write JSON arrays. Conversation
    rows go out whole (``json``/``jsonl``: as :meth:`Example.to_record` ``messages``); CSV and Alpaca cannot
    hold them and are refused, naming the first conversation row.
    """
    path = Path(path)
    if fmt is None:
        fmt = _SUFFIXES.get(path.suffix.lower())
        if fmt is None:
            raise FormatError(path, "can't tell the format from the file name; use .json, .jsonl or .csv")
    if fmt not in WRITE_FORMATS:
        raise ValueError(f"unknown format {fmt!r}; expected one of {', '.join(WRITE_FORMATS)}")
    _refuse_conversations(path, rows, fmt)
    if fmt == "csv":
        with atomic_open(path, "w", newline="") as fh:
            _write_csv(fh, rows)
        return
    records = [_export_record(row, fmt) for row in rows]
    with atomic_open(path, "w") as fh:
        if fmt in ("jsonl", "openai"):
            for rec in records:
                fh.write(json.dumps(rec, ensure_ascii=False))
                fh.write("\n")
        else:
            json.dump(records, fh, ensure_ascii=False, indent=2)
            fh.write("\n")


def read_heldout(path: str | os.PathLike[str]) -> list[tuple[str, str]]:
    """Held-out questions: a JSON array (or JSONL) of ``{"prompt", "expected"}`` → ``(prompt, expected)``s."""
    src = _load(Path(path), None)
    out: list[tuple[str, str]] = []
    for number, rec in src.records:
        prompt, expected = (_text(src, number, rec, name) for name in ("prompt", "expected"))
        for name, value in (("prompt", prompt), ("expected", expected)):
            if not value.strip():
                raise src.error(number, f"field '{name}' is empty", name)
        out.append((prompt, expected))
    if not out:
        raise FormatError(path, "there are no held-out questions in the file")
    return out


def _check_mapping(mapping: dict[str, str] | None, fmt: str | None) -> None:
    if mapping is None:
        return
    if fmt in ("alpaca", "sharegpt", "openai"):
        raise ValueError(f"a column mapping does not apply to the {fmt} format")
    unknown = set(mapping) - set(MAPPING_FIELDS)
    missing = {"prompt", "completion"} - set(mapping)
    if unknown or missing:
        raise ValueError("mapping needs 'prompt' and 'completion' (and optionally 'system', 'split'); "
                         f"got {sorted(mapping)}")


def _records_source(records: Iterable[Mapping[str, Any]], columns: Sequence[str] | None, source: str) -> _Source:
    src = _Source(Path(source), "records", [], list(columns) if columns is not None else None, label=source)
    for number, rec in enumerate(records, 1):
        if not isinstance(rec, Mapping):
            raise src.error(number, f"each record must have named fields, got {_kind(rec)}")
        src.records.append((number, rec))
    return src


def _read_source(src: _Source, fmt: str | None, mapping: dict[str, str] | None,
                 notes: list[str] | None = None, conversations: Conversations = "whole") -> list[Example]:
    """Rows from parsed records: screen them (labels, preferences, images), decide the record shape (unless
    ``fmt`` names it), then read every record."""
    if not src.records and src.header is None:
        return []
    screened = screening.screen(src.records, src.columns(_SNIFF_RECORDS), mapping, src.error,
                                reshape=fmt not in ("alpaca", "sharegpt", "openai"))
    src.records, src.header = screened.records, screened.columns or src.header
    rows = _read_shape(src, fmt, mapping, conversations)
    if notes is not None:
        notes.extend(screened.notes)
    return rows


def _read_shape(src: _Source, fmt: str | None, mapping: dict[str, str] | None,
                conversations: Conversations) -> list[Example]:
    if fmt in ("alpaca", "sharegpt", "openai"):
        shape = fmt
    else:
        shape = "pairs" if mapping else _shape(src.columns(_SNIFF_RECORDS))
    if shape in ("sharegpt", "openai"):
        return _read_chats(src, shape, conversations, forced=fmt == shape)
    return _read_columns(src, shape, mapping, conversations)


# --- loading containers ----------------------------------------------------------------------------------
def _load(path: Path, container: str | None, limit: int | None = None) -> _Source:
    """Parse ``path`` into records. ``container`` forces json/jsonl (JSON family) or csv."""
    try:
        with path.open("rb") as fh:
            first = _first_byte(fh, path)
            if container is None and path.suffix.lower() in (".json", ".jsonl", ".ndjson"):
                container = "json"
            if container == "csv" or (container is None and first not in (b"[", b"{")):
                return _load_csv(path, fh.read(), limit)
            if first == b"{":
                line = fh.readline()
                fh.seek(0)
                try:
                    one_record = isinstance(loads(line), dict)
                except ValueError:  # a broken first line that looks whole is reported as JSONL
                    one_record = line.rstrip().endswith(b"}")
                if one_record:
                    return _load_jsonl(path, fh, limit)
            return _load_json(path, fh.read(), limit)
    except OSError as exc:
        raise FormatError(path, f"can't read the file: {exc.strerror or exc}") from exc
    except MemoryError:
        raise FormatError(path, f"the file is {TOO_BIG}") from None


def _first_byte(fh: io.BufferedReader, path: Path) -> bytes:
    """The first non-blank byte (after a UTF-8 BOM); the stream is rewound. Empty/UTF-16 files raise."""
    head = fh.read(4)
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise FormatError(path, "the file is UTF-16 text; save it as UTF-8")
    fh.seek(3 if head.startswith(b"\xef\xbb\xbf") else 0)
    while chunk := fh.read(65536):
        stripped = chunk.lstrip()
        if stripped:
            fh.seek(0)
            return stripped[:1]
    raise FormatError(path, "the file is empty")


def _decode(path: Path, data: bytes, line_offset: int = 0) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = line_offset + data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise FormatError(path, f"not UTF-8 text (byte 0x{data[exc.start]:02x}); save the file as UTF-8",
                          line=line, column=column) from None


def _load_json(path: Path, data: bytes, limit: int | None) -> _Source:
    text = _decode(path, data)
    try:
        doc = loads(text)
    except json.JSONDecodeError as exc:
        raise FormatError(path, f"invalid JSON: {syntax_error(exc)}", line=exc.lineno, column=exc.colno) from None
    except JSONLimitError as exc:
        raise FormatError(path, f"the JSON is {exc}") from None
    if not isinstance(doc, list):
        raise FormatError(path, "the file must hold a JSON array of records (or one JSON object per line), "
                                f"not {_kind(doc)}")
    src = _Source(path, "json", [])
    for number, rec in enumerate(doc[:limit], 1):
        if not isinstance(rec, dict):
            raise src.error(number, f"each record must be an object with named fields, got {_kind(rec)}")
        src.records.append((number, rec))
    return src


def _load_jsonl(path: Path, fh: io.BufferedReader, limit: int | None) -> _Source:
    src = _Source(path, "jsonl", [])
    for number, raw in enumerate(fh, 1):
        if not raw.strip():
            continue
        line = _decode(path, raw, number - 1)
        try:
            rec = loads(line)
        except json.JSONDecodeError as exc:
            raise FormatError(path, f"invalid JSON at column {exc.colno}: {syntax_error(exc)}", number,
                              unit="line") from None
        except JSONLimitError as exc:
            raise FormatError(path, f"the JSON is {exc}", number, unit="line") from None
        if not isinstance(rec, dict):
            raise src.error(number, f"each line must be a JSON object with named fields, got {_kind(rec)}")
        src.records.append((number, rec))
        if limit is not None and len(src.records) >= limit:
            break
    return src


def _load_csv(path: Path, data: bytes, limit: int | None) -> _Source:
    text = _decode(path, data)
    src = _Source(path, "csv", [])
    old_limit = csv.field_size_limit(2**31 - 1)
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next((row for row in reader if row), None)
        if header is None:
            raise FormatError(path, "the file is empty")
        if len(header) == 1 and (";" in header[0] or "\t" in header[0]):  # Excel's ";" or a TSV
            delimiter = ";" if header[0].count(";") >= header[0].count("\t") else "\t"
            reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
            header = next(row for row in reader if row)
        src.header = header = [name.strip() for name in header]
        for name in header:
            if header.count(name) > 1:
                raise FormatError(path, f"column {brief(name)} appears more than once in the header",
                                  field=name, line=1)
        number = 0
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue
            number += 1
            if len(row) > len(header):
                raise src.error(number, f"{plural(len(row), 'value')} but the header has "
                                        f"{plural(len(header), 'column')} (line {reader.line_num}); "
                                        "quote values that contain commas")
            src.records.append((number, dict(zip(header, row, strict=False))))
            if limit is not None and number >= limit:
                break
    except csv.Error as exc:
        raise FormatError(path, f"malformed CSV: {exc}", line=reader.line_num) from None
    finally:
        csv.field_size_limit(old_limit)
    return src


# --- record shapes ---------------------------------------------------------------------------------------
def _shape(columns: Sequence[str]) -> str:
    keys = {c.strip().lower() for c in columns}
    if "conversations" in keys:
        return "sharegpt"
    if "messages" in keys:
        return "openai"
    if {"instruction", "output"} <= keys:
        return "alpaca"
    return "pairs"


def _find(columns: Sequence[str], name: str) -> str | None:
    """The column called ``name``: exactly, else the one matching case-insensitively."""
    if name in columns:
        return name
    matches = [c for c in columns if c.strip().lower() == name.lower()]
    return matches[0] if len(matches) == 1 else None


def _resolve_columns(src: _Source, shape: str, mapping: dict[str, str] | None) -> dict[str, str | None]:
    """Map our fields (prompt, completion, input, system, split) to the file's column names."""
    columns = src.columns()
    listed = ", ".join(brief(c) for c in columns[:_LISTED]) or "none"
    if len(columns) > _LISTED:
        listed += f" and {len(columns) - _LISTED:,} more"
    system = next((c for c in (_find(columns, n) for n in _SYSTEM_NAMES) if c), None)
    out: dict[str, str | None] = {"input": None, "system": system, "split": _find(columns, "split")}
    if mapping:  # explicit columns; system and split fall back to the usual names when not mapped
        for field, column in mapping.items():
            found = _find(columns, column)
            if found is None:
                raise src.column_error(f"there is no column {brief(column)} for the {field} (columns found: {listed})",
                                       column)
            out[field] = found
        return out
    if shape == "alpaca":
        out.update(prompt=_find(columns, "instruction"), completion=_find(columns, "output"),
                   input=_find(columns, "input"))
    else:
        pairs = [(p, c) for p, c in _PAIR_ALIASES if _find(columns, p) and _find(columns, c)]
        if pairs and pairs[0] == ("prompt", "completion"):
            pairs = pairs[:1]
        if not pairs:
            raise src.column_error(f"no prompt and completion columns recognised (columns found: {listed}); "
                                   "map them to prompt and completion")
        if len(pairs) > 1:
            options = ", ".join(f"{p}/{c}" for p, c in pairs)
            raise src.column_error(f"ambiguous columns: could be {options} (columns found: {listed}); "
                                   "map them to prompt and completion")
        prompt, completion = pairs[0]
        out.update(prompt=_find(columns, prompt), completion=_find(columns, completion))
        if pairs[0] == ("instruction", "response"):
            out["input"] = _find(columns, "input") or _find(columns, "context")
    return out


def _read_columns(src: _Source, shape: str, mapping: dict[str, str] | None,
                  conversations: Conversations = "whole") -> list[Example]:
    cols = _resolve_columns(src, shape, mapping)
    prompt_col, completion_col = cols["prompt"], cols["completion"]
    input_col, system_col, split_col = cols["input"], cols["system"], cols["split"]
    assert prompt_col is not None and completion_col is not None
    mixed = mapping is None and src.container != "csv"  # a record without the prompt may be a conversation
    rows: list[Example] = []
    for number, rec in src.records:
        if mixed and prompt_col not in rec and (chat := chat_formats.record_shape(rec)):
            rows.extend(_chat_record_rows(src, number, rec, chat, conversations))
            continue
        prompt = _text(src, number, rec, prompt_col)
        if input_col is not None:
            extra = _text(src, number, rec, input_col, optional=True)
            if extra.strip():
                prompt = f"{prompt}\n\n{extra}"
        completion = _text(src, number, rec, completion_col)
        system = _text(src, number, rec, system_col, optional=True) if system_col else ""
        split = _split(src, number, rec, split_col) if split_col is not None else "auto"
        rows.append(Example(prompt, completion, system, split))
    return rows


def _split(src: _Source, number: int, rec: Mapping[str, Any], split_col: str) -> str:
    """The split a record pins its row to (``auto`` when the column is empty)."""
    value = _text(src, number, rec, split_col, optional=True)
    split = _SPLIT_VALUES.get(value.strip().lower(), "")
    if not split:
        raise src.error(number, f"field '{split_col}' is {brief(value)}; expected train, validation or empty",
                        split_col)
    return split


def _text(src: _Source, number: int, rec: Mapping[str, Any], key: str, optional: bool = False,
          field: str | None = None) -> str:
    """``rec[key]`` as text; a missing/null optional field is ``""``, anything else not text is an error.

    ``field`` is the name shown in errors (defaults to ``key``).
    """
    value = rec.get(key)
    if isinstance(value, str):
        return value
    field = field or key
    if value is None:
        if optional:
            return ""
        if key not in rec:
            raise src.error(number, f"missing field {brief(field)}", field)
    raise src.error(number, f"field {brief(field)} must be text, got {_kind(value)}", field)


# --- conversations ---------------------------------------------------------------------------------------
def _read_chats(src: _Source, shape: str, conversations: Conversations, forced: bool) -> list[Example]:
    """Conversation records; unless the format is ``forced``, a record may be a pair or the other chat shape."""
    rows: list[Example] = []
    for number, rec in src.records:
        if forced:
            rows.extend(_chat_record_rows(src, number, rec, shape, conversations))
        elif chat := chat_formats.record_shape(rec):
            rows.extend(_chat_record_rows(src, number, rec, chat, conversations))
        elif _find(list(rec), "prompt") and _find(list(rec), "completion"):
            rows.extend(_read_columns(_Source(src.path, src.container, [(number, rec)], label=src.label),
                                      "pairs", None))
        else:
            rows.extend(_chat_record_rows(src, number, rec, shape, conversations))  # names the missing field
    return rows


def _chat_record_rows(src: _Source, number: int, rec: Mapping[str, Any], shape: str,
                      conversations: Conversations) -> list[Example]:
    split_col = _find(list(rec), "split")
    split = _split(src, number, rec, split_col) if split_col else "auto"
    try:
        return chat_formats.chat_rows(rec, shape, split, conversations)
    except ConversationError as exc:
        raise src.error(number, exc.message, exc.field) from None


# --- writing ---------------------------------------------------------------------------------------------
def _refuse_conversations(path: Path, rows: Sequence[Example], fmt: str) -> None:
    """CSV and Alpaca hold pairs only: a conversation row is refused, naming the first one."""
    if fmt not in ("csv", "alpaca"):
        return
    first = next((i for i, row in enumerate(rows) if row.turns), None)
    if first is not None:
        name = "CSV" if fmt == "csv" else "Alpaca"
        raise FormatError(path, f"a conversation ({plural(len(rows[first].turns), 'turn')}) cannot be written as "
                                f"{name}, which holds prompt/completion pairs only; export as JSONL, ShareGPT or "
                                "OpenAI chat", first + 1)


def _export_record(row: Example, fmt: str) -> dict[str, Any]:
    if row.turns and fmt in ("openai", "sharegpt"):
        return chat_formats.chat_record(row, fmt)
    if fmt == "openai":
        messages = [{"role": "system", "content": row.system}] if row.system else []
        messages += [{"role": "user", "content": row.prompt},
                     {"role": "assistant", "content": row.completion}]
        return {"messages": messages}
    if fmt == "sharegpt":
        turns = [{"from": "system", "value": row.system}] if row.system else []
        turns += [{"from": "human", "value": row.prompt}, {"from": "gpt", "value": row.completion}]
        return {"conversations": turns}
    if fmt == "alpaca":
        rec = {"instruction": row.prompt, "input": "", "output": row.completion}
        if row.system:
            rec["system"] = row.system
        return rec
    return row.to_record()


def _write_csv(fh: io.TextIOBase, rows: Sequence[Example]) -> None:
    header = ["prompt", "completion"]
    if any(r.system for r in rows):
        header.append("system")
    if any(r.split != "auto" for r in rows):
        header.append("split")
    writer = csv.writer(fh)
    writer.writerow(header)
    writer.writerows([getattr(r, name) if name != "split" or r.split != "auto" else "" for name in header]
                     for r in rows)
