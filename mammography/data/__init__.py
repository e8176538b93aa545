"""Data layer: DICOM reading, labels, splits and the synthetic dataset generator."""
