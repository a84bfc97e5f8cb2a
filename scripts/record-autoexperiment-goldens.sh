#!/usr/bin/env bash
# Record what AutoExperiment itself builds for each case under tests/fixtures/autoexperiment/ (the
# golden outputs `orch build` must reproduce byte for byte; tests/test_autoexperiment_parity.py).
#
#   bash scripts/record-autoexperiment-goldens.sh [--source DIR] [--venv-only]
#
# AutoExperiment is installed into a scratch virtualenv ($AE_VENV, default /tmp/orch-autoexperiment)
# with OmegaConf from PyPI, from SLAMPAI/autoexperiment at the pinned commit below, or from a local
# checkout given with --source. Each case directory holds config.yaml, its templates and optionally
# args.txt (extra build arguments, one per line, e.g. `-f` and `lr=1e-3`); AutoExperiment's
# `build` runs on a copy, and every file it writes lands in the case's expected/ directory.
set -euo pipefail

AE_COMMIT=3093b6bcc8fee0cb1e09d0f2056571fcb0d93d6d
AE_VENV=${AE_VENV:-/tmp/orch-autoexperiment}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
CASES=$ROOT/tests/fixtures/autoexperiment
SOURCE=""
VENV_ONLY=0
while [ $# -gt 0 ]; do
    case $1 in
        --source) SOURCE=$2; shift 2 ;;
        --venv-only) VENV_ONLY=1; shift ;;
        *) echo "usage: $0 [--source DIR] [--venv-only]" >&2; exit 2 ;;
    esac
done

if [ ! -x "$AE_VENV/bin/autoexperiment" ]; then
    python3 -m venv "$AE_VENV"
    "$AE_VENV/bin/pip" install -q "omegaconf==2.3.0" clize
    "$AE_VENV/bin/pip" install -q --no-deps "${SOURCE:-git+https://github.com/SLAMPAI/autoexperiment@$AE_COMMIT}"
fi
echo "AutoExperiment: $AE_VENV/bin/autoexperiment ($("$AE_VENV/bin/pip" show omegaconf | grep ^Version))"
[ "$VENV_ONLY" = 1 ] && exit 0

unset ORCH_GOLDEN_UNSET  # the interpolation case reads its default
for case in "$CASES"/*/; do
    name=$(basename "$case")
    work=$(mktemp -d)
    find "$case" -maxdepth 1 -type f -exec cp {} "$work" \;
    args=()
    [ -f "$case/args.txt" ] && mapfile -t args < "$case/args.txt"
    rm -rf "$case/expected"
    mkdir -p "$case/expected"
    (cd "$work" && find . -type f | sort > ../inputs-$name)
    (cd "$work" && "$AE_VENV/bin/autoexperiment" build config.yaml --verbose=0 "${args[@]}" > /dev/null)
    (cd "$work" && find . -type f | sort | comm -23 - ../inputs-$name \
        | while read -r file; do mkdir -p "$case/expected/$(dirname "$file")"; cp "$file" "$case/expected/$file"; done)
    rm -f "$(dirname "$work")/inputs-$name"
    echo "$name: $(find "$case/expected" -type f | wc -l) file(s)"
    rm -rf "$work"
done
