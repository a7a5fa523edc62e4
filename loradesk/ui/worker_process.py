"""What runs inside the warm worker process of :mod:`loradesk.ui.jobs` (no Qt here: the process never loads it).

Rows reach the process in chunks (:meth:`loradesk.ui.jobs.TaskState.upload`): pickling 100,000 rows in one
piece is one C call that holds the GUI process's interpreter lock for a tenth of a second or more. Each
chunk is kept here under its ``(channel, start, version)``, never overwritten, so a later upload of the same
rows (the next keystroke of a search, the next check after one edit) sends only the chunks that changed,
and a job whose upload raced with another one's still reads exactly the rows it sent.
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

#: Added to the worker's niceness on Linux and macOS (higher: less processor time while the window wants it).
BACKGROUND_NICE = 10
#: Rows kept in the process over all chunks; the least recently used chunks go first.
MAX_KEPT_ITEMS = 400_000

_CHUNKS: OrderedDict[tuple[str, int, int], list[Any]] = OrderedDict()
_KEPT = 0


class UploadLost(LookupError):
    """A chunk an :class:`Uploaded` names is no longer in the process (dropped for space, or a new process)."""

    def __init__(self, uploaded: Uploaded, missing: list[int]) -> None:
        super().__init__(f"{len(missing)} chunk(s) of {uploaded.channel!r} are no longer in the worker process")
        self.uploaded = uploaded
        self.missing = missing  # indexes into ``uploaded.chunks``

    def __reduce__(self) -> tuple[Any, ...]:
        return (UploadLost, (self.uploaded, self.missing))


@dataclass(frozen=True)
class Uploaded:
    """A handle on items sent to the process; passed to a process call, it arrives there as the list.

    ``source`` (the items and their encoding, to send a lost chunk again) stays in the GUI process.
    """

    channel: str
    chunks: tuple[tuple[int, int], ...]  # (start, version) of each chunk, in order
    total: int
    source: Any = field(default=None, compare=False, repr=False)

    def __reduce__(self) -> tuple[Any, ...]:
        return (Uploaded, (self.channel, self.chunks, self.total))


def init() -> None:
    """Runs as the worker process starts. Ctrl+C in a terminal reaches the whole process group, and the app
    (not its helper) decides what it means, so the worker leaves SIGINT alone. It runs at a lower priority,
    so on a busy or single core the window gets the processor first (a tick late by a slice of background
    work is a stutter)."""
    import os
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with contextlib.suppress(OSError):
        if hasattr(os, "nice"):  # the window's niceness + BACKGROUND_NICE, whichever thread started the process
            target = min(19, os.getpriority(os.PRIO_PROCESS, os.getppid()) + BACKGROUND_NICE)
            os.nice(max(0, target - os.nice(0)))
        else:  # Windows
            import psutil

            psutil.Process().nice(psutil.BELOW_NORMAL_PRIORITY_CLASS)


def warm() -> int:
    """Runs first in the worker process: imports the core modules its jobs use."""
    import loradesk.core.checks
    import loradesk.core.dataset
    import loradesk.core.find_replace
    import loradesk.core.formats
    import loradesk.ui.check_transfer  # noqa: F401

    return 0


def stage(channel: str, start: int, version: int, items: list[Any]) -> None:
    """Keep one chunk of items (runs in the worker process)."""
    global _KEPT
    key = (channel, start, version)
    if key not in _CHUNKS:
        _CHUNKS[key] = items
        _KEPT += len(items)
    _CHUNKS.move_to_end(key)
    while _KEPT > MAX_KEPT_ITEMS and len(_CHUNKS) > 1:
        _, dropped = _CHUNKS.popitem(last=False)
        _KEPT -= len(dropped)


def forget(channel: str) -> None:
    """Drop every chunk of ``channel`` (a one-off upload, once used)."""
    global _KEPT
    for key in [k for k in _CHUNKS if k[0] == channel]:
        _KEPT -= len(_CHUNKS.pop(key))


def _resolve(value: Any) -> Any:
    if not isinstance(value, Uploaded):
        return value
    keys = [(value.channel, start, version) for start, version in value.chunks]
    missing = [n for n, key in enumerate(keys) if key not in _CHUNKS]
    if missing:
        raise UploadLost(value, missing)
    out: list[Any] = []
    for key in keys:
        _CHUNKS.move_to_end(key)
        out.extend(_CHUNKS[key])
    return out


#: Long results kept for :func:`take` (the most recent few; one left behind by a stopped job goes in time).
_PARKED: OrderedDict[str, list[Any]] = OrderedDict()
MAX_PARKED = 4


def call_parking(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], one_off: tuple[str, ...],
                 park: str) -> tuple[Any, int]:
    """:func:`call` for an ``fn`` that returns ``(head, items)``: answers ``(head, len(items))`` and keeps the
    items under ``park`` for :func:`take`, so a long list comes back a chunk at a time."""
    head, items = call(fn, args, kwargs, one_off)
    _PARKED[park] = list(items)
    while len(_PARKED) > MAX_PARKED:
        _PARKED.popitem(last=False)
    return head, len(items)


def take(park: str, start: int, count: int) -> list[Any]:
    """Items ``start:start + count`` of a parked list; the last chunk releases it."""
    items = _PARKED[park]
    if start + count >= len(items):
        del _PARKED[park]
    return items[start:start + count]


def call(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], one_off: tuple[str, ...]) -> Any:
    """``fn(*args, **kwargs)`` with every :class:`Uploaded` replaced by its items (runs in the worker process).

    The chunks of the ``one_off`` channels are dropped afterwards.
    """
    try:
        return fn(*[_resolve(a) for a in args], **{k: _resolve(v) for k, v in kwargs.items()})
    finally:
        for channel in one_off:
            forget(channel)


#: The channel dataset rows are uploaded on (by checks and searches alike, all as
#: :func:`loradesk.core.dataset.compact_row`: conversations keep their turns).
ROWS_CHANNEL = "dataset-rows"
