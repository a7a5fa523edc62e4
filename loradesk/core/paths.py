"""Where LoRA Desk keeps the user's files: one data root for runs, models and recovery files.

``LORADESK_HOME`` overrides the root (tests set it); an installed app with a ``portable`` file beside
its executable keeps everything in a ``data`` folder there; otherwise it is the platform's user data
folder for "LoRA Desk". ``LORADESK_MODELS`` can move the (large) converted
models elsewhere, e.g. to share them between test sessions.
"""

from __future__ import annotations

import os
import sys
from importlib import resources
from pathlib import Path

import platformdirs

APP_NAME = "LoRA Desk"
#: A file of this name beside the installed app's executable turns on portable mode.
PORTABLE_MARKER = "portable"
#: The portable data root's name, beside the executable.
PORTABLE_DATA = "data"


def portable_home() -> Path | None:
    """``<executable's folder>/data`` when the installed (frozen) app has a ``portable`` file beside its
    executable, else None. A source checkout or pip install is never portable."""
    if not getattr(sys, "frozen", False):
        return None
    folder = Path(sys.executable).resolve().parent
    return folder / PORTABLE_DATA if (folder / PORTABLE_MARKER).exists() else None


def app_home() -> Path:
    """The data root (not created here): ``$LORADESK_HOME``, the portable data folder, or the platform
    user data dir."""
    env = os.environ.get("LORADESK_HOME", "").strip()
    if env:
        return Path(env).expanduser()
    return portable_home() or Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


def models_home() -> Path:
    """Where converted and prepared base models live: ``$LORADESK_MODELS`` or ``app_home()/models``."""
    env = os.environ.get("LORADESK_MODELS", "").strip()
    return Path(env).expanduser() if env else app_home() / "models"


def default_runs_dir() -> Path:
    """Where training runs are written: ``app_home()/runs``."""
    return app_home() / "runs"


def sample_data_dir() -> Path:
    """The folder holding the shipped sample datasets (``sample.json``, ``sample_heldout.json``).

    Looks, in order, inside the installed package (``loradesk/data``), in a PyInstaller bundle
    (``<bundle>/data``) and in a source checkout (``data/`` beside the ``loradesk`` package).
    Raises :class:`FileNotFoundError` naming every place tried.
    """
    tried: list[Path] = []
    candidates: list[Path] = []
    packaged = resources.files("loradesk").joinpath("data")
    if isinstance(packaged, Path):
        candidates.append(packaged)
    bundle = getattr(sys, "_MEIPASS", None)
    if bundle:
        candidates.append(Path(bundle) / "data")
    candidates.append(Path(__file__).resolve().parent.parent.parent / "data")
    for folder in candidates:
        tried.append(folder)
        if (folder / "sample.json").is_file():
            return folder
    raise FileNotFoundError("sample data not found; looked in " + ", ".join(str(p) for p in tried))
