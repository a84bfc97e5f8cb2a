"""The report's figures as interactive plotly charts: hover shows run, step, loss and LR, drag zooms, a legend click
hides a series, all in the one offline page (plotly.js is inlined once, nothing is fetched).

Each function returns a figure as plain data (`{"data": [...], "layout": {...}}`); `chart` turns one into a
`<div>` and its `Plotly.newPlot` call. Legends sit outside the plotting area (right of it), so none covers data.
Without plotly installed (the `plot` extra) the report keeps its PNG figures.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from typing import Any

PALETTE = ("#440154", "#3b528b", "#21918c", "#5ec962", "#fde725", "#e45756", "#f58518", "#72b7b2", "#b279a2")
_LEGEND = {"x": 1.02, "y": 1, "xanchor": "left", "yanchor": "top", "font": {"size": 10}}
_CONFIG = {"displaylogo": False, "responsive": True}


def available() -> bool:
    try:
        import plotly.offline  # noqa: F401
    except ImportError:
        return False
    return True


def library_script() -> str:
    """plotly.js, inlined: the page works offline."""
    from plotly.offline import get_plotlyjs

    return f"<script>{get_plotlyjs()}</script>"


def chart(figure: dict[str, Any], element_id: str, title: str) -> str:
    payload = json.dumps(figure, allow_nan=False).replace("</", "<\\/")
    return (f'<div class="chart" id="{element_id}" role="img" aria-label="{title}" style="height:460px"></div>'
            f"<script>Plotly.newPlot({json.dumps(element_id)}, {payload}.data, {payload}.layout, "
            f"{json.dumps(_CONFIG)});</script>")


def _layout(title: str, x_title: str, y_title: str, x_log: bool = False) -> dict[str, Any]:
    return {"title": {"text": title, "font": {"size": 14}}, "hovermode": "closest", "legend": _LEGEND,
            "margin": {"l": 60, "r": 20, "t": 40, "b": 50},
            "xaxis": {"title": {"text": x_title}, "type": "log" if x_log else "linear"},
            "yaxis": {"title": {"text": y_title}}}


def loss_figure(rows: Sequence[dict[str, Any]], column: str, run_of: Callable[[dict[str, Any]], str],
                size_of: Callable[[dict[str, Any]], Any], cooldown: Callable[[dict[str, Any]], bool],
                lr_of: Callable[[str, int], float | None]) -> dict[str, Any]:
    """One line per run of `column` against tokens (or iterations), coloured by model size, cooldowns dashed."""
    use_tokens = any(row.get("tokens") is not None for row in rows)
    runs: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        value = row.get(column)
        if value is None or not math.isfinite(value) or (use_tokens and row.get("tokens") is None):
            continue
        runs.setdefault(run_of(row), []).append(row)
    sizes = list(dict.fromkeys(size_of(row) for points in runs.values() for row in points))
    data = []
    for run, points in runs.items():
        points.sort(key=lambda row: row["iteration"])
        size = size_of(points[0])
        lrs = [lr_of(run, row["iteration"]) for row in points]
        data.append({
            "type": "scatter", "mode": "lines+markers", "name": run, "legendgroup": str(size),
            "x": [row["tokens"] if use_tokens else row["iteration"] for row in points],
            "y": [row[column] for row in points],
            "customdata": [[row["iteration"], lr if lr is not None else "?"] for row, lr in zip(points, lrs)],
            "line": {"color": PALETTE[sizes.index(size) % len(PALETTE)], "dash": "dash" if cooldown(points[0]) else "solid",
                     "width": 1.5},
            "marker": {"size": 5},
            "hovertemplate": f"<b>{run}</b><br>step %{{customdata[0]}}<br>{column} %{{y:.4f}}<br>LR %{{customdata[1]}}"
                             "<extra></extra>"})
    return {"data": data, "layout": _layout(f"{column} per run (pretrain solid, cooldowns dashed)",
                                            "tokens" if use_tokens else "iteration", column, x_log=use_tokens)}


def lr_figure(schedules: Sequence[tuple[str, list[int], list[float], bool]]) -> dict[str, Any]:
    """(run, steps, LRs, flagged) per schedule: one line each, flagged cooldowns dashed."""
    data = [{"type": "scatter", "mode": "lines", "name": name + (" (FLAGGED)" if flagged else ""), "x": steps, "y": lrs,
             "line": {"dash": "dash" if flagged else "solid", "width": 1.5},
             "hovertemplate": f"<b>{name}</b><br>step %{{x}}<br>LR %{{y:.4g}}<extra></extra>"}
            for name, steps, lrs, flagged in schedules]
    return {"data": data, "layout": _layout("LR schedules (dashed: flagged cooldowns)", "iteration", "learning rate")}


def fit_figure(params: Sequence[float], tokens: Sequence[float], loss: Sequence[float], labels: Sequence[str],
               law) -> dict[str, Any]:
    """The fitted points against tokens per model size, with the law's curve for each size and its E."""
    import numpy as np

    data = []
    sizes = sorted(set(params))
    span = np.logspace(math.log10(min(tokens)) - 0.1, math.log10(max(tokens)) + 0.1, 80)
    for index, size in enumerate(sizes):
        colour = PALETTE[index % len(PALETTE)]
        mine = [i for i, value in enumerate(params) if value == size]
        data.append({"type": "scatter", "mode": "markers", "name": f"N = {size:.3g}", "legendgroup": f"N{size}",
                     "x": [tokens[i] for i in mine], "y": [loss[i] for i in mine], "text": [labels[i] for i in mine],
                     "marker": {"color": colour, "size": 7},
                     "hovertemplate": "<b>%{text}</b><br>tokens %{x:.3g}<br>loss %{y:.4f}<extra></extra>"})
        data.append({"type": "scatter", "mode": "lines", "name": f"law, N = {size:.3g}", "legendgroup": f"N{size}",
                     "showlegend": False, "x": span.tolist(), "y": [float(v) for v in law.loss(size, span)],
                     "line": {"color": colour, "width": 1},
                     "hovertemplate": f"law at N = {size:.3g}<br>tokens %{{x:.3g}}<br>loss %{{y:.4f}}<extra></extra>"})
    data.append({"type": "scatter", "mode": "lines", "name": f"E = {law.E:.3g}", "x": [span[0], span[-1]],
                 "y": [law.E, law.E], "line": {"color": "grey", "dash": "dot", "width": 1},
                 "hovertemplate": f"E = {law.E:.4f}<extra></extra>"})
    return {"data": data, "layout": _layout("loss against tokens, fitted law", "tokens D", "loss", x_log=True)}


def compute_figure(params: Sequence[float], tokens: Sequence[float], loss: Sequence[float], labels: Sequence[str],
                   law) -> dict[str, Any]:
    """The fitted points against compute C = 6ND, with the law's compute-optimal frontier over their range."""
    import numpy as np

    flops = [6 * n * d for n, d in zip(params, tokens)]
    sizes = sorted(set(params))
    data = []
    for index, size in enumerate(sizes):
        mine = [i for i, value in enumerate(params) if value == size]
        data.append({"type": "scatter", "mode": "markers", "name": f"N = {size:.3g}", "x": [flops[i] for i in mine],
                     "y": [loss[i] for i in mine], "text": [labels[i] for i in mine],
                     "marker": {"color": PALETTE[index % len(PALETTE)], "size": 7},
                     "hovertemplate": "<b>%{text}</b><br>compute %{x:.3g} FLOPs<br>loss %{y:.4f}<extra></extra>"})
    if law.alpha > 0 and law.beta > 0:
        budgets = np.logspace(math.log10(min(flops)), math.log10(max(flops)), 60)
        optimal = [law.optimal(float(c)) for c in budgets]
        data.append({"type": "scatter", "mode": "lines", "name": "compute-optimal frontier", "x": budgets.tolist(),
                     "y": [float(point[2]) for point in optimal],
                     "customdata": [[float(point[0]), float(point[1])] for point in optimal],
                     "line": {"color": "black", "width": 1.5},
                     "hovertemplate": "compute %{x:.3g}<br>N* %{customdata[0]:.3g}, D* %{customdata[1]:.3g}"
                                      "<br>loss %{y:.4f}<extra></extra>"})
    return {"data": data, "layout": _layout("loss against compute", "compute C = 6ND (FLOPs)", "loss", x_log=True)}


def prediction_figure(branches: Sequence[Any]) -> dict[str, Any]:
    """Each predicted branch's logged training loss (markers) and its predicted curve (a line), one colour each."""
    data = []
    for index, branch in enumerate(branch for branch in branches if branch.predicted_curve):
        colour = PALETTE[index % len(PALETTE)]
        steps, predicted = zip(*branch.predicted_curve)
        data.append({"type": "scatter", "mode": "lines", "name": f"{branch.run} predicted", "legendgroup": branch.run,
                     "x": list(steps), "y": list(predicted), "line": {"color": colour, "dash": "dash", "width": 1.5},
                     "hovertemplate": f"<b>{branch.run}</b> predicted<br>step %{{x}}<br>loss %{{y:.4f}}<extra></extra>"})
        if branch.observed_curve:
            steps, observed = zip(*branch.observed_curve)
            data.append({"type": "scatter", "mode": "markers", "name": f"{branch.run} observed",
                         "legendgroup": branch.run, "x": list(steps), "y": list(observed),
                         "marker": {"color": colour, "size": 6},
                         "hovertemplate": f"<b>{branch.run}</b> observed<br>step %{{x}}<br>lm loss %{{y:.4f}}"
                                          "<extra></extra>"})
    return {"data": data, "layout": _layout("cooldown branches: predicted (dashed) and logged training loss",
                                            "iteration", "training loss")}
