"""Training and inference: the library (fit, loop, inference, checkpoint, fusion, export,
device, distributed) and the command recipes built from it (``train``, ``cv``,
``evaluate``, ``predict``, ``embed``). Metrics are torch-free and live in
``mammography.metrics``."""
