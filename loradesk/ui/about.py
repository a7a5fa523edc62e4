"""The About box: the app's version and the libraries it runs on."""

from __future__ import annotations

import platform
from importlib import metadata

from PySide6 import __version__ as pyside_version
from PySide6.QtCore import qVersion

from loradesk import __version__
from loradesk.core.paths import app_home


def library_versions() -> dict[str, str]:
    """Installed versions of the ML stack, read from package metadata (nothing is imported)."""
    out = {}
    for name in ("torch", "transformers", "peft"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def about_html(device: str | None) -> str:
    """The About text: what LoRA Desk is, and a table of versions, the device and the data folder."""
    versions = library_versions()
    rows = [("LoRA Desk", __version__), ("Python", platform.python_version()),
            ("Qt", f"{qVersion()} (PySide6 {pyside_version})"),
            *((name.capitalize() if name != "peft" else "PEFT", v) for name, v in versions.items()),
            ("Device", device or "still detecting…"), ("Data folder", str(app_home()))]
    table = "".join(f"<tr><td style='padding-right:12px'><b>{k}</b></td><td>{v}</td></tr>" for k, v in rows)
    return (f"<h3>LoRA Desk {__version__}</h3><p>Teach a language model a new fact with LoRA "
            f"fine-tuning, point and click.</p><table>{table}</table>")
