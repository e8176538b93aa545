"""Grad-CAM overlays on validation images (Selvaraju et al., 2017).

Uses the model's own split into ``features`` → ``pool`` → ``classify``, so it
works for every timm CNN without hooks: the class score's gradient with
respect to the last feature map, averaged per channel, weights that map.
Transformers (token features) have no spatial map in that form and are
skipped with a note.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from mammography.domain import CLASS_NAMES


def gradcam(model: Any, x: torch.Tensor, target: int,
            embedding: torch.Tensor | None = None) -> np.ndarray | None:
    """CAM in [0, 1] at the input's size for one image ``x`` (1×C×H×W), or None.

    ``embedding`` (1×D) is the image's fused embedding for fusion models.
    """
    model.eval()
    x = x.clone().requires_grad_(True)  # builds the graph even through a frozen backbone
    with torch.enable_grad():
        features = model.features(x)
        if features.ndim != 4:
            return None
        features.retain_grad()
        logits = model.classify(model.pool(features), embedding)
        model.zero_grad(set_to_none=True)
        logits[0, target].backward()
    weights = features.grad.mean(dim=(2, 3), keepdim=True)
    cam = F.relu((weights * features).sum(dim=1, keepdim=True))
    cam = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[0, 0]
    cam = cam.detach().float().cpu().numpy()
    span = cam.max() - cam.min()
    return (cam - cam.min()) / span if span > 0 else np.zeros_like(cam)


def pick_samples(labels: np.ndarray, probs: np.ndarray) -> list[int]:
    """One validation row per true class: the most confident correct one, else any."""
    chosen = []
    predicted = probs.argmax(axis=1)
    for cls in range(probs.shape[1]):
        rows = np.flatnonzero(labels == cls)
        if rows.size == 0:
            continue
        correct = rows[predicted[rows] == cls]
        pool = correct if correct.size else rows
        chosen.append(int(pool[np.argmax(probs[pool, cls])]))
    return chosen


def save_montage(samples: list[dict[str, Any]], path: Path) -> Path:
    """Each sample: ``image`` (H×W in [0,1]), ``cam`` (H×W or None), ``title``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    n = max(len(samples), 1)
    fig = Figure(figsize=(3.2 * n, 3.6))
    FigureCanvasAgg(fig)
    for i, sample in enumerate(samples):
        ax = fig.add_subplot(1, n, i + 1)
        ax.imshow(sample["image"], cmap="gray", vmin=0, vmax=1)
        if sample.get("cam") is not None:
            ax.imshow(sample["cam"], cmap="jet", alpha=0.35, vmin=0, vmax=1)
        ax.set_title(sample["title"], fontsize=9)
        ax.axis("off")
    fig.suptitle("Grad-CAM on validation images (best model)", fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path


def title_for(true_cls: int, probs: np.ndarray) -> str:
    pred = int(probs.argmax())
    return (f"true {CLASS_NAMES[true_cls]} / pred {CLASS_NAMES[pred]} "
            f"({probs[pred]:.2f})")
