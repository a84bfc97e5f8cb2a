"""The fit drawn: loss against tokens per model size with the fitted curves, and against compute with the
compute-optimal frontier (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path


def plot_fit(fit, points, path: str | Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    params, tokens, loss = (np.asarray(v) for v in (points.params, points.tokens, points.loss))
    law = fit.law
    figure, (by_tokens, by_compute) = plt.subplots(1, 2, figsize=(12, 4.5))
    sizes = np.unique(params)
    colours = plt.cm.viridis(np.linspace(0, 0.9, len(sizes)))
    span = np.logspace(np.log10(tokens.min()) - 0.1, np.log10(tokens.max()) + 0.1, 100)
    for size, colour in zip(sizes, colours):
        mine = params == size
        by_tokens.scatter(tokens[mine], loss[mine], color=colour, s=14, label=f"N = {size:.3g}")
        by_tokens.plot(span, law.loss(size, span), color=colour, linewidth=1)
        by_compute.scatter(6 * size * tokens[mine], loss[mine], color=colour, s=14)
    by_tokens.axhline(law.E, color="grey", linestyle=":", label=f"E = {law.E:.3g}")
    by_tokens.set(xscale="log", xlabel="tokens D", ylabel="loss", title="loss against tokens, fitted law")
    by_tokens.legend(fontsize=7)
    flops = 6 * params * tokens
    budgets = np.logspace(np.log10(flops.min()), np.log10(flops.max()), 100)
    frontier = [law.optimal(c)[2] for c in budgets] if law.alpha > 0 and law.beta > 0 else []
    if frontier:
        by_compute.plot(budgets, frontier, color="black", linewidth=1.5, label="compute-optimal frontier")
        by_compute.legend(fontsize=7)
    by_compute.set(xscale="log", xlabel="compute C = 6ND (FLOPs)", ylabel="loss", title="loss against compute")
    figure.tight_layout()
    figure.savefig(path, dpi=110, format="png")
    plt.close(figure)
