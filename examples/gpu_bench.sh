#!/usr/bin/env bash
# The one-command offline GPU validation run: sd-turbo UNet + TAESD architectures (random weights), fp16,
# 512x512; correctness checks, then backends torch, torch+graphs, compile (+CUDA graphs) and tensorrt when importable.
# Writes results.json, PNG plots and summary.txt into $REPORT_DIR (default: a folder in the cache).
# Extra arguments go to `dreamwire bench --gpu` (e.g. --backends torch,compile --frames 100).
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1
export DREAMWIRE_CACHE="${DREAMWIRE_CACHE:-$(mktemp -d -t dreamwire-bench-XXXXXX)}"
if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
echo "engine cache: $DREAMWIRE_CACHE"
# A bare CUDA machine has torch but not this project: install it without touching torch or the network.
"$PY" -c "import dreamwire" 2>/dev/null || "$PY" -m pip install -q --no-deps --no-build-isolation .
exec "$PY" -m dreamwire bench --gpu --size "${SIZE:-512}" --report "${REPORT_DIR:-$DREAMWIRE_CACHE/gpu-report}" "$@"
