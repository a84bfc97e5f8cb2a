"""`orch report`: one self-contained HTML page about a campaign, to copy to a laptop or attach to a message.

Everything is inlined: styles in the page, no script or font from anywhere else. With plotly installed (the `plot`
extra) the loss-curve, LR and fit figures are interactive charts (`analysis/interactive.py`: hover, zoom, series
toggled from the legend; plotly.js inlined once); without it they are base64 PNG data URIs. A few lines of inline
script mark each figure as shown (`data-shown="yes"`) once the browser has drawn it, and put a visible note on one
it could not show.
"""

from __future__ import annotations

import base64
import html
import io
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from orchestrator import __version__
from orchestrator.analysis import interactive
from orchestrator.jobs import Job

STATE_ORDER = ("done", "running", "queued", "waiting", "failed", "abandoned", "not run")

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
img { max-width: 100%; border: 1px solid #eee; }
.note { color: #666; font-size: 0.9em; } .problem { color: #a00; }
"""

_SCRIPT = """
window.addEventListener("load", function () {
  function mark(element, shown, name) {
    element.dataset.shown = shown ? "yes" : "no";
    if (!shown) { var note = document.createElement("p"); note.className = "problem";
      note.textContent = "figure '" + name + "' could not be shown"; element.after(note); }
  }
  document.querySelectorAll("img").forEach(function (img) {
    mark(img, img.complete && img.naturalWidth > 0, img.alt);
  });
  document.querySelectorAll("div.chart").forEach(function (chart) {
    mark(chart, chart.querySelector("svg.main-svg") !== null, chart.getAttribute("aria-label"));
  });
});
"""


@dataclass(frozen=True)
class FitSettings:
    bootstrap: int = 200
    seed: int = 0
    budgets: tuple[float, ...] = ()
    irreducible: float | None = None


def _e(value: Any) -> str:
    return html.escape(str(value))


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{_e(cell)}</th>" for cell in header)
    body = "".join("<tr>" + "".join(f"<td>{_e(cell)}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _figure(draw: Callable[[str | io.BytesIO], Any], alt: str) -> str:
    """A PNG drawn into memory by `draw(target)`, inlined as a data URI."""
    buffer = io.BytesIO()
    draw(buffer)
    if not buffer.getvalue():
        return f'<p class="note">{_e(alt)}: nothing to draw yet.</p>'
    encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<p><img alt="{_e(alt)}" src="data:image/png;base64,{encoded}"></p>'


def _phase_key(jobs: Sequence[Job]) -> str | None:
    for key in ("PHASE", "phase", "PHASE_TAG"):
        if any(key in job.params for job in jobs[:100]):
            return key
    return None


def jobs_section(jobs: Sequence[Job], store) -> str:
    records = store.jobs([job.name for job in jobs]) if store is not None else {}
    phase_key = _phase_key(jobs)
    counts: dict[str, Counter[str]] = {}
    for job in jobs:
        phase = str(job.params.get(phase_key, "all")) if phase_key else "all"
        record = records.get(job.name)
        counts.setdefault(phase, Counter())[record.state.value if record else "not run"] += 1
    states = [state for state in STATE_ORDER if any(c[state] for c in counts.values())]
    rows = [[phase, *(c[state] for state in states), sum(c.values())] for phase, c in counts.items()]
    hours = 0.0
    if store is not None:
        now = time.time()
        hours = sum(((a.ended_at or now) - a.started_at) for a in store.attempts() if a.started_at) / 3600
    spent = (f"{hours:.2f} job-hours of runtime recorded by the monitor (GPU-hours need each job's GPU count: "
             "not known to this report)") if store is not None else "no monitor has run this campaign here yet"
    return (f"<h2>Jobs by state and {_e(phase_key or 'phase')}</h2>"
            + _table([phase_key or "phase", *states, "total"], rows) + f'<p class="note">{_e(spent)}</p>')


def curves_section(jobs: Sequence[Job]) -> str:
    from orchestrator.campaign.results import RUN_COLUMN, ResultKeys, collect_results, default_loss_column, plot_validation_loss

    table = collect_results(jobs)
    column = default_loss_column(table.rows)
    evaluated = sum(1 for row in table.rows if row.get(column) is not None)
    note = (f"<h2>Loss curves</h2><p class=\"note\">{evaluated} checkpoints with {_e(column)}; pretrain runs solid, "
            "cooldown branches dashed.</p>")
    if interactive.available() and evaluated:
        keys, schedules = ResultKeys(), _run_schedules(jobs)

        def lr_of(run: str, step: int) -> float | None:
            schedule = schedules.get(run)
            return round(schedule.lr_at(step), 10) if schedule is not None else None

        figure = interactive.loss_figure(
            table.rows, column, run_of=lambda row: str(row[RUN_COLUMN]), size_of=lambda row: row.get(keys.model_size),
            cooldown=lambda row: str(row.get(keys.phase, "")).upper().startswith("COOL"), lr_of=lr_of)
        return note + interactive.chart(figure, "loss-curves", f"{column} per run")
    return note + _figure(lambda target: plot_validation_loss(table, target, loss_column=column), f"{column} per model size")


def _run_schedules(jobs: Sequence[Job]) -> dict[str, Any]:
    """Run folder -> its LR schedule (as `orch lr check` reads it), for the runs that have one."""
    from orchestrator.errors import UserError
    from orchestrator.planning.lr_check import schedule_from_params

    found: dict[str, Any] = {}
    for job in jobs:
        run = str(job.params.get("RUN_DIR", job.name))
        if run in found:
            continue
        try:
            found[run] = schedule_from_params(run, job.params)
        except (UserError, ValueError, TypeError):
            found[run] = None
    return found


def lr_section(jobs: Sequence[Job]) -> str:
    from orchestrator.errors import UserError
    from orchestrator.planning import lr_check

    one_per_run: dict[Any, Job] = {}
    for job in jobs:  # a run's train and convert+eval jobs share its schedule keys: check it once
        one_per_run.setdefault(job.params.get("RUN_DIR", job.name), job)
    try:
        report = lr_check.check_jobs(list(one_per_run.values()))
    except UserError as error:
        return f"<h2>Learning-rate schedules</h2><p class=\"problem\">{_e(error)}</p>"
    if not report.jobs:
        return "<h2>Learning-rate schedules</h2><p class=\"note\">no job names an LR schedule.</p>"
    flagged = report.flagged
    lines = "".join(f"<li class=\"problem\">{_e(job.schedule.name)}: {_e('; '.join(job.problems))}</li>"
                    for job in flagged)
    if interactive.available():
        figure = interactive.chart(interactive.lr_figure(lr_check.curves(report)), "lr-schedules", "learning-rate schedules")
    else:
        figure = _figure(lambda target: lr_check.plot(report, target), "learning-rate schedules")
    return (f"<h2>Learning-rate schedules</h2><p>{len(report.jobs)} schedules checked against the framework's own "
            f"formula, {len(flagged)} cooldowns flagged.</p>" + (f"<ul>{lines}</ul>" if lines else "") + figure)


def fit_section(jobs: Sequence[Job], settings: FitSettings) -> str:
    from orchestrator.analysis.campaign_points import campaign_points
    from orchestrator.analysis.plot import plot_fit
    from orchestrator.analysis.scaling_law import FitError, fit_law, warn_if_unreliable
    from orchestrator.errors import UserError

    title = "<h2>Scaling law L(N, D) = E + A/N<sup>&alpha;</sup> + B/D<sup>&beta;</sup></h2>"
    try:
        found = campaign_points(jobs)
        fit = fit_law(found.points.params, found.points.tokens, found.points.loss, bootstrap=settings.bootstrap,
                      seed=settings.seed)
    except (FitError, UserError) as error:
        return f"{title}<p class=\"note\">not fitted: {_e(error)}</p>"
    law = fit.law
    rows = [[name, f"{value:.5g}",
             f"[{fit.intervals[name][0]:.4g}, {fit.intervals[name][1]:.4g}]" if name in fit.intervals else ""]
            for name, value in law.as_dict().items()]
    parts = [title, f"<p>Approach 3 of Hoffmann et al. (2022) on {fit.n_points} points; lowest loss per size and "
                    "token count.</p>",
             _table(["parameter", "value", f"95% interval ({settings.bootstrap} bootstrap resamples)"], rows)]
    if settings.irreducible is not None:
        parts.append(f"<p>Fitted E = {law.E:.4f} against the data's known entropy {settings.irreducible:.4f} "
                     f"({law.E - settings.irreducible:+.4f}).</p>")
    budgets = settings.budgets or tuple(10.0 ** k * max(6 * n * d for n, d in zip(found.points.params,
                                                                                    found.points.tokens))
                                        for k in (1, 2))
    try:
        optimal = [(c, *law.optimal(c)) for c in budgets]
        parts.append("<p>Compute-optimal allocation (C = 6 N D):</p>" + _table(
            ["FLOPs", "params N*", "tokens D*", "D*/N*", "predicted loss"],
            [[f"{c:.3g}", f"{n:.4g}", f"{d:.4g}", f"{d / n:.1f}", f"{loss:.4f}"] for c, n, d, loss in optimal]))
    except FitError as error:
        parts.append(f"<p class=\"note\">{_e(error)}</p>")
    notes = found.describe() + warn_if_unreliable(fit)
    if notes:
        parts.append("<ul>" + "".join(f"<li class=\"note\">{_e(note)}</li>" for note in notes) + "</ul>")
    if interactive.available():
        points = found.points
        values = (list(points.params), list(points.tokens), list(points.loss), found.labels, law)
        parts.append(interactive.chart(interactive.fit_figure(*values), "scaling-law", "scaling-law fit"))
        parts.append(interactive.chart(interactive.compute_figure(*values), "scaling-law-compute", "loss against compute"))
    else:
        parts.append(_figure(lambda target: plot_fit(fit, found.points, target), "scaling-law fit"))
    return "".join(parts)


def predictions_section(jobs: Sequence[Job], law: str) -> str:
    """Each cooldown branch's predicted final training loss (`orch predict CONFIG`) beside what it reached."""
    from orchestrator.analysis.campaign_predict import predict_branches
    from orchestrator.errors import UserError

    title = f"<h2>Cooldown branches predicted ({_e(law)})</h2>"
    try:
        branches = predict_branches(jobs, law)
    except UserError as error:
        return f"{title}<p class=\"note\">not predicted: {_e(error)}</p>"
    rows = []
    for branch in branches:
        error = (f"{(branch.loss - branch.observed) / branch.observed:+.2%}"
                 if branch.loss is not None and branch.observed is not None else "")
        rows.append([branch.run, f"{branch.resume_step} -> {branch.final_step}",
                     "" if branch.loss is None else f"{branch.loss:.4f}",
                     "" if branch.observed is None else f"{branch.observed:.4f}", error or branch.why_not])
    parts = [title, "<p class=\"note\">Training loss at each branch's last step, by a law fitted to its pretrain run's "
                    "log and its finished sibling branches; a finished branch is left out of its own fit.</p>",
             _table(["branch", "steps", "predicted", "observed", "error (or why not predicted)"], rows)]
    if interactive.available() and any(branch.predicted_curve for branch in branches):
        parts.append(interactive.chart(interactive.prediction_figure(branches), "predictions", "cooldown predictions"))
    return "".join(parts)


def build_report(config: str, jobs: Sequence[Job], store, settings: FitSettings = FitSettings(),
                 predict_law: str | None = None) -> str:
    generated = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    sections = [jobs_section(jobs, store), curves_section(jobs), lr_section(jobs), fit_section(jobs, settings)]
    if predict_law:
        sections.append(predictions_section(jobs, predict_law))
    library = interactive.library_script() if interactive.available() else ""
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>orch report: {_e(config)}</title><style>{_STYLE}</style>{library}</head><body>"
            f"<h1>Campaign report: {_e(config)}</h1><p class=\"note\">{len(jobs)} jobs; generated {_e(generated)} "
            f"by orch {_e(__version__)}.</p>" + "".join(sections) + f"<script>{_SCRIPT}</script></body></html>\n")
