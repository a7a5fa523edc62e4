"""Portable mode: an installed app with a ``portable`` file beside its executable keeps its data there."""

from __future__ import annotations

import sys
from pathlib import Path

import platformdirs

from loradesk.core.paths import app_home, default_runs_dir, models_home, portable_home


def _installed_app(monkeypatch, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "loradesk").write_text("", encoding="utf-8")
    monkeypatch.delenv("LORADESK_HOME", raising=False)
    monkeypatch.delenv("LORADESK_MODELS", raising=False)
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "executable", str(folder / "loradesk"))


def test_portable_marker_puts_all_data_beside_the_executable(tmp_path: Path, monkeypatch) -> None:
    app = tmp_path / "LoRA Desk"
    _installed_app(monkeypatch, app)
    assert portable_home() is None
    assert app_home() == Path(platformdirs.user_data_dir("LoRA Desk", appauthor=False))
    (app / "portable").write_text("", encoding="utf-8")
    assert app_home() == app / "data"
    assert default_runs_dir() == app / "data" / "runs"
    assert models_home() == app / "data" / "models"
    assert not (app / "data").exists()  # only named here; created when something is saved


def test_a_source_checkout_is_never_portable(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delattr(sys, "frozen", raising=False)
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    (tmp_path / "portable").write_text("", encoding="utf-8")
    assert portable_home() is None


def test_loradesk_home_overrides_portable_mode(tmp_path: Path, monkeypatch) -> None:
    app = tmp_path / "LoRA Desk"
    _installed_app(monkeypatch, app)
    (app / "portable").write_text("", encoding="utf-8")
    monkeypatch.setenv("LORADESK_HOME", str(tmp_path / "elsewhere"))
    assert app_home() == tmp_path / "elsewhere"
