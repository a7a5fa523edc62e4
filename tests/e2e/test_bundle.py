"""The installed app really runs without Python: build it with the documented command, install it from
its archive, then run its self-test and open its window with a clean environment (``env -i`` style: a
minimal PATH, a fresh HOME, another working folder), so no site-packages or venv can leak in.

Opt-in, since a build takes minutes: ``LORADESK_TEST_BUNDLE=1`` builds (``bash packaging/build.sh``)
and tests; ``LORADESK_TEST_BUNDLE=reuse`` tests the archive already in ``dist/``. Run it under
``xvfb-run -a`` to see the window on a real X server (then the time to the window is printed);
without a display the window opens offscreen.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MODE = os.environ.get("LORADESK_TEST_BUNDLE", "")
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(MODE not in ("1", "reuse"), reason="set LORADESK_TEST_BUNDLE=1 to build and test")]


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    """Nothing from this process's environment: no PYTHONPATH, VIRTUAL_ENV, LORADESK_HOME or HF_HOME."""
    return {"PATH": "/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8", **extra}


def files_in(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


@pytest.fixture(scope="module")
def archive() -> Path:
    if MODE == "1":
        started = time.monotonic()
        env = {**os.environ, "LORADESK_VENV": sys.prefix}
        build = subprocess.run(["bash", "packaging/build.sh"], cwd=ROOT, env=env, capture_output=True, text=True,
                               timeout=3600)
        assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
        print(f"\nbuild: {time.monotonic() - started:.0f} s; {build.stdout.strip().splitlines()[-1]}")
    archives = sorted((ROOT / "dist").glob("loradesk-*.tar.gz"), key=lambda p: p.stat().st_mtime)
    assert archives, "no archive in dist/: build with bash packaging/build.sh"
    return archives[-1]


@pytest.fixture(scope="module")
def installed(archive: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(the installed app folder, the fresh HOME it was installed for)."""
    base = tmp_path_factory.mktemp("bundle")
    unpacked, home = base / "unpacked", base / "home"
    unpacked.mkdir()
    home.mkdir()
    subprocess.run(["tar", "-xzf", str(archive), "-C", str(unpacked)], check=True)
    install = subprocess.run(["sh", str(unpacked / "LoRA Desk" / "install.sh")], cwd=base, env=clean_env(home),
                             capture_output=True, text=True, timeout=600)
    assert install.returncode == 0, install.stderr
    shutil.rmtree(unpacked)  # the installed copy must stand alone
    return home / ".local" / "share" / "loradesk", home


def test_install_adds_a_menu_entry_and_a_command(installed: tuple[Path, Path]) -> None:
    app, home = installed
    entry = (home / ".local" / "share" / "applications" / "loradesk.desktop").read_text(encoding="utf-8")
    assert f'Exec="{app}/loradesk" %f' in entry
    icon = next(line for line in entry.splitlines() if line.startswith("Icon=")).removeprefix("Icon=")
    assert Path(icon).is_file() and Path(icon).is_relative_to(app)
    version = subprocess.run([str(home / ".local" / "bin" / "loradesk"), "--version"], env=clean_env(home),
                             capture_output=True, text=True, timeout=120)
    assert version.returncode == 0 and version.stdout.startswith("LoRA Desk "), version.stderr


def test_self_test_passes_without_python_and_writes_nothing_beside_the_app(installed, tmp_path: Path) -> None:
    app, home = installed
    before = files_in(app)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for attempt in ("first (converts the built-in model)", "second"):
        started = time.monotonic()
        proc = subprocess.run([str(app / "loradesk"), "self-test"], cwd=elsewhere,
                              env=clean_env(home, TMPDIR=str(tmp_path)), capture_output=True, text=True,
                              timeout=1800)
        assert proc.returncode == 0, proc.stderr[-3000:]
        lines = proc.stdout.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Self-test passed in "), proc.stdout
        print(f"\nself-test, {attempt}: {time.monotonic() - started:.1f} s: {lines[0]}")
    assert f"model in {home}/.local/share/LoRA Desk/models/" in lines[0]
    assert files_in(app) == before
    assert list(elsewhere.iterdir()) == []
    # the run's temporary folder is gone (torch may leave its own cache folder, torchinductor_<user>, there)
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith("loradesk")]


def _window_id(env: dict[str, str]) -> str:
    if not shutil.which("xdotool"):
        return ""
    found = subprocess.run(["xdotool", "search", "--onlyvisible", "--name", "LoRA Desk$"], env=env,
                           capture_output=True, text=True)
    return found.stdout.strip()


def test_window_opens_portable_and_a_second_start_is_refused(installed, tmp_path: Path) -> None:
    app, home = installed
    display = os.environ.get("DISPLAY", "")
    x11 = {"DISPLAY": display, "XAUTHORITY": os.environ.get("XAUTHORITY", "")}  # the X server, not Python
    env = clean_env(home, **x11) if display else clean_env(home, QT_QPA_PLATFORM="offscreen")
    (app / "portable").write_text("", encoding="utf-8")
    lock = app / "data" / "loradesk.lock"
    started = time.monotonic()
    first = subprocess.Popen([str(app / "loradesk")], cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = started + 180
        while time.monotonic() < deadline and first.poll() is None:
            if (display and _window_id(env)) or (not display and lock.exists()):
                break
            time.sleep(0.1)
        assert first.poll() is None, first.stderr.read() if first.stderr else ""
        assert lock.exists(), "portable mode: the lock belongs in data/ beside the executable"
        if display:
            assert _window_id(env), "no LoRA Desk window on the display"
            print(f"\nfirst launch to the window: {time.monotonic() - started:.1f} s")
        time.sleep(20)  # the window keeps running (warm-up imports of the training stack included)
        assert first.poll() is None
        if display and shutil.which("import"):  # ImageMagick: the screen as the user would see it
            shot = subprocess.run(["import", "-window", "root", str(tmp_path / "bundle-window.png")], env=env)
            print(f"screenshot: {tmp_path / 'bundle-window.png'}" if shot.returncode == 0 else "no screenshot")
        maps = Path(f"/proc/{first.pid}/maps").read_text()
        assert sys.prefix not in maps and "site-packages" not in maps  # nothing loaded from a Python install

        second = subprocess.Popen([str(app / "loradesk")], cwd=tmp_path, env=env, stderr=subprocess.PIPE,
                                  text=True)
        try:
            assert second.stderr is not None
            line = second.stderr.readline()
            assert "LoRA Desk is already running" in line and f"process {first.pid}" in line, line
        finally:
            second.kill()
            second.wait()
        assert first.poll() is None
    finally:
        first.send_signal(signal.SIGTERM)
        try:
            first.wait(30)
        except subprocess.TimeoutExpired:
            first.kill()
            first.wait()
        shutil.rmtree(app / "data", ignore_errors=True)
        (app / "portable").unlink()
    err = first.stderr.read() if first.stderr else ""
    assert "Traceback" not in err, err
    assert "could not be loaded" not in err, err  # every tab of the window is in the bundle
    assert first.returncode == 143, err  # SIGTERM is a clean quit
