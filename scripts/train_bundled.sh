#!/usr/bin/env bash
# Train the bundled model from nothing, on a CPU (docs/bundled_model.md): the autoencoder, the latent caches,
# HiGen itself, the plain text-to-video ablation of the same size (compared at equal steps), HiGen's image-heavy
# fine-tune, its Min-SNR continuation, then install that model into the package (higen/assets/bundled_model, in fp16).
#   bash scripts/train_bundled.sh               # everything
#   STAGE=higen bash scripts/train_bundled.sh   # from a stage on: autoencoder | cache | higen | ablation | finetune | snr | install
#   AUTOENCODER=shipped bash scripts/train_bundled.sh   # reuse the shipped model's autoencoder instead of training
#                                                       # one (what the current bundled model did: docs/bundled_model.md)
set -euo pipefail
cd "$(dirname "$0")/.."
HIGEN=${HIGEN:-.venv/bin/higen}
CONFIG=configs/bundled/higen.yaml
FINETUNE_CONFIG=configs/bundled/higen_finetune.yaml
SHIPPED_STEP=4000   # the HiGen run (configured for 4,500 steps) was stopped after this checkpoint for time
FINETUNE_STEP=1600  # the fine-tune's last step (its config's train.max_steps)
SNR_CONFIG=configs/bundled/higen_snr.yaml
SNR_STEP=${SNR_STEP:-1800}   # the Min-SNR stage's shipped checkpoint
ABLATION_STEPS=${ABLATION_STEPS:-$SHIPPED_STEP}   # the plain twin is compared with HiGen at this step
STAGE=${STAGE:-autoencoder}
stages=(autoencoder cache higen ablation finetune snr install)
run_from=0
for i in "${!stages[@]}"; do [ "${stages[$i]}" = "$STAGE" ] && run_from=$i; done

if [ "$run_from" -le 0 ]; then
  if [ "${AUTOENCODER:-train}" = shipped ]; then
    mkdir -p runs/bundled_autoencoder && rm -rf runs/bundled_autoencoder/autoencoder
    cp -r higen/assets/bundled_model/autoencoder runs/bundled_autoencoder/autoencoder
  else
    OMP_NUM_THREADS=2 "$HIGEN" train-autoencoder --config configs/bundled/autoencoder.yaml
  fi
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
  OMP_NUM_THREADS=2 "$HIGEN" train --config "$CONFIG" > runs/bundled_higen.log 2>&1
fi
if [ "$run_from" -le 3 ]; then
  # The same config without HiGen's decoupling and with the same learning-rate schedule (decaying over the
  # config's train.max_steps), stopped at ABLATION_STEPS and compared with HiGen's checkpoint of that step
  # (docs/bundled_model.md, "The decoupling, measured").
  decay_steps=$(.venv/bin/python -c "from higen.training.config import load_config; print(load_config('$CONFIG').train.max_steps)")
  OMP_NUM_THREADS=2 "$HIGEN" train --config "$CONFIG" cues.decoupled=false train.output_dir=runs/bundled_plain \
      train.max_steps="$ABLATION_STEPS" optim.decay_steps="$decay_steps" > runs/bundled_plain.log 2>&1
  "$HIGEN" train-export runs/bundled_plain/checkpoints/step_$(printf %07d "$ABLATION_STEPS") runs/eval/plain_"$ABLATION_STEPS"
  "$HIGEN" train-export runs/bundled_higen/checkpoints/step_$(printf %07d "$ABLATION_STEPS") runs/eval/higen_"$ABLATION_STEPS"
fi
if [ "$run_from" -le 4 ]; then
  # The first stage's weights, the EMA of checkpoint SHIPPED_STEP (the learning rate was already 3 % of its peak
  # there), are where the fine-tune starts (its config's model.path).
  "$HIGEN" train-export runs/bundled_higen/checkpoints/step_$(printf %07d "$SHIPPED_STEP") runs/bundled_higen/model_$SHIPPED_STEP
  OMP_NUM_THREADS=2 "$HIGEN" train --config "$FINETUNE_CONFIG" > runs/bundled_higen_finetune.log 2>&1
  "$HIGEN" train-export runs/bundled_higen_finetune/checkpoints/step_$(printf %07d "$FINETUNE_STEP") \
      runs/bundled_higen_finetune/model_$FINETUNE_STEP
fi
if [ "$run_from" -le 5 ]; then
  # Min-SNR-5 loss weights from the fine-tuned model (its config's model.path); resumes from its last checkpoint.
  OMP_NUM_THREADS=2 "$HIGEN" train --config "$SNR_CONFIG" --resume >> runs/bundled_higen_snr.log 2>&1
fi
if [ "$run_from" -le 6 ]; then
  # The shipped weights: the Min-SNR stage's EMA; the exported folder carries the generation defaults of its config.
  model=runs/bundled_higen_snr/model_$SNR_STEP
  "$HIGEN" train-export runs/bundled_higen_snr/checkpoints/step_$(printf %07d "$SNR_STEP") "$model"
  .venv/bin/python -m higen.bundled install "$model"
fi
