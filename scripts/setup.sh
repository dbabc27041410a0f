#!/usr/bin/env bash
# Create .venv and install plume_lite with every extra. Idempotent: a second run is fast.
# A torch already in .venv is kept.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
# pip's own exit status decides (pipefail): a failed install stops setup; the filter's "no
# line left" does not
pip() { .venv/bin/python -m pip --disable-pip-version-check -q "$@" 2>&1 | { grep -v "^WARNING: Location" || true; }; }
# torch first. Default: the pinned build these machines carry on disk (on x86_64 a CUDA
# build, which also runs on the CPU). Another build: PLUME_TORCH (pip requirements) and
# PLUME_TORCH_INDEX (an index URL, e.g. PyTorch's CPU-only wheel index, for a CPU-only
# machine that should not download CUDA libraries).
read -r -a torch_reqs <<< "${PLUME_TORCH:-torch==2.14.1 torchvision==0.29.1}"
if ! .venv/bin/python -c "import torch, torchvision" 2>/dev/null; then
  if [ -n "${PLUME_TORCH_INDEX:-}" ]; then
    pip install "${torch_reqs[@]}" --index-url "$PLUME_TORCH_INDEX"
  else
    pip install "${torch_reqs[@]}"
  fi
fi
# The rest at the versions the demo pins (demo_app/requirements.txt): the tests check the
# pins against what is installed, so a new release upstream cannot turn a clean clone red.
grep -E '^[A-Za-z0-9_.-]+==' demo_app/requirements.txt | grep -vE '^(torch|torchvision)==' > .venv/pins.txt
pip install -e ".[media,notebooks,demo,dev]" -c .venv/pins.txt
.venv/bin/python -c "import plume_lite, torch, torchvision, transformers; print('plume_lite ready: torch', torch.__version__, '| transformers', transformers.__version__)"
