"""Read a campaign YAML file exactly as AutoExperiment does: with OmegaConf (`OmegaConf.load`).

OmegaConf's loader is YAML 1.1 plus its own float pattern (`5e-4` and `1.e-2` are floats, `.5e3` and
`1_e3` stay strings), no timestamps (`2024-01-01` is text), merge keys (`<<: *base`, an explicit key
wins) and an error for a key written twice in one mapping. Using OmegaConf itself, as AutoExperiment
does, makes those rules exact instead of a reproduction; it is imported only when a config is read.
The tree is returned as plain dicts and lists with `${...}` interpolations still unresolved, so `-f`
fixes apply first, as in AutoExperiment (see `interpolation`).
"""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import yaml

from orchestrator.errors import UserError


def line_of_key(source: str, text: str, key: str) -> str:
    """`file:line` of the first line defining `key` (for error messages), else just `file`."""
    if not key:
        return source
    match = re.search(rf"^[ \t-]*['\"]?{re.escape(key)}['\"]?[ \t]*:", text, re.MULTILINE)
    return f"{source}:{text.count(chr(10), 0, match.start()) + 1}" if match else source


def omegaconf_error(error: Exception, source: str, text: str) -> UserError:
    """An OmegaConf error as one line naming the file, line and key (`full_key`) it concerns."""
    key = str(getattr(error, "full_key", "") or "")
    leaf = re.split(r"[.\[]", key)[-1].rstrip("]") if key else ""
    message = str(error).splitlines()[0] if str(error) else type(error).__name__
    missing = re.match(r"Interpolation key '([^']+)' not found", message)
    if missing:
        name = missing.group(1)
        message = f"${{{name}}}: no key {name!r} in the config (write \\${{{name}}} for a shell variable)"
    if message.startswith("Missing mandatory value"):
        message += f" (??? asks for one: -f {leaf}=VALUE)"
    label = f"key {key!r}: " if key else ""
    return UserError(f"{line_of_key(source, text, leaf)}: {label}{message}")


def parse_yaml_text(text: str, source: str) -> Any:
    """Parse YAML text with OmegaConf's loader into plain containers; errors name `source:line`."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        node = OmegaConf.load(io.StringIO(text))
        return OmegaConf.to_container(node, resolve=False)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        problem = error.problem or error.context or "invalid YAML"
        raise UserError(f"{where}: YAML syntax error: {problem}") from None
    except yaml.YAMLError as error:
        raise UserError(f"{source}: YAML error: {error}") from None
    except OmegaConfBaseException as error:
        raise omegaconf_error(error, source, text) from None
    except OSError as error:
        raise UserError(f"{source}: {error}") from None


def load_config_file(path: str | Path) -> tuple[dict[str, Any], str]:
    """Load a campaign config (a YAML mapping); returns it with the file's text (for error lines)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"config file not found: {path}") from None
    except OSError as error:
        raise UserError(f"cannot read config file {path}: {error.strerror}") from None
    data = parse_yaml_text(text, str(path))
    if not data:
        raise UserError(f"{path}: the config is empty")
    if not isinstance(data, dict):
        raise UserError(f"{path}: the config must be a YAML mapping of keys to values, got a {type(data).__name__}")
    return data, text


def parse_typed_scalar(text: str) -> Any:
    """A `-F KEY=VALUE` value, typed as the same text would be in the config file (`1e-3` is a float)."""
    if text == "":
        return ""
    try:
        value = parse_yaml_text(f"value: {text}\n", "-F")["value"]
    except (UserError, TypeError):
        return text
    return value if isinstance(value, (str, int, float, bool)) else text
