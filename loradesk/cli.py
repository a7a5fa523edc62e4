"""The ``loradesk`` command: the GUI by default, and headless subcommands over the same core.

    loradesk                         open the app (``loradesk gui [PROJECT]`` too)
    loradesk train DATA              train a LoRA adapter on a dataset file
    loradesk ask --adapter RUN "Q"   the base and the tuned model answer side by side
    loradesk eval --adapter RUN      score both models on held-out questions
    loradesk export RUN --out DIR    copy the adapter, or write a merged model with --merged
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
from typing import Any

from loradesk import __version__

EXPECTED_ERRORS: tuple[type[BaseException], ...] = (ValueError, RuntimeError, OSError)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="loradesk", description="Teach a language model something new with LoRA.")
    p.add_argument("--version", action="version", version=f"LoRA Desk {__version__}")
    p.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    g = sub.add_parser("gui", help="open the desktop app (the default)")
    g.add_argument("project", nargs="?", help="a .loradesk project or a dataset file to open")

    t = sub.add_parser("train", help="train a LoRA adapter on a dataset file")
    t.add_argument("data", help="dataset file: JSON, JSONL, CSV, Alpaca, ShareGPT or OpenAI chat")
    t.add_argument("--model", help="'default', a Hub id, a model folder or a .gguf file (default: built-in)")
    t.add_argument("--config", help="run settings JSON (as saved by the app or --save-config)")
    t.add_argument("--out", help="folder for the run (default: a new folder in the runs directory)")
    t.add_argument("--epochs", type=float)
    t.add_argument("--max-steps", type=int)
    t.add_argument("--lr", type=float, help="learning rate")
    t.add_argument("--batch-size", type=int)
    t.add_argument("--resume", metavar="RUN", help="continue a stopped run from its last checkpoint")
    t.add_argument("--save-config", metavar="FILE", help="write the effective settings to FILE and exit")

    a = sub.add_parser("ask", help="ask the base and the tuned model the same question")
    a.add_argument("question", nargs="+")
    a.add_argument("--adapter", required=True, metavar="RUN", help="a run folder (or exported adapter)")
    _generation_args(a)

    e = sub.add_parser("eval", help="score base and tuned answers on held-out questions")
    e.add_argument("--adapter", required=True, metavar="RUN")
    e.add_argument("--heldout", help="JSON/JSONL of {prompt, expected} (default: the sample's held-out file)")
    _generation_args(e)

    x = sub.add_parser("export", help="export a run's adapter, or a merged model")
    x.add_argument("run", help="run folder")
    x.add_argument("--out", required=True, help="destination folder")
    x.add_argument("--merged", action="store_true", help="fold the adapter into the base weights")

    sub.add_parser("runs", help="list finished runs")

    s = sub.add_parser("self-test", help="train a few steps, reload and answer, offline: checks this install")
    s.add_argument("--model", help="'default', a model folder or a .gguf file (default: built-in)")
    s.add_argument("--keep", action="store_true", help="keep the run folder instead of removing it")
    return p


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
                "runs": cmd_runs, "self-test": cmd_self_test}[command](args)
    except KeyboardInterrupt:
        print("loradesk: interrupted", file=sys.stderr)
        return 130
    except EXPECTED_ERRORS as exc:
        if args.debug:
            raise
        print(f"loradesk: error: {exc}", file=sys.stderr)
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
    if spec in ("", "default"):
        return {"kind": "default", "name": ""}
    path = Path(spec).expanduser()
    if spec.lower().endswith(".gguf"):
        return {"kind": "gguf", "name": str(path)}
    if path.exists() or spec.startswith((".", "/", "~")):
        return {"kind": "local", "name": str(path)}
    return {"kind": "hub", "name": spec}


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

        if self.bar is None:  # starts at the first reported step, so the rate is not skewed by it
            self.bar = tqdm(total=p.max_steps, initial=p.step, unit="step", file=sys.stderr, dynamic_ncols=True)
        self.bar.update(p.step - self.bar.n)
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
    from loradesk.core.config import RunConfig

    config = RunConfig.load(args.config) if args.config else RunConfig()
    data = config.to_dict()
    if args.model:
        data["model"].update(_model_settings(args.model))
    for flag, key in (("epochs", "epochs"), ("max_steps", "max_steps"), ("lr", "learning_rate"),
                      ("batch_size", "batch_size")):
        if getattr(args, flag) is not None:
            data["training"][key] = getattr(args, flag)
    config = RunConfig.from_dict(data).check()
    if args.save_config:
        config.save(args.save_config)
        print(f"Settings written to {args.save_config}")
        return 0

    from loradesk.core import training
    from loradesk.core.formats import read_dataset

    rows = [] if args.resume else read_dataset(Path(args.data))
    sink = TerminalSink()
    stop = threading.Event()
    box: dict[str, Any] = {}

    def work() -> None:
        try:
            box["result"] = training.run(config, rows, sink, stop, out_dir=Path(args.out) if args.out else None,
                                         resume_from=Path(args.resume) if args.resume else None)
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=work, name="training", daemon=True)
    thread.start()
    try:
        while thread.is_alive():
            thread.join(0.2)
    except KeyboardInterrupt:  # first Ctrl+C: stop at the next step and keep the adapter
        print("\nStopping after this step (the adapter is kept)… press Ctrl+C again to abort.", file=sys.stderr)
        stop.set()
        thread.join()
    sink.close()
    if "error" in box:
        raise box["error"]
    r = box["result"]
    loss = f"{r.final_loss:.4f}" if r.final_loss is not None else "n/a"
    speed = f", {r.tokens_per_second:.0f} trained tokens/s" if r.tokens_per_second else ""
    print(f"{r.status.capitalize()}: {r.steps} steps in {r.seconds:.0f} s on {r.device} ({r.precision}{speed}), "
          f"final loss {loss}")
    if r.cut_rows:
        print(f"Note: {r.cut_rows} row(s) were longer than the max length and were cut.")
    print(f"Adapter: {r.run_dir}")
    print(f'Try it:  loradesk ask --adapter "{r.run_dir}" "your question"')
    return 0


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
    question = " ".join(args.question)
    answerer = _answerer(args.adapter)
    settings = _settings(args)
    base = answerer.answer(question, tuned=False, settings=settings)
    tuned = answerer.answer(question, tuned=True, settings=settings)
    print(f"Q: {question}\n")
    print(side_by_side("Base model", base, "Tuned model", tuned))
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from loradesk.core.generation import compare_all, load_heldout
    from loradesk.core.paths import sample_data_dir
    from loradesk.core.runs import RUN_FILE, record_score

    heldout = Path(args.heldout) if args.heldout else sample_data_dir() / "sample_heldout.json"
    questions = load_heldout(heldout)
    answerer = _answerer(args.adapter)
    rows = compare_all(answerer, questions, _settings(args))
    for r in rows:
        print(f"[{'x' if r.base_ok else ' '}|{'x' if r.tuned_ok else ' '}] {r.prompt}  (expects: {r.expected})")
        print(textwrap.indent(textwrap.fill(f"tuned: {r.tuned}", 100), "      "))
    base_score = sum(r.base_ok for r in rows)
    tuned_score = sum(r.tuned_ok for r in rows)
    print(f"\nBase {base_score}/{len(rows)}, tuned {tuned_score}/{len(rows)} contain the expected phrase")
    if (Path(args.adapter) / RUN_FILE).is_file():
        record_score(Path(args.adapter), tuned_score / len(rows) if rows else 0.0,
                     {"base": base_score, "tuned": tuned_score, "total": len(rows), "heldout": str(heldout)})
    return 0


# --- export / runs -----------------------------------------------------------------------------------------
def cmd_export(args: argparse.Namespace) -> int:
    from loradesk.core.runs import export_adapter, export_merged

    dest = (export_merged if args.merged else export_adapter)(Path(args.run), Path(args.out))
    what = "Merged model" if args.merged else "Adapter"
    print(f"{what} written to {dest}")
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    from loradesk.core.runs import list_runs

    runs = list_runs()
    if not runs:
        print("No runs yet. Train one with: loradesk train data/sample.json")
    for r in runs:
        loss = f"{r.final_loss:.3f}" if r.final_loss is not None else "  -  "
        score = f"{100 * r.score:.0f} %" if r.score is not None else "-"
        print(f"{r.created:19}  {r.status:9}  loss {loss}  score {score:>5}  {r.model}  {r.path}")
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
