"""Crash-safe file writes: write a temporary file (or folder) beside the target, then rename it into place."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

TEMP_SUFFIX = ".tmp"
STALE_AFTER_S = 3600.0
_TEMP_NAME = re.compile(r"^\.(.+)\.[A-Za-z0-9_]{6,}\.tmp$")


def umask() -> int:
    """The process umask, read without changing it (``os.umask`` would race with other threads)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


def default_mode(folder: bool = False) -> int:
    """The mode ``open()`` (0666) or ``mkdir()`` (0777) would give a new file or folder under the umask."""
    return (0o777 if folder else 0o666) & ~umask()


@contextlib.contextmanager
def atomic_open(path: Path, mode: str = "w", encoding: str | None = "utf-8", newline: str | None = None
                ) -> Iterator[IO]:
    """Open a temporary file beside ``path``; on success it replaces ``path`` atomically.

    On any error the temporary file is removed and ``path`` is left exactly as it was. A new file gets
    the mode ``open()`` would give it; an existing one keeps its mode. When ``path`` is a symlink, the
    file it points to is replaced and the link is kept.
    """
    kwargs = {} if "b" in mode else {"encoding": encoding, "newline": newline}
    with atomic_path(path) as tmp, open(tmp, mode, **kwargs) as fh:
        yield fh


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """The path of a new, empty temporary file beside ``path``, for writers that open files by name.

    When the block ends without error the file is synced to disk and renamed over ``path`` (same rules as
    :func:`atomic_open`: mode, symlinks); on any error it is removed and ``path`` is left as it was.
    """
    path = Path(os.path.realpath(path)) if Path(path).is_symlink() else Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        file_mode = path.stat().st_mode & 0o7777
    except FileNotFoundError:
        file_mode = default_mode()
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    tmp = Path(name)
    try:
        os.fchmod(fd, file_mode)
        os.close(fd)
        yield tmp
        fd = os.open(tmp, os.O_RDWR)  # writable: fsync needs that on some systems
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def temp_dir_beside(dest: Path) -> Path:
    """A new, empty folder beside ``dest`` (``.NAME.XXXX.tmp``) with normal folder permissions.

    Write there, then :func:`move_into_place`; :func:`remove_stale_temps` clears one left by a kill.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=TEMP_SUFFIX, dir=dest.parent))
    os.chmod(tmp, default_mode(folder=True))
    return tmp


def move_into_place(tmp: Path, dest: Path) -> Path:
    """Give everything in ``tmp`` normal permissions and rename it to ``dest``.

    A missing or empty ``dest`` is replaced by the folder in one rename. A folder that already holds
    files keeps the ones not written here; the new files replace their namesakes one by one.
    """
    tmp, dest = Path(tmp), Path(dest)
    for root, dirs, files in os.walk(tmp):
        for name in dirs:
            os.chmod(os.path.join(root, name), default_mode(folder=True))
        for name in files:
            os.chmod(os.path.join(root, name), default_mode())
    if dest.is_dir() and not dest.is_symlink() and not any(dest.iterdir()):
        dest.rmdir()
    if not dest.exists():
        os.replace(tmp, dest)
        return dest
    if not dest.is_dir():
        raise NotADirectoryError(f"{dest}: exists and is not a folder")
    for child in sorted(tmp.iterdir()):
        target = dest / child.name
        if child.is_dir() and target.is_dir():
            shutil.rmtree(target)
        os.replace(child, target)
    tmp.rmdir()
    return dest


def remove_stale_temps(folder: Path, older_than_s: float = STALE_AFTER_S) -> list[Path]:
    """Remove ``.NAME.XXXX.tmp`` files and folders in ``folder`` untouched for ``older_than_s`` seconds.

    They are what :func:`atomic_open` and :func:`temp_dir_beside` leave when the process is killed. The age
    guard (the newest modification anywhere inside) keeps a concurrent writer's temporary file safe.
    Errors are ignored: cleaning up must never stop the app. Returns what was removed.
    """
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    now = time.time()
    for entry in entries:
        if not _TEMP_NAME.match(entry.name):
            continue
        path = Path(entry.path)
        try:
            if now - _newest_mtime(path) < older_than_s:
                continue
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(path)
            else:
                path.unlink()
            removed.append(path)
        except OSError:
            continue
    return removed


def _newest_mtime(path: Path) -> float:
    newest = path.lstat().st_mtime
    if path.is_dir() and not path.is_symlink():
        for root, dirs, files in os.walk(path):
            for name in (*files, *dirs):
                with contextlib.suppress(OSError):
                    newest = max(newest, os.lstat(os.path.join(root, name)).st_mtime)
    return newest


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (UTF-8)."""
    with atomic_open(path) as fh:
        fh.write(text)


class StorageError(OSError):
    """Writing failed for a reason on the disk's side (full, read-only, no permission); ``str()`` is one line
    naming the file: ``/path/model.safetensors: no space left on device``."""

    def __str__(self) -> str:
        return str(self.strerror)


_REASONS = {
    errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded",
    errno.EFBIG: "file too large (a file size limit was reached)", errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted", errno.EROFS: "read-only file system",
}
# What libraries that do not raise OSError (safetensors, torch.save) put in their messages instead.
_TEXTS = {
    "no space left on device": errno.ENOSPC, "os error 28": errno.ENOSPC, "disk quota exceeded": errno.EDQUOT,
    "file too large": errno.EFBIG, "os error 27": errno.EFBIG, "permission denied": errno.EACCES,
    "read-only file system": errno.EROFS,
}


def storage_error(exc: BaseException, path: str | Path | None = None) -> StorageError | None:
    """A one-line :class:`StorageError` when ``exc`` (or what caused it) is a disk-side write failure, else None.

    It names the file the error names, else ``path`` (the file or folder being written).
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, StorageError):
            return current
        code = current.errno if isinstance(current, OSError) else None
        if code not in _REASONS:
            text = str(current).lower()
            code = next((c for needle, c in _TEXTS.items() if needle in text), None)
        if code in _REASONS:
            named = current.filename if isinstance(current, OSError) and current.filename else path
            if named:  # a temporary file or folder of ours: name what it was going to become
                temp = _TEMP_NAME.match(Path(named).name)
                named = Path(named).parent / temp.group(1) if temp else named
            where = f"{named}: " if named else ""
            return StorageError(code, f"{where}{_REASONS[code]}")
        current = current.__cause__ or current.__context__
    return None


@contextlib.contextmanager
def storage_errors_named(path: str | Path | Callable[[], str | Path | None] | None) -> Iterator[None]:
    """Turn a disk-side write failure inside the block into a one-line :class:`StorageError` naming the file
    (or ``path``, or what ``path()`` returns then); other errors pass unchanged."""
    try:
        yield
    except Exception as exc:
        error = storage_error(exc, path() if callable(path) else path)
        if error is None:
            raise
        raise error from exc


def iter_json(value: Any, chunk: int = 1000) -> Iterator[str]:
    """Compact ``json.dumps`` (no ASCII escaping) in pieces: long lists are encoded ``chunk`` items at a time.

    The C encoder holds the GIL for a whole call, so one ``dumps`` of a 100,000-row project on a worker
    thread froze the window for ~300 ms; piece by piece, the GUI thread gets its turn between chunks.
    """
    if isinstance(value, dict):
        yield "{"
        for i, (key, item) in enumerate(value.items()):
            yield ("," if i else "") + _dumps(str(key)) + ":"
            yield from iter_json(item, chunk)
        yield "}"
    elif isinstance(value, list | tuple) and len(value) > chunk:
        yield "["
        for start in range(0, len(value), chunk):
            yield ("," if start else "") + _dumps(list(value[start:start + chunk]))[1:-1]
        yield "]"
    else:
        yield _dumps(value)


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
