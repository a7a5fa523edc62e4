"""A shared run folder cannot run code: a base model with ``auto_map`` + a .py file, a run file saying trust.

The Python file writes a marker when imported. Asking, evaluating, exporting or opening the run in the
Compare tab's path never writes it; after the user trusts that model explicitly, its code is used.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from loradesk.cli import main
from loradesk.core import trust

ROOT = Path(__file__).resolve().parents[2]

EVIL = '''import pathlib
pathlib.Path({marker!r}).write_text("ran")
from transformers import LlamaConfig, LlamaForCausalLM


class EvilConfig(LlamaConfig):
    pass


class EvilModel(LlamaForCausalLM):
    config_class = EvilConfig
'''


EVIL_TOKENIZER = '''import pathlib
pathlib.Path({marker!r}).write_text("ran")
from transformers import PreTrainedTokenizerFast


class EvilTokenizer(PreTrainedTokenizerFast):
    pass
'''


@pytest.fixture
def evil_run(tiny_model_dir: Path, tmp_path: Path, make_run) -> tuple[Path, Path, Path]:
    """(run folder, base model folder, marker path): a run whose base model ships code, trust on in the run."""
    marker = tmp_path / "MARKER"
    base = tmp_path / "evil-model"
    shutil.copytree(tiny_model_dir, base)
    config = json.loads((base / "config.json").read_text())
    config["auto_map"] = {"AutoConfig": "evil.EvilConfig", "AutoModelForCausalLM": "evil.EvilModel"}
    (base / "config.json").write_text(json.dumps(config))
    (base / "evil.py").write_text(EVIL.format(marker=str(marker)))
    run = make_run(tmp_path / "shared-run", base, trust_remote_code=True)
    # the run folder's own tokenizer asks for code too
    tok_config = json.loads((run / "tokenizer_config.json").read_text())
    tok_config["auto_map"] = {"AutoTokenizer": [None, "evil_tok.EvilTokenizer"]}
    (run / "tokenizer_config.json").write_text(json.dumps(tok_config))
    (run / "evil_tok.py").write_text(EVIL_TOKENIZER.format(marker=str(marker)))
    return run, base, marker


def _cli(*args: str, home: Path, modules: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LORADESK_HOME": str(home), "HF_MODULES_CACHE": str(modules)}
    return subprocess.run([sys.executable, "-m", "loradesk", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)


def test_cli_ask_runs_no_code_then_runs_it_once_trusted(evil_run, loradesk_home: Path, tmp_path: Path) -> None:
    run, base, marker = evil_run
    modules = tmp_path / "modules"
    done = _cli("ask", "--adapter", str(run), "--max-new-tokens", "2", "Who?", home=loradesk_home, modules=modules)
    assert done.returncode == 0, done.stderr
    assert "Tuned model" in done.stdout
    assert not marker.exists()  # the built-in Llama code loaded it; evil.py never ran

    done = _cli("ask", "--adapter", str(run), "--max-new-tokens", "2", "--trust-remote-code", "Who?",
                home=loradesk_home, modules=modules)
    assert done.returncode == 0, done.stderr
    assert "evil.py" in done.stderr and "evil_tok.py" in done.stderr  # the warning names the files
    assert marker.read_text() == "ran"  # trusted explicitly: its code is used
    assert trust.is_trusted(base) and trust.is_trusted(run)


def test_eval_export_and_answerer_run_no_code(evil_run, tmp_path: Path, capsys) -> None:
    from loradesk.core.generation import Answerer

    run, _base, marker = evil_run
    heldout = tmp_path / "q.json"
    heldout.write_text(json.dumps([{"prompt": "Who?", "expected": "wizard"}]))
    assert main(["eval", "--adapter", str(run), "--heldout", str(heldout), "--max-new-tokens", "2"]) == 0
    assert main(["export", str(run), "--out", str(tmp_path / "merged"), "--merged"]) == 0
    assert (tmp_path / "merged" / "model.safetensors").is_file()
    Answerer.from_run(run)
    assert not marker.exists()


def test_compare_tab_path_runs_no_code(evil_run) -> None:
    """The Compare tab loads runs through AnswererCache._plan (worker thread); here it is called directly."""
    from loradesk.ui.answering import AnswererCache, GenerationRequest

    run, _base, marker = evil_run
    _key, load = AnswererCache._plan(GenerationRequest(run_dir=str(run)), lambda *_: None)
    assert load().has_adapter
    assert not marker.exists()


def test_model_that_needs_its_code_is_refused_in_one_line(evil_run, capsys) -> None:
    run, base, marker = evil_run
    config = json.loads((base / "config.json").read_text())
    config["model_type"] = "evil_unknown"  # transformers has no built-in code for it
    (base / "config.json").write_text(json.dumps(config))
    assert main(["ask", "--adapter", str(run), "--max-new-tokens", "2", "Who?"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert str(base) in err and "evil.py" in err and "have not trusted" in err and "--trust-remote-code" in err
    assert not marker.exists()


def test_a_changed_python_file_is_no_longer_trusted(tmp_path: Path) -> None:
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "modeling.py").write_text("x = 1\n")
    assert not trust.remote_code_allowed(folder)
    assert trust.trust_model(folder) == trust.python_files(folder)
    assert trust.remote_code_allowed(folder)
    assert not trust.remote_code_allowed(folder, requested=False)
    (folder / "modeling.py").write_text("x = 2\n")
    assert not trust.remote_code_allowed(folder)
    trust.trust_model(folder)
    (folder / "extra.py").write_text("y = 1\n")
    assert not trust.remote_code_allowed(folder)
    assert "extra.py" in trust.warning_text(folder) and "modeling.py" in trust.warning_text(folder)


def test_train_trust_flag_names_the_files_and_records_the_model(evil_run, tmp_path: Path, capsys) -> None:
    _run, base, marker = evil_run
    settings = tmp_path / "settings.json"
    assert main(["train", "data.json", "--model", str(base), "--save-config", str(settings)]) == 0
    assert not trust.is_trusted(base)
    assert main(["train", "data.json", "--model", str(base), "--trust-remote-code",
                 "--save-config", str(settings)]) == 0
    assert "evil.py" in capsys.readouterr().err
    assert trust.is_trusted(base)
    assert json.loads(settings.read_text())["model"]["trust_remote_code"] is True
    assert not marker.exists()  # trusting runs nothing by itself
