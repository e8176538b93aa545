"""`mammography data preview`: montage plus 16-bit PNGs of exactly the preprocessed arrays,
and with --overlay what preprocessing decided drawn on the decoded images."""

import numpy as np
import pytest
from PIL import Image

from tests.helpers import child_env, write_film_archive

pytestmark = pytest.mark.slow


def test_preview_writes_the_arrays_training_reads(cli, synthetic_dataset, cache_dir, tmp_path):
    out = tmp_path / "preview"
    proc = cli("data", "preview", "--csv", synthetic_dataset / "classificacao.csv",
               "--img-size", "64x32", "--limit", "5", "--out", out,
               env=child_env(MAMMOGRAPHY_CACHE_DIR=str(cache_dir)))
    assert proc.returncode == 0, proc.stderr
    assert (out / "montage.png").is_file()
    pngs = sorted((out / "images").glob("*.png"))
    assert len(pngs) == 5
    from mammography.data.cache import ImageCache
    from mammography.data.preprocess import PreprocessSettings

    cache = ImageCache(PreprocessSettings.for_size("64x32"), cache_dir, "disk")
    accession, stem = pngs[0].stem.split("_", 1)
    source = synthetic_dataset / "archive" / accession / f"{stem}.dcm"
    with Image.open(pngs[0]) as picture:
        assert picture.mode.startswith("I;16") and picture.size == (32, 64)
        np.testing.assert_array_equal(np.asarray(picture), cache.read(source))
    again = cli("data", "preview", "--csv", synthetic_dataset / "classificacao.csv",
                "--out", out, env=child_env(MAMMOGRAPHY_CACHE_DIR=str(cache_dir)))
    assert again.returncode == 2 and "already holds files" in again.stderr


def test_overlay_draws_the_mask_the_crop_and_the_blanked_objects(cli, cache_dir, tmp_path):
    films = write_film_archive(tmp_path / "films")
    out = tmp_path / "preview"
    proc = cli("data", "preview", "--csv", films / "classificacao.csv", "--img-size",
               "128x64", "--overlay", "--out", out,
               env=child_env(MAMMOGRAPHY_CACHE_DIR=str(cache_dir)))
    assert proc.returncode == 0, proc.stderr
    assert (out / "overlay_montage.png").is_file() and "Overlays" in proc.stdout
    pictures = sorted((out / "overlay").glob("*.png"))
    assert [p.name for p in pictures] == [p.name for p in sorted((out / "images").glob("*"))]
    from mammography.data.overlay import BLANK_COLOUR, BOX_COLOUR, BREAST_COLOUR

    for path in pictures:
        with Image.open(path) as picture:
            assert picture.mode == "RGB" and max(picture.size) <= 768
            pixels = np.asarray(picture).reshape(-1, 3)
        colours = {tuple(int(v) for v in p) for p in np.unique(pixels, axis=0)}
        # The breast outline, the crop box, and a marker or label blanked out.
        assert {BREAST_COLOUR, BOX_COLOUR, BLANK_COLOUR} <= colours


def test_without_out_each_preview_gets_a_new_folder_under_outputs(cli, synthetic_dataset,
                                                                   cache_dir, tmp_path):
    args = ("data", "preview", "--csv", synthetic_dataset / "classificacao.csv",
            "--img-size", "32", "--limit", "2")
    env = child_env(MAMMOGRAPHY_CACHE_DIR=str(cache_dir))
    work = tmp_path / "work"
    work.mkdir()
    for _ in range(2):
        proc = cli(*args, cwd=work, env=env)
        assert proc.returncode == 0, proc.stderr
    root = work / "outputs" / "preview"
    assert sorted(p.name for p in root.iterdir()) == ["preview_1", "preview_2"]
    assert len(list((root / "preview_2" / "images").glob("*.png"))) == 2
    assert sorted(p.name for p in work.iterdir()) == ["outputs"]  # nothing else written
