"""The ``loradesk`` command: the GUI by default, and headless subcommands over the same core.

    loradesk                         open the app (``loradesk gui [PROJECT]`` too)
    loradesk train DATA              train a LoRA adapter on a dataset file
    loradesk train --continue RUN    train a finished run more, as a new run (its own rows, or DATA)
    loradesk ask --adapter RUN "Q"   the base and the tuned model answer side by side
    loradesk eval --adapter RUN      score both models on held-out questions
    loradesk export RUN --out DIR    copy the adapter, or write a merged model with --merged
    loradesk export RUN --gguf --out FILE   one .gguf file (llama.cpp, Ollama) and an Ollama Modelfile
    loradesk export-job DATA --out DIR   a folder that trains the same run with torchrun, accelerate or SLURM
    loradesk runs                    list finished runs
    loradesk self-test               check, offline, that this install can train and answer

Heavy libraries are imported inside the commands, so ``loradesk --help`` is instant.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import textwrap
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loradesk import __version__

if TYPE_CHECKING:
    from loradesk.core.interrupts import Interrupts

EXPECTED_ERRORS: tuple[type[BaseException], ...] = (ValueError, RuntimeError, OSError)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="loradesk", description="Teach a language model something new with LoRA.")
    p.add_argument("--version", action="version", version=f"LoRA Desk {__version__}")
    p.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    g = sub.add_parser("gui", help="open the desktop app (the default)")
    g.add_argument("project", nargs="?", help="a .loradesk project or a dataset file to open")

    t = sub.add_parser("train", help="train a LoRA adapter on a dataset file")
    t.add_argument("data", nargs="?", help="dataset file: JSON, JSONL, CSV, Alpaca, ShareGPT or OpenAI chat "
                                           "(optional with --continue: the run's own rows)")
    t.add_argument("--split-pairs", action="store_true",
                   help="read each conversation of a ShareGPT or OpenAI chat file as prompt/completion pairs (each "
                        "user message and the reply after it) instead of one multi-turn row")
    t.add_argument("--tools-as-text", action="store_true",
                   help="write tool calls, tool results and the tools list as <tool_call>/<tool_response> text "
                        "(the 'Tool calls as text' setting; needed when the model's chat template has no tool "
                        "support)")
    t.add_argument("--model", help="'default', a Hub id, a model folder or a .gguf file (default: built-in)")
    t.add_argument("--config", help="run settings JSON (as saved by the app or --save-config)")
    t.add_argument("--out", help="folder for the run (default: a new folder in the runs directory)")
    t.add_argument("--epochs", type=float)
    t.add_argument("--max-steps", type=int)
    t.add_argument("--lr", type=float, help="learning rate")
    t.add_argument("--batch-size", type=int)
    t.add_argument("--resume", metavar="RUN", help="continue a stopped run from its last checkpoint")
    t.add_argument("--continue", dest="continue_from", metavar="RUN",
                   help="train a completed or stopped run more, as a new run starting from its adapter with its "
                        "settings (--epochs N more epochs, default its own)")
    t.add_argument("--save-config", metavar="FILE", help="write the effective settings to FILE and exit")
    t.add_argument("--check", action="store_true",
                   help="pre-flight check: measure memory and time per step on the longest batch, print the "
                        "estimate and exit (0: it fits, 1: it will not); no run folder is written")
    t.add_argument("--heldout", metavar="FILE",
                   help="held-out questions (JSON/JSONL of {prompt, expected}) that end the run once it has learned "
                        "them (default: the sample's held-out file when DATA is the shipped data/sample.json)")
    t.add_argument("--no-stop-when-learned", action="store_true",
                   help="train every step even once the held-out questions pass (or the eval loss stops improving)")
    t.add_argument("--retry-oom", action="store_true",
                   help="if the GPU runs out of memory, retry with half the batch and twice the gradient "
                        "accumulation without asking")
    _trust_arg(t)

    a = sub.add_parser("ask", help="ask the base and the tuned model the same question")
    a.add_argument("question", nargs="+")
    a.add_argument("--adapter", required=True, metavar="RUN", help="a run folder (or exported adapter)")
    _trust_arg(a)
    _generation_args(a)

    e = sub.add_parser("eval", help="score base and tuned answers on held-out questions")
    e.add_argument("--adapter", required=True, metavar="RUN")
    e.add_argument("--heldout", help="JSON/JSONL of {prompt, expected} (default: the sample's held-out file)")
    _trust_arg(e)
    _generation_args(e)

    x = sub.add_parser("export", help="export a run's adapter, a merged model, or a GGUF file")
    x.add_argument("run", help="run folder")
    x.add_argument("--out", required=True, help="destination folder (with --gguf: the .gguf file)")
    how = x.add_mutually_exclusive_group()
    how.add_argument("--merged", action="store_true", help="fold the adapter into the base weights")
    how.add_argument("--gguf", action="store_true",
                     help="merge and write one GGUF file for llama.cpp / Ollama / LM Studio, with an Ollama "
                          "Modelfile beside it (llama-family models)")
    x.add_argument("--quant", choices=("f16", "q8_0"), default="f16",
                   help="GGUF weights: f16 (default, as exact as f16 gets) or q8_0 (about half the size)")
    _trust_arg(x)

    j = sub.add_parser("export-job", help="write a job folder that trains on many GPUs or machines (torchrun, "
                                          "accelerate launch, SLURM)")
    j.add_argument("data", help="dataset file (as for train)")
    j.add_argument("--out", required=True, help="the job folder to write (new or empty)")
    j.add_argument("--config", help="run settings JSON (as saved by the app or train --save-config)")
    j.add_argument("--model", help="the model the cluster trains: a Hub id (e.g. Qwen/Qwen2.5-7B-Instruct) or a "
                                   "folder (default: the settings' model)")
    j.add_argument("--split-pairs", action="store_true", help="read conversations as prompt/completion pairs")

    sub.add_parser("runs", help="list finished runs")

    s = sub.add_parser("self-test", help="train a few steps, reload and answer, offline: checks this install")
    s.add_argument("--model", help="'default', a model folder or a .gguf file (default: built-in)")
    s.add_argument("--keep", action="store_true", help="keep the run folder instead of removing it")
    return p


def _trust_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--trust-remote-code", action="store_true",
                   help="trust the model's own Python files (they are named) and let them run")


def _trust_models(args: argparse.Namespace, folders: list[Path]) -> bool:
    """With --trust-remote-code: record trust for each model folder, naming its Python files."""
    if not getattr(args, "trust_remote_code", False):
        return False
    from loradesk.core import trust

    for i, folder in enumerate(folders):
        files = trust.python_files(folder)
        if files or i == 0:  # the base model always; an adapter folder only when it ships code
            trust.trust_model(folder)
            print(f"Warning: {trust.warning_text(folder, files)}", file=sys.stderr)
    return True


def _trust_adapter(args: argparse.Namespace, adapter: str | Path) -> None:
    if getattr(args, "trust_remote_code", False):
        from loradesk.core.generation import base_model_folder

        path = Path(adapter).expanduser()
        _trust_models(args, [base_model_folder(path), path])


def _generation_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--max-new-tokens", type=int, default=96)
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    p.add_argument("--top-p", type=float, default=0.95)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``loradesk`` console script."""
    args = _parser().parse_args(argv)
    command = args.command or "gui"
    try:
        if command == "gui":
            from loradesk.ui.app import run_gui

            return run_gui([getattr(args, "project", None)] if getattr(args, "project", None) else [])
        _quiet_libraries()
        return {"train": cmd_train, "ask": cmd_ask, "eval": cmd_eval, "export": cmd_export,
                "export-job": cmd_export_job, "runs": cmd_runs, "self-test": cmd_self_test}[command](args)
    except KeyboardInterrupt:
        print("loradesk: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        from loradesk.core.fileio import storage_error

        error = storage_error(exc)  # disk full, read-only, no permission: one line naming the file
        if args.debug or (error is None and not isinstance(exc, EXPECTED_ERRORS)):
            raise
        training = sys.modules.get("loradesk.core.training")  # imported when a run was attempted
        unsupported = training is not None and isinstance(exc, training.ToolsUnsupported)
        hint = " (loradesk train --tools-as-text)" if unsupported else ""
        print(f"loradesk: error: {error or exc}{hint}", file=sys.stderr)
        return 1


def _quiet_libraries() -> None:
    import os
    import warnings

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


# --- train -------------------------------------------------------------------------------------------------
def _model_settings(spec: str) -> dict[str, str]:
    from loradesk.core.job_export import model_from_spec

    model = model_from_spec(spec)
    return {"kind": model.kind, "name": model.name}


class TerminalSink:
    """Prints phases and a tqdm progress bar with loss, tokens/s and ETA."""

    def __init__(self) -> None:
        self.bar: Any = None

    def status(self, text: str) -> None:
        if self.bar is None:
            print(text, file=sys.stderr, flush=True)

    def log(self, text: str) -> None:
        from tqdm import tqdm

        tqdm.write(text, file=sys.stderr)

    def progress(self, p: Any) -> None:
        from tqdm import tqdm

        done = p.step - p.start_step  # a continued run counts its own steps
        if self.bar is None:  # starts at the first reported step, so the rate is not skewed by it
            self.bar = tqdm(total=p.max_steps - p.start_step, initial=done, unit="step", file=sys.stderr,
                            dynamic_ncols=True)
        self.bar.update(done - self.bar.n)
        post = {}
        if p.loss is not None:
            post["loss"] = f"{p.loss:.3f}"
        if p.eval_loss is not None:
            post["eval"] = f"{p.eval_loss:.3f}"
        if p.tokens_per_second:
            post["tok/s"] = f"{p.tokens_per_second:.0f}"
        post["epoch"] = f"{p.epoch:.2f}"
        self.bar.set_postfix(post, refresh=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def cmd_train(args: argparse.Namespace) -> int:
    """``loradesk train``; started by torchrun or ``accelerate launch``, one rank of a run: only the main
    process prints (errors aside), and ``--check`` (which measures one process) is refused."""
    from loradesk.core import distributed
    from loradesk.core.interrupts import Interrupts, signal_name

    stop = threading.Event()
    ranks = distributed.current()  # under a launcher: joins the process group, before any signal can arrive
    if args.check and ranks.distributed:
        if ranks.is_main:
            print("loradesk: error: --check measures one process on one device: run it without torchrun or "
                  "accelerate launch", file=sys.stderr)
        return 1

    def stopping(signum: int) -> None:
        if ranks.is_main:
            print(f"\n{signal_name(signum)}: stopping after this step (a checkpoint and the adapter are kept)… "
                  f"press Ctrl+C again within a few seconds to abort.", file=sys.stderr, flush=True)

    try:
        with Interrupts(stop, stopping).installed() as interrupts:  # a signal sets the stop flag from now on
            code = _train(args, stop, interrupts)
    except BaseException:
        distributed.finish()
        raise
    distributed.leave(code)  # a launched rank ends here, its run written
    return code


def _train(args: argparse.Namespace, stop: threading.Event, interrupts: Interrupts) -> int:
    if args.continue_from:
        return _train_more(args, stop, interrupts)
    if not args.data:
        raise ValueError("train needs a dataset file (DATA); only --continue RUN can do without one")
    from loradesk.core.config import RunConfig

    config = RunConfig.load(args.config) if args.config else RunConfig()
    data = config.to_dict()
    if args.model:
        data["model"].update(_model_settings(args.model))
    for flag, key in (("epochs", "epochs"), ("max_steps", "max_steps"), ("lr", "learning_rate"),
                      ("batch_size", "batch_size")):
        if getattr(args, flag) is not None:
            data["training"][key] = getattr(args, flag)
    if args.tools_as_text:
        data["training"]["tools_as_text"] = True
    if args.no_stop_when_learned:
        data["training"]["stop_when_learned"] = False
    if args.trust_remote_code:
        from loradesk.core.models import resolve_model

        data["model"]["trust_remote_code"] = _trust_models(args, [resolve_model(RunConfig.from_dict(data).model)])
    config = RunConfig.from_dict(data).check()
    if args.save_config:
        config.save(args.save_config)
        print(f"Settings written to {args.save_config}")
        return 0

    from loradesk.core import training

    if args.check and args.resume:
        raise ValueError("--check measures a new run; it cannot be combined with --resume")
    if args.heldout and args.resume:
        raise ValueError("--resume asks the held-out questions the run started with; drop --heldout")
    rows = [] if args.resume else _read_rows(args)
    if args.check:
        return _check(config, rows, stop, interrupts)
    heldout = None if args.resume else _heldout_file(args)
    return _run_training(args, stop, interrupts, lambda sink: training.run(
        config, rows, sink, stop, out_dir=_out_dir(args), resume_from=Path(args.resume) if args.resume else None,
        heldout=heldout))


def _heldout_file(args: argparse.Namespace) -> Path | None:
    """``--heldout FILE`` (read now: a bad file is one error line before any training), else the sample's
    held-out file when DATA is the shipped sample."""
    from loradesk.core.formats import read_heldout
    from loradesk.core.paths import sample_data_dir

    if args.heldout:
        path = Path(args.heldout).expanduser().resolve()
        read_heldout(path)
        return path
    try:
        folder = sample_data_dir()
    except FileNotFoundError:
        return None
    sample = folder / "sample_heldout.json"
    shipped = Path(args.data).resolve() == (folder / "sample.json").resolve()
    return sample if shipped and sample.is_file() else None


#: ``train`` options that --continue refuses: the continued run keeps its parent's settings.
_PARENT_SETTINGS = (("model", "--model"), ("config", "--config"), ("lr", "--lr"), ("batch_size", "--batch-size"),
                    ("resume", "--resume"), ("save_config", "--save-config"), ("check", "--check"),
                    ("tools_as_text", "--tools-as-text"), ("heldout", "--heldout"))


def _train_more(args: argparse.Namespace, stop: threading.Event, interrupts: Interrupts) -> int:
    """``train --continue RUN [--epochs N] [DATA]``: a new run from RUN's adapter, with RUN's settings."""
    if given := [flag for key, flag in _PARENT_SETTINGS if getattr(args, key, None)]:
        raise ValueError(f"--continue trains with the run's own settings: drop {', '.join(given)}")
    from loradesk.core import train_more

    rows = _read_rows(args) if args.data else None
    parent = Path(args.continue_from).expanduser()
    if _main_process():
        print(f"Continuing {parent.name}" + (f" on {args.data}" if args.data else " on its own rows"),
              file=sys.stderr)
    return _run_training(args, stop, interrupts, lambda sink: train_more.continue_run(
        parent, sink, stop, epochs=args.epochs, max_steps=args.max_steps or 0, rows=rows, out_dir=_out_dir(args)))


def _read_rows(args: argparse.Namespace) -> list[Any]:
    """The rows of ``args.data`` (conversations split into pairs with --split-pairs); what the read skipped or
    left unused is printed to stderr."""
    from loradesk.core.formats import read_dataset

    path = Path(args.data)
    notes: list[str] = []
    rows = read_dataset(path, notes=notes, conversations="pairs" if args.split_pairs else "whole")
    for note in notes if _main_process() else ():
        print(f"{path.name}: {note}", file=sys.stderr)
    return rows


def _main_process() -> bool:
    """Whether this process prints: always, except for a launched run's ranks other than the main one."""
    from loradesk.core import distributed

    return distributed.current().is_main


def _out_dir(args: argparse.Namespace) -> Path | None:
    return Path(args.out) if args.out else None


def _run_training(args: argparse.Namespace, stop: threading.Event, interrupts: Interrupts, call: Any) -> int:
    """Run ``call(sink)`` (a training function) with a progress bar, offer the out-of-memory retry, and print
    the result; the exit code."""
    from loradesk.core import distributed, runs, training
    from loradesk.core.interrupts import signal_name
    from loradesk.core.wording import plural

    out_dir = _out_dir(args)
    retry = None
    main = _main_process()
    try:
        r = _train_in_thread(stop, call)
    except training.TrainingStopped:
        if not interrupts.exit_code:
            raise
        if not main:
            return interrupts.exit_code
        print(f"{signal_name(interrupts.signum)}: stopped before training started; nothing was written.",
              file=sys.stderr)
        return interrupts.exit_code
    except training.OutOfMemory as exc:
        if distributed.current().distributed:  # one rank cannot retry alone: the launcher ends the others
            raise
        agreed = _agrees_to_retry(exc, args.retry_oom)
        if agreed is None:  # the user saw the error and said no
            return 1
        if not agreed:
            raise
        retry, failed_run = exc.retry_config, exc.run_dir
    if retry is not None and not stop.is_set():  # outside the handler: its traceback holds the failed model
        r = _train_in_thread(stop, lambda sink: training.retry_smaller(
            retry, failed_run, sink, stop, out_dir=_retry_dir(out_dir)))
    if not main:  # the main process reports the run
        return interrupts.exit_code or 0
    if interrupts.exit_code:
        kept = runs.latest_checkpoint(r.run_dir)
        resume = f" and {kept.name} (resume: {runs.resume_command(r.run_dir)})" if kept else ""
        print(f"{signal_name(interrupts.signum)}: stopped after {plural(r.steps, 'step')}; "
              f"kept the adapter in {r.run_dir}{resume}", file=sys.stderr)
        return interrupts.exit_code
    loss = f"{r.final_loss:.4f}" if r.final_loss is not None else "n/a"
    speed = f", {r.tokens_per_second:.0f} trained tokens/s" if r.tokens_per_second else ""
    status = runs.status_label(r.status, r.warnings)
    print(f"{status.capitalize()}: {plural(r.steps, 'step')} in {r.seconds:.0f} s on {r.device} "
          f"({r.precision}{speed}), final loss {loss}")
    if r.learned:
        print(r.learned)
    for warning in r.warnings:
        print(f"Warning: {warning}")
    if r.cut_rows:
        print(f"Note: {plural(r.cut_rows, 'row was', 'rows were')} longer than the max length and cut.")
    if r.skipped_rows:
        print(f"Note: {plural(r.skipped_rows, 'row was', 'rows were')} skipped: nothing to train within the max "
              "length.")
    print(f"Adapter: {r.run_dir}")
    print(f'Try it:  loradesk ask --adapter "{r.run_dir}" "your question"')
    return 0


def _check(config: Any, rows: list[Any], stop: threading.Event, interrupts: Interrupts) -> int:
    """Print the pre-flight report; 0 when the run fits, 1 when it will not."""
    from loradesk.core.interrupts import signal_name
    from loradesk.core.preflight import CheckStopped, preflight

    try:
        report = _train_in_thread(stop, lambda sink: preflight(config, rows, stop,
                                                               lambda text, _f: sink.status(text)))
    except CheckStopped as exc:
        print(f"{signal_name(interrupts.signum)}: {exc}.", file=sys.stderr)
        return interrupts.exit_code or 1
    print("\n".join(report.lines()))
    return 0 if report.fits else 1


def _agrees_to_retry(error: Any, flag: bool) -> bool | None:
    """True with ``--retry-oom``, or when the user says yes at a terminal (the error is printed first);
    None when they say no there. False when nobody could be asked: the caller re-raises ``error`` and
    :func:`main` prints it as its one line."""
    if error.retry_config is None or not (flag or sys.stdin.isatty()):
        if error.retry_config is not None:
            error.args = (f"{error} Add --retry-oom to retry that way.",)
        return False
    print(f"loradesk: {error}", file=sys.stderr)
    if flag:
        return True
    t = error.retry_config.training
    answer = input(f"Retry with batch size {t.batch_size} and gradient accumulation {t.grad_accum}? [Y/n] ")
    return True if answer.strip().lower() in ("", "y", "yes") else None


def _retry_dir(out_dir: Path | None) -> Path | None:
    """Where a retry goes when the failed run took ``--out``: ``OUT-retry`` (``-retry2``, ... if taken)."""
    if out_dir is None:
        return None
    for i in range(1, 1000):
        candidate = out_dir.with_name(out_dir.name + "-retry" + (str(i) if i > 1 else ""))
        if not candidate.exists() or not any(candidate.iterdir()):
            return candidate
    raise RuntimeError(f"no free folder next to {out_dir} for the retry")


def _train_in_thread(stop: threading.Event, call: Any) -> Any:
    """``call(sink)`` on a training thread with a progress bar; returns its result or raises its error.

    The main thread waits in short joins so the signal handlers (which set ``stop``) run promptly.
    """
    sink = TerminalSink()
    box: dict[str, Any] = {}

    def work() -> None:
        try:
            box["result"] = call(sink)
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=work, name="training", daemon=True)
    thread.start()
    while thread.is_alive():  # signal handlers run on this thread between joins
        thread.join(0.2)
    sink.close()
    if "error" in box:
        raise box.pop("error")
    return box["result"]


# --- ask / eval --------------------------------------------------------------------------------------------
def _answerer(adapter: str) -> Any:
    from loradesk.core.generation import Answerer

    return Answerer.from_adapter(Path(adapter).expanduser())


def _settings(args: argparse.Namespace) -> Any:
    from loradesk.core.generation import GenerationSettings

    return GenerationSettings(max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_p=args.top_p)


def side_by_side(left_title: str, left: str, right_title: str, right: str, width: int | None = None) -> str:
    """Two texts in two wrapped columns."""
    width = width or shutil.get_terminal_size((100, 20)).columns
    col = max(20, (width - 3) // 2)
    lcol = [left_title, "-" * len(left_title), *textwrap.wrap(left or "(empty)", col)]
    rcol = [right_title, "-" * len(right_title), *textwrap.wrap(right or "(empty)", col)]
    n = max(len(lcol), len(rcol))
    lcol += [""] * (n - len(lcol))
    rcol += [""] * (n - len(rcol))
    return "\n".join(f"{a:<{col}} | {b}".rstrip() for a, b in zip(lcol, rcol, strict=True))


def cmd_ask(args: argparse.Namespace) -> int:
    from loradesk.core.generation import answer_both

    question = " ".join(args.question)
    _trust_adapter(args, args.adapter)
    answers = answer_both(_answerer(args.adapter), question, _settings(args))
    print(f"Q: {question}\n")
    print(side_by_side("Base model", answers.base or "", "Tuned model", answers.tuned or ""))
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from loradesk.core.formats import read_heldout
    from loradesk.core.generation import ScoredRow, compare_all, record_compare_score
    from loradesk.core.paths import sample_data_dir

    heldout = Path(args.heldout) if args.heldout else sample_data_dir() / "sample_heldout.json"
    questions = read_heldout(heldout)
    _trust_adapter(args, args.adapter)

    def show(r: ScoredRow) -> None:
        print(f"[{'x' if r.base_ok else ' '}|{'x' if r.tuned_ok else ' '}] {r.prompt}  (expects: {r.expected})")
        print(textwrap.indent(textwrap.fill(f"tuned: {r.tuned}", 100), "      "))

    summary = compare_all(_answerer(args.adapter), questions, _settings(args), on_row=show)
    print(f"\nBase {summary.base_correct}/{summary.answered}, tuned {summary.tuned_correct}/{summary.answered} "
          "contain the expected phrase")
    record_compare_score(Path(args.adapter), summary, heldout)
    return 0


# --- export / runs -----------------------------------------------------------------------------------------
def cmd_export(args: argparse.Namespace) -> int:
    from loradesk.core.runs import export_adapter, export_merged

    if args.merged or args.gguf:
        _trust_adapter(args, args.run)
    if args.gguf:
        return _export_gguf(args)
    dest = (export_merged if args.merged else export_adapter)(Path(args.run), Path(args.out))
    what = "Merged model" if args.merged else "Adapter"
    print(f"{what} written to {dest}")
    return 0


def _export_gguf(args: argparse.Namespace) -> int:
    from loradesk.core.gguf_export import export_gguf
    from loradesk.core.interrupts import Interrupts, signal_name

    def interrupted(signum: int) -> None:
        raise KeyboardInterrupt  # the export is not resumable: stop now; its temporary file is removed

    shown: list[str] = []

    def report(text: str, fraction: float | None) -> None:
        if text not in shown:
            shown.append(text)
            print(text, file=sys.stderr, flush=True)

    with Interrupts(None, interrupted, interrupted).installed() as interrupts:
        try:
            result = export_gguf(Path(args.run), Path(args.out), args.quant, progress=report)
        except KeyboardInterrupt:
            name = signal_name(interrupts.signum) if interrupts.signum else "Interrupted"
            print(f"{name}: GGUF export stopped; nothing was written.", file=sys.stderr)
            return interrupts.exit_code or 130
    print(f"GGUF ({result.quant}, {result.size / 1e6:.1f} MB) written to {result.path} in {result.seconds:.0f} s")
    print(f'Ollama Modelfile: {result.modelfile}  (ollama create NAME -f "{result.modelfile}")')
    for note in result.notes:
        print(f"Note: {note}")
    return 0


def cmd_export_job(args: argparse.Namespace) -> int:
    from loradesk.core.config import RunConfig
    from loradesk.core.job_export import export_job, model_from_spec

    config = RunConfig.load(args.config) if args.config else RunConfig()
    model = model_from_spec(args.model) if args.model else None
    job = export_job(_read_rows(args), config, Path(args.out), model=model)
    print(job.summary())
    for note in job.notes:
        print(f"Note: {note}")
    print(f'Run it:  cd "{job.path}" && bash launch.sh   (README.md has the commands for several machines '
          "and SLURM)")
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    from loradesk.core.runs import list_runs, resume_command

    runs = list_runs()
    if not runs:
        print("No runs yet. Train one with: loradesk train data/sample.json")
    for r in runs:
        loss = f"{r.final_loss:.3f}" if r.final_loss is not None else "  -  "
        score = f"{100 * r.score:.0f} %" if r.score is not None else "-"
        print(f"{r.created:19}  {r.status_label:11}  loss {loss}  score {score:>5}  {r.model}  {r.path}")
        if r.parent:
            print(f"{'':21}continues {Path(r.parent).name} from step {r.step_offset}")
        if r.where:
            print(f"{'':21}training in {r.where}")
        if r.resumable:
            print(f"{'':21}resume from {r.checkpoint.name if r.checkpoint else ''}: {resume_command(r.path)}")
    return 0


def cmd_self_test(args: argparse.Namespace) -> int:
    from loradesk.core.config import ModelSettings
    from loradesk.core.selftest import run_self_test

    model = ModelSettings(**_model_settings(args.model)) if args.model else None
    sink = TerminalSink()
    try:
        result = run_self_test(model, sink, keep=args.keep)
    finally:
        sink.close()
    print(result.summary())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
