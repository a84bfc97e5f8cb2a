"""LR-finder analysis: where does the loss stop falling as the learning rate grows?

An LR-finder run raises the LR step by step and records the loss; the file holds two arrays,
`learning_rates` and `losses`. We smooth the loss (centred moving average over a fraction of the
points), differentiate it w.r.t. log10(LR) and report every local minimum, i.e. every place where
the slope turns from negative to positive. A small dead band (a fraction of the largest |slope|)
keeps noise-level wiggles from counting as turns; the crossing itself is located between samples
by linear interpolation of the slope. The suggested LR is a minimum's LR / 10 (the usual rule: the
loss is still falling steeply a decade below the point where it stops falling).

numpy is imported at module level: the CLI imports this module only inside its handler.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from orchestrator.errors import UserError

DEFAULT_SMOOTH_FRAC = 0.03
SLOPE_DEAD_BAND = 1e-3  # share of the largest |slope| treated as "flat" on noiseless curves
NOISE_SIGMAS = 3.0  # a slope within this many noise standard deviations of 0 is "flat"
SUGGESTION_DIVISOR = 10.0
MIN_POINTS = 5


@dataclass(frozen=True)
class LossMinimum:
    lr: float
    loss: float
    """Smoothed loss at the minimum."""

    @property
    def suggested_lr(self) -> float:
        return self.lr / SUGGESTION_DIVISOR


@dataclass
class FinderResult:
    label: str
    learning_rates: np.ndarray
    losses: np.ndarray
    smoothed: np.ndarray
    slope: np.ndarray
    """d(smoothed loss) / d(log10 LR) at every point."""
    minima: list[LossMinimum] = field(default_factory=list)
    steepest_lr: float = float("nan")
    absolute_min_lr: float = float("nan")
    absolute_min_loss: float = float("nan")
    dropped_points: int = 0
    """Points after the first non-finite loss (a diverged run), left out of the analysis."""


def load_finder_file(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """`learning_rates` and `losses` from an .npz file, checked; UserError names the problem."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise UserError(f"{path}: not a numpy .npz file ({error})") from None
    with archive:
        keys = set(getattr(archive, "files", []))
        missing = [key for key in ("learning_rates", "losses") if key not in keys]
        if missing:
            found = ", ".join(sorted(keys)) or "nothing"
            raise UserError(f"{path}: missing array(s) {', '.join(missing)} (found: {found})")
        learning_rates = np.asarray(archive["learning_rates"], dtype=float).ravel()
        losses = np.asarray(archive["losses"], dtype=float).ravel()
    check_arrays(learning_rates, losses, str(path))
    return learning_rates, losses


def check_arrays(learning_rates: np.ndarray, losses: np.ndarray, label: str) -> None:
    if learning_rates.shape != losses.shape:
        raise UserError(
            f"{label}: learning_rates has {learning_rates.size} values but losses has {losses.size}"
        )
    if learning_rates.size < MIN_POINTS:
        raise UserError(f"{label}: {learning_rates.size} points; an LR finder needs at least {MIN_POINTS}")
    bad = np.flatnonzero(~np.isfinite(learning_rates) | (learning_rates <= 0))
    if bad.size:
        raise UserError(
            f"{label}: learning_rates must be positive and finite (index {bad[0]} is {learning_rates[bad[0]]})"
        )


def moving_average(values: np.ndarray, window: int) -> np.ndarray:
    """Centred moving average; the window shrinks symmetrically at the ends so nothing shifts."""
    if window <= 1:
        return values.astype(float).copy()
    half = window // 2
    cumulative = np.concatenate(([0.0], np.cumsum(values, dtype=float)))
    index = np.arange(values.size)
    reach = np.minimum(np.minimum(index, values.size - 1 - index), half)
    low, high = index - reach, index + reach + 1
    return (cumulative[high] - cumulative[low]) / (high - low)


def slope_noise(losses: np.ndarray, window: int, log_step: float) -> float:
    """Standard deviation of the slope's noise, estimated from the raw losses.

    Second differences cancel a smooth curve (and constant curvature), so their median absolute
    deviation measures the loss noise sigma (std of a second difference: sigma * sqrt(6)). A centred
    moving average of width w followed by a central difference over spacing h leaves sigma / (w * h).
    """
    if losses.size < 3 or log_step <= 0.0:
        return 0.0
    second = np.diff(losses, 2)
    sigma = 1.4826 * float(np.median(np.abs(second - np.median(second)))) / np.sqrt(6.0)
    return sigma / (max(window, 1) * log_step)


def find_minima(log_lr: np.ndarray, smoothed: np.ndarray, slope: np.ndarray, min_log_sep: float = 0.0,
                noise: float = 0.0) -> list[LossMinimum]:
    """Every negative -> positive turn of the slope, located by interpolation, de-duplicated.

    A turn counts only when the slope goes below -band and later above +band, with band the larger
    of NOISE_SIGMAS x the slope's noise and a small share of the largest |slope|.
    """
    band = SLOPE_DEAD_BAND * float(np.max(np.abs(slope))) if slope.size else 0.0
    band = max(band, NOISE_SIGMAS * noise)
    sign = np.where(slope > band, 1, np.where(slope < -band, -1, 0))
    found: list[tuple[float, float]] = []  # (log10 lr, smoothed loss)
    last_negative: int | None = None
    for index, value in enumerate(sign):
        if value < 0:
            last_negative = index
        elif value > 0 and last_negative is not None:
            found.append(_crossing(log_lr, smoothed, slope, last_negative, index))
            last_negative = None
    minima = _deduplicate(found, min_log_sep)
    return [LossMinimum(lr=float(10**x), loss=float(y)) for x, y in minima]


def _crossing(log_lr: np.ndarray, smoothed: np.ndarray, slope: np.ndarray, start: int, end: int) -> tuple[float, float]:
    """Where the slope crosses zero upwards between sample `start` (negative) and `end` (positive).

    Between them the slope is flat within noise and may cross zero several times: the crossing
    with the lowest (interpolated) loss is the bottom of the dip.
    """
    crossings: list[tuple[float, float]] = []
    for k in range(start, end):
        if slope[k] <= 0.0 < slope[k + 1]:
            share = -slope[k] / (slope[k + 1] - slope[k])
            x = log_lr[k] + share * (log_lr[k + 1] - log_lr[k])
            y = smoothed[k] + share * (smoothed[k + 1] - smoothed[k])
            crossings.append((float(x), float(y)))
    if not crossings:  # unreachable for finite slopes; keep a sane answer anyway
        middle = (start + end) // 2
        return float(log_lr[middle]), float(smoothed[middle])
    return min(crossings, key=lambda crossing: crossing[1])


def _deduplicate(minima: list[tuple[float, float]], min_log_sep: float) -> list[tuple[float, float]]:
    """Of minima closer than `min_log_sep` decades, keep the lower loss."""
    kept: list[tuple[float, float]] = []
    for x, y in minima:
        if kept and x - kept[-1][0] < min_log_sep:
            if y < kept[-1][1]:
                kept[-1] = (x, y)
            continue
        kept.append((x, y))
    return kept


def analyse(learning_rates: np.ndarray, losses: np.ndarray, label: str = "lr finder",
            smooth_frac: float = DEFAULT_SMOOTH_FRAC, min_log_sep: float = 0.0) -> FinderResult:
    """Smooth, differentiate and find the minima of one LR-finder curve."""
    if not 0.0 <= smooth_frac < 1.0:
        raise UserError(f"--smooth-frac must be in [0, 1) (got {smooth_frac})")
    if min_log_sep < 0.0:
        raise UserError(f"--min-log-sep must be >= 0 (got {min_log_sep})")
    learning_rates = np.asarray(learning_rates, dtype=float).ravel()
    losses = np.asarray(losses, dtype=float).ravel()
    check_arrays(learning_rates, losses, label)

    order = np.argsort(learning_rates, kind="stable")
    learning_rates, losses = learning_rates[order], losses[order]
    non_finite = np.flatnonzero(~np.isfinite(losses))
    dropped = 0
    if non_finite.size:  # a diverged run: keep what came before the first NaN/inf
        dropped = losses.size - int(non_finite[0])
        learning_rates, losses = learning_rates[: non_finite[0]], losses[: non_finite[0]]
        if losses.size < MIN_POINTS:
            raise UserError(f"{label}: fewer than {MIN_POINTS} finite losses before the first NaN/inf")

    window = max(1, int(round(smooth_frac * losses.size)))
    smoothed = moving_average(losses, window)
    log_lr = np.log10(learning_rates)
    if np.unique(log_lr).size < 2:
        raise UserError(f"{label}: every learning rate is the same; nothing to differentiate")
    log_lr_unique, first = np.unique(log_lr, return_index=True)
    slope_unique = np.gradient(smoothed[first], log_lr_unique)
    slope = np.interp(log_lr, log_lr_unique, slope_unique)

    # Within half a window of either end the average has fewer points and is noisier: leave those out.
    half = window // 2
    inner = slice(half, losses.size - half) if losses.size - 2 * half >= MIN_POINTS else slice(0, losses.size)
    noise = slope_noise(losses, window, float(np.median(np.diff(log_lr_unique))))
    offset = inner.start or 0
    lowest = offset + int(np.argmin(smoothed[inner]))
    steepest = offset + int(np.argmin(slope[inner]))
    return FinderResult(
        label=label,
        learning_rates=learning_rates,
        losses=losses,
        smoothed=smoothed,
        slope=slope,
        minima=find_minima(log_lr[inner], smoothed[inner], slope[inner], min_log_sep, noise),
        steepest_lr=float(learning_rates[steepest]),
        absolute_min_lr=float(learning_rates[lowest]),
        absolute_min_loss=float(smoothed[lowest]),
        dropped_points=dropped,
    )


def analyse_file(path: str | Path, smooth_frac: float = DEFAULT_SMOOTH_FRAC, min_log_sep: float = 0.0) -> FinderResult:
    learning_rates, losses = load_finder_file(path)
    return analyse(learning_rates, losses, label=Path(path).stem, smooth_frac=smooth_frac, min_log_sep=min_log_sep)


def format_report(result: FinderResult) -> str:
    lines = [f"{result.label}: {result.learning_rates.size} points"
             + (f" ({result.dropped_points} dropped after the loss diverged)" if result.dropped_points else "")]
    if result.minima:
        for number, minimum in enumerate(result.minima, 1):
            lines.append(
                f"  minimum {number}: lr {minimum.lr:.3e}  loss {minimum.loss:.4f}  suggested lr {minimum.suggested_lr:.3e}"
            )
    else:
        lines.append("  no local minimum (the slope never turns from negative to positive)")
    lines.append(f"  steepest descent: lr {result.steepest_lr:.3e}")
    lines.append(f"  absolute minimum: lr {result.absolute_min_lr:.3e}  loss {result.absolute_min_loss:.4f}")
    return "\n".join(lines)


def plot(results: list[FinderResult], output: str | Path) -> None:
    """Every file's raw and smoothed loss on one log-LR axis, minima and suggestions marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(8, 5))
    for result in results:
        (line,) = axes.plot(result.learning_rates, result.smoothed, label=result.label)
        axes.plot(result.learning_rates, result.losses, color=line.get_color(), alpha=0.25, linewidth=0.8)
        for minimum in result.minima:
            axes.plot([minimum.lr], [minimum.loss], "o", color=line.get_color())
            axes.axvline(minimum.suggested_lr, color=line.get_color(), linestyle=":", linewidth=1)
    axes.set_xscale("log")
    axes.set_xlabel("learning rate")
    axes.set_ylabel("loss")
    axes.set_title("LR finder (dots: minima; dotted: suggested LR = minimum / 10)")
    axes.legend()
    figure.tight_layout()
    figure.savefig(output, dpi=120)
    plt.close(figure)
