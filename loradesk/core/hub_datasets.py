"""Rows from a Hugging Face dataset: a Hub id (``tatsu-lab/alpaca``), a local dataset folder, or one data file.

Loading goes through ``datasets.load_dataset`` (never running dataset scripts); the records then follow
exactly the column rules of dataset files (:func:`loradesk.core.formats.read_records`): prompt/completion
aliases, Alpaca, ShareGPT and OpenAI chat columns, or an explicit ``mapping``. Columns that cannot be
recognised raise :class:`~loradesk.core.formats.FormatError` with ``columns`` and a ``preview`` so the
caller can offer a mapping. Every other problem (no such dataset, gated, offline, no such split or
configuration) raises :class:`HubDatasetError` with a message meant for the user.

With a row ``limit`` (and for :func:`hub_dataset_preview`) the rows are streamed, so only the first rows
are downloaded; a full import downloads and prepares the split once (then it comes from the cache).
``datasets`` is imported inside the functions: importing this module stays light.
"""

from __future__ import annotations

import ast
import contextlib
import os
import re
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from loradesk.core import formats
from loradesk.core.chat_formats import Conversations
from loradesk.core.dataset import Example
from loradesk.core.formats import PREVIEW_ROWS, FormatError
from loradesk.core.wording import plural

#: ``progress(text, fraction)``: fraction in [0, 1] or None when unknown. It may raise to cancel.
Progress = Callable[[str, float | None], None]

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")
#: Data file suffix → ``datasets`` builder, for a single local file.
FILE_BUILDERS = {".json": "json", ".jsonl": "json", ".ndjson": "json", ".csv": "csv", ".tsv": "csv",
                 ".parquet": "parquet", ".arrow": "arrow"}
LOGIN_HINT = "log in with `huggingface-cli login` (or set the HF_TOKEN environment variable)"
_BATCH = 10_000


class HubDatasetError(FormatError):
    """A dataset could not be loaded. ``splits`` and ``configs`` list the choices when they are known."""

    def __init__(self, source: str, message: str, *, splits: Sequence[str] | None = None,
                 configs: Sequence[str] | None = None) -> None:
        super().__init__(source, message, label=source)
        self.splits = list(splits) if splits else None
        self.configs = list(configs) if configs else None


def load_hub_dataset(source: str, split: str = "train", name: str | None = None, revision: str | None = None,
                     mapping: dict[str, str] | None = None, limit: int | None = None,
                     progress: Progress | None = None, notes: list[str] | None = None,
                     conversations: Conversations = "whole") -> list[Example]:
    """Every row of ``split`` (the first ``limit`` rows when given) as :class:`Example` rows.

    ``source`` is a Hub dataset id, a local dataset folder, a folder written by ``save_to_disk`` or one
    data file (JSON/JSONL/CSV/Parquet/Arrow); ``name`` is the configuration, ``revision`` a branch, tag
    or commit (Hub only). ``mapping``, ``notes`` and ``conversations`` as in
    :func:`~loradesk.core.formats.read_dataset`.
    """
    report = progress or _quiet
    ref = _Ref.of(source, split, name, revision)
    if limit is not None:
        columns, records = _stream_head(ref, max(limit, 0), report)
        report(f"Reading {plural(len(records), 'row')} from {ref.label}…", None)
        return formats.read_records(records, columns, mapping, source=ref.label, notes=notes,
                                    conversations=conversations)
    ds = _load_split(ref, report)
    columns = list(ds.column_names)
    head = ds.select(range(min(len(ds), PREVIEW_ROWS))).to_list()
    formats.read_records(head, columns, mapping, source=ref.label,  # columns not recognised: fail now, with a preview
                         conversations=conversations)
    keep = formats.columns_used(columns, mapping, source=ref.label)
    ds = _images_as_flags(ds.select_columns(keep))
    records: list[dict[str, Any]] = []
    for start in range(0, len(ds), _BATCH):
        report(f"Reading rows from {ref.label}…", start / len(ds))
        records.extend(ds.select(range(start, min(start + _BATCH, len(ds)))).to_list())
    report(f"Checking {plural(len(records), 'row')} from {ref.label}…", 1.0)
    return formats.read_records(records, keep, mapping, source=ref.label, notes=notes,
                                conversations=conversations)


def hub_dataset_preview(source: str, split: str = "train", name: str | None = None, revision: str | None = None,
                        limit: int = PREVIEW_ROWS, progress: Progress | None = None,
                        ) -> tuple[list[str], list[dict[str, Any]]]:
    """The columns and the first ``limit`` records of ``split``, as they are (streamed: nothing else is read)."""
    return _stream_head(_Ref.of(source, split, name, revision), limit, progress or _quiet)


def is_local(source: str) -> bool:
    """Whether ``source`` names an existing local folder or file (else it is taken as a Hub id)."""
    return bool(source.strip()) and Path(source.strip()).expanduser().exists()


def source_label(source: str, split: str = "train") -> str:
    """How messages name a dataset split: ``tatsu-lab/alpaca (train)``, or ``my-folder (test)`` for a path."""
    source = source.strip()
    display = Path(source).expanduser().name if is_local(source) else source
    return f"{display} ({(split or '').strip() or 'train'})"


# --- internals -------------------------------------------------------------------------------------------
def _quiet(_text: str, _fraction: float | None = None) -> None:
    pass


class _Ref:
    """Where the rows come from, checked up front: a local path or a well-formed Hub id."""

    def __init__(self, source: str, split: str, name: str | None, revision: str | None) -> None:
        self.source, self.split = source, split
        self.name, self.revision = name or None, revision or None
        self.path = Path(source).expanduser() if is_local(source) else None
        self.display = self.path.name if self.path is not None else source
        self.label = source_label(source, split)

    @classmethod
    def of(cls, source: str, split: str, name: str | None, revision: str | None) -> _Ref:
        source, split = source.strip(), (split or "").strip() or "train"
        if not source:
            raise HubDatasetError("dataset", "no dataset given: enter a Hub id like tatsu-lab/alpaca or a folder")
        ref = cls(source, split, (name or "").strip(), (revision or "").strip())
        if ref.path is None and not HUB_ID.match(source):
            looks_local = source.startswith(("/", ".", "~")) or source.count("/") > 1 or "\\" in source
            raise HubDatasetError(source, "there is no such folder or file" if looks_local else
                                  "not a Hub dataset id (like tatsu-lab/alpaca) nor an existing folder or file")
        if ref.path is not None and ref.path.is_file() and ref.path.suffix.lower() not in FILE_BUILDERS:
            raise HubDatasetError(ref.display, "can't read this kind of file; use a folder or a "
                                  f"{', '.join(sorted(set(FILE_BUILDERS)))} file")
        return ref

    def load_args(self) -> tuple[list[Any], dict[str, Any]]:
        """Positional and keyword arguments for ``datasets.load_dataset`` (without split and streaming)."""
        kwargs: dict[str, Any] = {"trust_remote_code": False}
        cache = os.environ.get("HF_DATASETS_CACHE")
        if cache:  # honoured even when datasets was imported before the variable was set
            kwargs["cache_dir"] = cache
        if self.path is not None and self.path.is_file():
            kwargs["data_files"] = str(self.path)  # one file is one split: "train"
            builder = FILE_BUILDERS[self.path.suffix.lower()]
            if self.path.suffix.lower() == ".tsv":
                kwargs["delimiter"] = "\t"
            return [builder], kwargs
        if self.path is None and self.revision:
            kwargs["revision"] = self.revision
        return [str(self.path or self.source), self.name], kwargs

    def saved_to_disk(self) -> bool:
        return self.path is not None and self.path.is_dir() and any(
            (self.path / f).is_file() for f in ("state.json", "dataset_dict.json"))


def _load_split(ref: _Ref, report: Progress) -> Any:
    """The whole split as a ``datasets.Dataset`` (downloaded and prepared once, then cached)."""
    import datasets

    if ref.saved_to_disk():
        report(f"Opening {ref.display}…", None)
        with _errors(ref):
            loaded = datasets.load_from_disk(str(ref.path))
        if isinstance(loaded, datasets.DatasetDict):
            if ref.split not in loaded:
                raise _no_split(ref, list(loaded))
            return loaded[ref.split]
        if ref.split != "train":
            raise _no_split(ref, ["train"])
        return loaded
    report(f"Downloading and preparing {ref.display}…" if ref.path is None else f"Opening {ref.display}…", None)
    args, kwargs = ref.load_args()
    with _errors(ref):
        return datasets.load_dataset(*args, split=ref.split, **kwargs)


def _stream_head(ref: _Ref, limit: int, report: Progress) -> tuple[list[str], list[dict[str, Any]]]:
    """The columns and first ``limit`` records, streamed (a saved-to-disk folder is sliced instead)."""
    import datasets

    if ref.saved_to_disk():
        ds = _load_split(ref, report)
        return list(ds.column_names), ds.select(range(min(limit, len(ds)))).to_list()
    report(f"Opening {ref.display}…", None)
    args, kwargs = ref.load_args()
    with _errors(ref):
        ds = datasets.load_dataset(*args, split=ref.split, streaming=True, **kwargs)
        rows = iter(ds)
    records: list[dict[str, Any]] = []
    while len(records) < limit:
        with _errors(ref):
            rec = next(rows, None)
        if rec is None:
            break
        records.append(rec)
        if len(records) % 500 == 0:
            report(f"Reading rows from {ref.label}…", len(records) / limit)
    columns = list(ds.column_names or [])
    for rec in records:
        columns.extend(c for c in rec if c not in columns)
    return columns, records


def _images_as_flags(ds: Any) -> Any:
    """``ds`` with each image column (``images``/``image``) as true/false: whether the row has one.

    The rows only need to say that they reference images (for the import's note); the image data itself
    is never read into memory.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    from loradesk.core.screening import IMAGE_FIELDS

    for column in [c for c in ds.column_names if c.strip().lower() in IMAGE_FIELDS]:
        values = ds.with_format("arrow")[column]
        present = pc.is_valid(values)
        if pa.types.is_list(values.type) or pa.types.is_large_list(values.type):
            present = pc.and_(present, pc.greater(pc.list_value_length(values), 0))
        elif pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
            present = pc.and_(present, pc.greater(pc.utf8_length(values), 0))
        flags = pc.fill_null(present, False).to_pylist()
        ds = ds.remove_columns([column]).add_column(column, flags)
    return ds


def _no_split(ref: _Ref, splits: list[str]) -> HubDatasetError:
    listed = ", ".join(splits) or "none"
    return HubDatasetError(ref.display, f"there is no split '{ref.split}'; available splits: {listed}",
                           splits=splits)


def _listed(text: str, after: str) -> list[str]:
    """The Python list literal that follows ``after`` in ``text`` (``[]`` when there is none)."""
    found = re.search(re.escape(after) + r"\s*(\[[^\]]*\])", text)
    if not found:
        return []
    with contextlib.suppress(ValueError, SyntaxError):
        return [str(v) for v in ast.literal_eval(found.group(1))]
    return []


@contextlib.contextmanager
def _errors(ref: _Ref) -> Iterator[None]:
    """Turn what ``datasets`` and the Hub raise into one :class:`HubDatasetError` that says what to do."""
    from datasets import config
    from datasets.exceptions import DatasetGenerationError, DatasetNotFoundError

    where = ref.display
    offline = ref.path is None and config.HF_HUB_OFFLINE
    try:
        yield
    except FormatError:
        raise
    except DatasetNotFoundError as exc:
        text = str(exc)
        if "gated" in text:
            page = f"https://huggingface.co/datasets/{ref.source}"
            if "ask for access" in text:
                raise HubDatasetError(where, f"gated dataset: ask for access on {page} first") from exc
            raise HubDatasetError(where, f"gated dataset: accept its conditions on {page}, then {LOGIN_HINT}"
                                  ) from exc
        if "Revision" in text:
            raise HubDatasetError(where, f"there is no revision '{ref.revision}' of this dataset") from exc
        raise HubDatasetError(where, "no such dataset on the Hugging Face Hub (or it is private: "
                                      f"{LOGIN_HINT})") from exc
    except (ConnectionError, FileNotFoundError) as exc:
        if offline or "OfflineModeIsEnabled" in str(exc):
            raise HubDatasetError(where, "can't reach the Hugging Face Hub: offline mode is on (HF_HUB_OFFLINE). "
                                         "Datasets loaded before come from the cache; local folders always work"
                                  ) from exc
        if isinstance(exc, ConnectionError):
            raise HubDatasetError(where, "can't reach the Hugging Face Hub; check the internet connection and "
                                         "try again") from exc
        # no data files in a folder, or a data file that went away
        raise HubDatasetError(where, f"no data files found: {exc}") from exc
    except OSError as exc:  # the Hub answered with an HTTP error (rate limit, server error, ...)
        status = getattr(getattr(exc, "response", None), "status_code", None)
        if status in (401, 403):
            raise HubDatasetError(where, f"access denied (HTTP {status}): {LOGIN_HINT}") from exc
        raise HubDatasetError(where, f"could not load the dataset: {exc}") from exc
    except ValueError as exc:
        text = str(exc)
        if text.startswith(("Unknown split", "Bad split")):
            splits = _listed(text, "Should be one of") or _listed(text, "Available splits:")
            raise _no_split(ref, splits) from exc
        if "Config name is missing" in text:
            configs = _listed(text, "available configs:")
            raise HubDatasetError(where, "this dataset has several configurations; enter one of: "
                                  f"{', '.join(configs)}", configs=configs) from exc
        if "BuilderConfig" in text and "not found" in text:
            configs = _listed(text, "Available:")
            raise HubDatasetError(where, f"there is no configuration '{ref.name}'; available: "
                                  f"{', '.join(configs) or 'none'}", configs=configs) from exc
        raise HubDatasetError(where, f"could not load the dataset: {text}") from exc
    except RuntimeError as exc:
        if "scripts are no longer supported" not in str(exc):
            raise
        raise HubDatasetError(where, "this dataset needs a loading script, which is never run; try the "
                                      "revision refs/convert/parquet (the Hub's Parquet copy)") from exc
    except DatasetGenerationError as exc:
        cause = exc.__cause__ or exc
        raise HubDatasetError(where, f"could not read the data files: {cause}") from exc
