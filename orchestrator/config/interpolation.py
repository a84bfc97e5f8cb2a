"""OmegaConf interpolation (`${key}`, `${a.b}`, `${.x}`, `${oc.env:VAR,default}`, `\\${x}`) over a config tree.

AutoExperiment iterates an OmegaConf `DictConfig`, so every `${...}` in a value is resolved by
OmegaConf before its own `{VAR}` formatting: a whole-value `${n}` keeps the referenced node's type
(an int stays an int, a list is swept again), `${a}/x` is text, `\\${X}` is the literal `${X}`.
We hand the (fixed) tree to OmegaConf itself for exactly that, and only when some string holds `${`,
so configs without interpolations never pay for it.
"""

from __future__ import annotations

from typing import Any

from orchestrator.config.tree import iter_strings
from orchestrator.config.yaml_loader import omegaconf_error

_MARKER = "${"
_MISSING = "???"


def _has_interpolation(config: Any) -> bool:
    return any(_MARKER in text or text == _MISSING for text in iter_strings(config))


def resolve_interpolations(config: dict[str, Any], source: str = "config", text: str = "") -> dict[str, Any]:
    """`config` with every `${...}` resolved as OmegaConf resolves it (`source`, `text`: for error lines).

    A `???` value (OmegaConf's "missing") is an error, as it is in AutoExperiment: set it with `-f`.
    """
    if not _has_interpolation(config):
        return config
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        return OmegaConf.to_container(OmegaConf.create(config), resolve=True, throw_on_missing=True)  # type: ignore[return-value]
    except OmegaConfBaseException as error:
        raise omegaconf_error(error, source, text) from None
