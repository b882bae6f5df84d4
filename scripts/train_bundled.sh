#!/usr/bin/env bash
# Train the bundled model from nothing, on a CPU (docs/bundled_model.md): the autoencoder, the latent caches,
# HiGen itself and the plain text-to-video ablation of the same size (compared at equal steps), then install
# the HiGen one into the package (higen/assets/bundled_model, stored in fp16).
#   bash scripts/train_bundled.sh            # everything
#   STAGE=higen bash scripts/train_bundled.sh   # from a stage on: autoencoder | cache | higen | install
set -euo pipefail
cd "$(dirname "$0")/.."
HIGEN=${HIGEN:-.venv/bin/higen}
CONFIG=configs/bundled/higen.yaml
STAGE=${STAGE:-autoencoder}
stages=(autoencoder cache higen install)
run_from=0
for i in "${!stages[@]}"; do [ "${stages[$i]}" = "$STAGE" ] && run_from=$i; done

if [ "$run_from" -le 0 ]; then
  OMP_NUM_THREADS=2 "$HIGEN" train-autoencoder --config configs/bundled/autoencoder.yaml
fi
if [ "$run_from" -le 1 ]; then
  # Both streams at once, one thread each (two 2-thread processes on 2 cores thrash OpenMP).
  OMP_NUM_THREADS=1 "$HIGEN" train-cache runs/bundled_cache/videos --config "$CONFIG" --kind video --batch-size 16 data.source=world &
  videos=$!
  OMP_NUM_THREADS=1 "$HIGEN" train-cache runs/bundled_cache/images --config "$CONFIG" --kind image --batch-size 64 data.source=world &
  images=$!
  wait "$videos"; wait "$images"
fi
if [ "$run_from" -le 2 ]; then
  # What the shipped model went through (docs/bundled_model.md): HiGen and the plain ablation side by side, one
  # thread each, both configured for 2,200 steps, until both have written their step-1000 checkpoint (the
  # ablation's equal budget); then the ablation stops and HiGen continues alone on both cores to step 3,600.
  OMP_NUM_THREADS=1 "$HIGEN" train --config "$CONFIG" train.max_steps=2200 checkpoint.every=500 > runs/bundled_higen.log 2>&1 &
  higen=$!
  OMP_NUM_THREADS=1 "$HIGEN" train --config "$CONFIG" train.max_steps=2200 checkpoint.every=500 cues.decoupled=false \
      train.output_dir=runs/bundled_plain > runs/bundled_plain.log 2>&1 &
  plain=$!
  until [ -f runs/bundled_higen/checkpoints/step_0001000/trainer.json ] && [ -f runs/bundled_plain/checkpoints/step_0001000/trainer.json ]; do
    sleep 10
  done
  kill "$higen" "$plain"; wait "$higen" "$plain" || true
  OMP_NUM_THREADS=2 "$HIGEN" train --config "$CONFIG" --resume-from runs/bundled_higen/checkpoints/step_0001000 \
      train.max_steps=3600 checkpoint.every=250 checkpoint.keep_last=4 >> runs/bundled_higen.log 2>&1
  "$HIGEN" train-export runs/bundled_plain/checkpoints/step_0001000 runs/eval/plain_1000
  "$HIGEN" train-export runs/bundled_higen/checkpoints/step_0001000 runs/eval/higen_1000
fi
if [ "$run_from" -le 3 ]; then
  .venv/bin/python -m higen.bundled install runs/bundled_higen/model
fi
