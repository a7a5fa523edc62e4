"""``loradesk self-test``: prove, headless and offline, that this install can train and answer.

It loads the model (the built-in one unless told otherwise), trains a few steps on a handful of sample
rows with the real :func:`~loradesk.core.training.run`, checks the adapter files, reloads the adapter with
:class:`~loradesk.core.generation.Answerer`, and asks the base and the tuned model the same question.
The run goes to a temporary folder (removed when the test passes, kept when it fails); the built-in
model is converted once into the user data folder, like on any first use. Nothing is written beside
the executable.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from loradesk.core.config import ModelSettings, RunConfig
from loradesk.core.training import NullSink, Sink

if TYPE_CHECKING:
    from loradesk.core.generation import Answerer

SELF_TEST_ROWS = 8
SELF_TEST_STEPS = 3
SELF_TEST_TOKENS = 12


class SelfTestError(RuntimeError):
    """A self-test stage failed; the message names the stage and the reason."""


@dataclass
class SelfTestResult:
    """What a passing self-test measured and where it wrote."""

    seconds: float
    model: str
    model_dir: Path
    device: str
    precision: str
    steps: int
    final_loss: float | None
    run_dir: Path
    kept: bool
    base_answer: str
    tuned_answer: str

    def summary(self) -> str:
        """One line: time, model, device, precision, training and where the files went."""
        loss = f", loss {self.final_loss:.3f}" if self.final_loss is not None else ""
        where = f"run kept in {self.run_dir}" if self.kept else f"run written to {self.run_dir} (removed)"
        return (f"Self-test passed in {self.seconds:.1f} s: {self.model} on {self.device}, {self.precision}, "
                f"{self.steps} steps{loss}; adapter saved, reloaded and answering; {where}; "
                f"model in {self.model_dir}")


def self_test_config(model: ModelSettings | None = None, steps: int = SELF_TEST_STEPS) -> RunConfig:
    """Settings for a short run: a few steps, small batches, no validation split, no checkpoints."""
    config = RunConfig()
    if model is not None:
        config.model = model
    t = config.training
    t.max_steps, t.batch_size, t.grad_accum, t.validation_fraction = steps, 2, 1, 0.0
    t.logging_steps, t.save_steps, t.max_length = 1, steps + 1, 128
    return config.check()


def run_self_test(model: ModelSettings | None = None, sink: Sink | None = None, out_dir: Path | None = None,
                  keep: bool = False, rows: int = SELF_TEST_ROWS, steps: int = SELF_TEST_STEPS) -> SelfTestResult:
    """Train, save, reload and answer; raise :class:`SelfTestError` naming the stage that failed.

    ``out_dir`` (new or empty) receives the run; by default a temporary folder, removed on success unless
    ``keep``. A folder given by the caller is always kept.
    """
    from loradesk.core import runs, training
    from loradesk.core.formats import read_dataset
    from loradesk.core.generation import Answerer, GenerationSettings
    from loradesk.core.paths import sample_data_dir

    started = time.monotonic()
    sink = sink or NullSink()
    own_folder = out_dir is None
    parent = Path(tempfile.mkdtemp(prefix="loradesk-self-test-")) if own_folder else None
    run_dir = parent / "run" if parent is not None else Path(out_dir)  # type: ignore[arg-type]
    stage = "reading the sample data"
    try:
        examples = read_dataset(sample_data_dir() / "sample.json")[:rows]
        stage = "loading the model and training"
        config = self_test_config(model, steps)
        result = training.run(config, examples, sink, threading.Event(), out_dir=run_dir)
        if result.status != "completed" or result.steps != steps:
            raise SelfTestError(f"training ended {result.status} after {result.steps} of {steps} steps")
        stage = "checking the adapter files"
        sink.status("Checking the adapter files…")
        check_adapter_files(run_dir, config)
        stage = "reloading the adapter"
        sink.status("Reloading the adapter…")
        answerer = Answerer.from_run(run_dir)
        stage = "comparing the base and the tuned model"
        check_adapter_active(answerer, examples[0].prompt)
        stage = "generating answers"
        sink.status("Generating a base and a tuned answer…")
        settings = GenerationSettings(max_new_tokens=SELF_TEST_TOKENS)
        base = answerer.answer(examples[0].prompt, tuned=False, settings=settings)
        tuned = answerer.answer(examples[0].prompt, tuned=True, settings=settings)
        record = runs.read_run_file(run_dir)
    except Exception as exc:
        reason = str(exc) if isinstance(exc, SelfTestError) else f"{type(exc).__name__}: {exc}"
        raise SelfTestError(f"self-test failed while {stage}: {reason} (files kept in {run_dir})") from exc
    kept = keep or not own_folder
    if not kept and parent is not None:
        shutil.rmtree(parent, ignore_errors=True)
    return SelfTestResult(
        seconds=time.monotonic() - started, model=record["model"], model_dir=Path(record["base_model_dir"]),
        device=result.device, precision=result.precision, steps=result.steps, final_loss=result.final_loss,
        run_dir=run_dir, kept=kept, base_answer=base, tuned_answer=tuned)


def check_adapter_files(run_dir: Path, config: RunConfig) -> None:
    """The run folder holds a complete adapter: its config with our rank, trained finite LoRA weights and
    the tokenizer. Raises :class:`SelfTestError` naming the file and what is wrong."""
    from safetensors import safe_open

    cfg_path = run_dir / "adapter_config.json"
    weights = run_dir / "adapter_model.safetensors"
    for path in (cfg_path, weights, run_dir / "tokenizer_config.json"):
        if not path.is_file():
            raise SelfTestError(f"{path.name} is missing from {run_dir}")
    adapter_cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    if adapter_cfg.get("r") != config.lora.r:
        raise SelfTestError(f"{cfg_path}: rank r is {adapter_cfg.get('r')!r}, expected {config.lora.r}")
    trained_b = 0
    with safe_open(str(weights), framework="pt") as f:
        names = list(f.keys())
        if not any("lora_A" in n for n in names) or not any("lora_B" in n for n in names):
            raise SelfTestError(f"{weights}: no LoRA A/B weights in it ({len(names)} tensors)")
        for name in names:
            tensor = f.get_tensor(name)
            if not bool(tensor.isfinite().all()):
                raise SelfTestError(f"{weights}: tensor {name} has NaN or infinite values")
            if "lora_B" in name and bool(tensor.abs().sum() > 0):
                trained_b += 1
    if not trained_b:  # LoRA B starts at zero: all-zero B means the steps changed nothing
        raise SelfTestError(f"{weights}: every lora_B tensor is still zero, so training did not update the adapter")


def check_adapter_active(answerer: Answerer, prompt: str) -> None:
    """The reloaded adapter changes the model's output: tuned logits differ from the base model's."""
    import torch

    ids = answerer.tokenizer(answerer._prompt_text(prompt), return_tensors="pt").to(answerer.device)
    with torch.no_grad():
        tuned = answerer.model(**ids).logits
        with answerer.model.disable_adapter():
            base = answerer.model(**ids).logits
    if not bool(torch.isfinite(tuned).all()):
        raise SelfTestError("the tuned model's output has NaN or infinite values")
    if torch.equal(tuned, base):
        raise SelfTestError("the reloaded adapter does not change the model's output")
