"""The user's project: the dataset, the run settings and the held-out questions, in one file.

A project file (suffix ``.loradesk``) is a single JSON document written atomically::

    {"format": "loradesk-project", "version": 1, "dataset": [records], "config": {...}, "heldout": path|null}

Unsaved work is never lost: :meth:`Project.autosave` writes a recovery file into the data root
(:func:`loradesk.core.paths.app_home`); at the next start :func:`find_recovery` reports it and
:func:`recover` brings it back. A successful save or a deliberate discard removes it.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from loradesk.core.config import ConfigError, RunConfig
from loradesk.core.dataset import Dataset, DatasetEvent, Example, RecordError, row_from_record
from loradesk.core.fileio import (
    atomic_open,
    atomic_write_text,
    iter_json,
    remove_stale_temps,
    storage_errors_named,
)
from loradesk.core.jsonsafe import TOO_BIG, JSONLimitError, loads, syntax_error
from loradesk.core.paths import app_home, sample_data_dir
from loradesk.core.tokenize import LONE_SURROGATE
from loradesk.core.wording import brief

PROJECT_SUFFIX = ".loradesk"
PROJECT_FORMAT = "loradesk-project"
PROJECT_VERSION = 1
RECOVERY_FORMAT = "loradesk-recovery"
RECOVERY_NAME = "recovery.loradesk.json"

@dataclass(frozen=True)
class ProjectEvent:
    """Something about the project changed (one of the subclasses below; rows announce themselves
    through :class:`~loradesk.core.dataset.DatasetEvent`)."""


@dataclass(frozen=True)
class DirtyChanged(ProjectEvent):
    """The project turned dirty (unsaved changes) or clean."""

    dirty: bool


@dataclass(frozen=True)
class ConfigChanged(ProjectEvent):
    """The settings were replaced or edited in place."""


@dataclass(frozen=True)
class PathChanged(ProjectEvent):
    """The project now lives at ``path`` (saved under a new name, or another project was opened)."""

    path: Path | None


@dataclass(frozen=True)
class HeldoutChanged(ProjectEvent):
    """The held-out question file is now ``path``."""

    path: Path | None


@dataclass(frozen=True)
class ProjectLoaded(ProjectEvent):
    """Another project replaced this one's content (New, Open, recovery): everything may have changed."""


ProjectListener = Callable[[ProjectEvent], None]


class ProjectError(ValueError):
    """A project file could not be read; names the file, the row (1-based, if any) and the field."""

    def __init__(self, path: str | Path, field: str | None, message: str, row: int | None = None) -> None:
        self.path = Path(path)
        self.field = field
        self.row = row
        self.message = message
        where = [str(path)]
        if row is not None:
            where.append(f"row {row}")
        if field:
            where.append(f"field '{field}'")
        super().__init__(f"{', '.join(where)}: {message}")


class Project:
    """Dataset + settings + held-out file, with a dirty flag and change notifications."""

    def __init__(self, dataset: Dataset | None = None, config: RunConfig | None = None,
                 path: str | Path | None = None, heldout_path: str | Path | None = None) -> None:
        self.dataset: Dataset = dataset if dataset is not None else Dataset()
        self._config = config if config is not None else RunConfig()
        self._path = Path(path) if path else None
        self._heldout = Path(heldout_path) if heldout_path else None
        self._dirty = False
        self._listeners: list[ProjectListener] = []
        self.dataset.subscribe(self._on_dataset_event)

    # --- observation -------------------------------------------------------------------------------
    def subscribe(self, listener: ProjectListener) -> Callable[[], None]:
        """Call ``listener(event)`` (a :class:`ProjectEvent`) after each change; returns a function that
        unsubscribes it.

        Dataset row changes are not repeated here (subscribe to :attr:`dataset` for those); they only
        show up as a :class:`DirtyChanged` event when the project turns dirty.
        """
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def _emit(self, event: ProjectEvent) -> None:
        for listener in list(self._listeners):
            listener(event)

    def _on_dataset_event(self, _event: DatasetEvent) -> None:
        self.mark_dirty()

    # --- state -------------------------------------------------------------------------------------
    @property
    def path(self) -> Path | None:
        """Where the project was last saved or loaded from (``None`` for a new project)."""
        return self._path

    @property
    def name(self) -> str:
        return self._path.stem if self._path else "Untitled"

    @property
    def dirty(self) -> bool:
        """True when there are changes not yet saved to :attr:`path`."""
        return self._dirty

    def mark_dirty(self) -> None:
        if not self._dirty:
            self._dirty = True
            self._emit(DirtyChanged(True))

    def _set_clean(self) -> None:
        if self._dirty:
            self._dirty = False
            self._emit(DirtyChanged(False))

    @property
    def config(self) -> RunConfig:
        return self._config

    @config.setter
    def config(self, value: RunConfig) -> None:
        self._config = value
        self.config_changed()

    def config_changed(self) -> None:
        """Tell the project that :attr:`config` was edited in place."""
        self.mark_dirty()
        self._emit(ConfigChanged())

    @property
    def heldout_path(self) -> Path | None:
        """A held-out question file (prompt + expected phrase) used to score runs."""
        return self._heldout

    @heldout_path.setter
    def heldout_path(self, value: str | Path | None) -> None:
        new = Path(value) if value else None
        if new != self._heldout:
            self._heldout = new
            self.mark_dirty()
            self._emit(HeldoutChanged(new))

    # --- serialisation -----------------------------------------------------------------------------
    def to_dict(self, records: bool = True) -> dict[str, Any]:
        """The project as JSON-ready data; ``records=False`` keeps the rows as the (immutable) rows themselves,
        a cheap snapshot that :func:`write_recovery` turns into records on its own thread."""
        return {
            "format": PROJECT_FORMAT,
            "version": PROJECT_VERSION,
            "dataset": self.dataset.records() if records else list(self.dataset.rows),
            "config": self.config.to_dict(),
            "heldout": str(self._heldout) if self._heldout else None,
        }

    @classmethod
    def from_dict(cls, data: Any, source: str | Path) -> Project:
        """Build a project from parsed JSON; errors name ``source``, the row and the field."""
        if not isinstance(data, dict):
            raise ProjectError(source, None, "expected a JSON object")
        if data.get("format") != PROJECT_FORMAT:
            raise ProjectError(source, "format", f"not a LoRA Desk project (expected {PROJECT_FORMAT!r})")
        version = data.get("version")
        if not isinstance(version, int) or version > PROJECT_VERSION:
            raise ProjectError(source, "version", f"unsupported version {brief(version)} "
                                                  f"(this LoRA Desk reads up to {PROJECT_VERSION})")
        unknown = sorted(set(data) - {"format", "version", "dataset", "config", "heldout"})
        if unknown:
            raise ProjectError(source, unknown[0], "unknown key")
        rows = _rows_from_records(data.get("dataset", []), source)
        try:
            config = RunConfig.from_dict(data.get("config", {}))
        except ConfigError as exc:
            if len(exc.problems) == 1:
                name, message = exc.problems[0]
                raise ProjectError(source, f"config.{name}", message) from None
            raise ProjectError(source, None, "invalid settings: " + "; ".join(
                f"config.{name}: {message}" for name, message in exc.problems)) from None
        heldout = data.get("heldout")
        if heldout is not None and not isinstance(heldout, str):
            raise ProjectError(source, "heldout", "expected a file path or null")
        heldout_path = None
        if heldout:
            heldout_path = Path(heldout)
            if not heldout_path.is_absolute():
                heldout_path = Path(source).resolve().parent / heldout_path
        return cls(Dataset(rows), config, heldout_path=heldout_path)

    def save(self, path: str | Path | None = None) -> Path:
        """Write the project atomically to ``path`` (default: :attr:`path`); the project becomes clean."""
        target = Path(path) if path is not None else self._path
        if target is None:
            raise ValueError("the project has no file yet: give a path")
        with storage_errors_named(target):
            atomic_write_text(target, _utf8_safe(json.dumps(self.to_dict(), indent=1, ensure_ascii=False)) + "\n")
        if target != self._path:
            self._path = target
            self._emit(PathChanged(target))
        self._set_clean()
        discard_recovery(keep_backup=False)
        return target

    @classmethod
    def load(cls, path: str | Path) -> Project:
        """Read a project file; raises :class:`ProjectError` naming the file, row and field."""
        path = Path(path)
        remove_stale_temps(path.parent)  # what a killed save left beside it
        project = cls.from_dict(_read_json(path), path)
        project._path = path
        return project

    @classmethod
    def new_default(cls) -> Project:
        """A new, untitled project holding the shipped sample dataset and held-out questions."""
        folder = sample_data_dir()
        sample = folder / "sample.json"
        rows = _rows_from_records(_read_json(sample), sample)
        heldout = folder / "sample_heldout.json"
        return cls(Dataset(rows), RunConfig(), heldout_path=heldout if heldout.is_file() else None)

    def replace_with(self, other: Project) -> None:
        """Take over ``other``'s rows, settings, file and held-out path (open/new in the same window).

        Listeners keep working: the dataset emits one reset, then :class:`ConfigChanged`,
        :class:`HeldoutChanged`, :class:`PathChanged` and :class:`ProjectLoaded` follow. Takes ``other``'s
        dirty state.
        """
        self.dataset.reset(other.dataset.copy().rows)
        self._config = other.config
        self._heldout = other.heldout_path
        self._path = other.path
        for event in (ConfigChanged(), HeldoutChanged(self._heldout), PathChanged(self._path)):
            self._emit(event)
        if other.dirty:
            self.mark_dirty()
        else:
            self._set_clean()
        self._emit(ProjectLoaded())

    # --- recovery ----------------------------------------------------------------------------------
    def recovery_snapshot(self) -> dict[str, Any] | None:
        """What the recovery file would hold now (``None`` when nothing is unsaved).

        Cheap and safe to hand to another thread: rows are immutable and the dict holds only plain values.
        """
        if not self._dirty:
            return None
        project = self.to_dict(records=False)
        return {"format": RECOVERY_FORMAT, "version": PROJECT_VERSION,
                "saved": datetime.now().astimezone().isoformat(timespec="seconds"),
                "source": str(self._path) if self._path else None, "project": project}

    def autosave(self) -> Path | None:
        """Write the recovery file if there are unsaved changes; returns its path (or ``None``)."""
        snapshot = self.recovery_snapshot()
        return write_recovery(snapshot) if snapshot is not None else None


_RECOVERY_LOCK = threading.Lock()


def write_recovery(snapshot: dict[str, Any]) -> Path:
    """Write a :meth:`Project.recovery_snapshot` atomically (any thread; encoded in pieces)."""
    target = recovery_path()
    project = snapshot.get("project")
    if isinstance(project, dict):
        rows = project.get("dataset") or []
        records = [r.to_record() if isinstance(r, Example) else r for r in rows]
        snapshot = {**snapshot, "project": {**project, "dataset": records}}
    with _RECOVERY_LOCK, atomic_open(target) as fh:
        for piece in iter_json(snapshot):
            fh.write(_utf8_safe(piece))
        fh.write("\n")
    return target


@dataclass(frozen=True)
class RecoveryInfo:
    """What a recovery file holds: when it was written, the project it came from, how many rows."""

    path: Path
    saved: str
    source: Path | None
    rows: int


def recovery_path(backup: bool = False) -> Path:
    """The autosave file for unsaved work (``backup``: the copy :func:`discard_recovery` keeps)."""
    path = app_home() / RECOVERY_NAME
    return path.with_name(path.name + ".bak") if backup else path


def find_recovery(backup: bool = False) -> RecoveryInfo | None:
    """Describe the recovery file left by a session that did not close cleanly (or its backup), if any.

    Called at start: it also clears temporary files a killed write left in the data folder.
    """
    path = recovery_path(backup)
    remove_stale_temps(path.parent)
    if not path.is_file():
        return None
    try:
        data = _read_json(path)
        source = data.get("source")
        rows = data["project"]["dataset"]
        return RecoveryInfo(path, str(data.get("saved", "")), Path(source) if source else None, len(rows))
    except (ProjectError, AttributeError, KeyError, TypeError):
        return RecoveryInfo(path, "", None, 0)


def recover(backup: bool = False) -> Project:
    """Load the recovery file (or its backup) as a dirty project pointing at the file it came from."""
    path = recovery_path(backup)
    data = _read_json(path)
    if not isinstance(data, dict) or data.get("format") != RECOVERY_FORMAT:
        raise ProjectError(path, "format", f"not a LoRA Desk recovery file (expected {RECOVERY_FORMAT!r})")
    project = Project.from_dict(data.get("project"), path)
    source = data.get("source")
    if source is not None and not isinstance(source, str):
        raise ProjectError(path, "source", "expected a file path or null")
    project._path = Path(source) if source else None
    project.mark_dirty()
    return project


def discard_recovery(keep_backup: bool = True) -> None:
    """Remove the recovery file; with ``keep_backup`` it is kept once more as ``….bak``."""
    path = recovery_path()
    with _RECOVERY_LOCK:  # never between the steps of a write on another thread
        if keep_backup and path.is_file():
            os.replace(path, recovery_path(backup=True))
        else:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


def _utf8_safe(text: str) -> str:
    """JSON text with lone surrogates (a row imported from a broken ``\\ud800`` escape) written as escapes,
    so the file can be UTF-8 and reads back the same; other text is returned as it is."""
    if LONE_SURROGATE.search(text) is None:
        return text
    return LONE_SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def _read_json(path: Path) -> Any:
    try:
        text = path.read_bytes().decode("utf-8-sig")  # an editor's BOM is fine
    except FileNotFoundError:
        raise ProjectError(path, None, "file not found") from None
    except UnicodeDecodeError as exc:
        line = exc.object.count(b"\n", 0, exc.start) + 1
        raise ProjectError(path, None, f"not UTF-8 text (byte 0x{exc.object[exc.start]:02x} on line {line})"
                           ) from None
    except OSError as exc:
        raise ProjectError(path, None, f"cannot read the file ({exc.strerror or exc})") from None
    except MemoryError:
        raise ProjectError(path, None, f"the file is {TOO_BIG}") from None
    try:
        return loads(text)
    except json.JSONDecodeError as exc:
        raise ProjectError(path, None, f"invalid JSON at line {exc.lineno}, column {exc.colno}: {syntax_error(exc)}"
                           ) from None
    except JSONLimitError as exc:
        raise ProjectError(path, None, f"the JSON is {exc}") from None


def _rows_from_records(records: Any, source: str | Path) -> list[Example]:
    """Parse the rows of :meth:`Example.to_record` (pairs and conversations) with row/field-precise errors."""
    if not isinstance(records, list):
        raise ProjectError(source, "dataset", "expected a list of rows")
    rows: list[Example] = []
    for i, rec in enumerate(records, start=1):
        try:
            rows.append(row_from_record(rec))
        except RecordError as exc:
            raise ProjectError(source, exc.field, exc.message, row=i) from None
    return rows
