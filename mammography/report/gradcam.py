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


#: Perceptually uniform, and dark-to-bright so "more" reads as "more" in grey print.
CAM_COLORMAP = "inferno"
#: Opacity of the strongest relevance; weak relevance fades to transparent.
CAM_MAX_ALPHA = 0.7


def breast_region(image: np.ndarray) -> np.ndarray:
    """The breast in a preprocessed image in [0, 1] (background and padding excluded),
    found as the preprocessing finds it (``data.segment``)."""
    from mammography.data.segment import segment_breast

    mask = segment_breast(np.asarray(image, dtype=np.float32)).breast
    return mask if mask.any() else np.ones(image.shape, dtype=bool)


def masked_cam(cam: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The CAM inside the breast only, rescaled so its peak there is 1.

    A network with a coarse last feature map (4x4 at 128 px) spreads relevance
    over the black background too; outside the breast it means nothing.
    """
    inside = np.where(mask, cam, 0.0)
    peak = float(inside.max())
    return inside / peak if peak > 0 else inside


def save_montage(samples: list[dict[str, Any]], path: Path, title: str = "Grad-CAM") -> Path:
    """Each sample: ``image`` (H×W in [0,1]), ``cam`` (H×W or None), ``title``.

    The CAM is shown inside the breast only, in a perceptual colour map whose
    opacity follows the relevance, with one colour bar for all panels.
    """
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

    n = max(len(samples), 1)
    fig = Figure(figsize=(3.0 * n + 1.2, 4.2))
    FigureCanvasAgg(fig)
    cmap = colormaps[CAM_COLORMAP]
    grid = fig.add_gridspec(1, n + 1, width_ratios=[1] * n + [0.06], wspace=0.08)
    for i, sample in enumerate(samples):
        ax = fig.add_subplot(grid[0, i])
        image = np.asarray(sample["image"], dtype=np.float32)
        ax.imshow(image, cmap="gray", vmin=0, vmax=1)
        if sample.get("cam") is not None:
            cam = masked_cam(np.asarray(sample["cam"], dtype=np.float32), breast_region(image))
            overlay = cmap(cam)
            overlay[..., 3] = CAM_MAX_ALPHA * cam
            ax.imshow(overlay)
        ax.set_title(sample["title"], fontsize=9)
        ax.axis("off")
    bar = fig.colorbar(ScalarMappable(Normalize(0, 1), cmap), cax=fig.add_subplot(grid[0, n]))
    bar.set_label("Grad-CAM relevance for the predicted class\n(per image, 1 = its peak "
                  "inside the breast)", fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.subplots_adjust(left=0.02, right=0.9, top=0.78, bottom=0.03)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path


def title_for(true_cls: int, probs: np.ndarray) -> str:
    """``true B · predicted B`` over ``P(B) = 0.95`` (the model's probability of its call)."""
    pred = int(probs.argmax())
    return (f"true {CLASS_NAMES[true_cls]} · predicted {CLASS_NAMES[pred]}\n"
            f"P({CLASS_NAMES[pred]}) = {probs[pred]:.2f}")
