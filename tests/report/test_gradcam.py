"""Grad-CAM montage: relevance inside the breast only, the probability named, a colour bar."""

import numpy as np
from PIL import Image

from mammography.report.gradcam import breast_region, masked_cam, save_montage, title_for


def breast_image() -> np.ndarray:
    """A bright half-disc against the chest wall (left), black background and padding."""
    yy, xx = np.mgrid[0:64, 0:48]
    image = np.zeros((64, 48), dtype=np.float32)
    inside = (yy - 32) ** 2 + xx ** 2 < 28 ** 2
    image[inside] = 0.4 + 0.3 * np.random.default_rng(0).random(inside.sum())
    return image


def test_relevance_outside_the_breast_is_dropped_and_the_peak_inside_is_one():
    image = breast_image()
    mask = breast_region(image)
    assert mask[32, 5] and not mask[5, 45] and not mask[60, 40]
    cam = np.zeros_like(image)
    cam[5, 45] = 1.0  # the raw map peaks on the background, as coarse maps do
    cam[32, 10] = 0.25
    shown = masked_cam(cam, mask)
    assert shown[5, 45] == 0.0 and shown[32, 10] == 1.0 and shown.max() == 1.0


def test_the_panel_title_names_the_probability_of_the_call():
    assert title_for(1, np.array([0.02, 0.95, 0.02, 0.01])) == \
        "true B · predicted B\nP(B) = 0.95"


def test_montage_has_a_colour_bar_panel(tmp_path):
    image = breast_image()
    samples = [{"image": image, "cam": np.linspace(0, 1, image.size).reshape(image.shape),
                "title": title_for(c, np.eye(4)[c])} for c in range(4)]
    path = save_montage(samples, tmp_path / "gradcam.png", "Grad-CAM\nmodel demo/results_1")
    with Image.open(path) as png:
        array = np.asarray(png.convert("RGB"))
    # The colour bar (inferno: black through purple and orange to pale yellow) at the right.
    right = array[:, int(array.shape[1] * 0.9):]
    assert (right.astype(int).std(axis=0) > 40).any()
