#!/usr/bin/env bash
# Write one cooldown script per token milestone: cooldown_id<ID>_exact.sh and cooldown_id<ID>_rollback.sh.
# Thin wrapper around `orch cooldown sweep` (same flags, see docs/planning.md), run with --python (default python3),
# which needs the orchestrator package's dependencies (pyyaml, ...).
# Example:
#   helpers/gen_cooldown_sweep.sh --load CKPT_DIR --cool-R 2000 --emit-dir sweep \
#     --phase1-list phase1.txt --phase2-list phase2.txt --extra-args "--save ckpt_cd"
set -euo pipefail

python_bin="python3"
args=()
while (($#)); do
  case "$1" in
    --python)
      [[ $# -ge 2 ]] || { echo "gen_cooldown_sweep.sh: --python needs a value" >&2; exit 2; }
      python_bin="$2"; shift 2 ;;
    --python=*)
      python_bin="${1#--python=}"; shift ;;
    *)
      args+=("$1"); shift ;;
  esac
done

# From a checkout without `pip install -e .`, the repository's package is found through PYTHONPATH.
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PYTHONPATH="${repo_root}${PYTHONPATH:+:${PYTHONPATH}}"
exec "$python_bin" -m orchestrator cooldown sweep "${args[@]}"
