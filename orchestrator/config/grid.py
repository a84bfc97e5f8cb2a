"""Grid expansion with AutoExperiment's semantics (its `product_recursive`), YAML in, parameter sets out.

- a scalar is one value;
- a list of scalars is a sweep (one branch per value);
- a list of single-key mappings is a union of named options: each option's name becomes the value of
  the parent key and its own keys join the parameters;
- a mapping crosses its keys (cartesian product, in key order, `itertools.product` order);
- nesting at any depth. A path of keys k1 → k2 → ... → kn → v sets params[k_i] = k_{i+1} and
  params[kn] = v, exactly as AutoExperiment does.

Keys in `ATOMIC_KEYS` keep their mapping (or list) value whole (data mixtures and the alert settings are a
value, not a grid).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping
from typing import Any

from orchestrator.errors import UserError

ATOMIC_KEYS: frozenset[str] = frozenset({"data_sources", "data_mix", "data_buffer", "notify"})
SCALAR_TYPES = (str, int, float, bool, type(None))

# A path is the tuple of (key, value) assignments it makes; a fragment is the paths of one branch.
Path = tuple[tuple[str, Any], ...]
Fragment = tuple[Path, ...]


def _describe(where: str) -> str:
    return where or "the top level"


def _prefixed(key: str, fragment: Fragment) -> Fragment:
    """Put `key` in front of every path of a branch (AutoExperiment's `_add_key`)."""
    if not fragment:
        return fragment
    return tuple((((key, path[0][0]),) + path) if path[0][0] is not None else ((key, path[0][1]),) for path in fragment)


def _expand_node(node: Any, where: str) -> list[Fragment]:
    """Branches of one config node; each path starts with a `(None, value)` marker for a bare scalar."""
    if isinstance(node, SCALAR_TYPES):
        return [(((None, node),),)]
    if isinstance(node, list):
        return _expand_list(node, where)
    if isinstance(node, dict):
        return _expand_mapping(node, where)
    raise UserError(f"{_describe(where)}: unsupported value of type {type(node).__name__}")


def _expand_list(node: list[Any], where: str) -> list[Fragment]:
    if not node:
        raise UserError(f"{_describe(where)}: an empty list gives no jobs; remove the key or give it values")
    if all(isinstance(item, dict) and len(item) == 1 for item in node):
        branches: list[Fragment] = []
        for item in node:
            ((option, value),) = item.items()
            option = str(option)
            branches.extend(_prefixed(option, f) for f in _expand_node(value, f"{where}.{option}" if where else option))
        return branches
    if all(isinstance(item, SCALAR_TYPES) for item in node):
        return [(((None, item),),) for item in node]
    raise UserError(
        f"{_describe(where)}: a list must hold either plain values (a sweep) or single-key mappings "
        f"(named options, `- name: {{...}}`), not a mix"
    )


def _expand_mapping(node: dict[Any, Any], where: str) -> list[Fragment]:
    axes: list[list[Fragment]] = []
    for key, value in node.items():
        key = str(key)
        path = f"{where}.{key}" if where else key
        if key in ATOMIC_KEYS and isinstance(value, (dict, list)):
            axes.append([(((key, value),),)])
            continue
        axes.append([_prefixed(key, fragment) for fragment in _expand_node(value, path)])
    return [tuple(itertools.chain.from_iterable(combination)) for combination in itertools.product(*axes)]


def _flatten(fragment: Fragment) -> tuple[tuple[str, Any], ...]:
    return tuple(itertools.chain.from_iterable(fragment))


def _is_template_text(value: Any) -> bool:
    return type(value) is str and ("{" in value or "}" in value or value.startswith("expr("))


def _structural_positions(axes: list[list[tuple[tuple[str, Any], ...]]]) -> list[int]:
    """Axes whose branches differ in keys or hold text to resolve.

    Jobs that take the same branch on each of these axes resolve the same way (same keys, same
    templates), so the resolver can plan once per such signature instead of once per job.
    """
    positions = []
    for position, branches in enumerate(axes):
        key_sets = {tuple(key for key, _ in branch) for branch in branches}
        has_templates = any(_is_template_text(value) for branch in branches for _, value in branch)
        if len(branches) > 1 and (len(key_sets) > 1 or has_templates):
            positions.append(position)
    return positions


def expand_grid(config: Mapping[str, Any]) -> Iterator[tuple[tuple[int, ...], dict[str, Any]]]:
    """Yield (signature, raw parameter dict) per job, in AutoExperiment's order.

    Jobs with equal signatures have the same keys and the same text to interpolate; only plain
    values (numbers, strings without braces) differ between them.
    """
    axes: list[list[tuple[tuple[str, Any], ...]]] = []
    for key, value in config.items():
        key = str(key)
        if key in ATOMIC_KEYS and isinstance(value, (dict, list)):
            axes.append([((key, value),)])
            continue
        # Flatten each top-level branch once; the (large) product then only concatenates tuples.
        axes.append([_flatten(_prefixed(key, fragment)) for fragment in _expand_node(value, key)])
    positions = _structural_positions(axes)
    index_of = [{id(branch): index for index, branch in enumerate(axes[p])} for p in positions]
    chain = itertools.chain.from_iterable
    for combination in itertools.product(*axes):
        signature = tuple(lookup[id(combination[p])] for p, lookup in zip(positions, index_of))
        yield signature, dict(chain(combination))
