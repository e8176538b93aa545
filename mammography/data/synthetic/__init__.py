"""Synthetic screening-mammography dataset: real DICOM files, fake patients.

Demo and test tooling, never part of training on real data: `mammography synth`
(and through it `make demo`), the test suite's fixtures and the benchmarks use
it instead of patient data; no training, evaluation or data command imports it.
Nothing here imports torch.

* ``plan`` - the dataset without pixels: exams, patients, class labels, views,
  study dates and the fictional acquisition devices, all drawn from the seed.
* ``phantom`` - one synthetic mammogram image with a learnable density signal
  (breast geometry, tissue, noise), and `density_fraction` to measure it back.
* ``dicom_writer`` - `write_mammogram_dicom`: stored values, VOI window, UIDs,
  patient/study/series and geometry tags, optional lossless compression.
* ``generate`` - the command body: `generate_dataset` and `run_synth`, the
  staging folder and its move into place, the labels CSV.

The names below are re-exported so that code importing them from
``mammography.data.synthetic`` (and the CLI's "mammography.data.synthetic:run_synth")
does not depend on this layout.
"""

from mammography.data.synthetic.dicom_writer import (
    FIELD_ROWS_MM,
    MG_FOR_PRESENTATION,
    MG_FOR_PROCESSING,
    TRANSFER_SYNTAXES,
    write_mammogram_dicom,
)
from mammography.data.synthetic.generate import (
    ARCHIVE_NAME,
    CSV_HEADER,
    CSV_NAME,
    SynthSummary,
    generate_dataset,
    run_synth,
)
from mammography.data.synthetic.phantom import (
    BREAST_THRESHOLD,
    DENSE_RANGES,
    DENSE_THRESHOLD,
    density_fraction,
    synthesize_mammogram,
)
from mammography.data.synthetic.plan import (
    CLASS_SHARES,
    DEVICES,
    REPEAT_PATIENT_SHARE,
    VIEWS,
    Device,
)

__all__ = [
    "ARCHIVE_NAME",
    "BREAST_THRESHOLD",
    "CLASS_SHARES",
    "CSV_HEADER",
    "CSV_NAME",
    "DENSE_RANGES",
    "DENSE_THRESHOLD",
    "DEVICES",
    "FIELD_ROWS_MM",
    "MG_FOR_PRESENTATION",
    "MG_FOR_PROCESSING",
    "REPEAT_PATIENT_SHARE",
    "TRANSFER_SYNTAXES",
    "VIEWS",
    "Device",
    "SynthSummary",
    "density_fraction",
    "generate_dataset",
    "run_synth",
    "synthesize_mammogram",
    "write_mammogram_dicom",
]
