"""A run started by torchrun or ``accelerate launch``: which rank this process is, and what the ranks agree on.

The launcher starts the same ``loradesk train`` once per rank, all writing into one shared run folder. Only
the main process (global rank 0) writes the run folder's files and prints; every rank trains (data-parallel:
the Trainer gives each rank its share of every batch) and every rank stops at the same step.

Before the Trainer exists, :func:`current` answers from accelerate's ``PartialState``: the shared state that
``TrainingArguments`` uses later, which reads the launcher's variables and joins the process group (gloo on
the CPU, nccl on CUDA GPUs, each rank on its own GPU). Whether to ask it at all is the one decision taken from
the environment: a launcher sets ``WORLD_SIZE`` above 1, and a plain process (the app, a local ``loradesk
train``) never touches accelerate and is rank 0 of 1. Once the Trainer exists, the run uses its own facts
(``args.world_size``, ``trainer.is_world_process_zero()``, ``args.should_save``).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Ranks:
    """This process's place among the ranks of a launched run (a plain process: rank 0 of 1)."""

    world_size: int = 1
    rank: int = 0
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """The process that writes the run folder and prints (global rank 0)."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


LOCAL = Ranks()


def launched() -> bool:
    """Whether a launcher started this process as one of several ranks (``WORLD_SIZE`` > 1, as torchrun and
    ``accelerate launch`` set it)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1")) > 1
    except ValueError:
        return False


@functools.cache
def current() -> Ranks:
    """This process's ranks; under a launcher this joins the process group (every rank must call it)."""
    if not launched():
        return LOCAL
    from accelerate import PartialState
    from accelerate.utils import str_to_bool

    from loradesk.core.models import pick_device

    # as TrainingArguments will ask it: gloo on the CPU (also with `accelerate launch --cpu`), else the GPU's
    cpu = pick_device() == "cpu" or bool(str_to_bool(os.environ.get("ACCELERATE_USE_CPU", "false")))
    state = PartialState(cpu=cpu)
    return Ranks(state.num_processes, state.process_index, state.local_process_index)


def finish() -> None:
    """Leave the process group at the end of a launched run, so its communication threads stop before the
    interpreter exits (left to the C++ destructors, a rank could abort at exit after a complete run)."""
    if not launched():
        return
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def leave(code: int) -> None:
    """End a launched rank after its run is over and written: leave the process group, flush the output, and exit
    with ``code`` at once, without the interpreter's teardown. There, gloo's worker threads could still release
    tensors that need the interpreter lock, and a rank aborted ("terminate called without an active exception")
    now and then after a complete run. A process that was not launched just returns."""
    if not launched():
        return
    import contextlib
    import logging
    import sys

    finish()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed or broken pipe: nothing more to say on it
            stream.flush()
    os._exit(code)


def barrier() -> None:
    """Wait until every rank gets here (nothing in a plain process)."""
    if current().distributed:
        from accelerate import PartialState

        PartialState().wait_for_everyone()


def from_main(make: Callable[[], T]) -> T:
    """``make()`` on the main process, its (picklable) answer on every rank: one run folder name for all."""
    ranks = current()
    if not ranks.distributed:
        return make()
    from accelerate.utils import broadcast_object_list

    box: list[Any] = [make() if ranks.is_main else None]
    broadcast_object_list(box, from_process=0)
    return box[0]


def any_rank(flag: bool, device: Any = "cpu") -> bool:
    """True on every rank when ``flag`` is true on any (an all-reduce; ``device`` is the rank's device, a CUDA
    one for nccl). Every rank must call it at the same point, as with any collective."""
    return bool(_all_reduce(1.0 if flag else 0.0, "MAX", device)) if current().distributed else flag


def total(value: float, device: Any = "cpu") -> float:
    """The sum of ``value`` over every rank (itself in a plain process); a collective like :func:`any_rank`."""
    return _all_reduce(value, "SUM", device) if current().distributed else value


def _all_reduce(value: float, op: str, device: Any) -> float:
    import torch
    import torch.distributed as dist

    tensor = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op=getattr(dist.ReduceOp, op))
    return float(tensor.item())
