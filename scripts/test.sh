#!/usr/bin/env bash
# The test command: set up .venv, then lint and run every test (unit, end-to-end, notebooks, demo).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The browser test drives Debian's Chromium (no browser download); install it if absent.
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
    || echo "chromium could not be installed: the browser test will be skipped"
fi
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 GRADIO_ANALYTICS_ENABLED=False \
       HF_HUB_DISABLE_TELEMETRY=1 TOKENIZERS_PARALLELISM=false PLUME_THREADS=1 OMP_NUM_THREADS=1
# A fresh cache per run, so the tests build everything they use from code.
export PLUME_CACHE="${PLUME_CACHE:-$(mktemp -d)/plume_cache}"
# Lint and format first: seconds, and a style slip fails here rather than after the tests.
.venv/bin/ruff check .
.venv/bin/ruff format --check .
exec .venv/bin/python -m pytest -q tests notebooks --nbmake "$@"
