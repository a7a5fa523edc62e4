"""Undoable edits: every change the user makes to the dataset or the settings is a QUndoCommand.

Commands only call the core (:class:`~loradesk.core.dataset.Dataset` methods, ``Project.config``); the
table model and the form follow through the core's change notifications.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from PySide6.QtGui import QUndoCommand, QUndoStack

from loradesk.core.config import RunConfig
from loradesk.core.dataset import Dataset, Example
from loradesk.core.project import Project
from loradesk.core.wording import plural

_CONFIG_EDIT_ID = 0x10AD


def _copies(rows: Sequence[Example]) -> list[Example]:
    """A new list of the same rows (rows are immutable, so sharing them is safe)."""
    return list(rows)


def row_runs(rows: Sequence[int]) -> list[tuple[int, int]]:
    """Sorted row numbers as ``(start, count)`` runs."""
    out: list[tuple[int, int]] = []
    for r in rows:
        if out and out[-1][0] + out[-1][1] == r:
            out[-1] = (out[-1][0], out[-1][1] + 1)
        else:
            out.append((r, 1))
    return out


class EditCellCommand(QUndoCommand):
    """Set one field (prompt, completion, system, split) of one row."""

    def __init__(self, dataset: Dataset, row: int, field: str, value: str) -> None:
        super().__init__(f"Edit {field} of row {row + 1}")
        self._dataset, self._row, self._field = dataset, row, field
        self._new = value
        self._old = getattr(dataset[row], field)

    def redo(self) -> None:
        self._dataset.set_field(self._row, self._field, self._new)

    def undo(self) -> None:
        self._dataset.set_field(self._row, self._field, self._old)


class InsertRowsCommand(QUndoCommand):
    """Insert rows before ``index`` (``len(dataset)`` appends)."""

    def __init__(self, dataset: Dataset, index: int, rows: Sequence[Example], text: str | None = None) -> None:
        super().__init__(text or f"Add {plural(len(rows), 'row')}")
        self._dataset = dataset
        self._index = max(0, min(index, len(dataset)))
        self._rows = _copies(rows)

    def redo(self) -> None:
        self._dataset.insert(self._index, _copies(self._rows))

    def undo(self) -> None:
        self._dataset.remove(self._index, len(self._rows))


class RemoveRowsCommand(QUndoCommand):
    """Remove any set of rows (not necessarily adjacent); undo puts each back where it was.

    A scattered selection (more than :attr:`MAX_RUNS` separate blocks) is removed in one reset rather
    than block by block, so deleting every other row of a big file stays quick.
    """

    MAX_RUNS = 32

    def __init__(self, dataset: Dataset, indices: Sequence[int]) -> None:
        self._runs = row_runs(sorted(set(indices)))
        super().__init__(f"Delete {plural(sum(n for _, n in self._runs), 'row')}")
        self._dataset = dataset
        self._removed: list[list[Example]] = []
        self._before: list[Example] = []

    def redo(self) -> None:
        if len(self._runs) > self.MAX_RUNS:
            gone = {i for start, count in self._runs for i in range(start, start + count)}
            self._before = _copies(self._dataset.rows)
            self._dataset.reset(_copies([r for i, r in enumerate(self._before) if i not in gone]))
            return
        removed = [self._dataset.remove(start, count) for start, count in reversed(self._runs)]
        self._removed = list(reversed(removed))

    def undo(self) -> None:
        if len(self._runs) > self.MAX_RUNS:
            self._dataset.reset(_copies(self._before))
            return
        for (start, _), rows in zip(self._runs, self._removed, strict=True):
            self._dataset.insert(start, rows)


class SetFieldsCommand(QUndoCommand):
    """Set many ``(row, field, value)`` cells in one step (find and replace, check fixes)."""

    def __init__(self, dataset: Dataset, changes: Sequence[tuple[int, str, str]], text: str) -> None:
        super().__init__(text)
        self._dataset = dataset
        self._new = list(changes)
        self._old: list[tuple[int, str, str]] = [(i, f, getattr(dataset[i], f)) for i, f, _ in self._new]

    def redo(self) -> None:
        self._dataset.set_fields(self._new)

    def undo(self) -> None:
        self._dataset.set_fields(list(reversed(self._old)))


class SetRowsCommand(QUndoCommand):
    """Replace whole rows ``(row, new Example)`` in one step: a conversation's edited turns, a replacement
    inside turns. Undo puts the old rows back."""

    def __init__(self, dataset: Dataset, changes: Sequence[tuple[int, Example]], text: str) -> None:
        super().__init__(text)
        self._dataset = dataset
        self._new = list(changes)
        self._old = [(i, dataset[i]) for i, _ in self._new]

    def redo(self) -> None:
        self._dataset.set_rows(self._new)

    def undo(self) -> None:
        self._dataset.set_rows(self._old)


def push_edits(stack: QUndoStack, dataset: Dataset, changes: Sequence[tuple[int, str, str]],
               row_changes: Sequence[tuple[int, Example]], text: str) -> None:
    """Push cell changes (of pairs) and whole-row changes (of conversations) as one undo step named ``text``."""
    if changes and row_changes:
        stack.beginMacro(text)
        stack.push(SetFieldsCommand(dataset, changes, text))
        stack.push(SetRowsCommand(dataset, row_changes, text))
        stack.endMacro()
    elif row_changes:
        stack.push(SetRowsCommand(dataset, row_changes, text))
    elif changes:
        stack.push(SetFieldsCommand(dataset, changes, text))


class ReplaceAllCommand(QUndoCommand):
    """Swap every row at once (import with "replace")."""

    def __init__(self, dataset: Dataset, rows: Sequence[Example], text: str = "Replace all rows") -> None:
        super().__init__(text)
        self._dataset = dataset
        self._new = _copies(rows)
        self._old = _copies(dataset.rows)

    def redo(self) -> None:
        self._dataset.reset(_copies(self._new))

    def undo(self) -> None:
        self._dataset.reset(_copies(self._old))


class ConfigCommand(QUndoCommand):
    """Replace the project's settings with ``new`` (a ``RunConfig.to_dict()``).

    Consecutive edits of the same field (``merge_key``, e.g. typing digits into one box) merge into one step.
    """

    def __init__(self, project: Project, new: dict[str, Any], text: str, merge_key: str | None = None) -> None:
        super().__init__(text)
        self._project = project
        self._old = project.config.to_dict()
        self._new = new
        self._key = merge_key

    def id(self) -> int:
        return _CONFIG_EDIT_ID if self._key else -1

    def mergeWith(self, other: QUndoCommand) -> bool:
        if not isinstance(other, ConfigCommand) or other._key != self._key:
            return False
        self._new = other._new
        return True

    def redo(self) -> None:
        self._project.config = RunConfig.from_dict(self._new)

    def undo(self) -> None:
        self._project.config = RunConfig.from_dict(self._old)
