"""Coverage-guided fuzzing of the DICOM reader with atheris (optional, manual).

    .venv/bin/pip install atheris          # a manylinux wheel; not a dev dependency
    mkdir -p /tmp/corpus && .venv/bin/python tests/reliability/scripts/atheris_dicom.py \\
        /tmp/corpus -max_total_time=600 -rss_limit_mb=4096

The corpus starts from the same seeds as scripts/fuzz_dicom.py (synthetic
mammograms in three transfer syntaxes, pydicom's test files). Any exception
other than DicomReadError, or a crash of a native decoder, stops the run with
the input saved as ``crash-*``.
"""

from __future__ import annotations

import contextlib
import sys
import tempfile
from pathlib import Path

import atheris

with atheris.instrument_imports():
    import pydicom  # noqa: F401 - instrumented for coverage feedback

    from mammography.data.dicom.decode import DicomReadError, decode, read_header
    from mammography.data.preprocess import PreprocessSettings, load_preprocessed

SETTINGS = PreprocessSettings(img_size=32)
WORK = Path(tempfile.mkdtemp(prefix="atheris-dicom-"))
TARGET = WORK / "input.dcm"


def seed_corpus(corpus: Path) -> None:
    import numpy as np
    from pydicom.data import get_testdata_file

    from mammography.data.synthetic import synthesize_mammogram, write_mammogram_dicom

    if any(corpus.iterdir()):
        return
    image = synthesize_mammogram(np.random.default_rng(1), 3, (64, 48), "MLO", "L")
    for compression in ("none", "rle", "j2k"):
        write_mammogram_dicom(corpus / f"seed_{compression}.dcm", image, patient_id="P1",
                              accession="A1", view="MLO", laterality="L",
                              compression=compression)
    for name in ("MR_small.dcm", "CT_small.dcm", "MR_small_jpeg_ls_lossless.dcm",
                 "JPEG2000.dcm", "MR_small_RLE.dcm"):
        path = get_testdata_file(name, download=False)
        if path is not None:
            (corpus / name).write_bytes(Path(path).read_bytes())


def test_one_input(data: bytes) -> None:
    TARGET.write_bytes(data)
    for call in (read_header, decode, lambda p: load_preprocessed(p, SETTINGS)):
        with contextlib.suppress(DicomReadError):
            call(TARGET)


if __name__ == "__main__":
    corpora = [Path(a) for a in sys.argv[1:] if not a.startswith("-")]
    for corpus in corpora:
        corpus.mkdir(parents=True, exist_ok=True)
        seed_corpus(corpus)
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
