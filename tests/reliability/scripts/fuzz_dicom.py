"""Fuzz the DICOM reader: ``MODE EXAMPLES SEED WORKDIR`` (MODE: bytes or tags).

Run in its own process by tests/reliability/test_fuzz_dicom.py because the
decoders are native code: a decoder that aborts (python-gdcm did) or segfaults
would take the test session with it. Before each call the input is written to
WORKDIR/current.dcm, so a crash leaves its reproducer behind.

Every input goes through ``read_header``, ``decode`` and ``load_preprocessed``.
Allowed outcomes: a result that keeps the documented contract (decode: 2-D
float32 in [0, 1], all finite; load_preprocessed: img_size x img_size uint16)
or ``DicomReadError``. Anything else - another exception, a Python warning that
escapes, a call slower than 5 s - fails, and hypothesis shrinks the input.
Prints one JSON line of statistics at the end.
"""

from __future__ import annotations

import collections
import io
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pydicom
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from pydicom import uid
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from mammography.data.dicom.decode import DicomReadError, decode, read_header
from mammography.data.preprocess import PreprocessSettings, load_preprocessed
from mammography.data.synthetic import synthesize_mammogram, write_mammogram_dicom

MODE, EXAMPLES, SEED, WORK = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4])
SETTINGS = PreprocessSettings(img_size=32)
SLOW_SECONDS = 5.0
OUTCOMES: collections.Counter = collections.Counter()


def seed_files() -> dict[str, bytes]:
    """Real DICOM bytes to mutate: synthetic mammograms in every syntax the
    generator writes, plus pydicom's own test files when installed."""
    from pydicom.data import get_testdata_file

    image = synthesize_mammogram(np.random.default_rng(1), 3, (64, 48), "MLO", "L")
    files = {}
    for compression, photometric in (("none", "MONOCHROME2"), ("rle", "MONOCHROME1"),
                                     ("j2k", "MONOCHROME2")):
        path = write_mammogram_dicom(WORK / f"seed_{compression}.dcm", image, patient_id="P1",
                                     accession="A1", view="MLO", laterality="L",
                                     photometric=photometric, compression=compression)
        files[path.name] = path.read_bytes()
    for name in ("MR_small.dcm", "CT_small.dcm", "MR_small_implicit.dcm",
                 "MR_small_bigendian.dcm", "MR_small_jpeg_ls_lossless.dcm", "JPEG2000.dcm",
                 "MR_small_RLE.dcm"):
        path = get_testdata_file(name, download=False)
        if path is not None:
            files[name] = Path(path).read_bytes()
    return files


SEEDS = seed_files()
NAMES = sorted(SEEDS)


@st.composite
def mutated_bytes(draw) -> bytes:
    """Bit flips, byte overwrites (anywhere, or in the header), truncation,
    insertions and deletions - one to six of them."""
    data = bytearray(SEEDS[draw(st.sampled_from(NAMES))])
    for _ in range(draw(st.integers(1, 6))):
        if not data:
            break
        kind = draw(st.sampled_from(["flip", "byte", "header", "truncate", "insert", "delete"]))
        if kind == "flip":
            i = draw(st.integers(0, len(data) - 1))
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif kind == "byte":
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
        elif kind == "header":  # preamble, DICM marker, meta group, first elements
            i = draw(st.integers(0, min(len(data) - 1, 1500)))
            data[i] = draw(st.sampled_from([0x00, 0x01, 0x7F, 0x80, 0xFF]))
        elif kind == "truncate":
            del data[draw(st.integers(0, len(data))):]
        elif kind == "insert":
            i = draw(st.integers(0, len(data)))
            data[i:i] = draw(st.binary(min_size=1, max_size=16))
        else:
            i = draw(st.integers(0, len(data) - 1))
            del data[i:i + draw(st.integers(1, 16))]
    return bytes(data)


NUMBERS = st.one_of(st.floats(), st.integers(-2**31, 2**31),
                    st.sampled_from([0, -1, 1e308, 1e-308])).map(str)
TAGS = {
    "Rows": st.integers(0, 65535), "Columns": st.integers(0, 65535),
    "BitsAllocated": st.sampled_from([0, 1, 7, 8, 12, 16, 24, 32, 64]),
    "BitsStored": st.integers(0, 64), "HighBit": st.integers(0, 64),
    "PixelRepresentation": st.integers(0, 3), "SamplesPerPixel": st.integers(0, 4),
    "PhotometricInterpretation": st.sampled_from(["MONOCHROME1", "MONOCHROME2", "RGB",
                                                  "PALETTE COLOR", "YBR_FULL", "", "mono"]),
    "NumberOfFrames": st.sampled_from(["0", "1", "2", "1000", "-1", "x"]),
    "WindowCenter": NUMBERS, "WindowWidth": NUMBERS,
    "RescaleSlope": NUMBERS, "RescaleIntercept": NUMBERS,
    "VOILUTFunction": st.sampled_from(["LINEAR", "LINEAR_EXACT", "SIGMOID", "BOGUS", ""]),
    "PresentationIntentType": st.sampled_from(["FOR PROCESSING", "FOR PRESENTATION", ""]),
    "ImageLaterality": st.text(max_size=4), "ViewPosition": st.text(max_size=6),
    "PatientID": st.text(max_size=70),
}
SYNTAXES = [uid.ImplicitVRLittleEndian, uid.ExplicitVRLittleEndian, uid.ExplicitVRBigEndian,
            uid.DeflatedExplicitVRLittleEndian, uid.RLELossless, uid.JPEG2000Lossless,
            uid.JPEG2000, uid.JPEGLSLossless, uid.JPEGBaseline8Bit, uid.JPEGExtended12Bit,
            uid.JPEGLosslessSV1, uid.MPEG2MPML, "1.2.840.10008.1.2.4.201", "1.2.3.4"]


def _lut(draw, entries: int) -> Dataset:
    item = Dataset()
    item.LUTDescriptor = [draw(st.integers(0, 65535)), draw(st.integers(-32768, 65535)),
                          draw(st.sampled_from([0, 8, 12, 16, 17]))]
    item.LUTData = [draw(st.integers(0, 65535)) for _ in range(entries)] or b""
    return item


@st.composite
def edited_tags(draw) -> bytes:
    """Random values in the tags the reader uses: sizes, bit depths, syntax, LUTs,
    windows, rescale - the "valid file, corrupt header" kind of damage."""
    ds = pydicom.dcmread(io.BytesIO(SEEDS[draw(st.sampled_from(NAMES))]), force=True)
    with warnings.catch_warnings():  # pydicom warns about the values we set
        warnings.simplefilter("ignore")
        for _ in range(draw(st.integers(1, 4))):
            what = draw(st.sampled_from([*TAGS, "syntax", "voi_lut", "modality_lut",
                                         "pixel_length", "delete"]))
            try:
                if what in TAGS:
                    setattr(ds, what, draw(TAGS[what]))
                elif what == "syntax":
                    ds.file_meta.TransferSyntaxUID = draw(st.sampled_from(SYNTAXES))
                elif what == "voi_lut":
                    ds.VOILUTSequence = Sequence([_lut(draw, draw(st.integers(0, 50)))])
                elif what == "modality_lut":
                    item = _lut(draw, draw(st.integers(0, 50)))
                    item.ModalityLUTType = "US"
                    ds.ModalityLUTSequence = Sequence([item])
                elif what == "pixel_length" and "PixelData" in ds:
                    pixels = ds.PixelData
                    ds.PixelData = (pixels[:draw(st.integers(0, len(pixels)))]
                                    + draw(st.binary(max_size=64)))
                elif what == "delete":
                    keyword = draw(st.sampled_from([*TAGS, "PixelData", "TransferSyntaxUID"]))
                    holder = ds.file_meta if keyword == "TransferSyntaxUID" else ds
                    if keyword in holder:
                        delattr(holder, keyword)
            except Exception:  # a value pydicom refuses to hold: keep the others
                continue
        buffer = io.BytesIO()
        try:
            ds.save_as(buffer, enforce_file_format=False)
        except Exception:
            return SEEDS[NAMES[0]]
    return buffer.getvalue()


def check(data: bytes) -> None:
    path = WORK / "current.dcm"
    path.write_bytes(data)
    calls = (("read_header", read_header), ("decode", decode),
             ("load_preprocessed", lambda p: load_preprocessed(p, SETTINGS)))
    for name, call in calls:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            started = time.perf_counter()
            try:
                result = call(path)
            except DicomReadError:
                OUTCOMES[f"{name}: DicomReadError"] += 1
                result = None
            elapsed = time.perf_counter() - started
        assert not caught, f"{name}: a warning escaped: {caught[0].message}"
        assert elapsed < SLOW_SECONDS, f"{name} took {elapsed:.1f}s"
        if result is None:
            continue
        OUTCOMES[f"{name}: ok"] += 1
        if name == "decode":
            image = result[0]
            assert image.dtype == np.float32 and image.ndim == 2, image.dtype
            assert np.isfinite(image).all(), "decode returned non-finite pixels"
            assert image.min() >= 0.0 and image.max() <= 1.0
        elif name == "load_preprocessed":
            assert result[0].shape == (32, 32) and result[0].dtype == np.uint16


@seed(SEED)
@settings(max_examples=EXAMPLES, deadline=None, database=None, print_blob=True,
          suppress_health_check=list(HealthCheck))
@given(st.data())
def fuzz(data) -> None:
    check(data.draw(mutated_bytes() if MODE == "bytes" else edited_tags()))


if __name__ == "__main__":
    started = time.perf_counter()
    fuzz()
    print(json.dumps({"mode": MODE, "seeds": len(SEEDS), "examples": EXAMPLES,
                      "seconds": round(time.perf_counter() - started, 1),
                      "outcomes": dict(OUTCOMES)}))
