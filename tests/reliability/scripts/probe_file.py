"""What reading one file costs: ``PATH`` -> one JSON line on stdout.

``read_header`` then the decode check of ``data check`` (``check_preprocessed`` at
512 px), in this fresh process: ``seconds``, ``peak_mb`` (peak resident memory
above the level after the imports) and ``reason`` (why it was refused, or null).
"""

import json
import resource
import sys
import time
from pathlib import Path

from mammography.data.dicom.decode import DicomReadError, read_header
from mammography.data.preprocess import PreprocessSettings, check_preprocessed

settings = PreprocessSettings.for_size(512)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
reason = None
try:
    read_header(Path(sys.argv[1]))
    check_preprocessed(Path(sys.argv[1]), settings)
except DicomReadError as exc:
    reason = exc.reason
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"seconds": time.perf_counter() - start, "peak_mb": (peak - base) / 1024,
                  "reason": reason}))
