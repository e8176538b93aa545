"""Writes summaries or cache entries in a tight loop until killed: ``MODE DIR``.

summary: a SummaryWriter rewrites DIR/summary.json (~0.5 MB) with a growing
``counter``; cache: ImageCache.store writes 512 x 512 entries for DIR/src_*.dcm.
Prints READY after the first write, so a kill always finds something written.
"""

import sys
from pathlib import Path

mode, folder = sys.argv[1], Path(sys.argv[2])
if mode == "summary":
    from mammography.record.summary import SummaryWriter

    path = folder / "summary.json"
    writer = SummaryWriter(path, {"status": "running", "counter": 0,
                                  "blob": ["x" * 1000] * 500})
    print("READY", flush=True)
    counter = 0
    while True:
        counter += 1
        writer.update(counter=counter)
else:
    import numpy as np

    from mammography.data.cache import ImageCache
    from mammography.data.preprocess import PreprocessSettings

    cache = ImageCache(PreprocessSettings(img_size=512), folder / "cache")
    sources = sorted(folder.glob("src_*.dcm"))
    rng = np.random.default_rng()
    cache.store(sources[0], rng.integers(0, 65535, (512, 512), dtype=np.uint16))
    print("READY", flush=True)
    i = 0
    while True:
        i += 1
        cache.store(sources[i % len(sources)],
                    rng.integers(0, 65535, (512, 512), dtype=np.uint16))
