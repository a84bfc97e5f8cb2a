"""Config keys nobody reads: a misspelt special key is an error, any other unused key a warning.

A config key means something to orch (`jobs.SPECIAL_KEYS`, or a key one of orch's tools reads), or to a
template (its name appears in the template), or to other values (its name appears elsewhere in the config
text: `{key}`, `${key}`, `expr(key * 2)`). Anything else silently becomes a template variable nobody uses,
and a misspelt `termination_str` means a job that is never found done: resubmitted every time it ends.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from orchestrator.jobs import SPECIAL_KEYS, Job

# Keys that orch's own tools read from a job's values (besides the special keys).
TOOL_KEYS: frozenset[str] = frozenset({
    "RUN_DIR", "MEGATRON_FRAMEWORK", "DATA_PATH", "TRAIN_DATA_PATH", "VALID_DATA_PATH", "TEST_DATA_PATH",
    "DATA_FILE_LIST", "DATA_MIX_FILE", "data_mix", "data_sources", "data_stage", "data_buffer", "estimate_gpus",
    "estimate_hours", "estimate_tflops", "N_PARAMS", "TOKENS_PER_STEP", "phase", "lr_schedule", "lr_framework",
    "framework", "parent", "pretrain_job", "resume_step", "resume_iter", "checkpoint_iter", "start_iter",
    "train_iters", "TRAIN_ITERS", "train_samples", "iterations", "warmup_steps", "lr_constant_plus_cooldown",
    "lr_constant_plus_cooldown_frac", "MODEL_SIZE", "PHASE_TAG", "SEED", "notify",
})
_TOOL_KEYS_LOWER = frozenset(key.lower() for key in TOOL_KEYS)  # `orch lr` reads its keys in any case
# How close a key must be to a special key to be taken for a misspelling of it (difflib's ratio).
NEAR_MISS_CUTOFF = 0.8


@dataclass(frozen=True)
class KeyReport:
    near_misses: list[tuple[str, str]]
    """(key, the special key it nearly spells): errors."""
    unused: list[str]
    """Keys nothing reads: warnings."""


def _config_word_counts(text: str, keys: Iterable[str]) -> dict[str, int]:
    return {key: len(re.findall(rf"(?<![A-Za-z0-9_]){re.escape(key)}(?![A-Za-z0-9_])", text)) for key in keys}


def key_report(jobs: Sequence[Job], config_text: str, template_words: Callable[[str], frozenset[str]]) -> KeyReport:
    keys: set[str] = set()
    for job in jobs:
        keys.update(job.params)
    candidates = sorted(k for k in keys - SPECIAL_KEYS if isinstance(k, str) and k.lower() not in _TOOL_KEYS_LOWER)
    if not candidates:
        return KeyReport([], [])
    used_by_templates: set[str] = set()
    for template in {job.template for job in jobs}:
        used_by_templates |= template_words(template)
    counts = _config_word_counts(config_text, candidates)
    near, unused = [], []
    for key in candidates:
        if key in used_by_templates or counts.get(key, 0) > 1 or _is_option_name(key, jobs):
            continue  # read by a template or by another value
        close = [special for special in difflib.get_close_matches(key, SPECIAL_KEYS, n=3, cutoff=NEAR_MISS_CUTOFF)
                 if _misspells(key, special)]
        if close:
            near.append((key, close[0]))
        else:
            unused.append(key)
    return KeyReport(near, unused)


def _misspells(key: str, special: str) -> bool:
    """A typo (a letter or two off: `termination_srt`, `freeze_sec`) or a cut-short name (`check_interval`);
    not a longer name of its own that merely starts alike (`template_dir`)."""
    return abs(len(key) - len(special)) <= 2 or special.startswith(key)


def _is_option_name(key: str, jobs: Sequence[Job]) -> bool:
    """A named option (`MODEL: [- 25M: {...}]`) leaves its name behind as a key, and as another key's value."""
    for job in jobs:
        if key in job.params:
            return any(value == key for value in job.params.values() if isinstance(value, str))
    return False


def near_miss_message(source: str, near: Sequence[tuple[str, str]]) -> str:
    spelled = ", ".join(f"{key!r} (did you mean {special!r}?)" for key, special in near)
    return (f"{source}: {len(near)} key(s) look like a misspelt orch key and nothing else reads them: {spelled}; "
            "a misspelt termination or freeze key makes the monitor resubmit finished jobs")


def unused_message(source: str, unused: Sequence[str]) -> str:
    shown = ", ".join(unused[:10]) + (f" and {len(unused) - 10} more" if len(unused) > 10 else "")
    return (f"warning: {source}: {len(unused)} key(s) are used by no template, no other value and no orch tool: "
            f"{shown}")
