"""mammography.data.fingerprint: counts per acquisition property, and their differences."""

from pathlib import Path

from mammography.data.dicom.decode import read_header
from mammography.data.fingerprint import (
    acquisition_fingerprint,
    compare_fingerprints,
    processing_mix,
)
from mammography.data.synthetic import synthesize_mammogram, write_mammogram_dicom
from mammography.data.table.records import ImageRecord


def record(path: Path, **kwargs) -> ImageRecord:
    import numpy as np

    image = synthesize_mammogram(np.random.default_rng(0), 2, (96, 80), "CC", "L")
    options = {"patient_id": "P", "accession": "A", "view": "CC", "laterality": "L", **kwargs}
    header = read_header(write_mammogram_dicom(path, image, **options))
    return ImageRecord(path=path, accession="A", patient="P", view=header.view,
                       laterality=header.laterality, label=2, row=2, header=header,
                       view_source=header.view_source)


def test_counts_and_differences_read_as_sentences(tmp_path: Path) -> None:
    train = acquisition_fingerprint([record(tmp_path / f"t{i}.dcm") for i in range(2)])
    assert train["images"] == 2 and train["manufacturer"] == {"MAMMOGRAPHY-SYNTH": 2}
    assert train["image_kind"] == {"For Presentation": 2} and train["bits_stored"] == {"12": 2}
    other = acquisition_fingerprint([
        record(tmp_path / "o1.dcm", manufacturer="VENDOR-X", bits_stored=10),
        record(tmp_path / "o2.dcm", for_processing=True)])
    found = compare_fingerprints(train, other)
    assert "manufacturer VENDOR-X never seen in training (1 images)" in found
    assert "bits stored 10 not in training (1 images)" in found
    assert "For Processing images, none in training (1 images)" in found
    assert compare_fingerprints(train, train) == []
    assert "no acquisition fingerprint" in compare_fingerprints({}, other)[0]
    assert "mixed" in processing_mix(other)
    assert processing_mix(train) is None
