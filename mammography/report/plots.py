"""Report plots for a run: training curves, confusion matrix, ROC, fold spread, embeddings.

Every function draws on its own ``matplotlib.figure.Figure`` with a
``FigureCanvasAgg`` attached and never touches ``pyplot``: no global backend
switch, no figure registry to leak, and safe in worker threads/processes while
other code (or a notebook) uses a different backend. Each writes one PNG,
creating parent folders, and returns its path.

Class inputs follow ``mammography.metrics``: indices 0..K-1 for density
A-D, not the stored labels 1-4.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from mammography.domain import CLASS_NAMES
from mammography.metrics import summarize_folds

DPI = 120
# One fixed colour per density class, the same in every plot of a report.
CLASS_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b")
TRAIN_COLOR = "#1f77b4"
VAL_COLOR = "#d62728"

# History keys, with the alternative spellings produced by flat_metrics().
_HISTORY_KEYS = {
    "train_acc": ("train_acc", "train_accuracy"),
    "val_acc": ("val_acc", "val_accuracy"),
    "val_f1": ("val_f1", "val_macro_f1"),
}


# --------------------------------------------------------------------------- helpers


def run_label(run_dir: str | Path) -> str:
    """How a figure names the run it shows: ``demo/results_3`` (its --outdir's folder
    and run), ``results_3/fold_2`` (a CV fold, an Optuna trial), or the Ray trial's
    ``<trial name>/results_1``."""
    path = Path(run_dir).resolve()
    if path.name == "results":  # a child run: <parent run>/<fold_k|trial_n>/results
        return f"{path.parent.parent.name}/{path.parent.name}"
    return f"{path.parent.name}/{path.name}"


def figure_title(what: str, *, model: str | None = None, split: str | None = None,
                 level: str | None = None) -> str:
    """``what`` over a second line naming the model (its run), the data and the level,
    so a figure lifted into a talk still says what it shows."""
    context = " · ".join(part for part in (
        f"model {model}" if model else None, split,
        f"{level} level" if level else None) if part)
    return f"{what}\n{context}" if context else what


def _new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: str | Path) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=DPI, format="png")
    return out


def _names_for(num_classes: int, class_names: Sequence[str]) -> list[str]:
    """The given names when they cover every class, else indices for the rest."""
    names = list(class_names)[:num_classes]
    return names + [str(i) for i in range(len(names), num_classes)]


def _color(index: int) -> str:
    return CLASS_COLORS[index % len(CLASS_COLORS)]


def _finite(value: Any) -> bool:
    """A plottable number: not None/NaN/inf, not a bool or a nested structure."""
    return (isinstance(value, numbers.Real) and not isinstance(value, bool)
            and math.isfinite(value))


def _epoch(row: Mapping[str, Any], index: int) -> float:
    """The row's ``epoch``, or its 1-based position when the row has none."""
    value = row.get("epoch")
    return float(value) if _finite(value) else float(index + 1)


def _series(history: Sequence[Mapping[str, Any]], key: str) -> tuple[list[float], list[float]]:
    """(epochs, values) of one history column, skipping rows where it is missing."""
    names = _HISTORY_KEYS.get(key, (key,))
    xs, ys = [], []
    for i, row in enumerate(history):
        value = next((row[n] for n in names if _finite(row.get(n))), None)
        if value is not None:
            xs.append(_epoch(row, i))
            ys.append(float(value))
    return xs, ys


def _no_data(ax: Axes, message: str = "no data") -> None:
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, color="gray")


# --------------------------------------------------------------------------- training curves


def _best_epoch(history: Sequence[Mapping[str, Any]]) -> float | None:
    """Epoch with the highest val_kappa (the model-selection criterion), first on ties."""
    xs, ys = _series(history, "val_kappa")
    if not ys:
        return None
    return xs[int(np.argmax(ys))]


def _curve_panel(
    ax: Axes,
    history: Sequence[Mapping[str, Any]],
    title: str,
    lines: Sequence[tuple[str, str, str, str]],
) -> bool:
    """Draw ``(key, label, colour, linestyle)`` lines; markers keep 1-epoch runs visible.

    Returns whether anything was drawn.
    """
    drawn = False
    for key, label, color, style in lines:
        xs, ys = _series(history, key)
        if xs:
            ax.plot(xs, ys, marker="o", markersize=3, color=color, linestyle=style, label=label)
            drawn = True
    ax.set_title(title)
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))  # no "epoch 0.96" ticks
    if drawn:
        ax.legend(fontsize="small")
    else:
        _no_data(ax)
    return drawn


def plot_train_curves(history: Sequence[Mapping[str, Any]], path: str | Path,
                      model: str | None = None) -> Path:
    """Loss, accuracy (+ val macro-F1), kappa and learning rate per epoch, best epoch marked.

    Any history column may be missing; panels without data say so. The best epoch
    is the one with the highest ``val_kappa``.
    """
    fig = _new_figure(11, 8)
    ax_loss, ax_acc, ax_kappa, ax_lr = fig.subplots(2, 2).ravel()

    panels = {}
    panels[ax_loss] = _curve_panel(ax_loss, history, "Loss", [
        ("train_loss", "train", TRAIN_COLOR, "-"),
        ("val_loss", "val", VAL_COLOR, "-"),
    ])
    panels[ax_acc] = _curve_panel(ax_acc, history, "Accuracy", [
        ("train_acc", "train acc", TRAIN_COLOR, "-"),
        ("val_acc", "val acc", VAL_COLOR, "-"),
        ("val_f1", "val macro-F1", VAL_COLOR, "--"),
    ])
    panels[ax_kappa] = _curve_panel(ax_kappa, history, "Quadratic kappa", [
        ("train_kappa", "train", TRAIN_COLOR, "-"),
        ("val_kappa", "val", VAL_COLOR, "-"),
    ])
    panels[ax_lr] = _curve_panel(ax_lr, history, "Learning rate", [("lr", "lr", "#555555", "-")])
    _, lrs = _series(history, "lr")
    # Schedules span decades (warmup, cosine to ~0): log scale when it is meaningful.
    if lrs and min(lrs) > 0 and max(lrs) / min(lrs) > 10:
        ax_lr.set_yscale("log")

    epochs = [_epoch(row, i) for i, row in enumerate(history)]
    if epochs:
        # Same epoch axis on every panel, at least one epoch wide: a 1-epoch run
        # otherwise gets fractional ticks and empty panels a 0..1 axis.
        pad = max(0.5, 0.03 * (max(epochs) - min(epochs)))
        for ax in panels:
            ax.set_xlim(min(epochs) - pad, max(epochs) + pad)

    best = _best_epoch(history)
    if best is not None:
        for ax in (ax for ax, drawn in panels.items() if drawn):
            ax.axvline(best, color="gray", linestyle=":", linewidth=1)
        fig.suptitle(figure_title(f"Training curves (best epoch {best:g} by val kappa)",
                                  model=model, split="train and validation splits",
                                  level="image"))
    else:
        fig.suptitle(figure_title("Training curves", model=model,
                                  split="train and validation splits", level="image"))
    fig.tight_layout()
    return _save(fig, path)


# --------------------------------------------------------------------------- confusion matrix


def plot_confusion_matrix(
    cm: Any,
    path: str | Path,
    class_names: Sequence[str] = CLASS_NAMES,
    normalize: bool = True,
    title: str = "Confusion matrix",
) -> Path:
    """Heatmap of a K x K confusion matrix (rows = true), each cell "count (row %)".

    ``normalize`` colours by row percentage (recall per true class), which stays
    readable when classes are imbalanced, as density classes A and D usually are;
    otherwise by raw count. Rows with no samples show a dash instead of a percentage.
    """
    counts = np.asarray(cm, dtype=float)
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1]:
        raise ValueError(f"confusion matrix must be square, got shape {counts.shape}")
    k = counts.shape[0]
    names = _names_for(k, class_names)
    row_sums = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, row_sums, out=np.zeros_like(counts), where=row_sums > 0)
    shown = share if normalize else counts

    fig = _new_figure(1.2 * k + 2.5, 1.1 * k + 1.8)
    ax = fig.add_subplot()
    vmax = 1.0 if normalize else max(float(counts.max()), 1.0)
    image = ax.imshow(shown, cmap="Blues", vmin=0.0, vmax=vmax)
    fig.colorbar(image, ax=ax, label="row fraction" if normalize else "count")
    for i in range(k):
        for j in range(k):
            pct = f"{100 * share[i, j]:.1f}%" if row_sums[i, 0] > 0 else "-"
            # White text on dark cells, dark on light ones.
            color = "white" if shown[i, j] > 0.6 * vmax else "black"
            ax.text(j, i, f"{int(round(counts[i, j]))}\n({pct})",
                    ha="center", va="center", color=color, fontsize=9)
    ax.set_xticks(range(k), names)
    ax.set_yticks(range(k), names)
    ax.set_xlabel("predicted density")
    ax.set_ylabel("true density")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


# --------------------------------------------------------------------------- ROC


def plot_roc_curves(
    y_true: Any,
    probs: Any,
    path: str | Path,
    class_names: Sequence[str] = CLASS_NAMES,
    *,
    model: str | None = None,
    split: str | None = None,
    level: str = "image",
) -> Path:
    """One-vs-rest ROC per class present in ``y_true`` (AUC in the legend), chance diagonal.

    Classes without positives or without negatives have no ROC and are left out of
    the legend; if none is left the plot says so instead of failing.
    """
    from sklearn.metrics import roc_auc_score, roc_curve  # deferred: heavy import

    y = np.asarray(y_true).ravel().astype(np.int64)
    p = np.asarray(probs, dtype=float)
    k = p.shape[1]
    names = _names_for(k, class_names)

    fig = _new_figure(6, 6)
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], color="gray", linestyle="--", linewidth=1, label="chance")
    aucs = []
    for c in range(k):
        positive = y == c
        if not positive.any() or positive.all():
            continue
        fpr, tpr, _ = roc_curve(positive, p[:, c])
        value = float(roc_auc_score(positive, p[:, c]))  # same number as the metrics
        aucs.append(value)
        ax.plot(fpr, tpr, color=_color(c), label=f"{names[c]} (AUC = {value:.3f})")
    if aucs:
        ax.set_title(figure_title(f"ROC one-vs-rest (macro AUC = {np.mean(aucs):.3f})",
                                  model=model, split=split, level=level), fontsize=10)
    else:
        ax.set_title(figure_title("ROC one-vs-rest", model=model, split=split, level=level),
                     fontsize=10)
        _no_data(ax, "ROC undefined: fewer than 2 classes present")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.legend(loc="lower right", fontsize="small")
    fig.tight_layout()
    return _save(fig, path)


# --------------------------------------------------------------------------- folds


def plot_fold_metrics(
    fold_metrics: Sequence[Mapping[str, Any]],
    path: str | Path,
    metrics: Sequence[str] = ("accuracy", "kappa", "macro_f1", "auc"),
    model: str | None = None,
) -> Path:
    """Per-fold values (points, one colour per fold) over a mean bar with ± std whiskers.

    Missing/``None`` values (e.g. AUC of a fold with one class) are skipped; the
    mean and std are those of ``summarize_folds`` over the folds that have a value.
    """
    fig = _new_figure(max(5.0, 1.6 * len(metrics) + 2), 4.5)
    ax = fig.add_subplot()
    n_folds = len(fold_metrics)
    # Spread the fold points across the bar so overlapping values stay visible.
    offsets = np.linspace(-0.25, 0.25, n_folds) if n_folds > 1 else np.zeros(1)
    labelled_folds: set[int] = set()
    for x, metric in enumerate(metrics):
        points = [(f, float(row[metric])) for f, row in enumerate(fold_metrics)
                  if _finite(row.get(metric))]
        if not points:
            ax.text(x, 0.02, "n/a", ha="center", color="gray")
            continue
        summary = summarize_folds([v for _, v in points])
        ax.bar(x, summary["mean"], width=0.7, color="#dddddd", edgecolor="#888888",
               yerr=summary["std"], capsize=6)
        top = max(summary["mean"] + summary["std"], max(v for _, v in points))
        ax.text(x, top + 0.03,
                f"{summary['mean']:.3f} ± {summary['std']:.3f}", ha="center", fontsize=8)
        for f, value in points:
            label = f"fold {f + 1}" if f not in labelled_folds else None
            labelled_folds.add(f)
            ax.scatter(x + offsets[f], value, color=_color(f), zorder=3, s=25, label=label)
    ax.set_xticks(range(len(metrics)), list(metrics))
    ax.set_xlim(-0.6, len(metrics) - 0.4)
    ax.set_ylim(min(0.0, ax.get_ylim()[0]), max(1.05, ax.get_ylim()[1]))  # kappa can be < 0
    ax.set_ylabel("value")
    ax.set_title(figure_title(f"Metrics per fold (n = {n_folds}), mean ± std", model=model,
                              split="each fold's validation split", level="image"),
                 fontsize=10)
    if labelled_folds:
        ax.legend(fontsize="small", loc="lower right")
    fig.tight_layout()
    return _save(fig, path)


# --------------------------------------------------------------------------- embeddings


def plot_embeddings_2d(
    points: Any,
    labels: Any,
    path: str | Path,
    title: str = "Embeddings",
    class_names: Sequence[str] = CLASS_NAMES,
    axis_labels: tuple[str, str] = ("component 1", "component 2"),
) -> Path:
    """2-D scatter (e.g. t-SNE/UMAP/PCA output) coloured by density class, axes named.

    ``labels`` are class indices 0..K-1; values outside that range raise
    ``ValueError``: stored labels 1-4 would otherwise be silently shifted by one
    class, which is easy to miss in a scatter plot.
    """
    xy = np.asarray(points, dtype=float)
    lab = np.asarray(labels).ravel()
    if xy.ndim != 2 or xy.shape[1] != 2:
        raise ValueError(f"points must be N x 2, got shape {xy.shape}")
    if lab.size != xy.shape[0]:
        raise ValueError(f"{xy.shape[0]} points but {lab.size} labels")
    k = len(class_names)
    if lab.size and (lab.min() < 0 or lab.max() >= k):
        raise ValueError(
            f"labels must be class indices 0..{k - 1}, got [{lab.min()}, {lab.max()}] "
            "(density labels 1-4 need `- 1`)"
        )

    fig = _new_figure(6.5, 6)
    ax = fig.add_subplot()
    for c, name in enumerate(class_names):
        mask = lab == c
        if mask.any():
            ax.scatter(xy[mask, 0], xy[mask, 1], s=8, alpha=0.7, color=_color(c),
                       label=f"{name} (n = {int(mask.sum())})")
    if lab.size:
        ax.legend(title="density", fontsize="small", markerscale=2)
    else:
        _no_data(ax)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(axis_labels[0])
    ax.set_ylabel(axis_labels[1])
    fig.tight_layout()
    return _save(fig, path)


# --------------------------------------------------------------------------- evaluation


#: Reliability bins with fewer predictions than this are drawn hollow and not
#: joined: one image's 0 or 1 says nothing about calibration.
MIN_BIN_COUNT = 5


def split_bins(bins: Sequence[Mapping[str, Any]], min_count: int = MIN_BIN_COUNT
               ) -> tuple[list[Mapping[str, Any]], list[Mapping[str, Any]]]:
    """(bins joined by the reliability line, bins too sparse to join); empty bins in neither."""
    return ([b for b in bins if b["count"] >= min_count],
            [b for b in bins if 0 < b["count"] < min_count])


def plot_calibration(bins_by_level: Mapping[str, Sequence[Mapping[str, Any]]],
                     ece_by_level: Mapping[str, float], path: str | Path, *,
                     model: str | None = None, split: str | None = None,
                     min_count: int = MIN_BIN_COUNT) -> Path:
    """Reliability diagram (accuracy against mean confidence per bin, one line per level)
    above a histogram of how many predictions fall in each confidence bin.

    A bin's point is labelled with its count; bins with fewer than ``min_count``
    predictions are hollow and left out of the line.
    """
    fig = _new_figure(6.0, 7.0)
    top = fig.add_axes((0.13, 0.36, 0.82, 0.52))
    bottom = fig.add_axes((0.13, 0.07, 0.82, 0.19), sharex=top)
    top.plot([0, 1], [0, 1], color="#999999", linestyle="--", label="perfect calibration")
    width = 1.0 / max(len(next(iter(bins_by_level.values()), [])), 1)
    for i, (level, bins) in enumerate(bins_by_level.items()):
        solid, sparse = split_bins(bins, min_count)
        top.plot([b["confidence"] for b in solid], [b["accuracy"] for b in solid],
                 marker="o", color=_color(i),
                 label=f"{level} (ECE {ece_by_level.get(level, float('nan')):.3f})")
        top.scatter([b["confidence"] for b in sparse], [b["accuracy"] for b in sparse],
                    facecolors="none", edgecolors=_color(i), zorder=3)
        for b in solid + sparse:
            top.annotate(f"{b['count']}", (b["confidence"], b["accuracy"]), fontsize=7,
                         color=_color(i), textcoords="offset points", xytext=(4, -9 - 8 * i))
        share = width / max(len(bins_by_level), 1)
        bottom.bar([b["low"] + share * (i + 0.5) for b in bins], [b["count"] for b in bins],
                   width=share, color=_color(i), alpha=0.7, label=level)
    top.plot([], [], marker="o", linestyle="none", markerfacecolor="none",
             markeredgecolor="#555555", label=f"bin with < {min_count} predictions")
    top.set_xlim(0, 1)
    top.set_ylim(0, 1.02)
    top.set_ylabel("accuracy (share correct in the bin)")
    top.set_title(figure_title("Reliability of the predicted class's probability "
                               "(numbers: predictions per bin)", model=model, split=split),
                  fontsize=10)
    top.legend(fontsize="small", loc="upper left")
    bottom.set_xlabel("confidence (probability of the predicted class), 10 bins")
    bottom.set_ylabel("predictions")
    return _save(fig, path)


def plot_subgroup_kappa(rows: Sequence[Mapping[str, Any]], path: str | Path,
                        level: str = "exam", *, model: str | None = None,
                        split: str | None = None) -> Path:
    """Quadratic kappa per subgroup with its 95 % CI (groups without metrics: n only)."""
    shown = [r for r in rows if r["level"] == level]
    names = [f"{row['group_by']}: {row['group'] or '(none)'} (n={row['n']})" for row in shown]
    # Room for the longest name at ~0.075 inch per character, one row per 0.4 inch.
    label_inches = min(4.5, 0.075 * max((len(n) for n in names), default=10) + 0.3)
    fig = _new_figure(4.5 + label_inches, max(2.6, 0.4 * len(shown) + 1.6))
    ax = fig.add_subplot()
    for y, row in enumerate(shown):
        kappa = row.get("kappa")
        if not _finite(kappa):
            ax.text(0.0, y, "too few exams", va="center", ha="center", fontsize=8,
                    color="gray")
            continue
        low, high = row.get("kappa_ci_low"), row.get("kappa_ci_high")
        if _finite(low) and _finite(high):
            ax.plot([low, high], [y, y], color="#555555")
        ax.scatter([kappa], [y], color=_color(0), zorder=3)
    ax.set_yticks(range(len(shown)), names, fontsize=8)
    ax.set_xlim(-1.0, 1.0)
    ax.set_xticks([-1.0, -0.5, 0.0, 0.5, 1.0])
    ax.set_ylim(-0.8, len(shown) - 0.2)
    ax.invert_yaxis()
    ax.axvline(0, color="#dddddd")
    ax.set_xlabel("quadratic kappa (95 % CI)")
    ax.set_title(figure_title("Kappa by subgroup", model=model, split=split, level=level),
                 fontsize=10)
    fig.subplots_adjust(left=(label_inches + 0.2) / (4.5 + label_inches), right=0.96,
                        top=0.8, bottom=0.25 if len(shown) < 4 else 0.12)
    return _save(fig, path)
