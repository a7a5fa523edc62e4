"""Run folders opened from elsewhere (File ▸ Open Run…): a run trained by another process, machine or cluster
job, on a mounted filesystem or copied here.

Kept in one small JSON file in the app's data folder (``opened_runs.json``), never in the run folder:

- which run folders were opened, so they are listed again after a restart (folders that are gone are dropped);
- for a run whose recorded base model (``base_model_dir`` in its run file) is not on this machine, the model
  folder the user chose instead. :func:`loradesk.core.runs.read_run` applies it, so Compare, the exports and
  the CLI load that model.

The foreign run file is never rewritten: the folder may be read-only, shared with its other users, or still
being written by its training process, which rewrites the run file when it ends.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from loradesk.core.fileio import atomic_write_text
from loradesk.core.paths import app_home

STORE_FILE = "opened_runs.json"
RUN_FILE = "loradesk_run.json"  # the same name as runs.RUN_FILE (runs imports this module)
#: The most opened folders remembered; the oldest are forgotten first.
MAX_OPENED = 50


def store_path() -> Path:
    """The store's file in the app's data folder."""
    return app_home() / STORE_FILE


def _key(run_dir: str | Path) -> str:
    return str(Path(run_dir).expanduser().absolute())


def _load() -> list[dict[str, Any]]:
    try:
        data = json.loads(store_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):  # none yet, or unreadable: start afresh rather than fail the app
        return []
    entries = data.get("runs") if isinstance(data, dict) else None
    return [e for e in entries or [] if isinstance(e, dict) and isinstance(e.get("path"), str)]


def _save(entries: list[dict[str, Any]]) -> None:
    store_path().parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(store_path(), json.dumps({"runs": entries[:MAX_OPENED]}, indent=2) + "\n")


def remember(run_dir: str | Path) -> None:
    """List ``run_dir`` first among the opened runs (keeping a base model chosen for it)."""
    key = _key(run_dir)
    entries = _load()
    entry = next((e for e in entries if e["path"] == key), {"path": key})
    _save([entry] + [e for e in entries if e["path"] != key])


def remembered() -> list[Path]:
    """The opened run folders, newest first; those that no longer hold a run file are forgotten."""
    entries = _load()
    kept = [e for e in entries if (Path(e["path"]) / RUN_FILE).is_file()]
    if len(kept) != len(entries):
        _save(kept)
    return [Path(e["path"]) for e in kept]


def forget(run_dir: str | Path) -> None:
    """Stop listing ``run_dir`` (its folder is left as it is)."""
    key = _key(run_dir)
    _save([e for e in _load() if e["path"] != key])


def base_model(run_dir: str | Path) -> str:
    """The model folder chosen for ``run_dir``'s missing base model ("" when none was)."""
    key = _key(run_dir)
    return next((str(e.get("base_model") or "") for e in _load() if e["path"] == key), "")


def set_base_model(run_dir: str | Path, model_dir: str | Path) -> None:
    """Use ``model_dir`` as ``run_dir``'s base model on this machine (the run is remembered as opened too)."""
    key = _key(run_dir)
    entries = _load()
    entry = next((e for e in entries if e["path"] == key), {"path": key})
    entry["base_model"] = str(Path(model_dir).expanduser().absolute())
    _save([entry] + [e for e in entries if e["path"] != key])
