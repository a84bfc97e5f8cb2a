"""Read a campaign YAML file the way AutoExperiment's loader (OmegaConf) does.

Plain PyYAML follows YAML 1.1, where `5e-4` and `1e-2` (no dot) are *strings*; OmegaConf reads them as
floats, and so do we. `2_000_000_000` is an int and `true` a bool in both. Unlike PyYAML we also refuse a
key defined twice in the same mapping (PyYAML silently keeps the last one).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from orchestrator.errors import UserError

# OmegaConf's float pattern: YAML 1.1 floats plus exponents without a dot (`1e-3`) and `1.e-2`.
_FLOAT_PATTERN = re.compile(
    r"""^(?:
        [-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
      | [-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
      | \.[0-9_]+(?:[eE][-+]?[0-9]+)?
      | [-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*
      | [-+]?\.(?:inf|Inf|INF)
      | \.(?:nan|NaN|NAN)
    )$""",
    re.VERBOSE,
)


class CampaignLoader(yaml.SafeLoader):
    """SafeLoader with OmegaConf's float resolver and duplicate-key detection."""


# Replace the float resolver (resolvers are kept per first character; rebuild the table without the old one).
CampaignLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:float"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
# Dates stay text (`2024-01-01` is a run label, not a datetime object a template cannot format).
CampaignLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in CampaignLoader.yaml_implicit_resolvers.items()
}
CampaignLoader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT_PATTERN, list("-+0123456789."))


def _construct_mapping_without_duplicates(loader: CampaignLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    mapping: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in mapping:
            raise yaml.constructor.ConstructorError(
                None, None, f"key {key!r} is defined twice in the same mapping", key_node.start_mark
            )
        mapping[key] = loader.construct_object(value_node, deep=True)
    return mapping


CampaignLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping_without_duplicates)


def parse_yaml_text(text: str, source: str) -> Any:
    """Parse YAML text; syntax errors become a UserError naming `source:line`."""
    try:
        return yaml.load(text, Loader=CampaignLoader)  # noqa: S506 - CampaignLoader is a SafeLoader
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        problem = error.problem or error.context or "invalid YAML"
        raise UserError(f"{where}: YAML syntax error: {problem}") from None
    except yaml.YAMLError as error:
        raise UserError(f"{source}: YAML error: {error}") from None


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
    if data is None:
        raise UserError(f"{path}: the config is empty")
    if not isinstance(data, dict):
        raise UserError(f"{path}: the config must be a YAML mapping of keys to values, got a {type(data).__name__}")
    return data, text


def parse_scalar(text: str) -> Any:
    """A `-f KEY=VALUE` value, typed as the same text would be in the config file (`1e-3` is a float)."""
    if text == "":
        return ""
    try:
        value = yaml.load(text, Loader=CampaignLoader)  # noqa: S506
    except yaml.YAMLError:
        return text
    return value if isinstance(value, (str, int, float, bool)) else text
