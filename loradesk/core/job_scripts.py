"""The text of an exported job folder's launchers: the accelerate configs (DDP, FSDP, DeepSpeed ZeRO-3),
``launch.sh``, ``slurm.sbatch`` and the README with the exact commands (see :mod:`loradesk.core.job_export`).

Every launcher runs the same command on each rank: ``python -m loradesk train data.jsonl --config run.json
--out OUT``. The number format comes from ``run.json`` (``training.precision``), so the accelerate files say
``mixed_precision: 'no'`` and leave it to the trainer.
"""

from __future__ import annotations

from typing import Any

#: GPUs per machine the accelerate files and the SLURM script assume; the launch commands pass the real count.
GPUS_PER_NODE = 8
MASTER_PORT = 29500
TRAIN_ARGS = "data.jsonl --config run.json --out"

ACCELERATE_FILES = {
    "ddp": "accelerate/ddp.yaml",
    "fsdp": "accelerate/fsdp.yaml",
    "deepspeed": "accelerate/deepspeed_zero3.yaml",
}


def _accelerate_base(distributed_type: str) -> dict[str, Any]:
    return {
        "compute_environment": "LOCAL_MACHINE",
        "distributed_type": distributed_type,
        "num_machines": 1,
        "num_processes": GPUS_PER_NODE,
        "machine_rank": 0,
        "gpu_ids": "all",
        "mixed_precision": "no",
        "rdzv_backend": "static",
        "same_network": True,
        "use_cpu": False,
        "debug": False,
        "main_training_function": "main",
    }


def accelerate_configs(layer_classes: list[str]) -> dict[str, dict[str, Any]]:
    """The three accelerate configs by kind (``ddp``, ``fsdp``, ``deepspeed``), as YAML-ready dicts.

    FSDP follows peft's recipe for LoRA: one FSDP unit per decoder layer (``layer_classes``, e.g.
    ``LlamaDecoderLayer``; empty: accelerate takes the model's own ``_no_split_modules``), full sharding,
    ``use_orig_params: false`` (frozen and trained weights kept apart) and a sharded state dict for
    checkpoints. DeepSpeed is ZeRO-3 set inline (``deepspeed_config``), no JSON file needed.
    """
    fsdp: dict[str, Any] = {
        "fsdp_version": 1,
        "fsdp_auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
        "fsdp_backward_prefetch": "BACKWARD_PRE",
        "fsdp_cpu_ram_efficient_loading": True,
        "fsdp_forward_prefetch": False,
        "fsdp_offload_params": False,
        "fsdp_sharding_strategy": "FULL_SHARD",
        "fsdp_state_dict_type": "SHARDED_STATE_DICT",
        "fsdp_sync_module_states": True,
        "fsdp_use_orig_params": False,
    }
    if layer_classes:
        fsdp["fsdp_transformer_layer_cls_to_wrap"] = ",".join(layer_classes)
    deepspeed = {
        "deepspeed_multinode_launcher": "standard",
        "zero_stage": 3,
        "zero3_init_flag": True,
        "zero3_save_16bit_model": True,
        "offload_optimizer_device": "none",
        "offload_param_device": "none",
    }
    return {
        "ddp": _accelerate_base("MULTI_GPU"),
        "fsdp": {**_accelerate_base("FSDP"), "fsdp_config": fsdp},
        "deepspeed": {**_accelerate_base("DEEPSPEED"), "deepspeed_config": deepspeed},
    }


ACCELERATE_HEADERS = {
    "ddp": "Data-parallel (DDP): a full copy of the model on every GPU. The usual choice up to ~13B with LoRA.",
    "fsdp": "FSDP: the model sharded over the GPUs (for models that do not fit one GPU, e.g. 70B).",
    "deepspeed": "DeepSpeed ZeRO-3: the model sharded over the GPUs; needs pip install \"loradesk[cluster]\".",
}


def accelerate_yaml(kind: str, config: dict[str, Any]) -> str:
    """One accelerate config file: a comment saying what it is for and how it is launched, then the YAML."""
    import yaml

    header = (f"# {ACCELERATE_HEADERS[kind]}\n"
              f"# accelerate launch --config_file {ACCELERATE_FILES[kind]} --num_processes N -m loradesk train "
              f"{TRAIN_ARGS} runs/NAME\n"
              "# --num_processes (all GPUs of all machines) and --num_machines on the command line override the "
              "values below.\n")
    return header + yaml.safe_dump(config, sort_keys=False)


def launch_sh(name: str) -> str:
    """``launch.sh``: torchrun (or ``LAUNCHER=accelerate``) on this machine, or as one node of several."""
    return f"""#!/usr/bin/env bash
# Train "{name}" with data-parallel ranks (see README.md).
#   bash launch.sh [NPROC] [TRAIN OPTIONS]   this machine, NPROC processes (default: its GPUs, else 1);
#                                            e.g. bash launch.sh 8 --max-steps 10 for a smoke run
#   LAUNCHER=accelerate ACCELERATE_CONFIG=accelerate/fsdp.yaml bash launch.sh 8
#   NNODES=2 NODE_RANK=0 MASTER_ADDR=10.0.0.1 bash launch.sh 8   (then NODE_RANK=1 on the second machine)
# Environment: NPROC, OUT (the run folder, default runs/{name}), NNODES, NODE_RANK, MASTER_ADDR,
# MASTER_PORT (default {MASTER_PORT}), LAUNCHER (torchrun or accelerate), ACCELERATE_CONFIG, PYTHON.
set -euo pipefail
cd "$(dirname "${{BASH_SOURCE[0]}}")"
# After Ctrl+C or SIGTERM, torchrun gives the ranks this many seconds to finish their step and save (default 30).
export TORCH_ELASTIC_SHUTDOWN_TIMEOUT="${{TORCH_ELASTIC_SHUTDOWN_TIMEOUT:-300}}"

PYTHON="${{PYTHON:-python3}}"
NPROC="${{1:-${{NPROC:-}}}}"
if [[ -z "$NPROC" ]]; then
  NPROC="$("$PYTHON" -c 'import torch; print(torch.cuda.device_count() or 1)' 2>/dev/null || echo 1)"
fi
OUT="${{OUT:-runs/{name}}}"
NNODES="${{NNODES:-1}}"
NODE_RANK="${{NODE_RANK:-0}}"
MASTER_ADDR="${{MASTER_ADDR:-127.0.0.1}}"
LAUNCHER="${{LAUNCHER:-torchrun}}"
ACCELERATE_CONFIG="${{ACCELERATE_CONFIG:-{ACCELERATE_FILES["ddp"]}}}"
TRAIN=(-m loradesk train data.jsonl --config run.json --out "$OUT" "${{@:2}}")

case "$LAUNCHER" in
  torchrun)
    if command -v torchrun >/dev/null 2>&1; then RUN=(torchrun); else RUN=("$PYTHON" -m torch.distributed.run); fi
    if [[ "$NNODES" -gt 1 ]]; then
      RUN+=(--nnodes "$NNODES" --node_rank "$NODE_RANK" --master_addr "$MASTER_ADDR"
            --master_port "${{MASTER_PORT:-{MASTER_PORT}}}")
    else
      RUN+=(--standalone)  # one machine: a free port is picked
    fi
    RUN+=(--nproc_per_node "$NPROC")
    ;;
  accelerate)
    if command -v accelerate >/dev/null 2>&1; then RUN=(accelerate launch)
    else RUN=("$PYTHON" -m accelerate.commands.launch); fi
    RUN+=(--config_file "$ACCELERATE_CONFIG" --num_machines "$NNODES" --num_processes "$((NNODES * NPROC))")
    if [[ "$NNODES" -gt 1 ]]; then
      RUN+=(--machine_rank "$NODE_RANK" --main_process_ip "$MASTER_ADDR"
            --main_process_port "${{MASTER_PORT:-{MASTER_PORT}}}")
    else
      RUN+=(--main_process_port "${{MASTER_PORT:-0}}")  # 0: a free port
    fi
    ;;
  *)
    echo "launch.sh: LAUNCHER must be torchrun or accelerate, not '$LAUNCHER'" >&2
    exit 2
    ;;
esac

echo "+ ${{RUN[*]}} ${{TRAIN[*]}}" >&2
exec "${{RUN[@]}}" "${{TRAIN[@]}}"
"""


def slurm_sbatch(name: str) -> str:
    """``slurm.sbatch``: one torchrun per node through srun, the first node of the allocation as the master."""
    return f"""#!/usr/bin/env bash
# Train "{name}" on a SLURM cluster: sbatch slurm.sbatch [TRAIN OPTIONS]   (run it from this folder)
# Change the node and GPU counts below (or on the command line: sbatch --nodes 4 slurm.sbatch).
#SBATCH --job-name={name}
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node={GPUS_PER_NODE}
#SBATCH --cpus-per-task=16
#SBATCH --time=24:00:00
#SBATCH --output=%x-%j.out
# Five minutes before the time limit every rank gets SIGTERM: it stops after its step and the adapter is saved.
#SBATCH --signal=TERM@300
set -euo pipefail
cd "${{SLURM_SUBMIT_DIR:-.}}"
# torchrun gives the ranks this long to save after the SIGTERM (default 30 s; within the 300 s above).
export TORCH_ELASTIC_SHUTDOWN_TIMEOUT="${{TORCH_ELASTIC_SHUTDOWN_TIMEOUT:-240}}"

GPUS_PER_NODE="${{GPUS_PER_NODE:-${{SLURM_GPUS_ON_NODE:-{GPUS_PER_NODE}}}}}"
NODES="$(scontrol show hostnames "$SLURM_JOB_NODELIST")"
MASTER_ADDR="${{NODES%%$'\n'*}}"  # the first node (no pipe to head: with pipefail, its early exit fails the job)
MASTER_PORT="${{MASTER_PORT:-{MASTER_PORT}}}"
OUT="${{OUT:-runs/{name}}}"

srun --kill-on-bad-exit=1 torchrun \\
  --nnodes "$SLURM_NNODES" --nproc_per_node "$GPUS_PER_NODE" \\
  --rdzv_id "$SLURM_JOB_ID" --rdzv_backend c10d --rdzv_endpoint "$MASTER_ADDR:$MASTER_PORT" \\
  -m loradesk train data.jsonl --config run.json --out "$OUT" "$@"
"""


def readme(name: str, summary: list[str]) -> str:
    """The job folder's README: what is in it, then the exact commands for each way to run it."""
    out = f"runs/{name}"
    train = f"-m loradesk train {TRAIN_ARGS} {out}"
    lines = "\n".join(f"- {line}" for line in summary)
    return f"""# {name}: a LoRA Desk training job

{lines}

Files: `run.json` (the settings, as `loradesk train --save-config` writes them), `data.jsonl` (the rows, each
with its train/validation split fixed), `accelerate/` (DDP, FSDP and DeepSpeed ZeRO-3 configs), `launch.sh`,
`slurm.sbatch`. Every rank runs the same `loradesk train`; only the main process writes the run folder
(`{out}` unless you set `OUT`): the adapter, `loradesk_run.json`, `metrics.jsonl` and checkpoints.

## 1. Install on every machine that trains

```bash
pip install loradesk                 # DDP and FSDP
pip install "loradesk[cluster]"      # with DeepSpeed, for accelerate/deepspeed_zero3.yaml
```

Copy this folder there (or put it on a shared filesystem) and run the commands below inside it.

## 2. Smoke run first (10 steps), then the real one

```bash
OUT=runs/smoke bash launch.sh 2 --max-steps 10
bash launch.sh                       # all GPUs of this machine
```

## 3. One machine, N GPUs

```bash
bash launch.sh 8
torchrun --standalone --nproc_per_node 8 {train}
accelerate launch --config_file accelerate/ddp.yaml --num_processes 8 {train}
accelerate launch --config_file accelerate/fsdp.yaml --num_processes 8 {train}
accelerate launch --config_file accelerate/deepspeed_zero3.yaml --num_processes 8 {train}
LAUNCHER=accelerate ACCELERATE_CONFIG=accelerate/fsdp.yaml bash launch.sh 8
```

## 4. Several machines (here 2 x 8 GPUs)

Run the same command on each machine, with `R` = 0 on the first (whose address is `IP`) and 1 on the second:

```bash
NNODES=2 NODE_RANK=$R MASTER_ADDR=$IP MASTER_PORT={MASTER_PORT} bash launch.sh 8
torchrun --nnodes 2 --node_rank $R --master_addr $IP --master_port {MASTER_PORT} --nproc_per_node 8 {train}
accelerate launch --config_file accelerate/ddp.yaml --num_machines 2 --machine_rank $R --main_process_ip $IP \\
    --main_process_port {MASTER_PORT} --num_processes 16 {train}
```

`--num_processes` counts the GPUs of all machines. The run folder is written by the first machine.

## 5. SLURM

```bash
sbatch slurm.sbatch                  # 2 nodes x {GPUS_PER_NODE} GPUs: change the #SBATCH lines to suit
sbatch --nodes 4 slurm.sbatch --max-steps 10
```

## Stop

Ctrl+C on the launcher, `kill -TERM` on it, or `scancel`: every rank stops after its current step and the main
process saves the adapter (status "stopped"), usable like a finished run's.

## Bring the run back

Copy the run folder to the desk (`rsync -a cluster:path/to/this/folder/{out} ~/loradesk-runs/`) or mount
the cluster's filesystem, then in LoRA Desk: File > Open Run... and choose the folder. While the run is still
training, the Train tab follows its curve; when it has finished, Compare and Export work on it as on a local run.
From a terminal: `loradesk ask --adapter {out} "your question"`.
"""
