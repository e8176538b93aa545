"""The decode-once cache: integrity checks, regeneration, concurrency, memory mode."""

import multiprocessing as mp
from pathlib import Path

import numpy as np
import pytest

from mammography.data.cache import (
    CacheEntryError,
    ImageCache,
    decode_entry,
    encode_entry,
)
from mammography.data.file_identity import file_identity
from mammography.data.preprocess import PreprocessSettings
from mammography.data.synthetic import synthesize_mammogram, write_mammogram_dicom
from mammography.record.reporter import CollectingReporter

SETTINGS = PreprocessSettings(img_size=64)


@pytest.fixture(scope="module")
def dicoms(tmp_path_factory):
    root = tmp_path_factory.mktemp("dicoms")
    rng = np.random.default_rng(0)
    paths = []
    for i in range(6):
        image = synthesize_mammogram(rng, 1 + i % 4, (160, 128), "CC", "L" if i % 2 else "R")
        path = root / f"img{i}.dcm"
        write_mammogram_dicom(path, image, patient_id=f"P{i}", accession=f"A{i}", view="CC",
                              laterality="L" if i % 2 else "R", seed_uid_suffix=str(i))
        paths.append(path)
    return paths


def test_entry_round_trip_and_damage_detection():
    array = (np.arange(64 * 48) % 65535).astype(np.uint16).reshape(64, 48)
    data = encode_entry(array)
    assert np.array_equal(decode_entry(data), array)
    with pytest.raises(CacheEntryError, match="truncated"):
        decode_entry(data[:-10])
    flipped = bytearray(data)
    flipped[-1] ^= 0xFF
    with pytest.raises(CacheEntryError, match="checksum"):
        decode_entry(bytes(flipped))
    with pytest.raises(CacheEntryError):
        decode_entry(b"garbage")


def test_build_then_reuse(dicoms, tmp_path):
    cache = ImageCache(SETTINGS, tmp_path)
    first = cache.build(dicoms, workers=2, progress=False)
    assert (first.built, first.reused, first.failed) == (6, 0, {})
    second = cache.build(dicoms, workers=2, progress=False)
    assert (second.built, second.reused) == (0, 6)
    arr = cache.load(dicoms[0])
    assert arr.shape == (64, 64) and arr.dtype == np.uint16 and arr.max() > 0


def test_truncated_entry_is_detected_warned_and_rebuilt_identically(dicoms, tmp_path):
    cache = ImageCache(SETTINGS, tmp_path)
    cache.build(dicoms, workers=1, progress=False)
    entry = cache.entry_path(dicoms[2])
    original = entry.read_bytes()
    entry.write_bytes(original[: len(original) // 2])
    out = CollectingReporter()
    lines = out.lines
    report = cache.build(dicoms, workers=1, out=out, progress=False)
    assert report.regenerated == 1 and report.reused == 5
    assert "WARNING: Disk cache truncation detected for 1 samples - regenerating" in lines
    assert any(line.startswith("Cache rebuild complete (took") for line in lines)
    assert entry.read_bytes() == original


def test_damaged_entry_met_while_loading_is_repaired(dicoms, tmp_path):
    cache = ImageCache(SETTINGS, tmp_path)
    expected = cache.load(dicoms[1]).copy()
    cache.entry_path(dicoms[1]).write_bytes(b"MGCACHE1 broken")
    out = CollectingReporter()
    assert np.array_equal(cache.load(dicoms[1], out=out), expected)
    assert "Disk cache truncation detected" in out.warnings[0]


def test_changed_source_file_gets_a_new_entry(dicoms, tmp_path):
    cache = ImageCache(SETTINGS, tmp_path)
    before = cache.entry_path(dicoms[0])
    other = PreprocessSettings(img_size=32)
    assert ImageCache(other, tmp_path).entry_path(dicoms[0]).parent.parent != before.parent.parent
    copy = tmp_path / "copy.dcm"
    copy.write_bytes(dicoms[0].read_bytes())
    assert cache.entry_path(copy) != before


def test_undecodable_files_are_reported_not_raised(dicoms, tmp_path):
    bad = tmp_path / "bad.dcm"
    bad.write_text("not dicom")
    report = ImageCache(SETTINGS, tmp_path).build([dicoms[0], bad], workers=1, progress=False)
    assert report.built == 1 and str(bad) in report.failed


def _build(args):
    root, paths = args
    report = ImageCache(SETTINGS, Path(root)).build([Path(p) for p in paths], workers=1,
                                                    progress=False)
    return report.failed


def test_two_processes_building_one_cache(dicoms, tmp_path):
    with mp.get_context("spawn").Pool(2) as pool:
        failures = pool.map(_build, [(str(tmp_path), [str(p) for p in dicoms])] * 2)
    assert failures == [{}, {}]
    cache = ImageCache(SETTINGS, tmp_path)
    assert cache.build(dicoms, progress=False).reused == 6
    assert not list(tmp_path.rglob(".tmp-*"))


def test_memory_mode_keeps_arrays_without_writing(dicoms, tmp_path):
    cache = ImageCache(SETTINGS, tmp_path, mode="memory")
    report = cache.build(dicoms, workers=2, progress=False)
    assert report.built == 6
    assert cache.read(dicoms[3]) is not None
    assert not (tmp_path / "images").exists()


# -- the lazy check a run makes at start-up (prepare_data) ----------------------------


def test_lazy_build_trusts_entries_of_the_right_size_without_reading_them(dicoms, tmp_path,
                                                                         monkeypatch):
    cache = ImageCache(SETTINGS, tmp_path)
    cache.build(dicoms, workers=1, progress=False)

    def no_reading(self, source):
        raise AssertionError("a lazy build must not read entries")

    monkeypatch.setattr(ImageCache, "read", no_reading)
    report = cache.build(dicoms, workers=1, progress=False, lazy=True)
    assert (report.reused, report.built, report.regenerated) == (6, 0, 0)
    stats = [file_identity(p) for p in dicoms]
    assert cache.build(dicoms, workers=1, progress=False, lazy=True, stats=stats).reused == 6


def test_lazy_build_rebuilds_a_truncated_entry_with_the_warning(dicoms, tmp_path):
    cache = ImageCache(SETTINGS, tmp_path)
    cache.build(dicoms, workers=1, progress=False)
    entry = cache.entry_path(dicoms[3])
    original = entry.read_bytes()
    entry.write_bytes(original[:-100])
    out = CollectingReporter()
    report = cache.build(dicoms, workers=1, out=out, progress=False, lazy=True)
    assert (report.reused, report.regenerated) == (5, 1)
    assert "WARNING: Disk cache truncation detected for 1 samples - regenerating" in out.lines
    assert entry.read_bytes() == original


def test_lazy_build_leaves_a_corrupt_entry_to_its_first_read(dicoms, tmp_path, capsys):
    from mammography.data.dataset import CachedImageDataset

    cache = ImageCache(SETTINGS, tmp_path)
    cache.build(dicoms, workers=1, progress=False)
    entry = cache.entry_path(dicoms[2])
    original = entry.read_bytes()
    damaged = bytearray(original)
    damaged[-7] ^= 0xFF  # same size: only the CRC can tell
    entry.write_bytes(bytes(damaged))
    fresh = ImageCache(SETTINGS, tmp_path)  # a new run: nothing verified yet
    report = fresh.build(dicoms, workers=1, progress=False, lazy=True)
    assert report.reused == 6 and report.regenerated == 0
    image, *_ = CachedImageDataset(dicoms, [0] * 6, fresh)[2]
    assert "WARNING: Disk cache truncation detected for 1 samples - regenerating" in \
        capsys.readouterr().err
    assert np.array_equal(image[0].numpy(), decode_entry(original))
    assert entry.read_bytes() == original


def test_lazy_build_decodes_a_source_that_changed(dicoms, tmp_path):
    import os
    import shutil

    source = tmp_path / "changing.dcm"
    shutil.copy(dicoms[0], source)
    cache = ImageCache(SETTINGS, tmp_path)
    assert cache.build([source], workers=1, progress=False, lazy=True).built == 1
    shutil.copy(dicoms[1], source)  # other pixels, the same size
    stat = source.stat()
    os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    report = cache.build([source], workers=1, progress=False, lazy=True)
    assert (report.built, report.reused) == (1, 0)
    assert np.array_equal(cache.load(source), ImageCache(SETTINGS, tmp_path / "other")
                          .load(dicoms[1]))


# -- data check's decode check (ImageCache.verify) ------------------------------------


def _bad_files(folder: Path) -> dict[str, Path]:
    """One file of each kind a decode must refuse, and good ones in each syntax."""
    import pydicom
    from pydicom.encaps import encapsulate, generate_frames

    from tests.reliability.common import rle_panic, small_mammogram, to_mpeg2, truncate_pixels

    def mammogram(name: str, compression: str = "none", shape=(320, 256)) -> Path:
        return small_mammogram(folder / name, compression=compression, shape=shape)

    files = {"native": mammogram("native.dcm"), "rle": mammogram("rle.dcm", "rle"),
             "j2k": mammogram("j2k.dcm", "j2k")}
    files["truncated"] = truncate_pixels(mammogram("truncated.dcm"), 5000)
    j2k_cut = mammogram("j2k_cut.dcm", "j2k")
    ds = pydicom.dcmread(j2k_cut)
    codestream = next(generate_frames(ds.PixelData, number_of_frames=1))
    ds.PixelData = encapsulate([codestream[: len(codestream) * 2 // 3]])  # its finest detail
    ds.save_as(j2k_cut)
    files["j2k_cut"] = j2k_cut
    blank = mammogram("blank.dcm")
    ds = pydicom.dcmread(blank)
    ds.PixelData = np.zeros((ds.Rows, ds.Columns), np.uint16).tobytes()
    ds.save_as(blank)
    files["blank"] = blank
    saturated = mammogram("saturated.dcm")
    ds = pydicom.dcmread(saturated)
    ds.PixelData = np.full((ds.Rows, ds.Columns), 4095, np.uint16).tobytes()
    ds.save_as(saturated)
    files["saturated"] = saturated
    files["mpeg2"] = to_mpeg2(mammogram("mpeg2.dcm"))
    garbage = folder / "garbage.dcm"
    garbage.write_bytes(b"\0" * 128 + b"DICM" + bytes(range(256)) * 8)
    files["garbage"] = garbage
    panic = rle_panic(folder / "panic.dcm")
    if panic is not None:
        files["panic"] = panic
    return files


@pytest.mark.parametrize("size", [512, 64])
def test_the_cheap_decode_check_refuses_exactly_what_decoding_for_training_does(tmp_path,
                                                                              size):
    from mammography.data.dicom.decode import DicomReadError
    from mammography.data.preprocess import load_preprocessed

    files = _bad_files(tmp_path)
    settings = PreprocessSettings.for_size(size)
    expected = {}
    for path in files.values():
        try:
            load_preprocessed(path, settings)
        except DicomReadError as exc:
            expected[str(path)] = exc.reason
    report = ImageCache(settings, tmp_path / "cache", "off").verify(list(files.values()),
                                                                   workers=1, progress=False)
    assert report.failed == expected
    assert report.built == len(files) - len(expected) and report.reused == 0
    refused = {name for name, path in files.items() if str(path) in expected}
    assert {"truncated", "blank", "saturated", "mpeg2", "garbage"} <= refused
    assert not {"native", "rle", "j2k"} & refused
    if size == 512:  # the whole codestream is needed, so its end is missed
        assert "j2k_cut" in refused
    pooled = ImageCache(settings, tmp_path / "cache", "off").verify(list(files.values()),
                                                                   workers=2, progress=False)
    assert pooled.failed == expected


def test_the_decode_check_takes_cached_images_as_decoded(dicoms, tmp_path, monkeypatch):
    import mammography.data.preprocess as preprocess

    cache = ImageCache(SETTINGS, tmp_path)
    cache.build(dicoms[:4], workers=1, progress=False)
    checked = []
    real = preprocess.check_preprocessed_with_info
    monkeypatch.setattr(preprocess, "check_preprocessed_with_info",
                        lambda path, settings: checked.append(Path(path)) or real(path, settings))
    entry = cache.entry_path(dicoms[3])
    entry.write_bytes(entry.read_bytes()[:50])  # damaged: the file is decoded again
    report = cache.verify(dicoms, workers=1, progress=False)
    assert (report.reused, report.built, report.failed) == (3, 3, {})
    assert checked == dicoms[3:]
    assert entry.stat().st_size == 50  # a check stores nothing
    # Every image's decisions come back: read from the cache's records, or decoded.
    assert set(report.info) == {str(p) for p in dicoms}


def test_the_cache_keeps_what_preprocessing_decided(dicoms, tmp_path):
    from mammography.data.preprocess import load_preprocessed_with_info

    cache = ImageCache(SETTINGS, tmp_path)
    report = cache.build(dicoms[:3], workers=2, progress=False)
    for path in dicoms[:3]:
        _, _, info = load_preprocessed_with_info(path, SETTINGS)
        assert cache.read_info(path) == report.info[str(path)] == info
        assert info["mask_box"] and 0.05 < info["mask_area_fraction"] < 0.95
        assert 0 < info["breast_share"] <= 1 and info["segmentation_problems"] == []
    assert cache.read_info(dicoms[4]) is None  # never built
    # An entry without its record: a check decodes it again for the record.
    record = Path(str(cache.entry_path(dicoms[0]))[:-4] + ".json")
    record.unlink()
    assert cache.read_info(dicoms[0]) is None
    report = cache.verify(dicoms[:3], workers=1, progress=False)
    assert (report.reused, report.built) == (2, 1) and len(report.info) == 3
    record.write_text("{not json")  # unreadable: the same
    assert cache.read_info(dicoms[0]) is None
    # load() of a missing entry writes both; memory mode keeps the record too.
    cache.entry_path(dicoms[0]).unlink()
    cache.load(dicoms[0])
    assert cache.read_info(dicoms[0]) == report.info[str(dicoms[0])]
    memory = ImageCache(SETTINGS, tmp_path / "m", "memory")
    memory.build(dicoms[:2], workers=1, progress=False)
    assert memory.read_info(dicoms[1]) == report.info[str(dicoms[1])]
    assert not (tmp_path / "m").exists()


def test_a_cache_that_cannot_be_written_is_a_fault_not_a_failure(dicoms, tmp_path):
    """Issue 23 (4): an OSError from the cache folder is ``cache.fault`` (path and
    cause), never a failed image; what is already there is still read."""
    blocker = tmp_path / "blocked"
    blocker.write_text("a file where the cache root belongs")
    cache = ImageCache(SETTINGS, blocker)
    report = cache.build(dicoms, workers=1, progress=False, lazy=True)
    assert report.failed == {} and report.built == len(dicoms)
    assert cache.fault and str(blocker) in cache.fault and "Not a directory" in cache.fault
    assert report.as_dict()["fault"] == cache.fault
    assert cache.load(dicoms[0]).shape == SETTINGS.shape  # decoded in memory


def test_an_unreadable_entry_is_a_miss(dicoms, tmp_path):
    cache = ImageCache(SETTINGS, tmp_path)
    cache.build(dicoms[:1], workers=1, progress=False)
    entry = cache.entry_path(dicoms[0])
    entry.unlink()
    entry.mkdir()  # reading it: IsADirectoryError, the cache's fault
    assert cache.read(dicoms[0]) is None and "Is a directory" in cache.fault


def test_a_cluster_node_writes_the_local_bytes_under_the_drivers_key(dicoms, tmp_path):
    """What a node's job (data/cluster/) writes equals a local build, keyed with the
    driver's device number, and a redone shard keeps what its first attempt wrote."""
    from mammography.data.cache import _ClusterBuildJob

    local = ImageCache(SETTINGS, tmp_path / "local")
    local.build(dicoms[:2], workers=1, progress=False)
    job = _ClusterBuildJob(SETTINGS, tmp_path / "node")
    node = ImageCache(SETTINGS, tmp_path / "node")
    for path in dicoms[:2]:
        identity = file_identity(path)
        source, array, error, info, fault = job((identity.path, identity.device))
        assert (source, array, error, fault) == (identity.path, None, None, None)
        assert info is not None  # decoded now
        for entry in (local.entry_path(path), node.entry_path(path)):
            assert entry.exists() and Path(str(entry)[:-4] + ".json").exists()
        assert node.entry_path(path).read_bytes() == local.entry_path(path).read_bytes()
        # A retried shard: the entry and its record are there, nothing is decoded again.
        assert job((identity.path, identity.device))[3] is None
    # Another device number (the node's own mount of the share): the driver's key anyway.
    identity = file_identity(dicoms[2])
    job((identity.path, identity.device + 1))
    assert not node.entry_path(dicoms[2]).exists()
    assert Path(node._entry_file(identity.path, identity._replace(device=identity.device + 1))
                ).exists()
