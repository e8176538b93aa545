"""One bad-image rule and one cache per preprocessing, whichever command scores.

A folder of two good mammograms and one whose pixels are all zero (a
readable header, an image preprocessing refuses): the scoring path leaves
it out with a WARNING and a recorded exclusion, stops under ``--on-bad-image
error`` or past ``--max-bad-fraction``, and with ``--cache off`` finds it by
decoding once while keeping nothing, scoring exactly what the disk cache
scores.
"""

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from mammography.data.cache import ENTRY_SUFFIX
from mammography.data.unlabelled import load_unlabelled
from mammography.engine.predict.members import members_from_runs
from mammography.engine.scoring.caches import prepare_images
from mammography.engine.scoring.probabilities import score_images
from mammography.errors import DataError
from mammography.record.reporter import CollectingReporter
from tests.engine.model_runs import write_model_run

CPU = torch.device("cpu")


@dataclass
class Settings:
    """The options eval-export and predict share (``scoring.sources.ScoringSettings``)."""

    cache_dir: Path
    cache: str = "disk"
    workers: int = 1
    batch_size: int = 2
    num_workers: int = 0
    amp: bool = False
    on_bad_image: str = "skip"
    max_bad_fraction: float = 0.5


@pytest.fixture
def folder(synthetic_dataset, tmp_path):
    import pydicom

    folder = tmp_path / "images"
    folder.mkdir()
    exam = sorted((synthetic_dataset / "archive").iterdir())[0]
    for image in sorted(exam.glob("*.dcm"))[:2]:
        shutil.copyfile(image, folder / image.name)
    blank = pydicom.dcmread(folder / image.name)
    blank.PixelData = bytes(len(blank.PixelData))
    blank.save_as(folder / "blank.dcm")
    return folder


@pytest.fixture
def member(tmp_path):
    (member,) = members_from_runs([write_model_run(tmp_path / "run", img_size=48)],
                                  CollectingReporter())
    return member


def _table(folder, out, **policy):
    return load_unlabelled(None, folder, out=out, **policy)


def test_skip_leaves_the_image_out_with_a_warning_and_a_recorded_exclusion(
        folder, member, cache_dir):
    out = CollectingReporter()
    table = _table(folder, out, max_bad_fraction=0.5)
    images = prepare_images([member], table, Settings(cache_dir), out)
    assert images.table is table
    assert sorted(r.path.name for r in table.images) == sorted(
        p.name for p in folder.glob("*.dcm") if p.name != "blank.dcm")
    (excluded,) = images.excluded
    assert excluded["path"] == str(folder / "blank.dcm") and excluded["reason"]
    assert excluded in table.exclusions  # what the data manifest lists
    assert any(w.startswith("skipping undecodable image") and "blank.dcm" in w
               for w in out.warnings)
    assert [r["failed"] for r in images.reports] == [1]
    scored = score_images([member], images, Settings(cache_dir), device=CPU, out=out,
                          progress=False)
    assert scored.probs.shape == (2, 4)


def test_error_stops_at_the_undecodable_image_and_names_it(folder, member, cache_dir):
    out = CollectingReporter()
    table = _table(folder, out, max_bad_fraction=0.5)
    with pytest.raises(DataError, match=r"blank\.dcm.*--on-bad-image skip"):
        prepare_images([member], table, Settings(cache_dir, on_bad_image="error"), out)


def test_more_undecodable_images_than_max_bad_fraction_stop(folder, member, cache_dir):
    out = CollectingReporter()
    table = _table(folder, out)
    with pytest.raises(DataError, match=r"1 of 3 images \(33%\).*--max-bad-fraction 0.2"):
        prepare_images([member], table, Settings(cache_dir, max_bad_fraction=0.2), out)


def test_nothing_left_to_score_stops(folder, member, cache_dir):
    for image in folder.glob("*.dcm"):
        if image.name != "blank.dcm":
            image.unlink()
    out = CollectingReporter()
    table = _table(folder, out, max_bad_fraction=1.0)
    with pytest.raises(DataError, match=r"None of the 1 images to score could be decoded"):
        prepare_images([member], table, Settings(cache_dir, max_bad_fraction=1.0), out)


def test_cache_off_keeps_nothing_and_scores_what_the_disk_cache_scores(
        folder, member, cache_dir, tmp_path):
    out = CollectingReporter()
    off = prepare_images([member], _table(folder, out), Settings(tmp_path / "off", cache="off"),
                         out)
    assert not [p for p in (tmp_path / "off").rglob(f"*{ENTRY_SUFFIX}")]  # nothing kept
    assert [r["failed"] for r in off.reports] == [1] and len(off.excluded) == 1
    disk = prepare_images([member], _table(folder, out), Settings(cache_dir), out)
    assert [r.path for r in off.table.images] == [r.path for r in disk.table.images]
    probs = [score_images([member], images, settings, device=CPU, out=out,
                          progress=False).probs
             for images, settings in ((off, Settings(tmp_path / "off", cache="off")),
                                      (disk, Settings(cache_dir)))]
    np.testing.assert_array_equal(probs[0], probs[1])


def test_a_single_model_is_an_ensemble_of_one(folder, member, cache_dir):
    from mammography.engine.scoring.probabilities import member_probabilities

    out = CollectingReporter()
    images = prepare_images([member], _table(folder, out), Settings(cache_dir), out)
    scored = score_images([member], images, Settings(cache_dir), device=CPU, out=out,
                          progress=False)
    alone = member_probabilities(member, images.table, images.cache_of(member), batch_size=2,
                                 num_workers=0, device=CPU, amp=False, tta=False, out=out)
    np.testing.assert_array_equal(scored.probs, alone)
    assert next(member.model.parameters()).device.type == "cpu"
