"""mammography.data.dicom.decode: headers, decoding of every transfer syntax, per-file errors.

pydicom's own test files cover the transfer syntaxes; files that live only in
the separate pydicom-data package (downloaded on demand) are skipped, never
fetched. Synthetic mammograms cover the MG specifics (MONOCHROME1, rescale,
windows, for-processing).
"""

from __future__ import annotations

import dataclasses
import io
import pickle
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.pixels import apply_modality_lut, apply_voi_lut, get_decoder
from pydicom.uid import (
    MPEG2MPML,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLosslessSV1,
)

from mammography.data.dicom import decode as dicom
from mammography.data.dicom import intensity
from mammography.data.dicom.decode import DicomReadError, decode, read_frame, read_header
from mammography.data.synthetic import synthesize_mammogram, write_mammogram_dicom

# Grayscale files, by what they exercise. "*" marks files only in pydicom-data.
GRAYSCALE = {
    "MR_small.dcm": "explicit VR little endian, signed, window",
    "MR_small_implicit.dcm": "implicit VR little endian",
    "MR_small_bigendian.dcm": "explicit VR big endian",
    "MR_small_expb.dcm": "explicit VR big endian (dcmtk)",
    "MR_small_padded.dcm": "trailing padding",
    "MR_small_RLE.dcm": "RLE lossless",
    "MR_small_jp2klossless.dcm": "JPEG 2000 lossless",
    "MR_small_jpeg_ls_lossless.dcm": "JPEG-LS lossless",
    "CT_small.dcm": "CT, rescale, no window (percentile)",
    "JPEG2000.dcm": "JPEG 2000 (lossy), NM, 16-bit signed",
    "693_J2KI.dcm": "JPEG 2000 irreversible, CT",
    "J2K_pixelrep_mismatch.dcm": "JPEG 2000 with a signedness mismatch",
    "JPEGLSNearLossless_16.dcm": "JPEG-LS near-lossless, 16-bit",
    "JPEGLSNearLossless_08.dcm": "JPEG-LS near-lossless, 8-bit",
    "examples_overlay.dcm": "12 bits stored, window",
    "image_dfl.dcm": "deflated explicit VR little endian, 8-bit",
    "liver_1frame.dcm": "1 bit allocated (SEG)",
    "rtdose_1frame.dcm": "32-bit, no table",
    "rtdose_rle_1frame.dcm": "RLE, 32-bit",
    "JPEG-LL.dcm": "* JPEG lossless",
    "emri_small_RLE.dcm": "* RLE, multi-frame",
    "NM-PAL-16-PixRep1.dcm": "* NM, signed",
}
COLOUR = ["SC_rgb_rle.dcm", "examples_ybr_color.dcm", "examples_palette.dcm",
          "GDCMJ2K_TextGBR.dcm", "SC_rgb_jpeg_gdcm.dcm", "US1_J2KR.dcm"]
NO_PIXELS = ["rtplan.dcm", "test-SR.dcm", "reportsi.dcm", "waveform_ecg.dcm"]
# Decoded without loss from MR_small.dcm: must give the same image.
MR_SIBLINGS = ["MR_small_implicit.dcm", "MR_small_bigendian.dcm", "MR_small_expb.dcm",
               "MR_small_padded.dcm", "MR_small_RLE.dcm", "MR_small_jp2klossless.dcm",
               "MR_small_jpeg_ls_lossless.dcm"]


def pydicom_file(name: str) -> Path:
    """A pydicom test file, or skip when it is only in pydicom-data (no download)."""
    path = get_testdata_file(name, download=False)
    if path is None:
        pytest.skip(f"{name} is only in the pydicom-data package (not available offline)")
    return Path(path)


def assert_sane(image: np.ndarray) -> None:
    assert image.dtype == np.float32 and image.ndim == 2
    assert np.isfinite(image).all()
    assert image.min() >= 0.0 and image.max() <= 1.0
    assert image.max() - image.min() > 0.05, "decoded image is (nearly) constant"


def synthetic_image(laterality: str = "L", view: str = "CC",
                    shape: tuple[int, int] = (512, 416)) -> np.ndarray:
    return synthesize_mammogram(np.random.default_rng(7), 3, shape, view, laterality)


def write_synthetic(path: Path, image: np.ndarray | None = None, **kwargs) -> Path:
    options = {"patient_id": "P0001", "accession": "12345678", "view": "CC",
               "laterality": "L", **kwargs}
    return write_mammogram_dicom(path, synthetic_image() if image is None else image, **options)


def edit(src: Path, dst: Path, change) -> Path:
    """Copy a DICOM file through ``change(ds)``."""
    ds = pydicom.dcmread(src)
    change(ds)
    ds.save_as(dst)
    return dst


# --------------------------------------------------------------------------- decoding


@pytest.mark.parametrize("name", sorted(GRAYSCALE))
def test_grayscale_testdata_decodes(name: str) -> None:
    image, header = decode(pydicom_file(name))
    assert_sane(image)
    assert image.shape == (header.rows, header.columns)
    assert header.photometric in ("MONOCHROME1", "MONOCHROME2")
    assert header.transfer_syntax


@pytest.mark.parametrize("name", MR_SIBLINGS)
def test_lossless_siblings_decode_identically(name: str) -> None:
    reference, _ = decode(pydicom_file("MR_small.dcm"))
    image, _ = decode(pydicom_file(name))
    np.testing.assert_array_equal(image, reference)


def test_jpeg_lossless_decodes_like_its_source(tmp_path: Path) -> None:
    # No grayscale JPEG lossless file ships with pydicom itself; gdcm makes one.
    gdcm = pytest.importorskip("gdcm")
    src, dst = pydicom_file("MR_small.dcm"), tmp_path / "mr_jpeg_ll.dcm"
    reader = gdcm.ImageReader()
    reader.SetFileName(str(src))
    assert reader.Read()
    change = gdcm.ImageChangeTransferSyntax()
    change.SetTransferSyntax(gdcm.TransferSyntax(gdcm.TransferSyntax.JPEGLosslessProcess14_1))
    change.SetInput(reader.GetImage())
    assert change.Change()
    writer = gdcm.ImageWriter()
    writer.SetFile(reader.GetFile())
    writer.SetImage(change.GetOutput())
    writer.SetFileName(str(dst))
    assert writer.Write()

    image, header = decode(dst)
    assert pydicom.dcmread(dst).file_meta.TransferSyntaxUID == JPEGLosslessSV1
    assert header.transfer_syntax.startswith("JPEG Lossless")
    np.testing.assert_array_equal(image, decode(src)[0])


def test_jpeg_baseline_grayscale_decodes(tmp_path: Path) -> None:
    source = (synthetic_image(shape=(128, 104)) * 255).round().astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(source).save(buffer, format="JPEG", quality=95)
    ds = _image_dataset(source)
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.PixelData = encapsulate([buffer.getvalue()])
    ds["PixelData"].VR = "OB"
    path = tmp_path / "baseline.dcm"
    ds.save_as(path, enforce_file_format=True)

    image, header = decode(path)
    assert_sane(image)
    assert header.transfer_syntax.startswith("JPEG Baseline")
    # Lossy: close to the source, scaled by the percentile window (no VOI tags).
    assert np.corrcoef(image.ravel(), source.ravel())[0, 1] > 0.99


@pytest.mark.parametrize("name", ["JPEG-lossy.dcm", "JPGExtended.dcm"])
def test_jpeg_extended_12bit_decodes_or_names_the_missing_codec(name: str) -> None:
    path = pydicom_file(name)
    has_libjpeg = "pylibjpeg" in get_decoder(JPEGExtended12Bit).available_plugins
    if has_libjpeg and name == "JPGExtended.dcm":
        assert_sane(decode(path)[0])
        return
    # Without pylibjpeg-libjpeg, gdcm and pillow cannot decode 12-bit JPEG
    # Extended; and JPEG-lossy.dcm has a misplaced marker that libjpeg also
    # rejects. Either way the reason must say what the file is and what could help.
    with pytest.raises(DicomReadError) as info:
        decode(path)
    assert "JPEG Extended" in info.value.reason
    assert "pylibjpeg-libjpeg" in info.value.reason or has_libjpeg


def test_multiframe_is_refused_unless_a_frame_is_asked_for() -> None:
    with pytest.raises(DicomReadError, match="15 frames: not a 2-D mammogram"):
        decode(pydicom_file("rtdose.dcm"))
    first, header = decode(pydicom_file("rtdose.dcm"), frames="first")
    single, _ = decode(pydicom_file("rtdose_1frame.dcm"))
    np.testing.assert_array_equal(first, single)
    middle = read_frame(pydicom_file("rtdose.dcm"), frames="middle")
    assert middle.frame == 7 and header.frames == 15
    reference = pydicom.dcmread(pydicom_file("rtdose.dcm")).pixel_array[7]
    np.testing.assert_array_equal(middle.raw, reference)


def test_every_pydicom_test_file_decodes_or_raises_dicom_read_error() -> None:
    """Nothing but DicomReadError escapes, whatever the file."""
    folder = Path(pydicom_file("MR_small.dcm")).parent
    outcomes = {"decoded": 0, "refused": 0}
    for path in sorted(folder.glob("*.dcm")):
        try:
            image, _ = decode(path)
        except DicomReadError as exc:
            assert exc.path == path and exc.reason
            outcomes["refused"] += 1
        else:
            assert image.ndim == 2 and np.isfinite(image).all()
            outcomes["decoded"] += 1
    assert outcomes["decoded"] >= 15 and outcomes["refused"] >= 15


# --------------------------------------------------------------------------- step by step


def _reference(path: Path, output_range: tuple[float, float]) -> np.ndarray:
    """The grayscale pipeline one step at a time, float64, with pydicom's functions."""
    ds = pydicom.dcmread(path)
    ds.pixel_array_options(index=0)
    m = apply_modality_lut(ds.pixel_array, ds)
    y = apply_voi_lut(m, ds)
    low, high = output_range
    t = np.clip((y.astype(np.float64) - low) / (high - low), 0.0, 1.0)
    return 1.0 - t if ds.PhotometricInterpretation == "MONOCHROME1" else t


def test_window_matches_step_by_step_signed() -> None:
    path = pydicom_file("MR_small.dcm")  # signed 16-bit: windowing maps onto -32768..32767
    np.testing.assert_allclose(decode(path)[0], _reference(path, (-32768, 32767)), atol=1e-6)


@pytest.mark.parametrize("photometric", ["MONOCHROME1", "MONOCHROME2"])
@pytest.mark.parametrize("function", ["LINEAR", "LINEAR_EXACT", "SIGMOID"])
def test_window_functions_match_step_by_step(tmp_path: Path, photometric: str,
                                             function: str) -> None:
    path = write_synthetic(tmp_path / "w.dcm", photometric=photometric, bits_stored=14,
                           rescale_slope=2.0, rescale_intercept=-1024.0)
    path = edit(path, tmp_path / f"{function}.dcm",
                lambda ds: setattr(ds, "VOILUTFunction", function))
    # Unsigned 14 bits through the rescale: the output range is 0..16383 rescaled.
    expected = _reference(path, (-1024.0, 16383 * 2.0 - 1024.0))
    image, _ = decode(path)
    np.testing.assert_allclose(image, expected, atol=1e-6)
    assert read_frame(path).mapping.source == "window"


def test_multi_valued_window_uses_the_first(tmp_path: Path) -> None:
    src = write_synthetic(tmp_path / "a.dcm")
    ds = pydicom.dcmread(src)
    center, width = float(ds.WindowCenter), float(ds.WindowWidth)
    path = edit(src, tmp_path / "b.dcm", lambda d: (
        setattr(d, "WindowCenter", [center, 100.0]), setattr(d, "WindowWidth", [width, 50.0])))
    np.testing.assert_array_equal(decode(path)[0], decode(src)[0])


@pytest.mark.filterwarnings("ignore:Applying a VOI LUT on a float input")
def test_voi_lut_sequence_matches_step_by_step(tmp_path: Path) -> None:
    def add_lut(ds: Dataset) -> None:
        item = Dataset()
        # A gamma curve over the 12-bit range, 16-bit declared but filled to 4095
        # only - the vendor habit the normalisation must survive.
        item.LUTDescriptor = [4096, 0, 16]
        item.LUTData = [int(round(4095 * (v / 4095) ** 0.5)) for v in range(4096)]
        item["LUTData"].VR = "US"
        ds.VOILUTSequence = [item]

    path = edit(write_synthetic(tmp_path / "a.dcm"), tmp_path / "lut.dcm", add_lut)
    frame = read_frame(path)
    assert frame.mapping.source == "voi_lut"
    assert frame.mapping.affine is None  # a curve: no straight-line shortcut
    np.testing.assert_allclose(decode(path)[0], _reference(path, (0, 4095)), atol=1e-6)


def test_modality_lut_sequence_matches_step_by_step(tmp_path: Path) -> None:
    def add_lut(ds: Dataset) -> None:
        del ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType
        item = Dataset()
        item.LUTDescriptor = [4096, 0, 16]
        item.LUTData = [v * 4 for v in range(4096)]
        item["LUTData"].VR = "US"
        item.ModalityLUTType = "US"
        ds.ModalityLUTSequence = [item]
        ds.WindowCenter, ds.WindowWidth = 8000, 8000

    path = edit(write_synthetic(tmp_path / "a.dcm"), tmp_path / "mlut.dcm", add_lut)
    # With a modality LUT, pydicom windows onto 0..2**(LUT bits) - 1.
    np.testing.assert_allclose(decode(path)[0], _reference(path, (0, 65535)), atol=1e-6)


def test_percentile_window_is_a_clipped_line_of_the_modality_values() -> None:
    path = pydicom_file("CT_small.dcm")  # rescale, no VOI tags
    image, _ = decode(path)
    ds = pydicom.dcmread(path)
    m = apply_modality_lut(ds.pixel_array, ds).ravel()
    inside = (image.ravel() > 0) & (image.ravel() < 1)
    slope, intercept = np.polyfit(m[inside], image.ravel()[inside], 1)
    assert slope > 0
    np.testing.assert_allclose(slope * m[inside] + intercept, image.ravel()[inside], atol=1e-5)
    assert read_frame(path).mapping.source == "percentile"
    # A window, not min-max: a small share is clipped at each end.
    assert 0.001 < np.mean(image == 1.0) < 0.05


def test_unusable_window_falls_back_to_percentile(tmp_path: Path) -> None:
    path = edit(write_synthetic(tmp_path / "a.dcm"), tmp_path / "bad.dcm",
                lambda ds: setattr(ds, "WindowWidth", 0))  # LINEAR needs width >= 1
    image, _ = decode(path)
    assert_sane(image)
    assert read_frame(path).mapping.source == "percentile"


def test_unusable_voi_lut_falls_back_to_the_window(tmp_path: Path) -> None:
    def add_bad_lut(ds: Dataset) -> None:
        item = Dataset()
        item.LUTDescriptor = [16, 0, 9]  # 9 bits per entry: not allowed, pydicom refuses
        item.LUTData = list(range(16))
        item["LUTData"].VR = "US"
        ds.VOILUTSequence = [item]

    src = write_synthetic(tmp_path / "a.dcm")
    path = edit(src, tmp_path / "badlut.dcm", add_bad_lut)
    assert read_frame(path).mapping.source == "window"
    np.testing.assert_array_equal(decode(path)[0], decode(src)[0])


def test_blank_image_without_window_is_refused(tmp_path: Path) -> None:
    path = write_synthetic(tmp_path / "blank.dcm", np.full((64, 64), 0.5, np.float32),
                           window=False)
    with pytest.raises(DicomReadError, match="blank image"):
        decode(path)


# --------------------------------------------------------------------------- synthetic MG


@pytest.mark.parametrize("window", [True, False])
def test_monochrome1_and_monochrome2_decode_alike(tmp_path: Path, window: bool) -> None:
    image = synthetic_image()
    mono2, h2 = decode(write_synthetic(tmp_path / "m2.dcm", image, window=window))
    mono1, h1 = decode(write_synthetic(tmp_path / "m1.dcm", image, window=window,
                                       photometric="MONOCHROME1"))
    assert (h1.photometric, h2.photometric) == ("MONOCHROME1", "MONOCHROME2")
    # 12-bit quantisation and pydicom's half-step LINEAR offset, through a
    # window ~2000 values wide: a few thousandths at most.
    np.testing.assert_allclose(mono1, mono2, atol=3e-3)
    assert np.corrcoef(mono2.ravel(), image.ravel())[0, 1] > 0.99  # bright = dense


@pytest.mark.parametrize(("bits", "slope", "intercept"), [(14, 1.0, 0.0), (14, 2.0, -1024.0),
                                                          (12, 2.0, 0.0)])
def test_rescale_variants_decode_alike(tmp_path: Path, bits: int, slope: float,
                                       intercept: float) -> None:
    image = synthetic_image()
    plain, _ = decode(write_synthetic(tmp_path / "plain.dcm", image, bits_stored=bits))
    rescaled, _ = decode(write_synthetic(tmp_path / "r.dcm", image, bits_stored=bits,
                                         rescale_slope=slope, rescale_intercept=intercept))
    np.testing.assert_allclose(rescaled, plain, atol=3e-3)


@pytest.mark.parametrize("compression", ["rle", "j2k"])
def test_compressed_synthetic_matches_uncompressed(tmp_path: Path, compression: str) -> None:
    image = synthetic_image(shape=(256, 208))
    plain, _ = decode(write_synthetic(tmp_path / "plain.dcm", image))
    packed, header = decode(write_synthetic(tmp_path / "c.dcm", image, compression=compression))
    assert header.transfer_syntax != "Explicit VR Little Endian"
    np.testing.assert_array_equal(packed, plain)


def test_uncompressed_pixels_are_memory_mapped_and_equal_pydicoms(tmp_path: Path) -> None:
    path = write_synthetic(tmp_path / "big.dcm")  # 512 x 416 x 2 bytes > DEFER_BYTES
    frame = read_frame(path)
    assert isinstance(frame.raw.base, np.memmap)
    np.testing.assert_array_equal(frame.raw, pydicom.dcmread(path).pixel_array)


@pytest.mark.parametrize("signed", [False, True])
def test_unused_high_bits_are_masked_like_pydicom(tmp_path: Path, signed: bool) -> None:
    rng = np.random.default_rng(3)
    values = rng.integers(0, 4096, size=(600, 500)).astype(np.uint16)
    ds = _image_dataset(values, bits_stored=12, signed=signed)
    raw = bytearray(ds.PixelData)
    garbage = np.frombuffer(raw, dtype="<u2").copy()
    garbage[::7] |= 0xA000  # overlay-style junk in the unused top 4 bits
    ds.PixelData = garbage.tobytes()
    ds.WindowCenter, ds.WindowWidth = 0 if signed else 2048, 4096
    path = tmp_path / "junk.dcm"
    ds.save_as(path, enforce_file_format=True)

    frame = read_frame(path)
    expected = pydicom.dcmread(path).pixel_array
    np.testing.assert_array_equal(frame.raw, expected)
    np.testing.assert_allclose(decode(path)[0], _reference(path, _range(signed, 12)), atol=1e-6)


def _range(signed: bool, bits: int) -> tuple[int, int]:
    return (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)


def _image_dataset(values: np.ndarray, bits_stored: int | None = None,
                   signed: bool = False) -> Dataset:
    """A minimal secondary-capture dataset holding ``values`` (signed: shifted to centre)."""
    bits = bits_stored or values.dtype.itemsize * 8
    ds = Dataset()
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.SOPInstanceUID = pydicom.uid.generate_uid()
    ds.Modality = "OT"
    pixels = values.astype(np.int16) - np.int16(1 << (bits - 1)) if signed else values
    ds.set_pixel_data(pixels, "MONOCHROME2", bits)
    return ds


# --------------------------------------------------------------------------- headers


def test_read_header_of_a_synthetic_mammogram(tmp_path: Path) -> None:
    path = write_synthetic(tmp_path / "h.dcm", view="MLO", laterality="L", bits_stored=14,
                           photometric="MONOCHROME1", compression="rle")
    header = read_header(path)
    assert header == dataclasses.replace(
        header, path=path, patient_id="P0001", accession="12345678", view="MLO",
        laterality="L", photometric="MONOCHROME1", rows=512, columns=416, bits_stored=14,
        transfer_syntax="RLE Lossless", modality="MG", for_processing=False)
    assert (header.view_source, header.laterality_source) == ("ViewPosition", "ImageLaterality")
    assert (header.manufacturer, header.sop_class, header.voi_lut_function) == (
        "MAMMOGRAPHY-SYNTH", "MG For Presentation", "LINEAR")
    assert header.frames == 1 and header.pixel.kind == "encapsulated"
    assert header.pixel_spacing == pytest.approx((0.56, 0.56))
    assert header.study_uid
    assert decode(path)[1] == header


def test_for_processing_from_intent_or_sop_class(tmp_path: Path) -> None:
    processing = write_synthetic(tmp_path / "p.dcm", for_processing=True)
    assert read_header(processing).for_processing
    by_class = edit(processing, tmp_path / "class.dcm", lambda ds: delattr(
        ds, "PresentationIntentType"))
    assert read_header(by_class).for_processing
    presentation = write_synthetic(tmp_path / "q.dcm")
    assert not read_header(presentation).for_processing
    by_intent = edit(presentation, tmp_path / "intent.dcm", lambda ds: setattr(
        ds, "PresentationIntentType", "FOR PROCESSING"))
    assert read_header(by_intent).for_processing


def test_laterality_falls_back_and_view_may_be_empty(tmp_path: Path) -> None:
    src = write_synthetic(tmp_path / "a.dcm", laterality="R")
    series_only = edit(src, tmp_path / "b.dcm", lambda ds: delattr(ds, "ImageLaterality"))
    assert read_header(series_only).laterality == "R"

    def strip(ds: Dataset) -> None:
        del ds.ImageLaterality, ds.Laterality, ds.ViewPosition, ds.SeriesDescription

    bare = read_header(edit(src, tmp_path / "c.dcm", strip))
    assert (bare.laterality, bare.view) == ("", "")


def test_read_header_skips_pixel_data() -> None:
    header = read_header(pydicom_file("MR_truncated.dcm"))  # pixels are broken, tags are fine
    assert (header.rows, header.columns, header.modality) == (64, 64, "MR")


# --------------------------------------------------------------------------- per-file errors


def test_error_carries_path_and_reason_and_pickles(tmp_path: Path) -> None:
    exc = DicomReadError(tmp_path / "x.dcm", "broken")
    assert (exc.path, exc.reason, str(exc)) == (tmp_path / "x.dcm", "broken",
                                                f"{tmp_path / 'x.dcm'}: broken")
    clone = pickle.loads(pickle.dumps(exc))
    assert (clone.path, clone.reason, str(clone)) == (exc.path, exc.reason, str(exc))


def test_truncated_pixel_data(tmp_path: Path) -> None:
    with pytest.raises(DicomReadError, match="truncated pixel data"):
        decode(pydicom_file("MR_truncated.dcm"))
    # A large file, whose pixel data would be memory-mapped if it were complete.
    data = write_synthetic(tmp_path / "full.dcm").read_bytes()
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(data[:-100])
    with pytest.raises(DicomReadError, match="truncated pixel data"):
        decode(cut)


@pytest.mark.parametrize("name", NO_PIXELS)
def test_objects_without_pixels(name: str) -> None:
    with pytest.raises(DicomReadError, match="no pixel data"):
        decode(pydicom_file(name))


@pytest.mark.parametrize("name", COLOUR)
def test_colour_images_are_refused(name: str) -> None:
    with pytest.raises(DicomReadError, match="photometric interpretation"):
        decode(pydicom_file(name))


def test_not_dicom_empty_missing_and_directory(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("AccessionNumber,Classification\n123,2\n" * 20)
    empty = tmp_path / "empty.dcm"
    empty.touch()
    cases = {text: "not a DICOM file", empty: "empty file",
             tmp_path / "missing.dcm": "file not found", tmp_path: "directory"}
    for path, reason in cases.items():
        for func in (decode, read_header):
            with pytest.raises(DicomReadError, match=reason) as info:
                func(path)
            assert info.value.path == path


def test_truncated_file_at_any_length_is_a_dicom_read_error(tmp_path: Path) -> None:
    data = write_synthetic(tmp_path / "full.dcm", synthetic_image(shape=(64, 52))).read_bytes()
    for cut in (1, 100, 132, 300, 600, len(data) // 2, len(data) - 1):
        path = tmp_path / f"cut{cut}.dcm"
        path.write_bytes(data[:cut])
        with pytest.raises(DicomReadError):
            decode(path)


def test_transfer_syntax_without_any_decoder(tmp_path: Path) -> None:
    def to_mpeg(ds: Dataset) -> None:
        ds.PixelData = encapsulate([ds.PixelData])
        ds.file_meta.TransferSyntaxUID = MPEG2MPML

    path = edit(pydicom_file("MR_small.dcm"), tmp_path / "mpeg.dcm", to_mpeg)
    with pytest.raises(DicomReadError, match="no decoder for transfer syntax MPEG2") as info:
        decode(path)
    assert "convert" in info.value.reason


def test_missing_codec_package_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    # Simulate an environment without pylibjpeg-openjpeg (and gdcm, pillow).
    decoder = get_decoder(JPEG2000Lossless)
    monkeypatch.setattr(decoder, "_available", {})
    monkeypatch.setattr(decoder, "_unavailable",
                        {"pylibjpeg": ("pylibjpeg>=2.0", "pylibjpeg-openjpeg>=2.0")})
    with pytest.raises(DicomReadError) as info:
        decode(pydicom_file("MR_small_jp2klossless.dcm"))
    assert "JPEG 2000" in info.value.reason
    assert "pylibjpeg-openjpeg" in info.value.reason


def test_unexpected_failures_are_wrapped(monkeypatch: pytest.MonkeyPatch) -> None:
    def explode(*args, **kwargs):
        raise MemoryError("simulated")

    monkeypatch.setattr(intensity, "apply_modality_lut", explode)
    with pytest.raises(DicomReadError, match="MemoryError: simulated"):
        decode(pydicom_file("MR_small.dcm"))


# --------------------------------------------------------------------------- real-world shapes


def test_corpus_every_file_decodes_or_is_excluded_with_the_headers_reason() -> None:
    """pydicom's test files: decoded, or refused with a reason - the header pass
    (``--no-decode``) already gives the decoder's reason whenever it rules a file out."""
    folder = Path(pydicom_file("MR_small.dcm")).parent
    outcomes = {"decoded": 0, "refused": 0, "by_header": 0}
    for path in sorted(p for p in folder.iterdir() if p.is_file()):
        try:
            header_reason = dicom.image_problem(read_header(path))
        except DicomReadError as exc:
            header_reason = exc.reason
        try:
            decode(path)
        except DicomReadError as exc:
            outcomes["refused"] += 1
            assert exc.reason and "Traceback" not in exc.reason
            assert "Unable to decode as exceptions" not in exc.reason
            if header_reason:
                assert header_reason == exc.reason, path.name
                outcomes["by_header"] += 1
        else:
            assert header_reason is None, (path.name, header_reason)
            outcomes["decoded"] += 1
    assert outcomes["decoded"] >= 20 and outcomes["by_header"] >= 50


@pytest.mark.parametrize("name", ["test-SR.dcm", "waveform_ecg.dcm", "SC_rgb_rle.dcm",
                                  "examples_palette.dcm", "rtdose.dcm", "MR_truncated.dcm"])
def test_header_alone_rules_out_what_is_no_2d_grayscale_image(name: str) -> None:
    header = read_header(pydicom_file(name))
    reason = dicom.image_problem(header)
    assert reason
    with pytest.raises(DicomReadError) as info:
        decode(pydicom_file(name))
    assert info.value.reason == reason


def _multiframe(path: Path, frames: int, sop_class: str) -> Path:
    stack = np.stack([(synthetic_image(shape=(96, 80)) * (k + 1) / frames * 4095).astype(
        np.uint16) for k in range(frames)])
    ds = pydicom.dcmread(write_synthetic(path.with_suffix(".src.dcm"),
                                         synthetic_image(shape=(96, 80))))
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.set_pixel_data(stack, "MONOCHROME2", 12, generate_instance_uid=False)
    ds.save_as(path, enforce_file_format=True)
    return path


def test_tomosynthesis_is_excluded_with_a_reason_or_its_middle_frame_taken(
        tmp_path: Path) -> None:
    path = _multiframe(tmp_path / "dbt.dcm", 5, "1.2.840.10008.5.1.4.1.1.13.1.3")
    header = read_header(path)
    assert (header.frames, header.image_kind, header.sop_class) == (5, "DBT", "DBT")
    reason = dicom.image_problem(header)
    assert reason and reason.startswith("breast tomosynthesis volume with 5 frames")
    with pytest.raises(DicomReadError, match="--multiframe"):
        decode(path)
    middle = read_frame(path, frames="middle")
    expected = pydicom.dcmread(path).pixel_array[2]
    assert middle.frame == 2
    np.testing.assert_array_equal(middle.raw, expected)
    other = _multiframe(tmp_path / "cine.dcm", 3, "1.2.840.10008.5.1.4.1.1.1.2")
    assert "multi-frame object (MG For Presentation) with 3 frames" in dicom.image_problem(
        read_header(other))


def _constant(path: Path, value: int, **window: str) -> Path:
    def change(ds: Dataset) -> None:
        ds.PixelData = np.full((ds.Rows, ds.Columns), value, np.uint16).tobytes()
        for key, text in window.items():
            setattr(ds, key, text)
    return edit(write_synthetic(path.with_suffix(".src.dcm"), synthetic_image(shape=(64, 52))),
                path, change)


def test_blank_and_saturated_images_are_found_on_the_mapped_values(tmp_path: Path) -> None:
    zeroed = _constant(tmp_path / "zero.dcm", 0)  # window tags kept, every pixel 0
    with pytest.raises(DicomReadError, match="blank image: every pixel map to black under "
                       "the VOI window"):
        decode(zeroed)
    saturated = _constant(tmp_path / "sat.dcm", 3000, WindowCenter="100", WindowWidth="50")
    with pytest.raises(DicomReadError, match="saturated image"):
        decode(saturated)
    mostly = edit(zeroed, tmp_path / "hot.dcm", lambda ds: setattr(
        ds, "PixelData", _with_hot_pixels(ds.Rows, ds.Columns)))
    with pytest.raises(DicomReadError, match="blank image: 99"):
        decode(mostly)


def _with_hot_pixels(rows: int, columns: int) -> bytes:
    arr = np.zeros((rows, columns), np.uint16)
    arr[0, :3] = 4000  # three hot pixels do not make an image
    return arr.tobytes()


def test_blank_message_never_says_minus_zero(tmp_path: Path) -> None:
    def blank_mono1(ds: Dataset) -> None:
        ds.PixelData = np.zeros((ds.Rows, ds.Columns), np.uint16).tobytes()
        del ds.WindowCenter, ds.WindowWidth

    path = edit(write_synthetic(tmp_path / "m1.dcm", synthetic_image(shape=(64, 52)),
                                photometric="MONOCHROME1"), tmp_path / "b.dcm", blank_mono1)
    with pytest.raises(DicomReadError, match="blank image") as info:
        decode(path)
    assert "-0" not in info.value.reason


def _coded(meaning: str, value: str, scheme: str) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
    return item


@pytest.mark.parametrize(("change", "view", "source"), [
    (lambda ds: setattr(ds, "ViewCodeSequence", [_coded("cranio-caudal", "399162004", "SCT")]),
     "CC", "ViewCodeSequence"),
    (lambda ds: setattr(ds, "ViewCodeSequence", [_coded("medio-lateral oblique", "R-10226",
                                                        "SRT")]), "MLO", "ViewCodeSequence"),
    (lambda ds: setattr(ds, "ViewCodeSequence", [_coded("latero-medial", "X", "99LOCAL")]),
     "LM", "ViewCodeSequence"),
    (lambda ds: setattr(ds, "PatientOrientation", "MLO"), "MLO", "PatientOrientation"),
    (lambda ds: setattr(ds, "SeriesDescription", "RIGHT_XCCL"), "XCCL", "SeriesDescription"),
])
def test_views_from_every_place_the_header_keeps_them(tmp_path: Path, change, view: str,
                                                      source: str) -> None:
    def bare(ds: Dataset) -> None:
        del ds.ViewPosition, ds.SeriesDescription
        ds.PatientOrientation = ["A", "R"]
        change(ds)

    header = read_header(edit(write_synthetic(tmp_path / "v.dcm"), tmp_path / "w.dcm", bare))
    assert (header.view, header.view_source) == (view, source)


def test_laterality_from_frame_anatomy_then_the_description(tmp_path: Path) -> None:
    def frame_only(ds: Dataset) -> None:
        del ds.ImageLaterality, ds.Laterality
        anatomy, group = Dataset(), Dataset()
        anatomy.FrameLaterality = "R"
        group.FrameAnatomySequence = [anatomy]
        ds.SharedFunctionalGroupsSequence = [group]

    src = write_synthetic(tmp_path / "a.dcm", laterality="L")
    header = read_header(edit(src, tmp_path / "f.dcm", frame_only))
    assert (header.laterality, header.laterality_source) == ("R", "FrameLaterality")

    def described(ds: Dataset) -> None:
        del ds.ImageLaterality, ds.Laterality
        ds.SeriesDescription = "Left MLO"

    header = read_header(edit(src, tmp_path / "d.dcm", described))
    assert (header.laterality, header.laterality_source) == ("L", "SeriesDescription")


def test_short_pixel_data_is_seen_from_the_header(tmp_path: Path) -> None:
    data = write_synthetic(tmp_path / "full.dcm").read_bytes()
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(data[:-1000])
    reason = dicom.image_problem(read_header(cut))
    assert reason and reason.startswith("truncated pixel data")
    assert dicom.image_problem(read_header(tmp_path / "full.dcm")) is None


def test_gzip_file_is_named_as_such(tmp_path: Path) -> None:
    import gzip

    path = tmp_path / "image.dcm"
    path.write_bytes(gzip.compress(write_synthetic(tmp_path / "src.dcm").read_bytes()))
    for func in (decode, read_header):
        with pytest.raises(DicomReadError, match="gzip-compressed file: decompress it first"):
            func(path)


def test_decode_failure_is_one_statement_without_a_needless_codec_hint() -> None:
    path = pydicom_file("JPEG-lossy.dcm")  # a misplaced marker: every decoder fails
    if "pylibjpeg" not in get_decoder(JPEGExtended12Bit).available_plugins:
        pytest.skip("pylibjpeg-libjpeg is not installed")
    with pytest.raises(DicomReadError) as info:
        decode(path)
    reason = info.value.reason
    assert reason.count("cannot decode") == 1 and "Unable to decode" not in reason
    assert "install" not in reason  # the codec is installed: no advice to install it
