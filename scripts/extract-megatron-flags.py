#!/usr/bin/env python3
"""Write the command-line flags of a Megatron checkout's parser as data for `orch check`.

    scripts/extract-megatron-flags.py --framework megatron-lm --source GIT_DIR --megatron-version TAG
    scripts/extract-megatron-flags.py --framework megatron-deepspeed --source GIT_DIR --megatron-version TAG \
        [--deepspeed-source GIT_DIR]

GIT_DIR is a clone or bare mirror; files are read at `--rev` (default HEAD) with `git show`, and the commit is
recorded. Nothing is imported or run: the parser is read with `ast`.
- Every `add_argument(...)` call in the entry script and the argument modules (`megatron/training/
  arguments.py` for Megatron-LM, `megatron/arguments.py` for Megatron-DeepSpeed): its option strings,
  a literal `choices=`, `nargs=`, and whether it takes a value (`action=store_true/store_false/count`
  do not).
- Megatron-LM's `ArgumentGroupFactory(SomeConfig, exclude=[...])` groups, built from config dataclasses the
  way `megatron/training/argument_utils.py` builds them: a field `foo_bar` is `--foo-bar`; a `bool`
  defaulting to False is a store_true flag, one defaulting to True is `--no-foo-bar` / `--disable-foo-bar`;
  `Literal[...]` and Enum annotations give the choices; `list[...]` takes several values; fields with
  `init=False` are skipped; `metadata={"argparse_meta": {...}}` overrides names, choices and nargs;
  fields of base classes count.
- Megatron-DeepSpeed adds DeepSpeed's own `--deepspeed`, `--deepspeed_config`, ... (`deepspeed.
  add_config_arguments`), read from `deepspeed/__init__.py` of `--deepspeed-source`.
"""

from __future__ import annotations

import argparse
import ast
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ARGUMENT_FILES = {
    "megatron-lm": ["megatron/training/arguments.py", "pretrain_gpt.py"],
    "megatron-deepspeed": ["megatron/arguments.py", "pretrain_gpt.py"],
}
REPOSITORIES = {"megatron-lm": "NVIDIA/Megatron-LM", "megatron-deepspeed": "argonne-lcf/Megatron-DeepSpeed"}
NO_VALUE_ACTIONS = {"store_true", "store_false", "store_const", "count", "help", "version"}


class Source:
    def __init__(self, git_dir: Path, rev: str) -> None:
        self.git_dir, self.rev = git_dir, rev
        self.commit = self._git("rev-parse", rev).strip()
        self.files = [line for line in self._git("ls-tree", "-r", "--name-only", rev).splitlines() if line.endswith(".py")]
        self._trees: dict[str, ast.Module] = {}

    def _git(self, *args: str) -> str:
        return subprocess.run(["git", "-C", str(self.git_dir), *args], check=True, capture_output=True, text=True).stdout

    def tree(self, path: str) -> ast.Module:
        if path not in self._trees:
            self._trees[path] = ast.parse(self._git("show", f"{self.rev}:{path}"), filename=path)
        return self._trees[path]

    def classes(self, prefix: str) -> dict[str, ast.ClassDef]:
        """Every class defined under `prefix`, by name (the first definition wins)."""
        found: dict[str, ast.ClassDef] = {}
        for path in self.files:
            if not path.startswith(prefix):
                continue
            try:
                tree = self.tree(path)
            except SyntaxError:
                continue
            for node in ast.walk(tree):
                if isinstance(node, ast.ClassDef):
                    found.setdefault(node.name, node)
        return found


def literal(node: ast.AST | None) -> Any:
    try:
        return ast.literal_eval(node) if node is not None else None
    except (ValueError, SyntaxError):
        return None


def flag_entry(takes_value: bool, choices: list[Any] | None = None, nargs: Any = None) -> dict[str, Any]:
    entry: dict[str, Any] = {"takes_value": takes_value}
    if choices is not None:
        entry["choices"] = [str(choice) for choice in choices]
    if nargs is not None:
        entry["nargs"] = nargs
    return entry


def add_argument_flags(tree: ast.Module) -> dict[str, dict[str, Any]]:
    flags: dict[str, dict[str, Any]] = {}
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "add_argument"):
            continue
        names = [arg.value for arg in node.args if isinstance(arg, ast.Constant) and isinstance(arg.value, str)]
        names = [name for name in names if name.startswith("-")]
        if not names:
            continue
        keywords = {keyword.arg: keyword.value for keyword in node.keywords if keyword.arg}
        action = literal(keywords.get("action"))
        takes_value = not (isinstance(action, str) and action in NO_VALUE_ACTIONS)
        if isinstance(keywords.get("action"), ast.Attribute):  # argparse.BooleanOptionalAction
            takes_value = False
            names += [f"--no-{name[2:]}" for name in names if name.startswith("--")]
        choices = literal(keywords.get("choices"))
        entry = flag_entry(takes_value, list(choices) if isinstance(choices, (list, tuple)) else None,
                           literal(keywords.get("nargs")))
        for name in names:
            flags[name] = entry
    return flags


def _annotation_kind(annotation: ast.AST, enums: dict[str, list[str]]) -> tuple[str, list[Any] | None, bool]:
    """(base type name, choices, list?) of a field annotation, as ArgumentGroupFactory._extract_type reads it."""
    if isinstance(annotation, ast.Constant) and isinstance(annotation.value, str):
        annotation = ast.parse(annotation.value, mode="eval").body
    if isinstance(annotation, ast.BinOp) and isinstance(annotation.op, ast.BitOr):  # X | None
        left, right = annotation.left, annotation.right
        inner = right if isinstance(left, ast.Constant) and left.value is None else left
        return _annotation_kind(inner, enums)
    if isinstance(annotation, ast.Subscript):
        head = ast.unparse(annotation.value).split(".")[-1]
        inner = annotation.slice
        if head == "Optional":
            return _annotation_kind(inner, enums)
        if head == "Union":
            members = inner.elts if isinstance(inner, ast.Tuple) else [inner]
            real = [m for m in members if not (isinstance(m, ast.Constant) and m.value is None)]
            return _annotation_kind(real[0], enums) if len(real) == 1 else ("union", None, False)
        if head in ("list", "List"):
            base, choices, _ = _annotation_kind(inner, enums)
            return base, choices, True
        if head == "Literal":
            values = literal(inner)
            values = list(values) if isinstance(values, tuple) else [values]
            return "literal", values, False
        return head, None, False
    name = ast.unparse(annotation).split(".")[-1]
    if name in enums:
        return "enum", enums[name], False
    return name, None, False


def _field_call(value: ast.AST | None) -> dict[str, ast.AST]:
    if isinstance(value, ast.Call) and ast.unparse(value.func).split(".")[-1] == "field":
        return {keyword.arg: keyword.value for keyword in value.keywords if keyword.arg}
    return {}


def dataclass_flags(name: str, classes: dict[str, ast.ClassDef], enums: dict[str, list[str]],
                    exclude: set[str]) -> dict[str, dict[str, Any]]:
    """The flags ArgumentGroupFactory adds for dataclass `name` (base classes first, as `fields()` orders them)."""
    node = classes.get(name)
    if node is None:
        raise SystemExit(f"config dataclass {name} not found")
    flags: dict[str, dict[str, Any]] = {}
    for base in node.bases:
        base_name = ast.unparse(base).split(".")[-1]
        if base_name in classes:
            flags.update(dataclass_flags(base_name, classes, enums, exclude))
    for statement in node.body:
        if not (isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name)):
            continue
        field_name = statement.target.id
        if field_name in exclude or "ClassVar" in ast.unparse(statement.annotation):
            continue
        options = _field_call(statement.value)
        if literal(options.get("init")) is False:
            continue
        default = literal(options["default"]) if "default" in options else (
            None if options else literal(statement.value))
        base, choices, many = _annotation_kind(statement.annotation, enums)
        names = ["--" + field_name.replace("_", "-")]
        entry = flag_entry(True, choices, "+" if many else None)
        if base == "bool" and not many:
            if default is True:
                names = ["--no-" + field_name.replace("_", "-"), "--disable-" + field_name.replace("_", "-")]
            entry = flag_entry(False)
        meta = literal(options.get("metadata")) if "metadata" in options else None
        if meta is None and "metadata" in options:  # a metadata dict with non-literal values (types): read keys
            meta = _partial_dict(options["metadata"])
        argparse_meta = (meta or {}).get("argparse_meta") if isinstance(meta, dict) else None
        if isinstance(argparse_meta, dict):
            names = argparse_meta.get("arg_names", names)
            if "choices" in argparse_meta and argparse_meta["choices"] is not None:
                entry["choices"] = [str(c) for c in argparse_meta["choices"]]
            if "nargs" in argparse_meta:
                entry["nargs"] = argparse_meta["nargs"]
            if argparse_meta.get("action") in NO_VALUE_ACTIONS:
                entry["takes_value"] = False
        for flag in names:
            flags[flag] = entry
    return flags


def _partial_dict(node: ast.AST) -> Any:
    """A dict literal whose leaves may be names (types): keep what literal_eval can read."""
    if isinstance(node, ast.Dict):
        return {literal(key): _partial_dict(value) for key, value in zip(node.keys, node.values) if literal(key) is not None}
    return literal(node)


def enum_members(classes: dict[str, ast.ClassDef]) -> dict[str, list[str]]:
    """Enum classes -> member names (ArgumentGroupFactory parses an Enum flag with `EnumClass[value]`)."""
    found = {}
    for name, node in classes.items():
        if any(ast.unparse(base).split(".")[-1] in ("Enum", "IntEnum", "StrEnum") for base in node.bases):
            found[name] = [target.id for statement in node.body if isinstance(statement, ast.Assign)
                           for target in statement.targets if isinstance(target, ast.Name)]
    return found


def factory_groups(tree: ast.Module) -> list[tuple[str, set[str]]]:
    """(dataclass name, excluded fields) of every ArgumentGroupFactory(...) call; a variable `exclude` is
    resolved when the same function assigns it a literal list (`exclude += [...]` included)."""
    groups = []
    for function in [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)]:
        assigned: dict[str, set[str]] = {}
        for node in ast.walk(function):
            if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                value = literal(node.value)
                if isinstance(value, list):
                    assigned[node.targets[0].id] = set(map(str, value))
            if isinstance(node, ast.AugAssign) and isinstance(node.target, ast.Name):
                value = literal(node.value)
                if isinstance(value, list):
                    assigned.setdefault(node.target.id, set()).update(map(str, value))
        for node in ast.walk(function):
            if isinstance(node, ast.Call) and ast.unparse(node.func).split(".")[-1] == "ArgumentGroupFactory" and node.args:
                exclude_node = next((k.value for k in node.keywords if k.arg == "exclude"), None)
                exclude = literal(exclude_node)
                if exclude is None and isinstance(exclude_node, ast.Name):
                    exclude = assigned.get(exclude_node.id, set())
                groups.append((ast.unparse(node.args[0]).split(".")[-1], set(map(str, exclude or []))))
    return groups


def deepspeed_flags(git_dir: Path, rev: str) -> dict[str, dict[str, Any]]:
    source = Source(git_dir, rev)
    tree = source.tree("deepspeed/__init__.py")
    return add_argument_flags(tree)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--framework", choices=sorted(ARGUMENT_FILES), required=True)
    parser.add_argument("--source", type=Path, required=True, metavar="GIT_DIR")
    parser.add_argument("--rev", default="HEAD")
    parser.add_argument("--megatron-version", required=True, help="the release the checkout is, recorded in the data")
    parser.add_argument("--deepspeed-source", type=Path, metavar="GIT_DIR")
    parser.add_argument("--out", type=Path,
                        default=Path(__file__).resolve().parent.parent / "orchestrator" / "data" / "megatron_flags")
    options = parser.parse_args()
    source = Source(options.source, options.rev)
    flags: dict[str, dict[str, Any]] = {}
    read = []
    for path in ARGUMENT_FILES[options.framework]:
        if path not in source.files:
            continue
        tree = source.tree(path)
        read.append(path)
        flags.update(add_argument_flags(tree))
        groups = factory_groups(tree)
        if groups:
            classes = source.classes("megatron/")
            enums = enum_members(classes)
            for name, exclude in groups:
                flags.update(dataclass_flags(name, classes, enums, exclude))
    extra: dict[str, str] = {}
    if options.framework == "megatron-deepspeed":
        if options.deepspeed_source is None:
            raise SystemExit("--deepspeed-source is needed for Megatron-DeepSpeed (its parser adds DeepSpeed's flags)")
        for name, entry in deepspeed_flags(options.deepspeed_source, "HEAD").items():
            flags.setdefault(name, entry)
        extra = {"deepspeed_repository": "microsoft/DeepSpeed",
                 "deepspeed_commit": Source(options.deepspeed_source, "HEAD").commit}
    document = {
        "framework": options.framework, "repository": REPOSITORIES[options.framework],
        "version": options.megatron_version, "commit": source.commit, "files": read, **extra,
        "flags": dict(sorted(flags.items())),
    }
    options.out.mkdir(parents=True, exist_ok=True)
    path = options.out / f"{options.framework}.json"
    path.write_text(json.dumps(document, indent=1) + "\n")
    print(f"{path}: {len(flags)} flags of {document['repository']} {options.megatron_version} ({source.commit[:8]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
