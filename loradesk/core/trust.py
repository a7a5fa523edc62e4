"""Whether a model's own Python code may run: the one place that decides.

transformers runs Python files shipped with a model (``auto_map`` in its config) when asked to
``trust_remote_code``. LoRA Desk asks only for models the user trusted in the app's own trust store
(``app_home()/trusted_models.json``), never because a project, config or run file says so. The store is
keyed by the model folder and records the SHA-256 of every ``.py`` file it trusted: a changed or added
file makes the model untrusted again.
"""

from __future__ import annotations

import hashlib
import json
import threading
from datetime import datetime
from pathlib import Path
from typing import Any

from loradesk.core.paths import app_home

STORE_NAME = "trusted_models.json"
STORE_FORMAT = "loradesk-trust"
_LOCK = threading.Lock()


class UntrustedCodeError(RuntimeError):
    """A model needs its own Python code, and the user has not trusted it; the message is one line."""


def store_path() -> Path:
    """The trust store file in the user data folder."""
    return app_home() / STORE_NAME


def model_key(folder: Path) -> str:
    """The store key of a model folder: its resolved absolute path."""
    return str(Path(folder).expanduser().resolve())


def python_files(folder: Path) -> dict[str, str]:
    """``{relative path: sha256}`` of every ``.py`` file in a model folder (caches and hidden folders skipped)."""
    folder = Path(folder)
    out: dict[str, str] = {}
    if not folder.is_dir():
        return out
    for path in sorted(folder.rglob("*.py")):
        rel = path.relative_to(folder)
        if any(part.startswith(".") or part == "__pycache__" for part in rel.parts) or not path.is_file():
            continue
        out[rel.as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def _read_store() -> dict[str, Any]:
    try:
        data = json.loads(store_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    models = data.get("models") if isinstance(data, dict) else None
    return models if isinstance(models, dict) else {}


def is_trusted(folder: Path) -> bool:
    """True when the user trusted this model folder and its Python files are exactly the ones trusted."""
    entry = _read_store().get(model_key(folder))
    return isinstance(entry, dict) and entry.get("files") == python_files(folder)


def trust_model(folder: Path, label: str = "") -> dict[str, str]:
    """Record that the user trusts the Python files now in ``folder``; returns them (path → sha256)."""
    from loradesk.core.fileio import atomic_write_text

    files = python_files(folder)
    with _LOCK:
        models = _read_store()
        models[model_key(folder)] = {"files": files, "label": label,
                                     "trusted": datetime.now().astimezone().isoformat(timespec="seconds")}
        atomic_write_text(store_path(), json.dumps({"format": STORE_FORMAT, "version": 1, "models": models},
                                                   indent=2) + "\n")
    return files


def remote_code_allowed(folder: Path, requested: bool = True) -> bool:
    """THE decision: may transformers run the Python files of the model in ``folder``?

    Only when the settings ask for it (``requested``) and the user trusted exactly these files in the
    trust store. What a project, config or run file says can only narrow this, never widen it.
    """
    return bool(requested) and is_trusted(folder)


def warning_text(folder: Path, files: dict[str, str] | list[str] | None = None) -> str:
    """The warning shown before trusting a model: it names the Python files that would run."""
    names = list(files if files is not None else python_files(folder))
    if not names:
        return f"{folder} ships no Python files: trusting it runs no code of its own."
    return (f"Trusting {folder} lets LoRA Desk run its Python code with your user's rights: "
            f"{', '.join(names)}. Only do this for models from people you trust.")


def refusal(folder: Path) -> UntrustedCodeError:
    """The one-line error for a model that needs code the user has not trusted."""
    names = ", ".join(python_files(folder)) or "no .py files found"
    return UntrustedCodeError(
        f"{folder}: the model needs its own Python code ({names}), which you have not trusted: trust it "
        f"with 'Trust remote code' in the settings, or pass --trust-remote-code")


def needs_remote_code(exc: BaseException) -> bool:
    """Whether a transformers error means "this model only loads with its own code"."""
    return isinstance(exc, ValueError) and "trust_remote_code=True" in str(exc)
