#!/usr/bin/env bash
# Re-records tests/fixtures/checkpoints from the real writers: DeepSpeed's engine (ZeRO 0-3, bf16, PipelineModule)
# and megatron-core's dist_checkpointing (torch_dist), on 2 gloo ranks on the CPU, whole and killed or stopped
# mid-save (scripts/checkpoint_writers/). Installs torch 2.13.0 (the CPU wheel), deepspeed and megatron-core
# into a scratch venv (about 1 GB, a minute here) that is removed afterwards; recording takes about 3 minutes.
#   bash scripts/record-checkpoint-fixtures.sh [CASE ...]      # all cases, or only these
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
venv=$(mktemp -d)/venv
trap 'rm -rf "$(dirname "$venv")"' EXIT
python3 -m venv "$venv"
"$venv/bin/pip" install -q --upgrade pip
"$venv/bin/pip" install -q torch==2.13.0   # pinned: an unpinned torch pulls the CUDA build (about 3 GB)
"$venv/bin/pip" install -q deepspeed megatron-core
"$venv/bin/python" "$repo/scripts/checkpoint_writers/record.py" "$repo/tests/fixtures/checkpoints" "$@"
