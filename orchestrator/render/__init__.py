"""Render a job's sbatch script from its template.

A template whose name ends in `.j2` renders with Jinja2 (`{{ VAR }}`, StrictUndefined); any other with
`str.format` exactly as AutoExperiment does (`{VAR}`; `{{` and `}}` for literal braces).
"""

from __future__ import annotations

import difflib
import os
import re
import string
from collections.abc import Callable, Iterable
from functools import lru_cache
from pathlib import Path
from typing import Any

from orchestrator.campaign.megatron_args import megatron_args
from orchestrator.errors import UserError
from orchestrator.jobs import Job

# Jinja filters available to every `.j2` template; other modules register theirs here.
TEMPLATE_FILTERS: dict[str, Callable[..., Any]] = {}
TEMPLATE_FILTERS["megatron_args"] = megatron_args  # Megatron flags from a mapping (orchestrator.campaign)

_JOB_NAME_LINE = re.compile(r"^#SBATCH\s+(?:--job-name[=\s]|-J\s*)\s*(\S+)", re.MULTILINE)


def _read_template(path: str) -> str:
    return _read_template_at(os.getcwd(), path)  # a relative path is cached per working directory


@lru_cache(maxsize=None)
def _read_template_at(directory: str, path: str) -> str:
    try:
        return (Path(directory) / path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"template not found: {path}") from None
    except OSError as error:
        raise UserError(f"cannot read template {path}: {error.strerror}") from None


_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def template_words(path: str) -> frozenset[str]:
    """Every identifier-like word of a template and, for Jinja2, of the `.j2` files beside it (which it may
    include): the variables it may use, whatever its syntax."""
    return _template_words_at(os.getcwd(), path)


@lru_cache(maxsize=None)
def _template_words_at(directory: str, path: str) -> frozenset[str]:
    words = set(_WORD.findall(_read_template_at(directory, path)))
    if not path.endswith(".j2"):
        return frozenset(words)  # str.format templates include nothing
    folder = (Path(directory) / path).parent
    for sibling in folder.iterdir():
        if sibling.suffix == ".j2" and sibling.is_file() and sibling.stat().st_size < 1 << 20:
            words.update(_WORD.findall(sibling.read_text(encoding="utf-8", errors="replace")))
    return frozenset(words)


def _line_of(text: str, needle: str) -> int:
    offset = text.find(needle)
    return text.count("\n", 0, offset) + 1 if offset >= 0 else 0


def nearest_names(name: str, params: dict[str, Any]) -> list[str]:
    """The job's variables nearest to a misspelt one (a different case first)."""
    names = [key for key in params if isinstance(key, str)]
    same_but_case = [key for key in names if key.lower() == name.lower() and key != name]
    return (same_but_case + [key for key in difflib.get_close_matches(name, names, n=3, cutoff=0.7)
                             if key not in same_but_case])[:3]


def _format_hint(text: str, params: dict[str, Any]) -> str:
    """Why a str.format placeholder failed: a number format on a value kept as text (`-f KEY=1e-3` keeps the
    text, as AutoExperiment does; `-F` types it), else the literal-brace rule."""
    try:
        fields = [(name, spec) for _, name, spec, _ in string.Formatter().parse(text) if name]
    except ValueError:
        fields = []
    for name, spec in fields:
        value = params.get(name.split(".")[0].split("[")[0])
        if spec and isinstance(value, str) and spec[-1:] in "eEfFgGdn%xXob":
            return (f" ({{{name}:{spec}}} at line {_line_of(text, '{' + name)} formats a number but {name} is the "
                    f"text {value!r}: fix it with -F {name}={value} (typed) instead of -f, or in the config)")
    return " (write {{ and }} for literal braces)"


def _render_format(path: str, params: dict[str, Any], job_name: str) -> str:
    text = _read_template(path)
    try:
        return text.format(**params)
    except KeyError as error:
        variable = str(error.args[0])
        line = _line_of(text, "{" + variable)
        close = nearest_names(variable, params)
        hint = (f"did you mean {' or '.join('{' + name + '}' for name in close)}? " if close else "")
        raise UserError(
            f"{path}:{line}: undefined variable {{{variable}}} (job {job_name!r}); {hint}"
            f"write {{{{ and }}}} for literal braces, e.g. ${{{{{variable}}}}}"
        ) from None
    except (ValueError, IndexError, AttributeError) as error:
        raise UserError(f"{path}: cannot render for job {job_name!r}: {error}{_format_hint(text, params)}") from None


@lru_cache(maxsize=None)
def _jinja_environment(directory: str) -> Any:
    import jinja2

    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(directory),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )
    return environment


def _jinja_template(path: str) -> Any:
    return _jinja_template_at(os.getcwd(), path)


@lru_cache(maxsize=None)
def _jinja_template_at(directory: str, path: str) -> Any:
    import jinja2

    file = Path(directory) / path
    if not file.is_file():
        raise UserError(f"template not found: {path}")
    environment = _jinja_environment(str(file.parent.resolve()))
    environment.filters.update(TEMPLATE_FILTERS)  # filters may be registered after the first render
    try:
        return environment.get_template(file.name)
    except jinja2.TemplateSyntaxError as error:
        raise UserError(f"{error.filename or path}:{error.lineno}: Jinja syntax error: {error.message}") from None
    except jinja2.TemplateNotFound as error:
        raise UserError(f"{path}: included template not found: {error.name}") from None


def _render_jinja(path: str, params: dict[str, Any], job_name: str) -> str:
    import jinja2

    template = _jinja_template(path)
    try:
        return template.render(**params)
    except jinja2.UndefinedError as error:
        missing = re.match(r"'([^']+)' is undefined", error.message or "")
        if missing:
            variable = missing.group(1)
            line = _line_of(_read_template(path), variable)
            close = nearest_names(variable, params)
            hint = f"; did you mean {' or '.join(close)}?" if close else ""
            raise UserError(f"{path}:{line}: undefined variable {variable!r} (job {job_name!r}){hint}") from None
        raise UserError(f"{path}: {error.message} (job {job_name!r})") from None
    except jinja2.TemplateError as error:
        raise UserError(f"{path}: cannot render for job {job_name!r}: {error}") from None


def render_job(job: Job) -> str:
    """The job's script text (its parameters plus the paths of the files `orch build` generates for it)."""
    from orchestrator.render.generated import template_variables

    params = dict(template_variables(job))
    if job.template.endswith(".j2"):
        return _render_jinja(job.template, params, job.name)
    return _render_format(job.template, params, job.name)


@lru_cache(maxsize=None)
def _header_template(directory: str, path: str) -> str:
    """The template's leading lines that may render to `#SBATCH` directives: blank lines, comments and
    lines starting with a placeholder, up to the first command."""
    lines = []
    for line in _read_template_at(directory, path).splitlines(keepends=True):
        stripped = line.strip()
        if stripped and not stripped.startswith(("#", "{")):
            break
        lines.append(line)
    return "".join(lines)


# A directive line that sets only an option that never changes GPUs, nodes, tasks or time, e.g.
# `#SBATCH --job-name={name}`: its placeholders do not matter to the cost of a job.
_COSTLESS_LINE = re.compile(
    r"#(?:SBATCH|SLURM)\s+(?:-[JoeDApq]|--(?:job-name|output|error|chdir|account|partition|qos|mail-user|"
    r"mail-type|comment|open-mode|signal|dependency|begin|exclude|nodelist))(?:=|\s+)\S*\s*(?:#.*)?"
)


@lru_cache(maxsize=None)
def _resource_fields_at(directory: str, path: str) -> tuple[str, ...] | None:
    if path.endswith(".j2"):
        return None
    fields: list[str] = []
    for line in _header_template(directory, path).splitlines():
        if "{" not in line or _COSTLESS_LINE.fullmatch(line.strip()):
            continue
        try:
            names = [name for _, name, _, _ in string.Formatter().parse(line) if name]
        except ValueError:
            return None
        fields.extend(name.split(".")[0].split("[")[0] for name in names)
    return tuple(dict.fromkeys(fields))


def resource_fields(template: str) -> tuple[str, ...] | None:
    """The variables the template's `#SBATCH` head depends on, except those of options that never set
    resources (`--job-name={name}`); None when unknown (a Jinja template). Jobs equal on these render
    the same resource directives."""
    return _resource_fields_at(os.getcwd(), template)


def render_directives(job: Job) -> str:
    """The head of the job's script that holds its `#SBATCH` options (the whole script for Jinja templates).

    Cheaper than `render_job` for a `str.format` template, which is what `orch plan` needs for 10^5 jobs.
    """
    if job.template.endswith(".j2"):
        return render_job(job)
    from orchestrator.render.generated import template_variables

    try:
        return _header_template(os.getcwd(), job.template).format(**template_variables(job))
    except (KeyError, ValueError, IndexError, AttributeError):
        return render_job(job)  # the full render names the problem


def declared_job_name(script: str) -> str | None:
    """The name in the script's `#SBATCH --job-name=` line, if any."""
    match = _JOB_NAME_LINE.search(script)
    return match.group(1).strip("'\"") if match else None


def job_name_warnings(rendered: Iterable[tuple[Job, str]]) -> list[str]:
    """One warning per template whose scripts do not declare the job's name (the monitor adopts by name)."""
    warned: dict[str, str] = {}
    for job, script in rendered:
        if job.template in warned:
            continue
        declared = declared_job_name(script)
        if declared != job.name:
            found = f"it declares {declared!r}" if declared else "it has no such line"
            warned[job.template] = (
                f"warning: {job.template}: scripts should carry `#SBATCH --job-name={job.name}` "
                f"(e.g. `--job-name={{name}}`), {found}; the monitor re-adopts jobs by name"
            )
    return list(warned.values())
