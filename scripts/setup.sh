#!/usr/bin/env bash
# Create .venv and install plume_lite with every extra. Idempotent: a second run is fast.
# torch is installed first and pinned to the wheels these machines carry; on another
# machine install the torch/torchvision you want into .venv first and this keeps it.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
pip() { .venv/bin/python -m pip --disable-pip-version-check -q "$@" 2>&1 | grep -v "^WARNING: Location" || true; }
if ! .venv/bin/python -c "import torch, torchvision" 2>/dev/null; then
  pip install "torch==2.14.1" "torchvision==0.29.1"
fi
pip install -e ".[media,notebooks,demo,dev]"
.venv/bin/python -c "import plume_lite, torch, torchvision, transformers; print('plume_lite ready: torch', torch.__version__, '| transformers', transformers.__version__)"
