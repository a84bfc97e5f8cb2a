#!/usr/bin/env bash
# Start condition of a cooldown job: links pretraining checkpoint ITER of LOGS/EXP_NAME into
# LOGS/EXP_NAME/cooldown_s<CD_SCALE>/checkpoints and prints 1; prints 0 while that checkpoint is missing.
#
#   helpers/cooldown_helper.sh <LOGS> <EXP_NAME> <ITER> <CD_SCALE>
set -euo pipefail
if [[ $# -ne 4 ]]; then
    echo "usage: $0 <LOGS> <EXP_NAME> <ITER> <CD_SCALE>" >&2
    exit 2
fi
source "$(dirname "${BASH_SOURCE[0]}")/_find_orch.sh"
exec $ORCH cooldown link "$1" "$2" "$3" "$4"
