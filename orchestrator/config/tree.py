"""Walking a loaded config tree (plain dicts and lists)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any


def iter_strings(node: Any) -> Iterator[str]:
    """Every string value in the tree, depth first (keys are not values)."""
    pending = [node]
    while pending:
        item = pending.pop()
        if type(item) is str:
            yield item
        elif isinstance(item, dict):
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
