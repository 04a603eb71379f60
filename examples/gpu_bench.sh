#!/usr/bin/env bash
# One-command offline GPU benchmark: sd-turbo UNet + TAESD architectures (random weights), fp16, 512x512,
# 1 and 4 steps; backends torch, compile (+CUDA graphs) and tensorrt when importable.
# Extra arguments go to `dreamwire bench --gpu` (e.g. --gpu-backends torch,compile --iters 20).
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1
export DREAMWIRE_CACHE="${DREAMWIRE_CACHE:-$(mktemp -d -t dreamwire-bench-XXXXXX)}"
if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
echo "engine cache: $DREAMWIRE_CACHE"
exec "$PY" -m dreamwire bench --gpu "$@"
