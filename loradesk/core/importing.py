"""The import pipeline without a window: from a file or Hugging Face request to rows, or to the question to ask.

:func:`read_import` reads what an :class:`ImportRequest` names and answers with one of three typed results:
:class:`Imported` (the rows), :class:`NeedsMapping` (the columns could not be matched: ask which column is
the prompt and which the completion, then retry :meth:`ImportRequest.with_mapping`) or :class:`ChooseSplit`
(the Hub dataset has no such split or needs a configuration: ask again with the choices). Anything else
that stops the read raises :class:`~loradesk.core.formats.FormatError` naming the file, row and field.
A UI (or a script) asks its questions and calls again; nothing here touches the open dataset.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from loradesk.core.chat_formats import Conversations
from loradesk.core.dataset import Example

#: The file suffixes read as datasets (anything else dropped or given is taken for a project).
DATASET_SUFFIXES = (".json", ".jsonl", ".ndjson", ".csv")

Mode = Literal["replace", "append"]
Progress = Callable[[str, float | None], None]


@dataclass(frozen=True)
class ImportRequest:
    """One import: a file (``path``) or a Hugging Face dataset split (``hub``: :func:`load_hub_dataset`'s
    arguments), how its rows go in (``mode``; None: replace an empty table, else ask), the column mapping and
    how conversations become rows (``conversations``: ``"whole"``, or ``"pairs"`` to split them)."""

    name: str  # in messages and the undo text
    mode: Mode | None = None
    mapping: dict[str, str] | None = None
    path: str = ""
    hub: dict[str, Any] | None = None
    conversations: Conversations = "whole"

    @classmethod
    def file(cls, path: str | Path, mode: Mode | None = None, mapping: dict[str, str] | None = None,
             conversations: Conversations = "whole") -> ImportRequest:
        return cls(Path(path).name, mode, mapping, path=str(path), conversations=conversations)

    @classmethod
    def hub_split(cls, source: str, split: str = "train", name: str | None = None, revision: str | None = None,
                  limit: int | None = None, mode: Mode | None = None, mapping: dict[str, str] | None = None,
                  conversations: Conversations = "whole") -> ImportRequest:
        from loradesk.core.hub_datasets import source_label

        hub = {"source": source, "split": split, "name": name, "revision": revision, "limit": limit}
        return cls(source_label(source, split), mode, mapping, hub=hub, conversations=conversations)

    def with_mapping(self, mapping: dict[str, str]) -> ImportRequest:
        """The same request, reading the columns ``mapping`` names."""
        return dataclasses.replace(self, mapping=dict(mapping))

    def with_conversations(self, conversations: Conversations) -> ImportRequest:
        """The same request, conversations read ``"whole"`` or split into ``"pairs"``."""
        return dataclasses.replace(self, conversations=conversations)


@dataclass(frozen=True)
class Imported:
    """The rows read, and one line for each thing the user should know about them (rows skipped, answers
    or images not used: :mod:`loradesk.core.screening`)."""

    request: ImportRequest
    rows: list[Example]
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class NeedsMapping:
    """No reader recognised the columns: ask which ones hold the prompt, completion (and system prompt)."""

    request: ImportRequest
    columns: list[str]
    message: str
    preview: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class ChooseSplit:
    """The Hub dataset has no such split, or needs a configuration: ask again offering these."""

    request: ImportRequest
    message: str
    splits: list[str] | None = None
    configs: list[str] | None = None


ImportAnswer = Imported | NeedsMapping | ChooseSplit


def read_import(request: ImportRequest, progress: Progress | None = None) -> ImportAnswer:
    """Read ``request``; raises FormatError (or OSError) when it cannot be read and there is nothing to ask."""
    from loradesk.core import formats, hub_datasets

    notes: list[str] = []
    try:
        if request.hub is not None:
            rows = hub_datasets.load_hub_dataset(**request.hub, mapping=request.mapping, progress=progress,
                                                 notes=notes, conversations=request.conversations)
        else:
            rows = formats.read_dataset(request.path, mapping=request.mapping, notes=notes,
                                        conversations=request.conversations)
    except formats.FormatError as exc:
        if exc.columns and request.mapping is None:
            return NeedsMapping(request, exc.columns, exc.message, exc.preview or [])
        if isinstance(exc, hub_datasets.HubDatasetError) and request.hub is not None and (exc.splits or exc.configs):
            return ChooseSplit(request, str(exc), exc.splits, exc.configs)
        raise
    return Imported(request, list(rows), tuple(notes))


def import_mode(request: ImportRequest, current_rows: int) -> Mode | None:
    """How the rows go in: the request's mode, else replace an empty table; None: ask the user."""
    if request.mode is not None:
        return request.mode
    return "replace" if current_rows == 0 else None


def is_dataset_file(path: str | Path) -> bool:
    """Whether ``path`` is read as a dataset (by its suffix)."""
    return Path(path).suffix.lower() in DATASET_SUFFIXES

