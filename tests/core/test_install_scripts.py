"""packaging/install.sh and uninstall.sh on a stand-in app folder: menu entry, command link, reinstall and
removal keep the user's portable data."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _app_folder(where: Path) -> Path:
    """An unpacked archive's layout, with a shell script standing in for the executable."""
    app = where / "LoRA Desk"
    (app / "_internal" / "resources" / "icons").mkdir(parents=True)
    shutil.copy(ROOT / "resources" / "loradesk.desktop", app / "_internal" / "resources")
    shutil.copy(ROOT / "resources" / "icons" / "loradesk.png", app / "_internal" / "resources" / "icons")
    (app / "loradesk").write_text("#!/bin/sh\necho 'LoRA Desk 0.0'\n", encoding="utf-8")
    for script in ("install.sh", "uninstall.sh"):
        shutil.copy(ROOT / "packaging" / script, app)
    for path in (app / "loradesk", app / "install.sh", app / "uninstall.sh"):
        path.chmod(0o755)
    return app


def _run(script: Path, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ["PATH"], "HOME": str(home)}
    return subprocess.run(["sh", str(script), *args], env=env, capture_output=True, text=True, timeout=60)


def test_install_reinstall_and_uninstall_keep_portable_data(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    app = _app_folder(tmp_path / "unpacked")
    done = _run(app / "install.sh", home)
    assert done.returncode == 0, done.stderr
    dest = home / ".local" / "share" / "loradesk"
    entry = (home / ".local" / "share" / "applications" / "loradesk.desktop").read_text(encoding="utf-8")
    assert f'Exec="{dest}/loradesk" %f' in entry
    assert f"Icon={dest}/_internal/resources/icons/loradesk.png" in entry
    link = home / ".local" / "bin" / "loradesk"
    assert subprocess.run([str(link)], capture_output=True, text=True).stdout.strip() == "LoRA Desk 0.0"

    (dest / "portable").write_text("", encoding="utf-8")  # the user made the install portable
    (dest / "data" / "runs").mkdir(parents=True)
    (dest / "data" / "runs" / "mine.txt").write_text("keep me", encoding="utf-8")
    assert _run(app / "install.sh", home).returncode == 0  # an update over it
    assert (dest / "data" / "runs" / "mine.txt").read_text(encoding="utf-8") == "keep me"
    assert (dest / "portable").exists()

    gone = _run(dest / "uninstall.sh", home)
    assert gone.returncode == 0, gone.stderr
    assert "portable data is kept" in gone.stdout
    assert not (dest / "loradesk").exists() and not (dest / "_internal").exists()
    assert (dest / "data" / "runs" / "mine.txt").read_text(encoding="utf-8") == "keep me"
    assert not link.exists() and not link.is_symlink()
    assert not (home / ".local" / "share" / "applications" / "loradesk.desktop").exists()


def test_install_refuses_a_folder_that_is_not_an_install(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    app = _app_folder(tmp_path / "unpacked")
    target = tmp_path / "documents"
    target.mkdir()
    (target / "thesis.txt").write_text("mine", encoding="utf-8")
    refused = _run(app / "install.sh", home, str(target))
    assert refused.returncode == 1
    assert refused.stderr.strip() == (f"install.sh: {target} exists and is not a LoRA Desk install; "
                                      "choose another folder")
    assert sorted(p.name for p in target.iterdir()) == ["thesis.txt"]
    not_app = _run(ROOT / "packaging" / "uninstall.sh", home)
    assert not_app.returncode == 1 and "is not a LoRA Desk install; nothing removed" in not_app.stderr


def test_uninstall_of_a_plain_install_removes_the_folder(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    app = _app_folder(tmp_path / "unpacked")
    prefix = tmp_path / "opt" / "loradesk"
    prefix.mkdir(parents=True)  # an empty folder made for it is fine
    assert _run(app / "install.sh", home, str(prefix)).returncode == 0
    assert (prefix / "loradesk").is_file()
    gone = _run(prefix / "uninstall.sh", home)
    assert gone.returncode == 0 and f"removed from {prefix}" in gone.stdout
    assert not prefix.exists()
