#!/bin/bash
# Several nodes with SLURM: one torchrun per node, which starts one process per GPU and meets the
# other nodes through the c10d rendezvous on the first node (docs/training.md).
#
#   sbatch configs/slurm_example.sh configs/finetune_released.yaml
#
#SBATCH --job-name=higen-train
#SBATCH --nodes=4
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=64
#SBATCH --time=48:00:00
#SBATCH --output=%x-%j.out
set -euo pipefail

CONFIG=${1:-configs/finetune_released.yaml}
HEAD_NODE=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
PORT=29500

# --resume: a requeued or restarted job continues from the latest checkpoint (a fresh run starts at 0).
srun torchrun \
    --nnodes="$SLURM_NNODES" \
    --nproc_per_node="$SLURM_GPUS_PER_NODE" \
    --rdzv_id="$SLURM_JOB_ID" \
    --rdzv_backend=c10d \
    --rdzv_endpoint="$HEAD_NODE:$PORT" \
    -m higen train --config "$CONFIG" --resume
