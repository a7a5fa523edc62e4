"""Training as a background job: :func:`train` runs ``core.training.run`` under a :class:`~loradesk.ui.jobs.TaskState`.

The core :class:`~loradesk.core.training.Sink` it hands to the run turns every report into a small typed event
(``state.emit``), which :class:`~loradesk.ui.jobs.Jobs` delivers to the Train tab on the GUI thread, in order:
a :class:`~loradesk.core.training.TrainProgress` per logged step, :class:`TrainStatus`, :class:`TrainLog`,
:class:`TrainDevice`, and :class:`OutOfMemoryOffer` just before an out-of-memory error. The job's stop flag
is the run's stop flag. Heavy modules (torch, transformers, ``core.training``) are imported here, on the
worker thread, so the window never waits for them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loradesk.core.config import RunConfig
from loradesk.core.dataset import Example

if TYPE_CHECKING:
    from loradesk.core.training import RunResult, TrainProgress
    from loradesk.ui.jobs import TaskState


@dataclass(frozen=True)
class TrainText:
    """A line of text from the run; its subclass says which."""

    text: str


class TrainStatus(TrainText):
    """The run's phase changed ("Loading model…", "Training", …)."""


class TrainLog(TrainText):
    """One line for the run's log."""


class TrainDevice(TrainText):
    """The device the run trains on, as the user reads it ("CPU (2 threads)")."""


@dataclass(frozen=True)
class OutOfMemoryOffer:
    """The device ran out of memory: ``config`` is the same run with a smaller batch, ``run_dir`` the failed run."""

    config: RunConfig
    run_dir: Path


@dataclass(frozen=True)
class ToolsAsTextOffer:
    """The model's chat template leaves out tool calls: the rows would train with the ``tools_as_text`` setting."""


#: The error box of :class:`ToolsAsTextOffer`: its title and the button that turns the setting on and trains.
TOOLS_TITLE = "The model's chat template has no tool calls"
TOOLS_RETRY = "Write tool calls as text and train"


@dataclass(frozen=True)
class TrainRequest:
    """What to train: new rows, a run to resume (``resume_from``), an out-of-memory run to retry (``retry_of``),
    or a run to train more (``continue_from``, on ``rows``, or on its own rows when there are none)."""

    config: RunConfig
    rows: Sequence[Example] = ()
    runs_dir: Path | None = None
    resume_from: Path | None = None
    retry_of: Path | None = None
    continue_from: Path | None = None
    preflight: dict[str, Any] | None = None  # the pre-flight check's report, recorded in the run file
    heldout: Path | None = None  # held-out questions: the run stops once it has learned them (a setting)


class StateSink:
    """The ``core.training.Sink`` of a training job: every report becomes a typed event on ``state``."""

    def __init__(self, state: TaskState) -> None:
        self._state = state

    def status(self, text: str) -> None:
        self._state.emit(TrainStatus(text))

    def progress(self, p: TrainProgress) -> None:
        self._state.emit(p)

    def log(self, text: str) -> None:
        self._state.emit(TrainLog(text))


def train(request: TrainRequest, *, state: TaskState) -> RunResult | None:
    """Run ``request`` until it completes or ``state.stop`` is set; None when stopped before training started.

    Errors propagate (the job reports them); an out-of-memory error that can be retried with a smaller batch
    first emits an :class:`OutOfMemoryOffer`.
    """
    state.emit(TrainStatus("Loading model…"))
    from loradesk.core.ml_stack import import_stack

    import_stack()  # waits for the start-up import on another thread, if it is still running
    from loradesk.core import models, training

    state.emit(TrainDevice(models.device_description()))
    sink = StateSink(state)
    try:
        if request.continue_from is not None:
            from loradesk.core import train_more

            t = request.config.training
            return train_more.continue_run(request.continue_from, sink, state.stop, epochs=t.epochs,
                                           max_steps=t.max_steps, rows=request.rows or None,
                                           runs_dir=request.runs_dir)
        if request.retry_of is not None:
            return training.retry_smaller(request.config, request.retry_of, sink, state.stop, request.runs_dir)
        return training.run(request.config, request.rows, sink, state.stop, request.runs_dir, request.resume_from,
                            preflight=request.preflight, heldout=request.heldout)
    except training.TrainingStopped as exc:  # stopped while the model loaded: not a failure
        state.emit(TrainStatus(str(exc)))
        return None
    except training.ToolsUnsupported:
        state.emit(ToolsAsTextOffer())
        raise
    except training.OutOfMemory as exc:
        if exc.retry_config is not None:
            state.emit(OutOfMemoryOffer(exc.retry_config, Path(exc.run_dir)))
        raise
