"""Save screenshots of what LoRA Desk shows when things go wrong, for the docs.

Run it under a real X server (it grabs the screen for dialogs, which are separate windows)::

    xvfb-run -a -s "-screen 0 1400x900x24" python packaging/reliability_screenshots.py [--out docs/screenshots]

Everything runs on a tiny random-weight model built in a temporary folder, with a temporary ``LORADESK_HOME``,
so it takes about a minute on a laptop CPU and leaves the user's own runs and settings alone. It writes
``runs-interrupted.png`` (a real training process killed after a checkpoint, then listed with Resume),
``train-warnings.png`` (a run that does not learn: rank 1, alpha 4096, rsLoRA, learning rate 1),
``trust.png`` (turning on "Trust remote code" for a local model that ships Python files),
``checks-control.png`` (rows holding NUL and BEL) and ``startup-corrupt.png`` (a last project cut short).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from screenshots import device_probed, settle, spin, wait_until  # noqa: E402  (beside this file)

if TYPE_CHECKING:
    from PySide6.QtWidgets import QWidget

    from loradesk.ui.main_window import MainWindow

DATA = ROOT / "data"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots", help="where the PNGs go")
    parser.add_argument("--size", default="1320x820", help="window size, WIDTHxHEIGHT (default 1320x820)")
    return parser.parse_args(argv)


def build_model(folder: Path) -> Path:
    """The tiny test model, its tokenizer trained on the sample data."""
    from loradesk.core.tiny_model import build_tiny_model

    texts = [str(v) for rec in json.loads((DATA / "sample.json").read_text(encoding="utf-8"))
             for v in rec.values()]
    return build_tiny_model(folder, texts)


def interrupted_run(model: Path, work: Path) -> None:
    """Train in a real CLI process and kill it (SIGKILL: no clean-up) once it has saved two checkpoints."""
    config = work / "interrupted.json"
    subprocess.run([sys.executable, "-m", "loradesk", "train", str(DATA / "sample.json"), "--model", str(model),
                    "--save-config", str(config)], check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    settings = json.loads(config.read_text(encoding="utf-8"))
    settings["training"].update(max_steps=200, batch_size=4, save_steps=3, save_minutes=0)
    config.write_text(json.dumps(settings), encoding="utf-8")
    proc = subprocess.Popen([sys.executable, "-m", "loradesk", "train", str(DATA / "sample.json"),
                             "--config", str(config)], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    home = Path(os.environ["LORADESK_HOME"])
    deadline = time.monotonic() + 600
    while not list(home.glob("runs/*/checkpoints/checkpoint-6")):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("the training process ended before its second checkpoint")
        time.sleep(0.3)
    time.sleep(2)  # a few more logged steps that the checkpoint does not hold
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def remote_code_model(model: Path, folder: Path) -> Path:
    """A copy of the tiny model whose config maps to the model's own Python files."""
    shutil.copytree(model, folder)
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    config["auto_map"] = {"AutoConfig": "configuration_wizard.WizardConfig",
                          "AutoModelForCausalLM": "modeling_wizard.WizardForCausalLM"}
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    for name in ("configuration_wizard.py", "modeling_wizard.py"):
        (folder / name).write_text("# the model's own code\n", encoding="utf-8")
    return folder


def control_characters_dataset(path: Path) -> Path:
    """The sample dataset with NUL and BEL characters in three rows."""
    rows = json.loads((DATA / "sample.json").read_text(encoding="utf-8"))
    rows[2]["prompt"] = rows[2]["prompt"].replace(" ", "\x00 ", 1)
    rows[5]["completion"] += "\x00\x00"
    rows[9]["completion"] = rows[9]["completion"].replace(" ", " \x07", 1)
    path.write_text(json.dumps(rows), encoding="utf-8")
    return path


def save(widget: QWidget, path: Path, screen: bool = False, also: QWidget | None = None) -> None:
    """Grab ``widget`` (or, with ``screen``, the screen where it is, so dialogs on top of it show too;
    ``also``: a second widget, such as a dialog, the grabbed part of the screen must hold)."""
    settle(500)
    if screen:
        from PySide6.QtCore import QRect
        from PySide6.QtWidgets import QApplication

        geometry = QRect(widget.mapToGlobal(widget.rect().topLeft()), widget.size())
        if also is not None:
            geometry = geometry.united(also.frameGeometry())
        image = QApplication.primaryScreen().grabWindow(0, geometry.x(), geometry.y(), geometry.width(),
                                                        geometry.height())
    else:
        image = widget.grab()
    if not image.save(str(path)):
        raise OSError(f"could not write {path}")
    print(path)


def startup_warning(out: Path, project_path: Path) -> None:
    """The box a corrupt last project brings up at start-up (before any window)."""
    from loradesk.ui import errors
    from loradesk.ui.app import startup_project
    from loradesk.ui.window_state import window_settings

    text = project_path.read_text(encoding="utf-8")
    project_path.write_text(text[: len(text) // 3], encoding="utf-8")  # cut short, like a full disk
    window_settings().setValue("recentProjects", [str(project_path)])
    startup_project([], restore=lambda _info: False)
    box = errors.open_box(None)  # shown without blocking, before any window
    if box is None:
        raise RuntimeError("the start-up error was not shown")
    save(box, out / "startup-corrupt.png", screen=True)
    box.accept()


def take_shots(window: MainWindow, out: Path, model: Path, work: Path) -> None:
    from loradesk.core import runs
    from loradesk.core.config import ModelSettings

    runs_tab, train, form = window.runs_tab, window.training_tab, window.settings_form
    # The Checks panel with the control-characters card (the project holds rows with NUL).
    window.tabs.setCurrentIndex(0)
    checks = window.dataset_tab.checks
    wait_until(checks.is_current, 120, "the checks")
    window.dataset_tab.inspector.setCurrentWidget(checks)
    save(checks, out / "checks-control.png")

    # The Runs tab with the killed run selected.
    window.tabs.setCurrentWidget(runs_tab)
    runs_tab.refresh()
    interrupted = [r for r in runs.list_runs() if r.status == "interrupted"]
    if not interrupted or not runs_tab.select_run(interrupted[0].path):
        raise RuntimeError("no interrupted run is listed")
    save(runs_tab, out / "runs-interrupted.png")

    # A run that completes but does not learn: the yellow banner on the Train tab.
    config = window.project.config
    config.model = ModelSettings(kind="local", name=str(model))
    t = config.training
    t.max_steps, t.batch_size, t.logging_steps, t.learning_rate, t.warmup_ratio = 20, 4, 1, 1.0, 0.0
    config.lora.r, config.lora.alpha, config.lora.use_rslora = 1, 4096, True
    window.project.config = config
    window.tabs.setCurrentWidget(train)
    settle()
    finished: list[str] = []
    train.run_finished.connect(finished.append)
    train.start()
    wait_until(lambda: bool(finished) and not train.is_running(), 600, "the run")
    save(train, out / "train-warnings.png")

    # Trusting a model's own code asks first, naming its Python files.
    config = window.project.config
    config.model = ModelSettings(kind="local", name=str(remote_code_model(model, work / "wizard-model")))
    window.project.config = config
    window.tabs.setCurrentIndex(0)  # the settings form sits beside the dataset
    settle(1000)
    form.scroll.ensureWidgetVisible(form.trust_check)
    settle()
    form.trust_check.click()
    wait_until(lambda: form.trust_box is not None and form.trust_box.isVisible(), 10, "the trust question")
    model_box = form.trust_check.parentWidget()  # the Model group, with the check box still off
    save(model_box, out / "trust.png", screen=True, also=form.trust_box)
    form.trust_box.button(form.trust_box.StandardButton.No).click()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    width, height = (int(v) for v in args.size.lower().split("x"))
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="loradesk-shots-") as tmp:
        work = Path(tmp)
        os.environ["LORADESK_HOME"] = str(work / "home")
        model = build_model(work / "tiny-model")
        interrupted_run(model, work)

        from loradesk.core.dataset import Dataset
        from loradesk.core.formats import read_dataset
        from loradesk.core.project import Project
        from loradesk.ui.app import create_app
        from loradesk.ui.main_window import MainWindow

        app = create_app([])
        project = Project(Dataset(read_dataset(control_characters_dataset(work / "control.json"))))
        project.save(work / "wizards.loradesk")
        window = MainWindow(project)
        window.resize(width, height)
        window.move(20, 20)
        window.show()
        wait_until(window.isVisible, 10, "the window")
        try:
            take_shots(window, args.out, model, work)
        finally:
            for tab in (window.training_tab, window.compare_tab, window.runs_tab, window.dataset_tab,
                        window.settings_form):
                tab.shutdown()
            window.hide()
            device_probed(window, 300)  # its background thread must end before the app does
            spin(200)
        startup_warning(args.out, work / "wizards.loradesk")
        app.processEvents()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
