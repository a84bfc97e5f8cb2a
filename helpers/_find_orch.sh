# Sourced by the helpers: sets ORCH to the `orch` command.
# Order: `orch` on PATH, `orch` next to $ORCH_PYTHON, this repository's .venv, then `$ORCH_PYTHON -m orchestrator`.
_helpers_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [[ -n "${ORCH_PYTHON:-}" && -x "$(dirname "$ORCH_PYTHON")/orch" ]]; then
    ORCH="$(dirname "$ORCH_PYTHON")/orch"
elif command -v orch >/dev/null 2>&1; then
    ORCH="orch"
elif [[ -x "$_helpers_dir/../.venv/bin/orch" ]]; then
    ORCH="$_helpers_dir/../.venv/bin/orch"
elif [[ -n "${ORCH_PYTHON:-}" ]]; then
    ORCH="$ORCH_PYTHON -m orchestrator"
else
    echo "orch not found: put it on PATH or set ORCH_PYTHON to the python that has it" >&2
    exit 2
fi
