#!/usr/bin/env bash
# Record lm-evaluation-harness result files in every layout it writes, as fixtures for `orch results`.
#
#   scripts/record-lm-eval-fixtures.sh [LM_EVAL]     (default: lm_eval on PATH; e.g. a venv with
#                                                      `pip install torch==2.13.0 lm-eval==0.4.13`)
#
# Runs offline with lm-eval's own `dummy` model on the two small local tasks (and their group) under
# tests/fixtures/lm_eval/tasks/, and writes tests/fixtures/lm_eval/run/eval_results/iter_<N>/:
#   iter_0000100/  --output_path DIR (+ --log_samples): DIR/<model_name_sanitized>/results_<date>.json
#   iter_0000200/  --output_path DIR/lm_eval.json:       DIR/lm_eval_<date>.json
#   iter_0000300/  two evaluations into one folder (tinyqa alone, then the whole group): newest per task
set -euo pipefail
LM_EVAL=${1:-lm_eval}
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TASKS="$HERE/tests/fixtures/lm_eval/tasks"
OUT="$HERE/tests/fixtures/lm_eval/run/eval_results"
export HF_DATASETS_OFFLINE=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
rm -rf "$OUT" && mkdir -p "$OUT"
cd "$TASKS"  # the task YAMLs name their data files relative to here
run() {  # ITER TASKS OUTPUT [extra flags]
    local iter=$1 tasks=$2 output=$3
    shift 3
    "$LM_EVAL" --model dummy --model_args "pretrained=converted/iter_$(printf %07d "$iter")" \
        --tasks "$tasks" --include_path "$TASKS" --output_path "$output" --seed 1234 "$@" >/dev/null 2>&1
}
run 100 tinysuite "$OUT/iter_0000100" --log_samples
run 200 tinysuite "$OUT/iter_0000200/lm_eval.json"
run 300 tinyqa "$OUT/iter_0000300"
sleep 1  # a later date in the second file's name
run 300 tinysuite "$OUT/iter_0000300" --seed 4321  # other draws than the first file
# The task paths lm-eval records are this checkout's: keep them relative to the repository.
find "$OUT" -type f -exec sed -i "s#$HERE/##g" {} +
echo "lm_eval $("$(dirname "$(command -v "$LM_EVAL")")/python" -c 'import lm_eval, importlib.metadata as m; print(m.version("lm_eval"))')" > "$HERE/tests/fixtures/lm_eval/VERSION"
find "$OUT" -type f | sed "s#$HERE/##" | sort
