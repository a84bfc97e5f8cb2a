"""The `megatron_args` Jinja filter: a mapping of Megatron arguments -> command-line flags.

    {{ {"num_layers": 12, "bf16": True, "swiglu": False, "data_path": ["a", "b"]} | megatron_args }}
    --num-layers 12 --bf16 --data-path a b

True -> bare flag; False / None -> omitted; lists and tuples -> space-joined values; `_` -> `-` in names;
every value shell-quoted. A key that already starts with `--` is used verbatim, and Megatron's few
irregular names (`--override-opt_param-scheduler`) are spelled its way.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from typing import Any


# Megatron-LM flags whose names keep an underscore.
IRREGULAR_FLAGS: dict[str, str] = {
    "override_opt_param_scheduler": "--override-opt_param-scheduler",
    "use_checkpoint_opt_param_scheduler": "--use-checkpoint-opt_param-scheduler",
}


def flag_name(key: str) -> str:
    if key.startswith("--"):
        return key
    return IRREGULAR_FLAGS.get(key) or "--" + key.lstrip("-").replace("_", "-")


def _value_text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return repr(value)  # keep `1.0` a float for argparse type=float flags
    return str(value)


def megatron_flags(arguments: Mapping[str, Any]) -> list[str]:
    """One shell-safe `--flag [value...]` string per argument that is switched on."""
    flags: list[str] = []
    for key, value in arguments.items():
        if value is None or value is False:
            continue
        flag = flag_name(str(key))
        if value is True:
            flags.append(flag)
        elif isinstance(value, (list, tuple)):
            flags.append(" ".join([flag, *(shlex.quote(_value_text(item)) for item in value)]))
        else:
            flags.append(f"{flag} {shlex.quote(_value_text(value))}")
    return flags


def megatron_args(arguments: Mapping[str, Any], sep: str = " ") -> str:
    """Jinja filter; `sep=" \\\\\\n    "` puts one flag per continued line."""
    return sep.join(megatron_flags(arguments))
