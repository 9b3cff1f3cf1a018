"""PNG plots for reports (matplotlib, headless)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from csrm.base.io import atomic_path  # noqa: E402
from csrm.base.metrics import ECE_BINS, expected_calibration_error, reliability_curve  # noqa: E402


def reliability_figure(curves: Mapping[str, tuple[Sequence[int], Sequence[float]]],
                       title: str = "Reliability (positive = violation)", n_bins: int = ECE_BINS):
    """The reliability diagram as a matplotlib figure: above, one line per named (labels, p_violation) set
    (ECE in the legend) with each bin's item count written beside its point; below, the bin counts as bars, so
    a bin holding a handful of items is seen for what it is."""
    fig, (ax, hist) = plt.subplots(2, 1, figsize=(5, 6.2), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=1, label="perfect")
    width = 1.0 / n_bins / max(1, len(curves))
    for index, (name, (labels, probs)) in enumerate(curves.items()):
        conf, freq, count = reliability_curve(labels, probs, n_bins=n_bins)
        line = ax.plot(conf, freq, marker="o",
                       label=f"{name} (ECE {expected_calibration_error(labels, probs, n_bins=n_bins):.3f})")[0]
        for x, y, n in zip(conf, freq, count, strict=True):
            ax.annotate(f"n={n}", (x, y), textcoords="offset points", xytext=(4, -10 if index % 2 else 5), fontsize=6,
                        color=line.get_color())
        bins = np.minimum((np.clip(np.asarray(probs, dtype=float), 0, 1) * n_bins).astype(int), n_bins - 1)
        per_bin = np.bincount(bins, minlength=n_bins) if len(bins) else np.zeros(n_bins, dtype=int)
        hist.bar(np.arange(n_bins) / n_bins + width * (index + 0.5), per_bin, width=width, color=line.get_color(),
                 label=name)
    ax.set(ylabel="observed violation rate", xlim=(0, 1), ylim=(0, 1), title=title)
    ax.legend(loc="upper left", fontsize=8)
    hist.set(xlabel="predicted P(violation)", ylabel="items per bin", xlim=(0, 1))
    fig.tight_layout()
    return fig


def plot_reliability(path: str | Path, curves: Mapping[str, tuple[Sequence[int], Sequence[float]]],
                     title: str = "Reliability (positive = violation)") -> Path:
    """Write :func:`reliability_figure` as a PNG."""
    return _save(reliability_figure(curves, title), path)


def plot_bars(path: str | Path, values: Mapping[str, float], *, ylabel: str, title: str,
              xlim: tuple[float, float] = (0, 1)) -> Path:
    """Horizontal bar chart (e.g. per-config F1)."""
    names = list(values)
    fig, ax = plt.subplots(figsize=(6, 0.4 * len(names) + 1.2))
    ax.barh(names, [values[n] for n in names], color="#4c72b0")
    ax.set(xlabel=ylabel, title=title, xlim=xlim)
    ax.invert_yaxis()
    fig.tight_layout()
    return _save(fig, path)


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path
