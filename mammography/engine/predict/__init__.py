"""`mammography predict`: density for unlabelled images from checkpoints or ONNX files."""
