#!/usr/bin/env bash
# Train the bundled model from nothing, on a CPU (docs/bundled_model.md): the autoencoder, the latent caches,
# the spatial stage with the attribute context, the video stage, the cue stage (the plain loss on video steps),
# the motion stage (a moving spatial prior), then install that model into the package (higen/assets/bundled_model,
# in fp16). Every training stage resumes from its last checkpoint.
#   bash scripts/train_bundled.sh                 # everything
#   STAGE=spatial bash scripts/train_bundled.sh   # from a stage on: autoencoder | cache | spatial | video | cues | motion | install
#   AUTOENCODER=shipped bash scripts/train_bundled.sh   # reuse the shipped model's autoencoder instead of training
#                                                       # one (what the current bundled model did)
#   STAGE=ablation bash scripts/train_bundled.sh  # only the decoupling's measurement: HiGen (configs/bundled/higen.yaml)
#                                                 # and its plain twin, 4,000 steps each, exported to runs/eval/
set -euo pipefail
cd "$(dirname "$0")/.."
HIGEN=${HIGEN:-.venv/bin/higen}
CONFIG=configs/bundled/higen.yaml
SPATIAL_CONFIG=configs/bundled/attributes_spatial.yaml
VIDEO_CONFIG=configs/bundled/attributes_video.yaml
CUES_CONFIG=configs/bundled/attributes_cues.yaml
MOTION_CONFIG=configs/bundled/attributes_motion.yaml
STAGE=${STAGE:-autoencoder}

if [ "$STAGE" = ablation ]; then
  # HiGen with and without its decoupling (cues.decoupled=false: one stage from text to clip), the same data,
  # seed and learning-rate schedule (decaying over higen.yaml's train.max_steps), compared at ABLATION_STEPS.
  steps=${ABLATION_STEPS:-4000}
  decay_steps=$(.venv/bin/python -c "from higen.training.config import load_config; print(load_config('$CONFIG').train.max_steps)")
  for twin in higen plain; do
    decoupled=true; [ "$twin" = plain ] && decoupled=false
    OMP_NUM_THREADS=2 "$HIGEN" train --config "$CONFIG" cues.decoupled=$decoupled train.output_dir=runs/bundled_$twin \
        train.max_steps="$steps" optim.decay_steps="$decay_steps" --resume >> runs/bundled_$twin.log 2>&1
    "$HIGEN" train-export runs/bundled_$twin/checkpoints/step_$(printf %07d "$steps") runs/eval/${twin}_"$steps"
  done
  exit 0
fi

stages=(autoencoder cache spatial video cues motion install)
run_from=-1
for i in "${!stages[@]}"; do [ "${stages[$i]}" = "$STAGE" ] && run_from=$i; done
[ "$run_from" -ge 0 ] || { echo "STAGE must be one of: ${stages[*]} ablation (got '$STAGE')" >&2; exit 2; }

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
  # Text to one frame; writes its EMA to runs/bundled_attr_spatial/model when it finishes (the video stage's start).
  OMP_NUM_THREADS=2 "$HIGEN" train --config "$SPATIAL_CONFIG" --resume >> runs/bundled_attr_spatial.log 2>&1
fi
if [ "$run_from" -le 3 ]; then
  OMP_NUM_THREADS=2 "$HIGEN" train --config "$VIDEO_CONFIG" --resume >> runs/bundled_attr_video.log 2>&1
fi
if [ "$run_from" -le 4 ]; then
  OMP_NUM_THREADS=2 "$HIGEN" train --config "$CUES_CONFIG" --resume >> runs/bundled_attr_cues.log 2>&1
fi
if [ "$run_from" -le 5 ]; then
  OMP_NUM_THREADS=2 "$HIGEN" train --config "$MOTION_CONFIG" --resume >> runs/bundled_attr_motion.log 2>&1
fi
if [ "$run_from" -le 6 ]; then
  # The shipped weights: the motion stage's EMA at its last step; the folder carries the generation defaults.
  .venv/bin/python -m higen.bundled install runs/bundled_attr_motion/model
fi
