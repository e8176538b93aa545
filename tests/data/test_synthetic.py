"""Tests of the synthetic DICOM dataset generator (mammography.data.synthetic)."""

from __future__ import annotations

import csv
import hashlib
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.pixels import apply_modality_lut
from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless, RLELossless

from mammography.config.synth import SynthConfig
from mammography.data.synthetic import (
    BREAST_THRESHOLD,
    MG_FOR_PRESENTATION,
    MG_FOR_PROCESSING,
    SynthSummary,
    density_fraction,
    generate_dataset,
    run_synth,
    synthesize_mammogram,
    write_mammogram_dicom,
)
from mammography.data.synthetic import generate as synthetic_generate
from mammography.errors import ConfigError, DataError

SMALL = "128x104"
REQUIRED_TAGS = (
    "SOPClassUID", "SOPInstanceUID", "Modality", "PresentationIntentType", "PatientID",
    "PatientName", "AccessionNumber", "StudyInstanceUID", "SeriesInstanceUID", "StudyDate",
    "ViewPosition", "ImageLaterality", "Laterality", "BodyPartExamined", "Rows", "Columns",
    "SamplesPerPixel", "PhotometricInterpretation", "BitsAllocated", "BitsStored", "HighBit",
    "PixelRepresentation", "RescaleSlope", "RescaleIntercept", "WindowCenter", "WindowWidth",
    "PixelSpacing", "ImagerPixelSpacing",
)


def read_intensity(path: Path) -> tuple[np.ndarray, pydicom.Dataset]:
    """Reference reader: modality LUT, invert MONOCHROME1, scale to [0, 1]."""
    ds = pydicom.dcmread(path)
    values = np.asarray(apply_modality_lut(ds.pixel_array, ds), dtype=np.float64)
    max_value = 2 ** ds.BitsStored - 1
    if ds.PhotometricInterpretation == "MONOCHROME1":
        values = max_value - values
    return values / max_value, ds


def csv_rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def tree_hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def sample_image(seed: int = 0, shape: tuple[int, int] = (96, 80)) -> np.ndarray:
    return synthesize_mammogram(np.random.default_rng(seed), 3, shape, "MLO", "L")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[SynthSummary, list[str]]:
    out = tmp_path_factory.mktemp("synth") / "ds"
    lines: list[str] = []
    summary = generate_dataset(SynthConfig(out=out, exams=20, seed=3, size=SMALL, class5=2),
                               log=lines.append)
    return summary, lines


# --------------------------------------------------------------------------- dataset


def test_summary_and_log(dataset: tuple[SynthSummary, list[str]]) -> None:
    summary, lines = dataset
    assert summary.csv_path == summary.out / "classificacao.csv"
    assert summary.dicom_root == summary.out / "archive"
    assert summary.n_exams == 22
    assert summary.n_images == len(list(summary.dicom_root.rglob("*.dcm")))
    assert sum(summary.class_counts.values()) == 22
    assert summary.class_counts[5] == 2
    assert summary.seconds > 0
    assert any(line.startswith("Generated 22 exams") for line in lines)
    assert not [p for p in summary.out.parent.iterdir() if p.name != summary.out.name]


def test_csv_layout(dataset: tuple[SynthSummary, list[str]]) -> None:
    summary, _ = dataset
    text = summary.csv_path.read_text(encoding="utf-8")
    assert text.splitlines()[0] == "AccessionNumber,Classification,PatientID"
    assert "\r" not in text
    rows = csv_rows(summary.csv_path)
    assert len(rows) == summary.n_exams == 22
    classes = Counter(int(r["Classification"]) for r in rows)
    assert classes[5] == 2
    assert all(classes[c] >= 2 for c in (1, 2, 3, 4))  # stratified splits need it
    accessions = [r["AccessionNumber"] for r in rows]
    assert len(set(accessions)) == len(accessions)
    assert all(len(a) == 8 and a.isdigit() for a in accessions)
    per_patient = Counter(r["PatientID"] for r in rows)
    assert max(per_patient.values()) >= 2  # some patients have several exams
    assert summary.n_patients == len(per_patient)
    for row in rows:
        files = sorted(p.name for p in (summary.dicom_root / row["AccessionNumber"]).iterdir())
        assert 2 <= len(files) <= 4
        assert set(files) <= {"L_CC.dcm", "L_MLO.dcm", "R_CC.dcm", "R_MLO.dcm"}


def test_dicom_files_are_valid_and_varied(dataset: tuple[SynthSummary, list[str]]) -> None:
    summary, _ = dataset
    patient_of = {r["AccessionNumber"]: r["PatientID"] for r in csv_rows(summary.csv_path)}
    seen: defaultdict[str, set] = defaultdict(set)
    study_uids: defaultdict[str, set] = defaultdict(set)
    sop_uids = []
    for path in sorted(summary.dicom_root.rglob("*.dcm")):
        ds = pydicom.dcmread(path)
        missing = [tag for tag in REQUIRED_TAGS if tag not in ds]
        assert not missing, f"{path}: {missing}"
        laterality, view = path.stem.split("_")
        assert (ds.ImageLaterality, ds.ViewPosition) == (laterality, view)
        assert ds.AccessionNumber == path.parent.name
        assert ds.PatientID == patient_of[ds.AccessionNumber]
        assert ds.Modality == "MG" and ds.BodyPartExamined == "BREAST"
        assert ds.SOPClassUID == MG_FOR_PRESENTATION
        assert ds.PresentationIntentType == "FOR PRESENTATION"
        assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
        assert ds.BitsAllocated == 16 and ds.HighBit == ds.BitsStored - 1
        arr = ds.pixel_array
        assert arr.shape == (128, 104) and arr.dtype == np.uint16
        assert int(arr.max()) <= 2 ** ds.BitsStored - 1
        study_uids[ds.AccessionNumber].add(ds.StudyInstanceUID)
        sop_uids.append(ds.SOPInstanceUID)
        seen["photometric"].add(ds.PhotometricInterpretation)
        seen["bits"].add(ds.BitsStored)
        seen["rescale"].add((float(ds.RescaleSlope), float(ds.RescaleIntercept)))
    assert seen["photometric"] == {"MONOCHROME1", "MONOCHROME2"}
    assert seen["bits"] == {12, 14}
    assert len(seen["rescale"]) >= 2 and (1.0, 0.0) in seen["rescale"]
    assert all(len(uids) == 1 for uids in study_uids.values())  # one study per exam
    assert len(set(sop_uids)) == len(sop_uids)


def test_density_signal_survives_dicom(dataset: tuple[SynthSummary, list[str]]) -> None:
    summary, _ = dataset
    by_class: defaultdict[int, list[float]] = defaultdict(list)
    for row in csv_rows(summary.csv_path):
        for path in (summary.dicom_root / row["AccessionNumber"]).iterdir():
            image, _ = read_intensity(path)
            by_class[int(row["Classification"])].append(density_fraction(image))
    means = [np.mean(by_class[c]) for c in (1, 2, 3, 4)]
    assert means == sorted(means) and len(set(means)) == 4, means


@pytest.mark.parametrize("compression", ["none", "j2k"])
def test_same_seed_same_bytes(tmp_path: Path, compression: str) -> None:
    def make(name: str, seed: int) -> dict[str, str]:
        config = SynthConfig(out=tmp_path / name, exams=3, seed=seed, size="96x80",
                             compression=compression, class5=1)
        return tree_hashes(generate_dataset(config, log=lambda _: None).out)

    first, again, other = make("a", 11), make("b", 11), make("c", 12)
    assert first == again
    assert first != other
    assert set(first.values()).isdisjoint(other.values())


def test_refuses_non_empty_out(tmp_path: Path) -> None:
    out = tmp_path / "existing"
    out.mkdir()
    (out / "keep.txt").write_text("precious", encoding="utf-8")
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(DataError) as caught:
        generate_dataset(SynthConfig(out=out, exams=2, size="96x80"), log=lambda _: None)
    message = str(caught.value)
    assert str(out) in message and "--out" in message and "remove it" in message
    assert (out / "keep.txt").read_text(encoding="utf-8") == "precious"
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_refuses_file_as_out(tmp_path: Path) -> None:
    out = tmp_path / "afile"
    out.write_text("x", encoding="utf-8")
    with pytest.raises(DataError):
        generate_dataset(SynthConfig(out=out, exams=2, size="96x80"), log=lambda _: None)
    assert out.read_text(encoding="utf-8") == "x"


def test_empty_out_folder_is_filled(tmp_path: Path) -> None:
    out = tmp_path / "empty"
    out.mkdir()
    summary = generate_dataset(SynthConfig(out=out, exams=2, size="96x80"), log=lambda _: None)
    assert summary.csv_path.is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]


def test_interrupted_generation_leaves_nothing(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    real_write = synthetic_generate.write_mammogram_dicom
    calls = []

    def failing_write(*args, **kwargs):
        calls.append(1)
        if len(calls) > 3:
            raise KeyboardInterrupt
        return real_write(*args, **kwargs)

    # Patched where generate_dataset looks it up (the generate module).
    monkeypatch.setattr(synthetic_generate, "write_mammogram_dicom", failing_write)
    with pytest.raises(KeyboardInterrupt):
        generate_dataset(SynthConfig(out=tmp_path / "ds", exams=4, size="96x80"),
                         log=lambda _: None)
    assert list(tmp_path.iterdir()) == []  # neither the dataset nor a staging folder


def test_run_synth_prints_and_returns_ok(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    assert run_synth(SynthConfig(out=tmp_path / "ds", exams=2, size="96x80")) == 0
    assert "Generated 2 exams" in capsys.readouterr().out


def test_invalid_settings_raise_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        generate_dataset(SynthConfig(out=tmp_path / "ds", exams=0), log=lambda _: None)
    assert not (tmp_path / "ds").exists()


# --------------------------------------------------------------------------- DICOM writer


@pytest.mark.parametrize("compression, uid", [("rle", RLELossless), ("j2k", JPEG2000Lossless)])
@pytest.mark.parametrize("photometric, bits", [("MONOCHROME2", 12), ("MONOCHROME1", 14)])
def test_compression_is_lossless(tmp_path: Path, compression: str, uid: str, photometric: str,
                                 bits: int) -> None:
    image = sample_image()
    common = dict(patient_id="P0001", accession="12345678", view="MLO", laterality="L",
                  photometric=photometric, bits_stored=bits)
    plain = write_mammogram_dicom(tmp_path / "plain.dcm", image, **common)
    packed = write_mammogram_dicom(tmp_path / "packed.dcm", image, compression=compression,
                                   **common)
    ds_plain, ds_packed = pydicom.dcmread(plain), pydicom.dcmread(packed)
    assert ds_packed.file_meta.TransferSyntaxUID == uid
    max_value = 2**bits - 1
    expected = np.rint(image.astype(np.float64) * max_value)
    if photometric == "MONOCHROME1":
        expected = max_value - expected
    np.testing.assert_array_equal(ds_packed.pixel_array, ds_plain.pixel_array)
    np.testing.assert_allclose(ds_packed.pixel_array, expected, atol=1)  # ties may round apart
    assert ds_packed.SOPInstanceUID == ds_plain.SOPInstanceUID


@pytest.mark.parametrize("bits, slope, intercept",
                         [(12, 1.0, 0.0), (14, 1.0, 0.0), (14, 2.0, -1024.0), (12, 2.0, 0.0)])
def test_monochrome1_and_2_recover_same_intensities(tmp_path: Path, bits: int, slope: float,
                                                    intercept: float) -> None:
    image = sample_image(seed=5)
    recovered = {}
    for photometric in ("MONOCHROME1", "MONOCHROME2"):
        path = write_mammogram_dicom(
            tmp_path / f"{photometric}.dcm", image, patient_id="P0001", accession="12345678",
            view="MLO", laterality="L", photometric=photometric, bits_stored=bits,
            rescale_slope=slope, rescale_intercept=intercept)
        recovered[photometric], ds = read_intensity(path)
        assert ds.PhotometricInterpretation == photometric
        assert int(ds.pixel_array.max()) <= 2**bits - 1
    step = slope / (2**bits - 1)  # one stored unit
    for values in recovered.values():
        np.testing.assert_allclose(values, image, atol=step / 2 + 1e-9)
    np.testing.assert_allclose(recovered["MONOCHROME1"], recovered["MONOCHROME2"],
                               atol=step + 1e-9)


@pytest.mark.parametrize("photometric", ["MONOCHROME1", "MONOCHROME2"])
def test_window_covers_the_breast(tmp_path: Path, photometric: str) -> None:
    image = sample_image(seed=2)
    path = write_mammogram_dicom(tmp_path / "w.dcm", image, patient_id="P1", accession="1",
                                 view="CC", laterality="R", photometric=photometric,
                                 bits_stored=14, rescale_slope=2.0, rescale_intercept=-1024.0)
    ds = pydicom.dcmread(path)
    modality = np.asarray(apply_modality_lut(ds.pixel_array, ds), dtype=np.float64)
    breast = modality[image > BREAST_THRESHOLD]
    center, width = float(ds.WindowCenter), float(ds.WindowWidth)
    low, high = np.percentile(breast, [2, 98])
    assert center - width / 2 <= low and high <= center + width / 2


def test_for_processing_and_no_window(tmp_path: Path) -> None:
    path = write_mammogram_dicom(tmp_path / "p.dcm", sample_image(), patient_id="P1",
                                 accession="1", view="CC", laterality="L", for_processing=True,
                                 window=False, study_date="20200101")
    ds = pydicom.dcmread(path)
    assert ds.SOPClassUID == MG_FOR_PROCESSING == ds.file_meta.MediaStorageSOPClassUID
    assert ds.PresentationIntentType == "FOR PROCESSING"
    assert "WindowCenter" not in ds and "WindowWidth" not in ds
    assert ds.StudyDate == "20200101"


def test_uids_follow_seed_suffix(tmp_path: Path) -> None:
    kwargs = dict(patient_id="P1", accession="1", view="CC", laterality="L")
    a = pydicom.dcmread(write_mammogram_dicom(tmp_path / "a.dcm", sample_image(), **kwargs))
    b = pydicom.dcmread(write_mammogram_dicom(tmp_path / "b.dcm", sample_image(), **kwargs))
    c = pydicom.dcmread(write_mammogram_dicom(tmp_path / "c.dcm", sample_image(),
                                              seed_uid_suffix="other", **kwargs))
    assert a.SOPInstanceUID == b.SOPInstanceUID != c.SOPInstanceUID
    assert (tmp_path / "a.dcm").read_bytes() == (tmp_path / "b.dcm").read_bytes()


@pytest.mark.parametrize("kwargs", [
    {"rescale_slope": 0.5},              # stored values would overflow 12 bits
    {"rescale_intercept": 100.0},        # dark pixels would be negative
    {"photometric": "RGB"},
    {"compression": "jpeg"},
    {"view": "ML"},
])
def test_writer_rejects_bad_arguments(tmp_path: Path, kwargs: dict) -> None:
    image = sample_image()
    image[0, 0] = 0.0  # make sure the darkest value is present
    args = dict(patient_id="P1", accession="1", view="CC", laterality="L") | kwargs
    with pytest.raises(ValueError):
        write_mammogram_dicom(tmp_path / "x.dcm", image, **args)
    with pytest.raises(ValueError):
        write_mammogram_dicom(tmp_path / "y.dcm", image * 1.5, patient_id="P1",
                              accession="1", view="CC", laterality="L")


# --------------------------------------------------------------------------- anatomy


def test_density_fraction_rises_with_class() -> None:
    means = []
    for density_class in (1, 2, 3, 4):
        fractions = [
            density_fraction(synthesize_mammogram(np.random.default_rng([density_class, i]),
                                                  density_class, (160, 128),
                                                  ("CC", "MLO")[i % 2], ("L", "R")[i // 2 % 2]))
            for i in range(12)]
        means.append(float(np.mean(fractions)))
    assert means == sorted(means) and len(set(means)) == 4, means
    assert means[0] < 0.3 and means[3] > 0.7, means


@pytest.mark.parametrize("shape", [(64, 64), (320, 256), (331, 517)])
@pytest.mark.parametrize("density_class", [1, 4, 5])
def test_synthesize_range_and_type(shape: tuple[int, int], density_class: int) -> None:
    image = synthesize_mammogram(np.random.default_rng(1), density_class, shape, "MLO", "R")
    assert image.shape == shape and image.dtype == np.float32
    assert image.flags.c_contiguous
    assert float(image.min()) >= 0.0 and float(image.max()) <= 1.0


def test_same_rng_same_image() -> None:
    a = synthesize_mammogram(np.random.default_rng(9), 2, (96, 80), "CC", "L")
    b = synthesize_mammogram(np.random.default_rng(9), 2, (96, 80), "CC", "L")
    c = synthesize_mammogram(np.random.default_rng(10), 2, (96, 80), "CC", "L")
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("view", ["CC", "MLO"])
def test_chest_wall_side_follows_laterality(view: str) -> None:
    for seed in range(5):
        left = synthesize_mammogram(np.random.default_rng(seed), 2, (160, 128), view, "L")
        right = synthesize_mammogram(np.random.default_rng(seed), 2, (160, 128), view, "R")
        edge = 128 // 10
        # Left breast: chest wall (full tissue) on the left edge, nipple to the right.
        assert left[:, :edge].mean() > left[:, -edge:].mean() + 0.1
        np.testing.assert_array_equal(right, left[:, ::-1])


def test_pectoral_muscle_only_in_mlo() -> None:
    corner_mlo, corner_cc = [], []
    for seed in range(6):
        for view, store in (("MLO", corner_mlo), ("CC", corner_cc)):
            image = synthesize_mammogram(np.random.default_rng(seed), 1, (160, 128), view, "L")
            store.append(image[:12, :10].mean())  # upper chest-wall corner
    assert min(corner_mlo) > 0.5
    assert max(corner_cc) < 0.4


def test_class5_is_degraded() -> None:
    clean = synthesize_mammogram(np.random.default_rng(4), 3, (160, 128), "CC", "L")
    noisy = synthesize_mammogram(np.random.default_rng(4), 5, (160, 128), "CC", "L")
    assert np.diff(noisy, axis=1).std() > 3 * np.diff(clean, axis=1).std()


def test_synthesize_rejects_bad_arguments() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError):
        synthesize_mammogram(rng, 0, (64, 64), "CC", "L")
    with pytest.raises(ValueError):
        synthesize_mammogram(rng, 2, (64, 64), "LM", "L")
    with pytest.raises(ValueError):
        synthesize_mammogram(rng, 2, (64, 64), "CC", "B")


def test_density_fraction_with_mask() -> None:
    image = np.zeros((10, 10), np.float32)
    image[:, :5] = 0.3
    image[:2, :5] = 0.9
    assert density_fraction(image) == pytest.approx(0.2)
    mask = np.zeros_like(image, dtype=bool)
    mask[:2] = True
    assert density_fraction(image, mask) == pytest.approx(0.5)
    assert density_fraction(np.zeros((4, 4), np.float32)) == 0.0


@pytest.mark.slow
def test_full_field_image() -> None:
    start = time.perf_counter()
    image = synthesize_mammogram(np.random.default_rng(0), 4, (4096, 3328), "MLO", "R")
    seconds = time.perf_counter() - start
    assert image.shape == (4096, 3328) and image.dtype == np.float32
    assert float(image.min()) >= 0.0 and float(image.max()) <= 1.0
    assert density_fraction(image) > 0.6
    assert seconds < 30, f"full-field synthesis took {seconds:.1f}s"
