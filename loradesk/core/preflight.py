"""The pre-flight check: will this run fit, and how long will it take? Measured, not guessed.

:func:`preflight` builds the model and adapter exactly as :func:`loradesk.core.training.run` will (the same
:class:`~loradesk.core.training.TrainingJob` pieces: tokenizing, device and precision, LoRA, the Trainer with
its optimizer, autocast and collator) and runs three optimizer steps on a scratch copy:

1. the run's longest batch (the ``batch_size`` longest rows, cut at max length): warm-up;
2. the same batch again: its peak memory is the worst the run will need, its time the slowest step;
3. a typical batch (the median batch of the run's own batching): its time is the run's time per step;

then it saves a checkpoint into a scratch folder, as the run does at each epoch end (its memory counts).

Memory is what the device reports: on CUDA ``torch.cuda.max_memory_allocated``; elsewhere the process's
peak resident memory (RSS, psutil, sampled on a thread from before the model loads to the end of the
steps), everything included, plus what the run will add on the CPU: each batch shape a step has not seen
before leaves memory behind in the process (with bf16 autocast: oneDNN's cached kernels for that shape,
tens of MiB each; nothing in fp32), so the memory step 3 kept is counted once for every further shape the
run's batching makes (in all at most as much again as the check itself needed). What a step kept is read
from the C allocator's bytes in use (glibc ``mallinfo2``) where it can be: resident memory alone missed most
of it, since the new kernels fill memory the longest batch had just freed (still resident, so no growth).
The scratch model is thrown away and the random number generators are put back as they were, so the run
that follows trains exactly as it would have without the check.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import random
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loradesk.core.config import RunConfig
from loradesk.core.dataset import Example
from loradesk.core.readiness import can_train
from loradesk.core.training import NullSink, TrainingJob, TrainingStopped, planned_steps
from loradesk.core.wording import plural

ProgressFn = Callable[[str, "float | None"], None]
MIB = 2**20
#: How often the CPU memory sampler reads the process's resident memory.
SAMPLE_INTERVAL_S = 0.005
#: The check's steps: warm-up and measured on the longest batch, then one typical batch.
CHECK_STEPS = 3


class CheckStopped(TrainingStopped):
    """The stop flag was set during the pre-flight check; nothing was written."""


@dataclass
class PreflightReport:
    """What the pre-flight check measured, and what it means for the run."""

    model: str
    device: str  # "cuda", "mps" or "cpu"
    device_label: str  # "CPU (2 threads)"
    precision: str
    batch_rows: int  # rows in the longest batch
    longest_tokens: int  # its padded length in tokens
    typical_tokens: int  # the typical batch's padded length
    peak_memory: int | None  # bytes the run will peak at; None when the check ran out of memory
    memory_meaning: str  # what ``peak_memory`` counts, in words
    needed_memory: int | None  # bytes the run needs on top of what was in use before the check
    available_memory: int  # bytes free on the device (CUDA) or available RAM, before the check
    seconds_per_step: float | None  # a typical step (None when the check ran out of memory)
    longest_step_seconds: float | None
    steps: int  # optimizer steps the run will take
    train_rows: int
    fits: bool
    out_of_memory: bool = False
    advice: list[str] = field(default_factory=list)
    check_peak_memory: int | None = None  # bytes: the peak measured during the check itself
    shape_memory: int = 0  # CPU: bytes the process kept after a step on a batch shape it had not seen
    new_shapes: int = 0  # CPU: batch shapes the run will see that the check did not

    @property
    def estimated_seconds(self) -> float | None:
        """The run's training time: its steps times a typical step."""
        return None if self.seconds_per_step is None else self.steps * self.seconds_per_step

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, for the run file's ``preflight`` key."""
        return {**dataclasses.asdict(self), "estimated_seconds": self.estimated_seconds}

    def summary(self) -> str:
        """One line: time per step, estimate, memory and the verdict."""
        if self.out_of_memory:
            return f"Pre-flight check: out of memory on the longest batch ({self.device_label}): will not fit"
        verdict = "fits" if self.fits else "will NOT fit"
        return (f"Pre-flight check: {self.seconds_per_step:.2f} s/step x {self.steps} steps ≈ "
                f"{duration(self.estimated_seconds or 0)}; peak memory {_mib(self.peak_memory)} "
                f"({_memory_kind(self.device)}); {verdict}")

    def lines(self) -> list[str]:
        """The report as a block of aligned lines (the CLI prints it as it is)."""
        out = [f"Pre-flight check: {self.model} on {self.device_label}, {self.precision}",
               f"  Longest batch:   {plural(self.batch_rows, 'row')} x {self.longest_tokens} tokens"]
        if self.out_of_memory:
            out.append("  Peak memory:     more than the device has (it ran out of memory on that batch)")
        else:
            out += [f"  Peak memory:     {_mib(self.peak_memory)}: {self.memory_meaning}",
                    f"  Needs:           {_mib(self.needed_memory)} more than was in use before the check; "
                    f"{_mib(self.available_memory)} {_available_kind(self.device)}",
                    f"  Time per step:   {self.seconds_per_step:.2f} s (a typical batch of {self.typical_tokens} "
                    f"tokens); the longest batch takes {self.longest_step_seconds:.2f} s"]
        out.append(f"  Steps:           {self.steps} (on {plural(self.train_rows, 'training row')})")
        if self.estimated_seconds is not None:
            out.append(f"  Estimated time:  {duration(self.estimated_seconds)} of training "
                       "(plus loading the model and saving)")
        out.append(f"  Verdict:         {'fits' if self.fits else 'will NOT fit'}")
        out += [f"  Try:             {a}" if i == 0 else f"                   {a}" for i, a in enumerate(self.advice)]
        return out


def duration(seconds: float) -> str:
    """``45 s``, ``3 min 20 s``, ``2 h 05 min``."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def _mib(value: int | None) -> str:
    return "unknown" if value is None else f"{value / MIB:,.0f} MiB"


def _memory_kind(device: str) -> str:
    return "GPU memory allocated" if device == "cuda" else "process RSS"


def _available_kind(device: str) -> str:
    return "free on the GPU" if device == "cuda" else "of RAM available"


# --- measuring ---------------------------------------------------------------------------------------------
def available_memory(device: str) -> int:
    """Bytes the run can still use: free GPU memory on CUDA, else the RAM available to new allocations."""
    if device == "cuda":
        import torch

        return int(torch.cuda.mem_get_info()[0])
    import psutil

    return int(psutil.virtual_memory().available)


class PeakRss:
    """The process's peak resident memory while the ``with`` block runs, sampled on a thread."""

    def __init__(self, interval: float = SAMPLE_INTERVAL_S) -> None:
        import psutil

        self._process = psutil.Process()
        self._interval = interval
        self._done = threading.Event()
        self.before = self.peak = self._process.memory_info().rss
        self._thread = threading.Thread(target=self._sample, name="preflight-rss", daemon=True)

    def _sample(self) -> None:
        while not self._done.wait(self._interval):
            self.peak = max(self.peak, self._process.memory_info().rss)

    def current(self) -> int:
        """The resident memory now (also counted towards the peak)."""
        rss = self._process.memory_info().rss
        self.peak = max(self.peak, rss)
        return rss

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()
        self.peak = max(self.peak, self._process.memory_info().rss)


@contextlib.contextmanager
def rng_preserved() -> Iterator[None]:
    """Put Python's, NumPy's and torch's (CPU and CUDA) random generators back as they were afterwards."""
    import numpy as np
    import torch

    py_state, np_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=range(torch.cuda.device_count()) if torch.cuda.is_available() else []):
        try:
            yield
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)


def run_batches(lengths: Sequence[int], config: RunConfig) -> list[list[int]]:
    """The run's batches as row indices, as its sampler forms them: similar lengths together with
    group-by-length (the longest first), else a seeded shuffle."""
    t = config.training
    order = list(range(len(lengths)))
    if t.group_by_length:
        order.sort(key=lambda i: -lengths[i])
    else:
        random.Random(t.seed).shuffle(order)
    return [order[i:i + t.batch_size] for i in range(0, len(order), t.batch_size)]


def _padded(batch: Sequence[int], lengths: Sequence[int]) -> int:
    return max(lengths[i] for i in batch) * len(batch)


def _shape(batch: Sequence[int], lengths: Sequence[int], multiple: int | None = None) -> tuple[int, int]:
    longest = max(lengths[i] for i in batch)
    return len(batch), -(-longest // multiple) * multiple if multiple else longest


def batch_shapes(lengths: Sequence[int], config: RunConfig, multiple: int | None = None) -> set[tuple[int, int]]:
    """The distinct ``(rows, padded length)`` shapes of the run's batches, lengths rounded up to ``multiple``
    as the collator pads them."""
    return {_shape(b, lengths, multiple) for b in run_batches(lengths, config)}


def check_batches(lengths: Sequence[int], config: RunConfig) -> tuple[list[int], list[int]]:
    """``(longest, typical)``: the ``batch_size`` longest rows, and the median batch (by padded tokens) of
    the run's own batching, full batches preferred."""
    size = min(config.training.batch_size, len(lengths))
    longest = sorted(range(len(lengths)), key=lambda i: -lengths[i])[:size]
    batches = run_batches(lengths, config)
    full = [b for b in batches if len(b) == size] or batches
    full.sort(key=lambda b: _padded(b, lengths))
    return longest, full[len(full) // 2]


def malloc_stats() -> dict[str, int] | None:
    """The C allocator's counters in bytes (glibc ``mallinfo2``, all arenas): ``arena`` (heap taken from the
    system), ``uordblks`` (heap in use), ``fordblks`` (heap freed but kept), ``hblkhd`` (mmapped blocks),
    ``keepcost`` (trimmable top); None where that cannot be read (another C library or system)."""
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return None
    names = ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
             "keepcost")

    class MallInfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in names]

    try:
        mallinfo2 = ctypes.CDLL(None).mallinfo2
    except (OSError, AttributeError):
        return None
    mallinfo2.restype = MallInfo2
    info = mallinfo2()
    return {name: int(getattr(info, name)) for name in names}


def allocated_bytes() -> int | None:
    """Bytes the C allocator has handed out and not taken back (glibc ``mallinfo2``: heap in use plus its
    mmapped blocks), or None where that cannot be read (another C library or system)."""
    info = malloc_stats()
    return None if info is None else info["uordblks"] + info["hblkhd"]


def _kept_memory(sampler: PeakRss) -> Callable[[], int]:
    """What to read after each step to see the memory a step kept: the allocator's bytes in use where
    :func:`allocated_bytes` works, else the resident memory."""
    def read() -> int:
        rss = sampler.current()  # also counted towards the peak
        in_use = allocated_bytes()
        return rss if in_use is None else in_use

    return read


def _step_timer(memory: Callable[[], int] | None = None) -> Any:
    """A TrainerCallback that records the clock at the start of training and at the end of each step, and
    ``memory()`` at the end of each step."""
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self) -> None:
            self.marks: list[float] = []
            self.memory: list[int] = []

        def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.marks = [time.perf_counter()]

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.marks.append(time.perf_counter())
            if memory is not None:
                self.memory.append(memory())

        def seconds(self, step: int) -> float:
            return self.marks[step] - self.marks[step - 1]

    return StepTimer()


class _ProgressSink(NullSink):
    def __init__(self, progress: ProgressFn | None) -> None:
        self._progress = progress

    def status(self, text: str) -> None:
        if self._progress is not None:
            self._progress(text, None)


# --- the check ---------------------------------------------------------------------------------------------
def preflight(config: RunConfig, rows: Sequence[Example], stop: threading.Event | None = None,
              progress: ProgressFn | None = None) -> PreflightReport:
    """Measure one run's memory and time per step on its longest and a typical batch (see the module doc).

    Raises :class:`CheckStopped` when ``stop`` is set, and the run's own errors (bad settings or rows,
    a model that does not load) as :func:`loradesk.core.training.run` would.
    """
    stop = stop or threading.Event()
    rows = [dataclasses.replace(r) for r in rows]
    readiness = can_train(config, rows)
    if readiness.settings:
        readiness.raise_for_problems()
    if readiness.data:
        from loradesk.core.training import TrainingError

        raise TrainingError(readiness.data)
    job = TrainingJob(config, rows, _ProgressSink(progress), stop)
    with rng_preserved():
        try:
            return _measure(job, progress)
        except TrainingStopped:
            raise CheckStopped("The pre-flight check was stopped; nothing was written") from None
        finally:
            _release_memory()


def _release_memory() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _measure(job: TrainingJob, progress: ProgressFn | None) -> PreflightReport:
    import torch

    from loradesk.core import models, step_speed

    config = job.config
    prep = job.prepare()
    job._check_stop()
    lengths = list(prep.train_data["length"])
    longest, typical = check_batches(lengths, config)
    t = config.training
    scratch = RunConfig.from_dict(config.to_dict())  # the run's settings, on the check's 3-batch dataset
    scratch.training.batch_size = len(longest)
    scratch.training.max_steps = CHECK_STEPS
    scratch.training.save_steps, scratch.training.save_minutes = 0, 0.0  # one checkpoint, after the last step
    check = TrainingJob(scratch, job.rows, job.sink, job.stop)
    data = prep.train_data.select([*longest * t.grad_accum, *longest * t.grad_accum, *typical * t.grad_accum])

    cuda = prep.device == "cuda"
    available = available_memory(prep.device)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
        in_use = torch.cuda.memory_allocated()
    sampler = PeakRss() if not cuda else contextlib.nullcontext()
    timer = _step_timer(None if cuda else _kept_memory(sampler))
    out_of_memory = False
    with sampler, tempfile.TemporaryDirectory(prefix="loradesk-check-", ignore_cleanup_errors=True) as scratch_dir:
        try:
            model = check.build_model(prep)
            job._check_stop()
            if progress is not None:
                progress(f"Measuring {CHECK_STEPS} training steps…", None)
            trainer, _collator, _callback = check.build_trainer(
                model, prep.tokenizer, data, None, Path(scratch_dir), prep.device, prep.precision,
                time.monotonic())
            trainer.args.train_sampling_strategy = "sequential"  # longest, longest, typical: in this order
            trainer.add_callback(timer)
            trainer.train()
        except torch.OutOfMemoryError:
            out_of_memory = True
        finally:
            model = trainer = None  # the scratch weights go now
    job._check_stop()
    if not out_of_memory and len(timer.marks) <= CHECK_STEPS:
        raise RuntimeError("the pre-flight check ended before its steps were measured")

    if cuda:
        peak = None if out_of_memory else int(torch.cuda.max_memory_allocated())
        needed = None if peak is None else peak - in_use
        meaning = "the most GPU memory torch allocated (torch.cuda.max_memory_allocated)"
    else:  # each batch shape a step has not seen before leaves memory behind (bf16 autocast on CPU)
        growth = max(0, timer.memory[2] - timer.memory[1]) if len(timer.memory) > 2 else 0
        multiple = step_speed.pad_multiple(prep.device)
        seen = {_shape(longest, lengths, multiple), _shape(typical, lengths, multiple)}
        new_shapes = len(batch_shapes(lengths, config, multiple) - seen)
        # at most what the check itself needed again: one noisy reading times many shapes must not cry wolf
        growth = min(growth, (sampler.peak - sampler.before) // max(1, new_shapes))
        peak = sampler.peak + growth * new_shapes
        needed = peak - sampler.before
        meaning = (f"the process's peak resident memory (RSS), everything included: {_mib(sampler.peak)} "
                   f"measured while the check loaded the model and trained, plus {_mib(growth)} that a new "
                   f"batch shape added x {new_shapes} more shapes in the run")
    fits = not out_of_memory and needed is not None and needed <= available
    report = PreflightReport(
        model=TrainingJob._model_label(prep.model_dir), device=prep.device,
        device_label=models.device_description(prep.device), precision=prep.precision,
        batch_rows=len(longest), longest_tokens=max(lengths[i] for i in longest),
        typical_tokens=max(lengths[i] for i in typical), peak_memory=peak, memory_meaning=meaning,
        needed_memory=needed, available_memory=available,
        seconds_per_step=None if out_of_memory else timer.seconds(3),
        longest_step_seconds=None if out_of_memory else timer.seconds(2),
        steps=planned_steps(config, len(prep.train_rows)), train_rows=len(prep.train_rows),
        fits=fits, out_of_memory=out_of_memory,
        check_peak_memory=peak if cuda else sampler.peak, shape_memory=0 if cuda else growth,
        new_shapes=0 if cuda else new_shapes)
    if not fits:
        report.advice = advice(config, lengths, cuda)
    return report


def advice(config: RunConfig, lengths: Sequence[int], cuda: bool) -> list[str]:
    """Concrete changes that make a run need less memory, most effective first."""
    from loradesk.core.health import smaller_batch

    t = config.training
    out = []
    smaller = smaller_batch(config)
    if smaller is not None:
        s = smaller.training
        out.append(f"batch size {s.batch_size} with gradient accumulation {s.grad_accum} (the same effective "
                   f"batch of {s.batch_size * s.grad_accum} rows in smaller pieces)")
    longest = max(lengths, default=0)
    if longest >= 16:
        shorter = max(8, longest // 2 // 8 * 8)
        cut = sum(1 for n in lengths if n > shorter)
        out.append(f"max length {shorter} (now {t.max_length}; {plural(cut, 'training row')} of "
                   f"{len(lengths)} would be cut)")
    out.append("a smaller model" + ("; closing other programs that use the GPU frees some memory too" if cuda
                                    else "; closing other programs frees some RAM too"))
    return out

