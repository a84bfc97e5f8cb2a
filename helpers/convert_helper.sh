#!/usr/bin/env bash
# Start condition of a converter job: prints 1 when RUN_DIR/checkpoints holds a complete checkpoint
# (at or above MIN_ITER) that is neither converted nor being converted, else 0.
#
#   helpers/convert_helper.sh <RUN_DIR> [MIN_ITER]
#
# Extra flags after MIN_ITER go to `orch ckpt pending` (e.g. --count, --stale-secs 7200).
set -euo pipefail
if [[ $# -lt 1 ]]; then
    echo "usage: $0 <RUN_DIR> [MIN_ITER] [orch ckpt pending flags...]" >&2
    exit 2
fi
source "$(dirname "${BASH_SOURCE[0]}")/_find_orch.sh"
RUN_DIR="$1"
MIN_ITER="${2:-0}"
shift $(( $# >= 2 ? 2 : 1 ))
exec $ORCH ckpt pending "$RUN_DIR" --min-iter "$MIN_ITER" "$@"
